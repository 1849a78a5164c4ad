//! Tensor parallelism (Megatron style): which heads and feed-forward columns
//! a rank computes, and the all-reduce that joins the ranks' partial sums.
//!
//! Each rank computes a contiguous range of query heads (with the key/value
//! heads they read, some of which two ranks may both compute when a group is
//! split) and a contiguous range of the feed-forward's hidden columns. The
//! q/k/v and gate/up projections are cut by output rows; the attention output
//! and down projections by input columns, which must fall on the weight
//! type's block boundaries, so ranges move in units of whole blocks. Any rank
//! count works: ranks beyond the available units get no heads or columns
//! and contribute zeros to the sums.

use std::ops::Range;

use crate::HParams;

/// Sums a buffer over all ranks, in place (an all-reduce).
pub trait Reducer: Send + Sync {
    /// Element-wise sum over all ranks, left in every rank's `x`.
    fn all_reduce_sum(&self, x: &mut [f32]) -> Result<(), String>;
}

/// One rank's part of every layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Query heads this rank computes.
    pub heads: Range<usize>,
    /// Key/value heads those query heads read.
    pub kv_heads: Range<usize>,
    /// Feed-forward hidden columns this rank computes.
    pub ff: Range<usize>,
}

/// Splits `0..n` into `size` contiguous ranges made of whole `unit`s (the
/// last unit may be short), as even as possible, earlier ranks taking the
/// extra units.
fn split_units(n: usize, unit: usize, rank: usize, size: usize) -> Range<usize> {
    let unit = unit.max(1);
    let units = n.div_ceil(unit);
    let (per, extra) = (units / size, units % size);
    let first = rank * per + rank.min(extra);
    let count = per + usize::from(rank < extra);
    (first * unit).min(n)..((first + count) * unit).min(n)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rank `rank`'s shard of a model shaped `hp` among `size` ranks, when the
/// attention output weights come in blocks of `wo_block` elements and the
/// down projections in blocks of `down_block`.
pub fn plan_shard(hp: &HParams, rank: usize, size: usize, wo_block: usize, down_block: usize) -> Shard {
    let hd = hp.head_dim.max(1);
    // Fewest heads whose columns fill whole blocks.
    let head_unit = wo_block.max(1) / gcd(hd, wo_block.max(1));
    let heads = split_units(hp.n_head, head_unit, rank, size);
    let group = (hp.n_head / hp.n_head_kv.max(1)).max(1);
    let kv_heads = if heads.is_empty() {
        0..0
    } else {
        heads.start / group..(heads.end - 1) / group + 1
    };
    let ff = split_units(hp.n_ff, down_block.max(1), rank, size);
    Shard {
        heads,
        kv_heads,
        ff,
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
            n_rot: head_dim,
            rope_base: 10000.0,
            rms_eps: 1e-5,
            n_ctx_train: 2048,
            n_vocab: 100,
        }
    }

    #[test]
    fn any_rank_count_covers_every_head_and_column_once() {
        // SmolLM2: 9 query heads, 3 KV heads, head_dim 64, Q8_0/Q4_1 blocks of 32.
        let smol = hp(9, 3, 64, 1536);
        for size in 1..=12 {
            let shards: Vec<Shard> = (0..size).map(|r| plan_shard(&smol, r, size, 32, 32)).collect();
            let mut heads = 0;
            let mut ff = 0;
            for (r, s) in shards.iter().enumerate() {
                assert_eq!(s.heads.start, heads, "size {size} rank {r}");
                heads = s.heads.end;
                assert_eq!(s.ff.start, ff);
                ff = s.ff.end;
                assert_eq!(s.ff.start % 32, 0);
                for h in s.heads.clone() {
                    assert!(s.kv_heads.contains(&(h / 3)));
                }
            }
            assert_eq!((heads, ff), (9, 1536));
        }
        assert_eq!(plan_shard(&smol, 0, 2, 32, 32).heads, 0..5);
        assert_eq!(plan_shard(&smol, 1, 2, 32, 32).kv_heads, 1..3, "head 5 shares KV head 1");
        assert_eq!(plan_shard(&smol, 3, 4, 32, 32).heads, 7..9);
        // More ranks than heads: the last ranks get none.
        assert_eq!(plan_shard(&smol, 10, 11, 32, 32).heads, 9..9);
        assert_eq!(plan_shard(&smol, 10, 11, 32, 32).kv_heads, 0..0);
        // K-quant blocks of 256 with head_dim 64 move four heads at a time.
        let q = hp(16, 8, 64, 3072);
        assert_eq!(plan_shard(&q, 0, 3, 256, 256).heads, 0..8);
        assert_eq!(plan_shard(&q, 1, 3, 256, 256).heads, 8..12);
        assert_eq!(plan_shard(&q, 2, 3, 256, 256).ff, 2048..3072);
    }
}
