//! [`matmul`]: quantized weights × a batch of f32 activations, split across a [`ThreadPool`].

use crate::reference::{
    check_len, checked_row_bytes, dot_fn, path_dot_fn, quantize_activation_row, quantize_q8_k_4x8,
    DotFn,
};
use crate::simd::{
    best_kernel, chunk_for, gemm_for, kernel_for, path_chunk_for, path_tile_for, tile_for, ChunkFn,
    Isa, TileFn, MAX_TILE,
};
use crate::{GgmlType, QuantError, ThreadPool};

mod panels;
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

/// Fewest rows for which [`for_each_row`] splits its work across the pool's threads.
const PARALLEL_ROWS_MIN: usize = 8;

/// A raw byte pointer the threads share; each writes its own rows (see [`for_each_row`]).
#[derive(Clone, Copy)]
struct BytePtr(*mut u8);
// SAFETY: the pointer targets the `dst` of `for_each_row`, which outlives its `pool.run`, and
// every thread writes only the rows of its own range, so there are no data races.
unsafe impl Send for BytePtr {}
// SAFETY: as above.
unsafe impl Sync for BytePtr {}

impl BytePtr {
    /// Taking `self` makes closures capture the whole (Sync) wrapper, not the raw field.
    fn at(self, i: usize) -> *mut u8 {
        self.0.wrapping_add(i)
    }
}

/// Calls `f(t, row_t)` for each of the `n` rows of `dst` (`row` bytes each): per token work of
/// a batch (quantizing its activations, their side data). Batches of [`PARALLEL_ROWS_MIN`] or
/// more rows are split into one contiguous range per thread of `pool`; smaller ones run on the
/// calling thread. Returns the first error `f` gave.
fn for_each_row(
    pool: &ThreadPool,
    n: usize,
    dst: &mut [u8],
    row: usize,
    f: impl Fn(usize, &mut [u8]) -> Result<(), QuantError> + Sync,
) -> Result<(), QuantError> {
    let dst = &mut dst[..n * row];
    if n < PARALLEL_ROWS_MIN || pool.n_threads() == 1 || row == 0 {
        for (t, d) in dst.chunks_exact_mut(row.max(1)).enumerate() {
            f(t, d)?;
        }
        return Ok(());
    }
    let base = BytePtr(dst.as_mut_ptr());
    let failed = std::sync::Mutex::new(None);
    pool.run(|i, k| {
        for t in n * i / k..n * (i + 1) / k {
            // SAFETY: `dst` holds `n` rows of `row` bytes and `t < n`; index `i` alone takes
            // rows `n·i/k .. n·(i+1)/k` (the ranges of different indices are disjoint), and
            // `dst` stays mutably borrowed, and unused otherwise, until `run` returns.
            let d = unsafe { std::slice::from_raw_parts_mut(base.at(t * row), row) };
            if let Err(e) = f(t, d) {
                if let Ok(mut first) = failed.lock() {
                    first.get_or_insert(e);
                }
            }
        }
    });
    match failed.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
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
/// kernel exists. Empty: every path llama.cpp's AVX2 build takes for the types we have kernels
/// for (`matmul::Path`) is reproduced.
pub const MATMUL_HELD_BACK: [GgmlType; 0] = [];

/// The llama.cpp CPU code that computes a product, where it is not `ggml_vec_dot_*` (or
/// llamafile's sgemm): each finishes the same exact integer sums with different float steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// `ggml_vec_dot_*`, or llamafile's `tinyBLAS` for F32/F16 batches.
    VecDot,
    /// Repacked `q4_K_8x8_q8_K` weights, a token outside the groups of four.
    RepackGemv,
    /// Repacked `q4_K_8x8_q8_K` weights, a group of four tokens (activations quantized by
    /// `ggml_quantize_mat_q8_K_4x8`).
    RepackGemm,
    /// ggml-cpu's tiled K-quant matmul (`tiled/tiled.cpp`).
    Tiled,
}

/// How llama.cpp's AVX2 build (no AVX-512) routes a product, before tiles of tokens:
/// - Q4_K and Q4_0 weights with `rows % 8 == 0` live in the CPU_REPACK buffer as
///   `q4_K_8x8_q8_K` / `q4_0_8x8_q8_0` (`ggml_repack_get_optimal_repack_type`); each group of
///   four tokens goes to `ggml_gemm_*`, the remaining `n % 4` to `ggml_gemv_*`
///   (`forward_mul_mat_one_chunk`). Q6_K, Q5_K and Q8_0 are not repacked on AVX2.
/// - other K-quants (Q5_K, Q6_K; Q4_K with other row counts) with 8 or more tokens take the tiled
///   matmul, checked first in `ggml_compute_forward_mul_mat` (`GGML_CPU_TILED_MM`, on);
/// - everything else `vec_dot` (or sgemm, see [`uses_sgemm`]).
///
/// Off x86_64 every product takes `vec_dot`: there is no AVX2 build to match bit for bit there
/// (llama.cpp's NEON build repacks, tiles and rounds differently, see `simd/aarch64_neon.rs`),
/// the path kernels exist only for AVX2, and the NEON `vec_dot` tiles cover every type.
fn plan(ty: GgmlType, rows: usize, n_tokens: usize) -> Path {
    if !cfg!(target_arch = "x86_64") {
        return Path::VecDot;
    }
    match ty {
        GgmlType::Q4_K | GgmlType::Q4_0 if rows.is_multiple_of(8) => Path::RepackGemm,
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K if n_tokens >= 8 => Path::Tiled,
        _ => Path::VecDot,
    }
}

/// Which arithmetic a batched product uses for each token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arithmetic {
    /// llama.cpp's routing for the batch size (repacked GEMM for groups of four tokens, tiled
    /// K-quant kernels from eight tokens, llamafile's sgemm for F32/F16 batches): bit-identical
    /// to its AVX2 build, but a token's result depends on how many tokens share its batch.
    #[default]
    Reference,
    /// Every token takes the arithmetic of a batch of one (llama.cpp with `--ubatch-size 1`),
    /// whatever the batch holds; tokens still share each weight block's decoding. A token's
    /// result then depends only on its own activations: batch composition, chunking and prefix
    /// reuse cannot change a bit (what the server needs).
    PerToken,
}

/// Rows per work item handed out to threads (ggml's mul_mat uses chunks of 16 rows too; a
/// blocked kernel's panel holds as many).
const CHUNK_ROWS: usize = 16;
const _: () = assert!(CHUNK_ROWS == crate::simd::PANEL_ROWS);

/// `y = x · wᵀ`: `x` is `n_tokens × cols` (row-major), `y` is `n_tokens × rows`.
///
/// Each row of `x` is quantized once to `w.ty.vec_dot_type()` the way llama.cpp's CPU backend
/// does ([`quantize_activation_row`]), then `y[t][r] = vec_dot(w row r, xq[t])` — computed with
/// the arithmetic llama.cpp uses for this shape (its `vec_dot` kernels, or llamafile's sgemm for
/// F32/F16 batches), so results are bit-identical to its AVX2 build (on x86_64 with AVX2 or
/// AVX-512; on aarch64 every product takes the NEON `vec_dot` tiles, see `plan`). Threads take
/// chunks of rows from a shared counter; within a chunk, tiles of up to four tokens share each
/// weight block's decoding, or, where the ISA has panel kernels (AVX-512) and the batch is big
/// enough, the chunk is decoded once into a panel that every group of up to eight tokens runs
/// against (`panels`). Batches are quantized by all threads. No allocation once the per-thread
/// scratch has grown.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    matmul_with(pool, w, x, n_tokens, y, Arithmetic::Reference)
}

/// [`matmul`] with a chosen [`Arithmetic`].
pub fn matmul_with(
    pool: &ThreadPool,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    arith: Arithmetic,
) -> Result<(), QuantError> {
    matmul_impl(pool, w, x, n_tokens, y, arith, Isa::detect())
}

/// [`matmul_with`] on a chosen ISA (for comparisons and benchmarks; results are those of that
/// ISA's kernels); [`QuantError::Unsupported`] if this CPU cannot run it.
pub fn matmul_on(
    isa: Isa,
    pool: &ThreadPool,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    arith: Arithmetic,
) -> Result<(), QuantError> {
    if !Isa::available().contains(&isa) {
        return Err(QuantError::Unsupported {
            ty: w.ty,
            op: "matmul on an ISA this CPU lacks",
        });
    }
    matmul_impl(pool, w, x, n_tokens, y, arith, isa)
}

fn matmul_impl(
    pool: &ThreadPool,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    arith: Arithmetic,
    isa: Isa,
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
    let unsupported = || QuantError::Unsupported {
        ty: w.ty,
        op: "matmul",
    };
    let per_token = arith == Arithmetic::PerToken;
    let path = plan(w.ty, rows, if per_token { 1 } else { n_tokens });
    let sgemm = !per_token && uses_sgemm(w.ty, rows, cols, n_tokens);
    let detected = isa == Isa::detect();
    // Per path: the tile kernel (SIMD) or, without one, the scalar kernel per token. For the
    // repacked Q4_K, `gemm` serves tiles of four tokens and `gemv` the rest.
    let pick = |p: Path| -> Result<(Option<TileFn>, DotFn), QuantError> {
        if p == Path::VecDot {
            let kernel = if held_back {
                dot_fn(w.ty)
            } else if detected {
                best_kernel(w.ty)
            } else {
                kernel_for(isa, w.ty)
            };
            let tile = if held_back {
                None
            } else {
                tile_for(isa, w.ty, sgemm)
            };
            Ok((tile, kernel.ok_or_else(unsupported)?))
        } else {
            Ok((
                path_tile_for(isa, w.ty, p),
                path_dot_fn(w.ty, p).ok_or_else(unsupported)?,
            ))
        }
    };
    let (full, rest) = match path {
        Path::RepackGemm => (pick(Path::RepackGemm)?, pick(Path::RepackGemv)?),
        p => (pick(p)?, pick(p)?),
    };
    // One kernel call serves every row of a chunk, with the tile kernels' arithmetic: for
    // full tiles and for the rest, as `full` and `rest`.
    let chunk_of = |p: Path| -> Option<ChunkFn> {
        match p {
            Path::VecDot if held_back => None,
            Path::VecDot => chunk_for(isa, w.ty, sgemm),
            p => path_chunk_for(isa, w.ty, p),
        }
    };
    let chunks = match path {
        Path::RepackGemm => (chunk_of(Path::RepackGemm), chunk_of(Path::RepackGemv)),
        p => (chunk_of(p), chunk_of(p)),
    };
    // The blocked kernel, for batches big enough to pay for decoding panels (and rows short
    // enough for the decoders' 32-bit gather offsets: any real model's).
    let gemm = if held_back || (CHUNK_ROWS - 1).saturating_mul(w_row) > i32::MAX as usize {
        None
    } else {
        gemm_for(isa, w.ty, path, sgemm).filter(|g| n_tokens >= g.min_tokens)
    };
    // Tokens quantized by `ggml_quantize_mat_q8_K_4x8` (the repacked GEMM's groups of four).
    // (`ggml_quantize_mat_q8_0_4x8` quantizes like x86's `quantize_row_q8_0`, so only Q8_K
    // activations differ.)
    let n_gemm = if path == Path::RepackGemm && vdt == GgmlType::Q8_K && !per_token {
        n_tokens / 4 * 4
    } else {
        0
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
            for_each_row(pool, n_tokens, &mut scratch, a_row, |t, dst| {
                let src = &x[t * cols..(t + 1) * cols];
                if t < n_gemm {
                    quantize_q8_k_4x8(src, dst)
                } else {
                    quantize_activation_row(vdt, src, dst)
                }
            })?;
            &scratch[..need]
        };

        let out = OutPtr(y.as_mut_ptr());
        if let Some(g) = gemm {
            // Tokens in groups of four take the path's arithmetic (the repacked GEMM's),
            // the rest its single-token one.
            let n_full = if per_token { 0 } else { n_tokens / 4 * 4 };
            return panels::run(pool, &g, w, w_row, xq, a_row, n_tokens, n_full, out);
        }
        let n_chunks = rows.div_ceil(CHUNK_ROWS);
        // Big matrices (a 262144-row output) hand out several chunks per counter update, so
        // the threads do not bounce the counter's cache line for every 16 rows; each thread
        // still gets dozens of items to balance with.
        let per_item = (n_chunks / (pool.n_threads() * 32)).max(1);
        let n_items = n_chunks.div_ceil(per_item);
        let next = AtomicUsize::new(0);
        pool.run(|_, _| {
            let mut acc = [0.0f32; MAX_TILE];
            let mut chunk_out = [0.0f32; CHUNK_ROWS * MAX_TILE];
            loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= n_items {
                    break;
                }
                for c in item * per_item..((item + 1) * per_item).min(n_chunks) {
                    let (r0, r1) = (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(rows));
                    let mut t0 = 0;
                    while t0 < n_tokens {
                        let nt = (n_tokens - t0).min(MAX_TILE);
                        let acts = &xq[t0 * a_row..(t0 + nt) * a_row];
                        // Tiles start at multiples of MAX_TILE (4), so a full one is a GEMM group
                        // (unless every token takes the single-token arithmetic).
                        let full_tile = nt == MAX_TILE && !per_token;
                        let chunk = if full_tile { chunks.0 } else { chunks.1 };
                        if let Some(f) = chunk {
                            let o = &mut chunk_out[..(r1 - r0) * nt];
                            f(
                                cols,
                                &w.data[r0 * w_row..r1 * w_row],
                                w_row,
                                acts,
                                a_row,
                                nt,
                                o,
                            );
                            for (i, v) in o.chunks_exact(nt).enumerate() {
                                for (t, &v) in v.iter().enumerate() {
                                    // SAFETY: as below: t0 + t < n_tokens, r0 + i < r1 <= rows,
                                    // and this chunk of rows is this thread's alone.
                                    unsafe { *out.at((t0 + t) * rows + r0 + i) = v };
                                }
                            }
                            t0 += nt;
                            continue;
                        }
                        let (tile, kernel) = if full_tile { full } else { rest };
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
            }
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize_row;

    fn data(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn plan_follows_llama_cpp_avx2_routing() {
        assert_eq!(plan(GgmlType::Q4_K, 640, 1), Path::RepackGemm);
        assert_eq!(plan(GgmlType::Q4_K, 640, 70), Path::RepackGemm);
        assert_eq!(plan(GgmlType::Q4_K, 12, 7), Path::VecDot);
        assert_eq!(plan(GgmlType::Q4_K, 12, 8), Path::Tiled);
        assert_eq!(plan(GgmlType::Q6_K, 640, 7), Path::VecDot);
        assert_eq!(plan(GgmlType::Q6_K, 640, 8), Path::Tiled);
        assert_eq!(plan(GgmlType::Q5_K, 640, 7), Path::VecDot);
        assert_eq!(plan(GgmlType::Q5_K, 640, 8), Path::Tiled);
        assert_eq!(plan(GgmlType::Q8_0, 640, 64), Path::VecDot);
        assert_eq!(plan(GgmlType::Q4_0, 640, 1), Path::RepackGemm);
        assert_eq!(plan(GgmlType::Q4_0, 12, 9), Path::VecDot);
    }

    #[test]
    #[cfg(not(target_arch = "x86_64"))]
    fn plan_is_vec_dot_off_x86() {
        for ty in [
            GgmlType::Q4_K,
            GgmlType::Q4_0,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            for (rows, n_tokens) in [(640, 1), (640, 70), (12, 8), (12, 1)] {
                assert_eq!(
                    plan(ty, rows, n_tokens),
                    Path::VecDot,
                    "{ty} {rows} {n_tokens}"
                );
            }
        }
    }

    /// With [`Arithmetic::PerToken`], each token of a batch gets exactly the bits a batch of
    /// that token alone gets (for every routing: repacked, tiled, sgemm, `vec_dot`).
    #[test]
    fn per_token_batches_equal_single_token_products() {
        let pool = ThreadPool::new(2);
        let cols = 512;
        for (ty, rows) in [
            (GgmlType::Q4_K, 16),
            (GgmlType::Q4_0, 16),
            (GgmlType::Q6_K, 16),
            (GgmlType::Q5_K, 24),
            (GgmlType::Q8_0, 40),
            (GgmlType::F16, 16),
            (GgmlType::F32, 16),
        ] {
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rows * rb];
            for (src, dst) in data(5, rows * cols)
                .chunks_exact(cols)
                .zip(wq.chunks_exact_mut(rb))
            {
                quantize_row(ty, src, dst).unwrap();
            }
            let w = WeightView {
                ty,
                data: &wq,
                rows,
                cols,
            };
            let n_tokens = 11;
            let x = data(17, n_tokens * cols);
            let mut y = vec![f32::NAN; n_tokens * rows];
            matmul_with(&pool, &w, &x, n_tokens, &mut y, Arithmetic::PerToken).unwrap();
            for t in 0..n_tokens {
                let mut one = vec![f32::NAN; rows];
                matmul(&pool, &w, &x[t * cols..(t + 1) * cols], 1, &mut one).unwrap();
                let got: Vec<u32> = y[t * rows..(t + 1) * rows]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let want: Vec<u32> = one.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "{ty} token {t}");
            }
        }
    }

    /// Every output equals its path's scalar specification on activations quantized as that
    /// path quantizes them (groups of four by `ggml_quantize_mat_q8_K_4x8` for the repacked GEMM).
    #[test]
    fn matmul_takes_each_path_with_its_arithmetic() {
        let pool = ThreadPool::new(2);
        let cols = 512;
        for (ty, rows, n_tokens) in [
            (GgmlType::Q4_K, 16, 1),
            (GgmlType::Q4_K, 16, 6),
            (GgmlType::Q4_K, 24, 9),
            (GgmlType::Q4_K, 12, 9),
            (GgmlType::Q4_0, 16, 6),
            (GgmlType::Q4_0, 12, 6),
            (GgmlType::Q5_K, 16, 7),
            (GgmlType::Q5_K, 16, 9),
            (GgmlType::Q6_K, 16, 7),
            (GgmlType::Q6_K, 16, 9),
            // `vec_dot` types whose chunks run one kernel over many rows, partial last chunk.
            (GgmlType::Q4_1, 40, 1),
            (GgmlType::Q4_1, 37, 6),
            (GgmlType::Q5_0, 40, 5),
            (GgmlType::Q8_0, 37, 1),
            (GgmlType::Q8_0, 40, 9),
        ] {
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rows * rb];
            for (src, dst) in data(3, rows * cols)
                .chunks_exact(cols)
                .zip(wq.chunks_exact_mut(rb))
            {
                quantize_row(ty, src, dst).unwrap();
            }
            let x = data(11, n_tokens * cols);
            let w = WeightView {
                ty,
                data: &wq,
                rows,
                cols,
            };
            let mut y = vec![f32::NAN; n_tokens * rows];
            matmul(&pool, &w, &x, n_tokens, &mut y).unwrap();
            let path = plan(ty, rows, n_tokens);
            let n_gemm = if path == Path::RepackGemm && ty == GgmlType::Q4_K {
                n_tokens / 4 * 4
            } else {
                0
            };
            for t in 0..n_tokens {
                let vdt = ty.vec_dot_type();
                let mut xq = vec![0u8; vdt.row_bytes(cols).unwrap()];
                let xt = &x[t * cols..(t + 1) * cols];
                let p = if t < n_gemm {
                    quantize_q8_k_4x8(xt, &mut xq).unwrap();
                    Path::RepackGemm
                } else {
                    quantize_activation_row(vdt, xt, &mut xq).unwrap();
                    if path == Path::RepackGemm {
                        Path::RepackGemv
                    } else {
                        path
                    }
                };
                // vec_dot's AVX2 kernel is exact to llama.cpp, its scalar reference only close.
                let spec = if p == Path::VecDot {
                    best_kernel(ty).unwrap()
                } else {
                    path_dot_fn(ty, p).unwrap()
                };
                for r in 0..rows {
                    let want = spec(cols, &wq[r * rb..(r + 1) * rb], &xq);
                    assert_eq!(
                        y[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{ty} rows={rows} n={n_tokens} {p:?} t={t} r={r}"
                    );
                }
            }
        }
    }
}
