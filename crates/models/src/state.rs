//! Per-sequence state: the KV cache, how many positions it holds, and the
//! activation buffers reused from call to call.

use crate::kv_cache::KvCache;
use crate::Arithmetic;

/// Receives named intermediate activations during a forward call:
/// `(name, layer, values)`, row-major `(n_tokens, width)`.
///
/// A debugging aid for comparing with llama.cpp layer by layer: the names are
/// those its graph gives the same tensors (`attn_norm`, `Qcur`, `kqv_out`,
/// `l_out`, ... as seen by its `cb_eval`), `Qcur`/`Kcur` after RoPE, and the
/// layer is `None` for tensors outside the blocks (`result_norm`).
pub type Tap = Box<dyn FnMut(&str, Option<usize>, &[f32]) + Send>;

/// Everything a model needs to continue one sequence.
pub struct State {
    /// Unique within the process (names the sequence to other ranks of a cluster).
    pub id: u64,
    /// Keys and values of the positions seen so far.
    pub kv: KvCache,
    /// Number of positions already in `kv`.
    pub n_past: usize,
    /// How batched products compute this sequence's tokens (every sequence
    /// of one batch must agree).
    pub arithmetic: Arithmetic,
    /// Activation buffers, grown on demand and then reused.
    pub(crate) buf: Buffers,
    /// Logits of the last forward call: `(n_out, n_vocab)`.
    pub(crate) logits: Vec<f32>,
    /// If set, sees the intermediate activations of every forward call.
    pub(crate) tap: Option<Tap>,
    /// What a backend other than the CPU keeps for this sequence (a GPU's
    /// view of the KV cache); the model that made the state sets it.
    pub backend: Option<Box<dyn std::any::Any + Send>>,
}

impl State {
    /// A fresh state over `kv`.
    pub fn new(kv: KvCache) -> State {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        State {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            kv,
            n_past: 0,
            arithmetic: Arithmetic::Reference,
            buf: Buffers::default(),
            logits: Vec::new(),
            tap: None,
            backend: None,
        }
    }

    /// Installs (or with `None` removes) a [`Tap`] on the intermediate activations.
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }

    /// Forgets every position after the first `n` (to reuse a common prefix, or restart at 0).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
        self.kv.truncate(n);
    }

    /// Keeps the stored positions that start `tokens` and takes published
    /// blocks of the KV pool for more of them, up to `max` positions in all;
    /// returns the positions now held (see [`KvCache::reuse_prefix`]).
    pub fn reuse_prefix(&mut self, tokens: &[u32], max: usize) -> usize {
        self.n_past = self.kv.reuse_prefix(tokens, max);
        self.n_past
    }

    /// Replaces the logits (a pipeline's last stage computed them elsewhere).
    pub fn set_logits(&mut self, logits: &[f32]) {
        self.logits.clear();
        self.logits.extend_from_slice(logits);
    }

    /// Logits of the last forward call, `n_vocab` per output row.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

/// Named activation buffers of one forward call (shapes in the comments;
/// `n` is the number of tokens in the batch).
#[derive(Default)]
pub(crate) struct Buffers {
    /// (n, n_embd) residual stream
    pub x: Vec<f32>,
    /// (n, n_embd) normalized input of a sub-layer
    pub xn: Vec<f32>,
    /// (n, n_head * head_dim)
    pub q: Vec<f32>,
    /// (n, n_head_kv * head_dim)
    pub k: Vec<f32>,
    /// (n, n_head_kv * head_dim)
    pub v: Vec<f32>,
    /// (n, n_head * head_dim) attention output before the output projection
    pub attn: Vec<f32>,
    /// (n, n_ff)
    pub gate: Vec<f32>,
    /// (n, n_ff)
    pub up: Vec<f32>,
    /// (n, n_embd) a sub-layer's output before it joins the residual
    pub out: Vec<f32>,
    /// Tensor parallelism: an activation gathered whole from every rank's part
    pub gathered: Vec<f32>,
    /// Tensor parallelism: this rank's rows of a product, before gathering
    pub part: Vec<f32>,
    /// Scratch of the mixture-of-experts layers
    pub moe: crate::layers::moe::MoeBuffers,
    /// Scratch of the latent attention layers
    pub mla: crate::layers::mla::MlaBuffers,
}

/// Shows `x` to the tap, if any (cheap when there is none).
pub(crate) fn tap(t: &mut Option<Tap>, name: &str, layer: Option<usize>, x: &[f32]) {
    if let Some(f) = t {
        f(name, layer, x);
    }
}

/// Resizes `v` to `n` (reallocating only when it grows).
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}
