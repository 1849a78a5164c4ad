//! `qwen2moe`: the `qwen2` attention block (q/k/v biases, NeoX RoPE) with a
//! mixture of SwiGLU experts in every layer (softmax router, top-k experts,
//! weights not renormalized) plus a shared expert whose output is scaled per
//! token by a sigmoid gate (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B).

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::{Activation, Decoder, DecoderCfg, Ffn};
use crate::layers::moe::{Gating, Routing, SharedExpert};
use crate::layers::rope::RopeStyle;
use crate::ModelError;

/// Loads a `qwen2moe` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Neox,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    super::load_moe_uniform(
        file,
        "qwen2moe",
        cfg,
        |m| Routing {
            n_expert: m.n_expert,
            n_expert_used: m.n_expert_used,
            gating: Gating::Softmax,
            norm: false,
            scale: 0.0,
            groups: None,
        },
        |bl, m, i, b| {
            b.bqkv = Some(bl.qkv_bias(i)?);
            let ff = match m.n_ff_shexp {
                0 => bl.hparams().n_ff,
                n => n,
            };
            let name = format!("blk.{i}.ffn_gate_inp_shexp.weight");
            let gate_inp = bl.weights().get(&name, &[bl.hparams().n_embd])?;
            let shared = SharedExpert {
                mlp: bl.mlp(i, "_shexp", ff)?,
                gate_inp: Some(gate_inp),
            };
            if let Ffn::Moe(moe) = &mut b.ffn {
                moe.shared = Some(shared);
            }
            Ok(())
        },
    )
}
