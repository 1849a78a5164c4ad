//! GGML quantization formats and the CPU kernels that compute with them.
//!
//! The main types:
//! - [`GgmlType`]: a tensor element type as GGUF stores it (F32, F16, BF16, Q4_0 … Q8_K), with
//!   its block geometry and the activation type llama.cpp pairs it with in dot products.
//! - [`blocks`]: `#[repr(C)]` block layouts, byte-for-byte as ggml writes them.
//! - [`dequantize_row`], [`quantize_row`]: scalar conversions that match llama.cpp's
//!   `dequantize_row_*` / `quantize_row_*_ref` bit for bit.
//! - [`vec_dot`]: one row of weights times one quantized activation row, dispatched at run time to
//!   the best SIMD kernel the CPU has ([`simd`]: AVX2 on x86_64, NEON with or without `dotprod`
//!   on aarch64); [`reference::vec_dot`] is the scalar version.
//! - [`matmul()`]: weights × a batch of f32 activations, quantizing each activation row once the way
//!   llama.cpp's CPU backend does, with rows split across a persistent [`ThreadPool`]. It routes
//!   each product as llama.cpp's AVX2 build does (repacked Q4_0/Q4_K GEMV/GEMM, the tiled K-quant
//!   matmul for 8+ tokens, `vec_dot`, llamafile's sgemm) and reproduces that route's arithmetic;
//!   `tests/matmul_llamacpp.rs` pins it against llama.cpp's own results. Off x86_64 every product
//!   takes `vec_dot` (close to llama.cpp, not bit-identical).
//!
//! All byte buffers are little-endian GGUF data; lengths are checked and reported as
//! [`QuantError`], never as panics.

#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("sparetire-quant reads GGUF blocks in place and assumes a little-endian target");

pub mod blocks;
mod error;
pub mod matmul;
pub mod reference;
pub mod simd;
pub mod threads;
mod types;

pub use error::QuantError;
pub use matmul::{matmul, matmul_with, Arithmetic, WeightView, MATMUL_HELD_BACK};
pub use reference::{dequantize_row, quantize_activation_row, quantize_row};
pub use simd::{vec_dot, vec_dot_kernel, VecDotFn};
pub use threads::ThreadPool;
pub use types::GgmlType;
