//! Parity with a llama.cpp build (goldens from `scripts/gen_quant_goldens.py --llama-build`).
//!
//! Checked byte-exact: `quantize_row` against `quantize_row_*_ref` (incl. the K-quants), and
//! `quantize_activation_row` against the CPU backend's x86 `quantize_row_q8_0/q8_1/q8_K`.
//! Dot products agree to float-summation order: |ours - llama.cpp| ≤ 1e-5 · Σ|w·a|, and on an
//! AVX2 CPU the types whose AVX2 kernels replicate llama.cpp's are bit-identical.

use sparetire_quant::{
    dequantize_row, quantize_activation_row, quantize_row, reference, vec_dot, GgmlType,
};
use std::path::PathBuf;

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

struct Case {
    ty: GgmlType,
    n: usize,
    xw: Vec<f32>,
    w: Vec<u8>,
    xa: Vec<f32>,
    a: Vec<u8>,
    dot_cpu: f32,
    dot_generic: f32,
}

fn load(name: &str) -> Case {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/quant/llamacpp")
        .join(format!("{name}.bin"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], b"SPQL");
    let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    assert_eq!(u(4), 1, "version");
    let ty = GgmlType::from_id(u(8) as u32).expect("type id");
    let n = u(12);
    let (wb, ab) = (
        ty.row_bytes(n).unwrap(),
        ty.vec_dot_type().row_bytes(n).unwrap(),
    );
    let mut o = 16;
    let mut take = |len: usize| {
        let s = &b[o..o + len];
        o += len;
        s.to_vec()
    };
    let xw = f32s(&take(4 * n));
    let w = take(wb);
    let xa = f32s(&take(4 * n));
    let a = take(ab);
    let dots = f32s(&take(8));
    Case {
        ty,
        n,
        xw,
        w,
        xa,
        a,
        dot_cpu: dots[0],
        dot_generic: dots[1],
    }
}

const TYPES: [&str; 10] = [
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
];

#[test]
fn weight_quantization_matches_llama_cpp_ref_bytes() {
    for name in TYPES {
        let c = load(name);
        let mut w = vec![0u8; c.w.len()];
        quantize_row(c.ty, &c.xw, &mut w).unwrap();
        let first = w.iter().zip(&c.w).position(|(p, q)| p != q);
        assert_eq!(
            first, None,
            "{name}: first byte differing from quantize_row_*_ref"
        );
    }
}

#[test]
fn activation_quantization_matches_llama_cpp_cpu_bytes() {
    for name in TYPES {
        let c = load(name);
        let vdt = c.ty.vec_dot_type();
        let mut a = vec![0u8; c.a.len()];
        quantize_activation_row(vdt, &c.xa, &mut a).unwrap();
        let first = a.iter().zip(&c.a).position(|(p, q)| p != q);
        assert_eq!(first, None, "{name}: {vdt} activation bytes differ");
    }
}

#[test]
fn dot_products_match_llama_cpp() {
    for name in TYPES {
        let c = load(name);
        let mut wd = vec![0.0; c.n];
        let mut ad = vec![0.0; c.n];
        dequantize_row(c.ty, &c.w, &mut wd).unwrap();
        dequantize_row(c.ty.vec_dot_type(), &c.a, &mut ad).unwrap();
        let mag: f32 = wd.iter().zip(&ad).map(|(p, q)| (p * q).abs()).sum();
        let ours_ref = reference::vec_dot(c.ty, c.n, &c.w, &c.a).unwrap();
        let ours = vec_dot(c.ty, c.n, &c.w, &c.a).unwrap();
        eprintln!(
            "{name}: ours ref {ours_ref} / generic {}; ours {ours} / llama.cpp {}",
            c.dot_generic, c.dot_cpu
        );
        for (what, got, want) in [
            ("reference vs generic", ours_ref, c.dot_generic),
            ("dispatched vs llama.cpp", ours, c.dot_cpu),
        ] {
            assert!(
                (got - want).abs() <= 1e-5 * mag,
                "{name} {what}: {got} vs {want} (Σ|w·a| = {mag})"
            );
        }
    }
}

/// Weight types whose AVX2 kernel computes exactly what llama.cpp's AVX2 `ggml_vec_dot_*` does.
const EXACT_ON_AVX2: [&str; 6] = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"];

#[test]
fn avx2_dot_products_are_bit_exact_with_llama_cpp() {
    use sparetire_quant::simd::Isa;
    if !Isa::detect().matches_llama_cpp_avx2() {
        eprintln!("no AVX2 here: nothing to check");
        return;
    }
    for name in EXACT_ON_AVX2 {
        let c = load(name);
        let ours = vec_dot(c.ty, c.n, &c.w, &c.a).unwrap();
        assert_eq!(
            ours.to_bits(),
            c.dot_cpu.to_bits(),
            "{name}: ours {ours} vs llama.cpp {}",
            c.dot_cpu
        );
    }
}
