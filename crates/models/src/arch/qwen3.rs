//! `qwen3`: the llama block with per-head RMSNorm of q and k (no biases),
//! NeoX-style RoPE, and a head size that need not be `n_embd / n_head`.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;
use crate::weights::WeightLoader;
use crate::ModelError;

/// Loads a `qwen3` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, "qwen3")?;
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let layer = LayerCfg {
        rope_base: hp.rope_base,
        window: None,
    };
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let mut b = bl.base(i, layer.clone())?;
            b.qk_norm = Some(bl.qk_norm(i)?);
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
