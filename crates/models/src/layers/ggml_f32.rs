//! Float primitives that reproduce, bit for bit, the vector routines of the
//! llama.cpp build our goldens come from.
//!
//! That build is ggml-cpu compiled by GCC 12 with `-march=native`, which on
//! our Zen 4 machines resolves to `znver3`: AVX2 + FMA + F16C and **no
//! AVX-512** (GCC 12.2 predates Zen 4). So ggml's generic SIMD code runs with
//! 8-lane vectors (`GGML_F32_EPR = 8`, `GGML_F32_STEP = 32`), and GCC fuses
//! scalar `a*b + c` into FMAs (its default `-ffp-contract=fast`).
//!
//! The forward pass of a small quantized model is surprisingly sensitive to
//! last-bit differences: activations are re-quantized to 8 bits before each
//! matmul, so a one-ulp change can flip a rounding and grow from layer to
//! layer. Matching these routines lane by lane (rather than computing "the
//! same" sums in another order) is what keeps our logits on llama.cpp's.
//! Everything here is plain scalar Rust over 8-lane arrays, so it is
//! portable and deterministic; only the *order* of operations mimics AVX2.

/// Whether this CPU has AVX2 and FMA, for which the kernels that use these
/// primitives have a compiled variant (`f32::mul_add` without FMA enabled at
/// compile time is a slow library call; the results are the same).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// ggml's `ggml_v_expf` (AVX2 version): a fast `exp` with a polynomial on the
/// reduced argument and explicit under/overflow handling. It is not `expf`:
/// results differ from the correctly rounded value by up to ~1.5 ulp.
///
/// Used by ggml's vectorized softmax and SiLU; computed here one lane at a
/// time, which gives the same result as the vector code for every lane.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 0x1.8p23: adding it rounds to an integer
    const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
    const C1: f32 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1
    const C2: f32 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
    const C3: f32 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
    const C4: f32 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
    const C5: f32 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // 2^n built in the exponent field from z's low mantissa bits.
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = C5
        .mul_add(b, C4)
        .mul_add(u, C3.mul_add(b, C2))
        .mul_add(u, C1 * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return j.mul_add(k, k);
    }
    // |n| > 126: 2^n is split in two factors so that it neither overflows nor
    // flushes too early; beyond 192 the result saturates to inf or 0.
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    if n.abs() > 192.0 {
        return s1 * s1;
    }
    let s2 = f32::from_bits(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

/// Horizontal sum of 8 lanes in the order of ggml's `GGML_F32x8_REDUCE`
/// (`_mm256` halves added, then two `hadd`s).
#[inline(always)]
pub fn reduce8_hadd(x: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|i| x[i] + x[i + 4]);
    (t[0] + t[1]) + (t[2] + t[3])
}

/// Horizontal sum of 8 lanes in the order of `ggml_vec_soft_max_f32`'s
/// AVX2 branch (halves, `movehl`, `movehdup`).
#[inline(always)]
pub fn reduce8_softmax(x: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|i| x[i] + x[i + 4]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `ggml_vec_dot_f16` on f16 inputs already widened to f32: four 8-lane FMA
/// accumulators over each 32-element step, reduced like `GGML_F32x8_REDUCE`;
/// the elements past the last full step are added in f64, one by one.
#[inline(always)]
pub fn dot_f16(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len();
    let np = n / 32 * 32;
    let mut sum = 0f64;
    if np > 0 {
        let mut acc = [[0f32; 8]; 4];
        for i in (0..np).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                for (l, s) in a.iter_mut().enumerate() {
                    *s = x[i + 8 * j + l].mul_add(y[i + 8 * j + l], *s);
                }
            }
        }
        let r: [f32; 8] =
            std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
        sum = reduce8_hadd(&r) as f64;
    }
    for i in np..n {
        // why: an f16×f16 product is exact in f32; ggml sums the leftovers in f64.
        sum += (x[i] * y[i]) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_and_saturates() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (v_expf(x), x.exp());
            assert!(((a - b) / b).abs() < 4e-7, "x={x}: {a} vs {b}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
        assert_eq!(v_expf(0.0), 1.0);
        // subnormal results go through the split-scale branch
        let t = v_expf(-100.0);
        assert!(((t - (-100f32).exp()) / (-100f32).exp()).abs() < 1e-6);
    }

    #[test]
    fn dot_f16_sums_every_element() {
        for n in [16, 32, 64, 80, 128] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let exact: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((dot_f16(&x, &y) as f64 - exact).abs() < 1e-5);
        }
    }
}
