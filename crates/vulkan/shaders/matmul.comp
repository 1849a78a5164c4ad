#version 450
// Y = X · Wᵀ for one weight type: Y (n, y_stride) at y_off gets columns row0 .. row0+rows,
// X (n, cols) at x_off. One workgroup per weight row and tile of up to NT tokens: the row is
// dequantized once per tile, eight elements at a time, and each thread keeps NT partial sums
// that the workgroup adds up at the end.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Wb { uint W[]; };
layout(std430, binding = 1) readonly buffer Xb { float X[]; };
layout(std430, binding = 2) writeonly buffer Yb { float Y[]; };
layout(push_constant) uniform P {
    uint rows;
    uint cols;
    uint n;
    uint row_bytes;
    uint x_off;
    uint y_off;
    uint y_stride;
    uint row0;
} p;
#include "common.glsl"
#include "dequant.glsl"

#define NT 8
shared float red[NT][64];

void main() {
    // Rows are spread over x and z (x holds at most 65535 workgroups); tokens over y.
    uint row = gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= p.rows) {
        return; // the whole workgroup leaves together
    }
    uint t0 = gl_WorkGroupID.y * NT;
    uint nt = min(NT, p.n - t0);
    uint tid = gl_LocalInvocationID.x;
    float acc[NT];
    for (uint t = 0; t < NT; t++) {
        acc[t] = 0.0;
    }
    uint units = (p.cols + 7) / 8;
    for (uint u = tid; u < units; u += 64) {
        float v[8];
        dequant8(row * p.row_bytes, u, p.cols, v);
        uint e0 = u * 8;
        uint ne = min(8, p.cols - e0);
        for (uint t = 0; t < nt; t++) {
            uint xb = p.x_off + (t0 + t) * p.cols + e0;
            float s = 0.0;
            for (uint i = 0; i < ne; i++) {
                s += v[i] * X[xb + i];
            }
            acc[t] += s;
        }
    }
    for (uint t = 0; t < NT; t++) {
        red[t][tid] = acc[t];
    }
    barrier();
    for (uint w = 32; w > 0; w >>= 1) {
        if (tid < w) {
            for (uint t = 0; t < NT; t++) {
                red[t][tid] += red[t][tid + w];
            }
        }
        barrier();
    }
    if (tid < nt) {
        Y[p.y_off + (t0 + tid) * p.y_stride + p.row0 + row] = red[tid][0];
    }
}
