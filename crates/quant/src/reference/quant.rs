//! `quantize_row_*_ref` for the float types, the 32-element quants and Q8_K (lengths are
//! checked by the caller).

use crate::blocks::*;
use crate::GgmlType;
use half::f16;

/// llama.cpp's `nearest_int`: round half to even via the 1.5·2^23 trick (valid for |x| < 2^22).
#[inline]
pub(super) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12582912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `GGML_FP32_TO_BF16`: round to nearest even, NaN made quiet.
pub(crate) fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + (0x7fff + ((u >> 16) & 1)) as u64) >> 16) as u16
}

pub(super) fn quantize_float(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    match ty {
        GgmlType::F32 => {
            for (o, x) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (o, x) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
        }
        _ => {
            for (o, x) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
            }
        }
    }
}

/// The element of largest magnitude (first one on ties), as the `_0` quants pick it.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Runs `f` over each 32-element input block and its output block.
#[inline]
fn each<T: Block>(src: &[f32], dst: &mut [u8], f: impl Fn(&[f32]) -> T) {
    let ts = std::mem::size_of::<T>();
    for (x, y) in src.chunks_exact(T::ELEMS).zip(dst.chunks_exact_mut(ts)) {
        write_block(&f(x), y);
    }
}

pub(super) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    each(src, dst, |x| {
        let d = signed_absmax(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let x1 = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            *q = x0 | (x1 << 4);
        }
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        }
    })
}

pub(super) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    each(src, dst, |x| {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let x1 = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            *q = x0 | (x1 << 4);
        }
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        }
    })
}

pub(super) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    each(src, dst, |x| {
        let d = signed_absmax(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        let mut qh = 0u32;
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let x1 = ((x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
            *q = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= ((x0 as u32 & 0x10) >> 4) << j;
            qh |= ((x1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    })
}

pub(super) fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    each(src, dst, |x| {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        let mut qh = 0u32;
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = ((x[j] - min) * id + 0.5) as u8;
            let x1 = ((x[j + QK / 2] - min) * id + 0.5) as u8;
            *q = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
            qh |= ((x0 as u32 & 0x10) >> 4) << j;
            qh |= ((x1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh: qh.to_le_bytes(),
            qs,
        }
    })
}

/// `x.round_ties_even()` for |x| < 2^22, without the libm call the baseline x86_64 target makes
/// for it: adding and subtracting 1.5 · 2^23 rounds to an integer in the current (nearest-even)
/// mode, exactly (up to the sign of a zero, which the i8 conversion drops). No branch, so the
/// quantization loops vectorize; NaN stays NaN.
#[inline(always)] // why: as `each`
fn round_small_ties_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// The largest magnitude in `x` (NaN ignored, as `f32::max` does), in eight
/// independent lanes: a compare-and-select the compiler turns into vector
/// `max` instructions, where a `f32::max` fold stays one scalar chain. The
/// maximum does not depend on the order, so this equals the fold exactly.
#[inline(always)] // why: as `each`
fn abs_max(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// Scale, inverse scale and quants of one Q8 block. `act` selects llama.cpp's x86 activation
/// variant (`id = 127 / amax`, round half to even) over the reference (`id = 1 / d`, `roundf`).
#[inline(always)] // why: so the AVX2 build of `quantize_q8_act` compiles it all
fn q8_block(x: &[f32], act: bool) -> (f32, [i8; QK]) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let mut qs = [0i8; QK];
    if act {
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        // |v · id| ≤ 127 for every finite v, well inside the exact range (a NaN or an
        // infinity makes NaN, quantized to 0, as `round_ties_even` would).
        for (q, v) in qs.iter_mut().zip(x) {
            *q = round_small_ties_even(v * id).clamp(-128.0, 127.0) as i8;
        }
    } else {
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, v) in qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
    (d, qs)
}

/// Q8_0 (`q8_1 == false`) or Q8_1 activation rows, as [`quantize_q8_0`]/[`quantize_q8_1`] with
/// `act`. On x86_64 with AVX2 the same code is compiled for AVX2 + SSE4.1, where rounding is an
/// instruction, not a libm call, and the loops vectorize; every step is exact or per element
/// (the max is order-independent), so the blocks are identical.
pub(super) fn quantize_q8_act(q8_1: bool, src: &[f32], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("sse4.1")
    {
        /// # Safety
        /// The CPU has AVX2, FMA, F16C and SSE4.1.
        #[target_feature(enable = "avx2,fma,f16c,sse4.1")]
        unsafe fn avx2(q8_1: bool, src: &[f32], dst: &mut [u8]) {
            // Plain loops (no closures), so everything is compiled with these features.
            if q8_1 {
                let bs = std::mem::size_of::<BlockQ8_1>();
                for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(bs)) {
                    write_block(&q8_1_block(x, true), y);
                }
            } else {
                let bs = std::mem::size_of::<BlockQ8_0>();
                for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(bs)) {
                    write_block(&q8_0_block(x, true), y);
                }
            }
        }
        // SAFETY: the features were detected just above.
        unsafe { avx2(q8_1, src, dst) };
        return;
    }
    if q8_1 {
        quantize_q8_1(src, dst, true)
    } else {
        quantize_q8_0(src, dst, true)
    }
}

#[inline(always)] // why: so the AVX2 build of `quantize_q8_act` compiles it all
fn q8_0_block(x: &[f32], act: bool) -> BlockQ8_0 {
    let (d, qs) = q8_block(x, act);
    BlockQ8_0 {
        d: f16::from_f32(d),
        qs,
    }
}

#[inline(always)] // why: as `q8_0_block`
fn q8_1_block(x: &[f32], act: bool) -> BlockQ8_1 {
    let (d, qs) = q8_block(x, act);
    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
    BlockQ8_1 {
        d: f16::from_f32(d),
        s: f16::from_f32(sum as f32 * d),
        qs,
    }
}

pub(super) fn quantize_q8_0(src: &[f32], dst: &mut [u8], act: bool) {
    each(src, dst, |x| q8_0_block(x, act))
}

pub(super) fn quantize_q8_1(src: &[f32], dst: &mut [u8], act: bool) {
    each(src, dst, |x| q8_1_block(x, act))
}

pub(super) fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    quantize_q8_k_with(src, dst, signed_absmax);
}

/// `ggml_quantize_mat_q8_K_4x8` (AVX2) per row: as [`quantize_q8_k`], except that when a
/// positive and a negative element share the largest magnitude, the positive one sets the sign
/// of the scale (its lane mask tracks "the maximum was reached by a positive value"), where
/// `quantize_row_q8_K_ref` keeps whichever comes first. Quants and bsums are otherwise equal.
pub(super) fn quantize_q8_k_4x8(src: &[f32], dst: &mut [u8]) {
    quantize_q8_k_with(src, dst, |x| {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if x.contains(&amax) {
            amax
        } else {
            -amax
        }
    });
}

fn quantize_q8_k_with(src: &[f32], dst: &mut [u8], signed_max: impl Fn(&[f32]) -> f32) {
    each(src, dst, |x| {
        let max = signed_max(x);
        let mut b = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        };
        if max == 0.0 {
            return b;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        b.d = 1.0 / iscale;
        b
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_max_equals_the_fold() {
        let mut seed = 7u32;
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 256] {
            let mut x: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
                })
                .collect();
            if n > 3 {
                x[2] = f32::NAN;
                x[3] = -0.0;
            }
            let want = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(abs_max(&x).to_bits(), want.to_bits(), "{n} values");
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-127.4), -127);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert!(f32::from_bits((f32_to_bf16(f32::NAN) as u32) << 16).is_nan());
    }

    /// The AVX2 build of the activation quantizer writes the same bytes as the generic code.
    #[test]
    fn q8_act_equals_generic_quantizers() {
        let mut x: Vec<f32> = (0..8 * QK)
            .map(|i| (((i as u32).wrapping_mul(2654435761) % 4001) as f32 - 2000.0) / 317.0)
            .collect();
        x[..QK].fill(0.0); // an all-zero block
        x[QK] = 127.0; // exact ties in the second block
        x[QK + 1] = 2.5;
        x[QK + 2] = -3.5;
        for q8_1 in [false, true] {
            let bs = if q8_1 { 36 } else { 34 };
            let (mut fast, mut generic) = (vec![0u8; 8 * bs], vec![0u8; 8 * bs]);
            quantize_q8_act(q8_1, &x, &mut fast);
            if q8_1 {
                quantize_q8_1(&x, &mut generic, true);
            } else {
                quantize_q8_0(&x, &mut generic, true);
            }
            assert_eq!(fast, generic, "q8_1={q8_1}");
        }
    }

    #[test]
    fn q8_activation_variant_rounds_ties_to_even() {
        // amax = 127 makes id = 1 in both variants, so 2.5 is an exact tie.
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        let (_, r) = q8_block(&x, false);
        let (_, a) = q8_block(&x, true);
        assert_eq!((r[1], r[2]), (3, -4));
        assert_eq!((a[1], a[2]), (2, -4));
    }
}

#[cfg(test)]
mod round_tests {
    use super::round_small_ties_even;

    #[test]
    fn small_round_ties_even_equals_std() {
        let specials = [
            0.5f32, 1.5, 2.5, -0.5, -2.5, 127.5, -128.5, 4194303.5, -4194303.5,
        ];
        let mut v: Vec<f32> = specials.to_vec();
        v.extend((0..200_000).map(|i| (i as f32 - 100_000.0) * 0.00137));
        v.push(-0.0);
        for x in v {
            // `==`: a result of -0.0 may come back as +0.0, the same quant either way.
            assert_eq!(round_small_ties_even(x), x.round_ties_even(), "{x}");
        }
        assert!(round_small_ties_even(f32::NAN).is_nan());
    }
}
