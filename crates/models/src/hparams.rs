//! Hyperparameters read from GGUF metadata (`{arch}.block_count` and friends).

use sparetire_formats::gguf::GgufFile;

use crate::ModelError;

/// Largest value any size hyperparameter may take; real models are far below.
/// It keeps arithmetic on them from overflowing before tensor shapes are checked.
const MAX_DIM: u64 = 1 << 24;

/// The hyperparameters of a decoder-only transformer, as llama.cpp names them.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// `general.architecture`, e.g. `llama`.
    pub arch: String,
    /// Number of transformer blocks (`{arch}.block_count`).
    pub n_layer: usize,
    /// Model width (`{arch}.embedding_length`).
    pub n_embd: usize,
    /// Feed-forward width (`{arch}.feed_forward_length`).
    pub n_ff: usize,
    /// Query heads (`{arch}.attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`{arch}.attention.head_count_kv`, default `n_head`).
    pub n_head_kv: usize,
    /// Per-head key width (`{arch}.attention.key_length`, default `n_embd / n_head`).
    pub head_dim: usize,
    /// Dimensions rotated by RoPE (`{arch}.rope.dimension_count`, default `head_dim`).
    pub n_rot: usize,
    /// RoPE base frequency (`{arch}.rope.freq_base`, default 10000).
    pub rope_base: f32,
    /// RMSNorm epsilon (`{arch}.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f32,
    /// Training context length (`{arch}.context_length`).
    pub n_ctx_train: usize,
    /// Vocabulary size (rows of `token_embd.weight`).
    pub n_vocab: usize,
}

impl HParams {
    /// Reads the hyperparameters of architecture `arch` from `f`.
    /// `n_vocab` is taken from the embedding tensor's shape.
    pub fn from_gguf(f: &GgufFile, arch: &str) -> Result<HParams, ModelError> {
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<usize, ModelError> {
            let full = key(k);
            match f.get(&full) {
                None => Err(ModelError::BadHParam {
                    key: full,
                    problem: "missing".into(),
                }),
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 && n <= MAX_DIM => Ok(n as usize),
                    _ => Err(ModelError::BadHParam {
                        key: full,
                        problem: format!("must be an integer in 1..={MAX_DIM}, found {v}"),
                    }),
                },
            }
        };
        let opt = |k: &str, default: usize| -> Result<usize, ModelError> {
            if f.get(&key(k)).is_some() {
                req(k)
            } else {
                Ok(default)
            }
        };
        let float = |k: &str, default: Option<f32>| -> Result<f32, ModelError> {
            let full = key(k);
            match (f.get(&full), default) {
                (None, Some(d)) => Ok(d),
                (None, None) => Err(ModelError::BadHParam {
                    key: full,
                    problem: "missing".into(),
                }),
                (Some(v), _) => match v.as_f64() {
                    Some(x) if x.is_finite() && x > 0.0 => Ok(x as f32),
                    _ => Err(ModelError::BadHParam {
                        key: full,
                        problem: format!("must be a positive number, found {v}"),
                    }),
                },
            }
        };

        let n_layer = req("block_count")?;
        // Every block has tensors of its own. A larger count is corrupt, and per-layer
        // allocations (the block list, the KV cache) must not be sized by it.
        if n_layer > f.tensors().len() {
            return Err(ModelError::BadHParam {
                key: key("block_count"),
                problem: format!(
                    "{n_layer} blocks, but the file has only {} tensors",
                    f.tensors().len()
                ),
            });
        }
        let n_embd = req("embedding_length")?;
        let n_ff = req("feed_forward_length")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv", n_head)?;
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadHParam {
                key: key("attention.head_count_kv"),
                problem: format!("{n_head_kv} does not divide the {n_head} query heads"),
            });
        }
        let head_dim = opt("attention.key_length", n_embd / n_head)?;
        let v_dim = opt("attention.value_length", head_dim)?;
        if v_dim != head_dim {
            return Err(ModelError::BadHParam {
                key: key("attention.value_length"),
                problem: format!("{v_dim} differs from key_length {head_dim}; not supported"),
            });
        }
        let n_rot = opt("rope.dimension_count", head_dim)?;
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadHParam {
                key: key("rope.dimension_count"),
                problem: format!("{n_rot} must be even and at most the head size {head_dim}"),
            });
        }
        let rope_base = float("rope.freq_base", Some(10000.0))?;
        let rms_eps = float("attention.layer_norm_rms_epsilon", Some(1e-5))?;
        let n_ctx_train = opt("context_length", 2048)?;
        let emb = f
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        if emb.dims.len() != 2 || emb.dims[0] != n_embd as u64 || emb.dims[1] > MAX_DIM {
            return Err(ModelError::ShapeMismatch {
                tensor: "token_embd.weight".into(),
                found: emb.dims.clone(),
                expected: vec![n_embd as u64, emb.dims.get(1).copied().unwrap_or(0)],
            });
        }
        let n_vocab = emb.dims[1] as usize;
        Ok(HParams {
            arch: arch.to_owned(),
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_base,
            rms_eps,
            n_ctx_train,
            n_vocab,
        })
    }

    /// Width of the key (and value) rows cached per token and layer.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}
