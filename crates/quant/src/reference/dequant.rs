//! `dequantize_row_*`: blocks to f32 (lengths are checked by the caller).

#![allow(clippy::needless_range_loop)] // why: index loops mirror ggml's C for easy review

use crate::blocks::*;
use crate::GgmlType;

/// Dequantizes `src` (exactly `dst.len()` elements of `ty`) into `dst`.
pub(super) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => each::<BlockQ4_0>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for j in 0..QK / 2 {
                y[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
                y[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }),
        GgmlType::Q4_1 => each::<BlockQ4_1>(src, dst, |b, y| {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            for j in 0..QK / 2 {
                y[j] = (b.qs[j] & 0x0F) as f32 * d + m;
                y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
            }
        }),
        GgmlType::Q5_0 => each::<BlockQ5_0>(src, dst, |b, y| {
            let d = b.d.to_f32();
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..QK / 2 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                y[j] = (((b.qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
                y[j + QK / 2] = (((b.qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
            }
        }),
        GgmlType::Q5_1 => each::<BlockQ5_1>(src, dst, |b, y| {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            let qh = u32::from_le_bytes(b.qh);
            for j in 0..QK / 2 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                y[j] = ((b.qs[j] & 0x0F) | h0) as f32 * d + m;
                y[j + QK / 2] = ((b.qs[j] >> 4) | h1) as f32 * d + m;
            }
        }),
        GgmlType::Q8_0 => each::<BlockQ8_0>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }),
        GgmlType::Q8_1 => each::<BlockQ8_1>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }),
        GgmlType::Q8_K => each::<BlockQ8K>(src, dst, |b, y| {
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = b.d * q as f32;
            }
        }),
        GgmlType::Q2_K => each::<BlockQ2K>(src, dst, dequant_q2_k),
        GgmlType::Q3_K => each::<BlockQ3K>(src, dst, dequant_q3_k),
        GgmlType::Q4_K => each::<BlockQ4K>(src, dst, |b, y| {
            let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
            for (c, (q, y)) in
                b.qs.chunks_exact(32)
                    .zip(y.chunks_exact_mut(64))
                    .enumerate()
            {
                let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
                let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
                let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                for l in 0..32 {
                    y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                    y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                }
            }
        }),
        GgmlType::Q5_K => each::<BlockQ5K>(src, dst, |b, y| {
            let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
            for (c, (q, y)) in
                b.qs.chunks_exact(32)
                    .zip(y.chunks_exact_mut(64))
                    .enumerate()
            {
                let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
                let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
                let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
                for l in 0..32 {
                    let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                    let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                    y[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                    y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
                }
            }
        }),
        GgmlType::Q6_K => each::<BlockQ6K>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for h in 0..2 {
                let (ql, qh) = (&b.ql[64 * h..], &b.qh[32 * h..]);
                let sc = &b.scales[8 * h..];
                let y = &mut y[128 * h..];
                for l in 0..32 {
                    let is = l / 16;
                    let q = q6k_quads(ql, qh, l);
                    y[l] = d * sc[is] as f32 * q[0] as f32;
                    y[l + 32] = d * sc[is + 2] as f32 * q[1] as f32;
                    y[l + 64] = d * sc[is + 4] as f32 * q[2] as f32;
                    y[l + 96] = d * sc[is + 6] as f32 * q[3] as f32;
                }
            }
        }),
    }
}

/// The four signed 6-bit quants at `l`, `l + 32`, `l + 64`, `l + 96` of a Q6_K half-block.
#[inline]
pub(super) fn q6k_quads(ql: &[u8], qh: &[u8], l: usize) -> [i8; 4] {
    [
        ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32,
        ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32,
        ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32,
        ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32,
    ]
}

fn dequant_q2_k(b: BlockQ2K, y: &mut [f32]) {
    let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
    let mut is = 0;
    let mut y = y.iter_mut();
    for q in b.qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = b.scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
                for &qb in &q[16 * half..16 * half + 16] {
                    if let Some(o) = y.next() {
                        *o = dl * ((qb >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

fn dequant_q3_k(b: BlockQ3K, y: &mut [f32]) {
    let d_all = b.d.to_f32();
    let scales = q3k_scales(&b.scales);
    let mut is = 0;
    let mut m = 1u8;
    let mut y = y.iter_mut();
    for q in b.qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                for l in 16 * half..16 * half + 16 {
                    let hi = if b.hmask[l] & m != 0 { 0 } else { 4 };
                    if let Some(o) = y.next() {
                        *o = dl * (((q[l] >> shift) & 3) as i8 - hi) as f32;
                    }
                }
            }
            m <<= 1;
        }
    }
}

/// Runs `f` on each block of `src` and the matching `T::ELEMS` outputs.
fn each<T: Block>(src: &[u8], dst: &mut [f32], f: impl Fn(T, &mut [f32])) {
    for (b, y) in iter_blocks::<T>(src).zip(dst.chunks_exact_mut(T::ELEMS)) {
        f(b, y);
    }
}
