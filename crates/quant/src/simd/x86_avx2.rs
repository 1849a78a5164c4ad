//! AVX2 + FMA dot-product kernels (x86_64).
//!
//! Each kernel mirrors the integer-then-scale structure of the scalar reference; only the float
//! summation order differs (8 lanes, then a horizontal sum), as in llama.cpp's AVX2 code.
//! Kernels are reachable only through [`kernel`], which returns them only when the CPU has AVX2
//! and FMA, so the `#[target_feature]` functions are never called on a CPU without them.

use crate::blocks::scale_min_k4;
use crate::reference::DotFn;
use crate::GgmlType;
use std::arch::x86_64::*;

/// Whether this CPU runs the kernels in this file.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// The AVX2 kernel for weights of type `ty`, if there is one and the CPU supports it.
pub(crate) fn kernel(ty: GgmlType) -> Option<DotFn> {
    if !available() {
        return None;
    }
    macro_rules! wrap {
        ($f:ident) => {{
            fn w(n: usize, x: &[u8], y: &[u8]) -> f32 {
                // SAFETY: `w` is only handed out by `kernel`, after `available()` confirmed
                // AVX2 and FMA on this CPU.
                unsafe { $f(n, x, y) }
            }
            w as DotFn
        }};
    }
    Some(match ty {
        GgmlType::F32 => wrap!(dot_f32),
        GgmlType::Q4_0 => wrap!(dot_q4_0_q8_0),
        GgmlType::Q4_1 => wrap!(dot_q4_1_q8_1),
        GgmlType::Q5_0 => wrap!(dot_q5_0_q8_0),
        GgmlType::Q8_0 => wrap!(dot_q8_0_q8_0),
        GgmlType::Q4_K => wrap!(dot_q4_k_q8_k),
        GgmlType::Q6_K => wrap!(dot_q6_k_q8_k),
        _ => return None,
    })
}

#[inline]
fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

#[inline]
fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline]
#[target_feature(enable = "avx2")]
fn load32(b: &[u8]) -> __m256i {
    let b = &b[..32];
    // SAFETY: `b` has 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load16(b: &[u8]) -> __m128i {
    let b = &b[..16];
    // SAFETY: `b` has 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_f32x8(b: &[u8]) -> __m256 {
    let b = &b[..32];
    // SAFETY: `b` has 32 readable bytes (8 f32); loadu has no alignment requirement.
    unsafe { _mm256_loadu_ps(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum_f32_8(x: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 32 nibbles -> 32 bytes: low nibbles of the 16 bytes first, then the high nibbles.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes_from_nibbles_32(b: &[u8]) -> __m256i {
    let tmp = load16(b);
    let both = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 32 bits (little-endian u32 at `b`) -> 32 bytes of 0xFF (bit set) or 0x00.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes_from_bits_32(b: &[u8]) -> __m256i {
    let x32 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32 as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Unsigned bytes × signed bytes, summed in pairs to i16 then in pairs to i32, as f32.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
}

/// Signed × signed bytes (moves x's sign onto y so maddubs can take |x|).
#[inline]
#[target_feature(enable = "avx2")]
fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8_pairs_float(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (&w[..4 * n], &a[..4 * n]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let body = n / 32 * 32;
    for i in (0..body).step_by(32) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let off = 4 * (i + 8 * k);
            *acc = _mm256_fmadd_ps(load_f32x8(&w[off..]), load_f32x8(&a[off..]), *acc);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum_f32_8(sum);
    for i in body..n {
        s += f32_at(w, 4 * i) * f32_at(a, 4 * i);
    }
    s
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..n / 32 {
        let (x, y) = (&w[18 * i..18 * i + 18], &a[34 * i..34 * i + 34]);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&x[2..]), _mm256_set1_epi8(8));
        let q = mul_sum_i8_pairs_float(qx, load32(&y[2..]));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for i in 0..n / 32 {
        let (x, y) = (&w[20 * i..20 * i + 20], &a[36 * i..36 * i + 36]);
        summs += f16_at(x, 2) * f16_at(y, 2);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let q = mul_sum_us8_pairs_float(bytes_from_nibbles_32(&x[4..]), load32(&y[4..]));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc) + summs
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q5_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..n / 32 {
        let (x, y) = (&w[22 * i..22 * i + 22], &a[34 * i..34 * i + 34]);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        // A clear fifth bit means q - 16 < 0: put 0xF0 in the high nibble (two's complement).
        let hi = _mm256_andnot_si256(bytes_from_bits_32(&x[2..]), _mm256_set1_epi8(0xF0u8 as i8));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(&x[6..]), hi);
        let q = mul_sum_i8_pairs_float(qx, load32(&y[2..]));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..n / 32 {
        let (x, y) = (&w[34 * i..34 * i + 34], &a[34 * i..34 * i + 34]);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let q = mul_sum_i8_pairs_float(load32(&x[2..]), load32(&y[2..]));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

/// Q8_K block layout: f32 d at 0, 256 quants at 4, 16 i16 bsums at 260.
const Q8K_QS: usize = 4;
const Q8K_BSUMS: usize = 260;
const Q8K_SIZE: usize = 292;

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summ = 0.0f32;
    let m4 = _mm256_set1_epi8(0x0F);
    for i in 0..n / 256 {
        let (x, y) = (
            &w[144 * i..144 * i + 144],
            &a[Q8K_SIZE * i..Q8K_SIZE * (i + 1)],
        );
        let yd = f32_at(y, 0);
        let scales: &[u8; 12] = x[4..16].try_into().unwrap_or(&[0; 12]);
        let mut sc = [0i16; 8];
        let mut mins_dot = 0i32;
        for (j, s) in sc.iter_mut().enumerate() {
            let (scale, min) = scale_min_k4(j, scales);
            *s = scale as i16;
            let b0 = i16::from_le_bytes([y[Q8K_BSUMS + 4 * j], y[Q8K_BSUMS + 4 * j + 1]]);
            let b1 = i16::from_le_bytes([y[Q8K_BSUMS + 4 * j + 2], y[Q8K_BSUMS + 4 * j + 3]]);
            mins_dot += (b0 as i32 + b1 as i32) * min as i32;
        }
        let (qs, q8) = (&x[16..], &y[Q8K_QS..]);
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let bits = load32(&qs[32 * c..]);
            let lo = _mm256_and_si256(bits, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            let pl = _mm256_maddubs_epi16(lo, load32(&q8[64 * c..]));
            let ph = _mm256_maddubs_epi16(hi, load32(&q8[64 * c + 32..]));
            let pl = _mm256_madd_epi16(pl, _mm256_set1_epi16(sc[2 * c]));
            let ph = _mm256_madd_epi16(ph, _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        let d = _mm256_set1_ps(f16_at(x, 0) * yd);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        summ += f16_at(x, 2) * yd * mins_dot as f32;
    }
    hsum_f32_8(acc) - summ
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
    let k32 = _mm256_set1_epi8(32);
    for i in 0..n / 256 {
        let (x, y) = (
            &w[210 * i..210 * i + 210],
            &a[Q8K_SIZE * i..Q8K_SIZE * (i + 1)],
        );
        let (ql, qh, scales) = (&x[0..128], &x[128..192], &x[192..208]);
        let q8 = &y[Q8K_QS..];
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let bh = load32(&qh[32 * h..]);
            let l0 = load32(&ql[64 * h..]);
            let l1 = load32(&ql[64 * h + 32..]);
            let h0 = _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4);
            let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4);
            let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4);
            let quads = [
                _mm256_or_si256(_mm256_and_si256(l0, m4), h0),
                _mm256_or_si256(_mm256_and_si256(l1, m4), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), h3),
            ];
            for (k, q) in quads.into_iter().enumerate() {
                let y8 = load32(&q8[128 * h + 32 * k..]);
                // (q - 32) * y == q * y - 32 * y; both maddubs stay inside i16.
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, y8), _mm256_maddubs_epi16(k32, y8));
                let s_lo = scales[8 * h + 2 * k] as i8 as i16;
                let s_hi = scales[8 * h + 2 * k + 1] as i8 as i16;
                let sc = _mm256_set_m128i(_mm_set1_epi16(s_hi), _mm_set1_epi16(s_lo));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sc));
            }
        }
        let d = _mm256_set1_ps(f16_at(x, 208) * f32_at(y, 0));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc)
}
