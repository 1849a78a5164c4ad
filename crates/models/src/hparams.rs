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
    /// Per-head value width (`{arch}.attention.value_length`, default `head_dim`); with
    /// latent attention, the part of each cached latent row that serves as values.
    pub head_dim_v: usize,
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
    /// Whether the KV cache keeps value rows apart from the key rows. False
    /// for multi-head latent attention, whose values are the first
    /// `value_length` features of each cached (latent) key row.
    pub kv_values: bool,
}

impl HParams {
    /// Reads the hyperparameters of architecture `arch` from `f`.
    /// `n_vocab` is taken from the embedding tensor's shape.
    pub fn from_gguf(f: &GgufFile, arch: &str) -> Result<HParams, ModelError> {
        Self::read(f, arch, false)
    }

    /// Like [`Self::from_gguf`] for multi-head latent attention (DeepSeek-V2/V3
    /// as llama.cpp converts them): `attention.key_length` is the width of
    /// the cached latent row (compressed KV plus the RoPE dimensions),
    /// `attention.value_length` the part of it that serves as values, and
    /// the cache holds no separate values.
    pub fn from_gguf_mla(f: &GgufFile, arch: &str) -> Result<HParams, ModelError> {
        Self::read(f, arch, true)
    }

    fn read(f: &GgufFile, arch: &str, mla: bool) -> Result<HParams, ModelError> {
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
        if mla && v_dim > head_dim {
            return Err(ModelError::BadHParam {
                key: key("attention.value_length"),
                problem: format!("{v_dim} exceeds key_length {head_dim}"),
            });
        }
        if !mla && v_dim != head_dim {
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
            head_dim_v: v_dim,
            n_rot,
            rope_base,
            rms_eps,
            n_ctx_train,
            n_vocab,
            kv_values: !mla,
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

/// Mixture-of-experts hyperparameters (`{arch}.expert_*`, llama.cpp's key names).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeHParams {
    /// Experts per MoE layer (`expert_count`).
    pub n_expert: usize,
    /// Experts each token uses (`expert_used_count`).
    pub n_expert_used: usize,
    /// Hidden width of one expert (`expert_feed_forward_length`).
    pub n_ff_exp: usize,
    /// Hidden width of the shared expert (`expert_shared_feed_forward_length`; 0 if absent).
    pub n_ff_shexp: usize,
    /// Shared experts fused into the shared FFN (`expert_shared_count`; 0 if absent).
    pub n_expert_shared: usize,
    /// Leading layers with a dense FFN instead of experts (`leading_dense_block_count`).
    pub n_layer_dense_lead: usize,
    /// Expert groups for group-limited routing (`expert_group_count`; 0 or 1: none).
    pub n_group: usize,
    /// Groups a token may choose from (`expert_group_used_count`).
    pub n_group_used: usize,
    /// Factor on the chosen experts' weights (`expert_weights_scale`; 0: none).
    pub weights_scale: f32,
    /// Whether the chosen weights are normalized to sum to one (`expert_weights_norm`).
    pub weights_norm: bool,
    /// `expert_gating_func`: 0 absent, 1 softmax, 2 sigmoid.
    pub gating_func: u64,
}

impl MoeHParams {
    /// Reads the expert keys of `arch` from `f`; `expert_count` and
    /// `expert_used_count` are required, `n_ff_exp` defaults to
    /// `default_ff_exp` when absent.
    pub fn from_gguf(
        f: &GgufFile,
        arch: &str,
        hp: &HParams,
        default_ff_exp: Option<usize>,
    ) -> Result<MoeHParams, ModelError> {
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str, default: Option<u64>| -> Result<u64, ModelError> {
            match (f.get(&key(k)), default) {
                (None, Some(d)) => Ok(d),
                (None, None) => Err(ModelError::BadHParam {
                    key: key(k),
                    problem: "missing".into(),
                }),
                (Some(v), _) => {
                    v.as_u64()
                        .filter(|&n| n <= MAX_DIM)
                        .ok_or_else(|| ModelError::BadHParam {
                            key: key(k),
                            problem: format!("must be an integer in 0..={MAX_DIM}, found {v}"),
                        })
                }
            }
        };
        let n_expert = int("expert_count", None)? as usize;
        let n_expert_used = int("expert_used_count", None)? as usize;
        if n_expert == 0 || n_expert_used == 0 || n_expert_used > n_expert {
            return Err(ModelError::BadHParam {
                key: key("expert_used_count"),
                problem: format!(
                    "{n_expert_used} experts used of {n_expert}: need 1 ≤ used ≤ expert_count"
                ),
            });
        }
        let n_ff_exp = match default_ff_exp {
            Some(d) => int("expert_feed_forward_length", Some(d as u64))?,
            None => int("expert_feed_forward_length", None)?,
        } as usize;
        if n_ff_exp == 0 {
            return Err(ModelError::BadHParam {
                key: key("expert_feed_forward_length"),
                problem: "must be positive".into(),
            });
        }
        let n_layer_dense_lead = int("leading_dense_block_count", Some(0))? as usize;
        if n_layer_dense_lead > hp.n_layer {
            return Err(ModelError::BadHParam {
                key: key("leading_dense_block_count"),
                problem: format!("{n_layer_dense_lead} exceeds the {} blocks", hp.n_layer),
            });
        }
        let n_group = int("expert_group_count", Some(0))? as usize;
        let n_group_used = int("expert_group_used_count", Some(0))? as usize;
        if n_group > 1
            && (!n_expert.is_multiple_of(n_group) || n_group_used == 0 || n_group_used > n_group)
        {
            return Err(ModelError::BadHParam {
                key: key("expert_group_count"),
                problem: format!(
                    "{n_group} groups ({n_group_used} used) do not split {n_expert} experts"
                ),
            });
        }
        let weights_scale = match f.get(&key("expert_weights_scale")) {
            None => 0.0,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => x as f32,
                _ => {
                    return Err(ModelError::BadHParam {
                        key: key("expert_weights_scale"),
                        problem: format!("must be a non-negative number, found {v}"),
                    })
                }
            },
        };
        let weights_norm = match f.get(&key("expert_weights_norm")) {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| ModelError::BadHParam {
                key: key("expert_weights_norm"),
                problem: format!("must be a boolean, found {v}"),
            })?,
        };
        Ok(MoeHParams {
            n_expert,
            n_expert_used,
            n_ff_exp,
            n_ff_shexp: int("expert_shared_feed_forward_length", Some(0))? as usize,
            n_expert_shared: int("expert_shared_count", Some(0))? as usize,
            n_layer_dense_lead,
            n_group,
            n_group_used,
            weights_scale,
            weights_norm,
            gating_func: int("expert_gating_func", Some(0))?,
        })
    }
}
