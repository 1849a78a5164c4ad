//! Whether this process is one rank of an `mpirun` job, and its transport.

use std::sync::{Arc, OnceLock};

use crate::{ClusterError, Comm};

/// Whether the environment says an MPI launcher started this process with
/// more than one rank (Open MPI, MPICH/Hydra and PMIx set these).
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok())
    .filter_map(|v| v.trim().parse::<usize>().ok())
    .any(|n| n > 1)
}

/// The job's transport: `None` when not started by an MPI launcher with
/// several ranks; an error when it was but this build cannot join it.
/// MPI is initialised once, on first call.
pub fn world() -> Result<Option<Arc<dyn Comm>>, ClusterError> {
    static WORLD: OnceLock<Result<Option<Arc<dyn Comm>>, String>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            if !launched_by_mpi() {
                return Ok(None);
            }
            init().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ClusterError::Setup)
}

#[cfg(feature = "mpi")]
fn init() -> Result<Option<Arc<dyn Comm>>, ClusterError> {
    let c = crate::mpi_comm::MpiComm::init()?;
    if c.size() < 2 {
        return Ok(None);
    }
    Ok(Some(Arc::new(c)))
}

#[cfg(not(feature = "mpi"))]
fn init() -> Result<Option<Arc<dyn Comm>>, ClusterError> {
    Err(ClusterError::Setup(
        "started by mpirun, but this sparetire was built without MPI support: \
         install an MPI library (Debian: libopenmpi-dev libclang-dev) and build with \
         `cargo build --release --features mpi`"
            .into(),
    ))
}
