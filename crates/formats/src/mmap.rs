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

    /// Drops this process's mapping of the file's pages (they stay in the page
    /// cache; the next read maps them again). Lets a process that read only
    /// part of a model (a tensor-parallel rank, after copying its slices) stop
    /// counting the rest as resident. Best effort: an error changes nothing.
    pub(crate) fn release_pages(&self) {
        #[cfg(unix)]
        if let Bytes::Mapped(m) = self {
            // SAFETY: the map is private and read-only, so it holds no
            // changes that dropping its pages could lose; a later access
            // faults the same file bytes back in. No reference into the map
            // is invalidated (the address range stays mapped).
            let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
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
