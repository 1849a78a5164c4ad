//! Whether this process is one rank of an `mpirun` job, and its transport.

use std::sync::{Arc, Mutex};

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
    let mut w = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    match &*w {
        World::Unknown => {
            let r = if launched_by_mpi() {
                init().map_err(|e| e.to_string())
            } else {
                Ok(None)
            };
            *w = match &r {
                Ok(Some(c)) => World::Joined(c.clone()),
                Ok(None) => World::Alone,
                Err(e) => World::Failed(e.clone()),
            };
            r.map_err(ClusterError::Setup)
        }
        World::Alone | World::Finished => Ok(None),
        World::Joined(c) => Ok(Some(c.clone())),
        World::Failed(e) => Err(ClusterError::Setup(e.clone())),
    }
}

/// Leaves the job: drops this module's handle so that MPI is finalized once
/// the last other handle (a `DistModel`) is gone. Call at the end of `main`;
/// a rank that exits without it makes `mpirun` report an improper exit.
pub fn finish() {
    let mut w = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(&*w, World::Joined(_)) {
        *w = World::Finished;
    }
}

enum World {
    Unknown,
    Alone,
    Joined(Arc<dyn Comm>),
    Failed(String),
    Finished,
}

static WORLD: Mutex<World> = Mutex::new(World::Unknown);

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
