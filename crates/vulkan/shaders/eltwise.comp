#version 450
// Element-wise ops over n elements of OUT: OUT = A + B (op 0), A * B (op 1), A * s (op 2).
// B is read modulo b_len, so a vector of one row's width broadcasts over rows (biases).
// OUT may be A.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Ab { float A[]; };
layout(std430, binding = 1) readonly buffer Bb { float B[]; };
layout(std430, binding = 2) writeonly buffer Ob { float OUT[]; };
layout(push_constant) uniform P {
    uint n;
    uint op;
    uint b_len;
    float s;
} p;
#include "common.glsl"

void main() {
    uint i = group_linear() * 256 + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    float a = A[i];
    float r;
    if (p.op == 0) {
        r = a + B[i % p.b_len];
    } else if (p.op == 1) {
        r = a * B[i % p.b_len];
    } else {
        r = a * p.s;
    }
    OUT[i] = r;
}
