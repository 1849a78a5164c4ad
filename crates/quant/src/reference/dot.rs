//! Scalar dot products, one per weight type, after `ggml_vec_dot_*_generic`.
//!
//! Each takes `n` and the two rows as bytes; lengths were checked by the caller (a short
//! buffer only makes the zip stop early, it cannot read out of bounds).

#![allow(clippy::needless_range_loop)] // why: index loops mirror ggml's C for easy review

use super::dequant::q6k_quads;
use crate::blocks::*;
use crate::GgmlType;

/// A dot-product kernel: `(n, weights, activations) -> sum`.
pub(crate) type DotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The scalar kernel for weights of type `ty`, or `None` for activation-only types.
pub(crate) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    Some(match ty {
        GgmlType::F32 => dot_f32,
        GgmlType::F16 => dot_f16,
        GgmlType::BF16 => dot_bf16,
        GgmlType::Q4_0 => dot_q4_0_q8_0,
        GgmlType::Q4_1 => dot_q4_1_q8_1,
        GgmlType::Q5_0 => dot_q5_0_q8_0,
        GgmlType::Q5_1 => dot_q5_1_q8_1,
        GgmlType::Q8_0 => dot_q8_0_q8_0,
        GgmlType::Q2_K => dot_q2_k_q8_k,
        GgmlType::Q3_K => dot_q3_k_q8_k,
        GgmlType::Q4_K => dot_q4_k_q8_k,
        GgmlType::Q5_K => dot_q5_k_q8_k,
        GgmlType::Q6_K => dot_q6_k_q8_k,
        GgmlType::Q8_1 | GgmlType::Q8_K => return None,
    })
}

/// Sums products of two float rows, accumulating in f64 like ggml's scalar `ggml_vec_dot_f32`.
fn dot_floats(w: &[u8], a: &[u8], width: usize, conv: fn(&[u8]) -> f32) -> f32 {
    let mut sum = 0.0f64;
    for (x, y) in w.chunks_exact(width).zip(a.chunks_exact(width)) {
        sum += (conv(x) * conv(y)) as f64;
    }
    sum as f32
}

fn dot_f32(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_floats(w, a, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn dot_f16(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_floats(w, a, 2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
}

fn dot_bf16(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_floats(w, a, 2, |b| {
        f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
    })
}

/// Integer dot of 32 weight quants (given by `q(j)`) with a Q8 block's quants.
#[inline]
fn isum32(q8: &[i8; QK], q: impl Fn(usize) -> i32) -> i32 {
    (0..QK).map(|j| q(j) * q8[j] as i32).sum()
}

/// The 5-bit quant `j` of a Q5 block (low nibble from `qs`, fifth bit from `qh`).
#[inline]
fn q5(qs: &[u8; 16], qh: u32, j: usize) -> i32 {
    let low = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
    (low as i32) | ((((qh >> j) & 1) as i32) << 4)
}

#[inline]
fn q4(qs: &[u8; 16], j: usize) -> i32 {
    (if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 }) as i32
}

fn dot_q4_0_q8_0(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ4_0>(w).zip(iter_blocks::<BlockQ8_0>(a)) {
        let sumi = isum32(&y.qs, |j| q4(&x.qs, j) - 8);
        sumf += sumi as f32 * x.d.to_f32() * y.d.to_f32();
    }
    sumf
}

fn dot_q4_1_q8_1(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ4_1>(w).zip(iter_blocks::<BlockQ8_1>(a)) {
        let sumi = isum32(&y.qs, |j| q4(&x.qs, j));
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

fn dot_q5_0_q8_0(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ5_0>(w).zip(iter_blocks::<BlockQ8_0>(a)) {
        let qh = u32::from_le_bytes(x.qh);
        let sumi = isum32(&y.qs, |j| q5(&x.qs, qh, j) - 16);
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32;
    }
    sumf
}

fn dot_q5_1_q8_1(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ5_1>(w).zip(iter_blocks::<BlockQ8_1>(a)) {
        let qh = u32::from_le_bytes(x.qh);
        let sumi = isum32(&y.qs, |j| q5(&x.qs, qh, j));
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

fn dot_q8_0_q8_0(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ8_0>(w).zip(iter_blocks::<BlockQ8_0>(a)) {
        let sumi = isum32(&y.qs, |j| x.qs[j] as i32);
        sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sumf
}

fn dot_q2_k_q8_k(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ2K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let summs: i32 = (0..16)
            .map(|j| y.bsums[j] as i32 * (x.scales[j] >> 4) as i32)
            .sum();
        let dall = y.d * x.d.to_f32();
        let dmin = y.d * x.dmin.to_f32();
        let mut isum = 0i32;
        let mut is = 0;
        let mut q8 = y.qs.chunks_exact(16);
        for q2 in x.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let d = (x.scales[is] & 0xF) as i32;
                    is += 1;
                    let q8 = q8.next().unwrap_or(&[0; 16]);
                    let isuml: i32 = (0..16)
                        .map(|l| q8[l] as i32 * ((q2[16 * half + l] >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// The generic K-quant pattern: signed quants `a` (256) × `y.qs`, scaled per 16 by `scale(j)`,
/// accumulated in 8 integer lanes and then 8 float lanes, as ggml's generic code does.
#[inline]
fn k_lanes(
    a: &[i8; QK_K],
    y: &BlockQ8K,
    scale: impl Fn(usize) -> i32,
    d: f32,
    sums: &mut [f32; 8],
) {
    let mut aux32 = [0i32; 8];
    for j in 0..QK_K / 16 {
        let sc = scale(j);
        for h in 0..2 {
            for l in 0..8 {
                let k = 16 * j + 8 * h + l;
                aux32[l] += sc * (y.qs[k] as i16 * a[k] as i16) as i32;
            }
        }
    }
    for l in 0..8 {
        sums[l] += d * aux32[l] as f32;
    }
}

fn dot_q3_k_q8_k(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in iter_blocks::<BlockQ3K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut aux8 = [0i8; QK_K];
        let mut m = 1u8;
        for (c, q3) in x.qs.chunks_exact(32).enumerate() {
            for (s, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                for l in 0..32 {
                    let hi = if x.hmask[l] & m != 0 { 0 } else { 4 };
                    aux8[128 * c + 32 * s + l] = ((q3[l] >> shift) & 3) as i8 - hi;
                }
                m <<= 1;
            }
        }
        let scales = q3k_scales(&x.scales);
        k_lanes(
            &aux8,
            &y,
            |j| scales[j] as i32,
            x.d.to_f32() * y.d,
            &mut sums,
        );
    }
    sums.iter().sum()
}

/// Unpacks Q4_K/Q5_K scales and mins (8 each) and the mins' dot with `bsums`.
fn k4_scales_mins(packed: &[u8; K_SCALE_SIZE], y: &BlockQ8K) -> ([i32; 8], i32) {
    let mut scales = [0i32; 8];
    let mut sumi = 0i32;
    for (j, s) in scales.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(j, packed);
        *s = sc as i32;
        sumi += (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32) * m as i32;
    }
    (scales, sumi)
}

fn dot_q4_k_q8_k(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut sums, mut sumf) = ([0.0f32; 8], 0.0f32);
    for (x, y) in iter_blocks::<BlockQ4K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut aux8 = [0i8; QK_K];
        for (c, q) in x.qs.chunks_exact(32).enumerate() {
            for l in 0..32 {
                aux8[64 * c + l] = (q[l] & 0xF) as i8;
                aux8[64 * c + 32 + l] = (q[l] >> 4) as i8;
            }
        }
        let (scales, sumi) = k4_scales_mins(&x.scales, &y);
        k_lanes(&aux8, &y, |j| scales[j / 2], x.d.to_f32() * y.d, &mut sums);
        sumf -= x.dmin.to_f32() * y.d * sumi as f32;
    }
    sums.iter().fold(sumf, |s, v| s + v)
}

fn dot_q5_k_q8_k(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut sums, mut sumf) = ([0.0f32; 8], 0.0f32);
    for (x, y) in iter_blocks::<BlockQ5K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut aux8 = [0i8; QK_K];
        for (c, q) in x.qs.chunks_exact(32).enumerate() {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for l in 0..32 {
                let h1 = if x.qh[l] & m1 != 0 { 16 } else { 0 };
                let h2 = if x.qh[l] & m2 != 0 { 16 } else { 0 };
                aux8[64 * c + l] = ((q[l] & 0xF) + h1) as i8;
                aux8[64 * c + 32 + l] = ((q[l] >> 4) + h2) as i8;
            }
        }
        let (scales, sumi) = k4_scales_mins(&x.scales, &y);
        k_lanes(&aux8, &y, |j| scales[j / 2], x.d.to_f32() * y.d, &mut sums);
        sumf -= x.dmin.to_f32() * y.d * sumi as f32;
    }
    sums.iter().fold(sumf, |s, v| s + v)
}

fn dot_q6_k_q8_k(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in iter_blocks::<BlockQ6K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut aux8 = [0i8; QK_K];
        for h in 0..2 {
            for l in 0..32 {
                let q = q6k_quads(&x.ql[64 * h..], &x.qh[32 * h..], l);
                for (k, v) in q.into_iter().enumerate() {
                    aux8[128 * h + 32 * k + l] = v;
                }
            }
        }
        k_lanes(
            &aux8,
            &y,
            |j| x.scales[j] as i32,
            x.d.to_f32() * y.d,
            &mut sums,
        );
    }
    sums.iter().sum()
}
