#version 450
// Rounds activations the way llama.cpp's CPU backend quantizes them before an integer dot
// product with a weight type, and writes the values back as f32 (so the product that reads
// them computes what the CPU's integer sums compute, up to float summation order):
//   kind 0: Q8_0/Q8_1 blocks of 32: q = roundEven(x * 127 / amax), value = f16(amax / 127) * q
//   kind 1: Q8_K blocks of 256: m = the first element of largest magnitude, iscale = -127 / m,
//           q = min(127, roundEven(iscale * x)), value = q / iscale
//   kind 2: f16 (the value rounded to half precision)
//   kind 3: Q8_1: as kind 0, and SUMS[block] = f16(sum(q) * amax / 127) (its s)
// OUT[0 ..] = quantized X[x_off ..], `count` values; one workgroup per block.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer Xb { float X[]; };
layout(std430, binding = 1) writeonly buffer Ob { float OUT[]; };
layout(std430, binding = 2) writeonly buffer Sb { float SUMS[]; };
layout(push_constant) uniform P {
    uint count;
    uint x_off;
    uint kind;
} p;
#include "common.glsl"

shared float mag[32];
shared uint pos[32];
shared float qsum[32];

float to_f16(float x) {
    return unpackHalf2x16(packHalf2x16(vec2(x, 0.0))).x;
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    if (p.kind == 2) {
        uint i = group_linear() * 32 + tid;
        if (i < p.count) {
            OUT[i] = to_f16(X[p.x_off + i]);
        }
        return;
    }
    uint bs = p.kind == 1 ? 256 : 32;
    uint b0 = group_linear() * bs;
    if (b0 >= p.count) {
        return;
    }
    uint per = bs / 32;
    // The largest magnitude and, on ties, the first position that has it.
    float best = -1.0;
    uint at = 0;
    for (uint j = 0; j < per; j++) {
        uint i = tid * per + j;
        float a = abs(X[p.x_off + b0 + i]);
        if (a > best) {
            best = a;
            at = i;
        }
    }
    mag[tid] = best;
    pos[tid] = at;
    barrier();
    for (uint w = 16; w > 0; w >>= 1) {
        if (tid < w) {
            float o = mag[tid + w];
            if (o > mag[tid] || (o == mag[tid] && pos[tid + w] < pos[tid])) {
                mag[tid] = o;
                pos[tid] = pos[tid + w];
            }
        }
        barrier();
    }
    float amax = mag[0];
    float qs = 0.0;
    for (uint j = 0; j < per; j++) {
        uint i = tid * per + j;
        float x = X[p.x_off + b0 + i];
        float v;
        if (amax == 0.0) {
            v = 0.0;
        } else if (p.kind != 1) {
            float q = clamp(roundEven(x * (127.0 / amax)), -128.0, 127.0);
            v = to_f16(amax / 127.0) * q;
            qs += q;
        } else {
            float iscale = -127.0 / X[p.x_off + b0 + pos[0]];
            float q = min(127.0, roundEven(iscale * x));
            v = q * (1.0 / iscale);
        }
        OUT[b0 + i] = v;
    }
    if (p.kind == 3) {
        qsum[tid] = qs;
        barrier();
        if (tid == 0) {
            float t = 0.0;
            for (uint j = 0; j < 32; j++) {
                t += qsum[j];
            }
            SUMS[b0 / 32] = to_f16(t * (amax / 127.0));
        }
    }
}
