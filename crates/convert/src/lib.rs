//! Making model files: quantizing GGUF files and importing Hugging Face checkpoints.
//!
//! The main items:
//! - [`FileType`]: a whole-file quantization as llama.cpp names it (`Q4_K_M`, `Q8_0`, …).
//! - [`policy`]: which type each tensor gets for a file type (llama.cpp's `llama_model_quantize`
//!   rules: which tensors stay as they are, which the mixes give more bits, the fallbacks for
//!   row lengths a type's blocks do not divide) and the order tensors are written in.
//! - [`quantize_file`]: reads a GGUF, converts every tensor on several threads and writes the new
//!   GGUF; without an importance matrix the bytes are identical to `llama-quantize`'s.
//! - [`hf`]: a Hugging Face checkpoint directory (config.json, tokenizer.json, safetensors
//!   shards) of a llama, qwen2 or qwen3 model, as GGUF metadata and tensors.
//!
//! Errors are [`ConvertError`]s naming the file, key or tensor at fault.

#![deny(missing_docs)]

mod error;
mod file_type;
pub mod hf;
pub mod policy;
mod quantize;
pub mod safetensors;
mod writer;

pub use error::ConvertError;
pub use file_type::FileType;
pub use quantize::{model_shape, quantize_file};
pub use writer::{write_gguf, QuantizeOptions, QuantizeSummary, TensorReport, TensorSource};
