//! AVX2 kernels for llama.cpp's matmul paths other than `vec_dot` (see
//! [`crate::reference::paths`] for their scalar specifications): the repacked
//! `q4_0_8x8`/`q4_K_8x8` GEMV and GEMM, and the tiled K-quant matmul.
//!
//! The integer sums are those of the `ggml_vec_dot_*` kernels of the parent module (exact, so
//! any lane order gives the same integers); what these reproduce is where the sums meet the
//! float scales. The float steps of up to four tokens run side by side in the lanes of one
//! `__m128`, each lane doing exactly the scalar operations of its token.

#![allow(unsafe_op_in_unsafe_fn)] // why: as in the parent module
#![allow(clippy::needless_range_loop)] // why: per-token index loops mirror ggml's C

use super::{
    bytes_from_nibbles_32, f16x1, k4_scale_shuffles, k4_scales_mins, load32, q4k_nibbles,
    Q8K_BSUMS, Q8K_QS, Q8K_SIZE,
};
use super::{ChunkFn, TileFn, MAX_TILE};
use crate::matmul::Path;
use crate::GgmlType;
use std::arch::x86_64::*;

/// The tile kernel for a llama.cpp matmul path other than `vec_dot`, if there is one here.
pub(crate) fn path_tile(ty: GgmlType, path: Path) -> Option<TileFn> {
    if !super::available() {
        return None;
    }
    Some(match (ty, path) {
        (GgmlType::Q4_0, Path::RepackGemv | Path::RepackGemm) => tile_q4_0_repack,
        (GgmlType::Q4_K, Path::RepackGemv) => tile_q4_k_gemv,
        (GgmlType::Q4_K, Path::RepackGemm) => tile_q4_k_gemm,
        (GgmlType::Q4_K, Path::Tiled) => tile_q4_k_tiled,
        (GgmlType::Q5_K, Path::Tiled) => super::tile_q5_k_tiled,
        (GgmlType::Q6_K, Path::Tiled) => tile_q6_k_tiled,
        _ => return None,
    })
}

/// The chunk kernel for the same path (see [`ChunkFn`]), with [`path_tile`]'s arithmetic.
pub(crate) fn path_chunk(ty: GgmlType, path: Path) -> Option<ChunkFn> {
    if !super::available() {
        return None;
    }
    Some(match (ty, path) {
        (GgmlType::Q4_0, Path::RepackGemv | Path::RepackGemm) => chunk_q4_0_repack,
        (GgmlType::Q4_K, Path::RepackGemv) => chunk_q4_k_gemv,
        (GgmlType::Q4_K, Path::RepackGemm) => chunk_q4_k_gemm,
        (GgmlType::Q4_K, Path::Tiled) => chunk_q4_k_tiled,
        (GgmlType::Q5_K, Path::Tiled) => super::chunk_q5_k_tiled,
        (GgmlType::Q6_K, Path::Tiled) => chunk_q6_k_tiled,
        _ => return None,
    })
}

each_row!(rows_q4_0_repack, q4_0_repack);
each_row!(rows_q4_k_gemv, q4_k_gemv);
each_row!(rows_q4_k_gemm, q4_k_gemm);
each_row!(rows_q4_k_tiled, q4_k_tiled);
each_row!(rows_q6_k_tiled, q6_k_tiled);

tile_fns!(
    tile_q4_0_repack,
    chunk_q4_0_repack,
    q4_0_repack,
    rows_q4_0_repack,
    18,
    34,
    32
);
tile_fns!(
    tile_q4_k_gemv,
    chunk_q4_k_gemv,
    q4_k_gemv,
    rows_q4_k_gemv,
    144,
    292,
    256
);
tile_fns!(
    tile_q4_k_gemm,
    chunk_q4_k_gemm,
    q4_k_gemm,
    rows_q4_k_gemm,
    144,
    292,
    256
);
tile_fns!(
    tile_q4_k_tiled,
    chunk_q4_k_tiled,
    q4_k_tiled,
    rows_q4_k_tiled,
    144,
    292,
    256
);
tile_fns!(
    tile_q6_k_tiled,
    chunk_q6_k_tiled,
    q6_k_tiled,
    rows_q6_k_tiled,
    210,
    292,
    256
);

/// `[Σ v0, Σ v1, Σ v2, Σ v3]` over the eight i32 lanes of each (exact integer sums).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum4_i32(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
}

/// Rows of `m` become columns: `out[j][t] = m[t][j]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn transpose4(m: [__m128i; 4]) -> [__m128i; 4] {
    let a = _mm_unpacklo_epi32(m[0], m[1]);
    let b = _mm_unpacklo_epi32(m[2], m[3]);
    let c = _mm_unpackhi_epi32(m[0], m[1]);
    let d = _mm_unpackhi_epi32(m[2], m[3]);
    [
        _mm_unpacklo_epi64(a, b),
        _mm_unpackhi_epi64(a, b),
        _mm_unpacklo_epi64(c, d),
        _mm_unpackhi_epi64(c, d),
    ]
}

/// Stores the first `T` lanes of `v` at `out`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_lanes<const T: usize>(v: __m128, out: *mut f32) {
    let mut lanes = [0.0f32; 4];
    _mm_storeu_ps(lanes.as_mut_ptr(), v);
    for t in 0..T {
        *out.add(t) = lanes[t];
    }
}

/// `ggml_gemv_q4_0_8x8_q8_0` / `ggml_gemm_q4_0_8x8_q8_0`: the exact integer sum of each block,
/// then `acc = fma(isum, d·d_a, acc)`, one accumulator per output.
///
/// # Safety
/// As a raw tile (see the top of the parent module).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_repack<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = _mm_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for i in 0..nb {
        let xb = w.add(18 * i);
        let dx = _mm_set1_ps(f16x1(xb));
        let q = _mm256_sub_epi8(bytes_from_nibbles_32(xb.add(2)), _mm256_set1_epi8(8));
        let ax = _mm256_sign_epi8(q, q);
        let mut dots = [_mm256_setzero_si256(); 4];
        let mut dy = [0.0f32; 4];
        for t in 0..T {
            let yb = a.add(a_stride * t + 34 * i);
            let sy = _mm256_sign_epi8(load32(yb.add(2)), q);
            dots[t] = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(ax, sy));
            dy[t] = f16x1(yb);
        }
        let d = _mm_mul_ps(dx, _mm_loadu_ps(dy.as_ptr()));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4_i32(dots)), d, acc);
    }
    store_lanes::<T>(acc, out);
}

/// Which float steps [`q4_k_paths`] reproduces.
const GEMV: u8 = 0;
const GEMM: u8 = 1;
const TILED: u8 = 2;

/// Q4_K against Q8_K with the integer sums of `ggml_vec_dot_q4_K_q8_K`, finished as
/// `ggml_gemv_q4_K_8x8_q8_K` (`MODE == GEMV`: per superblock `acc += isum·(d·d_a)`,
/// `accm += imin·(dmin·d_a)`, result `acc - accm`), `ggml_gemm_q4_K_8x8_q8_K` (`GEMM`: the
/// same per pair of sub-blocks) or the tiled microkernel (`TILED`: per superblock
/// `res = fma(-dmin, imin, d·isum)`, `y = fma(res, d_a, y)`).
///
/// # Safety
/// As a raw tile (see the top of the parent module).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_paths<const T: usize, const MODE: u8>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for i in 0..nb {
        let xb = w.add(144 * i);
        let (dx, dminx) = (_mm_set1_ps(f16x1(xb)), _mm_set1_ps(f16x1(xb.add(2))));
        let (mins, scales) = k4_scales_mins(xb.add(4));
        let q4 = xb.add(16);
        let (q4l, q4h) = q4k_nibbles(q4, m4);
        let (scale_l, scale_h) = k4_scale_shuffles(scales);
        // Per token: lane p of `isum` / `imin` is pair p (sub-blocks 2p, 2p + 1).
        let mut isum = [_mm_setzero_si128(); 4];
        let mut imin = [_mm_setzero_si128(); 4];
        let mut yd = [0.0f32; 4];
        for t in 0..T {
            let yb = a.add(a_stride * t + Q8K_SIZE * i);
            yd[t] = yb.cast::<f32>().read_unaligned();
            let q8sums = load32(yb.add(Q8K_BSUMS));
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(q8sums),
                _mm256_extracti128_si256(q8sums, 1),
            );
            imin[t] = _mm_madd_epi16(mins, q8s);
            let q8 = yb.add(Q8K_QS);
            isum[t] = hsum4_i32(std::array::from_fn(|j| {
                let p16l = _mm256_maddubs_epi16(q4l[j], load32(q8.add(64 * j)));
                let p16h = _mm256_maddubs_epi16(q4h[j], load32(q8.add(64 * j + 32)));
                _mm256_add_epi32(
                    _mm256_madd_epi16(scale_l[j], p16l),
                    _mm256_madd_epi16(scale_h[j], p16h),
                )
            }));
        }
        // Now lane t is token t.
        let (isum, imin) = (transpose4(isum), transpose4(imin));
        let yd = _mm_loadu_ps(yd.as_ptr());
        if MODE == GEMM {
            let (d, dmin) = (_mm_mul_ps(dx, yd), _mm_mul_ps(dminx, yd));
            for p in 0..4 {
                acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum[p]), d, acc);
                acc_m = _mm_fmadd_ps(_mm_cvtepi32_ps(imin[p]), dmin, acc_m);
            }
        } else {
            let sum4 = |v: [__m128i; 4]| {
                _mm_cvtepi32_ps(_mm_add_epi32(
                    _mm_add_epi32(v[0], v[1]),
                    _mm_add_epi32(v[2], v[3]),
                ))
            };
            let (s1, s2) = (sum4(isum), sum4(imin));
            if MODE == GEMV {
                acc = _mm_fmadd_ps(s1, _mm_mul_ps(dx, yd), acc);
                acc_m = _mm_fmadd_ps(s2, _mm_mul_ps(dminx, yd), acc_m);
            } else {
                let res = _mm_fnmadd_ps(dminx, s2, _mm_mul_ps(dx, s1));
                acc = _mm_fmadd_ps(res, yd, acc);
            }
        }
    }
    let y = if MODE == TILED {
        acc
    } else {
        _mm_sub_ps(acc, acc_m)
    };
    store_lanes::<T>(y, out);
}

/// # Safety
/// As a raw tile.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_gemv<const T: usize>(nb: usize, w: *const u8, a: *const u8, s: usize, o: *mut f32) {
    q4_k_paths::<T, GEMV>(nb, w, a, s, o)
}

/// # Safety
/// As a raw tile.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_gemm<const T: usize>(nb: usize, w: *const u8, a: *const u8, s: usize, o: *mut f32) {
    q4_k_paths::<T, GEMM>(nb, w, a, s, o)
}

/// # Safety
/// As a raw tile.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_tiled<const T: usize>(nb: usize, w: *const u8, a: *const u8, s: usize, o: *mut f32) {
    q4_k_paths::<T, TILED>(nb, w, a, s, o)
}

/// Q6_K against Q8_K with the integer sums of `ggml_vec_dot_q6_K_q8_K`, finished as the tiled
/// microkernel (`tiled_run_microtile_avx2<16, false, 32>`): per superblock `res = d·s1`,
/// `y = fma(res, d_a, y)`.
///
/// # Safety
/// As a raw tile (see the top of the parent module).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_tiled<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = _mm_setzero_ps();
    for i in 0..nb {
        let xb = w.add(210 * i);
        let (ql, qh, sc) = (xb, xb.add(128), xb.add(192));
        let dx = _mm_set1_ps(f16x1(xb.add(208)));
        let scales = _mm_loadu_si128(sc.cast());
        let scales_16 = _mm256_cvtepi8_epi16(scales);
        let mut q = [_mm256_setzero_si256(); 8];
        let mut s16 = [_mm256_setzero_si256(); 8];
        for j in 0..2 {
            let q4bits1 = load32(ql.add(64 * j));
            let q4bits2 = load32(ql.add(64 * j + 32));
            let q4bits_h = load32(qh.add(32 * j));
            let h0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m3), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)), 2);
            let h2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
            let h3 = _mm256_srli_epi16(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)), 2);
            q[4 * j] = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), h0);
            q[4 * j + 1] = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), h1);
            q[4 * j + 2] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m15), h2);
            q[4 * j + 3] =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m15), h3);
            for k in 0..4 {
                let is = 4 * j + k;
                let shuf = _mm_set_epi64x(
                    0x0101010101010101 * (2 * is as i64 + 1),
                    0x0101010101010101 * (2 * is as i64),
                );
                s16[is] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf));
            }
        }
        let mut sums = [_mm256_setzero_si256(); 4];
        let mut yd = [0.0f32; 4];
        for t in 0..T {
            let yb = a.add(a_stride * t + Q8K_SIZE * i);
            yd[t] = yb.cast::<f32>().read_unaligned();
            let q8sums = load32(yb.add(Q8K_BSUMS));
            let q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(q8sums, scales_16), 5);
            let q8 = yb.add(Q8K_QS);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..2 {
                let p: [__m256i; 4] = std::array::from_fn(|k| {
                    let p16 = _mm256_maddubs_epi16(q[4 * j + k], load32(q8.add(128 * j + 32 * k)));
                    _mm256_madd_epi16(s16[4 * j + k], p16)
                });
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[0], p[1]));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[2], p[3]));
            }
            sums[t] = _mm256_sub_epi32(sumi, q8sclsub);
        }
        let res = _mm_mul_ps(dx, _mm_cvtepi32_ps(hsum4_i32(sums)));
        acc = _mm_fmadd_ps(res, _mm_loadu_ps(yd.as_ptr()), acc);
    }
    store_lanes::<T>(acc, out);
}
