//! Panel kernels for the K-quants on llama.cpp's batched x86 paths: Q4_K in the repacked
//! `q4_K_8x8` GEMV and GEMM and in the tiled matmul, Q5_K and Q6_K in the tiled matmul (see
//! `reference/paths.rs` for their scalar specifications).
//!
//! These paths use only whole sums: per superblock (or, in the repacked GEMM, per pair of
//! sub-blocks) the exact `Σ scale · Σ q·a` and `Σ min · bsum`, which then meet the float scales.
//! So the integer side is free to run sixteen rows per register: lane `r` of `vpdpbusd`
//! against four broadcast activation bytes is row `r`'s share, a sub-block's sum is multiplied
//! by its sixteen scales with one `vpmulld`, the mins' sums come from one `vpdpwssd` per pair
//! against the activations' `bsums`, and the float steps run on sixteen outputs at once, each
//! lane doing exactly its output's operations.
//!
//! Panel, per superblock of 256 columns (sixteen rows): `w[g]` lane `r` = unsigned quants
//! `4g..4g + 4` of row `r` (64 registers; Q6_K stores `q + 32`), then the scales as i32 (one
//! register per sub-block: eight for Q4_K/Q5_K, sixteen for Q6_K), then (Q4_K/Q5_K) the mins
//! as i16 pairs `(m[2p], m[2p + 1])` (four registers), then `d` and (Q4_K/Q5_K) `dmin` as f32;
//! then, for the `vec_dot`-order kernels of `kquants_dot`, each scale as the i16 pair
//! `(scale, scale)` and (Q6_K) the scales as the i16 pairs `(scale[2k], scale[2k + 1])`.
//!
//! Side data, per superblock of an activation row: for Q4_K/Q5_K the `bsums` of each pair of
//! sub-blocks as the i16 pairs `vpdpwssd` multiplies the mins' pairs with (16 bytes); for Q6_K
//! `-32 · bsum` of each sixteen quants (64 bytes), the share of Q6_K's offset.

use super::{bcast32, bcastf, panel_kernel, row_dwords, Shape};
use crate::matmul::Path;
use crate::simd::x86_avx2::load32;
use crate::simd::{Gemm, PANEL_ROWS};
use crate::GgmlType;
use std::arch::x86_64::*;

// Weight types, as const parameters.
pub(super) const Q4_K: u8 = 0;
pub(super) const Q5_K: u8 = 1;
pub(super) const Q6_K: u8 = 2;

/// Which float steps [`k4_pass`] takes: the repacked GEMV, the repacked GEMM, the tiled matmul.
const GEMV: u8 = 0;
const GEMM: u8 = 1;
const TILED: u8 = 2;

/// Q8_K activation block: f32 `d` at 0, 256 quants at 4, 16 i16 `bsums` at 260.
pub(super) const A_BLOCK: usize = 292;
pub(super) const A_QS: usize = 4;
pub(super) const A_BSUMS: usize = 260;

/// Offsets in a Q4_K/Q5_K panel superblock.
const K4_SC: usize = 4096;
pub(super) const K4_MN: usize = K4_SC + 8 * 64;
pub(super) const K4_D: usize = K4_MN + 4 * 64;
pub(super) const K4_DMIN: usize = K4_D + 64;
pub(super) const K4_SC16: usize = K4_DMIN + 64;
pub(super) const K4_BLOCK: usize = K4_SC16 + 8 * 64;
/// Offsets in a Q6_K panel superblock.
const K6_SC: usize = 4096;
pub(super) const K6_D: usize = K6_SC + 16 * 64;
pub(super) const K6_SC16: usize = K6_D + 64;
pub(super) const K6_SCPAIR: usize = K6_SC16 + 16 * 64;
pub(super) const K6_BLOCK: usize = K6_SCPAIR + 8 * 64;

pub(super) const fn shape(ty: u8) -> Shape {
    Shape {
        per: 256,
        w_block: match ty {
            Q4_K => 144,
            Q5_K => 176,
            _ => 210,
        },
        a_block: A_BLOCK,
        p_block: if ty == Q6_K { K6_BLOCK } else { K4_BLOCK },
        s_block: if ty == Q6_K { 64 } else { 16 },
    }
}

/// Decodes `n_rows` rows of `nb` superblocks into the panel (rows past `n_rows` are zero).
///
/// The quants' bytes of sixteen rows are loaded 64 at a time and transposed, so that lane `r`
/// of a register holds one dword of row `r`: four quants' bits, which shifts and masks turn
/// into one or two panel registers (the decoding of `ggml_vec_dot_q*_K_q8_K`, on sixteen rows
/// at once). The few dwords of scales and `d` are gathered (masked `vpgatherdd`) and unpacked
/// the same way, in 32-bit lanes.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `n_rows <= PANEL_ROWS` rows of `nb`
/// superblocks at `w`, `w_row` bytes apart, with `(PANEL_ROWS - 1) * w_row` below `i32::MAX`;
/// `nb * shape(TY).p_block` writable bytes at `panel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn decode<const TY: u8>(
    nb: usize,
    w: *const u8,
    w_row: usize,
    n_rows: usize,
    panel: *mut u8,
) {
    let sh = shape(TY);
    let (idx, mask) = super::row_offsets(w_row, n_rows);
    let set = _mm512_set1_epi32;
    let m4 = set(0x0F0F_0F0F);
    let lo16 = |v: __m512i| _mm512_and_si512(v, set(0xFFFF));
    // The i16 pair (a, b) in each lane, of lanes that hold i16 values.
    let pair = |a: __m512i, b: __m512i| _mm512_or_si512(lo16(a), _mm512_slli_epi32::<16>(b));
    let half = |v: __m512i| _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
    for i in 0..nb {
        // SAFETY (of every gather and `row_dwords` below): each reads dwords inside superblock
        // i of each real row (offset + 4, or + 64, <= the block size); masked-off lanes and
        // rows past `n_rows` read nothing.
        let g = |off: usize| super::gather(w.add(i * sh.w_block + off), idx, mask);
        let xb = |r: usize| w.add(r * w_row + i * sh.w_block);
        let pb = panel.add(i * sh.p_block);
        let st = |o: usize, v: __m512i| _mm512_storeu_si512(pb.add(o).cast(), v);
        if TY == Q6_K {
            // Chunk 4j + k of half j: nibbles of `ql` (low for k < 2), bits 2k, 2k + 1 of `qh`
            // moved to bits 4, 5.
            let ql = [row_dwords(xb, n_rows, 0), row_dwords(xb, n_rows, 64)];
            let qh = row_dwords(xb, n_rows, 128);
            for j in 0..2 {
                for kk in 0..8 {
                    let h8 = qh[8 * j + kk];
                    for k in 0..4 {
                        let low = ql[j][8 * (k % 2) + kk];
                        let low = if k < 2 {
                            low
                        } else {
                            _mm512_srli_epi32::<4>(low)
                        };
                        let h = _mm512_and_si512(h8, set(0x0303_0303 << (2 * k)));
                        let h = match k {
                            0 => _mm512_slli_epi32::<4>(h),
                            1 => _mm512_slli_epi32::<2>(h),
                            2 => h,
                            _ => _mm512_srli_epi32::<2>(h),
                        };
                        let q = _mm512_or_si512(_mm512_and_si512(low, m4), h);
                        st(64 * (8 * (4 * j + k) + kk), q);
                    }
                }
            }
            // Sixteen i8 scales, four per dword.
            let packed = [g(192), g(196), g(200), g(204)];
            let sc: [__m512i; 16] = std::array::from_fn(|j| {
                let v = _mm512_sllv_epi32(packed[j / 4], set(24 - 8 * (j % 4) as i32));
                _mm512_srai_epi32::<24>(v)
            });
            for j in 0..16 {
                st(K6_SC + 64 * j, sc[j]);
                st(K6_SC16 + 64 * j, pair(sc[j], sc[j]));
            }
            for k in 0..8 {
                st(K6_SCPAIR + 64 * k, pair(sc[2 * k], sc[2 * k + 1]));
            }
            let d = _mm512_srli_epi32::<16>(g(206));
            _mm512_storeu_ps(pb.add(K6_D).cast(), half(d));
        } else {
            // Dword kk of 32-byte group j: low nibbles are quants of chunk 2j, high ones of
            // chunk 2j + 1; Q5_K's bit c of `qh` byte l adds 16 to quant l of chunk c.
            let qs_at = if TY == Q4_K { 16 } else { 48 };
            let qs = [
                row_dwords(xb, n_rows, qs_at),
                row_dwords(xb, n_rows, qs_at + 64),
            ];
            // Q5_K's `qh` is the first eight dwords at 16.
            let qh = if TY == Q5_K {
                row_dwords(xb, n_rows, 16)
            } else {
                [_mm512_setzero_si512(); 16]
            };
            for j in 0..4 {
                for kk in 0..8 {
                    let v = qs[j / 2][8 * (j % 2) + kk];
                    for (c, q) in [(2 * j, v), (2 * j + 1, _mm512_srli_epi32::<4>(v))] {
                        let mut q = _mm512_and_si512(q, m4);
                        if TY == Q5_K {
                            let bit = _mm512_srlv_epi32(qh[kk], set(c as i32));
                            let bit = _mm512_and_si512(bit, set(0x0101_0101));
                            q = _mm512_or_si512(q, _mm512_slli_epi32::<4>(bit));
                        }
                        st(64 * (8 * c + kk), q);
                    }
                }
            }
            // `k4_scales_mins` (x86_avx2) in 32-bit lanes: bytes 0..8 of (u[0], u[1]) are
            // the scales, of (u[2], u[3]) the mins.
            let (u0, u1, u2) = (g(4), g(8), g(12));
            let and = |v: __m512i, m: i32| _mm512_and_si512(v, set(m));
            let (k1, k2, k3) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
            let u = [
                and(u0, k1),
                _mm512_or_si512(
                    and(u2, k2),
                    _mm512_slli_epi32::<4>(and(_mm512_srli_epi32::<6>(u0), k3)),
                ),
                and(u1, k1),
                _mm512_or_si512(
                    and(_mm512_srli_epi32::<4>(u2), k2),
                    _mm512_slli_epi32::<4>(and(_mm512_srli_epi32::<6>(u1), k3)),
                ),
            ];
            let byte = |v: __m512i, b: usize| and(_mm512_srlv_epi32(v, set(8 * b as i32)), 0xFF);
            let sc: [__m512i; 8] = std::array::from_fn(|s| byte(u[s / 4], s % 4));
            let mn: [__m512i; 8] = std::array::from_fn(|s| byte(u[2 + s / 4], s % 4));
            for s in 0..8 {
                st(K4_SC + 64 * s, sc[s]);
                st(K4_SC16 + 64 * s, pair(sc[s], sc[s]));
            }
            for p in 0..4 {
                st(K4_MN + 64 * p, pair(mn[2 * p], mn[2 * p + 1]));
            }
            let dd = g(0);
            _mm512_storeu_ps(pb.add(K4_D).cast(), half(dd));
            _mm512_storeu_ps(pb.add(K4_DMIN).cast(), half(_mm512_srli_epi32::<16>(dd)));
        }
    }
}

/// Side data of a Q8_K activation row for Q4_K/Q5_K: per superblock the four i16 pairs
/// `(bsum of sub-block 2p, bsum of 2p + 1)` (each sub-block's sum is two `bsums`, added as
/// `ggml_vec_dot_q4_K_q8_K`'s `hadd` adds them).
///
/// # Safety
/// The CPU has the features of [`super::available`]; `nb` Q8_K blocks at `act`; `16 * nb`
/// writable bytes at `side`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn prep_k4(nb: usize, act: *const u8, side: *mut u8) {
    for i in 0..nb {
        let bsums = load32(act.add(A_BLOCK * i + A_BSUMS));
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(bsums),
            _mm256_extracti128_si256::<1>(bsums),
        );
        _mm_storeu_si128(side.add(16 * i).cast(), q8s);
    }
}

/// Side data of a Q8_K activation row for Q6_K: per superblock `-32 · bsum` of each sixteen
/// quants as i32.
///
/// # Safety
/// As [`prep_k4`], with `64 * nb` writable bytes at `side`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn prep_k6(nb: usize, act: *const u8, side: *mut u8) {
    for i in 0..nb {
        let bsums = _mm512_cvtepi16_epi32(load32(act.add(A_BLOCK * i + A_BSUMS)));
        let share = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<5>(bsums));
        _mm512_storeu_si512(side.add(64 * i).cast(), share);
    }
}

/// Sub-block `s`'s `Σ q·a` for sixteen rows and `T` tokens (`ya[t]`: token t's superblock),
/// `vpdpbusd` on `n_groups` groups of four quants from `start[t]`.
///
/// # Safety
/// A panel superblock at `pb`; `T` Q8_K activation superblocks at `ya`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn sub_sums<const T: usize>(
    pb: *const u8,
    ya: &[*const u8; T],
    first_group: usize,
    n_groups: usize,
    mut start: [__m512i; T],
) -> [__m512i; T] {
    for g in first_group..first_group + n_groups {
        let w = _mm512_loadu_si512(pb.add(64 * g).cast());
        for t in 0..T {
            start[t] = _mm512_dpbusd_epi32(start[t], w, bcast32(ya[t].add(A_QS + 4 * g)));
        }
    }
    start
}

/// `T` tokens against a Q4_K/Q5_K panel, finished as `MODE` says (see `x86_avx2::paths`'s
/// `q4_k_paths`): `GEMV` per superblock `acc += isum·(d·d_a)`, `accm += imin·(dmin·d_a)`,
/// result `acc - accm`; `GEMM` the same per pair of sub-blocks; `TILED` per superblock
/// `res = fma(-dmin, imin, d·isum)`, `acc = fma(res, d_a, acc)`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; a panel of `nb` superblocks; `T`
/// activation rows (`a_stride` apart) and side rows (`s_stride` apart) of `nb` superblocks;
/// `T * PANEL_ROWS` writable floats at `out`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_pass<const MODE: u8, const T: usize>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    out: *mut f32,
) {
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); T];
    let mut accm = [_mm512_setzero_ps(); T];
    for i in 0..nb {
        let pb = panel.add(K4_BLOCK * i);
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + A_BLOCK * i));
        let sd: [*const u8; T] = std::array::from_fn(|t| side.add(s_stride * t + 16 * i));
        let (dx, dminx) = (
            _mm512_loadu_ps(pb.add(K4_D).cast()),
            _mm512_loadu_ps(pb.add(K4_DMIN).cast()),
        );
        let yd: [__m512; T] = std::array::from_fn(|t| bcastf(ya[t]));
        let d: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dx, yd[t]));
        let dmin: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dminx, yd[t]));
        let mut isum = [zero; T];
        let mut imin = [zero; T];
        for p in 0..4 {
            let mut pair = [zero; T];
            for s in [2 * p, 2 * p + 1] {
                let sums = sub_sums::<T>(pb, &ya, 8 * s, 8, [zero; T]);
                let sc = _mm512_loadu_si512(pb.add(K4_SC + 64 * s).cast());
                for t in 0..T {
                    pair[t] = _mm512_add_epi32(pair[t], _mm512_mullo_epi32(sums[t], sc));
                }
            }
            let mn = _mm512_loadu_si512(pb.add(K4_MN + 64 * p).cast());
            for t in 0..T {
                let m = _mm512_dpwssd_epi32(zero, mn, bcast32(sd[t].add(4 * p)));
                if MODE == GEMM {
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair[t]), d[t], acc[t]);
                    accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), dmin[t], accm[t]);
                } else {
                    isum[t] = _mm512_add_epi32(isum[t], pair[t]);
                    imin[t] = _mm512_add_epi32(imin[t], m);
                }
            }
        }
        for t in 0..T {
            let (s1, s2) = (_mm512_cvtepi32_ps(isum[t]), _mm512_cvtepi32_ps(imin[t]));
            if MODE == GEMV {
                acc[t] = _mm512_fmadd_ps(s1, d[t], acc[t]);
                accm[t] = _mm512_fmadd_ps(s2, dmin[t], accm[t]);
            } else if MODE == TILED {
                let res = _mm512_fnmadd_ps(dminx, s2, _mm512_mul_ps(dx, s1));
                acc[t] = _mm512_fmadd_ps(res, yd[t], acc[t]);
            }
        }
    }
    for t in 0..T {
        let y = if MODE == TILED {
            acc[t]
        } else {
            _mm512_sub_ps(acc[t], accm[t])
        };
        _mm512_storeu_ps(out.add(PANEL_ROWS * t), y);
    }
}

/// `T` tokens against a Q6_K panel in the tiled matmul's order: per superblock the exact
/// `s1 = Σ scale·Σ (q - 32)·a`, `res = d·s1`, `acc = fma(res, d_a, acc)`.
///
/// # Safety
/// As [`k4_pass`], for a Q6_K panel and side data from [`prep_k6`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k6_pass<const T: usize>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    out: *mut f32,
) {
    let mut acc = [_mm512_setzero_ps(); T];
    for i in 0..nb {
        let pb = panel.add(K6_BLOCK * i);
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + A_BLOCK * i));
        let sd: [*const u8; T] = std::array::from_fn(|t| side.add(s_stride * t + 64 * i));
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..16 {
            let start = std::array::from_fn(|t| bcast32(sd[t].add(4 * j)));
            let sums = sub_sums::<T>(pb, &ya, 4 * j, 4, start);
            let sc = _mm512_loadu_si512(pb.add(K6_SC + 64 * j).cast());
            for t in 0..T {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sums[t], sc));
            }
        }
        let dx = _mm512_loadu_ps(pb.add(K6_D).cast());
        for t in 0..T {
            let res = _mm512_mul_ps(dx, _mm512_cvtepi32_ps(isum[t]));
            acc[t] = _mm512_fmadd_ps(res, bcastf(ya[t]), acc[t]);
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(out.add(PANEL_ROWS * t), acc[t]);
    }
}

/// All `nt` tokens through `$pass`, four at a time.
macro_rules! k_run {
    ($name:ident, $pass:ident $(, $mode:ident)?) => {
        /// # Safety
        /// As the pass it runs, for `nt` tokens.
        #[allow(clippy::too_many_arguments)] // why: the `GemmRunFn` arguments as raw parts
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(
            nb: usize,
            panel: *const u8,
            acts: *const u8,
            a_stride: usize,
            side: *const u8,
            s_stride: usize,
            nt: usize,
            out: *mut f32,
        ) {
            super::token_passes!(nt, 4, |t0, T| $pass::<$($mode,)? T>(
                nb,
                panel,
                acts.add(t0 * a_stride),
                a_stride,
                side.add(t0 * s_stride),
                s_stride,
                out.add(t0 * PANEL_ROWS)
            ));
        }
    };
}
k_run!(run_gemv, k4_pass, GEMV);
k_run!(run_gemm, k4_pass, GEMM);
k_run!(run_tiled, k4_pass, TILED);
k_run!(run_k6, k6_pass);

// The repacked Q4_K pays from two tokens (1.1x AVX2's GEMV there, 1.3x for three); the tiled
// path starts at eight tokens anyway.
panel_kernel!(q4_k_repack: shape(Q4_K), decode::<Q4_K>, prep_k4, run_gemm, run_gemv, 2);
panel_kernel!(q4_k_gemv: shape(Q4_K), decode::<Q4_K>, prep_k4, run_gemv, run_gemv, 2);
panel_kernel!(q4_k_tiled: shape(Q4_K), decode::<Q4_K>, prep_k4, run_tiled, run_tiled, 1);
panel_kernel!(q5_k_tiled: shape(Q5_K), decode::<Q5_K>, prep_k4, run_tiled, run_tiled, 1);
panel_kernel!(q6_k_tiled: shape(Q6_K), decode::<Q6_K>, prep_k6, run_k6, run_k6, 1);

/// The panel kernel for a K-quant type on `path`.
pub(super) fn gemm(ty: GgmlType, path: Path) -> Option<Gemm> {
    Some(match (ty, path) {
        (GgmlType::Q4_K, Path::RepackGemm) => q4_k_repack(),
        (GgmlType::Q4_K, Path::RepackGemv) => q4_k_gemv(),
        (GgmlType::Q4_K, Path::Tiled) => q4_k_tiled(),
        (GgmlType::Q5_K, Path::Tiled) => q5_k_tiled(),
        (GgmlType::Q6_K, Path::Tiled) => q6_k_tiled(),
        _ => return None,
    })
}
