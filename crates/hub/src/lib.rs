//! Open models from the hubs, and the local store that keeps them.
//!
//! [`pull`] takes a [`ModelRef`] (`hf:ORG/REPO[:FILE_OR_QUANT]` for Hugging Face,
//! `ms:…` for ModelScope), lists the repository through the hub's API, picks the GGUF
//! the user named (a file, a quant like `Q4_K_M`, or a split model's parts as one),
//! downloads it resumably (HTTP Range) under a lock, verifies its size and published
//! sha256, joins split parts into one GGUF, and installs it in the [`Store`] under a
//! short name with a [`Manifest`]. Mirrors (`HF_ENDPOINT`), tokens (`HF_TOKEN`) and
//! proxies (`HTTPS_PROXY`) come from the environment or [`PullOptions`].
//!
//! Errors are one [`HubError`] enum whose messages say what to do. Progress goes to a
//! [`Report`]: [`StderrReport`] draws bars, [`Recorder`] keeps the notes for tests.
//! With the `test-server` feature, `testing::FakeHub` is a local server that speaks
//! the hubs' APIs, with the faults the tests need.
#![deny(missing_docs)]

mod digest;
mod download;
mod error;
mod facts;
mod http;
mod listing;
mod lock;
mod manifest;
mod merge;
mod progress;
mod pull;
mod select;
mod source;
mod store;
#[cfg(feature = "test-server")]
pub mod testing;

pub use error::HubError;
pub use facts::{file_type_name, ModelFacts};
pub use listing::RemoteFile;
pub use manifest::{now, Manifest, SourceFile};
pub use progress::{Recorder, Report, StderrReport, Transfer};
pub use pull::{pull, stored, PullOptions, Pulled};
pub use select::{quant_in_name, Selection};
pub use source::{Hub, ModelRef};
pub use store::{base_name, valid_name, Entry, Store};
