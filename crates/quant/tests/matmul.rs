//! matmul against a plain loop over vec_dot, for every weight type and several thread counts.

use sparetire_quant::{
    matmul, quantize_activation_row, quantize_row, vec_dot, GgmlType, QuantError, ThreadPool,
    WeightView,
};

fn data(seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

#[test]
fn matmul_equals_per_row_vec_dot() {
    // 37 rows: F32/F16 stay on the vec_dot path (llamafile's sgemm wants rows % 4 == 0); 7
    // tokens: a full tile of 4 and a partial one; 1 token: the decode kernels (groups of rows,
    // or one row at a time).
    let (rows, cols) = (37, 512);
    let weight_types = GgmlType::ALL
        .into_iter()
        .filter(|t| !matches!(t, GgmlType::Q8_1 | GgmlType::Q8_K));
    for (threads, n_tokens) in [(1, 7), (2, 7), (3, 7), (1, 1), (2, 1)] {
        let pool = ThreadPool::new(threads);
        for ty in weight_types.clone() {
            let wf = data(1, rows * cols);
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rows * rb];
            for (src, dst) in wf.chunks_exact(cols).zip(wq.chunks_exact_mut(rb)) {
                quantize_row(ty, src, dst).unwrap();
            }
            let x = data(7, n_tokens * cols);
            let w = WeightView {
                ty,
                data: &wq,
                rows,
                cols,
            };
            let mut y = vec![f32::NAN; n_tokens * rows];
            matmul(&pool, &w, &x, n_tokens, &mut y).unwrap();

            let vdt = ty.vec_dot_type();
            for t in 0..n_tokens {
                let mut xq = vec![0u8; vdt.row_bytes(cols).unwrap()];
                quantize_activation_row(vdt, &x[t * cols..(t + 1) * cols], &mut xq).unwrap();
                for r in 0..rows {
                    let wr = &wq[r * rb..(r + 1) * rb];
                    let want = if sparetire_quant::MATMUL_HELD_BACK.contains(&ty) {
                        sparetire_quant::reference::vec_dot(ty, cols, wr, &xq).unwrap()
                    } else {
                        vec_dot(ty, cols, wr, &xq).unwrap()
                    };
                    assert_eq!(
                        y[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{ty} t={t} r={r}"
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_rejects_bad_shapes() {
    let pool = ThreadPool::new(2);
    let wq = vec![0u8; 2 * 18];
    let w = WeightView {
        ty: GgmlType::Q4_0,
        data: &wq,
        rows: 2,
        cols: 32,
    };
    let mut y = vec![0.0; 2];
    assert!(matmul(&pool, &w, &[0.0; 32], 1, &mut y).is_ok());
    assert!(matches!(
        matmul(&pool, &w, &[0.0; 31], 1, &mut y),
        Err(QuantError::BufferSize { .. })
    ));
    assert!(matmul(&pool, &w, &[0.0; 32], 1, &mut y[..1]).is_err());
    let bad = WeightView { cols: 33, ..w };
    assert!(matches!(
        matmul(&pool, &bad, &[0.0; 33], 1, &mut y),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    let k8 = WeightView {
        ty: GgmlType::Q8_K,
        data: &[0; 292],
        rows: 1,
        cols: 256,
    };
    assert!(matmul(&pool, &k8, &[0.0; 256], 1, &mut y[..1]).is_err());
}

/// llamafile `tinyBLAS<8>`'s arithmetic for one output, in scalar code: one 8-lane FMA
/// accumulator over the row, then `hsum` ((t0 + t2) + (t1 + t3), t_i = l_i + l_{i+4}).
fn sgemm_dot(w: &[f32], a: &[f32]) -> f32 {
    let mut l = [0f32; 8];
    for (wc, ac) in w.chunks_exact(8).zip(a.chunks_exact(8)) {
        for k in 0..8 {
            l[k] = wc[k].mul_add(ac[k], l[k]);
        }
    }
    let t: [f32; 4] = std::array::from_fn(|i| l[i] + l[i + 4]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `ggml_vec_dot_f16`/`_f32`'s AVX2 arithmetic in scalar code: four 8-lane FMA accumulators per
/// 32 elements, `GGML_F32x8_REDUCE`, the tail in f64.
fn vec_dot_f32_order(w: &[f32], a: &[f32]) -> f32 {
    let np = w.len() / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for i in (0..np).step_by(32) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (k, s) in acc.iter_mut().enumerate() {
                *s = w[i + 8 * j + k].mul_add(a[i + 8 * j + k], *s);
            }
        }
    }
    let x: [f32; 8] = std::array::from_fn(|k| (acc[0][k] + acc[2][k]) + (acc[1][k] + acc[3][k]));
    let t: [f32; 4] = std::array::from_fn(|i| x[i] + x[i + 4]);
    let mut sum = ((t[0] + t[1]) + (t[2] + t[3])) as f64;
    for i in np..w.len() {
        sum += (w[i] * a[i]) as f64;
    }
    sum as f32
}

#[test]
fn float_matmuls_follow_llama_cpp_accumulation_order() {
    if !sparetire_quant::simd::Isa::detect().matches_llama_cpp_avx2() {
        eprintln!("no AVX2 in use: the scalar fallback does not replicate these orders");
        return;
    }
    let pool = ThreadPool::new(2);
    // (rows, cols): rows % 4 == 0 and cols % 8 == 0 take llamafile's sgemm for batches; 37 rows
    // or 100 cols (with a tail past the last 32) stay on ggml_vec_dot_* for every batch size.
    for (rows, cols) in [(40, 512), (37, 512), (40, 100)] {
        for ty in [GgmlType::F32, GgmlType::F16] {
            if sparetire_quant::MATMUL_HELD_BACK.contains(&ty) {
                eprintln!("{ty}: matmul holds its AVX2 kernels back (see MATMUL_HELD_BACK)");
                continue;
            }
            let wf = data(3, rows * cols);
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rows * rb];
            for (src, dst) in wf.chunks_exact(cols).zip(wq.chunks_exact_mut(rb)) {
                quantize_row(ty, src, dst).unwrap();
            }
            // Both operands as the kernels see them (F16 rounds the activations too).
            let mut w_seen = vec![0f32; rows * cols];
            for (src, dst) in wq.chunks_exact(rb).zip(w_seen.chunks_exact_mut(cols)) {
                sparetire_quant::dequantize_row(ty, src, dst).unwrap();
            }
            let w = WeightView {
                ty,
                data: &wq,
                rows,
                cols,
            };
            for n_tokens in [1, 2, 5] {
                let x = data(11, n_tokens * cols);
                let mut y = vec![f32::NAN; n_tokens * rows];
                matmul(&pool, &w, &x, n_tokens, &mut y).unwrap();
                let sgemm = n_tokens >= 2 && rows % 4 == 0 && cols % 8 == 0;
                for t in 0..n_tokens {
                    let mut xq = vec![0u8; rb];
                    let mut a = vec![0f32; cols];
                    quantize_activation_row(ty, &x[t * cols..(t + 1) * cols], &mut xq).unwrap();
                    sparetire_quant::dequantize_row(ty, &xq, &mut a).unwrap();
                    for r in 0..rows {
                        let wr = &w_seen[r * cols..(r + 1) * cols];
                        let want = if sgemm {
                            sgemm_dot(wr, &a)
                        } else {
                            vec_dot_f32_order(wr, &a)
                        };
                        assert_eq!(
                            y[t * rows + r].to_bits(),
                            want.to_bits(),
                            "{ty} {rows}x{cols} n={n_tokens} t={t} r={r}"
                        );
                    }
                }
            }
        }
    }
}
