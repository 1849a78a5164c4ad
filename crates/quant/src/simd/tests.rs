//! Every SIMD kernel against the scalar reference, on every ISA this CPU runs.

use super::*;
use crate::{quantize_activation_row, quantize_row, reference, GgmlType};

/// xorshift64*: deterministic test data without a dependency.
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * u - 1.0
    }
    pub(super) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

pub(super) const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

pub(super) fn quantized(ty: GgmlType, x: &[f32], act: bool) -> Vec<u8> {
    let mut out = vec![0u8; ty.row_bytes(x.len()).unwrap()];
    if act {
        quantize_activation_row(ty, x, &mut out).unwrap();
    } else {
        quantize_row(ty, x, &mut out).unwrap();
    }
    out
}

#[test]
fn avx2_kernels_exist_for_the_required_types() {
    if !Isa::available().contains(&Isa::Avx2) {
        return;
    }
    for ty in [
        GgmlType::F32,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        assert!(Isa::Avx2.has_kernel(ty), "{ty}");
    }
}

#[test]
fn every_isa_matches_scalar_reference() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let isas = Isa::available();
    eprintln!("ISAs under test: {:?}", isas);
    for ty in WEIGHT_TYPES {
        let bs = ty.block_size().max(ty.vec_dot_type().block_size()).max(32);
        // Odd block counts, plus a non-multiple-of-32 length for F32's tail loop.
        let mut lens = vec![bs, 3 * bs, 7 * bs];
        if ty == GgmlType::F32 {
            lens.extend([1, 13, 77]);
        }
        for n in lens {
            for trial in 0..4 {
                let scale = [1.0, 0.01, 30.0, 1.0][trial];
                let xw: Vec<f32> = rng.vec(n).iter().map(|v| v * scale).collect();
                let xa = rng.vec(n);
                let w = quantized(ty, &xw, false);
                let a = quantized(ty.vec_dot_type(), &xa, true);
                let want = reference::vec_dot(ty, n, &w, &a).unwrap();
                // Bound the float-reordering error by the sum of |products|.
                let mut wd = vec![0.0; n];
                let mut ad = vec![0.0; n];
                crate::dequantize_row(ty, &w, &mut wd).unwrap();
                crate::dequantize_row(ty.vec_dot_type(), &a, &mut ad).unwrap();
                let mag: f32 = wd.iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum();
                let approx: f32 = wd.iter().zip(&ad).map(|(p, q)| p * q).sum();
                // The reference itself must be the dot product of the dequantized rows (Q8_1
                // stores d * sum(q) as f16, which costs up to ~2^-11 relative on that term).
                let tol = if ty.vec_dot_type() == GgmlType::Q8_1 {
                    2e-3
                } else {
                    1e-4
                };
                assert!(
                    (want - approx).abs() <= tol * mag + 1e-6,
                    "{ty} n={n}: reference {want} vs dequantized dot {approx}"
                );
                for &isa in &isas {
                    let got = vec_dot_with(isa, ty, n, &w, &a).unwrap();
                    assert!(
                        (got - want).abs() <= 2e-5 * mag + 1e-6,
                        "{ty} n={n} {}: got {got}, scalar {want} (mag {mag})",
                        isa.name()
                    );
                }
                assert_eq!(
                    vec_dot(ty, n, &w, &a).unwrap(),
                    vec_dot_with(Isa::detect(), ty, n, &w, &a).unwrap()
                );
            }
        }
    }
}

#[test]
fn bad_lengths_are_errors_not_panics() {
    let w = vec![0u8; 18];
    let a = vec![0u8; 34];
    assert!(vec_dot(GgmlType::Q4_0, 32, &w, &a).is_ok());
    assert!(vec_dot(GgmlType::Q4_0, 32, &w[..17], &a).is_err());
    assert!(vec_dot(GgmlType::Q4_0, 32, &w, &a[..33]).is_err());
    assert!(vec_dot(GgmlType::Q4_0, 48, &w, &a).is_err());
    assert!(vec_dot(GgmlType::Q8_K, 256, &[0; 292], &[0; 292]).is_err());
    assert!(reference::vec_dot(GgmlType::Q4_K, 256, &[0; 144], &[0; 291]).is_err());
}

#[test]
fn path_kernels_equal_their_scalar_specs_bit_for_bit() {
    use crate::matmul::Path;
    // The path kernels reproduce llama.cpp's x86 matmul paths and exist only on x86.
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|i| i.matches_llama_cpp_avx2())
        .collect();
    if isas.is_empty() {
        eprintln!("no x86 SIMD here: no path kernels to check");
        return;
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let cases = [
        (GgmlType::Q4_0, Path::RepackGemv),
        (GgmlType::Q4_K, Path::RepackGemv),
        (GgmlType::Q4_K, Path::RepackGemm),
        (GgmlType::Q4_K, Path::Tiled),
        (GgmlType::Q5_K, Path::Tiled),
        (GgmlType::Q6_K, Path::Tiled),
    ];
    for (isa, (ty, path)) in isas
        .iter()
        .flat_map(|&i| cases.iter().map(move |&c| (i, c)))
    {
        let tile = path_tile_for(isa, ty, path).expect("x86 path kernel");
        let spec = reference::path_dot_fn(ty, path).unwrap();
        for n in [256, 768, 2048] {
            for scale in [1.0f32, 0.01, 30.0] {
                let xw: Vec<f32> = rng.vec(n).iter().map(|v| v * scale).collect();
                let w = quantized(ty, &xw, false);
                let vdt = ty.vec_dot_type();
                let a_row = vdt.row_bytes(n).unwrap();
                let acts: Vec<u8> = (0..MAX_TILE)
                    .flat_map(|_| quantized(vdt, &rng.vec(n), true))
                    .collect();
                for nt in 1..=MAX_TILE {
                    let mut out = vec![0.0f32; nt];
                    tile(n, &w, &acts, a_row, &mut out);
                    for (t, &got) in out.iter().enumerate() {
                        let want = spec(n, &w, &acts[t * a_row..(t + 1) * a_row]);
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{} {ty} {path:?} n={n} tile {nt} token {t}: {got} vs {want}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_activation_quantization_prefers_the_positive_maximum() {
    // A tie in magnitude between a positive and a negative element: quantize_row_q8_K_ref keeps
    // the first (here the negative one), ggml_quantize_mat_q8_K_4x8 the positive one.
    let mut x = vec![0.25f32; 256];
    x[3] = -2.0;
    x[100] = 2.0;
    let mut by_ref = vec![0u8; 292];
    let mut by_gemm = vec![0u8; 292];
    quantize_row(GgmlType::Q8_K, &x, &mut by_ref).unwrap();
    reference::quantize_q8_k_4x8(&x, &mut by_gemm).unwrap();
    let d = |b: &[u8]| f32::from_le_bytes(b[..4].try_into().unwrap());
    assert_eq!(d(&by_ref), -d(&by_gemm));
    assert!(d(&by_gemm) < 0.0, "positive maximum: iscale = -127 / max");
    // Without a tie both agree exactly.
    x[3] = -1.0;
    quantize_row(GgmlType::Q8_K, &x, &mut by_ref).unwrap();
    reference::quantize_q8_k_4x8(&x, &mut by_gemm).unwrap();
    assert_eq!(by_ref, by_gemm);
}
