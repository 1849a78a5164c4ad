#version 450
// Y = X · Wᵀ for one weight type: Y (n, y_stride) at y_off gets columns row0 .. row0+rows,
// X (n, cols) at x_off. One workgroup per weight row and tile of up to NT tokens: the row is
// dequantized once per tile, eight elements at a time, and each thread keeps NT partial sums
// that the workgroup adds up at the end.
// With ROW_PER_THREAD (the variant for CPU-based devices such as lavapipe, where barriers are
// costly and lanes are few) each invocation computes a whole row for the tile instead.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Wb { uint W[]; };
layout(std430, binding = 1) readonly buffer Xb { float X[]; };
// The same activations four at a time (used when rows of X start at multiples of 4).
layout(std430, binding = 1) readonly buffer X4b { vec4 X4[]; };
layout(std430, binding = 2) writeonly buffer Yb { float Y[]; };
// Q4_1: the activations' per-block sums (Q8_1's s), one per 32 values of X.
layout(std430, binding = 3) readonly buffer Sb { float S[]; };
layout(push_constant) uniform P {
    uint rows;
    uint cols;
    uint n;
    uint row_bytes;
    uint x_off;
    uint y_off;
    uint y_stride;
    uint row0;
    uint vec4_ok;
} p;
#include "common.glsl"
#if defined(TYPE_Q4_1)
#define SPLIT_MIN
#endif
#include "dequant.glsl"

#define NT 8
#ifndef ROW_PER_THREAD
shared float red[NT][64];
#endif

#ifdef ROW_PER_THREAD
void main() {
    uint row = (gl_WorkGroupID.z * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 64 + gl_LocalInvocationID.x;
    if (row >= p.rows) {
        return;
    }
    uint t0 = gl_WorkGroupID.y * NT;
    uint nt = min(NT, p.n - t0);
    float acc[NT];
    for (uint t = 0; t < NT; t++) {
        acc[t] = 0.0;
    }
    uint units = (p.cols + 7) / 8;
    for (uint u = 0; u < units; u++) {
        float v[8];
        dequant8(row * p.row_bytes, u, p.cols, v);
        uint e0 = u * 8;
        uint ne = min(8, p.cols - e0);
#ifdef SPLIT_MIN
        float mq = 0.25 * block_min(row * p.row_bytes, u);
#endif
        // Constant trip counts (guards inside) keep acc[] in registers.
        for (uint t = 0; t < NT; t++) {
            if (t < nt) {
                uint xb = p.x_off + (t0 + t) * p.cols + e0;
                float s = 0.0;
                if (p.vec4_ok != 0 && ne == 8) {
                    vec4 a = X4[xb >> 2];
                    vec4 b = X4[(xb >> 2) + 1];
                    s = dot(vec4(v[0], v[1], v[2], v[3]), a) + dot(vec4(v[4], v[5], v[6], v[7]), b);
                } else {
                    for (uint i = 0; i < 8; i++) {
                        if (i < ne) {
                            s += v[i] * X[xb + i];
                        }
                    }
                }
#ifdef SPLIT_MIN
                s += mq * S[(t0 + t) * (p.cols / 32) + (u >> 2)];
#endif
                acc[t] += s;
            }
        }
    }
    for (uint t = 0; t < NT; t++) {
        if (t < nt) {
            Y[p.y_off + (t0 + t) * p.y_stride + p.row0 + row] = acc[t];
        }
    }
}
#else
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
#ifdef SPLIT_MIN
        // A quarter of the block's m · s per unit of 8: the block's four units add up to it.
        float mq = 0.25 * block_min(row * p.row_bytes, u);
#endif
        // Constant trip counts (guards inside) keep acc[] in registers.
        for (uint t = 0; t < NT; t++) {
            if (t < nt) {
                uint xb = p.x_off + (t0 + t) * p.cols + e0;
                float s = 0.0;
                if (p.vec4_ok != 0 && ne == 8) {
                    vec4 a = X4[xb >> 2];
                    vec4 b = X4[(xb >> 2) + 1];
                    s = dot(vec4(v[0], v[1], v[2], v[3]), a) + dot(vec4(v[4], v[5], v[6], v[7]), b);
                } else {
                    for (uint i = 0; i < 8; i++) {
                        if (i < ne) {
                            s += v[i] * X[xb + i];
                        }
                    }
                }
#ifdef SPLIT_MIN
                s += mq * S[(t0 + t) * (p.cols / 32) + (u >> 2)];
#endif
                acc[t] += s;
            }
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
#endif
