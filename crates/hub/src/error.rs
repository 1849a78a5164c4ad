//! The one error type of the hub crate.

use std::path::PathBuf;

use sparetire_formats::FormatError;

use crate::source::Hub;

/// Everything that can go wrong pulling a model or using the store.
///
/// Each message says what the user can do about it: which files exist, which
/// variable or flag sets the token or the endpoint, that a later pull resumes.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A model reference that is not `hf:ORG/REPO[:FILE_OR_QUANT]` or `ms:…`.
    #[error("{input:?} is not a hub model reference: {reason} (expected hf:ORG/REPO[:FILE_OR_QUANT] or ms:ORG/REPO[:FILE_OR_QUANT])")]
    BadReference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint is not an http(s) URL.
    #[error("endpoint {endpoint:?} is not an http:// or https:// URL (set by --endpoint or {})", .hub.endpoint_env())]
    BadEndpoint {
        /// The hub.
        hub: Hub,
        /// The endpoint given.
        endpoint: String,
    },
    /// The server could not be reached at all.
    #[error("could not reach {url}: {detail}\n  no network? Check the connection, the proxy variables (HTTPS_PROXY, NO_PROXY) and the endpoint {endpoint} (--endpoint or {})", .hub.endpoint_env())]
    Network {
        /// The hub.
        hub: Hub,
        /// The endpoint in use.
        endpoint: String,
        /// The URL requested.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The endpoint answered with a web page instead of the API.
    #[error("{url}: the endpoint answered an HTML page, not the hub API: is {} ({endpoint}) a mirror of the hub?", .hub.endpoint_env())]
    Html {
        /// The hub.
        hub: Hub,
        /// The endpoint in use.
        endpoint: String,
        /// The URL requested.
        url: String,
    },
    /// The repository does not exist (or is private and no valid token was sent).
    #[error("repository {repo} not found on {endpoint}{}", if *.had_token { " (or the token has no access to it)".to_owned() } else { format!(" (if it is private, set {} or pass --token)", .hub.token_env()) })]
    RepoNotFound {
        /// The hub.
        hub: Hub,
        /// The endpoint in use.
        endpoint: String,
        /// `ORG/REPO`.
        repo: String,
        /// Whether a token was sent.
        had_token: bool,
    },
    /// The revision (branch, tag, commit) does not exist.
    #[error("revision {revision:?} of {repo} not found")]
    RevisionNotFound {
        /// `ORG/REPO`.
        repo: String,
        /// The revision asked for.
        revision: String,
    },
    /// The repository has no GGUF file at all.
    #[error("{repo} has no GGUF file; sparetire runs GGUF models. Its files: {}", list(.files))]
    NoGguf {
        /// `ORG/REPO`.
        repo: String,
        /// The files it has.
        files: Vec<String>,
    },
    /// Nothing in the repository matches the file or quant asked for.
    #[error("{repo} has no GGUF file or quant {wanted:?}; its GGUF files: {}", list(.available))]
    FileNotFound {
        /// `ORG/REPO`.
        repo: String,
        /// The file or quant asked for.
        wanted: String,
        /// The GGUF files it has.
        available: Vec<String>,
    },
    /// Several models match; the user must say which.
    #[error("{}{repo} has several GGUF models; name one, e.g. {}:{repo}:{}. Choices: {}", .wanted.as_ref().map(|w| format!("{w:?} matches more than one model: ")).unwrap_or_default(), .hub.prefix(), .candidates.first().map(String::as_str).unwrap_or("FILE"), list(.candidates))]
    Ambiguous {
        /// The hub.
        hub: Hub,
        /// `ORG/REPO`.
        repo: String,
        /// The file or quant asked for (None: nothing was).
        wanted: Option<String>,
        /// The matching models (quant or file names).
        candidates: Vec<String>,
    },
    /// Some parts of a multi-part GGUF are not in the repository.
    #[error("{file}: parts {} of {count} are missing from {repo}", .missing.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))]
    IncompleteSplit {
        /// `ORG/REPO`.
        repo: String,
        /// The first part's path.
        file: String,
        /// The missing part numbers (1-based).
        missing: Vec<u32>,
        /// How many parts there should be.
        count: u32,
    },
    /// The hub refused the file without (valid) credentials.
    #[error("{repo}/{file}: HTTP {status}: {}", if *.had_token { "the token was refused; check that it is valid and that your account has accepted the repository's terms on its page (gated model)".to_owned() } else { format!("this model is gated or private: a token is needed (set {} or pass --token), and your account must have accepted its terms on the repository's page", .hub.token_env()) })]
    NeedToken {
        /// The hub.
        hub: Hub,
        /// `ORG/REPO`.
        repo: String,
        /// The file.
        file: String,
        /// 401 or 403.
        status: u16,
        /// Whether a token was sent.
        had_token: bool,
    },
    /// Any other unexpected HTTP status.
    #[error("{url}: HTTP {status}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// What the server said, if anything short.
        message: String,
    },
    /// The file listing is not in the shape the hub's API returns.
    #[error("{url}: the file listing is not what the hub API returns ({detail}); is the endpoint a mirror of the hub?")]
    BadListing {
        /// The URL requested.
        url: String,
        /// What did not parse.
        detail: String,
    },
    /// The hub's own API reported an error in its JSON.
    #[error("{url}: the hub said: {message}")]
    Api {
        /// The URL requested.
        url: String,
        /// Its message.
        message: String,
    },
    /// The downloaded bytes do not have the published sha256, twice.
    #[error("{file}: checksum mismatch (downloaded twice): expected sha256 {expected}, got {actual}; the download was removed. A mirror serving other bytes, or a proxy altering them?")]
    ChecksumMismatch {
        /// The file.
        file: String,
        /// The published sha256.
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
    },
    /// The downloaded file does not have the published size, twice.
    #[error("{file}: expected {expected} bytes, got {actual} (downloaded twice); the download was removed")]
    SizeMismatch {
        /// The file.
        file: String,
        /// The published size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// The connection dropped and the automatic retry did not finish either.
    #[error("{file}: the connection dropped at {done} of {} bytes ({detail}); run the same pull again to resume from there", .total.map(|t| t.to_string()).unwrap_or_else(|| "?".into()))]
    Dropped {
        /// The file.
        file: String,
        /// Bytes safely on disk.
        done: u64,
        /// The file's size, if known.
        total: Option<u64>,
        /// The transport error.
        detail: String,
    },
    /// No space left on the device holding the store.
    #[error("the disk is full: could not write {path}; free some space, or move the store elsewhere with SPARETIRE_HOME")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// Any other file-system error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("creating", "reading"…).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A downloaded or stored file is not a valid GGUF file.
    #[error("{file} is not a valid GGUF file: {source}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The parts of a multi-part GGUF do not fit together.
    #[error("joining the parts of {file}: {reason}")]
    Split {
        /// The first part.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// No model of that name in the store.
    #[error("no model named {name:?} in the store {}; its models: {}", .store.display(), list(.known))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The store's root.
        store: PathBuf,
        /// The names it has.
        known: Vec<String>,
    },
    /// A manifest that is not valid JSON of the expected shape.
    #[error("{path}: bad manifest: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl HubError {
    /// Maps a write error: a full disk gets its own message.
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> HubError {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull {
            HubError::DiskFull { path }
        } else {
            HubError::Io {
                op: "writing",
                path,
                source,
            }
        }
    }

    /// An I/O error during `op` on `path` (a full disk gets its own message).
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> HubError {
        if source.kind() == std::io::ErrorKind::StorageFull {
            return HubError::DiskFull { path: path.into() };
        }
        HubError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A short list for a message: the first 20 items, then how many more.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    let mut s = items
        .iter()
        .take(20)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 20 {
        s.push_str(&format!(" … and {} more", items.len() - 20));
    }
    s
}
