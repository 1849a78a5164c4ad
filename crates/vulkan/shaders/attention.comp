#version 450
// Causal attention of a batch's queries over a layer of the paged f16 KV cache.
// Q, OUT: (n, n_head * head_dim); K, V: rows of kv_dim = n_head_kv * head_dim, position pos in
// slot TABLE[table_off + pos / 16] * 16 + pos % 16 (the sequence's block table).
// Token t sits at position pos0 + t and sees keys lo ..= pos0 + t (lo = 0, or the start of its
// sliding window). One workgroup per (head, token); keys go in tiles of 64, one per thread,
// with a running maximum and sum (online softmax), each thread owning head_dim / 64 output
// dimensions.
// f16acc = 1 follows llama.cpp's CPU flash attention for batches under 64 tokens: the query
// rounded to f16, keys taken one by one with the running maximum, and the value accumulator
// rounded to f16 after every step. f16acc = 0 keeps everything in f32 and takes the maximum per
// tile.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Qb { float Q[]; };
layout(std430, binding = 1) readonly buffer Kb { uint K[]; };
layout(std430, binding = 2) readonly buffer Vb { uint V[]; };
layout(std430, binding = 3) writeonly buffer Ob { float OUT[]; };
layout(std430, binding = 4) readonly buffer Tb { uint TABLE[]; };
layout(push_constant) uniform P {
    uint n;
    uint n_head;
    uint n_head_kv;
    uint head_dim;
    uint pos0;
    float scale;
    uint window;
    uint table_off;
    uint f16acc;
} p;
#include "common.glsl"

#define MAXD 512
#define DPT (MAXD / 64)
shared float qs[MAXD];
shared float prob[64];
shared float red[64];
shared uint slot[64];
shared float score[64];

float to_f16(float x) {
    return unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x;
}

void main() {
    uint h = gl_WorkGroupID.x;
    uint t = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x;
    uint hd = p.head_dim;
    uint kv_dim = p.n_head_kv * hd;
    uint kvh = h / (p.n_head / p.n_head_kv);
    uint qb = (t * p.n_head + h) * hd;
    for (uint d = tid; d < hd; d += 64) {
        qs[d] = p.f16acc != 0 ? to_f16(Q[qb + d]) : Q[qb + d];
    }
    barrier();
    uint hi = p.pos0 + t;
    uint lo = (p.window != 0 && hi + 1 > p.window) ? hi + 1 - p.window : 0;
    float m = -1.0 / 0.0;
    float l = 0.0;
    float acc[DPT];
    for (uint j = 0; j < DPT; j++) {
        acc[j] = 0.0;
    }
    for (uint k0 = lo; k0 <= hi; k0 += 64) {
        uint key = k0 + tid;
        float s = -1.0 / 0.0;
        slot[tid] = key <= hi ? TABLE[p.table_off + key / 16] * 16 + key % 16 : 0;
        if (key <= hi) {
            uint kb = slot[tid] * kv_dim + kvh * hd;
            float dot = 0.0;
            for (uint d = 0; d < hd; d += 2) {
                vec2 kk = unpackHalf2x16(K[(kb + d) >> 1]);
                dot += qs[d] * kk.x + qs[d + 1] * kk.y;
            }
            s = dot * p.scale;
        }
        uint nk = min(64, hi + 1 - k0);
        if (p.f16acc != 0) {
            score[tid] = s;
            barrier();
            for (uint i = 0; i < nk; i++) {
                float si = score[i];
                float ms = 1.0;
                float vs = 1.0;
                bool grew = si > m;
                if (grew) {
                    ms = exp(m - si);
                    m = si;
                } else {
                    vs = exp(si - m);
                }
                for (uint j = 0; j < DPT; j++) {
                    uint d = tid + 64 * j;
                    if (d < hd) {
                        float a = grew ? to_f16(acc[j] * ms) : acc[j];
                        acc[j] = to_f16(fma(F16_AT(V, slot[i] * kv_dim + kvh * hd + d), vs, a));
                    }
                }
                l = fma(l, ms, vs);
            }
            barrier();
            continue;
        }
        red[tid] = s;
        barrier();
        for (uint w = 32; w > 0; w >>= 1) {
            if (tid < w) {
                red[tid] = max(red[tid], red[tid + w]);
            }
            barrier();
        }
        float m_new = max(m, red[0]);
        float corr = exp(m - m_new);
        float e = key <= hi ? exp(s - m_new) : 0.0;
        prob[tid] = e;
        l = l * corr + e;
        m = m_new;
        barrier();
        for (uint j = 0; j < DPT; j++) {
            uint d = tid + 64 * j;
            if (d < hd) {
                float a = acc[j] * corr;
                for (uint i = 0; i < nk; i++) {
                    a += prob[i] * F16_AT(V, slot[i] * kv_dim + kvh * hd + d);
                }
                acc[j] = a;
            }
        }
        barrier();
    }
    red[tid] = l;
    barrier();
    for (uint w = 32; w > 0; w >>= 1) {
        if (tid < w) {
            red[tid] += red[tid + w];
        }
        barrier();
    }
    // With f16acc every thread holds the whole sum; otherwise each its keys' part.
    float total = p.f16acc != 0 ? l : red[0];
    float inv = total == 0.0 ? 0.0 : 1.0 / total;
    for (uint j = 0; j < DPT; j++) {
        uint d = tid + 64 * j;
        if (d < hd) {
            OUT[qb + d] = acc[j] * inv;
        }
    }
}
