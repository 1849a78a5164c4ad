//! NEON tile bodies for the K-quants (superblocks of 256) against Q8_K activations:
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! Every type decodes a superblock once into the same shape ([`Superblock`]): its 256 quants as
//! signed bytes in element order (16 groups of 16), one integer scale per group (Q4_K/Q5_K's
//! scales per 32 repeated), and for the types with mins one min per group. Per token
//! [`scaled_isum`] computes the exact `isum = Σ_g scale_g · Σ q·a` and the mins' exact
//! `imin = Σ_g min_g · bsum_g`; then, as `ggml_vec_dot_*_generic`,
//! `acc += (d_x·d_a)·isum` and `accm += (dmin_x·d_a)·imin`, output `acc - accm`.
//!
//! Bounds (all exact in i32): a group's `Σ q·a` is at most 16·32·128 in magnitude (Q6_K's
//! `|q - 32| <= 32` is the largest quant), times a scale of at most 128, times 16 groups: under
//! 2^28. The mins' sum: 16 groups of `|bsum| <= 16·128` times a min below 64.
//!
//! Safety contract of every body: "as a raw tile" (see the parent module).

#![allow(unsafe_op_in_unsafe_fn)] // why: as in the parent module

use super::{f16_at, f32_at, Dot4};
use crate::blocks::{
    q3k_scales, scale_min_k4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K,
    K_SCALE_SIZE, QK_K,
};
use std::arch::aarch64::*;
use std::mem::size_of;

/// Q8_K block layout: f32 `d` at 0, 256 quants at 4, 16 i16 `bsums` at 260.
const Q8K_QS: usize = 4;
const Q8K_BSUMS: usize = 260;
const Q8K_SIZE: usize = size_of::<BlockQ8K>();

/// One weight superblock, decoded for every token of a tile.
pub(super) struct Superblock {
    /// Signed quants, group `g` (elements `16g..16g + 16`) in `q[g]`.
    q: [int8x16_t; 16],
    /// Scale of group `4k + j` in lane `j` of `sc[k]`.
    sc: [int32x4_t; 4],
    /// Min of group `8k + j` in lane `j` of `mins[k]` (zero where the type has none).
    mins: [int16x8_t; 2],
    /// Super-block scale (`d`) and scale of the mins (`dmin`, zero where none).
    d: f32,
    dmin: f32,
}

/// `Σ_g sc_g · Σ_k q[g][k] · y[16g + k]` over the 16 groups of a superblock, exact.
///
/// # Safety
/// NEON, and `dotprod` if `DP`; 256 readable bytes at `y`.
#[inline(always)]
unsafe fn scaled_isum<const DP: bool>(x: &Superblock, y: *const u8) -> i32 {
    let mut total = vdupq_n_s32(0);
    for k in 0..4 {
        let g0 = group_sum::<DP>(x.q[4 * k], y.add(64 * k));
        let g1 = group_sum::<DP>(x.q[4 * k + 1], y.add(64 * k + 16));
        let g2 = group_sum::<DP>(x.q[4 * k + 2], y.add(64 * k + 32));
        let g3 = group_sum::<DP>(x.q[4 * k + 3], y.add(64 * k + 48));
        // Lane j: the sum of group 4k + j.
        let s = vpaddq_s32(vpaddq_s32(g0, g1), vpaddq_s32(g2, g3));
        total = vmlaq_s32(total, s, x.sc[k]);
    }
    vaddvq_s32(total)
}

/// `Σ q·y` of one group of 16 (the i8 at `y`), in [`Dot4`]'s lanes.
///
/// # Safety
/// NEON, and `dotprod` if `DP`; 16 readable bytes at `y`.
#[inline(always)]
unsafe fn group_sum<const DP: bool>(q: int8x16_t, y: *const u8) -> int32x4_t {
    Dot4::zero().add::<DP>(q, vld1q_s8(y.cast())).finish::<DP>()
}

/// `Σ_g min_g · bsum_g` over the 16 groups (`bsums`: 16 i16 at `bs`), exact.
///
/// # Safety
/// NEON; 32 readable bytes at `bs`.
#[inline(always)]
unsafe fn min_isum(mins: &[int16x8_t; 2], bs: *const u8) -> i32 {
    let bs = bs.cast::<i16>();
    let (b0, b1) = (vld1q_s16(bs), vld1q_s16(bs.add(8)));
    let p = vmull_s16(vget_low_s16(b0), vget_low_s16(mins[0]));
    let p = vmlal_high_s16(p, b0, mins[0]);
    let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(mins[1]));
    vaddvq_s32(vmlal_high_s16(p, b1, mins[1]))
}

/// A K-quant weight type.
pub(super) trait KQuant {
    /// Bytes per superblock.
    const BYTES: usize;
    /// Whether the type has mins (`x = d·sc·q - dmin·m`).
    const MIN: bool;
    /// Bytes per activation block (Q8_K).
    const ACT_BYTES: usize = Q8K_SIZE;
    /// Elements per superblock.
    const ELEMS: usize = QK_K;
    /// The superblock at `xb`, decoded.
    ///
    /// # Safety
    /// NEON; `Self::BYTES` readable bytes at `xb`.
    unsafe fn decode(xb: *const u8) -> Superblock;
}

/// The tile body of weight type `K` (see the top of this file).
///
/// # Safety
/// As a raw tile.
#[inline(always)]
pub(super) unsafe fn tile<K: KQuant, const T: usize, const DP: bool>(
    nb: usize,
    w: *const u8,
    a: *const u8,
    a_stride: usize,
    out: *mut f32,
) {
    let mut acc = [0.0f32; T];
    let mut accm = [0.0f32; T];
    for i in 0..nb {
        let x = K::decode(w.add(K::BYTES * i));
        for t in 0..T {
            let yb = a.add(a_stride * t + K::ACT_BYTES * i);
            let yd = f32_at(yb);
            acc[t] += (x.d * yd) * scaled_isum::<DP>(&x, yb.add(Q8K_QS)) as f32;
            if K::MIN {
                accm[t] += (x.dmin * yd) * min_isum(&x.mins, yb.add(Q8K_BSUMS)) as f32;
            }
        }
    }
    for t in 0..T {
        *out.add(t) = acc[t] - accm[t];
    }
}

/// 16 byte scales as four i32 vectors (lane `j` of vector `k`: scale `4k + j`).
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn widen_scales(s: int8x16_t) -> [int32x4_t; 4] {
    let lo = vmovl_s8(vget_low_s8(s));
    let hi = vmovl_high_s8(s);
    [
        vmovl_s16(vget_low_s16(lo)),
        vmovl_high_s16(lo),
        vmovl_s16(vget_low_s16(hi)),
        vmovl_high_s16(hi),
    ]
}

/// Q4_K/Q5_K's eight 6-bit scales and mins (the 12 bytes at `p`), each repeated for the two
/// groups of 16 of its sub-block of 32.
///
/// # Safety
/// NEON; 12 readable bytes at `p`.
#[inline(always)]
unsafe fn k4_scales_mins(p: *const u8) -> ([int32x4_t; 4], [int16x8_t; 2]) {
    let packed = p.cast::<[u8; K_SCALE_SIZE]>().read_unaligned();
    let mut sc = [0i8; 16];
    let mut mins = [0i16; 16];
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &packed);
        // Both below 64.
        sc[2 * j] = s as i8;
        sc[2 * j + 1] = s as i8;
        mins[2 * j] = m as i16;
        mins[2 * j + 1] = m as i16;
    }
    (
        widen_scales(vld1q_s8(sc.as_ptr())),
        [vld1q_s16(mins.as_ptr()), vld1q_s16(mins.as_ptr().add(8))],
    )
}

/// Reinterprets quants below 128 as signed bytes.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Q3_K's quants: the low two bits of `v`, minus 4 unless bit 0 of `hm` is set.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn q3_value(v: uint8x16_t, hm: uint8x16_t) -> int8x16_t {
    let high = vshlq_n_u8::<2>(vandq_u8(hm, vdupq_n_u8(1)));
    vsubq_s8(
        s8(vorrq_u8(vandq_u8(v, vdupq_n_u8(3)), high)),
        vdupq_n_s8(4),
    )
}

/// Q5_K's quants: the low (`HIGH == false`) or high nibbles of `v`, with bit 0 (resp. 1) of `h`
/// as the fifth bit.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn q5_value<const HIGH: bool>(v: uint8x16_t, h: uint8x16_t) -> int8x16_t {
    if HIGH {
        s8(vorrq_u8(
            vshrq_n_u8::<4>(v),
            vshlq_n_u8::<3>(vandq_u8(h, vdupq_n_u8(2))),
        ))
    } else {
        let lo = vandq_u8(v, vdupq_n_u8(0xF));
        s8(vorrq_u8(lo, vshlq_n_u8::<4>(vandq_u8(h, vdupq_n_u8(1)))))
    }
}

/// Q2_K: `[scales: 16 (scale | min << 4), qs: 64, d: f16, dmin: f16]`; element
/// `128c + 32s + 16h + l` is bits `2s..2s + 2` of `qs[32c + 16h + l]`, group `8c + 2s + h`.
pub(super) struct Q2K;

impl KQuant for Q2K {
    const BYTES: usize = size_of::<BlockQ2K>();
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> Superblock {
        let scb = vld1q_u8(xb);
        let mn = vshrq_n_u8::<4>(scb);
        let three = vdupq_n_u8(3);
        let mut q = [vdupq_n_s8(0); 16];
        for c in 0..2 {
            let qs = xb.add(16 + 32 * c);
            let (mut v0, mut v1) = (vld1q_u8(qs), vld1q_u8(qs.add(16)));
            for s in 0..4 {
                q[8 * c + 2 * s] = s8(vandq_u8(v0, three));
                q[8 * c + 2 * s + 1] = s8(vandq_u8(v1, three));
                v0 = vshrq_n_u8::<2>(v0);
                v1 = vshrq_n_u8::<2>(v1);
            }
        }
        Superblock {
            q,
            sc: widen_scales(s8(vandq_u8(scb, vdupq_n_u8(0xF)))),
            mins: [
                vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn))),
                vreinterpretq_s16_u16(vmovl_high_u8(mn)),
            ],
            d: f16_at(xb.add(80)),
            dmin: f16_at(xb.add(82)),
        }
    }
}

/// Q3_K: `[hmask: 32, qs: 64, scales: 12, d: f16]`; element `128c + 32s + l` is bits
/// `2s..2s + 2` of `qs[32c + l]`, minus 4 unless bit `4c + s` of `hmask[l]` is set; group
/// `8c + 2s + l / 16`; 6-bit scales minus 32.
pub(super) struct Q3K;

impl KQuant for Q3K {
    const BYTES: usize = size_of::<BlockQ3K>();
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> Superblock {
        let (mut hm0, mut hm1) = (vld1q_u8(xb), vld1q_u8(xb.add(16)));
        let mut q = [vdupq_n_s8(0); 16];
        for c in 0..2 {
            let qs = xb.add(32 + 32 * c);
            let (mut v0, mut v1) = (vld1q_u8(qs), vld1q_u8(qs.add(16)));
            for s in 0..4 {
                q[8 * c + 2 * s] = q3_value(v0, hm0);
                q[8 * c + 2 * s + 1] = q3_value(v1, hm1);
                v0 = vshrq_n_u8::<2>(v0);
                v1 = vshrq_n_u8::<2>(v1);
                hm0 = vshrq_n_u8::<1>(hm0);
                hm1 = vshrq_n_u8::<1>(hm1);
            }
        }
        let packed = xb.add(96).cast::<[u8; K_SCALE_SIZE]>().read_unaligned();
        let scales = q3k_scales(&packed);
        Superblock {
            q,
            sc: widen_scales(vld1q_s8(scales.as_ptr())),
            mins: [vdupq_n_s16(0); 2],
            d: f16_at(xb.add(108)),
            dmin: 0.0,
        }
    }
}

/// Q4_K: `[d: f16, dmin: f16, scales: 12, qs: 128]`; elements `64c..64c + 32` are the low
/// nibbles of `qs[32c..32c + 32]`, the next 32 the high nibbles.
pub(super) struct Q4K;

impl KQuant for Q4K {
    const BYTES: usize = size_of::<BlockQ4K>();
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> Superblock {
        let m4 = vdupq_n_u8(0xF);
        let mut q = [vdupq_n_s8(0); 16];
        for c in 0..4 {
            let qs = xb.add(16 + 32 * c);
            let (v0, v1) = (vld1q_u8(qs), vld1q_u8(qs.add(16)));
            q[4 * c] = s8(vandq_u8(v0, m4));
            q[4 * c + 1] = s8(vandq_u8(v1, m4));
            q[4 * c + 2] = s8(vshrq_n_u8::<4>(v0));
            q[4 * c + 3] = s8(vshrq_n_u8::<4>(v1));
        }
        let (sc, mins) = k4_scales_mins(xb.add(4));
        Superblock {
            q,
            sc,
            mins,
            d: f16_at(xb),
            dmin: f16_at(xb.add(2)),
        }
    }
}

/// Q5_K: `[d: f16, dmin: f16, scales: 12, qh: 32, qs: 128]`; as Q4_K with bit `2c` (low
/// nibbles) or `2c + 1` (high nibbles) of `qh[l]` as the fifth bit of element `64c + l` or
/// `64c + 32 + l`.
pub(super) struct Q5K;

impl KQuant for Q5K {
    const BYTES: usize = size_of::<BlockQ5K>();
    const MIN: bool = true;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> Superblock {
        let (mut h0, mut h1) = (vld1q_u8(xb.add(16)), vld1q_u8(xb.add(32)));
        let mut q = [vdupq_n_s8(0); 16];
        for c in 0..4 {
            let qs = xb.add(48 + 32 * c);
            let (v0, v1) = (vld1q_u8(qs), vld1q_u8(qs.add(16)));
            q[4 * c] = q5_value::<false>(v0, h0);
            q[4 * c + 1] = q5_value::<false>(v1, h1);
            q[4 * c + 2] = q5_value::<true>(v0, h0);
            q[4 * c + 3] = q5_value::<true>(v1, h1);
            h0 = vshrq_n_u8::<2>(h0);
            h1 = vshrq_n_u8::<2>(h1);
        }
        let (sc, mins) = k4_scales_mins(xb.add(4));
        Superblock {
            q,
            sc,
            mins,
            d: f16_at(xb),
            dmin: f16_at(xb.add(2)),
        }
    }
}

/// Q6_K: `[ql: 128, qh: 64, scales: 16 (i8), d: f16]`; in half `h` (elements `128h..`), with
/// `ql = ql[64h..]`, `qh = qh[32h..]` and `l < 32`, element `128h + 32k + l` is the low
/// (`k` = 0, 1) or high (`k` = 2, 3) nibble of `ql[l + 32 (k % 2)]`, with bits `2k..2k + 2` of
/// `qh[l]` on top, minus 32.
pub(super) struct Q6K;

impl KQuant for Q6K {
    const BYTES: usize = size_of::<BlockQ6K>();
    const MIN: bool = false;
    #[inline(always)]
    unsafe fn decode(xb: *const u8) -> Superblock {
        let m4 = vdupq_n_u8(0xF);
        let m32 = vdupq_n_s8(32);
        let mut q = [vdupq_n_s8(0); 16];
        for h in 0..2 {
            let (ql, qh) = (xb.add(64 * h), xb.add(128 + 32 * h));
            for m in 0..2 {
                // Elements 128h + 32k + 16m + (0..16): group 8h + 2k + m.
                let la = vld1q_u8(ql.add(16 * m));
                let lb = vld1q_u8(ql.add(32 + 16 * m));
                let hh = vld1q_u8(qh.add(16 * m));
                let k0 = vorrq_u8(
                    vandq_u8(la, m4),
                    vshlq_n_u8::<4>(vandq_u8(hh, vdupq_n_u8(3))),
                );
                let k1 = vorrq_u8(
                    vandq_u8(lb, m4),
                    vshlq_n_u8::<2>(vandq_u8(hh, vdupq_n_u8(0x0C))),
                );
                let k2 = vorrq_u8(vshrq_n_u8::<4>(la), vandq_u8(hh, vdupq_n_u8(0x30)));
                let k3 = vorrq_u8(
                    vshrq_n_u8::<4>(lb),
                    vshrq_n_u8::<2>(vandq_u8(hh, vdupq_n_u8(0xC0))),
                );
                for (k, v) in [k0, k1, k2, k3].into_iter().enumerate() {
                    q[8 * h + 2 * k + m] = vsubq_s8(s8(v), m32);
                }
            }
        }
        Superblock {
            q,
            sc: widen_scales(vld1q_s8(xb.add(192).cast())),
            mins: [vdupq_n_s16(0); 2],
            d: f16_at(xb.add(208)),
            dmin: 0.0,
        }
    }
}
