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
//! as i16 pairs `(m[2p], m[2p + 1])` (four registers), then `d` and (Q4_K/Q5_K) `dmin` as f32.
//!
//! Side data, per superblock of an activation row: for Q4_K/Q5_K the `bsums` of each pair of
//! sub-blocks as the i16 pairs `vpdpwssd` multiplies the mins' pairs with (16 bytes); for Q6_K
//! `-32 · bsum` of each sixteen quants (64 bytes), the share of Q6_K's offset.

use super::{bcast32, bcastf, f16x16, panel_kernel, transpose_16x8, Shape};
use crate::matmul::Path;
use crate::simd::x86_avx2::{k4_scales_mins, load32};
use crate::simd::{Gemm, PANEL_ROWS};
use crate::GgmlType;
use std::arch::x86_64::*;

// Weight types, as const parameters.
const Q4_K: u8 = 0;
const Q5_K: u8 = 1;
const Q6_K: u8 = 2;

/// Which float steps [`k4_pass`] takes: the repacked GEMV, the repacked GEMM, the tiled matmul.
const GEMV: u8 = 0;
const GEMM: u8 = 1;
const TILED: u8 = 2;

/// Q8_K activation block: f32 `d` at 0, 256 quants at 4, 16 i16 `bsums` at 260.
const A_BLOCK: usize = 292;
const A_QS: usize = 4;
const A_BSUMS: usize = 260;

/// Offsets in a Q4_K/Q5_K panel superblock.
const K4_SC: usize = 4096;
const K4_MN: usize = K4_SC + 8 * 64;
const K4_D: usize = K4_MN + 4 * 64;
const K4_DMIN: usize = K4_D + 64;
const K4_BLOCK: usize = K4_DMIN + 64;
/// Offsets in a Q6_K panel superblock.
const K6_SC: usize = 4096;
const K6_D: usize = K6_SC + 16 * 64;
const K6_BLOCK: usize = K6_D + 64;

const fn shape(ty: u8) -> Shape {
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

/// Chunk `c` (quants `32c..32c + 32`, in element order) of the weight superblock at `xb`, as
/// unsigned bytes: the decoding of `ggml_vec_dot_q*_K_q8_K` (AVX2).
///
/// # Safety
/// A whole superblock of `TY` readable at `xb`; `c < 8`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn chunk<const TY: u8>(xb: *const u8, c: usize) -> __m256i {
    let m4 = _mm256_set1_epi8(0xF);
    let (j, hi) = (c / 2, c % 2 == 1);
    let nibbles = |bits: __m256i| {
        if hi {
            _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4)
        } else {
            _mm256_and_si256(bits, m4)
        }
    };
    match TY {
        Q4_K => nibbles(load32(xb.add(16 + 32 * j))),
        Q5_K => {
            // Bit c of `qh[l]` is the fifth bit of quant l of chunk c: it adds 16.
            let nib = nibbles(load32(xb.add(48 + 32 * j)));
            let fifth = _mm256_test_epi8_mask(load32(xb.add(16)), _mm256_set1_epi8(1 << c));
            _mm256_mask_add_epi8(nib, fifth, nib, _mm256_set1_epi8(16))
        }
        _ => {
            // Chunk 4j + k of `ql`/`qh` half j: low or high nibbles of `ql`, two bits of `qh`.
            let (j, k) = (c / 4, c % 4);
            let ql = load32(xb.add(64 * j + 32 * (k % 2)));
            let qh = load32(xb.add(128 + 32 * j));
            let low = if k < 2 {
                _mm256_and_si256(ql, m4)
            } else {
                _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4)
            };
            // Bits 2k, 2k + 1 of each `qh` byte, moved to bits 4 and 5.
            let h = _mm256_and_si256(qh, _mm256_set1_epi8((3 << (2 * k)) as i8));
            let h = match k {
                0 => _mm256_slli_epi16(h, 4),
                1 => _mm256_slli_epi16(h, 2),
                2 => h,
                _ => _mm256_srli_epi16(h, 2),
            };
            _mm256_or_si256(low, h)
        }
    }
}

/// Decodes `n_rows` rows of `nb` superblocks into the panel (rows past `n_rows` are zero).
///
/// # Safety
/// The CPU has the features of [`super::available`]; `n_rows <= PANEL_ROWS` rows of `nb`
/// superblocks at `w`, `w_row` bytes apart; `nb * shape(TY).p_block` writable bytes at `panel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode<const TY: u8>(
    nb: usize,
    w: *const u8,
    w_row: usize,
    n_rows: usize,
    panel: *mut u8,
) {
    let sh = shape(TY);
    for i in 0..nb {
        let xb = |r: usize| w.add(r * w_row + i * sh.w_block);
        let pb = panel.add(i * sh.p_block);
        for c in 0..8 {
            let mut rows = [_mm256_setzero_si256(); PANEL_ROWS];
            for r in 0..n_rows {
                rows[r] = chunk::<TY>(xb(r), c);
            }
            for (k, g) in transpose_16x8(&rows).into_iter().enumerate() {
                _mm512_storeu_si512(pb.add(64 * (8 * c + k)).cast(), g);
            }
        }
        let (mut d, mut dmin) = ([0u16; PANEL_ROWS], [0u16; PANEL_ROWS]);
        if TY == Q6_K {
            let mut sc = [[0i32; PANEL_ROWS]; 16];
            for r in 0..n_rows {
                for j in 0..16 {
                    sc[j][r] = *xb(r).add(192 + j).cast::<i8>() as i32;
                }
                d[r] = xb(r).add(208).cast::<u16>().read_unaligned();
            }
            for j in 0..16 {
                _mm512_storeu_si512(
                    pb.add(K6_SC + 64 * j).cast(),
                    _mm512_loadu_si512(sc[j].as_ptr().cast()),
                );
            }
            _mm512_storeu_ps(pb.add(K6_D).cast(), f16x16(&d));
        } else {
            let mut sc = [[0i32; PANEL_ROWS]; 8];
            let mut mn = [[0u32; PANEL_ROWS]; 4];
            for r in 0..n_rows {
                let (mins, scales) = k4_scales_mins(xb(r).add(4));
                let (mut m, mut s) = ([0u16; 8], [0u16; 16]);
                _mm_storeu_si128(m.as_mut_ptr().cast(), mins);
                _mm256_storeu_si256(s.as_mut_ptr().cast(), scales);
                for j in 0..8 {
                    sc[j][r] = s[j] as i32;
                }
                for p in 0..4 {
                    mn[p][r] = m[2 * p] as u32 | (m[2 * p + 1] as u32) << 16;
                }
                d[r] = xb(r).cast::<u16>().read_unaligned();
                dmin[r] = xb(r).add(2).cast::<u16>().read_unaligned();
            }
            for j in 0..8 {
                _mm512_storeu_si512(
                    pb.add(K4_SC + 64 * j).cast(),
                    _mm512_loadu_si512(sc[j].as_ptr().cast()),
                );
            }
            for p in 0..4 {
                _mm512_storeu_si512(
                    pb.add(K4_MN + 64 * p).cast(),
                    _mm512_loadu_si512(mn[p].as_ptr().cast()),
                );
            }
            _mm512_storeu_ps(pb.add(K4_D).cast(), f16x16(&d));
            _mm512_storeu_ps(pb.add(K4_DMIN).cast(), f16x16(&dmin));
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
unsafe fn prep_k4(nb: usize, act: *const u8, side: *mut u8) {
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

panel_kernel!(q4_k_repack: shape(Q4_K), decode::<Q4_K>, prep_k4, run_gemm, run_gemv);
panel_kernel!(q4_k_gemv: shape(Q4_K), decode::<Q4_K>, prep_k4, run_gemv, run_gemv);
panel_kernel!(q4_k_tiled: shape(Q4_K), decode::<Q4_K>, prep_k4, run_tiled, run_tiled);
panel_kernel!(q5_k_tiled: shape(Q5_K), decode::<Q5_K>, prep_k4, run_tiled, run_tiled);
panel_kernel!(q6_k_tiled: shape(Q6_K), decode::<Q6_K>, prep_k6, run_k6, run_k6);

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
