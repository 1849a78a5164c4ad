//! AVX-512 kernels (x86_64: F, BW, VL and VNNI on top of AVX2 + FMA + F16C) that compute
//! exactly what the AVX2 kernels of [`super::x86_avx2`] compute, bit for bit, and so exactly
//! what llama.cpp's AVX2 build computes.
//!
//! Why the results cannot differ: every integer sum of the AVX2 kernels is exact (no `maddubs`
//! saturation is reachable with quants in their ranges and activations from
//! [`crate::quantize_activation_row`], whose quants lie in `[-127, 127]`), so any instruction
//! that computes the same integers — here `vpdpbusd`, unsigned weight bytes times signed
//! activation bytes, with the weights' offset (8 for Q4_0, 16 for Q5_0, 128 for Q8_0, 32 for
//! Q6_K) taken back out through the activations' sums — yields the same integers. Where the
//! integers meet floats, each output gets the float operations of its AVX2 kernel in the same
//! order: the same products of scales, the same FMAs into the same accumulator lanes, block
//! after block, and the same horizontal sum.
//!
//! The speed comes from the layout, not from other arithmetic. A *panel* holds sixteen weight
//! rows decoded once and interleaved in groups of four quants, so that lane `r` of a 512-bit
//! register belongs to row `r`: one `vpdpbusd` against four activation bytes broadcast to every
//! lane advances sixteen outputs at once, and the per-lane accumulators an AVX2 kernel keeps in
//! one register per output become one register per lane index holding that lane of sixteen
//! outputs. The horizontal sum at the end is then plain vertical adds, and the sixteen results
//! of a token are one store. [`super::Gemm`] describes such a kernel; `matmul` decodes a chunk of
//! rows once and runs every group of tokens against it (`legacy`: the 32-element quants;
//! `kquants`: the K-quants' tiled and repacked paths; `kquants_dot`: the K-quants in `vec_dot`
//! order).
//!
//! Products of one token, `vec_dot`, and batches below a panel kernel's minimum (two or three
//! tokens, measured per kernel) keep the AVX2 kernels, which decode each weight block in
//! registers for the tokens at hand: decoding a panel costs about what two or three tokens'
//! products against it cost, so for one token the panels were measured slower
//! (docs/PERFORMANCE.md has the numbers), and decoding one token is bound by reading the
//! weights anyway. F32/F16 products keep the AVX2 kernels too.
//!
//! Everything here is reached only through [`kernel`], [`tile`], [`chunk`], [`path_tile`],
//! [`path_chunk`] and [`gemm`], which hand kernels out only when [`available`] confirmed the
//! features, so no `#[target_feature]` function runs on a CPU without them.

// why: the kernels below are `unsafe fn`s whose bodies are pointer reads under the contract
// stated in their `# Safety` sections; wrapping every load in its own block adds nothing.
#![allow(unsafe_op_in_unsafe_fn)]
#![allow(clippy::needless_range_loop)] // why: per-token and per-lane index loops, as in x86_avx2

mod kquants;
mod kquants_dot;
mod legacy;

use super::{x86_avx2, ChunkFn, Gemm, TileFn, GEMM_TOKENS, PANEL_ROWS};
use crate::matmul::Path;
use crate::reference::DotFn;
use crate::GgmlType;
use std::arch::x86_64::*;

/// Whether this CPU runs the kernels in this file (and those of `x86_avx2`, which it calls).
pub(crate) fn available() -> bool {
    x86_avx2::available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// The single-row dot kernel for weights of type `ty`: AVX2's (see the module docs).
pub(crate) fn kernel(ty: GgmlType) -> Option<DotFn> {
    if !available() {
        return None;
    }
    x86_avx2::kernel(ty)
}

/// The tile kernel for weights of type `ty`: AVX2's (see the module docs).
pub(crate) fn tile(ty: GgmlType, sgemm: bool) -> Option<TileFn> {
    if !available() {
        return None;
    }
    x86_avx2::tile(ty, sgemm)
}

/// The chunk kernel for weights of type `ty`: AVX2's (see the module docs).
pub(crate) fn chunk(ty: GgmlType, sgemm: bool) -> Option<ChunkFn> {
    if !available() {
        return None;
    }
    x86_avx2::chunk(ty, sgemm)
}

/// The path tile kernel: AVX2's (see the module docs).
pub(crate) fn path_tile(ty: GgmlType, path: Path) -> Option<TileFn> {
    if !available() {
        return None;
    }
    x86_avx2::path_tile(ty, path)
}

/// The path chunk kernel: AVX2's (see the module docs).
pub(crate) fn path_chunk(ty: GgmlType, path: Path) -> Option<ChunkFn> {
    if !available() {
        return None;
    }
    x86_avx2::path_chunk(ty, path)
}

/// The blocked matrix-matrix kernel for weights of type `ty` on `path`, if there is one.
/// F32/F16 (`sgemm` or not) have none: no shipped model multiplies float matrices in bulk.
pub(crate) fn gemm(ty: GgmlType, path: Path, sgemm: bool) -> Option<Gemm> {
    if !available() || sgemm {
        return None;
    }
    match (ty, path) {
        (GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0, _) => {
            legacy::gemm(ty, path)
        }
        (GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K, Path::VecDot) => kquants_dot::gemm(ty),
        (GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K, _) => kquants::gemm(ty, path),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces of the panel kernels.

/// The shape of one panel kernel, for the length checks of its safe wrappers: a block of `per`
/// elements takes `w_block` bytes of a weight row, `a_block` of an activation row, `p_block` of
/// the panel and `s_block` of the side data.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) per: usize,
    pub(super) w_block: usize,
    pub(super) a_block: usize,
    pub(super) p_block: usize,
    pub(super) s_block: usize,
}

impl Shape {
    /// Blocks in a row of `cols` (whole blocks: `matmul` checked `cols`).
    fn blocks(self, cols: usize) -> usize {
        assert!(cols.is_multiple_of(self.per), "{cols} columns");
        cols / self.per
    }

    pub(super) fn panel_bytes(self, cols: usize) -> usize {
        self.blocks(cols) * self.p_block
    }

    pub(super) fn side_bytes(self, cols: usize) -> usize {
        self.blocks(cols) * self.s_block
    }

    /// Checks a decode call's buffers; returns the block count.
    pub(super) fn check_decode(
        self,
        cols: usize,
        w: &[u8],
        w_row: usize,
        n_rows: usize,
        panel: &[u8],
    ) -> usize {
        let nb = self.blocks(cols);
        assert!((1..=PANEL_ROWS).contains(&n_rows), "{n_rows} panel rows");
        assert!(
            w_row >= nb * self.w_block && w.len() >= (n_rows - 1) * w_row + nb * self.w_block,
            "weight rows too short"
        );
        assert!(panel.len() >= nb * self.p_block, "panel too short");
        nb
    }

    /// Checks a prep call's buffers; returns the block count.
    pub(super) fn check_prep(self, cols: usize, act: &[u8], side: &[u8]) -> usize {
        let nb = self.blocks(cols);
        assert!(act.len() >= nb * self.a_block, "activation row too short");
        assert!(side.len() >= nb * self.s_block, "side data too short");
        nb
    }

    /// Checks a run call's buffers; returns the block count.
    #[allow(clippy::too_many_arguments)] // why: every buffer of a run call, as it gets them
    pub(super) fn check_run(
        self,
        cols: usize,
        panel: &[u8],
        acts: &[u8],
        a_stride: usize,
        side: &[u8],
        s_stride: usize,
        nt: usize,
        out: &[f32],
    ) -> usize {
        let nb = self.blocks(cols);
        assert!((1..=GEMM_TOKENS).contains(&nt), "{nt} tokens");
        assert!(panel.len() >= nb * self.p_block, "panel too short");
        assert!(
            a_stride >= nb * self.a_block && acts.len() >= (nt - 1) * a_stride + nb * self.a_block,
            "activation rows too short"
        );
        assert!(
            s_stride >= nb * self.s_block && side.len() >= (nt - 1) * s_stride + nb * self.s_block,
            "side data too short"
        );
        assert!(out.len() >= nt * PANEL_ROWS, "output too short");
        nb
    }
}

/// Generates the safe entry points of one panel kernel from its raw functions:
/// `$decode(cols, w, w_row, n_rows, panel)`, `$prep(cols, act, side)` and
/// `$run(cols, panel, acts, a_stride, side, s_stride, nt, out)`, each checking its buffers with
/// `$shape` before calling `$raw_decode(nb, w, w_row, n_rows, panel)`, `$raw_prep(nb, act, side)`
/// or `$raw_run(nb, panel, acts, a_stride, side, s_stride, nt, out)`.
macro_rules! panel_entry {
    (decode $name:ident = $raw:expr, $shape:expr) => {
        fn $name(cols: usize, w: &[u8], w_row: usize, n_rows: usize, panel: &mut [u8]) {
            let nb = $shape.check_decode(cols, w, w_row, n_rows, panel);
            // SAFETY: `gemm` hands this out only after `available()` confirmed the CPU
            // features; the check above shows `n_rows` weight rows of `nb` blocks and a panel
            // of `nb` blocks.
            unsafe { $raw(nb, w.as_ptr(), w_row, n_rows, panel.as_mut_ptr()) }
        }
    };
    (prep $name:ident = $raw:expr, $shape:expr) => {
        fn $name(cols: usize, act: &[u8], side: &mut [u8]) {
            let nb = $shape.check_prep(cols, act, side);
            // SAFETY: as for the decoder; the check shows `nb` blocks of activations and of
            // side data.
            unsafe { $raw(nb, act.as_ptr(), side.as_mut_ptr()) }
        }
    };
    (run $name:ident = $raw:expr, $shape:expr) => {
        #[allow(clippy::too_many_arguments)] // why: the `GemmRunFn` signature
        fn $name(
            cols: usize,
            panel: &[u8],
            acts: &[u8],
            a_stride: usize,
            side: &[u8],
            s_stride: usize,
            nt: usize,
            out: &mut [f32],
        ) {
            let nb = $shape.check_run(cols, panel, acts, a_stride, side, s_stride, nt, out);
            // SAFETY: as for the decoder; the check shows a panel of `nb` blocks, `nt`
            // activation rows and side rows of `nb` blocks each, and `nt * PANEL_ROWS` outputs.
            unsafe {
                $raw(
                    nb,
                    panel.as_ptr(),
                    acts.as_ptr(),
                    a_stride,
                    side.as_ptr(),
                    s_stride,
                    nt,
                    out.as_mut_ptr(),
                )
            }
        }
    };
}
use panel_entry;

/// Defines `fn $name() -> Gemm`: the panel kernel of shape `$shape` whose raw decoder, prep and
/// run functions (for the path's arithmetic, and for the tokens outside the repacked GEMM's
/// groups of four) are the given ones, behind the checked entry points of [`panel_entry`], for
/// batches of `$min` tokens or more.
macro_rules! panel_kernel {
    ($name:ident: $shape:expr, $decode:expr, $prep:expr, $run:expr, $rest:expr, $min:expr) => {
        fn $name() -> Gemm {
            const SHAPE: Shape = $shape;
            fn side_bytes(cols: usize) -> usize {
                SHAPE.side_bytes(cols)
            }
            fn panel_bytes(cols: usize) -> usize {
                SHAPE.panel_bytes(cols)
            }
            super::panel_entry!(decode checked_decode = $decode, SHAPE);
            super::panel_entry!(prep checked_prep = $prep, SHAPE);
            super::panel_entry!(run checked_run = $run, SHAPE);
            super::panel_entry!(run checked_rest = $rest, SHAPE);
            Gemm {
                side_bytes,
                prep: checked_prep,
                panel_bytes,
                decode: checked_decode,
                run: checked_run,
                run_rest: checked_rest,
                min_tokens: $min,
            }
        }
    };
}
use panel_kernel;

/// Runs `$call` (which names the const `$T`) over `$nt` tokens in passes of `$max` (1..=8),
/// then one pass of the rest; `$t0` is the first token of each pass.
macro_rules! token_passes {
    ($nt:expr, $max:literal, |$t0:ident, $T:ident| $call:expr) => {{
        let nt: usize = $nt;
        let mut $t0 = 0usize;
        while $t0 + $max <= nt {
            const $T: usize = $max;
            $call;
            $t0 += $max;
        }
        match nt - $t0 {
            0 => {}
            1 => {
                const $T: usize = 1;
                $call
            }
            2 => {
                const $T: usize = 2;
                $call
            }
            3 => {
                const $T: usize = 3;
                $call
            }
            4 => {
                const $T: usize = 4;
                $call
            }
            5 => {
                const $T: usize = 5;
                $call
            }
            6 => {
                const $T: usize = 6;
                $call
            }
            7 => {
                const $T: usize = 7;
                $call
            }
            _ => unreachable!("passes of at most 8 tokens"),
        }
    }};
}
use token_passes;

/// Interleaves sixteen rows of eight dwords: lane `r` of output `k` is dword `k` of row `r`.
///
/// Two 4×4 dword transposes inside 128-bit lanes (rows `m` and `m + 4` share a register), then
/// one 128-bit shuffle per output.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn transpose_16x8(rows: &[__m256i; 16]) -> [__m512i; 8] {
    let z =
        |lo: usize, hi: usize| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(rows[lo]), rows[hi]);
    // 4×4 transposes inside each 128-bit lane: out[c] lane j = [v0[c], v1[c], v2[c], v3[c]].
    let t4 = |v: [__m512i; 4]| {
        let p = _mm512_unpacklo_epi32(v[0], v[1]);
        let q = _mm512_unpackhi_epi32(v[0], v[1]);
        let r = _mm512_unpacklo_epi32(v[2], v[3]);
        let s = _mm512_unpackhi_epi32(v[2], v[3]);
        [
            _mm512_unpacklo_epi64(p, r),
            _mm512_unpackhi_epi64(p, r),
            _mm512_unpacklo_epi64(q, s),
            _mm512_unpackhi_epi64(q, s),
        ]
    };
    // ta[c]: 128-bit lanes = rows 0..4 dword c, rows 0..4 dword 4 + c, rows 4..8 dword c,
    // rows 4..8 dword 4 + c; tb[c] the same for rows 8..16.
    let ta = t4([z(0, 4), z(1, 5), z(2, 6), z(3, 7)]);
    let tb = t4([z(8, 12), z(9, 13), z(10, 14), z(11, 15)]);
    let mut out = [_mm512_setzero_si512(); 8];
    for c in 0..4 {
        out[c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(ta[c], tb[c]);
        out[4 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(ta[c], tb[c]);
    }
    out
}

/// Lane `r`: the byte offset of panel row `r` (`r · w_row`), and the mask of the real rows.
///
/// # Panics
/// If `(PANEL_ROWS - 1) · w_row` does not fit in an i32 (`matmul` gives such rows no panels).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn row_offsets(w_row: usize, n_rows: usize) -> (__m512i, __mmask16) {
    let step = i32::try_from(w_row)
        .ok()
        .filter(|s| s.checked_mul(PANEL_ROWS as i32 - 1).is_some())
        .expect("panel rows too long for 32-bit gather offsets");
    let rows = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mask = if n_rows >= PANEL_ROWS {
        u16::MAX
    } else {
        (1u16 << n_rows) - 1
    };
    (_mm512_mullo_epi32(rows, _mm512_set1_epi32(step)), mask)
}

/// The dwords at `base + idx[r]` for the lanes `r` in `mask`, zero in the others.
///
/// # Safety
/// For every lane in `mask`, 4 readable bytes at `base + idx[lane]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gather(base: *const u8, idx: __m512i, mask: __mmask16) -> __m512i {
    _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, idx, base.cast())
}

/// Transposes sixteen rows of sixteen dwords: lane `r` of output `k` is dword `k` of row `r`.
///
/// 4×4 transposes inside 128-bit lanes (dwords, then qwords), then a 4×4 transpose of the
/// 128-bit lanes of each group of four rows: 64 shuffles for sixteen registers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn transpose_16x16(rows: &[__m512i; 16]) -> [__m512i; 16] {
    // t[4g + c] lane L = [row 4g][4L + c], [row 4g + 1][4L + c], .. [row 4g + 3][4L + c].
    let mut t = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let r = &rows[4 * g..4 * g + 4];
        let p = _mm512_unpacklo_epi32(r[0], r[1]);
        let q = _mm512_unpackhi_epi32(r[0], r[1]);
        let u = _mm512_unpacklo_epi32(r[2], r[3]);
        let v = _mm512_unpackhi_epi32(r[2], r[3]);
        t[4 * g] = _mm512_unpacklo_epi64(p, u);
        t[4 * g + 1] = _mm512_unpackhi_epi64(p, u);
        t[4 * g + 2] = _mm512_unpacklo_epi64(q, v);
        t[4 * g + 3] = _mm512_unpackhi_epi64(q, v);
    }
    // out[4L + c] = lanes L of t[c], t[4 + c], t[8 + c], t[12 + c].
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let a = _mm512_shuffle_i32x4::<0b01_00_01_00>(t[c], t[4 + c]);
        let b = _mm512_shuffle_i32x4::<0b11_10_11_10>(t[c], t[4 + c]);
        let e = _mm512_shuffle_i32x4::<0b01_00_01_00>(t[8 + c], t[12 + c]);
        let f = _mm512_shuffle_i32x4::<0b11_10_11_10>(t[8 + c], t[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(a, e);
        out[4 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(a, e);
        out[8 + c] = _mm512_shuffle_i32x4::<0b10_00_10_00>(b, f);
        out[12 + c] = _mm512_shuffle_i32x4::<0b11_01_11_01>(b, f);
    }
    out
}

/// Dwords `16q..16q + 16` (bytes `off..off + 64` of each row's block at `xb(r)`) of the
/// first `n_rows` rows, transposed (lane `r` of output `k`: dword `k` of row `r`; zero for the
/// rows past `n_rows`).
///
/// # Safety
/// 64 readable bytes at `xb(r) + off` for every `r < n_rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn row_dwords(
    xb: impl Fn(usize) -> *const u8,
    n_rows: usize,
    off: usize,
) -> [__m512i; 16] {
    let mut rows = [_mm512_setzero_si512(); 16];
    for r in 0..n_rows.min(16) {
        rows[r] = _mm512_loadu_si512(xb(r).add(off).cast());
    }
    transpose_16x16(&rows)
}

/// `acc + a.lo · b.lo + a.hi · b.hi` in each dword lane (i16 halves, exact): `vpdpwssd` as one
/// instruction. (LLVM rewrites `_mm512_dpwssd_epi32` chains into `vpmaddwd` + `vpaddd`, a
/// second uop per step, which made the `vec_dot`-order K-quant kernels 5–10% slower.)
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut acc = acc;
    // SAFETY: a register-only instruction of AVX512-VNNI, which this function's target
    // features (checked by every caller's `available()`) include.
    unsafe {
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    acc
}

/// Sixteen f16 values as f32 (`vcvtph2ps`, exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn f16x16(h: &[u16; 16]) -> __m512 {
    // SAFETY: `h` is 32 readable bytes.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(h.as_ptr().cast()) })
}

/// One f16 at `p` as f32.
///
/// # Safety
/// 2 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let h = p.cast::<u16>().read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// `hsum_float_8` of sixteen outputs whose eight accumulator lanes are the eight registers of
/// `a` (lane `r` of `a[k]` is lane `k` of output `r`): `((l0 + l4) + (l2 + l6)) + ((l1 + l5) +
/// (l3 + l7))`, the pairing `x86_avx2::hsum_float_8` adds in.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn hsum8_rows(a: &[__m512; 8]) -> __m512 {
    let t = |j: usize| _mm512_add_ps(a[j], a[j + 4]);
    _mm512_add_ps(_mm512_add_ps(t(0), t(2)), _mm512_add_ps(t(1), t(3)))
}

/// A dword at `p`, in every lane.
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn bcast32(p: *const u8) -> __m512i {
    _mm512_set1_epi32(p.cast::<i32>().read_unaligned())
}

/// An f32 at `p`, in every lane.
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn bcastf(p: *const u8) -> __m512 {
    _mm512_set1_ps(p.cast::<f32>().read_unaligned())
}
