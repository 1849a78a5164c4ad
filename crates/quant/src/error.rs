//! The crate's error type.

use crate::GgmlType;

/// Everything that can go wrong converting or multiplying quantized data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The operation is not implemented for this type.
    #[error("{op} is not supported for {ty:?}")]
    Unsupported {
        /// The element type asked for.
        ty: GgmlType,
        /// What was asked (`"quantize"`, `"vec_dot"`, ...).
        op: &'static str,
    },
    /// An element count is not a whole number of blocks.
    #[error("{n} elements is not a multiple of {ty:?}'s block size {block_size}")]
    NotBlockMultiple {
        /// The element type.
        ty: GgmlType,
        /// The element count given.
        n: usize,
        /// Elements per block of `ty`.
        block_size: usize,
    },
    /// A buffer has the wrong length for the element count.
    #[error("{what}: expected {expected} bytes or elements, got {got}")]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
    /// A size computation overflowed `usize`.
    #[error("size overflow: {0}")]
    Overflow(&'static str),
}
