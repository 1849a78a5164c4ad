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
    let (rows, cols, n_tokens) = (37, 512, 3);
    let weight_types = GgmlType::ALL
        .into_iter()
        .filter(|t| !matches!(t, GgmlType::Q8_1 | GgmlType::Q8_K));
    for threads in [1, 2, 3] {
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
                    let want = vec_dot(ty, cols, &wq[r * rb..(r + 1) * rb], &xq).unwrap();
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
