//! `qwen3moe`: the `qwen3` attention block (per-head q/k RMSNorm, NeoX RoPE)
//! with a mixture of SwiGLU experts in every layer: softmax router, top-k
//! experts, their weights renormalized to sum to one (Qwen3-30B-A3B,
//! Qwen3-235B-A22B).

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, Decoder, DecoderCfg};
use crate::layers::moe::{Gating, Routing};
use crate::layers::rope::RopeStyle;
use crate::ModelError;

/// Loads a `qwen3moe` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    super::load_moe_uniform(
        file,
        "qwen3moe",
        cfg,
        // why: llama.cpp always normalizes Qwen3-MoE's chosen weights (HF `norm_topk_prob`
        // is true for every released model and the GGUF carries no key for it).
        |m| Routing {
            n_expert: m.n_expert,
            n_expert_used: m.n_expert_used,
            gating: Gating::Softmax,
            norm: true,
            scale: 0.0,
            groups: None,
        },
        |bl, _, i, b| {
            b.qk_norm = Some(bl.qk_norm(i)?);
            Ok(())
        },
    )
}
