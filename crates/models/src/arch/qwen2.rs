//! `qwen2`: the llama block with biases on the q/k/v projections and
//! NeoX-style RoPE (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen).

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, Decoder, DecoderCfg};
use crate::layers::rope::RopeStyle;
use crate::ModelError;

/// Loads a `qwen2` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    super::load_uniform(file, "qwen2", cfg, |bl, i, b| {
        b.bqkv = Some(bl.qkv_bias(i)?);
        Ok(())
    })
}
