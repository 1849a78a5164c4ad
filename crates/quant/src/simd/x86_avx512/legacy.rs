//! Panel kernels for the 32-element quants: Q4_0, Q5_0, Q8_0 against Q8_0 activations, Q4_1,
//! Q5_1 against Q8_1 ones, in the arithmetic of `ggml_vec_dot_*` (all five) and of the
//! repacked `q4_0_8x8` GEMV/GEMM (Q4_0 with `rows % 8 == 0`).
//!
//! Panel, per block of 32 columns (sixteen rows): eight registers' worth of unsigned quants,
//! `w[k]` lane `r` = quants `4k..4k + 4` of row `r` (Q4_0: the nibble, `q + 8`; Q5_0: `q + 16`;
//! Q8_0: `q + 128`; Q4_1/Q5_1: the quant itself), then the rows' scales `d` as f32, then (Q4_1,
//! Q5_1) their `m`.
//!
//! Side data, per block of an activation row: `d` as f32 and, for the offset encodings, the
//! offset's share of each lane, `-OFF · Σ` of the four activation quants the lane multiplies
//! (Q8_0 activations); or `d` and `s` as f32 (Q8_1). One `vpdpbusd` starting from that share
//! gives lane `k` of `ggml_vec_dot_q*_0_q8_0`'s integer sum for sixteen rows at once.

use super::{bcast32, bcastf, f16_at, f16x16, hsum8_rows, panel_kernel, transpose_16x8, Shape};
use crate::matmul::Path;
use crate::simd::x86_avx2::{bytes_from_nibbles_32, load32};
use crate::simd::{Gemm, PANEL_ROWS};
use crate::GgmlType;
use std::arch::x86_64::*;

// Weight types, as const parameters.
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q5_1: u8 = 3;
const Q8_0: u8 = 4;

/// Bytes of a weight block.
const fn w_block(ty: u8) -> usize {
    match ty {
        Q4_0 => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    }
}

/// Whether the type has a per-block minimum `m` (and takes Q8_1 activations).
const fn has_min(ty: u8) -> bool {
    matches!(ty, Q4_1 | Q5_1)
}

/// The offset of the type's unsigned encoding (0: the quants are unsigned already).
const fn offset(ty: u8) -> i32 {
    match ty {
        Q4_0 => 8,
        Q5_0 => 16,
        Q8_0 => 128,
        _ => 0,
    }
}

/// Panel bytes per block: the quants, `d`, and `m` where there is one.
const fn p_block(ty: u8) -> usize {
    if has_min(ty) {
        640
    } else {
        576
    }
}

const fn shape(ty: u8, s_block: usize) -> Shape {
    Shape {
        per: 32,
        w_block: w_block(ty),
        a_block: if has_min(ty) { 36 } else { 34 },
        p_block: p_block(ty),
        s_block,
    }
}

/// Side data per block: `d` and the eight lanes' offset shares (Q8_0 activations, `vec_dot`
/// order); `d` and the block's whole offset share (the repacked order); `d` and `s` (Q8_1).
const S_LANES: usize = 36;
const S_TOTAL: usize = 8;
const S_Q8_1: usize = 8;

/// The 32 unsigned quants of the weight block at `xb`, in element order.
///
/// # Safety
/// `w_block(TY)` readable bytes at `xb`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn quants<const TY: u8>(xb: *const u8) -> __m256i {
    match TY {
        Q4_0 => bytes_from_nibbles_32(xb.add(2)),
        Q4_1 => bytes_from_nibbles_32(xb.add(4)),
        // The fifth bit (bit j of `qh` for quant j) adds 16.
        Q5_0 | Q5_1 => {
            let (qh, qs) = if TY == Q5_0 { (2, 6) } else { (4, 8) };
            let nib = bytes_from_nibbles_32(xb.add(qs));
            let bits = xb.add(qh).cast::<u32>().read_unaligned();
            _mm256_mask_add_epi8(nib, bits, nib, _mm256_set1_epi8(16))
        }
        _ => _mm256_xor_si256(load32(xb.add(2)), _mm256_set1_epi8(-128)),
    }
}

/// Decodes `n_rows` rows of `nb` blocks into the panel (rows past `n_rows` are zero).
///
/// # Safety
/// The CPU has the features of [`super::available`]; `n_rows <= PANEL_ROWS` rows of `nb` blocks
/// at `w`, `w_row` bytes apart; `nb * p_block(TY)` writable bytes at `panel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode<const TY: u8>(
    nb: usize,
    w: *const u8,
    w_row: usize,
    n_rows: usize,
    panel: *mut u8,
) {
    for i in 0..nb {
        let mut rows = [_mm256_setzero_si256(); PANEL_ROWS];
        let (mut d, mut m) = ([0u16; PANEL_ROWS], [0u16; PANEL_ROWS]);
        for r in 0..n_rows {
            let xb = w.add(r * w_row + i * w_block(TY));
            rows[r] = quants::<TY>(xb);
            d[r] = xb.cast::<u16>().read_unaligned();
            m[r] = xb.add(2).cast::<u16>().read_unaligned();
        }
        let pb = panel.add(i * p_block(TY));
        for (k, g) in transpose_16x8(&rows).into_iter().enumerate() {
            _mm512_storeu_si512(pb.add(64 * k).cast(), g);
        }
        _mm512_storeu_ps(pb.add(512).cast(), f16x16(&d));
        if has_min(TY) {
            _mm512_storeu_ps(pb.add(576).cast(), f16x16(&m));
        }
    }
}

/// Side data of a Q8_0 activation row: per block `d` and `-OFF · Σ` of each lane's four quants
/// (`LANES`), or `d` and `-OFF · Σ` of all 32 (not `LANES`).
///
/// # Safety
/// The CPU has the features of [`super::available`]; `nb` Q8_0 blocks at `act`; `nb` side
/// blocks writable at `side`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn prep_q8_0<const OFF: i32, const LANES: bool>(nb: usize, act: *const u8, side: *mut u8) {
    let off = _mm256_set1_epi8(OFF as u8 as i8);
    let z = _mm256_setzero_si256();
    for i in 0..nb {
        let yb = act.add(34 * i);
        let share = _mm256_sub_epi32(z, _mm256_dpbusd_epi32(z, off, load32(yb.add(2))));
        let sb = side.add(i * if LANES { S_LANES } else { S_TOTAL });
        sb.cast::<f32>().write_unaligned(f16_at(yb));
        if LANES {
            _mm256_storeu_si256(sb.add(4).cast(), share);
        } else {
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), share);
            sb.add(4).cast::<i32>().write_unaligned(lanes.iter().sum());
        }
    }
}

/// Side data of a Q8_1 activation row: per block `d` and `s` as f32.
///
/// # Safety
/// As [`prep_q8_0`], for Q8_1 blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn prep_q8_1(nb: usize, act: *const u8, side: *mut u8) {
    for i in 0..nb {
        let (yb, sb) = (act.add(36 * i), side.add(S_Q8_1 * i));
        sb.cast::<f32>().write_unaligned(f16_at(yb));
        sb.add(4).cast::<f32>().write_unaligned(f16_at(yb.add(2)));
    }
}

/// `T` tokens against the panel in `ggml_vec_dot_*` order: per output eight float lanes,
/// `acc[k] = fma(d_x·d_y, float(lane k), acc[k])` block after block, `hsum_float_8` at the end,
/// plus (Q4_1/Q5_1) `summs`, the running sum of `m_x·s_y`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; a panel of `nb` blocks; `T` activation
/// rows (`a_stride` apart) and side rows (`s_stride` apart) of `nb` blocks; `T * PANEL_ROWS`
/// writable floats at `out`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_pass<const TY: u8, const T: usize>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    out: *mut f32,
) {
    let (ab, sbytes) = if has_min(TY) {
        (36, S_Q8_1)
    } else {
        (34, S_LANES)
    };
    let qs = if has_min(TY) { 4 } else { 2 };
    let mut acc = [[_mm512_setzero_ps(); 8]; T];
    let mut summs = [_mm512_setzero_ps(); T];
    for i in 0..nb {
        let pb = panel.add(p_block(TY) * i);
        let dx = _mm512_loadu_ps(pb.add(512).cast());
        let sd: [*const u8; T] = std::array::from_fn(|t| side.add(s_stride * t + sbytes * i));
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + ab * i + qs));
        let d: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dx, bcastf(sd[t])));
        if has_min(TY) {
            let mx = _mm512_loadu_ps(pb.add(576).cast());
            for t in 0..T {
                summs[t] = _mm512_add_ps(summs[t], _mm512_mul_ps(mx, bcastf(sd[t].add(4))));
            }
        }
        for k in 0..8 {
            let w = _mm512_loadu_si512(pb.add(64 * k).cast());
            for t in 0..T {
                let start = if offset(TY) != 0 {
                    bcast32(sd[t].add(4 + 4 * k))
                } else {
                    _mm512_setzero_si512()
                };
                let v = _mm512_dpbusd_epi32(start, w, bcast32(ya[t].add(4 * k)));
                acc[t][k] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(v), acc[t][k]);
            }
        }
    }
    for t in 0..T {
        let mut y = hsum8_rows(&acc[t]);
        if has_min(TY) {
            y = _mm512_add_ps(y, summs[t]);
        }
        _mm512_storeu_ps(out.add(PANEL_ROWS * t), y);
    }
}

/// All `nt` tokens in `ggml_vec_dot_*` order (passes of three tokens for Q8_0 activations, whose
/// 24 accumulators fill the registers; of two for Q8_1, which also keeps `summs`).
///
/// # Safety
/// As [`dot_pass`], for `nt` tokens.
#[allow(clippy::too_many_arguments)] // why: the `GemmRunFn` arguments as raw parts
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_run<const TY: u8>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    nt: usize,
    out: *mut f32,
) {
    if has_min(TY) {
        super::token_passes!(nt, 2, |t0, T| dot_pass::<TY, T>(
            nb,
            panel,
            acts.add(t0 * a_stride),
            a_stride,
            side.add(t0 * s_stride),
            s_stride,
            out.add(t0 * PANEL_ROWS)
        ));
    } else {
        super::token_passes!(nt, 3, |t0, T| dot_pass::<TY, T>(
            nb,
            panel,
            acts.add(t0 * a_stride),
            a_stride,
            side.add(t0 * s_stride),
            s_stride,
            out.add(t0 * PANEL_ROWS)
        ));
    }
}

/// `T` tokens against a Q4_0 panel in the repacked GEMV/GEMM's order: per block the exact
/// integer sum of all 32 products, then `acc = fma(isum, d_x·d_y, acc)`.
///
/// # Safety
/// As [`dot_pass`] (side data from `prep_q8_0::<8, false>`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn repack_pass<const T: usize>(
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
        let pb = panel.add(p_block(Q4_0) * i);
        let sd: [*const u8; T] = std::array::from_fn(|t| side.add(s_stride * t + S_TOTAL * i));
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + 34 * i + 2));
        let mut v: [__m512i; T] = std::array::from_fn(|t| bcast32(sd[t].add(4)));
        for k in 0..8 {
            let w = _mm512_loadu_si512(pb.add(64 * k).cast());
            for t in 0..T {
                v[t] = _mm512_dpbusd_epi32(v[t], w, bcast32(ya[t].add(4 * k)));
            }
        }
        let dx = _mm512_loadu_ps(pb.add(512).cast());
        for t in 0..T {
            let d = _mm512_mul_ps(dx, bcastf(sd[t]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v[t]), d, acc[t]);
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(out.add(PANEL_ROWS * t), acc[t]);
    }
}

/// All `nt` tokens in the repacked order, four at a time.
///
/// # Safety
/// As [`repack_pass`], for `nt` tokens.
#[allow(clippy::too_many_arguments)] // why: the `GemmRunFn` arguments as raw parts
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn repack_run(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    nt: usize,
    out: *mut f32,
) {
    super::token_passes!(nt, 4, |t0, T| repack_pass::<T>(
        nb,
        panel,
        acts.add(t0 * a_stride),
        a_stride,
        side.add(t0 * s_stride),
        s_stride,
        out.add(t0 * PANEL_ROWS)
    ));
}

panel_kernel!(q4_0: shape(Q4_0, S_LANES), decode::<Q4_0>, prep_q8_0::<8, true>, dot_run::<Q4_0>, dot_run::<Q4_0>, 2);
panel_kernel!(q5_0: shape(Q5_0, S_LANES), decode::<Q5_0>, prep_q8_0::<16, true>, dot_run::<Q5_0>, dot_run::<Q5_0>, 2);
panel_kernel!(q8_0: shape(Q8_0, S_LANES), decode::<Q8_0>, prep_q8_0::<128, true>, dot_run::<Q8_0>, dot_run::<Q8_0>, 2);
panel_kernel!(q4_1: shape(Q4_1, S_Q8_1), decode::<Q4_1>, prep_q8_1, dot_run::<Q4_1>, dot_run::<Q4_1>, 3);
panel_kernel!(q5_1: shape(Q5_1, S_Q8_1), decode::<Q5_1>, prep_q8_1, dot_run::<Q5_1>, dot_run::<Q5_1>, 3);
panel_kernel!(q4_0_repack: shape(Q4_0, S_TOTAL), decode::<Q4_0>, prep_q8_0::<8, false>, repack_run, repack_run, 2);

// From how many tokens the panels pay (criterion, one thread, model-sized products): for two
// tokens Q5_0 runs 1.5x faster than AVX2, Q4_1 ties; for three, Q4_1 1.2x.

/// The panel kernel for a 32-element quant type on `path`.
pub(super) fn gemm(ty: GgmlType, path: Path) -> Option<Gemm> {
    Some(match (ty, path) {
        (GgmlType::Q4_0, Path::RepackGemm | Path::RepackGemv) => q4_0_repack(),
        (GgmlType::Q4_0, Path::VecDot) => q4_0(),
        (GgmlType::Q5_0, Path::VecDot) => q5_0(),
        (GgmlType::Q8_0, Path::VecDot) => q8_0(),
        (GgmlType::Q4_1, Path::VecDot) => q4_1(),
        (GgmlType::Q5_1, Path::VecDot) => q5_1(),
        _ => return None,
    })
}
