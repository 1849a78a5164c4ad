//! The one error type of the formats crate.

use std::path::PathBuf;

/// Everything that can be wrong with a model file or reading it.
///
/// Each variant names the problem precisely enough that a user can tell a
/// truncated download from a file of the wrong kind: the key, the tensor, the
/// byte offset.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file ended before a value it announces.
    #[error("file truncated: {what} at byte {offset} needs {need} bytes, only {have} left")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        need: u64,
        /// How many bytes the file has left from `offset`.
        have: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A GGUF version this reader does not know.
    #[error("unsupported GGUF version {0} (supported: 2, 3){hint}", hint = if *.0 > 0xffff { "; a byte-swapped (big-endian) file?" } else { "" })]
    UnsupportedVersion(u32),
    /// A count in the header is larger than the file could possibly hold.
    #[error("absurd {what} count {count}: the file has only {remaining} bytes left")]
    AbsurdCount {
        /// What is being counted.
        what: String,
        /// The count the file claims.
        count: u64,
        /// The bytes left in the file.
        remaining: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what}: string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        what: String,
        /// Where it starts.
        offset: u64,
    },
    /// A metadata value type id this reader does not know.
    #[error("metadata key {key:?}: unknown value type {id}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id found.
        id: u32,
    },
    /// Arrays nested deeper than any real file uses.
    #[error("metadata key {key:?}: arrays nested deeper than {max}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },
    /// A metadata key appears twice.
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    /// A tensor name appears twice.
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    /// `general.alignment` is zero, not a power of two, or not an integer.
    #[error("general.alignment is {0}; it must be a power of two")]
    BadAlignment(String),
    /// A tensor of a type id we do not know.
    #[error("tensor {tensor:?}: unknown tensor type id {id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type id found.
        id: u32,
    },
    /// A tensor's shape is impossible.
    #[error("tensor {tensor:?}: bad shape {dims:?}: {reason}")]
    BadShape {
        /// The tensor.
        tensor: String,
        /// The dimensions the file gives.
        dims: Vec<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("tensor {tensor:?}: data offset {offset} is not aligned to {alignment} bytes")]
    Misaligned {
        /// The tensor.
        tensor: String,
        /// Its offset within the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor's data extends past the end of the file.
    #[error(
        "tensor {tensor:?}: data [{start}, {end}) runs past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Absolute start of its data.
        start: u64,
        /// Absolute end of its data.
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors' data overlap.
    #[error("tensors {a:?} and {b:?} overlap in the file")]
    TensorOverlap {
        /// One tensor.
        a: String,
        /// The other.
        b: String,
    },
    /// A requested tensor is missing.
    #[error("tensor {0:?} not found in the model file")]
    MissingTensor(String),
    /// A requested metadata key is missing or of the wrong type.
    #[error("metadata key {key:?}: {problem}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}
