//! [`Comm`] over MPI (the `mpi` crate; Open MPI or MPICH underneath).
//!
//! MPI's default error handler aborts the whole job on a failed call, and
//! `mpirun` ends every rank when one dies: failures are loud, never a hang.

use std::sync::Mutex;

use mpi::collective::SystemOperation;
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
        })
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
        let root = self.check(root)?;
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

    fn all_reduce_sum_f32(&self, data: &mut [f32]) -> Result<(), ClusterError> {
        if data.is_empty() {
            return Ok(());
        }
        let src = data.to_vec();
        self.lock()
            .world
            .all_reduce_into(&src[..], data, SystemOperation::sum());
        Ok(())
    }

    fn barrier(&self) -> Result<(), ClusterError> {
        self.lock().world.barrier();
        Ok(())
    }
}
