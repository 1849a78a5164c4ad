//! `llama`: RMSNorm, RoPE on adjacent pairs, grouped-query attention, SwiGLU.
//! SmolLM2, Llama 2/3, Mistral and many fine-tunes use it.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;
use crate::weights::WeightLoader;
use crate::ModelError;

/// Loads a `llama` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, "llama")?;
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let layer = LayerCfg {
        rope_base: hp.rope_base,
        window: None,
    };
    let blocks = (0..hp.n_layer)
        .map(|i| bl.base(i, layer.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Normal,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    Decoder::new(&ld, hp, cfg, blocks)
}
