//! `gemma3`: interleaved sliding-window and global attention layers (five
//! local layers per global one), each kind with its own RoPE base; per-head
//! q/k RMSNorm; extra RMSNorms after attention and after the FFN; GeGLU;
//! embeddings scaled by `sqrt(n_embd)`; queries pre-scaled by
//! `1/sqrt(head_dim)`.
//!
//! Settings llama.cpp uses that the GGUF may not carry: the layer pattern
//! (`{arch}.attention.sliding_window_pattern`, default 6: layer `i` is local
//! unless `i % 6 == 5`) and the local layers' RoPE base
//! (`{arch}.rope.freq_base_swa`, default 10000).

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;
use crate::weights::WeightLoader;
use crate::ModelError;

/// Loads a `gemma3` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, "gemma3")?;
    let window = match file.get_u64("gemma3.attention.sliding_window") {
        Some(0) | None => None,
        Some(w) => Some(usize::try_from(w).unwrap_or(usize::MAX)),
    };
    let pattern = match file.get("gemma3.attention.sliding_window_pattern") {
        None => 6,
        Some(v) => match v.as_u64() {
            Some(p) => p,
            None => {
                return Err(ModelError::BadHParam {
                    key: "gemma3.attention.sliding_window_pattern".into(),
                    problem: format!(
                        "expected an integer (per-layer arrays are not supported), found {v}"
                    ),
                })
            }
        },
    };
    let base_swa = file.get_f32("gemma3.rope.freq_base_swa").unwrap_or(10000.0);
    if !(base_swa.is_finite() && base_swa > 0.0) {
        return Err(ModelError::BadHParam {
            key: "gemma3.rope.freq_base_swa".into(),
            problem: format!("must be a positive number, found {base_swa}"),
        });
    }
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let local = window.is_some() && (pattern == 0 || (i as u64) % pattern < pattern - 1);
            let cfg = LayerCfg {
                rope_base: if local { base_swa } else { hp.rope_base },
                window: if local { window } else { None },
            };
            let mut b = bl.base(i, cfg)?;
            b.qk_norm = Some(bl.qk_norm(i)?);
            b.attn_post_norm = Some(bl.norm(i, "post_attention_norm")?);
            b.ffn_post_norm = Some(bl.norm(i, "post_ffw_norm")?);
            Ok(b)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: Some((hp.n_embd as f32).sqrt()),
        q_scale: Some(1.0 / (hp.head_dim as f32).sqrt()),
        activation: Activation::GeGlu,
    };
    Decoder::new(&ld, hp, cfg, blocks)
}
