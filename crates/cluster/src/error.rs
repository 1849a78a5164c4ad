//! What can go wrong between ranks.

/// A cluster failure, naming the rank where it could.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A message could not be sent or received.
    #[error("rank {rank}: {what}")]
    Transport {
        /// The rank that saw the failure.
        rank: usize,
        /// What failed.
        what: String,
    },
    /// A message did not have the expected shape (ranks out of step).
    #[error("rank {rank}: bad message: {what}")]
    Protocol {
        /// The rank that received it.
        rank: usize,
        /// What was wrong.
        what: String,
    },
    /// The model failed on a rank.
    #[error("rank {rank}: {source}")]
    Model {
        /// The rank it failed on.
        rank: usize,
        /// The model's error.
        source: sparetire_models::ModelError,
    },
    /// The process was started by mpirun but cannot run as a cluster.
    #[error("{0}")]
    Setup(String),
}
