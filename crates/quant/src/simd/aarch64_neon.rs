//! NEON kernels (aarch64) for the dot product of every weight type with its activation type, in
//! two variants chosen at run time from the CPU's features, never from `target-cpu`:
//! - [`Isa::NeonDotprod`](super::Isa::NeonDotprod): the `dotprod` extension's `SDOT` (Armv8.2+:
//!   Cortex-A55/A76 and later, Neoverse, Apple M), four byte products per i32 lane in one
//!   instruction;
//! - [`Isa::Neon`](super::Isa::Neon): plain Armv8 NEON, widening byte multiplies (`SMULL`,
//!   `SMULL2`) whose i16 products are pairwise added into i32 lanes (`SADALP`).
//!
//! Both variants compute the same exact integers: each block's `Σ q·a` (i8 × i8 products are
//! exact in i16 and every partial sum fits an i32), Q8_K's per-16 sums times the weights'
//! integer scales, and the mins' `Σ m·bsum`. Only then do floats enter, as in
//! `ggml_vec_dot_*_generic`: per legacy block `acc += isum · (d_x·d_a)` (in four float lanes and
//! two accumulator sets, even and odd blocks), per K-quant superblock `acc += (d_x·d_a)·isum`
//! and `accm += (dmin_x·d_a)·imin`. The lanes are summed in another order than the scalar
//! reference's, and llama.cpp's own NEON kernels differ again, so results agree with
//! [`crate::reference`] to float rounding, not bit for bit (`simd/aarch64_tests.rs` checks the
//! integer sums exactly and the floats to a tight relative tolerance).
//!
//! Layout: [`legacy`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), [`kquants`] (Q2_K … Q6_K), [`floats`]
//! (F32, F16, BF16). Every quantized kernel is written once as an `#[inline(always)]` tile body,
//! generic over the token count `T` (1..=[`MAX_TILE`]: one weight row against `T` activation
//! rows, each weight block decoded once for all of them) and over the variant `DP`
//! ([`Dot4`] picks `SDOT` or `SMULL`/`SADALP`, with the same integers in the same lanes, so the
//! variants' results are bit-identical). [`neon_kernels!`] instantiates each body inside
//! `#[target_feature]` functions, one per variant, and wraps them in safe, length-checked
//! [`DotFn`]/[`TileFn`]/[`ChunkFn`]s. A tile's output `t` is computed with exactly the operations
//! of the single-row kernel (which is the tile with `T = 1`), so [`crate::matmul()`] gives the
//! same bits whatever the batch. The kernels are reachable only through [`kernel`], [`tile`] and
//! [`chunk`], which hand out a variant only when the CPU has its features.
//!
//! Stable Rust does not expose `vdotq_s32` or the f16 vector conversions yet (they are feature
//! gated), so [`sdot`] and the f16 conversions are one-instruction `asm!` blocks.

// why: the kernels below are `unsafe fn`s whose bodies are pointer reads under the contract
// stated in their `# Safety` sections; wrapping every load in its own block adds nothing.
#![allow(unsafe_op_in_unsafe_fn)]

use super::{ChunkFn, TileFn, MAX_TILE};
use crate::reference::DotFn;
use crate::GgmlType;
use std::arch::aarch64::*;
use std::arch::asm;

mod floats;
mod kquants;
mod legacy;

/// Whether this CPU runs the plain NEON kernels (every aarch64 Linux CPU does; checked anyway).
pub(crate) fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU also has the `dotprod` extension (`SDOT`).
pub(crate) fn dotprod_available() -> bool {
    available() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Whether the CPU runs the variant `dotprod` selects.
fn runs(dotprod: bool) -> bool {
    if dotprod {
        dotprod_available()
    } else {
        available()
    }
}

// Raw tile kernels: `f::<T, DP>(nb, w, a, a_stride, out)` computes `out[t] = w · a[t]` for
// `t < T`, reading `nb` blocks of the weight row at `w` and of each activation row at
// `a + t * a_stride`. Their `# Safety` sections say "as a raw tile": the CPU has NEON (and
// `dotprod` if `DP`); `w` and every activation row hold `nb` blocks; `out` has `T` slots. They
// are `#[inline(always)]` bodies that only run inside the `#[target_feature]` functions of
// `neon_kernels!`.

/// Instantiates the raw tile body `$file::tile` for the weight type `$file::$blk` (which
/// implements `$file::$tr`, giving its block sizes) as module `$m` with the two variants' `DOT`,
/// `TILE` and `CHUNK` tables (index 0: plain NEON, 1: `dotprod`).
macro_rules! neon_kernels {
    ($m:ident, $file:ident :: $blk:ident : $tr:ident) => {
        mod $m {
            #![allow(unsafe_op_in_unsafe_fn)] // why: as in the parent module
            use super::*;

            /// Bytes per weight block and per activation block, and elements per block, as
            /// the body reads them.
            const WBYTES: usize = <$file::$blk as $file::$tr>::BYTES;
            const ABYTES: usize = <$file::$blk as $file::$tr>::ACT_BYTES;
            const PER: usize = <$file::$blk as $file::$tr>::ELEMS;

            /// # Safety
            /// As a raw tile, with `dotprod`.
            #[target_feature(enable = "neon,dotprod")]
            unsafe fn raw_dp<const T: usize>(
                nb: usize,
                w: *const u8,
                a: *const u8,
                a_stride: usize,
                o: *mut f32,
            ) {
                $file::tile::<$file::$blk, T, true>(nb, w, a, a_stride, o)
            }

            /// # Safety
            /// As a raw tile.
            #[target_feature(enable = "neon")]
            unsafe fn raw_plain<const T: usize>(
                nb: usize,
                w: *const u8,
                a: *const u8,
                a_stride: usize,
                o: *mut f32,
            ) {
                $file::tile::<$file::$blk, T, false>(nb, w, a, a_stride, o)
            }

            /// The raw tile for every one of `n_rows` weight rows `w_row` bytes apart, output
            /// `o[r * T + t]`.
            ///
            /// # Safety
            /// As a raw tile for each row, with `dotprod`; `o` has `n_rows * T` slots.
            #[target_feature(enable = "neon,dotprod")]
            unsafe fn rows_dp<const T: usize>(
                n_rows: usize,
                nb: usize,
                w: *const u8,
                w_row: usize,
                a: *const u8,
                a_stride: usize,
                o: *mut f32,
            ) {
                for r in 0..n_rows {
                    $file::tile::<$file::$blk, T, true>(
                        nb,
                        w.add(r * w_row),
                        a,
                        a_stride,
                        o.add(r * T),
                    );
                }
            }

            /// # Safety
            /// As `rows_dp`, without `dotprod`.
            #[target_feature(enable = "neon")]
            unsafe fn rows_plain<const T: usize>(
                n_rows: usize,
                nb: usize,
                w: *const u8,
                w_row: usize,
                a: *const u8,
                a_stride: usize,
                o: *mut f32,
            ) {
                for r in 0..n_rows {
                    $file::tile::<$file::$blk, T, false>(
                        nb,
                        w.add(r * w_row),
                        a,
                        a_stride,
                        o.add(r * T),
                    );
                }
            }

            /// Safe tile: checks lengths, then dispatches on the token count.
            fn tile<const DP: bool>(
                cols: usize,
                w: &[u8],
                a: &[u8],
                a_stride: usize,
                out: &mut [f32],
            ) {
                let nb = cols / PER;
                let t = out.len();
                assert!((1..=MAX_TILE).contains(&t), "tile of {t} tokens");
                assert!(w.len() >= nb * WBYTES, "weight row too short");
                assert!(
                    a_stride >= nb * ABYTES && a.len() >= (t - 1) * a_stride + nb * ABYTES,
                    "activation rows too short"
                );
                let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
                // SAFETY: `kernel`/`tile`/`chunk` hand this function out only when `runs(DP)`
                // (NEON, and `dotprod` for DP); the asserts above show the weight row has `nb`
                // blocks, each of the `t` activation rows (stride `a_stride`) has `nb` blocks,
                // and `out` has `t` slots.
                unsafe {
                    match (t, DP) {
                        (1, true) => raw_dp::<1>(nb, w, a, a_stride, o),
                        (2, true) => raw_dp::<2>(nb, w, a, a_stride, o),
                        (3, true) => raw_dp::<3>(nb, w, a, a_stride, o),
                        (_, true) => raw_dp::<4>(nb, w, a, a_stride, o),
                        (1, false) => raw_plain::<1>(nb, w, a, a_stride, o),
                        (2, false) => raw_plain::<2>(nb, w, a, a_stride, o),
                        (3, false) => raw_plain::<3>(nb, w, a, a_stride, o),
                        (_, false) => raw_plain::<4>(nb, w, a, a_stride, o),
                    }
                }
            }

            /// Safe chunk: checks lengths once, then runs the raw tile over every row.
            fn chunk<const DP: bool>(
                cols: usize,
                w: &[u8],
                w_row: usize,
                a: &[u8],
                a_stride: usize,
                nt: usize,
                out: &mut [f32],
            ) {
                let nb = cols / PER;
                assert!((1..=MAX_TILE).contains(&nt), "tile of {nt} tokens");
                let n_rows = out.len() / nt;
                assert_eq!(n_rows * nt, out.len(), "output not whole rows");
                if n_rows == 0 {
                    return;
                }
                assert!(
                    w_row >= nb * WBYTES && w.len() >= (n_rows - 1) * w_row + nb * WBYTES,
                    "weight rows too short"
                );
                assert!(
                    a_stride >= nb * ABYTES && a.len() >= (nt - 1) * a_stride + nb * ABYTES,
                    "activation rows too short"
                );
                let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
                // SAFETY: handed out only when `runs(DP)`; the asserts above show each of the
                // `n_rows` weight rows has `nb` blocks, each of the `nt` activation rows has
                // `nb` blocks, and `out` has `n_rows * nt` slots.
                unsafe {
                    match (nt, DP) {
                        (1, true) => rows_dp::<1>(n_rows, nb, w, w_row, a, a_stride, o),
                        (2, true) => rows_dp::<2>(n_rows, nb, w, w_row, a, a_stride, o),
                        (3, true) => rows_dp::<3>(n_rows, nb, w, w_row, a, a_stride, o),
                        (_, true) => rows_dp::<4>(n_rows, nb, w, w_row, a, a_stride, o),
                        (1, false) => rows_plain::<1>(n_rows, nb, w, w_row, a, a_stride, o),
                        (2, false) => rows_plain::<2>(n_rows, nb, w, w_row, a, a_stride, o),
                        (3, false) => rows_plain::<3>(n_rows, nb, w, w_row, a, a_stride, o),
                        (_, false) => rows_plain::<4>(n_rows, nb, w, w_row, a, a_stride, o),
                    }
                }
            }

            /// The single-row kernel: the tile with one token.
            fn dot<const DP: bool>(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let mut out = [0.0f32];
                tile::<DP>(n, w, a, a.len(), &mut out);
                out[0]
            }

            pub(super) const DOT: [DotFn; 2] = [dot::<false>, dot::<true>];
            pub(super) const TILE: [TileFn; 2] = [tile::<false>, tile::<true>];
            pub(super) const CHUNK: [ChunkFn; 2] = [chunk::<false>, chunk::<true>];
        }
    };
}

neon_kernels!(q4_0, legacy::Q4_0: Legacy);
neon_kernels!(q4_1, legacy::Q4_1: Legacy);
neon_kernels!(q5_0, legacy::Q5_0: Legacy);
neon_kernels!(q5_1, legacy::Q5_1: Legacy);
neon_kernels!(q8_0, legacy::Q8_0: Legacy);
neon_kernels!(q2_k, kquants::Q2K: KQuant);
neon_kernels!(q3_k, kquants::Q3K: KQuant);
neon_kernels!(q4_k, kquants::Q4K: KQuant);
neon_kernels!(q5_k, kquants::Q5K: KQuant);
neon_kernels!(q6_k, kquants::Q6K: KQuant);

/// The single-row dot kernel for weights of type `ty` in the variant `dotprod` selects, if
/// there is one and the CPU runs it. F32/F16/BF16 use no integer dot product: both variants
/// share one kernel.
pub(crate) fn kernel(dotprod: bool, ty: GgmlType) -> Option<DotFn> {
    if !runs(dotprod) {
        return None;
    }
    let v = dotprod as usize;
    Some(match ty {
        GgmlType::F32 => floats::dot_f32,
        GgmlType::F16 => floats::dot_f16,
        GgmlType::BF16 => floats::dot_bf16,
        GgmlType::Q4_0 => q4_0::DOT[v],
        GgmlType::Q4_1 => q4_1::DOT[v],
        GgmlType::Q5_0 => q5_0::DOT[v],
        GgmlType::Q5_1 => q5_1::DOT[v],
        GgmlType::Q8_0 => q8_0::DOT[v],
        GgmlType::Q2_K => q2_k::DOT[v],
        GgmlType::Q3_K => q3_k::DOT[v],
        GgmlType::Q4_K => q4_k::DOT[v],
        GgmlType::Q5_K => q5_k::DOT[v],
        GgmlType::Q6_K => q6_k::DOT[v],
        GgmlType::Q8_1 | GgmlType::Q8_K => return None,
    })
}

/// The tile kernel (see [`TileFn`]) for quantized weights of type `ty`, with [`kernel`]'s
/// arithmetic per output. Floats have none: llamafile's batched order is x86's, and here their
/// batches take the single-row kernel per token (`sgemm` is accepted for the interface's sake).
pub(crate) fn tile(dotprod: bool, ty: GgmlType, _sgemm: bool) -> Option<TileFn> {
    if !runs(dotprod) {
        return None;
    }
    let v = dotprod as usize;
    Some(match ty {
        GgmlType::Q4_0 => q4_0::TILE[v],
        GgmlType::Q4_1 => q4_1::TILE[v],
        GgmlType::Q5_0 => q5_0::TILE[v],
        GgmlType::Q5_1 => q5_1::TILE[v],
        GgmlType::Q8_0 => q8_0::TILE[v],
        GgmlType::Q2_K => q2_k::TILE[v],
        GgmlType::Q3_K => q3_k::TILE[v],
        GgmlType::Q4_K => q4_k::TILE[v],
        GgmlType::Q5_K => q5_k::TILE[v],
        GgmlType::Q6_K => q6_k::TILE[v],
        _ => return None,
    })
}

/// The chunk kernel (many weight rows × a tile of tokens, see [`ChunkFn`]) for weights of type
/// `ty`, with [`tile`]'s arithmetic.
pub(crate) fn chunk(dotprod: bool, ty: GgmlType, _sgemm: bool) -> Option<ChunkFn> {
    if !runs(dotprod) {
        return None;
    }
    let v = dotprod as usize;
    Some(match ty {
        GgmlType::Q4_0 => q4_0::CHUNK[v],
        GgmlType::Q4_1 => q4_1::CHUNK[v],
        GgmlType::Q5_0 => q5_0::CHUNK[v],
        GgmlType::Q5_1 => q5_1::CHUNK[v],
        GgmlType::Q8_0 => q8_0::CHUNK[v],
        GgmlType::Q2_K => q2_k::CHUNK[v],
        GgmlType::Q3_K => q3_k::CHUNK[v],
        GgmlType::Q4_K => q4_k::CHUNK[v],
        GgmlType::Q5_K => q5_k::CHUNK[v],
        GgmlType::Q6_K => q6_k::CHUNK[v],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the kernels.

/// `acc + SDOT(a, b)`: lane `k` gains `Σ a[4k + j]·b[4k + j]`, `j < 4` (`vdotq_s32`).
///
/// # Safety
/// The CPU has `dotprod`.
// why not `inline(always)`: the assembler accepts `SDOT` only in code compiled with `dotprod`,
// so this is compiled with it and inlined into the `dotprod` kernels (which have it).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// Exact i32 sums of byte products in `SDOT`'s layout: after adding 16-byte vectors `x`, `y`,
/// lane `k` of [`Dot4::finish`] holds `Σ x[4k + j]·y[4k + j]` (`j < 4`, summed over every pair
/// added). With `dotprod` that is one `SDOT` per pair. Plain NEON multiplies the low and high 8
/// bytes into i16 (`SMULL`, `SMULL2`; an i8 × i8 product always fits), adds adjacent products
/// into the i32 lanes of `lo` and `hi` (`SADALP`), and pairs those lanes up in `finish`
/// (`ADDP`). Both variants so end with the same integers in the same lanes, which makes their
/// float results identical too.
#[derive(Clone, Copy)]
struct Dot4 {
    lo: int32x4_t,
    hi: int32x4_t,
}

impl Dot4 {
    /// No products yet.
    ///
    /// # Safety
    /// NEON.
    #[inline(always)]
    unsafe fn zero() -> Dot4 {
        Dot4 {
            lo: vdupq_n_s32(0),
            hi: vdupq_n_s32(0),
        }
    }

    /// Adds the 16 products `x[k]·y[k]`.
    ///
    /// # Safety
    /// NEON, and `dotprod` if `DP`.
    #[inline(always)]
    unsafe fn add<const DP: bool>(self, x: int8x16_t, y: int8x16_t) -> Dot4 {
        if DP {
            Dot4 {
                lo: sdot(self.lo, x, y),
                hi: self.hi,
            }
        } else {
            Dot4 {
                lo: vpadalq_s16(self.lo, vmull_s8(vget_low_s8(x), vget_low_s8(y))),
                hi: vpadalq_s16(self.hi, vmull_high_s8(x, y)),
            }
        }
    }

    /// The four lanes in `SDOT`'s layout.
    ///
    /// # Safety
    /// NEON.
    #[inline(always)]
    unsafe fn finish<const DP: bool>(self) -> int32x4_t {
        if DP {
            self.lo
        } else {
            vpaddq_s32(self.lo, self.hi)
        }
    }
}

/// `Σ q·y` over 32 bytes: `q` (two vectors) against the 32 i8 at `y`, in [`Dot4`]'s lanes.
///
/// # Safety
/// NEON, and `dotprod` if `DP`; 32 readable bytes at `y`.
#[inline(always)]
unsafe fn dot32<const DP: bool>(q: [int8x16_t; 2], y: *const u8) -> int32x4_t {
    Dot4::zero()
        .add::<DP>(q[0], vld1q_s8(y.cast()))
        .add::<DP>(q[1], vld1q_s8(y.add(16).cast()))
        .finish::<DP>()
}

/// The IEEE half `h` as f32 (`FCVT`, base Armv8 floating point; exact).
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let out: f32;
    // SAFETY: `FCVT Sd, Hn` only reads and writes the named registers; every aarch64 CPU with
    // floating point (all that run Linux) has it.
    unsafe {
        asm!(
            "fcvt {o:s}, {h:h}",
            o = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// The f16 at `p` (unaligned) as f32.
///
/// # Safety
/// 2 readable bytes at `p`.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    f16_to_f32(p.cast::<u16>().read_unaligned())
}

/// The f32 at `p` (unaligned).
///
/// # Safety
/// 4 readable bytes at `p`.
#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    p.cast::<f32>().read_unaligned()
}
