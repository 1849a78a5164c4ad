//! One file per architecture; each builds a [`crate::decoder::Decoder`] from
//! its tensors and options, on top of the shared [`crate::layers`].

pub mod gemma3;
pub mod llama;
pub mod qwen2;
pub mod qwen3;

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Block, BlockLoader, Decoder, DecoderCfg, LayerCfg};
use crate::hparams::HParams;
use crate::weights::WeightLoader;
use crate::ModelError;

/// `general.architecture` values sparetire implements.
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

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
