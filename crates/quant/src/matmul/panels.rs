//! The blocked matrix-matrix product: [`run`] multiplies weights by a batch of quantized
//! activations with a [`Gemm`] kernel.
//!
//! Loop order: threads take chunks of [`CHUNK_ROWS`] weight rows; each chunk is decoded once
//! into a panel in this thread's cache-resident scratch (a few KiB per 32 columns: the
//! interleaved rows the kernel's registers want), and then every group of up to
//! [`GEMM_TOKENS`] tokens streams past it: the panel stays in L1/L2 while the activations,
//! quantized once and shared by all threads, are read once per chunk. Per output the kernels
//! compute exactly what the path's single-row kernel computes, so only the loop order and the
//! reuse of decoded weights change.

use super::{for_each_row, OutPtr, WeightView, CHUNK_ROWS};
use crate::simd::{Gemm, GEMM_TOKENS};
use crate::{QuantError, ThreadPool};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 64 bytes, 64-aligned: the unit of the panel scratch, so that every panel register load is
/// one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

thread_local! {
    /// This thread's panel, reused across calls.
    static PANEL: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// The side data of the calling thread's current product.
    static SIDE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `y[t][r] = w row r · token t` for `n_tokens` tokens of quantized activations `xq` (rows of
/// `a_row` bytes) with the kernel `g`; the first `n_full` tokens take `g.run` (groups of four
/// tokens of the repacked GEMM), the others `g.run_rest`. `out` points at `y`, `n_tokens × rows`
/// floats that the caller checked.
#[allow(clippy::too_many_arguments)] // why: the product's operands as `matmul` checked them
pub(super) fn run(
    pool: &ThreadPool,
    g: &Gemm,
    w: &WeightView,
    w_row: usize,
    xq: &[u8],
    a_row: usize,
    n_tokens: usize,
    n_full: usize,
    out: OutPtr,
) -> Result<(), QuantError> {
    let (rows, cols) = (w.rows, w.cols);
    SIDE.with(|side| -> Result<(), QuantError> {
        let mut side = side.try_borrow_mut().map_err(|_| QuantError::Unsupported {
            ty: w.ty,
            op: "re-entrant matmul",
        })?;
        let s_row = (g.side_bytes)(cols);
        let need = n_tokens
            .checked_mul(s_row)
            .ok_or(QuantError::Overflow("side bytes"))?;
        if side.len() < need {
            side.resize(need, 0);
        }
        for_each_row(pool, n_tokens, &mut side, s_row, |t, s| {
            (g.prep)(cols, &xq[t * a_row..(t + 1) * a_row], s);
            Ok(())
        })?;
        let side = &side[..need];
        let panel_lines = (g.panel_bytes)(cols).div_ceil(64);

        let n_chunks = rows.div_ceil(CHUNK_ROWS);
        let next = AtomicUsize::new(0);
        pool.run(|_, _| {
            PANEL.with(|panel| {
                // Only this closure borrows it, once per thread and call.
                let mut panel = panel.borrow_mut();
                if panel.len() < panel_lines {
                    panel.resize(panel_lines, Line([0; 64]));
                }
                // SAFETY: `Line` is 64 initialized bytes with no padding, so the vector's
                // lines are `64 * len` initialized bytes; the mutable borrow is held for the
                // slice's lifetime.
                let panel: &mut [u8] = unsafe {
                    std::slice::from_raw_parts_mut(panel.as_mut_ptr().cast(), 64 * panel.len())
                };
                let mut tile = [0.0f32; CHUNK_ROWS * GEMM_TOKENS];
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= n_chunks {
                        break;
                    }
                    let (r0, r1) = (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(rows));
                    (g.decode)(cols, &w.data[r0 * w_row..r1 * w_row], w_row, r1 - r0, panel);
                    let mut t0 = 0;
                    while t0 < n_tokens {
                        let t1 = (t0 + GEMM_TOKENS).min(n_tokens);
                        // Within a group of tokens, those below `n_full` take `run`.
                        let split = n_full.clamp(t0, t1);
                        for (a, b, f) in [(t0, split, g.run), (split, t1, g.run_rest)] {
                            if a == b {
                                continue;
                            }
                            let nt = b - a;
                            f(
                                cols,
                                panel,
                                &xq[a * a_row..b * a_row],
                                a_row,
                                &side[a * s_row..b * s_row],
                                s_row,
                                nt,
                                &mut tile[..nt * CHUNK_ROWS],
                            );
                            for t in 0..nt {
                                let src = &tile[t * CHUNK_ROWS..t * CHUNK_ROWS + (r1 - r0)];
                                // SAFETY: token a + t < n_tokens and rows r0..r1 <= rows, so
                                // the destination lies inside `y` (n_tokens × rows, checked by
                                // `matmul`); chunk c, and so rows r0..r1, is this thread's
                                // alone, so no other thread writes there; `tile` is a local.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        src.as_ptr(),
                                        out.at((a + t) * rows + r0),
                                        src.len(),
                                    )
                                };
                            }
                        }
                        t0 = t1;
                    }
                }
            })
        });
        Ok(())
    })
}
