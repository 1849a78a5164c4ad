//! Building blocks shared by every architecture: written once, used by all.

pub mod attention;
mod attention_kernels;
#[cfg(target_arch = "x86_64")]
mod attention_x86;
pub mod ggml_f32;
pub mod hadamard;
mod kv_layer;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;
