//! `deepseek2` (DeepSeek-V2, V2-Lite, V3, R1 as llama.cpp converts them):
//! multi-head latent attention ([`crate::layers::mla`]) with a low-rank or
//! direct query projection, decoupled RoPE on adjacent pairs with YaRN
//! scaling, a few leading dense SwiGLU layers, then mixtures of experts with
//! shared experts: softmax (V2) or sigmoid gating with a selection bias and
//! group-limited routing (V3), optional renormalization and a routed scaling
//! factor ([`crate::layers::moe`]).
//!
//! Supported is the layout llama.cpp's converter writes today, with the KV
//! up-projection split per head into `attn_k_b` / `attn_v_b`
//! (`attention.key_length_mla` present); files with the older fused
//! `attn_kv_b` are rejected with an error naming the tensor.

use std::sync::Arc;

use sparetire_formats::gguf::GgufFile;

use crate::decoder::LayerCfg;
use crate::decoder::{matrix, Activation, Attn, Block, BlockLoader, Decoder, DecoderCfg, Ffn};
use crate::hparams::{HParams, MoeHParams};
use crate::layers::mla::{Mla, MlaQuery, MlaShape};
use crate::layers::moe::{Gating, Moe, Routing, SharedExpert};
use crate::layers::rope::{RopeStyle, Yarn};
use crate::weights::WeightLoader;
use crate::ModelError;

const ARCH: &str = "deepseek2";

/// Loads a `deepseek2` model, shape-checking every tensor.
pub fn load(file: Arc<GgufFile>) -> Result<Decoder, ModelError> {
    let key = |k: &str| format!("{ARCH}.{k}");
    let mut hp = HParams::from_gguf_mla(&file, ARCH)?;
    let int = |k: &str| -> Result<Option<usize>, ModelError> {
        match file.get(&key(k)) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= 1 << 24)
                .map(|n| Some(n as usize))
                .ok_or_else(|| ModelError::BadHParam {
                    key: key(k),
                    problem: format!("must be a non-negative integer, found {v}"),
                }),
        }
    };
    let missing = |k: &str, why: &str| ModelError::BadHParam {
        key: key(k),
        problem: why.into(),
    };
    // Multi-token-prediction blocks (GLM-4.5-style files) follow the trunk's blocks; they
    // are not part of the forward pass.
    let nextn = int("nextn_predict_layers")?.unwrap_or(0);
    if nextn >= hp.n_layer {
        return Err(missing(
            "nextn_predict_layers",
            &format!("{nextn} prediction blocks of {} leave no trunk", hp.n_layer),
        ));
    }
    hp.n_layer -= nextn;
    if file
        .get_f32(&key("attention.temperature_scale"))
        .is_some_and(|t| t != 0.0)
    {
        return Err(missing(
            "attention.temperature_scale",
            "attention temperature tuning (Mistral Large 3) is not supported",
        ));
    }
    let q_lora = int("attention.q_lora_rank")?.unwrap_or(0);
    let kv_lora = int("attention.kv_lora_rank")?
        .filter(|&n| n > 0)
        .ok_or_else(|| missing("attention.kv_lora_rank", "missing or zero"))?;
    let Some(k_mla) = int("attention.key_length_mla")? else {
        return Err(missing(
            "attention.key_length_mla",
            "missing: a file with the fused attn_kv_b (older conversions) is not supported; \
             reconvert it with a current llama.cpp",
        ));
    };
    let v_head = int("attention.value_length_mla")?
        .filter(|&n| n > 0)
        .ok_or_else(|| missing("attention.value_length_mla", "missing or zero"))?;
    let rope = hp.n_rot;
    if k_mla <= rope {
        return Err(missing(
            "attention.key_length_mla",
            "must exceed rope.dimension_count (no non-rotated query features)",
        ));
    }
    if hp.n_head_kv != 1 || hp.head_dim != kv_lora + rope {
        return Err(missing(
            "attention.key_length",
            &format!(
                "latent attention caches one row of kv_lora_rank + rope = {} per token \
                 (head_count_kv 1); the file says {} heads of {}",
                kv_lora + rope,
                hp.n_head_kv,
                hp.head_dim
            ),
        ));
    }
    let shape = MlaShape {
        n_head: hp.n_head,
        nope: k_mla - rope,
        rope,
        kv_lora,
        v_head,
        scale: 0.0,
        rope_base: hp.rope_base,
        yarn: Yarn::new(
            rope,
            hp.n_ctx_train,
            hp.rope_base,
            1.0,
            0.0,
            1.0,
            [32.0, 1.0],
        ),
        eps: hp.rms_eps,
    };
    let shape = with_rope_scaling(&file, &hp, shape, k_mla)?;

    let moe = MoeHParams::from_gguf(&file, ARCH, &hp, None)?;
    let gating = match moe.gating_func {
        0 | 1 => Gating::Softmax,
        2 => Gating::Sigmoid,
        g => {
            return Err(missing(
                "expert_gating_func",
                &format!("{g} is not 1 (softmax) or 2 (sigmoid)"),
            ))
        }
    };
    let n_shared = int("expert_shared_count")?.unwrap_or(0);
    let routing = Routing {
        n_expert: moe.n_expert,
        n_expert_used: moe.n_expert_used,
        gating,
        norm: moe.weights_norm,
        scale: moe.weights_scale,
        groups: (moe.n_group > 1).then_some((moe.n_group, moe.n_group_used)),
    };

    let ld = WeightLoader::new(file);
    let bl = BlockLoader::new(&ld, &hp);
    let d = hp.n_embd;
    let blocks = (0..hp.n_layer)
        .map(|i| {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let q = if q_lora > 0 {
                MlaQuery::LowRank {
                    a: matrix(&ld, &n("attn_q_a"), d, q_lora)?,
                    norm: ld.vector(&n("attn_q_a_norm"), q_lora)?,
                    b: matrix(&ld, &n("attn_q_b"), q_lora, hp.n_head * k_mla)?,
                }
            } else {
                MlaQuery::Direct(matrix(&ld, &n("attn_q"), d, hp.n_head * k_mla)?)
            };
            if ld.file().tensor(&n("attn_kv_b")).is_some()
                && ld.file().tensor(&n("attn_k_b")).is_none()
            {
                return Err(ModelError::MissingTensor(n("attn_k_b")));
            }
            let mla = Mla {
                shape: shape.clone(),
                q,
                kv_a: matrix(&ld, &n("attn_kv_a_mqa"), d, kv_lora + rope)?,
                kv_a_norm: ld.vector(&n("attn_kv_a_norm"), kv_lora)?,
                k_b: ld.stacked(&n("attn_k_b"), k_mla - rope, kv_lora, hp.n_head)?,
                v_b: ld.stacked(&n("attn_v_b"), kv_lora, v_head, hp.n_head)?,
                wo: matrix(&ld, &n("attn_output"), hp.n_head * v_head, d)?,
            };
            mla.validate()?;
            let ffn = if i < moe.n_layer_dense_lead {
                Ffn::Dense(bl.mlp(i, "", hp.n_ff)?)
            } else {
                let shared = if n_shared > 0 {
                    Some(SharedExpert {
                        mlp: bl.mlp(i, "_shexp", moe.n_ff_exp * n_shared)?,
                        gate_inp: None,
                    })
                } else {
                    None
                };
                let m = Moe {
                    router: bl.router(i, moe.n_expert)?,
                    bias: ld.try_vector(&format!("blk.{i}.exp_probs_b.bias"), moe.n_expert)?,
                    routing: routing.clone(),
                    experts: bl.experts(i, moe.n_expert, moe.n_ff_exp)?,
                    shared,
                };
                m.validate()?;
                Ffn::Moe(Box::new(m))
            };
            Ok(Block {
                cfg: LayerCfg {
                    rope_base: hp.rope_base,
                    window: None,
                },
                attn_norm: ld.vector(&n("attn_norm"), d)?,
                attn: Attn::Mla(Box::new(mla)),
                bqkv: None,
                qk_norm: None,
                attn_post_norm: None,
                ffn_norm: ld.vector(&n("ffn_norm"), d)?,
                ffn,
                ffn_post_norm: None,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let cfg = DecoderCfg {
        rope_style: RopeStyle::Normal,
        embd_scale: None,
        q_scale: None,
        activation: Activation::SwiGlu,
    };
    Decoder::new(&ld, hp, cfg, blocks)
}

/// RoPE scaling (`rope.scaling.*`) and the attention scale it implies, as
/// llama.cpp derives them for `deepseek2` (YaRN with `yarn_log_multiplier`
/// stored as `0.1 * mscale_all_dim`; the magnitude factor folded into the
/// softmax scale).
fn with_rope_scaling(
    f: &GgufFile,
    hp: &HParams,
    mut s: MlaShape,
    k_mla: usize,
) -> Result<MlaShape, ModelError> {
    let key = |k: &str| format!("{ARCH}.rope.scaling.{k}");
    let float = |k: &str, default: f32| -> Result<f32, ModelError> {
        match f.get(&key(k)) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| x as f32)
                .ok_or_else(|| ModelError::BadHParam {
                    key: key(k),
                    problem: format!("must be a non-negative number, found {v}"),
                }),
        }
    };
    let kind = f.get_str(&key("type")).unwrap_or("linear");
    let factor = float("factor", 0.0)?;
    let freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
    let ext_factor = match kind {
        "yarn" => 1.0,
        "none" | "linear" => 0.0,
        other => {
            return Err(ModelError::BadHParam {
                key: key("type"),
                problem: format!("{other:?} is not supported (none, linear, yarn)"),
            })
        }
    };
    let freq_scale = if kind == "none" { 1.0 } else { freq_scale };
    let log_mul = float("yarn_log_multiplier", 0.0)? / 0.1;
    let n_ctx_orig = match f.get_u64(&key("original_context_length")) {
        Some(n) if n > 0 => n as usize,
        _ => hp.n_ctx_train,
    };
    // why: the float steps (and GCC's contractions into FMAs) of llama_context's
    // yarn_attn_factor and deepseek2's kq_scale, so the scale rounds alike.
    let get_mscale = |scale: f32, m: f32| {
        if scale <= 1.0 {
            1.0
        } else {
            (0.1 * m).mul_add(scale.ln(), 1.0)
        }
    };
    let mut attn_factor = 1.0f32;
    if ext_factor != 0.0 {
        let factor = 1.0 / freq_scale;
        attn_factor = if log_mul != 0.0 {
            let m = if log_mul != 1.0 { log_mul } else { 1.0 };
            get_mscale(factor, m) / get_mscale(factor, log_mul)
        } else {
            get_mscale(factor, 1.0)
        };
        attn_factor *= 1.0 / 0.1f32.mul_add(factor.ln(), 1.0);
    }
    attn_factor *= float("attn_factor", 1.0).map(|a| if a == 0.0 { 1.0 } else { a })?;
    let inv = (1.0 / freq_scale).ln();
    let attn_factor_org = attn_factor * 0.1f32.mul_add(inv, 1.0);
    let mscale = attn_factor_org * (0.1 * log_mul).mul_add(inv, 1.0);
    s.scale = 1.0 * mscale * mscale / (k_mla as f32).sqrt();
    s.yarn = Yarn::new(
        s.rope,
        n_ctx_orig,
        hp.rope_base,
        freq_scale,
        ext_factor,
        attn_factor,
        [32.0, 1.0],
    );
    Ok(s)
}
