//! config.json of a llama, qwen2 or qwen3 checkpoint → GGUF hyperparameters under llama.cpp's
//! key names.

use serde_json::Value as Json;
use sparetire_formats::gguf::Value;

use crate::ConvertError;

/// The architectures `convert` handles, from config.json's `architectures`/`model_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` (Llama, SmolLM, Mistral without sliding windows): Q/K rows are
    /// permuted for llama.cpp's interleaved RoPE.
    Llama,
    /// `Qwen2ForCausalLM`: Q/K/V biases.
    Qwen2,
    /// `Qwen3ForCausalLM`: Q/K RMSNorms, explicit head size.
    Qwen3,
}

impl Arch {
    /// The GGUF `general.architecture` name.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// The hyperparameters a conversion needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    /// The architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Model width.
    pub n_embd: u32,
    /// Feed-forward width.
    pub n_ff: u32,
    /// Query heads.
    pub n_head: u32,
    /// Key/value heads.
    pub n_head_kv: u32,
    /// Size of one head.
    pub head_dim: u32,
    /// Whether config.json gave `head_dim` explicitly.
    pub explicit_head_dim: bool,
    /// Vocabulary size (embedding rows).
    pub n_vocab: u32,
    /// Training context.
    pub n_ctx: u32,
    /// RoPE base.
    pub rope_theta: Option<f64>,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Whether the output projection is the token embedding.
    pub tied: bool,
    /// The whole config, for special token ids.
    pub raw: Json,
}

fn field_err(key: &str, problem: impl Into<String>) -> ConvertError {
    ConvertError::Metadata {
        key: format!("config.json: {key}"),
        problem: problem.into(),
    }
}

fn get_u32(c: &Json, key: &str) -> Result<Option<u32>, ConvertError> {
    match c.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| field_err(key, format!("{v} is not a small non-negative integer"))),
    }
}

fn need_u32(c: &Json, key: &str) -> Result<u32, ConvertError> {
    get_u32(c, key)?.ok_or_else(|| field_err(key, "missing"))
}

impl HfConfig {
    /// Parses config.json's text.
    pub fn parse(text: &str) -> Result<HfConfig, ConvertError> {
        let c: Json = serde_json::from_str(text)
            .map_err(|e| field_err("(file)", format!("not valid JSON: {e}")))?;
        let archs: Vec<&str> = c
            .get("architectures")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let model_type = c.get("model_type").and_then(Json::as_str).unwrap_or("");
        let arch = if archs.contains(&"LlamaForCausalLM") || model_type == "llama" {
            Arch::Llama
        } else if archs.contains(&"Qwen2ForCausalLM") || model_type == "qwen2" {
            Arch::Qwen2
        } else if archs.contains(&"Qwen3ForCausalLM") || model_type == "qwen3" {
            Arch::Qwen3
        } else {
            return Err(field_err(
                "architectures",
                format!(
                    "{archs:?} (model_type {model_type:?}) is not supported; \
                     convert handles LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM"
                ),
            ));
        };
        if let Some(rs) = c.get("rope_scaling").filter(|v| !v.is_null()) {
            return Err(field_err(
                "rope_scaling",
                format!("{rs} is not supported yet (only models without RoPE scaling)"),
            ));
        }
        let n_embd = need_u32(&c, "hidden_size")?;
        let n_head = need_u32(&c, "num_attention_heads")?;
        if n_head == 0 || n_embd == 0 {
            return Err(field_err("num_attention_heads", "must be positive"));
        }
        let n_head_kv = get_u32(&c, "num_key_value_heads")?.unwrap_or(n_head);
        if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(field_err(
                "num_key_value_heads",
                format!("{n_head_kv} does not divide num_attention_heads {n_head}"),
            ));
        }
        let explicit = get_u32(&c, "head_dim")?;
        let head_dim = explicit.unwrap_or(n_embd / n_head);
        let rms_eps = c
            .get("rms_norm_eps")
            .and_then(Json::as_f64)
            .ok_or_else(|| field_err("rms_norm_eps", "missing"))?;
        Ok(HfConfig {
            arch,
            n_layer: need_u32(&c, "num_hidden_layers")?,
            n_embd,
            n_ff: need_u32(&c, "intermediate_size")?,
            n_head,
            n_head_kv,
            head_dim,
            explicit_head_dim: explicit.is_some(),
            n_vocab: need_u32(&c, "vocab_size")?,
            n_ctx: get_u32(&c, "max_position_embeddings")?.unwrap_or(4096),
            rope_theta: c.get("rope_theta").and_then(Json::as_f64),
            rms_eps,
            tied: c
                .get("tie_word_embeddings")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            raw: c,
        })
    }

    /// The `{arch}.*` hyperparameter keys, as llama.cpp's converter writes them.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let a = self.arch.gguf_name();
        let mut m = vec![
            (format!("{a}.block_count"), Value::U32(self.n_layer)),
            (format!("{a}.context_length"), Value::U32(self.n_ctx)),
            (format!("{a}.embedding_length"), Value::U32(self.n_embd)),
            (format!("{a}.feed_forward_length"), Value::U32(self.n_ff)),
            (format!("{a}.attention.head_count"), Value::U32(self.n_head)),
            (
                format!("{a}.attention.head_count_kv"),
                Value::U32(self.n_head_kv),
            ),
        ];
        if let Some(theta) = self.rope_theta {
            m.push((format!("{a}.rope.freq_base"), Value::F32(theta as f32)));
        }
        m.push((
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(self.rms_eps as f32),
        ));
        if self.explicit_head_dim {
            m.push((
                format!("{a}.attention.key_length"),
                Value::U32(self.head_dim),
            ));
            m.push((
                format!("{a}.attention.value_length"),
                Value::U32(self.head_dim),
            ));
        }
        if self.arch == Arch::Llama {
            m.push((format!("{a}.vocab_size"), Value::U32(self.n_vocab)));
            m.push((
                format!("{a}.rope.dimension_count"),
                Value::U32(self.head_dim),
            ));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_config_gives_head_size_keys_and_unknown_archs_are_named() {
        let c = HfConfig::parse(
            r#"{"architectures":["Qwen3ForCausalLM"],"hidden_size":64,"num_attention_heads":4,
               "num_key_value_heads":2,"head_dim":32,"num_hidden_layers":2,"intermediate_size":128,
               "vocab_size":1000,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true}"#,
        )
        .unwrap();
        assert_eq!((c.arch, c.head_dim, c.tied), (Arch::Qwen3, 32, true));
        let m = c.metadata();
        assert!(m.contains(&("qwen3.attention.key_length".into(), Value::U32(32))));
        let e = HfConfig::parse(r#"{"architectures":["GPT2LMHeadModel"]}"#).unwrap_err();
        assert!(e.to_string().contains("GPT2LMHeadModel"), "{e}");
        let e = HfConfig::parse(r#"{"model_type":"llama","hidden_size":64}"#).unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
    }
}
