#version 450
// OUT (n, cols) = rows ids[t] of W, dequantized and multiplied by `scale` (embedding
// lookup). W holds rows row0 .. row0+rows of the matrix (a large one is split over several
// buffers); ids outside that range are left for another dispatch.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Wb { uint W[]; };
layout(std430, binding = 1) readonly buffer Ib { uint IDS[]; };
layout(std430, binding = 2) writeonly buffer Ob { float OUT[]; };
layout(push_constant) uniform P {
    uint cols;
    uint n;
    uint row_bytes;
    uint row0;
    uint rows;
    float scale;
    uint ids_off;
} p;
#include "common.glsl"
#include "dequant.glsl"

void main() {
    uint u = gl_GlobalInvocationID.x;
    uint t = gl_GlobalInvocationID.y;
    if (t >= p.n || u * 8 >= p.cols) {
        return;
    }
    uint id = IDS[p.ids_off + t];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    float v[8];
    dequant8((id - p.row0) * p.row_bytes, u, p.cols, v);
    uint ne = min(8, p.cols - u * 8);
    for (uint i = 0; i < ne; i++) {
        OUT[t * p.cols + u * 8 + i] = v[i] * p.scale;
    }
}
