//! A port of llama.cpp's tests/test-quantize-fns.cpp: round-trip RMSE, activation vs
//! reference quantization, and dot-product error, with its thresholds.

use sparetire_quant::{
    dequantize_row, quantize_activation_row, quantize_row, reference, simd, vec_dot, GgmlType,
};

const MAX_QUANTIZATION_REFERENCE_ERROR: f32 = 0.0001;
const MAX_QUANTIZATION_TOTAL_ERROR: f32 = 0.002;
const MAX_QUANTIZATION_TOTAL_ERROR_2BITS: f32 = 0.0075;
const MAX_QUANTIZATION_TOTAL_ERROR_3BITS: f32 = 0.0040;
const MAX_DOT_PRODUCT_ERROR: f32 = 0.02;
const MAX_DOT_PRODUCT_ERROR_LOWBIT: f32 = 0.04;
const TEST_SIZE: usize = 32 * 128;

fn generate_data(offset: f32, n: usize, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1 + amplitude as f64 * ((i as f32 + offset).cos()) as f64) as f32)
        .collect()
}

/// llama.cpp's `array_rmse`: sqrt(sum of squares) / n (sic).
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    (sum.sqrt() as f32) / a.len() as f32
}

fn round_trip(ty: GgmlType, x: &[f32], act: bool) -> Vec<f32> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).unwrap()];
    if act {
        quantize_activation_row(ty, x, &mut q).unwrap();
    } else {
        quantize_row(ty, x, &mut q).unwrap();
    }
    let mut out = vec![0.0; x.len()];
    dequantize_row(ty, &q, &mut out).unwrap();
    out
}

fn quantized(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).unwrap()];
    quantize_activation_row(ty, x, &mut q).unwrap();
    q
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum::<f64>() as f32
}

#[test]
fn quantization_errors_within_llama_cpp_bounds() {
    let d1 = generate_data(0.0, TEST_SIZE, 2.0);
    let d2 = generate_data(1.0, TEST_SIZE, 2.0);
    let mut failures = Vec::new();
    for ty in GgmlType::ALL {
        let total = array_rmse(&d1, &round_trip(ty, &d1, true));
        let bound = match ty {
            GgmlType::Q2_K => MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
            GgmlType::Q3_K => MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
            _ => MAX_QUANTIZATION_TOTAL_ERROR,
        };
        if total.is_nan() || total >= bound {
            failures.push(format!("{ty} total error {total} >= {bound}"));
        }
        let refe = array_rmse(&round_trip(ty, &d1, true), &round_trip(ty, &d1, false));
        if refe.is_nan() || refe >= MAX_QUANTIZATION_REFERENCE_ERROR {
            failures.push(format!("{ty} reference error {refe}"));
        }
        if ty == GgmlType::Q8_1 || ty == GgmlType::Q8_K {
            continue;
        }
        let w = quantized(ty, &d1);
        let a = quantized(ty.vec_dot_type(), &d2);
        let want = dot(&d1, &d2);
        let bound = match ty {
            GgmlType::Q2_K | GgmlType::Q3_K => MAX_DOT_PRODUCT_ERROR_LOWBIT,
            _ => MAX_DOT_PRODUCT_ERROR,
        };
        for isa in simd::Isa::available() {
            let got = simd::vec_dot_with(isa, ty, TEST_SIZE, &w, &a).unwrap();
            let err = (got - want).abs() / TEST_SIZE as f32;
            if err.is_nan() || err >= bound {
                failures.push(format!("{ty} {} dot error {err}", isa.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn f32_vec_dot_odd_lengths() {
    for n in [
        1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 193, 255, 1023,
    ] {
        let a = generate_data(0.0, n, 2.0);
        let b = generate_data(1.0, n, 2.0);
        let ab: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bb: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
        let want = dot(&a, &b);
        for got in [
            vec_dot(GgmlType::F32, n, &ab, &bb).unwrap(),
            reference::vec_dot(GgmlType::F32, n, &ab, &bb).unwrap(),
        ] {
            let err = (got - want).abs() / n as f32;
            assert!(
                err < MAX_QUANTIZATION_REFERENCE_ERROR,
                "n={n}: {got} vs {want}"
            );
        }
    }
}
