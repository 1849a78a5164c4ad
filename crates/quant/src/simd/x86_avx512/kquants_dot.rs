//! Panel kernels for the K-quants in `ggml_vec_dot_q*_K_q8_K` order (AVX2): the products the
//! tiled and repacked paths do not take (Q5_K and Q6_K below eight tokens, Q4_K with a row
//! count the repacking does not divide) and every product under per-token arithmetic.
//!
//! Per output the AVX2 kernels keep eight float lanes: lane `k` collects, over the
//! superblock's chunks of 32 quants, `scale · Σ` of each chunk's products `4k..4k + 4`
//! (`maddubs`, then `madd` with the chunk's scale). Here lane `r` of register `k` is that lane
//! of row `r`: `vpmaddubsw` of four quants of sixteen rows against four broadcast activation
//! bytes gives each row's two pair sums, and `vpdpwssd` with the i16 pair `(scale, scale)` adds
//! `scale · (pair + pair)` — the AVX2 lane's integers. Each lane's `d·d_a` FMA, the mins'
//! terms and the horizontal sum then follow the AVX2 kernel step for step, on sixteen rows.
//! The panels are `kquants`' (the same decoder).

use super::kquants::{
    decode, prep_k4, shape, A_BLOCK, A_BSUMS, A_QS, K4_BLOCK, K4_D, K4_DMIN, K4_MN, K4_SC16,
    K6_BLOCK, K6_D, K6_SC16, K6_SCPAIR, Q4_K, Q5_K, Q6_K,
};
use super::{bcast32, bcastf, dpwssd, hsum8_rows, panel_kernel, Shape};
use crate::simd::{Gemm, PANEL_ROWS};
use crate::GgmlType;
use std::arch::x86_64::*;

/// Lane `k` of one chunk's products for `T` tokens: `l[t] += scale · Σ` of quants
/// `4k..4k + 4` of chunk `c` times token `t`'s activations (`vpmaddubsw`, `vpdpwssd`).
///
/// # Safety
/// A panel superblock at `pb` with its `(scale, scale)` pair at `sc16`; `T` Q8_K activation
/// superblocks at `ya`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn chunk_lane<const T: usize>(
    pb: *const u8,
    sc16: *const u8,
    ya: &[*const u8; T],
    c: usize,
    k: usize,
    l: &mut [__m512i; T],
) {
    let w = _mm512_loadu_si512(pb.add(64 * (8 * c + k)).cast());
    let sc = _mm512_loadu_si512(sc16.cast());
    for t in 0..T {
        let y = bcast32(ya[t].add(A_QS + 32 * c + 4 * k));
        l[t] = dpwssd(l[t], _mm512_maddubs_epi16(w, y), sc);
    }
}

/// `T` tokens against a Q4_K or Q5_K panel in `vec_dot` order. Q4_K (`ggml_vec_dot_q4_K_q8_K`):
/// per superblock `acc[k] = fma(d_a·d, lane k, acc[k])` and, in four more lanes,
/// `acc_m[p] = fma(-d_a·dmin, imin[p], acc_m[p])`; result `hsum_float_8(acc) + ((m0 + m2) +
/// (m1 + m3))`. Q5_K (`ggml_vec_dot_q5_K_q8_K`): the same `acc`, the mins in one running
/// `summs = fma(imin, -d_a·dmin, summs)`; result `hsum_float_8(acc) + summs`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; a panel of `nb` superblocks; `T`
/// activation rows (`a_stride` apart) and side rows (`s_stride` apart, from `prep_k4`) of `nb`
/// superblocks; `T * PANEL_ROWS` writable floats at `out`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_dot_pass<const TY: u8, const T: usize>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    side: *const u8,
    s_stride: usize,
    out: *mut f32,
) {
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 8]; T];
    // Q4_K: the four lanes of `acc_m`; Q5_K: `summs` in lane 0.
    let mut accm = [[_mm512_setzero_ps(); 4]; T];
    for i in 0..nb {
        let pb = panel.add(K4_BLOCK * i);
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + A_BLOCK * i));
        let sd: [*const u8; T] = std::array::from_fn(|t| side.add(s_stride * t + 16 * i));
        let (dx, dminx) = (
            _mm512_loadu_ps(pb.add(K4_D).cast()),
            _mm512_loadu_ps(pb.add(K4_DMIN).cast()),
        );
        let d: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dx, bcastf(ya[t])));
        let dmin: [__m512; T] = std::array::from_fn(|t| {
            let neg_yd = -ya[t].cast::<f32>().read_unaligned();
            _mm512_mul_ps(dminx, _mm512_set1_ps(neg_yd))
        });
        for t in 0..T {
            let mut imin = zero;
            for p in 0..4 {
                let mn = _mm512_loadu_si512(pb.add(K4_MN + 64 * p).cast());
                let prod = _mm512_dpwssd_epi32(zero, mn, bcast32(sd[t].add(4 * p)));
                if TY == Q4_K {
                    let prod = _mm512_cvtepi32_ps(prod);
                    accm[t][p] = _mm512_fmadd_ps(dmin[t], prod, accm[t][p]);
                } else {
                    imin = _mm512_add_epi32(imin, prod);
                }
            }
            if TY == Q5_K {
                accm[t][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), dmin[t], accm[t][0]);
            }
        }
        for k in 0..8 {
            let mut l = [zero; T];
            for c in 0..8 {
                chunk_lane::<T>(pb, pb.add(K4_SC16 + 64 * c), &ya, c, k, &mut l);
            }
            for t in 0..T {
                acc[t][k] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(l[t]), acc[t][k]);
            }
        }
    }
    for t in 0..T {
        let m = if TY == Q4_K {
            let m = &accm[t];
            _mm512_add_ps(_mm512_add_ps(m[0], m[2]), _mm512_add_ps(m[1], m[3]))
        } else {
            accm[t][0]
        };
        _mm512_storeu_ps(
            out.add(PANEL_ROWS * t),
            _mm512_add_ps(hsum8_rows(&acc[t]), m),
        );
    }
}

/// `T` tokens against a Q6_K panel in `ggml_vec_dot_q6_K_q8_K` order: lane `k` starts at
/// `-32 · (bsum[2k]·scale[2k] + bsum[2k + 1]·scale[2k + 1])` (how that kernel distributes the
/// offset), gains each chunk's `scale · Σ q·a` of its products `4k..4k + 4`, then
/// `acc[k] = fma(d_a·d, lane k, acc[k])`; result `hsum_float_8(acc)`.
///
/// # Safety
/// As [`k4_dot_pass`], for a Q6_K panel (no side data).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k6_dot_pass<const T: usize>(
    nb: usize,
    panel: *const u8,
    acts: *const u8,
    a_stride: usize,
    _side: *const u8,
    _s_stride: usize,
    out: *mut f32,
) {
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 8]; T];
    for i in 0..nb {
        let pb = panel.add(K6_BLOCK * i);
        let ya: [*const u8; T] = std::array::from_fn(|t| acts.add(a_stride * t + A_BLOCK * i));
        let dx = _mm512_loadu_ps(pb.add(K6_D).cast());
        let d: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(dx, bcastf(ya[t])));
        for k in 0..8 {
            let pair = _mm512_loadu_si512(pb.add(K6_SCPAIR + 64 * k).cast());
            let mut l: [__m512i; T] = std::array::from_fn(|t| {
                let c = _mm512_dpwssd_epi32(zero, pair, bcast32(ya[t].add(A_BSUMS + 4 * k)));
                _mm512_sub_epi32(zero, _mm512_slli_epi32::<5>(c))
            });
            for c in 0..8 {
                let sc16 = pb.add(K6_SC16 + 64 * (2 * c + k / 4));
                chunk_lane::<T>(pb, sc16, &ya, c, k, &mut l);
            }
            for t in 0..T {
                acc[t][k] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(l[t]), acc[t][k]);
            }
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(out.add(PANEL_ROWS * t), hsum8_rows(&acc[t]));
    }
}

/// All `nt` tokens through `$pass`, two at a time.
macro_rules! dot_run {
    ($name:ident, $pass:ident $(, $ty:ident)?) => {
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
            super::token_passes!(nt, 2, |t0, T| $pass::<$($ty,)? T>(
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
dot_run!(run_q4_k, k4_dot_pass, Q4_K);
dot_run!(run_q5_k, k4_dot_pass, Q5_K);
dot_run!(run_q6_k, k6_dot_pass);

/// Q6_K in `vec_dot` order reads the `bsums` straight from the activations: no side data.
const SHAPE_Q6_K: Shape = Shape {
    s_block: 0,
    ..shape(Q6_K)
};

/// # Safety
/// Nothing to do, nothing read.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn no_prep(_nb: usize, _act: *const u8, _side: *mut u8) {}

// Measured against AVX2 (640 x 2048 Q6_K, one thread): 0.84x for two tokens, 1.25x for three,
// 1.17x for four; so from three tokens (Q4_K/Q5_K share the structure).
panel_kernel!(q4_k: shape(Q4_K), decode::<Q4_K>, prep_k4, run_q4_k, run_q4_k, 3);
panel_kernel!(q5_k: shape(Q5_K), decode::<Q5_K>, prep_k4, run_q5_k, run_q5_k, 3);
panel_kernel!(q6_k: SHAPE_Q6_K, decode::<Q6_K>, no_prep, run_q6_k, run_q6_k, 3);

/// The `vec_dot`-order panel kernel for a K-quant type.
pub(super) fn gemm(ty: GgmlType) -> Option<Gemm> {
    Some(match ty {
        GgmlType::Q4_K => q4_k(),
        GgmlType::Q5_K => q5_k(),
        GgmlType::Q6_K => q6_k(),
        _ => return None,
    })
}
