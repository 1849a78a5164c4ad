//! sha256 helpers: hex spelling, hashing a file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::HubError;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` as a lowercase sha256, if it is 64 hex digits.
pub(crate) fn sha256_hex(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Feeds the first `len` bytes of `path` to `hasher`.
pub(crate) fn hash_prefix(path: &Path, len: u64, hasher: &mut Sha256) -> Result<(), HubError> {
    let file = File::open(path).map_err(|e| HubError::io("reading", path, e))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| HubError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    if done != len {
        return Err(HubError::io(
            "reading",
            path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("expected {len} bytes, found {done}"),
            ),
        ));
    }
    Ok(())
}
