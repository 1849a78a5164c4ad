//! K-quant dot products in the arithmetic of llama.cpp's other CPU matmul paths, which differ
//! from `ggml_vec_dot_*` only in where the exact integer sums meet the float scales:
//! - repacked Q4_K (`q4_K_8x8_q8_K`, AVX2, weights with `rows % 8 == 0`): [`dot_q4_k_gemv`]
//!   (`ggml_gemv_q4_K_8x8_q8_K`, one FMA per superblock) and [`dot_q4_k_gemm`]
//!   (`ggml_gemm_q4_K_8x8_q8_K`, one FMA per pair of sub-blocks, on activations quantized by
//!   `ggml_quantize_mat_q8_K_4x8`);
//! - the tiled K-quant matmul (`tiled/tiled-kernel.cpp`, 8 or more tokens, weights not
//!   repacked): [`dot_q4_k_tiled`], [`dot_q6_k_tiled`], one FMA per superblock into the output.
//!
//! Each is the scalar specification its AVX2 kernel ([`crate::simd`]) is tested against; all
//! take `(n, weight row, Q8_K activation row)` like [`super::DotFn`].

use super::dequant::q6k_quads;
use crate::blocks::*;

/// Per sub-block of 32: `scale_s · Σ q·a` and `min_s · Σ a` (both exact), for Q4_K/Q5_K whose
/// unsigned quants `q` are given.
fn k_scale_min_sums(
    packed: &[u8; K_SCALE_SIZE],
    q: &[u8; QK_K],
    y: &BlockQ8K,
) -> ([i32; 8], [i32; 8]) {
    let (mut isum, mut imin) = ([0i32; 8], [0i32; 8]);
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, packed);
        let dot: i32 = (32 * s..32 * s + 32)
            .map(|e| q[e] as i32 * y.qs[e] as i32)
            .sum();
        isum[s] = sc as i32 * dot;
        imin[s] = m as i32 * (y.bsums[2 * s] as i32 + y.bsums[2 * s + 1] as i32);
    }
    (isum, imin)
}

fn q4_k_sums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 8], [i32; 8]) {
    let mut q = [0u8; QK_K];
    for (e, v) in q.iter_mut().enumerate() {
        *v = (x.qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0xF;
    }
    k_scale_min_sums(&x.scales, &q, y)
}

/// `ggml_gemv_q4_K_8x8_q8_K`: per superblock, `acc += isum·(d·d_a)`, `accm += imin·(dmin·d_a)`
/// (FMAs), result `acc - accm`.
pub(crate) fn dot_q4_k_gemv(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in iter_blocks::<BlockQ4K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let (isum, imin) = q4_k_sums(&x, &y);
        let (isum, imin): (i32, i32) = (isum.iter().sum(), imin.iter().sum());
        acc = (isum as f32).mul_add(x.d.to_f32() * y.d, acc);
        accm = (imin as f32).mul_add(x.dmin.to_f32() * y.d, accm);
    }
    acc - accm
}

/// `ggml_gemm_q4_K_8x8_q8_K`: as [`dot_q4_k_gemv`] but one FMA per pair of sub-blocks (64
/// elements), four per superblock.
pub(crate) fn dot_q4_k_gemm(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in iter_blocks::<BlockQ4K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let (isum, imin) = q4_k_sums(&x, &y);
        let (d, dmin) = (x.d.to_f32() * y.d, x.dmin.to_f32() * y.d);
        for p in 0..4 {
            acc = ((isum[2 * p] + isum[2 * p + 1]) as f32).mul_add(d, acc);
            accm = ((imin[2 * p] + imin[2 * p + 1]) as f32).mul_add(dmin, accm);
        }
    }
    acc - accm
}

/// Tiled Q4_K (`tiled_run_microtile_avx2<32, true, 0>`): per superblock
/// `res = d·s1 - dmin·s2` (the subtraction an FMA), then `y += res·d_a` (FMA).
pub(crate) fn dot_q4_k_tiled(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ4K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let (isum, imin) = q4_k_sums(&x, &y);
        let (s1, s2): (i32, i32) = (isum.iter().sum(), imin.iter().sum());
        let res = (-x.dmin.to_f32()).mul_add(s2 as f32, x.d.to_f32() * s1 as f32);
        acc = res.mul_add(y.d, acc);
    }
    acc
}

/// Tiled Q6_K (`tiled_run_microtile_avx2<16, false, 32>`): per superblock the exact
/// `s1 = Σ scale·(q - 32)·a`, `res = d·s1`, then `y += res·d_a` (FMA).
pub(crate) fn dot_q6_k_tiled(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ6K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut s1 = 0i32;
        for h in 0..2 {
            for l in 0..32 {
                let q = q6k_quads(&x.ql[64 * h..], &x.qh[32 * h..], l);
                for (k, v) in q.into_iter().enumerate() {
                    let e = 128 * h + 32 * k + l;
                    s1 += x.scales[e / 16] as i32 * v as i32 * y.qs[e] as i32;
                }
            }
        }
        let res = x.d.to_f32() * s1 as f32;
        acc = res.mul_add(y.d, acc);
    }
    acc
}

/// `ggml_gemv_q4_0_8x8_q8_0` and `ggml_gemm_q4_0_8x8_q8_0` (AVX2; they compute alike, and
/// `ggml_quantize_mat_q8_0_4x8` quantizes like x86's `quantize_row_q8_0`): per block of 32 the
/// exact `isum = Σ (q - 8)·a`, then `acc = fma(isum, d·d_a, acc)`, one accumulator per output.
pub(crate) fn dot_q4_0_repack(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ4_0>(w).zip(iter_blocks::<BlockQ8_0>(a)) {
        let mut isum = 0i32;
        for (j, &q) in x.qs.iter().enumerate() {
            isum += ((q & 0xF) as i32 - 8) * y.qs[j] as i32;
            isum += ((q >> 4) as i32 - 8) * y.qs[j + 16] as i32;
        }
        acc = (isum as f32).mul_add(x.d.to_f32() * y.d.to_f32(), acc);
    }
    acc
}

/// Tiled Q5_K (`tiled_run_microtile_avx2<32, true, 0>`, as Q4_K with 5-bit quants).
pub(crate) fn dot_q5_k_tiled(_n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in iter_blocks::<BlockQ5K>(w).zip(iter_blocks::<BlockQ8K>(a)) {
        let mut q = [0u8; QK_K];
        for (e, v) in q.iter_mut().enumerate() {
            let (sub, l) = (e / 32, e % 32);
            let lo = (x.qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0xF;
            *v = lo | (((x.qh[l] >> sub) & 1) << 4);
        }
        let (isum, imin) = k_scale_min_sums(&x.scales, &q, &y);
        let (s1, s2): (i32, i32) = (isum.iter().sum(), imin.iter().sum());
        let res = (-x.dmin.to_f32()).mul_add(s2 as f32, x.d.to_f32() * s1 as f32);
        acc = res.mul_add(y.d, acc);
    }
    acc
}
