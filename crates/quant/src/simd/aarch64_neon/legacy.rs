//! NEON tile bodies for the legacy quants (blocks of 32): Q4_0, Q5_0, Q8_0 against Q8_0
//! activations, Q4_1, Q5_1 against Q8_1.
//!
//! Per block the weights decode once into 32 i8 quants (two vectors, element order); per token
//! [`dot32`] gives the exact `isum = Σ q·a`, then `acc = fma(float(isum lanes), d_x·d_a, acc)`
//! in four float lanes, alternating between two accumulators (even and odd blocks) so
//! consecutive blocks do not wait on each other's FMA. Q4_1/Q5_1 add `m_x · s_a` per block (`s_a`
//! is Q8_1's stored `d_a · Σ a`) in two scalar accumulators. Output: the sum of the eight lanes
//! plus the two scalars.
//!
//! Safety contract of every body: "as a raw tile" (see the parent module).

#![allow(unsafe_op_in_unsafe_fn)] // why: as in the parent module

use super::{dot32, f16_at};
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK};
use std::arch::aarch64::*;
use std::mem::size_of;

/// Bytes of a Q8_0 / Q8_1 activation block.
const Q8_0_SIZE: usize = size_of::<BlockQ8_0>();
const Q8_1_SIZE: usize = size_of::<BlockQ8_1>();

/// For byte `k` of a 16-byte half: which byte of a block's 32 fifth bits (`qh`, little-endian)
/// holds its bit (`k / 8`, +2 for elements 16..32), and that bit's mask (`1 << k % 8`).
const QH_BYTE_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
const QH_BYTE_HI: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
const QH_BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// The 32 nibbles at `qs` (16 bytes): low nibbles are elements 0..16, high nibbles 16..32.
///
/// # Safety
/// 16 readable bytes at `qs`.
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> [uint8x16_t; 2] {
    let v = vld1q_u8(qs);
    [vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v)]
}

/// The 32 fifth bits of a Q5 block (little-endian u32 at `qh`) as 0x10 or 0 per element.
///
/// # Safety
/// NEON; 4 readable bytes at `qh`.
#[inline(always)]
unsafe fn fifth_bits(qh: *const u8) -> [uint8x16_t; 2] {
    let bits = vreinterpretq_u8_u32(vdupq_n_u32(qh.cast::<u32>().read_unaligned()));
    let mask = vld1q_u8(QH_BIT.as_ptr());
    [
        fifth_bits_of(bits, &QH_BYTE_LO, mask),
        fifth_bits_of(bits, &QH_BYTE_HI, mask),
    ]
}

/// Bytes `idx` of `bits`, masked by `mask`, as 0x10 where set.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn fifth_bits_of(bits: uint8x16_t, idx: &[u8; 16], mask: uint8x16_t) -> uint8x16_t {
    let bytes = vqtbl1q_u8(bits, vld1q_u8(idx.as_ptr()));
    vandq_u8(vtstq_u8(bytes, mask), vdupq_n_u8(0x10))
}

/// `v - k` as signed bytes.
///
/// # Safety
/// The CPU has NEON.
#[inline(always)]
unsafe fn signed_minus(v: [uint8x16_t; 2], k: i8) -> [int8x16_t; 2] {
    let k = vdupq_n_s8(k);
    [
        vsubq_s8(vreinterpretq_s8_u8(v[0]), k),
        vsubq_s8(vreinterpretq_s8_u8(v[1]), k),
    ]
}

/// The quants as signed bytes (values below 128).
///
/// # Safety
/// The CPU has NEON.
#[inline(always)]
unsafe fn as_signed(v: [uint8x16_t; 2]) -> [int8x16_t; 2] {
    [vreinterpretq_s8_u8(v[0]), vreinterpretq_s8_u8(v[1])]
}

/// A legacy weight block type.
pub(super) trait Legacy {
    /// Bytes per block.
    const BYTES: usize;
    /// Whether the block has a min `m` (`x = d·q + m`) and so pairs with Q8_1 activations,
    /// whose `s = d_a·Σ a` gives the `m·Σ a` term; otherwise it pairs with Q8_0.
    const MIN: bool;
    /// Bytes per activation block (Q8_1 or Q8_0).
    const ACT_BYTES: usize = if Self::MIN { Q8_1_SIZE } else { Q8_0_SIZE };
    /// Elements per block.
    const ELEMS: usize = QK;
    /// `(d, m, quants)` of the block at `xb` (`m` is 0 without a min).
    ///
    /// # Safety
    /// NEON; `Self::BYTES` readable bytes at `xb`.
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]);
}

/// Q4_0 (Q8_0 activations): `x = d · (q - 8)`, block `[d: f16, qs: 16]`.
pub(super) struct Q4_0;
/// Q4_1 (Q8_1 activations): `x = d · q + m`, block `[d: f16, m: f16, qs: 16]`.
pub(super) struct Q4_1;
/// Q5_0 (Q8_0 activations): `x = d · (q - 16)`, block `[d: f16, qh: 4, qs: 16]`.
pub(super) struct Q5_0;
/// Q5_1 (Q8_1 activations): `x = d · q + m`, block `[d: f16, m: f16, qh: 4, qs: 16]`.
pub(super) struct Q5_1;
/// Q8_0 (Q8_0 activations): `x = d · q`, block `[d: f16, qs: 32]`.
pub(super) struct Q8_0;

impl Legacy for Q4_0 {
    const BYTES: usize = size_of::<BlockQ4_0>();
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]) {
        (f16_at(xb), 0.0, signed_minus(nibbles(xb.add(2)), 8))
    }
}

impl Legacy for Q4_1 {
    const BYTES: usize = size_of::<BlockQ4_1>();
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]) {
        (f16_at(xb), f16_at(xb.add(2)), as_signed(nibbles(xb.add(4))))
    }
}

impl Legacy for Q5_0 {
    const BYTES: usize = size_of::<BlockQ5_0>();
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]) {
        let (lo, hi) = (nibbles(xb.add(6)), fifth_bits(xb.add(2)));
        let q = [vorrq_u8(lo[0], hi[0]), vorrq_u8(lo[1], hi[1])];
        (f16_at(xb), 0.0, signed_minus(q, 16))
    }
}

impl Legacy for Q5_1 {
    const BYTES: usize = size_of::<BlockQ5_1>();
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]) {
        let (lo, hi) = (nibbles(xb.add(8)), fifth_bits(xb.add(4)));
        let q = [vorrq_u8(lo[0], hi[0]), vorrq_u8(lo[1], hi[1])];
        (f16_at(xb), f16_at(xb.add(2)), as_signed(q))
    }
}

impl Legacy for Q8_0 {
    const BYTES: usize = size_of::<BlockQ8_0>();
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> (f32, f32, [int8x16_t; 2]) {
        let q = xb.add(2).cast::<i8>();
        (f16_at(xb), 0.0, [vld1q_s8(q), vld1q_s8(q.add(16))])
    }
}

/// One weight block (at `xb`) against block `i` of every token (`ya`: that block of token 0),
/// into one of the two accumulator sets.
///
/// # Safety
/// As a raw tile, for this one block.
#[inline(always)]
unsafe fn block<B: Legacy, const T: usize, const DP: bool>(
    xb: *const u8,
    ya: *const u8,
    a_stride: usize,
    acc: &mut [float32x4_t; T],
    summs: &mut [f32; T],
) {
    let aqs = if B::MIN { 4 } else { 2 };
    let (dx, mx, q) = B::decode(xb);
    for t in 0..T {
        let yb = ya.add(a_stride * t);
        let isum = dot32::<DP>(q, yb.add(aqs));
        acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(isum), dx * f16_at(yb));
        if B::MIN {
            summs[t] += mx * f16_at(yb.add(2));
        }
    }
}

/// The tile body of weight type `B` (see the top of this file).
///
/// # Safety
/// As a raw tile.
#[inline(always)]
pub(super) unsafe fn tile<B: Legacy, const T: usize, const DP: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let abytes = B::ACT_BYTES;
    let (mut acc0, mut acc1) = ([vdupq_n_f32(0.0); T], [vdupq_n_f32(0.0); T]);
    let (mut summs0, mut summs1) = ([0.0f32; T], [0.0f32; T]);
    let mut i = 0;
    while i + 1 < nb {
        let (xb, ya) = (w.add(B::BYTES * i), a.add(abytes * i));
        block::<B, T, DP>(xb, ya, a_stride, &mut acc0, &mut summs0);
        let (xb, ya) = (xb.add(B::BYTES), ya.add(abytes));
        block::<B, T, DP>(xb, ya, a_stride, &mut acc1, &mut summs1);
        i += 2;
    }
    if i < nb {
        let (xb, ya) = (w.add(B::BYTES * i), a.add(abytes * i));
        block::<B, T, DP>(xb, ya, a_stride, &mut acc0, &mut summs0);
    }
    for t in 0..T {
        let v = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
        *out.add(t) = if B::MIN {
            v + (summs0[t] + summs1[t])
        } else {
            v
        };
    }
}
