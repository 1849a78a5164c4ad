//! `matmul` against llama.cpp's own CPU matmul (goldens from `tests/gen_matmul_goldens.py`):
//! one `ggml_mul_mat` per case, computed by the reference AVX2 build with its weights where its
//! loader puts them, so each case pins one of its routes: repacked Q4_0/Q4_K (GEMM for groups of
//! four tokens, GEMV for the rest), the tiled K-quant matmul (8+ tokens), `vec_dot`/llamafile.
//! On an AVX2 CPU every output must be bit-identical; the scalar fallback is only checked close.

use sparetire_quant::simd::Isa;
use sparetire_quant::{matmul, GgmlType, ThreadPool, WeightView};
use std::path::PathBuf;

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn matmul_equals_llama_cpp_on_every_route() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden_matmul");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "goldens missing in {}", dir.display());
    let exact = Isa::detect().matches_llama_cpp_avx2();
    let pool = ThreadPool::new(2);
    for path in names {
        let b = std::fs::read(&path).unwrap();
        assert_eq!(&b[..4], b"SPQM");
        let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
        assert_eq!(u(4), 1, "version");
        let ty = GgmlType::from_id(u(8) as u32).expect("type id");
        let (rows, cols, n) = (u(12), u(16), u(20));
        let wb = rows * ty.row_bytes(cols).unwrap();
        let mut o = 24;
        let x = f32s(&b[o..o + 4 * n * cols]);
        o += 4 * n * cols;
        let w = &b[o..o + wb];
        o += wb;
        let want = f32s(&b[o..o + 4 * n * rows]);
        assert_eq!(o + 4 * n * rows, b.len());
        let mut y = vec![f32::NAN; n * rows];
        let view = WeightView {
            ty,
            data: w,
            rows,
            cols,
        };
        matmul(&pool, &view, &x, n, &mut y).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        for (i, (&got, &want)) in y.iter().zip(&want).enumerate() {
            if exact {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{name}: token {} row {}: {got} vs llama.cpp {want}",
                    i / rows,
                    i % rows
                );
            } else {
                assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0), "{name}");
            }
        }
    }
}
