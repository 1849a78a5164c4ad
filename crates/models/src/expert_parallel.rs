//! Expert parallelism: the experts of every mixture-of-experts layer are
//! spread over ranks, each rank computing only its experts' outputs, which
//! an all-gather then hands to every rank.
//!
//! Every rank runs the rest of the network (attention, router, shared
//! experts) itself — or its tensor-parallel share of it — so every rank
//! knows which experts each token chose. A rank computes the outputs of the
//! (token, slot) pairs whose expert it owns, grouped per expert exactly as
//! one process groups them; the ranks' rows are all-gathered and every rank
//! sums each token's slots in slot order, as one process does. The result
//! is **bit-identical** to one process's, and each rank reads only its
//! experts' weights (the others' pages of the memory map are never touched).

use std::ops::Range;
use std::sync::Arc;

use crate::tensor_parallel::{Gathered, Gatherer};
use crate::ModelError;

/// This rank's place among the ranks that share the experts.
#[derive(Clone)]
pub struct ExpertParallel {
    /// This rank.
    pub rank: usize,
    /// Ranks in all.
    pub size: usize,
    /// The all-gather joining the ranks' expert outputs.
    pub gatherer: Arc<dyn Gatherer>,
}

impl std::fmt::Debug for ExpertParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExpertParallel {{ rank: {}, size: {} }}",
            self.rank, self.size
        )
    }
}

/// The experts rank `rank` of `size` holds: a contiguous range, earlier
/// ranks taking one more when `n_expert` does not divide evenly.
pub fn experts_of(n_expert: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let (per, extra) = (n_expert / size, n_expert % size);
    let first = rank * per + rank.min(extra);
    first..first + per + usize::from(rank < extra)
}

impl ExpertParallel {
    /// Whether this rank computes expert `e` of `n_expert`.
    pub fn owns(&self, e: usize, n_expert: usize) -> bool {
        experts_of(n_expert, self.rank, self.size).contains(&e)
    }

    /// Completes `slots` (`(n, k, d)`, this rank's experts' rows filled)
    /// with every other rank's rows. `chosen` (`(n, k)`) are the experts
    /// each token chose, the same on every rank.
    pub fn share(
        &self,
        chosen: &[usize],
        n_expert: usize,
        k: usize,
        d: usize,
        slots: &mut [f32],
    ) -> Result<(), ModelError> {
        let n = chosen.len() / k.max(1);
        // Rank r's rows, in a order every rank derives alike: by expert, then token.
        let rows_of = |r: usize| {
            let mut rows = Vec::new();
            for e in experts_of(n_expert, r, self.size) {
                for t in 0..n {
                    if let Some(s) = chosen[t * k..(t + 1) * k].iter().position(|&c| c == e) {
                        rows.push(t * k + s);
                    }
                }
            }
            rows
        };
        let all_rows: Vec<Vec<usize>> = (0..self.size).map(rows_of).collect();
        let mine: Vec<f32> = all_rows[self.rank]
            .iter()
            .flat_map(|&i| slots[i * d..(i + 1) * d].iter().copied())
            .collect();
        let counts: Vec<usize> = all_rows.iter().map(|r| r.len() * d).collect();
        // The rows are results that join a weighted sum; ranks hold different numbers of
        // them, so each part goes as one row.
        let all = self
            .gatherer
            .all_gather(&mine, &counts, 1, Gathered::Residual)
            .map_err(|e| {
                ModelError::Cluster(format!("rank {}: expert all-gather: {e}", self.rank))
            })?;
        if all.len() != counts.iter().sum::<usize>() {
            return Err(ModelError::Cluster(format!(
                "rank {}: expert all-gather returned {} values, expected {}",
                self.rank,
                all.len(),
                counts.iter().sum::<usize>()
            )));
        }
        for (row, &i) in all_rows.iter().flatten().enumerate() {
            slots[i * d..(i + 1) * d].copy_from_slice(&all[row * d..(row + 1) * d]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expert_has_exactly_one_owner() {
        for n_expert in [1, 7, 8, 64, 256] {
            for size in 1..=9 {
                let mut next = 0;
                for r in 0..size {
                    let e = experts_of(n_expert, r, size);
                    assert_eq!(e.start, next, "{n_expert} experts, {size} ranks");
                    next = e.end;
                }
                assert_eq!(next, n_expert);
            }
        }
        assert_eq!(experts_of(8, 0, 3), 0..3);
        assert_eq!(experts_of(8, 2, 3), 6..8);
    }
}
