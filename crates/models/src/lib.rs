//! Model architectures and their forward passes.
//!
//! - [`load`] opens the right architecture for a GGUF file and returns a
//!   [`Model`]; unknown architectures get an error listing the supported ones.
//! - [`Model::forward`] runs a batch of tokens (a whole prompt, or one token
//!   while generating) through the network, appending to a [`State`]'s KV
//!   cache, and leaves the logits in the state.
//! - Shared building blocks live in [`layers`] (attention, MLP activations,
//!   norms, RoPE); each architecture in [`arch`] is a small file on top.
//! - Weights stay in the memory-mapped file ([`weights::Weight`]); matrix
//!   products go through `sparetire_quant::matmul`.
#![deny(missing_docs)]

pub mod arch;
pub mod block_alloc;
pub mod decoder;
mod error;
pub mod expert_parallel;
pub mod hparams;
pub mod kv_cache;
pub mod kv_type;
pub mod layers;
mod state;
pub mod tensor_parallel;
pub mod weights;

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;
use sparetire_quant::ThreadPool;

pub use sparetire_quant::Arithmetic;

pub use error::ModelError;
pub use hparams::HParams;
pub use kv_type::{KvType, KvTypes};
pub use state::{State, Tap};

/// Weight traffic of one decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightBytes {
    /// Bytes read per decoded token: every weight, except that a
    /// mixture-of-experts layer reads only its router, the `n_expert_used`
    /// chosen experts and its shared expert, and the embedding only its row.
    pub per_token: usize,
    /// Bytes a dense model of the same parameters reads per token (every expert).
    pub dense: usize,
}

/// Which positions of a batch get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token (generation).
    Last,
    /// Every token (perplexity, teacher forcing).
    All,
    /// None (a prompt chunk that is not the last).
    None,
}

/// One sequence's part of a batch.
pub struct Seq<'a> {
    /// Its state (KV cache, position, logits).
    pub state: &'a mut State,
    /// The tokens to append.
    pub tokens: &'a [u32],
    /// Which of them get logits.
    pub logits: Logits,
}

/// A loaded model.
pub trait Model: Send + Sync {
    /// Its hyperparameters.
    fn hparams(&self) -> &HParams;

    /// A fresh sequence state holding up to `n_ctx` positions, its KV cache
    /// storing rows as `kv` (f16 by default; see [`KvTypes`]). Fails with a
    /// clear error if the model's heads are not whole blocks of those types.
    fn new_state(&self, n_ctx: usize, kv: KvTypes) -> Result<State, ModelError>;

    /// A fresh sequence state of up to `n_ctx` positions whose KV blocks come
    /// from `pool` (shared with other sequences; see [`kv_cache::KvPool::for_model`]).
    fn new_state_in(&self, pool: Arc<kv_cache::KvPool>, n_ctx: usize) -> Result<State, ModelError>;

    /// Runs `tokens` at positions `state.n_past ..`, appends them to the KV
    /// cache and leaves logits in `state.logits()`: `n_vocab` floats for the
    /// last token, or for every token with [`Logits::All`].
    fn forward(
        &self,
        pool: &ThreadPool,
        state: &mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<(), ModelError>;

    /// Runs several sequences in one pass (continuous batching): each
    /// [`Seq`]'s tokens are appended to its own state, and its logits left
    /// there. Matrix products run once over all the rows.
    fn forward_batch(&self, pool: &ThreadPool, seqs: &mut [Seq<'_>]) -> Result<(), ModelError> {
        for s in seqs.iter_mut() {
            self.forward(pool, s.state, s.tokens, s.logits)?;
        }
        Ok(())
    }

    /// Bytes of weights one decoded token reads, and what a dense model
    /// with the same parameters would read ([`WeightBytes`]); `None` if the
    /// model cannot tell.
    fn weight_bytes(&self) -> Option<WeightBytes> {
        None
    }

    /// This model with the experts of its mixture-of-experts layers spread
    /// over `size` ranks ([`expert_parallel`]): this rank computes only its
    /// experts, the rest of the network whole. Every rank must make the same
    /// forward calls; the logits are every rank's, bit-identical to one
    /// process's.
    fn into_expert_parallel(
        self: Box<Self>,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn tensor_parallel::Gatherer>,
    ) -> Result<Box<dyn Model>, ModelError> {
        let _ = (rank, size, gatherer);
        Err(ModelError::Invalid(
            "this model has no experts to spread over ranks".into(),
        ))
    }

    /// This model cut down to rank `rank`'s share of every layer among `size`
    /// tensor-parallel ranks, whose parts `gatherer` joins
    /// ([`tensor_parallel`]). Every rank must make the same forward calls.
    fn into_tensor_parallel(
        self: Box<Self>,
        rank: usize,
        size: usize,
        gatherer: Arc<dyn tensor_parallel::Gatherer>,
    ) -> Result<Box<dyn Model>, ModelError> {
        let _ = (rank, size, gatherer);
        Err(ModelError::Invalid(
            "this model cannot be split for tensor parallelism".into(),
        ))
    }

    /// One pipeline stage of [`Self::forward_batch`]: runs only `layers`,
    /// starting from `hidden_in` (the previous stage's hidden states,
    /// `(tokens, n_embd)`) instead of the token embeddings when given, and
    /// leaving the hidden states in `hidden_out` instead of computing logits
    /// when given. Every stage appends the tokens to its states' caches (for
    /// its layers). Running all stages in order computes exactly what
    /// `forward_batch` computes.
    fn forward_stage(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        layers: std::ops::Range<usize>,
        hidden_in: Option<&[f32]>,
        hidden_out: Option<&mut Vec<f32>>,
    ) -> Result<(), ModelError> {
        let _ = (pool, seqs, layers, hidden_in, hidden_out);
        Err(ModelError::Invalid(
            "this model cannot be split into pipeline stages".into(),
        ))
    }

    /// The final norm and output projection over `hidden`, the hidden states
    /// a stage ending at the last layer left (`forward_stage`'s
    /// `hidden_out`), setting each sequence's logits as its [`Logits`] asks.
    /// The caches are not touched. Lets the first pipeline rank compute the
    /// logits when it holds the (tied) embeddings anyway.
    fn output_logits(
        &self,
        pool: &ThreadPool,
        seqs: &mut [Seq<'_>],
        hidden: &[f32],
    ) -> Result<(), ModelError> {
        let _ = (pool, seqs, hidden);
        Err(ModelError::Invalid(
            "this model cannot compute logits from hidden states".into(),
        ))
    }

    /// Whether the output projection is the token embedding matrix (tied).
    fn tied_output(&self) -> bool {
        false
    }
}

/// Opens the architecture `file` names.
pub fn load(file: Arc<GgufFile>) -> Result<Box<dyn Model>, ModelError> {
    let arch = file
        .get_str("general.architecture")
        .ok_or_else(|| ModelError::BadHParam {
            key: "general.architecture".into(),
            problem: "missing (not a model file?)".into(),
        })?
        .to_owned();
    match arch.as_str() {
        "llama" => Ok(Box::new(arch::llama::load(file)?)),
        "qwen2" => Ok(Box::new(arch::qwen2::load(file)?)),
        "qwen3" => Ok(Box::new(arch::qwen3::load(file)?)),
        "gemma3" => Ok(Box::new(arch::gemma3::load(file)?)),
        "qwen2moe" => Ok(Box::new(arch::qwen2moe::load(file)?)),
        "qwen3moe" => Ok(Box::new(arch::qwen3moe::load(file)?)),
        "deepseek2" => Ok(Box::new(arch::deepseek2::load(file)?)),
        _ => Err(ModelError::UnsupportedArch {
            arch,
            supported: arch::SUPPORTED.join(", "),
        }),
    }
}

/// Checks a batch before it runs: non-empty, ids in range, room in the context.
pub fn check_batch(hp: &HParams, st: &State, tokens: &[u32]) -> Result<(), ModelError> {
    if tokens.is_empty() {
        return Err(ModelError::Invalid(
            "empty batch: no tokens to evaluate".into(),
        ));
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
        return Err(ModelError::BadToken {
            id,
            n_vocab: hp.n_vocab,
        });
    }
    let needed = st.n_past + tokens.len();
    if needed > st.kv.n_ctx() {
        return Err(ModelError::ContextFull {
            needed,
            n_ctx: st.kv.n_ctx(),
        });
    }
    Ok(())
}

/// `y (n, rows) = x (n, cols) · Wᵀ`, with `w` read from `file`.
pub(crate) fn linear(
    pool: &ThreadPool,
    file: &GgufFile,
    arith: Arithmetic,
    w: &weights::Weight,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<(), ModelError> {
    sparetire_quant::matmul_with(
        pool,
        &w.view(file),
        &x[..n * w.cols],
        n,
        &mut y[..n * w.rows],
        arith,
    )?;
    Ok(())
}
