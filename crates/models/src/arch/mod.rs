//! One file per architecture; each builds on the shared [`crate::layers`].

pub mod llama;

/// `general.architecture` values sparetire implements.
pub const SUPPORTED: &[&str] = &["llama"];
