//! One file, downloaded into a `.partial` file: resumed with HTTP Range, verified
//! against the size and sha256 the hub publishes.
//!
//! The caller holds the lock for `partial` and renames it into place only after
//! [`download`] returns, so a half-written file is never taken for a model.
//! A dropped connection is resumed once automatically (a later pull resumes too);
//! a checksum mismatch removes the file and downloads it once more before failing.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::digest::{hash_prefix, hex, sha256_hex};
use crate::http::Http;
use crate::progress::Report;
use crate::HubError;

/// How many times a dropped connection is resumed without asking.
const AUTO_RESUMES: u32 = 1;
/// How many times a file that fails verification is downloaded again.
const REDOWNLOADS: u32 = 1;

/// What to download and what it must be.
pub(crate) struct Wanted<'a> {
    /// `ORG/REPO` (for messages).
    pub repo: &'a str,
    /// The file's path in the repository.
    pub path: &'a str,
    /// Where it downloads from.
    pub url: String,
    /// Its size, if the listing gave it.
    pub size: Option<u64>,
    /// Its sha256, if the listing gave it.
    pub sha256: Option<String>,
}

/// A complete, verified download.
#[derive(Debug)]
pub(crate) struct Downloaded {
    /// Its size.
    pub size: u64,
    /// Its sha256.
    pub sha256: String,
}

/// Why one attempt ended early.
enum Failure {
    /// The transfer stopped; what is on disk is good and can be resumed.
    Dropped { done: u64, detail: String },
    /// Nothing to retry.
    Fatal(HubError),
}

impl From<HubError> for Failure {
    fn from(e: HubError) -> Failure {
        Failure::Fatal(e)
    }
}

/// The sha256 of the partial file's first `len` bytes.
struct Hashed {
    hasher: Sha256,
    len: u64,
}

impl Hashed {
    fn new() -> Hashed {
        Hashed {
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Makes the state cover exactly the first `len` bytes of `path`.
    fn sync(&mut self, path: &Path, len: u64, report: &dyn Report) -> Result<(), HubError> {
        if self.len == len {
            return Ok(());
        }
        *self = Hashed::new();
        if len > 0 {
            report.note(&format!(
                "checking the {:.1} MB downloaded before",
                len as f64 / 1e6
            ));
            hash_prefix(path, len, &mut self.hasher)?;
            self.len = len;
        }
        Ok(())
    }

    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }
}

/// Downloads `want` into `partial` (resuming what is there) and verifies it.
pub(crate) fn download(
    http: &Http,
    want: &Wanted,
    partial: &Path,
    report: &dyn Report,
) -> Result<Downloaded, HubError> {
    let mut hashed = Hashed::new();
    let mut size = want.size;
    let mut sha256 = want.sha256.clone();
    let (mut resumes, mut redownloads) = (AUTO_RESUMES, REDOWNLOADS);
    loop {
        match attempt(
            http,
            want,
            &mut size,
            &mut sha256,
            partial,
            &mut hashed,
            report,
        ) {
            Ok(()) => {}
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Dropped { done, detail }) => {
                if resumes == 0 {
                    return Err(HubError::Dropped {
                        file: want.path.to_owned(),
                        done,
                        total: size,
                        detail,
                    });
                }
                resumes -= 1;
                report.note(&format!(
                    "{}: the transfer stopped at {done} bytes ({detail}); resuming",
                    want.path
                ));
                continue;
            }
        }
        let got = hashed.len;
        let digest = hex(&hashed.hasher.clone().finalize());
        let size_ok = size.is_none_or(|s| s == got);
        let sha_ok = sha256.as_ref().is_none_or(|s| *s == digest);
        if size_ok && sha_ok {
            return Ok(Downloaded {
                size: got,
                sha256: digest,
            });
        }
        remove(partial)?;
        hashed = Hashed::new();
        let problem = if size_ok {
            format!(
                "checksum mismatch (expected sha256 {}, got {digest})",
                sha256.as_deref().unwrap_or("?")
            )
        } else {
            format!(
                "size mismatch (expected {} bytes, got {got})",
                size.unwrap_or(0)
            )
        };
        if redownloads == 0 {
            return Err(if size_ok {
                HubError::ChecksumMismatch {
                    file: want.path.to_owned(),
                    expected: sha256.unwrap_or_default(),
                    actual: digest,
                }
            } else {
                HubError::SizeMismatch {
                    file: want.path.to_owned(),
                    expected: size.unwrap_or(0),
                    actual: got,
                }
            });
        }
        redownloads -= 1;
        report.note(&format!(
            "{}: {problem}; removed it, downloading it again",
            want.path
        ));
    }
}

fn attempt(
    http: &Http,
    want: &Wanted,
    size: &mut Option<u64>,
    sha256: &mut Option<String>,
    partial: &Path,
    hashed: &mut Hashed,
    report: &dyn Report,
) -> Result<(), Failure> {
    let mut have = match std::fs::metadata(partial) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(HubError::io("reading", partial, e).into()),
    };
    if let Some(total) = *size {
        if have > total {
            truncate(partial)?;
            have = 0;
        }
        if have == total && have > 0 {
            hashed.sync(partial, have, report)?;
            return Ok(());
        }
    }
    hashed.sync(partial, have, report)?;
    if have > 0 {
        report.note(&format!(
            "{}: resuming at {:.1} MB",
            want.path,
            have as f64 / 1e6
        ));
    }
    let answer = match http.get(&want.url, (have > 0).then_some(have)) {
        Ok(a) => a,
        // Something is on disk: say that a later pull resumes it.
        Err(HubError::Network { detail, .. }) if have > 0 => {
            return Err(Failure::Dropped { done: have, detail })
        }
        Err(e) => return Err(e.into()),
    };
    if answer.is_html() {
        return Err(html(http, &answer.url).into());
    }
    let status = answer.status();
    match status {
        200 => {
            if have > 0 {
                report.note(&format!(
                    "{}: the server sent the whole file instead of the rest; starting over",
                    want.path
                ));
                truncate(partial)?;
                *hashed = Hashed::new();
                have = 0;
            }
        }
        206 => {
            let start = answer
                .header("content-range")
                .and_then(|r| r.trim().strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(have) {
                truncate(partial)?;
                *hashed = Hashed::new();
                return Err(Failure::Dropped {
                    done: 0,
                    detail: format!(
                        "asked for the bytes from {have}, the server sent {}",
                        answer.header("content-range").unwrap_or("no Content-Range")
                    ),
                });
            }
        }
        416 => {
            truncate(partial)?;
            *hashed = Hashed::new();
            return Err(Failure::Dropped {
                done: 0,
                detail: "the server's file is shorter than the partial download".into(),
            });
        }
        401 | 403 => {
            return Err(HubError::NeedToken {
                hub: http.hub,
                repo: want.repo.to_owned(),
                file: want.path.to_owned(),
                status,
                had_token: http.has_token(),
            }
            .into())
        }
        // Overloaded or failing for a moment: worth the automatic retry, and a later pull.
        429 | 500 | 502 | 503 | 504 => {
            return Err(Failure::Dropped {
                done: have,
                detail: format!("the server answered HTTP {status}"),
            })
        }
        _ => return Err(answer.refusal().into_error().into()),
    }
    // What the listing did not say, the answer's headers may.
    if size.is_none() {
        *size = answer.linked_size.or_else(|| {
            answer
                .header("content-length")
                .and_then(|l| l.trim().parse::<u64>().ok())
                .map(|l| l + have)
        });
    }
    if sha256.is_none() {
        *sha256 = answer.linked_etag.as_deref().and_then(sha256_hex);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .map_err(|e| HubError::io("opening", partial, e))?;
    let mut body = answer.response.into_body().into_reader();
    let mut transfer = report.transfer(want.path, *size);
    transfer.position(have);
    let result = stream(
        &mut body,
        &mut file,
        partial,
        hashed,
        &mut *transfer,
        have == 0,
    );
    transfer.finish();
    let done = hashed.len;
    let synced = file.sync_all().map_err(|e| HubError::write(partial, e));
    match result {
        Err(StreamError::Read(detail)) => return Err(Failure::Dropped { done, detail }),
        Err(StreamError::Html) => {
            drop(file);
            remove(partial)?;
            return Err(html(http, &want.url).into());
        }
        Err(StreamError::Fatal(e)) => return Err(e.into()),
        Ok(()) => {}
    }
    synced?;
    if let Some(total) = *size {
        if done < total {
            return Err(Failure::Dropped {
                done,
                detail: "the server closed the connection early".into(),
            });
        }
    }
    Ok(())
}

enum StreamError {
    /// Reading from the network failed.
    Read(String),
    /// The file's first bytes are an HTML page.
    Html,
    /// Writing failed.
    Fatal(HubError),
}

/// Copies `body` to the end of `file`, hashing as it goes.
fn stream(
    body: &mut impl Read,
    file: &mut File,
    path: &Path,
    hashed: &mut Hashed,
    transfer: &mut dyn crate::progress::Transfer,
    from_start: bool,
) -> Result<(), StreamError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut first = from_start;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e.to_string())),
        };
        // A GGUF file starts with "GGUF"; a mirror's error page with '<'.
        if first && buf[0] == b'<' {
            return Err(StreamError::Html);
        }
        first = false;
        file.write_all(&buf[..n])
            .map_err(|e| StreamError::Fatal(HubError::write(path, e)))?;
        hashed.update(&buf[..n]);
        transfer.position(hashed.len);
    }
}

fn html(http: &Http, url: &str) -> HubError {
    HubError::Html {
        hub: http.hub,
        endpoint: http.endpoint.clone(),
        url: url.to_owned(),
    }
}

fn truncate(path: &Path) -> Result<(), HubError> {
    File::create(path)
        .map(drop)
        .map_err(|e| HubError::io("truncating", path, e))
}

fn remove(path: &Path) -> Result<(), HubError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HubError::io("removing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's /dev/full fails every write with ENOSPC: the user is told the disk is full.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_says_so() {
        let path = Path::new("/dev/full");
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .expect("Linux has /dev/full");
        let mut hashed = Hashed::new();
        let mut body: &[u8] = b"GGUF and more bytes";
        let recorder = crate::progress::Recorder::new();
        let mut transfer = recorder.transfer("x", None);
        let r = stream(
            &mut body,
            &mut file,
            path,
            &mut hashed,
            &mut *transfer,
            true,
        );
        match r {
            Err(StreamError::Fatal(e)) => {
                let msg = e.to_string();
                assert!(matches!(e, HubError::DiskFull { .. }), "{msg}");
                assert!(
                    msg.contains("disk is full") && msg.contains("SPARETIRE_HOME"),
                    "{msg}"
                );
            }
            _ => panic!("writing to /dev/full succeeded"),
        }
    }
}
