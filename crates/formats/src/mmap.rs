//! The bytes of a model file: a read-only memory map, or an owned buffer.

use std::fs::File;
use std::path::Path;

use crate::FormatError;

/// Bytes of a file, mapped or owned.
pub(crate) enum Bytes {
    /// A read-only map of a file.
    Mapped(memmap2::Mmap),
    /// Bytes in memory (tests, the fuzzer).
    Owned(Vec<u8>),
}

impl Bytes {
    /// Maps `path` read-only.
    pub(crate) fn map(path: &Path) -> Result<Bytes, FormatError> {
        let io = |source| FormatError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other(
                "is a directory, not a model file",
            )));
        }
        if meta.len() == 0 {
            // Mapping an empty file fails on some systems; an empty buffer parses to "truncated".
            return Ok(Bytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process. Another
        // process truncating or rewriting the model file while it is mapped
        // would change the bytes under us (or fault); like every mmap-based
        // loader (llama.cpp included) we document that model files must not be
        // modified while in use. The store writes files atomically (rename) so
        // its own updates never do this.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(Bytes::Mapped(map))
    }

    /// Drops `range`'s pages from this process's resident memory (they are
    /// read from the file again if touched later). A hint: errors are ignored.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        if let Bytes::Mapped(m) = self {
            if range.start < range.end && range.end <= m.len() {
                // SAFETY: the map is a read-only file mapping that this process never writes, so
                // dropping its pages loses nothing: the kernel reads the same bytes back from the
                // file on the next access; no reference into the map is invalidated.
                let _ = unsafe {
                    m.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        range.start,
                        range.len(),
                    )
                };
            }
        }
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}
