//! The crate's error type.

use std::path::PathBuf;

use sparetire_quant::GgmlType;

/// Everything that can go wrong quantizing or converting a model.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input GGUF could not be read.
    #[error("reading {path}: {error}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// What was wrong with it (shown in the message, so not chained as a source).
        error: sparetire_formats::FormatError,
    },
    /// A file could not be read, created or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A metadata key the conversion needs is missing or has the wrong type.
    #[error("{key}: {problem}")]
    Metadata {
        /// The key (GGUF metadata or a Hugging Face config field).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An input tensor is already quantized and `allow_requantize` was not given.
    #[error(
        "{tensor} is already quantized ({ty}); converting it to {to} needs --allow-requantize \
         (a second rounding loses quality: better start from an F32/F16/BF16 file)"
    )]
    Requantize {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The type it would be converted to.
        to: GgmlType,
    },
    /// A tensor holds NaN or infinity.
    #[error("{tensor}: row {row} holds a NaN or infinite value")]
    NonFinite {
        /// The tensor.
        tensor: String,
        /// The first bad row.
        row: usize,
    },
    /// A tensor's data could not be converted.
    #[error("{tensor}: {error}")]
    Quant {
        /// The tensor.
        tensor: String,
        /// What went wrong (shown in the message, so not chained as a source).
        error: sparetire_quant::QuantError,
    },
    /// A Hugging Face checkpoint is incomplete or unsupported.
    #[error("{0}")]
    Checkpoint(String),
    /// A safetensors file is malformed.
    #[error("{path}: {problem}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}
