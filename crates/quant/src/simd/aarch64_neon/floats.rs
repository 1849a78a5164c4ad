//! NEON dot products of float rows: F32, F16 (widened with `FCVTL`/`FCVTL2`) and BF16 (shifted
//! into the top half of an f32, `SHLL`).
//!
//! Four 4-lane FMA accumulators over 16 elements per step, summed `(a0 + a1) + (a2 + a3)` and
//! then across the lanes; the last `n % 16` elements are added in f64, as ggml's scalar tail
//! does. No integer dot product is involved, so the plain and `dotprod` variants share these.

#![allow(unsafe_op_in_unsafe_fn)] // why: as in the parent module

use super::{f16_at, f32_at};
use std::arch::aarch64::*;
use std::arch::asm;

/// Elements `0..4` (`HIGH == false`, `FCVTL`) or `4..8` (`FCVTL2`) of eight f16 as f32.
#[inline(always)]
fn widen_f16<const HIGH: bool>(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `FCVTL`/`FCVTL2` (base Armv8 Advanced SIMD) only read and write the named vector
    // registers.
    unsafe {
        if HIGH {
            asm!(
                "fcvtl2 {o:v}.4s, {h:v}.8h",
                o = lateout(vreg) out,
                h = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags),
            );
        } else {
            asm!(
                "fcvtl {o:v}.4s, {h:v}.4h",
                o = lateout(vreg) out,
                h = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
    }
    out
}

/// A float element type: `W` bytes wide, loaded eight at a time or one at a time.
trait FloatRow {
    const W: usize;
    /// The eight elements at `p` as two f32 vectors.
    ///
    /// # Safety
    /// NEON; `8 * W` readable bytes at `p`.
    unsafe fn load8(p: *const u8) -> [float32x4_t; 2];
    /// The element at `p`.
    ///
    /// # Safety
    /// `W` readable bytes at `p`.
    unsafe fn one(p: *const u8) -> f32;
}

struct F32Row;
struct F16Row;
struct Bf16Row;

impl FloatRow for F32Row {
    const W: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> [float32x4_t; 2] {
        [vld1q_f32(p.cast()), vld1q_f32(p.add(16).cast())]
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        f32_at(p)
    }
}

impl FloatRow for F16Row {
    const W: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> [float32x4_t; 2] {
        let h = vld1q_u16(p.cast());
        [widen_f16::<false>(h), widen_f16::<true>(h)]
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        f16_at(p)
    }
}

impl FloatRow for Bf16Row {
    const W: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> [float32x4_t; 2] {
        let h = vld1q_u16(p.cast());
        [
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
            vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
        ]
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        f32::from_bits((p.cast::<u16>().read_unaligned() as u32) << 16)
    }
}

/// `Σ x[i]·y[i]` over `n` elements of type `R` (see the top of this file).
///
/// # Safety
/// NEON; `n` elements readable at `x` and at `y`.
#[target_feature(enable = "neon")]
unsafe fn dot_rows<R: FloatRow>(n: usize, x: *const u8, y: *const u8) -> f32 {
    let np = n / 16 * 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..np).step_by(16) {
        for h in 0..2 {
            let o = R::W * (i + 8 * h);
            let (xs, ys) = (R::load8(x.add(o)), R::load8(y.add(o)));
            acc[2 * h] = vfmaq_f32(acc[2 * h], xs[0], ys[0]);
            acc[2 * h + 1] = vfmaq_f32(acc[2 * h + 1], xs[1], ys[1]);
        }
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v) as f64;
    for i in np..n {
        // why: products of two f16/bf16 are exact in f32; ggml sums the leftovers in f64.
        sum += (R::one(x.add(R::W * i)) * R::one(y.add(R::W * i))) as f64;
    }
    sum as f32
}

/// F32 × F32 (any `n`).
pub(super) fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 4 * n && a.len() >= 4 * n, "rows too short");
    // SAFETY: `kernel` hands this out only when the CPU has NEON; both rows hold `n` f32.
    unsafe { dot_rows::<F32Row>(n, w.as_ptr(), a.as_ptr()) }
}

/// F16 × F16 (any `n`).
pub(super) fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n, "rows too short");
    // SAFETY: `kernel` hands this out only when the CPU has NEON; both rows hold `n` f16.
    unsafe { dot_rows::<F16Row>(n, w.as_ptr(), a.as_ptr()) }
}

/// BF16 × BF16 (any `n`).
pub(super) fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n, "rows too short");
    // SAFETY: `kernel` hands this out only when the CPU has NEON; both rows hold `n` bf16.
    unsafe { dot_rows::<Bf16Row>(n, w.as_ptr(), a.as_ptr()) }
}
