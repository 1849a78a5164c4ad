#version 450
// OUT = X / sqrt(mean(X²) + eps) * w over rows of `width` (w is `width` long; rows may be
// heads of a wider activation). One workgroup per row; OUT may be X.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Xb { float X[]; };
layout(std430, binding = 1) readonly buffer Wb { float WN[]; };
layout(std430, binding = 2) buffer Ob { float OUT[]; };
layout(push_constant) uniform P {
    uint width;
    uint rows;
    float eps;
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
    float s = 0.0;
    for (uint i = tid; i < p.width; i += 64) {
        float x = X[b + i];
        s += x * x;
    }
    red[tid] = s;
    barrier();
    for (uint w = 32; w > 0; w >>= 1) {
        if (tid < w) {
            red[tid] += red[tid + w];
        }
        barrier();
    }
    float scale = 1.0 / sqrt(red[0] / float(p.width) + p.eps);
    for (uint i = tid; i < p.width; i += 64) {
        OUT[b + i] = X[b + i] * scale * WN[i];
    }
}
