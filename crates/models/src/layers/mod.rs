//! Building blocks shared by every architecture: written once, used by all.

pub mod attention;
pub mod mlp;
pub mod norm;
pub mod rope;
