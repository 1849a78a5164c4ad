//! [`matmul`]: quantized weights × a batch of f32 activations, split across a [`ThreadPool`].

use crate::reference::{check_len, checked_row_bytes, dot_fn, quantize_activation_row};
use crate::simd::{best_kernel, best_tile, MAX_TILE};
use crate::{GgmlType, QuantError, ThreadPool};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A borrowed weight matrix: `rows` rows of `cols` elements of `ty`, row-major, as GGUF stores a
/// 2-D tensor with `ne[0] = cols` and `ne[1] = rows`.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    /// Element type of `data`.
    pub ty: GgmlType,
    /// Packed rows, `rows * ty.row_bytes(cols)` bytes.
    pub data: &'a [u8],
    /// Output features.
    pub rows: usize,
    /// Input features (elements per row).
    pub cols: usize,
}

thread_local! {
    /// Quantized activations, reused across calls on the same thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A raw output pointer the threads share; each writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer targets `y`, which outlives `pool.run`, and threads write disjoint
// elements (each chunk of rows is taken by one thread), so there are no data races.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Taking `self` makes closures capture the whole (Sync) wrapper, not the raw field.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Whether llama.cpp's CPU backend hands this product to llamafile's `tinyBLAS<8>` (F32/F16
/// weights, two or more tokens, `cols % 8 == 0`, `rows % 4 == 0`), which accumulates each output
/// in one 8-lane register instead of `ggml_vec_dot_*`'s four.
fn uses_sgemm(ty: GgmlType, rows: usize, cols: usize, n_tokens: usize) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16)
        && n_tokens >= 2
        && cols.is_multiple_of(8)
        && rows.is_multiple_of(4)
}

/// Weight types for which [`matmul`] still runs the scalar reference although an exact AVX2
/// kernel exists ([`crate::vec_dot`] uses it). llama.cpp's AVX2 build computes Q4_K (and Q4_0)
/// matmuls with rows % 8 == 0 through its repacked `q4_K_8x8` GEMV/GEMM kernels, which we do
/// not replicate yet; with F16, Q4_K and Q6_K all exact but the repacked ones not, the random
/// tiny-qwen3 model lands further from llama.cpp's logits (mean |Δ| 0.023) than with the
/// reference's f64/scalar sums (0.009), past its parity test's 0.01 bound. Empty this list
/// once the repacked kernels are matched.
pub const MATMUL_HELD_BACK: [GgmlType; 3] = [GgmlType::F16, GgmlType::Q4_K, GgmlType::Q6_K];

/// Rows per work item handed out to threads (ggml's mul_mat uses chunks of 16 rows too).
const CHUNK_ROWS: usize = 16;

/// `y = x · wᵀ`: `x` is `n_tokens × cols` (row-major), `y` is `n_tokens × rows`.
///
/// Each row of `x` is quantized once to `w.ty.vec_dot_type()` the way llama.cpp's CPU backend
/// does ([`quantize_activation_row`]), then `y[t][r] = vec_dot(w row r, xq[t])` — computed with
/// the arithmetic llama.cpp uses for this shape (its `vec_dot` kernels, or llamafile's sgemm for
/// F32/F16 batches), so results are bit-identical to its AVX2 build. Threads take chunks of
/// rows from a shared counter; within a chunk, tiles of up to four tokens share each weight
/// block's decoding. No allocation once the per-thread scratch has grown.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    let (rows, cols) = (w.rows, w.cols);
    let w_row = checked_row_bytes(w.ty, cols)?;
    let vdt = w.ty.vec_dot_type();
    let a_row = checked_row_bytes(vdt, cols)?;
    let mul = |a: usize, b: usize, what| a.checked_mul(b).ok_or(QuantError::Overflow(what));
    check_len(
        "matmul weights",
        mul(rows, w_row, "weight bytes")?,
        w.data.len(),
    )?;
    check_len("matmul x", mul(n_tokens, cols, "x elements")?, x.len())?;
    check_len("matmul y", mul(n_tokens, rows, "y elements")?, y.len())?;
    let held_back = MATMUL_HELD_BACK.contains(&w.ty);
    let kernel = if held_back {
        dot_fn(w.ty)
    } else {
        best_kernel(w.ty)
    };
    let kernel = kernel.ok_or(QuantError::Unsupported {
        ty: w.ty,
        op: "matmul",
    })?;
    let tile = if held_back {
        None
    } else {
        best_tile(w.ty, uses_sgemm(w.ty, rows, cols, n_tokens))
    };
    if rows == 0 || n_tokens == 0 {
        return Ok(());
    }

    SCRATCH.with(|scratch| -> Result<(), QuantError> {
        let mut scratch = scratch
            .try_borrow_mut()
            .map_err(|_| QuantError::Unsupported {
                ty: w.ty,
                op: "re-entrant matmul",
            })?;
        let xq: &[u8] = if vdt == GgmlType::F32 {
            // SAFETY: any f32 slice is a valid, initialized u8 slice of 4x the length; u8 has
            // alignment 1; the borrow keeps `x` alive and immutable for its lifetime.
            unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
        } else {
            let need = mul(n_tokens, a_row, "activation bytes")?;
            if scratch.len() < need {
                scratch.resize(need, 0);
            }
            for (src, dst) in x.chunks_exact(cols).zip(scratch.chunks_exact_mut(a_row)) {
                quantize_activation_row(vdt, src, dst)?;
            }
            &scratch[..need]
        };

        let out = OutPtr(y.as_mut_ptr());
        let n_chunks = rows.div_ceil(CHUNK_ROWS);
        let next = AtomicUsize::new(0);
        pool.run(|_, _| {
            let mut acc = [0.0f32; MAX_TILE];
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= n_chunks {
                    break;
                }
                let (r0, r1) = (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(rows));
                let mut t0 = 0;
                while t0 < n_tokens {
                    let nt = (n_tokens - t0).min(MAX_TILE);
                    let acts = &xq[t0 * a_row..(t0 + nt) * a_row];
                    for r in r0..r1 {
                        let wr = &w.data[r * w_row..(r + 1) * w_row];
                        let acc = &mut acc[..nt];
                        match tile {
                            Some(f) => f(cols, wr, acts, a_row, acc),
                            None => {
                                for (t, v) in acc.iter_mut().enumerate() {
                                    *v = kernel(cols, wr, &acts[t * a_row..(t + 1) * a_row]);
                                }
                            }
                        }
                        for (t, &v) in acc.iter().enumerate() {
                            // SAFETY: t0 + t < n_tokens and r < rows, so the index is inside
                            // `y` (n_tokens * rows elements, checked above); chunk c, and so
                            // row r, is taken by exactly one thread, so no other thread writes
                            // this element.
                            unsafe { *out.at((t0 + t) * rows + r) = v };
                        }
                    }
                    t0 += nt;
                }
            }
        });
        Ok(())
    })
}
