//! One file per architecture; each builds a [`crate::decoder::Decoder`] from
//! its tensors and options, on top of the shared [`crate::layers`].

pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;

/// `general.architecture` values sparetire implements.
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];
