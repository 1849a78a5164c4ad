//! The transport between ranks: only what the engine uses.

use sparetire_models::tensor_parallel::Gathered;

use crate::wire::{Codec, WireType};
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

    /// Every rank's `mine` concatenated in rank order; rank `r` contributes
    /// `counts[r]` values (tensor parallelism's parts).
    fn all_gather(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>, ClusterError>;

    /// Like [`Comm::all_gather`] for bytes (encoded activations). The
    /// default takes one broadcast per rank; transports override it with
    /// their own collective.
    fn all_gather_bytes(&self, mine: &[u8], counts: &[usize]) -> Result<Vec<u8>, ClusterError> {
        if counts.len() != self.size() || counts[self.rank()] != mine.len() {
            return Err(ClusterError::Protocol {
                rank: self.rank(),
                what: "all-gather counts do not match the ranks".into(),
            });
        }
        let mut all = Vec::with_capacity(counts.iter().sum());
        for (r, &n) in counts.iter().enumerate() {
            let mut buf = if r == self.rank() {
                mine.to_vec()
            } else {
                Vec::new()
            };
            self.broadcast(r, &mut buf)?;
            if buf.len() != n {
                return Err(ClusterError::Protocol {
                    rank: self.rank(),
                    what: format!("rank {r} sent {} bytes for an all-gather of {n}", buf.len()),
                });
            }
            all.extend_from_slice(&buf);
        }
        Ok(all)
    }

    /// Payload bytes this rank has sent so far (broadcasts counted once per receiver).
    fn bytes_sent(&self) -> u64;

    /// Waits until every rank is here.
    fn barrier(&self) -> Result<(), ClusterError>;
}

/// A [`Comm`] as the models' all-gather
/// ([`sparetire_models::tensor_parallel::Gatherer`]), moving the parts as
/// its [`WireType`] says.
pub struct CommGatherer {
    comm: std::sync::Arc<dyn Comm>,
    wire: WireType,
}

impl CommGatherer {
    /// Gathers over `comm`, encoding the parts as `wire`.
    pub fn new(comm: std::sync::Arc<dyn Comm>, wire: WireType) -> CommGatherer {
        CommGatherer { comm, wire }
    }

    fn gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        rows: usize,
        what: Gathered,
    ) -> Result<Vec<f32>, ClusterError> {
        let codec = self.wire.codec(what);
        if codec == Codec::F32 {
            return self.comm.all_gather(mine, counts);
        }
        let sizes: Vec<usize> = counts.iter().map(|&n| codec.encoded_len(n, rows)).collect();
        let all = self
            .comm
            .all_gather_bytes(&codec.encode(mine, rows), &sizes)?;
        let mut out = Vec::with_capacity(counts.iter().sum());
        let mut at = 0;
        for (&n, &len) in counts.iter().zip(&sizes) {
            out.extend(codec.decode(&all[at..at + len], n, rows, self.comm.rank())?);
            at += len;
        }
        Ok(out)
    }
}

impl sparetire_models::tensor_parallel::Gatherer for CommGatherer {
    fn all_gather(
        &self,
        mine: &[f32],
        counts: &[usize],
        rows: usize,
        what: Gathered,
    ) -> Result<Vec<f32>, String> {
        self.gather(mine, counts, rows, what)
            .map_err(|e| e.to_string())
    }
}
