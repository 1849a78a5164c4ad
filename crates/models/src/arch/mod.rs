//! One file per architecture; each builds a [`crate::decoder::Decoder`] from
//! its tensors and options, on top of the shared [`crate::layers`].

pub mod deepseek2;
pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen2moe;
pub mod qwen3;
pub mod qwen3moe;

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Block, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::{HParams, MoeHParams};
use crate::layers::moe::{Moe, Routing};
use crate::weights::WeightLoader;
use crate::ModelError;

/// `general.architecture` values sparetire implements.
pub const SUPPORTED: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "gemma3",
    "qwen2moe",
    "qwen3moe",
    "deepseek2",
];

/// Loads an architecture whose layers are all alike (full attention, one
/// RoPE base): the common block tensors, plus what `extra` adds to each block.
fn load_uniform(
    file: Arc<GgufFile>,
    arch: &str,
    cfg: DecoderCfg,
    extra: impl Fn(&BlockLoader, usize, &mut Block) -> Result<(), ModelError>,
) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, arch)?;
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let layer = LayerCfg {
        rope_base: hp.rope_base,
        window: None,
    };
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let mut b = bl.base(i, layer.clone())?;
            extra(&bl, i, &mut b)?;
            Ok(b)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    Decoder::new(&ld, hp, cfg, blocks)
}

/// Loads an architecture whose blocks are all alike with a mixture of
/// experts in every one: `routing` from the expert hyperparameters, the
/// experts of each block, and what `extra` adds to it (q/k norms, biases, a
/// shared expert).
fn load_moe_uniform(
    file: Arc<GgufFile>,
    arch: &str,
    cfg: DecoderCfg,
    routing: impl Fn(&MoeHParams) -> Routing,
    extra: impl Fn(&BlockLoader, &MoeHParams, usize, &mut Block) -> Result<(), ModelError>,
) -> Result<Decoder, ModelError> {
    let hp = HParams::from_gguf(&file, arch)?;
    // llama.cpp's default when expert_feed_forward_length is absent
    let mhp = MoeHParams::from_gguf(&file, arch, &hp, Some(0))?;
    let n_ff_exp = match mhp.n_ff_exp {
        0 => hp.n_ff / mhp.n_expert_used,
        n => n,
    };
    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let layer = LayerCfg {
        rope_base: hp.rope_base,
        window: None,
    };
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let moe = Moe {
                router: bl.router(i, mhp.n_expert)?,
                bias: None,
                routing: routing(&mhp),
                experts: bl.experts(i, mhp.n_expert, n_ff_exp)?,
                shared: None,
            };
            let mut b = bl.base_moe(i, layer.clone(), moe)?;
            extra(&bl, &mhp, i, &mut b)?;
            Ok(b)
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    Decoder::new(&ld, hp, cfg, blocks)
}
