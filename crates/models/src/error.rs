//! The one error type of the models crate.

use sparetire_formats::FormatError;
use sparetire_quant::QuantError;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file itself is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A kernel rejected its inputs.
    #[error("kernel error: {0}")]
    Quant(#[from] QuantError),
    /// `general.architecture` names an architecture sparetire does not implement.
    #[error("unsupported model architecture {arch:?}; supported: {supported}")]
    UnsupportedArch {
        /// The architecture the file names.
        arch: String,
        /// The ones we support, comma-separated.
        supported: String,
    },
    /// A hyperparameter is missing or impossible.
    #[error("hyperparameter {key}: {problem}")]
    BadHParam {
        /// The GGUF key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor the architecture needs is missing.
    #[error("tensor {0:?} is missing from the model file")]
    MissingTensor(String),
    /// A tensor's shape does not match the hyperparameters.
    #[error("tensor {tensor:?} has shape {found:?}, but the hyperparameters imply {expected:?}")]
    ShapeMismatch {
        /// The tensor.
        tensor: String,
        /// Its shape in the file (innermost first).
        found: Vec<u64>,
        /// The shape the architecture expects.
        expected: Vec<u64>,
    },
    /// A tensor's element type cannot be used where it appears.
    #[error("tensor {tensor:?}: type {ty} is not supported here")]
    UnsupportedType {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (vocabulary has {n_vocab} tokens)")]
    BadToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// The context window is full.
    #[error("context full: {needed} tokens needed but the context holds {n_ctx}")]
    ContextFull {
        /// Positions needed.
        needed: usize,
        /// The context size.
        n_ctx: usize,
    },
    /// The shared KV cache has no free block left for a sequence to grow.
    #[error("KV cache full: {needed} more blocks needed but only {available} are free")]
    KvFull {
        /// Blocks the sequence still needs.
        needed: usize,
        /// Blocks the pool can still hand out.
        available: usize,
    },
    /// Another rank of a cluster failed, or the ranks fell out of step.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A compute device (GPU) failed or cannot run the model.
    #[error("device: {0}")]
    Device(String),
    /// An invalid request to the model (e.g. an empty batch).
    #[error("{0}")]
    Invalid(String),
}
