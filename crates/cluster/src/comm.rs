//! The transport between ranks: only what the engine uses.

use crate::ClusterError;

/// Collective and point-to-point operations among `size()` ranks. Every rank
/// must make the same collective calls in the same order (as with MPI).
pub trait Comm: Send + Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Rank `root`'s `buf` replaces every other rank's.
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), ClusterError>;

    /// Sends `data` to rank `to` (matched by a [`Comm::recv`] there).
    fn send(&self, to: usize, data: &[f32]) -> Result<(), ClusterError>;

    /// Receives exactly `n` values from rank `from`.
    fn recv(&self, from: usize, n: usize) -> Result<Vec<f32>, ClusterError>;

    /// Element-wise sum over all ranks, left in every rank's `data`.
    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<(), ClusterError>;

    /// Element-wise f32 sum over all ranks, left in every rank's `data`
    /// (tensor parallelism's partial results).
    fn all_reduce_sum_f32(&self, data: &mut [f32]) -> Result<(), ClusterError>;

    /// Waits until every rank is here.
    fn barrier(&self) -> Result<(), ClusterError>;
}

/// A [`Comm`] as the models' all-reduce ([`sparetire_models::tensor_parallel::Reducer`]).
pub struct CommReducer(pub std::sync::Arc<dyn Comm>);

impl sparetire_models::tensor_parallel::Reducer for CommReducer {
    fn all_reduce_sum(&self, x: &mut [f32]) -> Result<(), String> {
        self.0.all_reduce_sum_f32(x).map_err(|e| e.to_string())
    }
}
