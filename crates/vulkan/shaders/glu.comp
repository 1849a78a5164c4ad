#version 450
// Gated activations in place over G (n elements): G = act(G) * U, act = SiLU (kind 0, SwiGLU)
// or tanh-approximated GELU (kind 1, GeGLU). GELU is evaluated as llama.cpp's CPU backend
// does, through a table of f16 inputs and outputs: 0 below -10, x above 10, else
// f16(gelu(f16(x))).
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Gb { float G[]; };
layout(std430, binding = 1) readonly buffer Ub { float U[]; };
layout(push_constant) uniform P {
    uint n;
    uint kind;
} p;
#include "common.glsl"

void main() {
    uint i = group_linear() * 256 + gl_LocalInvocationID.x;
    if (i >= p.n) {
        return;
    }
    float x = G[i];
    float a;
    if (p.kind == 0) {
        a = x / (1.0 + exp(-x));
    } else if (x <= -10.0) {
        a = 0.0;
    } else if (x >= 10.0) {
        a = x;
    } else {
        // GELU(x) = 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x²))); |z| < 20 here, and
        // tanh(z) = 1 - 2 / (exp(2z) + 1) keeps exp finite.
        float h = unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x;
        float z = 0.7978846 * h * fma(0.044715 * h, h, 1.0);
        float th = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
        a = unpackHalf2x16(packHalf2x16(vec2(0.5 * h * (1.0 + th), 0.0))).x;
    }
    G[i] = a * U[i];
}
