//! Building blocks shared by every architecture: written once, used by all.

pub mod attention;
pub mod ggml_f32;
pub mod hadamard;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;
