//! `qwen2`: the llama block with biases on the q/k/v projections and
//! NeoX-style RoPE (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen).

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;
use crate::weights::WeightLoader;
use crate::ModelError;

/// Loads a `qwen2` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, "qwen2")?;
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let layer = LayerCfg {
        rope_base: hp.rope_base,
        window: None,
    };
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let mut b = bl.base(i, layer.clone())?;
            b.bqkv = Some(bl.qkv_bias(i)?);
            Ok(b)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    Decoder::new(&ld, hp, cfg, blocks)
}
