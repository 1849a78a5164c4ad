//! `qwen3`: the llama block with per-head RMSNorm of q and k (no biases),
//! NeoX-style RoPE, and a head size that need not be `n_embd / n_head`.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, Decoder, DecoderCfg};
use crate::layers::rope::RopeStyle;
use crate::ModelError;

/// Loads a `qwen3` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    super::load_uniform(file, "qwen3", cfg, |bl, i, b| {
        b.qk_norm = Some(bl.qk_norm(i)?);
        Ok(())
    })
}
