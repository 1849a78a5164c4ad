#version 450
// RoPE in place on X (n, n_head * head_dim): token t sits at position pos0 + t; the first
// n_rot dimensions of each head turn by theta_i = pos * base^(-2i / n_rot), paired as
// (2i, 2i+1) (normal) or (i, i + n_rot/2) (NeoX). One invocation per pair.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Xb { float X[]; };
layout(push_constant) uniform P {
    uint n;
    uint n_head;
    uint head_dim;
    uint n_rot;
    uint pos0;
    float base;
    uint neox;
} p;

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint h = gl_GlobalInvocationID.y;
    uint t = gl_GlobalInvocationID.z;
    uint half_rot = p.n_rot / 2;
    if (i >= half_rot || h >= p.n_head || t >= p.n) {
        return;
    }
    float theta = float(p.pos0 + t) * pow(p.base, -2.0 * float(i) / float(p.n_rot));
    float c = cos(theta);
    float s = sin(theta);
    uint b = (t * p.n_head + h) * p.head_dim;
    uint a0 = p.neox != 0 ? b + i : b + 2 * i;
    uint a1 = p.neox != 0 ? b + i + half_rot : b + 2 * i + 1;
    float x0 = X[a0];
    float x1 = X[a1];
    X[a0] = x0 * c - x1 * s;
    X[a1] = x0 * s + x1 * c;
}
