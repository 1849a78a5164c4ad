//! Tensor parallelism: which heads, feed-forward columns and output rows a
//! rank computes, and the all-gather that joins the ranks' parts.
//!
//! Every matrix product is cut by its **output rows**: q/k/v by heads (a
//! rank computes the key/value heads its query heads read, so two ranks may
//! both compute a KV head when a group is split), gate/up by feed-forward
//! columns, and the attention-output and down projections by model-width
//! rows. Between them the ranks all-gather their parts, so every rank sees
//! the whole attention output and the whole feed-forward activation before
//! the next product. Each output element is then computed by one rank with
//! exactly the single-process arithmetic: logits are **bit-identical** to
//! one process's. (Megatron's cut of the output/down projections by input
//! columns needs only one all-reduce per block, but adds partial sums in
//! another order; through the 8-bit activation quantization those last-bit
//! differences grow, measured at 1.2% perplexity on SmolLM2 over three
//! 128-token chunks — too far from one node for this engine's promise.)
//! Any rank count works; ranks beyond the available heads or rows compute
//! nothing for that product and contribute empty parts.

use std::ops::Range;

use crate::HParams;

/// What a gathered activation is used for next (a transport may encode the
/// two kinds differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gathered {
    /// The input of the next matrix product (attention heads before the
    /// output projection, the feed-forward activation before the down
    /// projection), which that product converts to `act` first (Q8_0, Q8_1
    /// or Q8_K blocks for quantized weights, f16 for f16 weights…).
    ProductInput {
        /// The product's activation type.
        act: sparetire_quant::GgmlType,
    },
    /// A product's result, added to the residual stream.
    Residual,
}

impl Gathered {
    /// The input of a product with `weight`-typed weights.
    pub fn input_of(weight: sparetire_quant::GgmlType) -> Gathered {
        Gathered::ProductInput {
            act: weight.vec_dot_type(),
        }
    }
}

/// Concatenates every rank's part, in rank order (an all-gather with
/// per-rank lengths).
pub trait Gatherer: Send + Sync {
    /// Every rank's `mine` (rank `r` contributing `counts[r]` values: `rows`
    /// rows of `counts[r] / rows` columns), concatenated.
    fn all_gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        rows: usize,
        what: Gathered,
    ) -> Result<Vec<f32>, String>;
}

/// One rank's part of every layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Query heads this rank computes.
    pub heads: Range<usize>,
    /// Key/value heads those query heads read.
    pub kv_heads: Range<usize>,
    /// Feed-forward hidden columns (gate/up rows) this rank computes.
    pub ff: Range<usize>,
    /// Model-width rows of the attention-output and down projections this rank computes.
    pub rows: Range<usize>,
}

/// Splits `0..n` into `size` contiguous ranges of whole `unit`s (the last
/// may be short) as even as possible, earlier ranks taking the extra units.
fn split_units(n: usize, unit: usize, rank: usize, size: usize) -> Range<usize> {
    let unit = unit.max(1);
    let units = n.div_ceil(unit);
    let (per, extra) = (units / size, units % size);
    let first = rank * per + rank.min(extra);
    let count = per + usize::from(rank < extra);
    (first * unit).min(n)..((first + count) * unit).min(n)
}

/// Rows of a product move between ranks in groups of this many, so that each
/// rank's slice takes the same kernels as the whole matrix would (llama.cpp's
/// repacked Q4_0/Q4_K layouts and llamafile's sgemm need row counts that are
/// multiples of 8 and 4): slices of a matrix compute bit for bit what the
/// whole computes for those rows.
pub const ROW_UNIT: usize = 8;

/// Feed-forward columns move in groups of this many (a multiple of
/// [`ROW_UNIT`]): the legacy quants' activation block, so that each rank's
/// part of the down projection's input is whole blocks of that product's own
/// activation quantization (which lets 8-bit transfers reproduce it).
pub const FF_UNIT: usize = 32;

/// Rank `rank`'s shard of a model shaped `hp` among `size` ranks.
pub fn plan_shard(hp: &HParams, rank: usize, size: usize) -> Shard {
    let size = size.max(1);
    // A head's rows (head_dim of them) are a multiple of ROW_UNIT in practice; the
    // kernels are chosen per slice, so odd head sizes stay correct, only not repacked.
    let heads = split_units(hp.n_head, 1, rank, size);
    let group = (hp.n_head / hp.n_head_kv.max(1)).max(1);
    let kv_heads = if heads.is_empty() {
        0..0
    } else {
        heads.start / group..(heads.end - 1) / group + 1
    };
    Shard {
        heads,
        kv_heads,
        ff: split_units(hp.n_ff, FF_UNIT, rank, size),
        rows: split_units(hp.n_embd, ROW_UNIT, rank, size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(n_head: usize, n_head_kv: usize, head_dim: usize, n_ff: usize) -> HParams {
        HParams {
            arch: "llama".into(),
            n_layer: 1,
            n_embd: n_head * head_dim,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v: head_dim,
            n_rot: head_dim,
            rope_base: 10000.0,
            rms_eps: 1e-5,
            n_ctx_train: 2048,
            n_vocab: 100,
            kv_values: true,
        }
    }

    #[test]
    fn any_rank_count_covers_every_head_column_and_row_once() {
        // SmolLM2: 9 query heads, 3 KV heads.
        let smol = hp(9, 3, 64, 1536);
        for size in 1..=12 {
            let (mut heads, mut ff, mut rows) = (0, 0, 0);
            for r in 0..size {
                let s = plan_shard(&smol, r, size);
                assert_eq!(
                    (s.heads.start, s.ff.start, s.rows.start),
                    (heads, ff, rows),
                    "size {size} rank {r}"
                );
                (heads, ff, rows) = (s.heads.end, s.ff.end, s.rows.end);
                for h in s.heads.clone() {
                    assert!(s.kv_heads.contains(&(h / 3)));
                }
            }
            assert_eq!((heads, ff, rows), (9, 1536, 576));
        }
        assert_eq!(plan_shard(&smol, 0, 2).heads, 0..5);
        assert_eq!(
            plan_shard(&smol, 1, 2).kv_heads,
            1..3,
            "head 5 shares KV head 1"
        );
        assert_eq!(plan_shard(&smol, 3, 4).heads, 7..9);
        for r in 0..3 {
            let s = plan_shard(&smol, r, 3);
            assert_eq!(s.rows.start % ROW_UNIT, 0);
            assert_eq!(s.ff.start % FF_UNIT, 0);
        }
        // More ranks than heads: the last ranks get none.
        let s = plan_shard(&smol, 10, 11);
        assert_eq!((s.heads, s.kv_heads), (9..9, 0..0));
    }
}
