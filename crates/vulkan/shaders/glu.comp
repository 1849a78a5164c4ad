#version 450
// Gated activations in place over G (n elements): G = act(G) * U, act = SiLU (kind 0, SwiGLU)
// or tanh-approximated GELU (kind 1, GeGLU).
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
    } else {
        // GELU(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))), written with exp so
        // large |x| cannot overflow tanh's formula: tanh(z) = 1 - 2 / (exp(2z) + 1).
        float z = 0.7978845608 * x * (1.0 + 0.044715 * x * x);
        float th = 1.0 - 2.0 / (exp(2.0 * clamp(z, -15.0, 15.0)) + 1.0);
        a = 0.5 * x * (1.0 + th);
    }
    G[i] = a * U[i];
}
