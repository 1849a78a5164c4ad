//! AVX2 + FMA + F16C kernels (x86_64), op for op as llama.cpp's AVX2 build computes them.
//!
//! Every kernel reproduces the arithmetic of the llama.cpp routine it is named after — the same
//! integer lanes (`maddubs`/`madd`), the same per-block float operations and accumulators, the
//! same horizontal sums — so its result is bit-identical, not merely close:
//! - quantized types: `ggml_vec_dot_*` of `arch/x86/quants.c`; `tinyBLAS_Q0_AVX` (llamafile's
//!   batched path for Q4_0/Q5_0/Q8_0) computes each output with the same operations, so one
//!   kernel serves both;
//! - F32/F16: `ggml_vec_dot_f32`/`ggml_vec_dot_f16` (four 8-lane accumulators, f64 tail) for a
//!   single token, and llamafile's `tinyBLAS<8>` (one 8-lane accumulator) for batches;
//! - the repacked GEMV/GEMM and tiled K-quant matmul live in [`paths`] (`path_tile`), plus the
//!   tiled variant of Q5_K here, beside its `vec_dot` kernel.
//!
//! Each kernel comes as a *tile*: one weight row against `T` (1..=[`MAX_TILE`]) activation rows,
//! decoding each weight block once for all of them; per output the operations are unchanged.
//! Kernels are reachable only through [`kernel`], [`tile`] and [`path_tile`], which hand them out only when the
//! CPU has AVX2, FMA and F16C, so the `#[target_feature]` functions never run on a CPU without.

// why: the kernels below are `unsafe fn`s whose bodies are pointer reads under the contract
// stated in their `# Safety` sections; wrapping every load in its own block adds nothing.
#![allow(unsafe_op_in_unsafe_fn)]
#![allow(clippy::needless_range_loop)] // why: per-token index loops mirror ggml's C

use super::{ChunkFn, TileFn, MAX_TILE};
use crate::reference::DotFn;
use crate::GgmlType;
pub(crate) use paths::{path_chunk, path_tile};
use std::arch::x86_64::*;

/// Whether this CPU runs the kernels in this file.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

// Raw tile kernels: `f::<T>(nb, w, a, a_stride, out)` computes `out[t] = w · a[t]` for
// `t < T`, reading `nb` blocks (or groups of 8, for floats) of the weight row at `w` and of each
// activation row at `a + t * a_stride`. Their `# Safety` sections say "as a raw tile": the CPU
// has AVX2, FMA and F16C; `w` and every activation row hold `nb` blocks; `out` has `T` slots.

macro_rules! tile_fns {
    ($name:ident, $raw:ident, $wbytes:expr, $abytes:expr, $per:expr) => {
        /// Safe wrapper: checks lengths, then dispatches on the token count.
        fn $name(cols: usize, w: &[u8], a: &[u8], a_stride: usize, out: &mut [f32]) {
            let nb = cols / $per;
            let t = out.len();
            assert!((1..=MAX_TILE).contains(&t), "tile of {t} tokens");
            assert!(w.len() >= nb * $wbytes, "weight row too short");
            assert!(
                a_stride >= nb * $abytes && a.len() >= (t - 1) * a_stride + nb * $abytes,
                "activation rows too short"
            );
            let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            // SAFETY: `kernel`/`tile` hand this function out only after `available()` confirmed
            // AVX2, FMA and F16C; the asserts above show the weight row has `nb` blocks, each of
            // the `t` activation rows (stride `a_stride`) has `nb` blocks, and `out` has `t` slots.
            unsafe {
                match t {
                    1 => $raw::<1>(nb, w, a, a_stride, o),
                    2 => $raw::<2>(nb, w, a, a_stride, o),
                    3 => $raw::<3>(nb, w, a, a_stride, o),
                    _ => $raw::<4>(nb, w, a, a_stride, o),
                }
            }
        }
    };
    ($name:ident, $chunk:ident, $raw:ident, $rows:ident, $wbytes:expr, $abytes:expr, $per:expr) => {
        tile_fns!($name, $raw, $wbytes, $abytes, $per);

        /// Safe wrapper for a chunk of rows: checks lengths once, then runs the raw multi-row
        /// kernel over the whole chunk (no per-row dispatch or bounds checks).
        fn $chunk(
            cols: usize,
            w: &[u8],
            w_row: usize,
            a: &[u8],
            a_stride: usize,
            nt: usize,
            out: &mut [f32],
        ) {
            let nb = cols / $per;
            assert!((1..=MAX_TILE).contains(&nt), "tile of {nt} tokens");
            let n_rows = out.len() / nt;
            assert_eq!(n_rows * nt, out.len(), "output not whole rows");
            if n_rows == 0 {
                return;
            }
            assert!(
                w_row >= nb * $wbytes && w.len() >= (n_rows - 1) * w_row + nb * $wbytes,
                "weight rows too short"
            );
            assert!(
                a_stride >= nb * $abytes && a.len() >= (nt - 1) * a_stride + nb * $abytes,
                "activation rows too short"
            );
            let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            // SAFETY: `chunk` hands this function out only after `available()` confirmed AVX2,
            // FMA and F16C; the asserts above show each of the `n_rows` weight rows has `nb`
            // blocks, each of the `nt` activation rows has `nb` blocks, and `out` has
            // `n_rows * nt` slots.
            unsafe {
                match nt {
                    1 => $rows::<1>(n_rows, nb, w, w_row, a, a_stride, o),
                    2 => $rows::<2>(n_rows, nb, w, w_row, a, a_stride, o),
                    3 => $rows::<3>(n_rows, nb, w, w_row, a, a_stride, o),
                    _ => $rows::<4>(n_rows, nb, w, w_row, a, a_stride, o),
                }
            }
        }
    };
}

// Raw multi-row kernels: `f::<T>(n_rows, nb, w, w_row, a, a_stride, o)` sets `o[r * T + t]` to
// the raw tile's output `t` for weight row `r` (at `w + r * w_row`), `r < n_rows`. Their
// `# Safety` sections say "as raw rows": the raw tile's contract for every row, and `o` has
// `n_rows * T` slots.

/// A multi-row kernel that runs the raw tile `$raw` on one row after another.
macro_rules! each_row {
    ($name:ident, $raw:ident) => {
        /// # Safety
        /// As raw rows (see above).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name<const T: usize>(
            n_rows: usize,
            nb: usize,
            w: *const u8,
            w_row: usize,
            a: *const u8,
            a_stride: usize,
            o: *mut f32,
        ) {
            for r in 0..n_rows {
                $raw::<T>(nb, w.add(r * w_row), a, a_stride, o.add(r * T));
            }
        }
    };
}

each_row!(rows_q5_1, q5_1_q8_1);
each_row!(rows_q4_k, q4_k_q8_k);
each_row!(rows_q5_k, q5_k_dot);
each_row!(rows_q6_k, q6_k_q8_k);
each_row!(rows_f32_sgemm, f32_sgemm);
each_row!(rows_f16_sgemm, f16_sgemm);

tile_fns!(tile_q4_0, chunk_q4_0, q4_0_q8_0, rows_q4_0, 18, 34, 32);
tile_fns!(tile_q4_1, chunk_q4_1, q4_1_q8_1, rows_q4_1, 20, 36, 32);
tile_fns!(tile_q5_1, chunk_q5_1, q5_1_q8_1, rows_q5_1, 24, 36, 32);
tile_fns!(tile_q5_0, chunk_q5_0, q5_0_q8_0, rows_q5_0, 22, 34, 32);
tile_fns!(tile_q8_0, chunk_q8_0, q8_0_q8_0, rows_q8_0, 34, 34, 32);
tile_fns!(tile_q4_k, chunk_q4_k, q4_k_q8_k, rows_q4_k, 144, 292, 256);
tile_fns!(tile_q5_k, chunk_q5_k, q5_k_dot, rows_q5_k, 176, 292, 256);
each_row!(rows_q5_k_tiled, q5_k_tiled);
tile_fns!(
    tile_q5_k_tiled,
    chunk_q5_k_tiled,
    q5_k_tiled,
    rows_q5_k_tiled,
    176,
    292,
    256
);
tile_fns!(tile_q6_k, chunk_q6_k, q6_k_q8_k, rows_q6_k, 210, 292, 256);
tile_fns!(
    tile_f32_sgemm,
    chunk_f32_sgemm,
    f32_sgemm,
    rows_f32_sgemm,
    32,
    32,
    8
);
tile_fns!(
    tile_f16_sgemm,
    chunk_f16_sgemm,
    f16_sgemm,
    rows_f16_sgemm,
    16,
    16,
    8
);

/// `ggml_vec_dot_f32`/`_f16` handle any length (a scalar tail), so they are wrapped separately.
fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 4 * n && a.len() >= 4 * n);
    // SAFETY: as in `tile_fns!`: AVX2/FMA/F16C checked by `kernel`; both rows hold `n` f32.
    unsafe { vec_dot_f32(n, w.as_ptr().cast(), a.as_ptr().cast()) }
}

fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n);
    // SAFETY: as in `tile_fns!`: AVX2/FMA/F16C checked by `kernel`; both rows hold `n` f16.
    unsafe { vec_dot_f16(n, w.as_ptr().cast(), a.as_ptr().cast()) }
}

macro_rules! dot_from_tile {
    ($name:ident, $tile:ident) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let mut out = [0.0f32];
            $tile(n, w, a, a.len(), &mut out);
            out[0]
        }
    };
}
dot_from_tile!(dot_q4_0, tile_q4_0);
dot_from_tile!(dot_q4_1, tile_q4_1);
dot_from_tile!(dot_q5_0, tile_q5_0);
dot_from_tile!(dot_q5_1, tile_q5_1);
dot_from_tile!(dot_q5_k, tile_q5_k);
dot_from_tile!(dot_q8_0, tile_q8_0);
dot_from_tile!(dot_q4_k, tile_q4_k);
dot_from_tile!(dot_q6_k, tile_q6_k);

/// The single-row dot kernel (`ggml_vec_dot_*`) for weights of type `ty`, if there is one and
/// the CPU supports it.
pub(crate) fn kernel(ty: GgmlType) -> Option<DotFn> {
    if !available() {
        return None;
    }
    Some(match ty {
        GgmlType::F32 => dot_f32,
        GgmlType::F16 => dot_f16,
        GgmlType::Q4_0 => dot_q4_0,
        GgmlType::Q4_1 => dot_q4_1,
        GgmlType::Q5_0 => dot_q5_0,
        GgmlType::Q5_1 => dot_q5_1,
        GgmlType::Q5_K => dot_q5_k,
        GgmlType::Q8_0 => dot_q8_0,
        GgmlType::Q4_K => dot_q4_k,
        GgmlType::Q6_K => dot_q6_k,
        _ => return None,
    })
}

/// The tile kernel for weights of type `ty`. `sgemm` selects, for F32/F16, llamafile's batched
/// accumulation order instead of `ggml_vec_dot_*`'s (quantized types compute the same either way).
/// F32/F16 have no `vec_dot`-order tile: their single-token path uses [`kernel`].
pub(crate) fn tile(ty: GgmlType, sgemm: bool) -> Option<TileFn> {
    if !available() {
        return None;
    }
    Some(match (ty, sgemm) {
        (GgmlType::F32, true) => tile_f32_sgemm,
        (GgmlType::F16, true) => tile_f16_sgemm,
        (GgmlType::Q4_0, _) => tile_q4_0,
        (GgmlType::Q4_1, _) => tile_q4_1,
        (GgmlType::Q5_0, _) => tile_q5_0,
        (GgmlType::Q5_1, _) => tile_q5_1,
        (GgmlType::Q5_K, _) => tile_q5_k,
        (GgmlType::Q8_0, _) => tile_q8_0,
        (GgmlType::Q4_K, _) => tile_q4_k,
        (GgmlType::Q6_K, _) => tile_q6_k,
        _ => return None,
    })
}

/// The chunk kernel (many weight rows × a tile of tokens, see [`ChunkFn`]) for weights of type
/// `ty`, with the same per-output arithmetic as [`tile`] for the same `sgemm`.
pub(crate) fn chunk(ty: GgmlType, sgemm: bool) -> Option<ChunkFn> {
    if !available() {
        return None;
    }
    Some(match (ty, sgemm) {
        (GgmlType::F32, true) => chunk_f32_sgemm,
        (GgmlType::F16, true) => chunk_f16_sgemm,
        (GgmlType::Q4_0, _) => chunk_q4_0,
        (GgmlType::Q4_1, _) => chunk_q4_1,
        (GgmlType::Q5_0, _) => chunk_q5_0,
        (GgmlType::Q5_1, _) => chunk_q5_1,
        (GgmlType::Q5_K, _) => chunk_q5_k,
        (GgmlType::Q8_0, _) => chunk_q8_0,
        (GgmlType::Q4_K, _) => chunk_q4_k,
        (GgmlType::Q6_K, _) => chunk_q6_k,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers (arch/x86/quants.c).

/// # Safety
/// 32 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// Two f16 at `p` widened to f32 in lanes 0 and 1 (lanes 2, 3 are zero).
///
/// # Safety
/// 4 readable bytes at `p`; F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x2(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()))
}

/// One f16 at `p` as f32 (`GGML_CPU_FP16_TO_FP32`, F16C).
///
/// # Safety
/// 2 readable bytes at `p`; F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x1(p: *const u8) -> f32 {
    let h = p.cast::<u16>().read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// `hsum_float_8` (and llamafile's `hsum(__m256)`): halves, `movehl`, `movehdup`, i.e.
/// The eight 6-bit scales and eight mins of a Q4_K/Q5_K superblock (the 12
/// bytes at `p`), widened to i16 the way llama.cpp's AVX2 kernels unpack them:
/// `(mins, scales)`, the scales repeated in both 128-bit halves.
///
/// # Safety
/// 12 readable bytes at `p`; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn k4_scales_mins(p: *const u8) -> (__m128i, __m256i) {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    // SAFETY: the caller guarantees 12 readable bytes.
    let u = |k: usize| unsafe { p.add(4 * k).cast::<u32>().read_unaligned() };
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let utmp3 = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let utmp2 = u1 & KMASK1;
    let utmp1 = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let utmp0 = u0 & KMASK1;
    let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
        utmp3 as i32,
        utmp2 as i32,
        utmp1 as i32,
        utmp0 as i32,
    ));
    let mins = _mm256_extracti128_si256(mins_and_scales, 1);
    let sc128 = _mm256_castsi256_si128(mins_and_scales);
    (mins, _mm256_set_m128i(sc128, sc128))
}

/// Q4_K's 256 nibbles at `q4`: for each 32-byte group j, its low nibbles
/// (sub-block 2j) and high nibbles (sub-block 2j + 1).
///
/// # Safety
/// 128 readable bytes at `q4`; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_nibbles(q4: *const u8, m4: __m256i) -> ([__m256i; 4], [__m256i; 4]) {
    let mut q4l = [_mm256_setzero_si256(); 4];
    let mut q4h = [_mm256_setzero_si256(); 4];
    for j in 0..4 {
        // SAFETY: the caller guarantees 128 readable bytes.
        let bits = unsafe { load32(q4.add(32 * j)) };
        q4l[j] = _mm256_and_si256(bits, m4);
        q4h[j] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
    }
    (q4l, q4h)
}

/// llama.cpp's `get_scale_shuffle_k4(2j)` and `(2j + 1)`: scale 2j (resp.
/// 2j + 1) of `scales` in every i16 lane, for j in 0..4.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_scale_shuffles(scales: __m256i) -> ([__m256i; 4], [__m256i; 4]) {
    let at = |b: i16| _mm256_shuffle_epi8(scales, _mm256_set1_epi16(((b + 1) << 8) | b));
    (
        std::array::from_fn(|j| at(4 * j as i16)),
        std::array::from_fn(|j| at(4 * j as i16 + 2)),
    )
}

/// `(t0 + t2) + (t1 + t3)` with `t_i = l_i + l_{i+4}`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_float_8(x: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `bytes_from_nibbles_32`: 16 bytes -> low nibbles, then high nibbles, as 32 bytes.
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    let tmp = _mm_loadu_si128(p.cast());
    let both = _mm256_inserti128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// `bytes_from_bits_32`: 32 bits (little-endian u32 at `p`) -> 32 bytes of 0xFF or 0x00.
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_bits_32(p: *const u8) -> __m256i {
    let x32 = p.cast::<i32>().read_unaligned();
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// `mul_sum_us8_pairs_float` without VNNI: `maddubs`, then pairs of i16 summed by `madd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

// ---------------------------------------------------------------------------------------------
// Legacy quants. In every one, output t is `hsum_float_8(acc_t)` with
// `acc_t = fma(d_x * d_y, float(isum lanes), acc_t)` per block, as in `ggml_vec_dot_*`.

/// Signed weight quants × Q8_0 activations, `R` weight rows (`w_row` bytes apart) at once:
/// `out[r * T + t]`; `qx(block)` decodes a block's 32 signed quants. Each activation block is
/// loaded once for all `R` rows; per output the operations are `ggml_vec_dot_*`'s.
///
/// # Safety
/// As raw rows (see above), for `R` rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)] // why: the raw-rows arguments plus the block size and decoder
unsafe fn q8_0_acts<const R: usize, const T: usize>(
    nb: usize,
    w: *const u8,
    w_row: usize,
    wbytes: usize,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
    qx: impl Fn(*const u8) -> __m256i,
) {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for i in 0..nb {
        let mut dx = [0.0f32; R];
        let mut q = [_mm256_setzero_si256(); R];
        let mut ax = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let xb = w.add(w_row * r + wbytes * i);
            if R > 1 {
                // The same block of the next group of rows: memory, not arithmetic, bounds a
                // token's product, and the hardware prefetcher alone leaves bandwidth unused.
                _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(R * w_row).cast());
            }
            dx[r] = f16x1(xb);
            q[r] = qx(xb);
            ax[r] = _mm256_sign_epi8(q[r], q[r]);
        }
        for t in 0..T {
            let yb = a.add(a_stride * t + 34 * i);
            let dy = f16x1(yb);
            let y = load32(yb.add(2));
            for r in 0..R {
                let d = _mm256_set1_ps(dx[r] * dy);
                let sy = _mm256_sign_epi8(y, q[r]);
                acc[r][t] = _mm256_fmadd_ps(d, mul_sum_us8_pairs_float(ax[r], sy), acc[r][t]);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *out.add(r * T + t) = hsum_float_8(acc[r][t]);
        }
    }
}

/// Runs `f::<R>` (a kernel for `R` rows at once) over `n_rows` rows `w_row` bytes apart:
/// `$one` rows at a time for one token (default four: independent accumulator chains), two for
/// more tokens (each activation block loaded once per two rows), then one at a time.
macro_rules! rows_by {
    ($n_rows:expr, $t:expr, |$r:ident, $rr:ident| $call:expr) => {
        rows_by!($n_rows, $t, 4, |$r, $rr| $call)
    };
    ($n_rows:expr, $t:expr, $one:literal, |$r:ident, $rr:ident| $call:expr) => {{
        let n_rows: usize = $n_rows;
        let mut $r = 0usize;
        if $t == 1 {
            while n_rows - $r >= $one {
                const $rr: usize = $one;
                $call;
                $r += $one;
            }
        } else {
            while $r + 2 <= n_rows {
                const $rr: usize = 2;
                $call;
                $r += 2;
            }
        }
        while $r < n_rows {
            const $rr: usize = 1;
            $call;
            $r += 1;
        }
    }};
}

/// Q4_0 decode: nibbles minus 8.
///
/// # Safety
/// 18 readable bytes at `xb`; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_quants(xb: *const u8) -> __m256i {
    _mm256_sub_epi8(bytes_from_nibbles_32(xb.add(2)), _mm256_set1_epi8(8))
}

/// Q5_0 decode: a clear fifth bit means q - 16 < 0, so 0xF0 goes in the high nibble.
///
/// # Safety
/// 22 readable bytes at `xb`; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_quants(xb: *const u8) -> __m256i {
    let hi = _mm256_andnot_si256(
        bytes_from_bits_32(xb.add(2)),
        _mm256_set1_epi8(0xF0u8 as i8),
    );
    _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), hi)
}

/// Q8_0 decode: the quants as they are.
///
/// # Safety
/// 34 readable bytes at `xb`; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_quants(xb: *const u8) -> __m256i {
    load32(xb.add(2))
}

/// `$one`: rows at a time for a single token. Q8_0 takes 1, one sequential stream for the
/// hardware prefetcher, instead of four rows with software prefetches (measured on its 680-byte
/// Gemma 3 output rows, on an AMD EPYC (Zen 4) guest: 1.8× faster with one thread, 1.4–2× with
/// two); Q4_0 and Q5_0 lose with 1 there, so they keep 4.
macro_rules! q8_0_acts_kernels {
    ($(($doc:literal, $tile:ident, $rows:ident, $bytes:expr, $quants:ident, $one:literal)),* $(,)?) => {$(
        #[doc = $doc]
        ///
        /// # Safety
        /// As a raw tile (see the top of this file).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $tile<const T: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            a_stride: usize,
            out: *mut f32,
        ) {
            q8_0_acts::<1, T>(nb, w, 0, $bytes, a, a_stride, out, |xb| $quants(xb))
        }

        /// The same kernel over many rows (see [`q8_0_acts`]).
        ///
        /// # Safety
        /// As raw rows (see above).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $rows<const T: usize>(
            n_rows: usize,
            nb: usize,
            w: *const u8,
            w_row: usize,
            a: *const u8,
            a_stride: usize,
            o: *mut f32,
        ) {
            rows_by!(n_rows, T, $one, |r, RR| q8_0_acts::<RR, T>(
                nb,
                w.add(r * w_row),
                w_row,
                $bytes,
                a,
                a_stride,
                o.add(r * T),
                |xb| $quants(xb)
            ));
        }
    )*};
}

q8_0_acts_kernels!(
    (
        "`ggml_vec_dot_q4_0_q8_0` (AVX2).",
        q4_0_q8_0,
        rows_q4_0,
        18,
        q4_0_quants,
        4
    ),
    (
        "`ggml_vec_dot_q5_0_q8_0` (AVX2).",
        q5_0_q8_0,
        rows_q5_0,
        22,
        q5_0_quants,
        4
    ),
    (
        "`ggml_vec_dot_q8_0_q8_0` (AVX2).",
        q8_0_q8_0,
        rows_q8_0,
        34,
        q8_0_quants,
        1
    ),
);

/// `ggml_vec_dot_q4_1_q8_1` (AVX2) for `R` rows `w_row` bytes apart: `hsum_float_8(acc) +
/// summs`, `summs += m_x * s_y`; `out[r * T + t]`.
///
/// # Safety
/// As raw rows (see above), for `R` rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_q8_1_rows<const R: usize, const T: usize>(
    nb: usize,
    w: *const u8,
    w_row: usize,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    // Lane 1 is `summs`; lane 0 collects d_x * d_y, unused.
    let mut summs = [[_mm_setzero_ps(); T]; R];
    for i in 0..nb {
        let mut dm_x = [_mm_setzero_ps(); R];
        let mut qx = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let xb = w.add(w_row * r + 20 * i);
            if R > 1 {
                // As in `q8_0_acts`, but two groups ahead (measured: its rows are shorter).
                _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(2 * R * w_row).cast());
            }
            dm_x[r] = f16x2(xb);
            qx[r] = bytes_from_nibbles_32(xb.add(4));
        }
        for t in 0..T {
            let yb = a.add(a_stride * t + 36 * i);
            let dm_y = f16x2(yb);
            let y = load32(yb.add(4));
            for r in 0..R {
                // [d_x * d_y, m_x * s_y]: both products of two f16 values, exact in f32.
                let p = _mm_mul_ps(dm_x[r], dm_y);
                summs[r][t] = _mm_add_ps(summs[r][t], p);
                let d = _mm256_broadcastss_ps(p);
                acc[r][t] = _mm256_fmadd_ps(d, mul_sum_us8_pairs_float(qx[r], y), acc[r][t]);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            *out.add(r * T + t) =
                hsum_float_8(acc[r][t]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r][t]));
        }
    }
}

/// `ggml_vec_dot_q4_1_q8_1` (AVX2), one row.
///
/// # Safety
/// As a raw tile (see the top of this file).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_q8_1<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    q4_1_q8_1_rows::<1, T>(nb, w, 0, a, a_stride, out)
}

/// [`q4_1_q8_1`] over many rows.
///
/// # Safety
/// As raw rows (see above).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_1<const T: usize>(
    n_rows: usize,
    nb: usize,
    w: *const u8,
    w_row: usize,
    a: *const u8,
    a_stride: usize,
    o: *mut f32,
) {
    if T > 1 {
        // Two rows' accumulators and `summs` for a tile of tokens exceed the 16 registers:
        // measured slower than one row at a time.
        for r in 0..n_rows {
            q4_1_q8_1_rows::<1, T>(nb, w.add(r * w_row), 0, a, a_stride, o.add(r * T));
        }
        return;
    }
    rows_by!(n_rows, T, |r, RR| q4_1_q8_1_rows::<RR, T>(
        nb,
        w.add(r * w_row),
        w_row,
        a,
        a_stride,
        o.add(r * T)
    ));
}

/// `ggml_vec_dot_q5_1_q8_1` (AVX2): as Q4_1 with the fifth bit or-ed in from `qh`.
///
/// # Safety
/// As a raw tile (see the top of this file).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_q8_1<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = [_mm256_setzero_ps(); T];
    // Lane 1 is `summs`; lane 0 collects d_x * d_y, unused.
    let mut summs = [_mm_setzero_ps(); T];
    for i in 0..nb {
        let xb = w.add(24 * i);
        let dm_x = f16x2(xb);
        let hi = _mm256_and_si256(bytes_from_bits_32(xb.add(4)), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(xb.add(8)), hi);
        for t in 0..T {
            let yb = a.add(a_stride * t + 36 * i);
            // [d_x * d_y, m_x * s_y]: both products of two f16 values, exact in f32.
            let p = _mm_mul_ps(dm_x, f16x2(yb));
            summs[t] = _mm_add_ps(summs[t], p);
            let d = _mm256_broadcastss_ps(p);
            acc[t] = _mm256_fmadd_ps(mul_sum_us8_pairs_float(qx, load32(yb.add(4))), d, acc[t]);
        }
    }
    for t in 0..T {
        *out.add(t) = hsum_float_8(acc[t]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[t]));
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants. Q8_K block: f32 d at 0, 256 quants at 4, 16 i16 bsums at 260.

const Q8K_QS: usize = 4;
const Q8K_BSUMS: usize = 260;
const Q8K_SIZE: usize = 292;

/// `ggml_vec_dot_q4_K_q8_K` (AVX2): integer lanes scaled per 32, an 8-lane float accumulator
/// for the scales and a 4-lane one for the mins.
///
/// # Safety
/// As a raw tile (see the top of this file).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_q8_k<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm_setzero_ps(); T];
    for i in 0..nb {
        let xb = w.add(144 * i);
        let (dx, dminx) = (f16x1(xb), f16x1(xb.add(2)));
        let (mins, scales) = k4_scales_mins(xb.add(4));
        let q4 = xb.add(16);
        let (q4l, q4h) = q4k_nibbles(q4, m4);
        let (scale_l, scale_h) = k4_scale_shuffles(scales);
        for t in 0..T {
            let yb = a.add(a_stride * t + Q8K_SIZE * i);
            let yd = yb.cast::<f32>().read_unaligned();
            let d = yd * dx;
            let dmin = -yd * dminx;
            let q8sums = load32(yb.add(Q8K_BSUMS));
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(q8sums),
                _mm256_extracti128_si256(q8sums, 1),
            );
            let prod = _mm_madd_epi16(mins, q8s);
            acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
            let q8 = yb.add(Q8K_QS);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let p16l = _mm256_maddubs_epi16(q4l[j], load32(q8.add(64 * j)));
                let p16h = _mm256_maddubs_epi16(q4h[j], load32(q8.add(64 * j + 32)));
                let p16l = _mm256_madd_epi16(scale_l[j], p16l);
                let p16h = _mm256_madd_epi16(scale_h[j], p16h);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[t]);
        }
    }
    for t in 0..T {
        let m = acc_m[t];
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        *out.add(t) = hsum_float_8(acc[t]) + _mm_cvtss_f32(m);
    }
}

/// `ggml_vec_dot_q6_K_q8_K` (AVX2): unsigned 6-bit quants against Q8_K, the `32 * Σ scale ·
/// bsum` offset subtracted per lane afterwards (exactly as llama.cpp distributes it).
///
/// # Safety
/// As a raw tile (see the top of this file).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_q8_k<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        let xb = w.add(210 * i);
        let (ql, qh, sc) = (xb, xb.add(128), xb.add(192));
        let dx = f16x1(xb.add(208));
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
                // get_scale_shuffle(is): scale 2·is in the low 8 bytes, 2·is + 1 in the high.
                let shuf = _mm_set_epi64x(
                    0x0101010101010101 * (2 * is as i64 + 1),
                    0x0101010101010101 * (2 * is as i64),
                );
                s16[is] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf));
            }
        }
        for t in 0..T {
            let yb = a.add(a_stride * t + Q8K_SIZE * i);
            let d = yb.cast::<f32>().read_unaligned() * dx;
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
            let sumi = _mm256_sub_epi32(sumi, q8sclsub);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[t]);
        }
    }
    for t in 0..T {
        *out.add(t) = hsum_float_8(acc[t]);
    }
}

/// `ggml_vec_dot_q5_K_q8_K` (AVX2; `TILED == false`): `acc = fma(d, sumi lanes, acc)`, the
/// mins in a scalar `summs = fma(imin, dmin, summs)`, result `hsum_float_8(acc) + summs`. With
/// `TILED`, the same integer sums finished as the tiled microkernel: per superblock
/// `res = fma(-dmin, imin, d·isum)`, `y = fma(res, d_a, y)`.
///
/// # Safety
/// As a raw tile (see the top of this file).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_q8_k<const T: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let fma1 = |a: f32, b: f32, c: f32| {
        _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)))
    };
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut summs = [0.0f32; T];
    for i in 0..nb {
        let xb = w.add(176 * i);
        let (dx, dminx) = (f16x1(xb), f16x1(xb.add(2)));
        let (mins, scales) = k4_scales_mins(xb.add(4));
        let hbits = load32(xb.add(16));
        let q5 = xb.add(48);
        let mut qv = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let bits = load32(q5.add(32 * j));
            let h = |b: i32| {
                let m = _mm256_and_si256(hbits, _mm256_set1_epi8(1 << b));
                // Bit b of each byte to bit 4.
                let at0 = _mm256_srl_epi16(m, _mm_cvtsi32_si128(b));
                _mm256_slli_epi16(at0, 4)
            };
            qv[2 * j] = _mm256_add_epi8(_mm256_and_si256(bits, m4), h(2 * j as i32));
            qv[2 * j + 1] = _mm256_add_epi8(
                _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                h(2 * j as i32 + 1),
            );
        }
        let scale_at: [__m256i; 8] = std::array::from_fn(|s| {
            let b = 2 * s as i16;
            _mm256_shuffle_epi8(scales, _mm256_set1_epi16(((b + 1) << 8) | b))
        });
        for t in 0..T {
            let yb = a.add(a_stride * t + Q8K_SIZE * i);
            let yd = yb.cast::<f32>().read_unaligned();
            let q8sums = load32(yb.add(Q8K_BSUMS));
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(q8sums),
                _mm256_extracti128_si256(q8sums, 1),
            );
            let prod = _mm_madd_epi16(mins, q8s);
            let z = _mm_setzero_si128();
            let imin = _mm_cvtsi128_si32(_mm_hadd_epi32(_mm_hadd_epi32(prod, z), z)) as f32;
            let q8 = yb.add(Q8K_QS);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let p0 = _mm256_maddubs_epi16(qv[2 * j], load32(q8.add(64 * j)));
                let p1 = _mm256_maddubs_epi16(qv[2 * j + 1], load32(q8.add(64 * j + 32)));
                let p0 = _mm256_madd_epi16(scale_at[2 * j], p0);
                let p1 = _mm256_madd_epi16(scale_at[2 * j + 1], p1);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            if TILED {
                let z = _mm_add_epi32(
                    _mm256_castsi256_si128(sumi),
                    _mm256_extracti128_si256(sumi, 1),
                );
                let z = _mm_add_epi32(z, _mm_shuffle_epi32(z, 0b01_00_11_10));
                let z = _mm_add_epi32(z, _mm_shuffle_epi32(z, 0b10_11_00_01));
                let s1 = _mm_cvtsi128_si32(z) as f32;
                let res = fma1(-dminx, imin, dx * s1);
                summs[t] = fma1(res, yd, summs[t]);
            } else {
                summs[t] = fma1(imin, -yd * dminx, summs[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(yd * dx), _mm256_cvtepi32_ps(sumi), acc[t]);
            }
        }
    }
    for t in 0..T {
        *out.add(t) = if TILED {
            summs[t]
        } else {
            hsum_float_8(acc[t]) + summs[t]
        };
    }
}

/// # Safety
/// As a raw tile.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_dot<const T: usize>(nb: usize, w: *const u8, a: *const u8, s: usize, o: *mut f32) {
    q5_k_q8_k::<T, false>(nb, w, a, s, o)
}

/// # Safety
/// As a raw tile.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_tiled<const T: usize>(nb: usize, w: *const u8, a: *const u8, s: usize, o: *mut f32) {
    q5_k_q8_k::<T, true>(nb, w, a, s, o)
}

// ---------------------------------------------------------------------------------------------
// Floats.

/// `GGML_F32x8_REDUCE` of four accumulators: `(a0 + a2) + (a1 + a3)`, halves, two `hadd`s.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce4_hadd(acc: [__m256; 4]) -> f32 {
    let x = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t0 = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
}

/// `ggml_vec_dot_f32` (AVX2): four 8-lane FMA accumulators per 32 elements, the rest in f64.
///
/// # Safety
/// AVX2 + FMA; `n` f32 readable at `x` and at `y`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vec_dot_f32(n: usize, x: *const f32, y: *const f32) -> f32 {
    let np = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in (0..np).step_by(32) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(o)), _mm256_loadu_ps(y.add(o)), *acc);
        }
    }
    let mut sum = reduce4_hadd(acc) as f64;
    for i in np..n {
        sum += (*x.add(i) * *y.add(i)) as f64;
    }
    sum as f32
}

/// `ggml_vec_dot_f16` (AVX2 + F16C): as [`vec_dot_f32`] on widened halves.
///
/// # Safety
/// AVX2 + FMA + F16C; `n` f16 readable at `x` and at `y`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vec_dot_f16(n: usize, x: *const u16, y: *const u16) -> f32 {
    let np = n / 32 * 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    let ld = |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
    for i in (0..np).step_by(32) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + 8 * j;
            *acc = _mm256_fmadd_ps(ld(x.add(o)), ld(y.add(o)), *acc);
        }
    }
    let mut sum = reduce4_hadd(acc) as f64;
    for i in np..n {
        let (a, b) = (f16x1(x.add(i).cast()), f16x1(y.add(i).cast()));
        // why: an f16×f16 product is exact in f32; ggml sums the leftovers in f64.
        sum += (a * b) as f64;
    }
    sum as f32
}

/// llamafile `tinyBLAS<8>` on f32: one 8-lane FMA accumulator per output over `nb` groups of 8.
///
/// # Safety
/// As a raw tile (`nb` counts groups of 8 f32).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_sgemm<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = [_mm256_setzero_ps(); T];
    for l in 0..nb {
        let wv = _mm256_loadu_ps(w.add(32 * l).cast());
        for (t, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_loadu_ps(a.add(a_stride * t + 32 * l).cast());
            *acc = _mm256_fmadd_ps(wv, av, *acc);
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        *out.add(t) = hsum_float_8(*acc);
    }
}

/// llamafile `tinyBLAS<8>` on f16 (F16C widening): one 8-lane FMA accumulator per output.
///
/// # Safety
/// As a raw tile (`nb` counts groups of 8 f16).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_sgemm<const T: usize>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = [_mm256_setzero_ps(); T];
    for l in 0..nb {
        let wv = _mm256_cvtph_ps(_mm_loadu_si128(w.add(16 * l).cast()));
        for (t, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_cvtph_ps(_mm_loadu_si128(a.add(a_stride * t + 16 * l).cast()));
            *acc = _mm256_fmadd_ps(wv, av, *acc);
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        *out.add(t) = hsum_float_8(*acc);
    }
}

// After `tile_fns!`, which it uses.
mod paths;
