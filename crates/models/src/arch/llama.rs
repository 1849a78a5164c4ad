//! `llama`: RMSNorm, RoPE on adjacent pairs, grouped-query attention, SwiGLU.
//! SmolLM2, Llama 2/3, Mistral and many fine-tunes use it.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, Decoder, DecoderCfg};
use crate::layers::rope::RopeStyle;
use crate::ModelError;

/// Loads a `llama` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Normal,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    super::load_uniform(file, "llama", cfg, |_, _, _| Ok(()))
}
