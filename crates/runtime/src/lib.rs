//! Running models: sampling, stop strings and the generation loop.
//!
//! - [`Engine`] loads a GGUF model with its tokenizer, chat template and a
//!   thread pool.
//! - [`Session`] is one sequence with its KV cache; [`Session::generate`]
//!   evaluates a prompt (reusing any cached prefix) and streams text out.
//! - [`Sampler`] implements greedy and llama.cpp-style sampling with a seed.
//! - [`StopMatcher`] cuts generation at stop strings without ever showing them.
//! - [`perplexity()`] measures perplexity like llama-perplexity, and KL divergence
//!   against another run's saved log-probabilities ([`LogitsWriter`], [`LogitsReader`]).
#![deny(missing_docs)]

mod engine;
mod error;
pub mod generator;
pub mod logits_file;
pub mod perplexity;
mod rng;
pub mod sampler;
mod stop;

pub use engine::{Engine, GenParams, Generation, Session, StopReason, Timings, PREFILL_CHUNK};
pub use error::RuntimeError;
pub use generator::{Generator, Step, TokenLogprob};
pub use logits_file::{LogitsReader, LogitsWriter};
pub use perplexity::{perplexity, KlStats, PplParams, PplResult, PplStats};
pub use sampler::{Sampler, SamplerConfig};
pub use sparetire_models::Arithmetic;
pub use stop::{StopCheck, StopMatcher};
