//! Golden tests against gguf-py (see scripts/gen_quant_goldens.py for how the files are made).
//!
//! Dequantization must match gguf-py bit for bit: both compute each value with the same f32
//! operations in the same order (e.g. `(d * q) + m`), and Rust does not contract to FMA.
//! Quantization of the types gguf-py can quantize must reproduce its bytes exactly.

use sparetire_quant::{dequantize_row, quantize_row, GgmlType};
use std::path::PathBuf;

struct Golden {
    ty: GgmlType,
    n: usize,
    src: Option<Vec<f32>>,
    raw: Vec<u8>,
    values: Vec<f32>,
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn load(name: &str) -> Golden {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/quant")
        .join(format!("{name}.bin"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], b"SPQG", "{name}: bad magic");
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    assert_eq!(u32_at(4), 1, "{name}: version");
    let ty = GgmlType::from_id(u32_at(8) as u32).expect("known type id");
    assert_eq!(ty.name(), name);
    let (n, has_src) = (u32_at(12), u32_at(16) == 1);
    let mut off = 20;
    let src = has_src.then(|| {
        off += 4 * n;
        f32s(&b[20..off])
    });
    let nb = ty.row_bytes(n).expect("whole blocks");
    let raw = b[off..off + nb].to_vec();
    let values = f32s(&b[off + nb..]);
    assert_eq!(values.len(), n, "{name}: value count");
    Golden {
        ty,
        n,
        src,
        raw,
        values,
    }
}

const ALL: [&str; 15] = [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
    "Q5_K", "Q6_K", "Q8_K",
];

#[test]
fn dequantize_matches_gguf_py_bit_exactly() {
    for name in ALL {
        let g = load(name);
        let mut out = vec![0.0f32; g.n];
        dequantize_row(g.ty, &g.raw, &mut out).unwrap();
        let bad: Vec<_> = (0..g.n)
            .filter(|&i| out[i].to_bits() != g.values[i].to_bits())
            .take(5)
            .map(|i| (i, out[i], g.values[i]))
            .collect();
        assert!(
            bad.is_empty(),
            "{name}: first mismatches (index, ours, gguf) {bad:?}"
        );
    }
}

#[test]
fn quantize_matches_gguf_py_bytes_exactly() {
    let mut checked = 0;
    for name in ALL {
        let g = load(name);
        let Some(src) = g.src else { continue };
        let mut out = vec![0u8; g.raw.len()];
        quantize_row(g.ty, &src, &mut out).unwrap();
        let first = out.iter().zip(&g.raw).position(|(a, b)| a != b);
        assert_eq!(first, None, "{name}: first differing byte");
        checked += 1;
    }
    assert_eq!(
        checked, 8,
        "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 carry gguf-quantized sources"
    );
}

#[test]
fn wrong_lengths_are_errors() {
    let g = load("Q4_0");
    let mut out = vec![0.0f32; g.n];
    assert!(dequantize_row(g.ty, &g.raw[1..], &mut out).is_err());
    assert!(dequantize_row(g.ty, &g.raw, &mut out[..g.n - 1]).is_err());
    let mut q = vec![0u8; 18];
    assert!(quantize_row(GgmlType::Q4_0, &[0.0; 33], &mut q).is_err());
    assert!(quantize_row(GgmlType::Q4_0, &[0.0; 32], &mut q[..17]).is_err());
}
