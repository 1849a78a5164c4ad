#version 450
// Softmax in place over rows of `width`, after multiplying by `scale`. One workgroup per row.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Xb { float X[]; };
layout(push_constant) uniform P {
    uint width;
    uint rows;
    float scale;
} p;
#include "common.glsl"

shared float red[64];

void main() {
    uint row = group_linear();
    if (row >= p.rows) {
        return;
    }
    uint tid = gl_LocalInvocationID.x;
    uint b = row * p.width;
    float m = -1.0 / 0.0;
    for (uint i = tid; i < p.width; i += 64) {
        m = max(m, X[b + i] * p.scale);
    }
    red[tid] = m;
    barrier();
    for (uint w = 32; w > 0; w >>= 1) {
        if (tid < w) {
            red[tid] = max(red[tid], red[tid + w]);
        }
        barrier();
    }
    m = red[0];
    barrier();
    float s = 0.0;
    for (uint i = tid; i < p.width; i += 64) {
        float e = exp(X[b + i] * p.scale - m);
        X[b + i] = e;
        s += e;
    }
    red[tid] = s;
    barrier();
    for (uint w = 32; w > 0; w >>= 1) {
        if (tid < w) {
            red[tid] += red[tid + w];
        }
        barrier();
    }
    float inv = 1.0 / red[0];
    for (uint i = tid; i < p.width; i += 64) {
        X[b + i] *= inv;
    }
}
