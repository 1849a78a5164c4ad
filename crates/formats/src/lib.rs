//! Model file formats for sparetire.
//!
//! The main type is [`gguf::GgufFile`]: a memory-mapped GGUF (v2/v3) file
//! whose header — metadata key/values and the tensor directory — is parsed
//! and validated up front, so that every later access to a tensor's bytes is
//! in bounds. Malformed files produce a [`FormatError`] naming the problem;
//! no count or length read from a file is trusted before it is checked
//! against the bytes that are actually there.
#![deny(missing_docs)]

mod error;
pub mod gguf;
mod mmap;

pub use error::FormatError;
