//! [`Comm`] over MPI (the `mpi` crate; Open MPI or MPICH underneath).
//!
//! MPI's default error handler aborts the whole job on a failed call, and
//! `mpirun` ends every rank when one dies: failures are loud, never a hang.

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use crate::{ClusterError, Comm};

/// The world communicator of an `mpirun` job.
pub struct MpiComm {
    rank: usize,
    size: usize,
    /// Calls go through this lock one at a time (MPI initialised as "serialized").
    inner: Mutex<Inner>,
    sent: std::sync::atomic::AtomicU64,
}

struct Inner {
    world: SimpleCommunicator,
    /// Finalizes MPI when dropped; kept for the communicator's lifetime.
    _universe: Universe,
}

// SAFETY: MPI is initialised with at least `Threading::Serialized`, which allows calls from any
// thread as long as no two run at once; every use of `Inner` goes through the mutex.
unsafe impl Send for Inner {}

impl MpiComm {
    /// Initialises MPI (once per process).
    pub fn init() -> Result<MpiComm, ClusterError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| ClusterError::Setup("MPI was already initialised".into()))?;
        if threading < Threading::Serialized {
            return Err(ClusterError::Setup(format!(
                "the MPI library offers thread support {threading:?}; sparetire needs Serialized"
            )));
        }
        let world = universe.world();
        Ok(MpiComm {
            rank: world.rank() as usize,
            size: world.size() as usize,
            inner: Mutex::new(Inner {
                world,
                _universe: universe,
            }),
            sent: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Every rank's `mine` concatenated (rank `r` gives `counts[r]` values).
    fn gather_varcount<T>(&self, mine: &[T], counts: &[usize]) -> Result<Vec<T>, ClusterError>
    where
        T: Equivalence + Copy + Default,
    {
        if counts.len() != self.size || counts[self.rank] != mine.len() {
            return Err(ClusterError::Protocol {
                rank: self.rank,
                what: "all-gather counts do not match the ranks".into(),
            });
        }
        let total: usize = counts.iter().sum();
        let mut all = vec![T::default(); total];
        let to_i32 = |v: usize| {
            i32::try_from(v).map_err(|_| ClusterError::Transport {
                rank: self.rank,
                what: format!("an all-gather of {v} values is too large for MPI"),
            })
        };
        let c: Vec<i32> = counts
            .iter()
            .map(|&v| to_i32(v))
            .collect::<Result<_, _>>()?;
        let mut displs = Vec::with_capacity(c.len());
        let mut at = 0i32;
        for &n in &c {
            displs.push(at);
            at = at.checked_add(n).ok_or_else(|| ClusterError::Transport {
                rank: self.rank,
                what: "all-gather too large for MPI".into(),
            })?;
        }
        self.count(std::mem::size_of_val(mine) * (self.size - 1));
        {
            let mut part = PartitionMut::new(&mut all[..], &c[..], &displs[..]);
            self.lock().world.all_gather_varcount_into(mine, &mut part);
        }
        Ok(all)
    }

    fn count(&self, bytes: usize) {
        self.sent
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, r: usize) -> Result<i32, ClusterError> {
        if r < self.size {
            Ok(r as i32)
        } else {
            Err(ClusterError::Transport {
                rank: self.rank,
                what: format!("no rank {r} in a job of {}", self.size),
            })
        }
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), ClusterError> {
        let root_i = self.check(root)?;
        if self.rank == root {
            self.count((buf.len() + 8) * (self.size - 1));
        }
        let root = root_i;
        let g = self.lock();
        let p = g.world.process_at_rank(root);
        let mut len = buf.len() as u64;
        p.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        if len > 0 {
            p.broadcast_into(&mut buf[..]);
        }
        Ok(())
    }

    fn send(&self, to: usize, data: &[f32]) -> Result<(), ClusterError> {
        let to = self.check(to)?;
        self.count(std::mem::size_of_val(data));
        self.lock().world.process_at_rank(to).send(data);
        Ok(())
    }

    fn recv(&self, from: usize, n: usize) -> Result<Vec<f32>, ClusterError> {
        let from_i = self.check(from)?;
        let (v, _) = self
            .lock()
            .world
            .process_at_rank(from_i)
            .receive_vec::<f32>();
        if v.len() != n {
            return Err(ClusterError::Protocol {
                rank: self.rank,
                what: format!("expected {n} values from rank {from}, got {}", v.len()),
            });
        }
        Ok(v)
    }

    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<(), ClusterError> {
        if data.is_empty() {
            return Ok(());
        }
        let src = data.to_vec();
        self.lock()
            .world
            .all_reduce_into(&src[..], data, SystemOperation::sum());
        Ok(())
    }

    fn all_gather(&self, mine: &[f32], counts: &[usize]) -> Result<Vec<f32>, ClusterError> {
        self.gather_varcount(mine, counts)
    }

    fn all_gather_bytes(&self, mine: &[u8], counts: &[usize]) -> Result<Vec<u8>, ClusterError> {
        self.gather_varcount(mine, counts)
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn barrier(&self) -> Result<(), ClusterError> {
        self.lock().world.barrier();
        Ok(())
    }
}
