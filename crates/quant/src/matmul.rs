//! [`matmul`]: quantized weights × a batch of f32 activations, split across a [`ThreadPool`].

use crate::reference::{check_len, checked_row_bytes, quantize_activation_row};
use crate::simd::best_kernel;
use crate::{GgmlType, QuantError, ThreadPool};
use std::cell::RefCell;

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
// elements (each thread owns a distinct range of rows), so there are no data races.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Taking `self` makes closures capture the whole (Sync) wrapper, not the raw field.
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `y = x · wᵀ`: `x` is `n_tokens × cols` (row-major), `y` is `n_tokens × rows`.
///
/// Each row of `x` is quantized once to `w.ty.vec_dot_type()` the way llama.cpp's CPU backend
/// does ([`quantize_activation_row`]), then `y[t][r] = vec_dot(w row r, xq[t])`. Weight rows
/// are split evenly across the pool's threads.
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
    let kernel = best_kernel(w.ty).ok_or(QuantError::Unsupported {
        ty: w.ty,
        op: "matmul",
    })?;
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
            scratch.resize(mul(n_tokens, a_row, "activation bytes")?, 0);
            for (src, dst) in x.chunks_exact(cols).zip(scratch.chunks_exact_mut(a_row)) {
                quantize_activation_row(vdt, src, dst)?;
            }
            &scratch[..]
        };

        let out = OutPtr(y.as_mut_ptr());
        pool.run(|i, n| {
            let per = rows.div_ceil(n);
            let (r0, r1) = ((i * per).min(rows), ((i + 1) * per).min(rows));
            for r in r0..r1 {
                let wr = &w.data[r * w_row..(r + 1) * w_row];
                for t in 0..n_tokens {
                    let v = kernel(cols, wr, &xq[t * a_row..(t + 1) * a_row]);
                    // SAFETY: t < n_tokens and r < rows, so the index is inside `y`
                    // (n_tokens * rows elements, checked above); row r belongs to this thread
                    // only, so no other thread writes this element.
                    unsafe { *out.at(t * rows + r) = v };
                }
            }
        });
        Ok(())
    })
}
