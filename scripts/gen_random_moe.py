#!/usr/bin/env python3
"""Write tiny, deterministic, random-weight mixture-of-experts GGUFs: tests/data/tiny-ARCH.gguf.

    python3 scripts/gen_random_moe.py --arch qwen3moe|qwen2moe|deepseek2|deepseek3
        [--tokenizer-from SMOLLM2.gguf] [--ggml-lib DIR] [--out PATH]

("deepseek3" writes a file of architecture `deepseek2` in DeepSeek-V3's configuration.)

Metadata keys and tensor names are the ones llama.cpp's converter (convert_hf_to_gguf.py,
`Qwen2MoeModel` / `Qwen3MoeModel`) writes:

  everything gen_random_qwen.py writes for qwen2 / qwen3 (block_count, context_length,
  embedding_length, feed_forward_length, attention.head_count[_kv], rope.freq_base,
  attention.layer_norm_rms_epsilon, [qwen3moe: attention.key_length/value_length], the gpt2
  tokenizer, ChatML template), plus
  ARCH.expert_count, ARCH.expert_used_count, ARCH.expert_feed_forward_length
  [qwen2moe: ARCH.expert_shared_feed_forward_length].

Tensors per layer, besides the attention ones of qwen2 (with q/k/v biases) / qwen3 (q/k norms):
  blk.N.ffn_norm.weight, blk.N.ffn_gate_inp.weight (router, F32 as the converter keeps it,
  shape [n_embd, n_expert]), blk.N.ffn_gate_exps / ffn_up_exps .weight ([n_embd, n_ff_exp,
  n_expert]: n_expert matrices back to back), blk.N.ffn_down_exps.weight ([n_ff_exp, n_embd,
  n_expert]); qwen2moe also blk.N.ffn_gate_inp_shexp.weight ([n_embd], F32) and
  blk.N.ffn_{gate,up,down}_shexp.weight.

What llama.cpp does with them (llama-graph.cpp build_moe_ffn, models/qwen{2,3}moe.cpp): softmax
over the router logits, the top-k experts (k = expert_used_count) in descending order, their
probabilities as weights — qwen3moe divides them by their sum, qwen2moe does not — each expert a
SwiGLU MLP, the weighted outputs summed; qwen2moe adds the shared expert's output times
sigmoid(h · ffn_gate_inp_shexp).

deepseek2 / deepseek3 (`DeepseekV2Model` / `DeepseekV3Model` in the converter; both are
architecture `deepseek2`), the layout llama.cpp's converter writes today:
  keys: block_count, context_length, embedding_length, feed_forward_length (dense layers),
  attention.head_count, attention.head_count_kv = 1, rope.freq_base, layer_norm_rms_epsilon,
  expert_count, expert_used_count, leading_dense_block_count, vocab_size,
  attention.q_lora_rank (0 for the V2-Lite-style file: llama.cpp then loads attn_q; it requires
  the key unless the model has 26/27 layers), attention.kv_lora_rank,
  attention.key_length = kv_lora_rank + rope dims, attention.value_length = kv_lora_rank,
  attention.key_length_mla = qk_nope + qk_rope, attention.value_length_mla = v_head_dim,
  expert_feed_forward_length, expert_shared_count, expert_weights_scale (routed_scaling_factor),
  expert_weights_norm (norm_topk_prob), expert_gating_func (1 softmax, 2 sigmoid),
  [V3: expert_group_count, expert_group_used_count], rope.dimension_count = qk_rope,
  rope.scaling.type = yarn, rope.scaling.factor, rope.scaling.original_context_length,
  rope.scaling.yarn_log_multiplier = 0.1 * mscale_all_dim.
  tensors per layer: attn_norm, [attn_q_a, attn_q_a_norm, attn_q_b | attn_q], attn_kv_a_mqa
  ([n_embd, kv_lora + rope]), attn_kv_a_norm, attn_k_b ([qk_nope, kv_lora, n_head]), attn_v_b
  ([kv_lora, v_head, n_head]), attn_output, ffn_norm, then ffn_gate/up/down for the leading dense
  layers, else ffn_gate_inp, [V3: exp_probs_b.bias], ffn_{gate,up,down}_exps and
  ffn_{gate,up,down}_shexp (n_ff_exp * expert_shared_count wide).

Quantization as in gen_random_qwen.py: ggml's own quantizer from libggml-base.so (stacked expert
tensors are quantized as n_expert * rows rows). Deterministic for a given gguf package and libggml.
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_random_llama as grl  # noqa: E402
import gen_random_qwen as grq  # noqa: E402

VOCAB = grq.VOCAB

CONFIGS = {
    "qwen3moe": dict(
        seed=20261201,
        n_layer=2, n_embd=64, n_head=4, n_head_kv=2, head_dim=32, n_ff=128,
        n_expert=8, n_expert_used=2, n_ff_exp=64, n_ff_shexp=0,
        ctx=4096, rope_base=1000000.0, rms_eps=1e-6, tied=False,
        router_gain=3.0,
        file_type=gguf.LlamaFileType.MOSTLY_Q8_0,
        types={
            "token_embd.weight": T.Q8_0, "output.weight": T.Q8_0,
            "blk.0.attn_q.weight": T.Q8_0, "blk.0.attn_k.weight": T.Q5_0,
            "blk.0.attn_v.weight": T.Q8_0, "blk.0.attn_output.weight": T.Q4_0,
            "blk.0.ffn_gate_exps.weight": T.Q8_0, "blk.0.ffn_up_exps.weight": T.Q5_0,
            "blk.0.ffn_down_exps.weight": T.Q4_1,
            "blk.1.attn_q.weight": T.F16, "blk.1.attn_k.weight": T.Q8_0,
            "blk.1.attn_v.weight": T.Q4_1, "blk.1.attn_output.weight": T.Q8_0,
            "blk.1.ffn_gate_exps.weight": T.Q4_0, "blk.1.ffn_up_exps.weight": T.F16,
            "blk.1.ffn_down_exps.weight": T.Q5_1,
        },
    ),
    "deepseek2": dict(
        # DeepSeek-V2(-Lite)-style: direct q, softmax router, weights scaled but not normalized
        seed=20261203, out_arch="deepseek2",
        n_layer=3, n_embd=64, n_head=4, n_ff=128, n_dense=1,
        q_lora=0, kv_lora=32, qk_nope=32, qk_rope=16, v_head=32,
        n_expert=8, n_expert_used=2, n_ff_exp=64, n_shared=1,
        gating=1, weights_norm=False, weights_scale=2.5, n_group=0, n_group_used=0,
        yarn=dict(factor=4.0, orig_ctx=512, log_mul=0.0707),
        ctx=2048, rope_base=10000.0, rms_eps=1e-6, router_gain=3.0, bias_std=0.0,
        file_type=gguf.LlamaFileType.MOSTLY_Q8_0,
        types={
            "token_embd.weight": T.Q8_0, "output.weight": T.Q8_0,
            "blk.0.attn_q.weight": T.Q8_0, "blk.0.attn_kv_a_mqa.weight": T.Q8_0,
            "blk.0.attn_k_b.weight": T.Q8_0, "blk.0.attn_v_b.weight": T.Q8_0,
            "blk.0.attn_output.weight": T.Q4_0,
            "blk.0.ffn_gate.weight": T.Q8_0, "blk.0.ffn_up.weight": T.Q5_0, "blk.0.ffn_down.weight": T.Q4_1,
            "blk.1.attn_q.weight": T.Q5_0, "blk.1.attn_kv_a_mqa.weight": T.Q8_0,
            "blk.1.attn_k_b.weight": T.Q5_0, "blk.1.attn_v_b.weight": T.Q8_0,
            "blk.1.attn_output.weight": T.Q8_0,
            "blk.1.ffn_gate_exps.weight": T.Q8_0, "blk.1.ffn_up_exps.weight": T.Q5_0,
            "blk.1.ffn_down_exps.weight": T.Q4_1,
            "blk.1.ffn_gate_shexp.weight": T.Q8_0, "blk.1.ffn_up_shexp.weight": T.Q8_0,
            "blk.1.ffn_down_shexp.weight": T.Q5_0,
            "blk.2.attn_q.weight": T.Q8_0, "blk.2.attn_kv_a_mqa.weight": T.Q5_0,
            "blk.2.attn_k_b.weight": T.Q8_0, "blk.2.attn_v_b.weight": T.Q4_1,
            "blk.2.attn_output.weight": T.Q5_1,
            "blk.2.ffn_gate_exps.weight": T.Q4_0, "blk.2.ffn_up_exps.weight": T.Q8_0,
            "blk.2.ffn_down_exps.weight": T.Q5_1,
            "blk.2.ffn_gate_shexp.weight": T.Q4_1, "blk.2.ffn_up_shexp.weight": T.Q5_0,
            "blk.2.ffn_down_shexp.weight": T.Q8_0,
        },
    ),
    "deepseek3": dict(
        # DeepSeek-V3-style: low-rank q, sigmoid router with selection bias, 4 groups of 2
        # experts of which the best 2 stay selectable, weights normalized then scaled
        seed=20261204, out_arch="deepseek2",
        n_layer=3, n_embd=64, n_head=4, n_ff=128, n_dense=1,
        q_lora=64, kv_lora=32, qk_nope=32, qk_rope=16, v_head=32,
        n_expert=8, n_expert_used=2, n_ff_exp=64, n_shared=1,
        gating=2, weights_norm=True, weights_scale=2.5, n_group=4, n_group_used=2,
        yarn=dict(factor=40.0, orig_ctx=256, log_mul=0.1),
        ctx=4096, rope_base=10000.0, rms_eps=1e-6, router_gain=3.0, bias_std=0.3,
        file_type=gguf.LlamaFileType.MOSTLY_Q8_0,
        types={
            "token_embd.weight": T.Q8_0, "output.weight": T.Q8_0,
            "blk.0.attn_q_a.weight": T.Q8_0, "blk.0.attn_q_b.weight": T.Q5_0,
            "blk.0.attn_kv_a_mqa.weight": T.Q8_0,
            "blk.0.attn_k_b.weight": T.Q8_0, "blk.0.attn_v_b.weight": T.Q8_0,
            "blk.0.attn_output.weight": T.Q8_0,
            "blk.0.ffn_gate.weight": T.Q4_0, "blk.0.ffn_up.weight": T.Q8_0, "blk.0.ffn_down.weight": T.Q5_0,
            "blk.1.attn_q_a.weight": T.Q5_1, "blk.1.attn_q_b.weight": T.Q8_0,
            "blk.1.attn_kv_a_mqa.weight": T.Q4_1,
            "blk.1.attn_k_b.weight": T.Q8_0, "blk.1.attn_v_b.weight": T.Q5_0,
            "blk.1.attn_output.weight": T.Q4_0,
            "blk.1.ffn_gate_exps.weight": T.Q8_0, "blk.1.ffn_up_exps.weight": T.Q4_1,
            "blk.1.ffn_down_exps.weight": T.Q5_0,
            "blk.1.ffn_gate_shexp.weight": T.Q8_0, "blk.1.ffn_up_shexp.weight": T.Q4_0,
            "blk.1.ffn_down_shexp.weight": T.Q8_0,
            "blk.2.attn_q_a.weight": T.Q8_0, "blk.2.attn_q_b.weight": T.Q4_1,
            "blk.2.attn_kv_a_mqa.weight": T.Q8_0,
            "blk.2.attn_k_b.weight": T.Q5_1, "blk.2.attn_v_b.weight": T.Q8_0,
            "blk.2.attn_output.weight": T.Q8_0,
            "blk.2.ffn_gate_exps.weight": T.Q5_0, "blk.2.ffn_up_exps.weight": T.Q8_0,
            "blk.2.ffn_down_exps.weight": T.Q4_0,
            "blk.2.ffn_gate_shexp.weight": T.Q5_1, "blk.2.ffn_up_shexp.weight": T.Q8_0,
            "blk.2.ffn_down_shexp.weight": T.Q4_1,
        },
    ),
    "qwen2moe": dict(
        seed=20261202,
        n_layer=2, n_embd=64, n_head=4, n_head_kv=2, head_dim=16, n_ff=256,
        n_expert=8, n_expert_used=2, n_ff_exp=256, n_ff_shexp=256,
        ctx=4096, rope_base=1000000.0, rms_eps=1e-6, tied=False,
        router_gain=3.0,
        file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M,
        types={
            "token_embd.weight": T.Q8_0, "output.weight": T.Q8_0,
            "blk.0.attn_q.weight": T.Q8_0, "blk.0.attn_k.weight": T.Q8_0,
            "blk.0.attn_v.weight": T.Q5_0, "blk.0.attn_output.weight": T.Q4_0,
            "blk.0.ffn_gate_exps.weight": T.Q4_0, "blk.0.ffn_up_exps.weight": T.Q4_1,
            "blk.0.ffn_down_exps.weight": T.Q6_K,
            "blk.0.ffn_gate_shexp.weight": T.Q8_0, "blk.0.ffn_up_shexp.weight": T.Q5_0,
            "blk.0.ffn_down_shexp.weight": T.Q4_K,
            "blk.1.attn_q.weight": T.Q4_1, "blk.1.attn_k.weight": T.Q5_1,
            "blk.1.attn_v.weight": T.Q8_0, "blk.1.attn_output.weight": T.Q8_0,
            "blk.1.ffn_gate_exps.weight": T.Q5_0, "blk.1.ffn_up_exps.weight": T.Q4_1,
            "blk.1.ffn_down_exps.weight": T.Q5_K,
            "blk.1.ffn_gate_shexp.weight": T.Q4_0, "blk.1.ffn_up_shexp.weight": T.Q4_1,
            "blk.1.ffn_down_shexp.weight": T.Q6_K,
        },
    ),
}

# deepseek2 with a 64-wide latent row (32 compressed + 32 RoPE): whole 32-element blocks, so a
# quantized KV cache (-ctk q8_0) can hold it (tests/golden/models/MOE.md).
CONFIGS["deepseek2-latent64"] = dict(CONFIGS["deepseek2"], seed=20261204, qk_rope=32)

NORM_JITTER = 0.1
QKV_BIAS_STD = 0.5


def make_deepseek_weights(cfg, rng):
    """deepseek2 tensors, float32, (rows=out, cols=in); per-head k_b (n_head, kv_lora, nope) and
    v_b (n_head, v_head, kv_lora) as llama.cpp's converter splits kv_b."""
    E, H, F = cfg["n_embd"], cfg["n_head"], cfg["n_ff"]
    C, NOPE, ROPE, V = cfg["kv_lora"], cfg["qk_nope"], cfg["qk_rope"], cfg["v_head"]
    X, FX, S = cfg["n_expert"], cfg["n_ff_exp"], cfg["n_shared"]
    w = {}

    def mat(*shape, gain=1.0):
        return (rng.standard_normal(shape) * (gain / np.sqrt(shape[-1]))).astype(np.float32)

    def norm(n):
        return (1.0 + NORM_JITTER * rng.standard_normal(n)).astype(np.float32)

    w["token_embd.weight"] = rng.standard_normal((VOCAB, E)).astype(np.float32)
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(E)
        if cfg["q_lora"]:
            w[p + "attn_q_a.weight"] = mat(cfg["q_lora"], E)
            w[p + "attn_q_a_norm.weight"] = norm(cfg["q_lora"])
            w[p + "attn_q_b.weight"] = mat(H * (NOPE + ROPE), cfg["q_lora"], gain=1.5)
        else:
            w[p + "attn_q.weight"] = mat(H * (NOPE + ROPE), E, gain=1.5)
        w[p + "attn_kv_a_mqa.weight"] = mat(C + ROPE, E, gain=1.5)
        w[p + "attn_kv_a_norm.weight"] = norm(C)
        w[p + "attn_k_b.weight"] = mat(H, C, NOPE)
        w[p + "attn_v_b.weight"] = mat(H, V, C)
        w[p + "attn_output.weight"] = mat(E, H * V)
        w[p + "ffn_norm.weight"] = norm(E)
        if i < cfg["n_dense"]:
            w[p + "ffn_gate.weight"] = mat(F, E)
            w[p + "ffn_up.weight"] = mat(F, E)
            w[p + "ffn_down.weight"] = mat(E, F)
            continue
        w[p + "ffn_gate_inp.weight"] = mat(X, E, gain=cfg["router_gain"])
        if cfg["bias_std"]:
            w[p + "exp_probs_b.bias"] = (cfg["bias_std"] * rng.standard_normal(X)).astype(np.float32)
        w[p + "ffn_gate_exps.weight"] = mat(X, FX, E)
        w[p + "ffn_up_exps.weight"] = mat(X, FX, E)
        w[p + "ffn_down_exps.weight"] = mat(X, E, FX)
        w[p + "ffn_gate_shexp.weight"] = mat(FX * S, E)
        w[p + "ffn_up_shexp.weight"] = mat(FX * S, E)
        w[p + "ffn_down_shexp.weight"] = mat(E, FX * S)
    w["output_norm.weight"] = norm(E)
    w["output.weight"] = rng.standard_normal((VOCAB, E)).astype(np.float32)
    return w


def make_weights(cfg, rng):
    """float32 arrays in llama.cpp's (rows=out, cols=in) layout, drawn in a fixed order.
    Stacked expert tensors are (n_expert, rows, cols)."""
    E, H, KV, D = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
    X, FX, FS = cfg["n_expert"], cfg["n_ff_exp"], cfg["n_ff_shexp"] or cfg["n_ff"]
    arch = cfg["arch"]
    w = {}

    def mat(*shape, gain=1.0):
        return (rng.standard_normal(shape) * (gain / np.sqrt(shape[-1]))).astype(np.float32)

    def norm(n):
        return (1.0 + NORM_JITTER * rng.standard_normal(n)).astype(np.float32)

    w["token_embd.weight"] = rng.standard_normal((VOCAB, E)).astype(np.float32)
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(E)
        w[p + "attn_q.weight"] = mat(H * D, E)
        w[p + "attn_k.weight"] = mat(KV * D, E)
        w[p + "attn_v.weight"] = mat(KV * D, E)
        if arch == "qwen2moe":
            w[p + "attn_q.bias"] = (QKV_BIAS_STD * rng.standard_normal(H * D)).astype(np.float32)
            w[p + "attn_k.bias"] = (QKV_BIAS_STD * rng.standard_normal(KV * D)).astype(np.float32)
            w[p + "attn_v.bias"] = (QKV_BIAS_STD * rng.standard_normal(KV * D)).astype(np.float32)
        else:
            w[p + "attn_q_norm.weight"] = norm(D)
            w[p + "attn_k_norm.weight"] = norm(D)
        w[p + "attn_output.weight"] = mat(E, H * D)
        w[p + "ffn_norm.weight"] = norm(E)
        w[p + "ffn_gate_inp.weight"] = mat(X, E, gain=cfg["router_gain"])
        w[p + "ffn_gate_exps.weight"] = mat(X, FX, E)
        w[p + "ffn_up_exps.weight"] = mat(X, FX, E)
        w[p + "ffn_down_exps.weight"] = mat(X, E, FX)
        if arch == "qwen2moe":
            w[p + "ffn_gate_inp_shexp.weight"] = mat(E)
            w[p + "ffn_gate_shexp.weight"] = mat(FS, E)
            w[p + "ffn_up_shexp.weight"] = mat(FS, E)
            w[p + "ffn_down_shexp.weight"] = mat(E, FS)
    w["output_norm.weight"] = norm(E)
    w["output.weight"] = rng.standard_normal((VOCAB, E)).astype(np.float32)
    return w


def write_gguf(cfg, out, weights, tok, quantizer):
    tokens, types, merges, meta = tok
    arch = cfg.get("out_arch", cfg["arch"])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    wr = gguf.GGUFWriter(tmp, arch)
    wr.add_type(gguf.GGUFType.MODEL)
    wr.add_name(f"sparetire tiny-{cfg['arch']} (random weights)")
    wr.add_description(f"random weights, numpy default_rng({cfg['seed']}); scripts/gen_random_moe.py")
    wr.add_block_count(cfg["n_layer"])
    wr.add_context_length(cfg["ctx"])
    wr.add_embedding_length(cfg["n_embd"])
    wr.add_feed_forward_length(cfg["n_ff"])
    wr.add_head_count(cfg["n_head"])
    wr.add_head_count_kv(cfg.get("n_head_kv", 1))
    wr.add_rope_freq_base(cfg["rope_base"])
    wr.add_layer_norm_rms_eps(cfg["rms_eps"])
    wr.add_expert_count(cfg["n_expert"])
    wr.add_expert_used_count(cfg["n_expert_used"])
    if arch == "qwen3moe":
        wr.add_key_length(cfg["head_dim"])
        wr.add_value_length(cfg["head_dim"])
    if arch == "deepseek2":
        wr.add_leading_dense_block_count(cfg["n_dense"])
        wr.add_vocab_size(VOCAB)
        wr.add_q_lora_rank(cfg["q_lora"])
        wr.add_kv_lora_rank(cfg["kv_lora"])
        wr.add_key_length(cfg["kv_lora"] + cfg["qk_rope"])
        wr.add_value_length(cfg["kv_lora"])
        wr.add_key_length_mla(cfg["qk_nope"] + cfg["qk_rope"])
        wr.add_value_length_mla(cfg["v_head"])
        wr.add_expert_feed_forward_length(cfg["n_ff_exp"])
        wr.add_expert_shared_count(cfg["n_shared"])
        wr.add_expert_weights_scale(cfg["weights_scale"])
        wr.add_expert_weights_norm(cfg["weights_norm"])
        wr.add_expert_gating_func(gguf.ExpertGatingFuncType(cfg["gating"]))
        if cfg["n_group"]:
            wr.add_expert_group_count(cfg["n_group"])
            wr.add_expert_group_used_count(cfg["n_group_used"])
        wr.add_rope_dimension_count(cfg["qk_rope"])
        y = cfg["yarn"]
        wr.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        wr.add_rope_scaling_factor(y["factor"])
        wr.add_rope_scaling_orig_ctx_len(y["orig_ctx"])
        wr.add_rope_scaling_yarn_log_mul(y["log_mul"])
    else:
        wr.add_expert_feed_forward_length(cfg["n_ff_exp"])
    if arch == "qwen2moe":
        wr.add_expert_shared_feed_forward_length(cfg["n_ff_shexp"])
    wr.add_file_type(cfg["file_type"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("qwen2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_eos_token_id(meta["im_end"])
    wr.add_pad_token_id(meta["endoftext"])
    wr.add_bos_token_id(meta["endoftext"])
    wr.add_add_bos_token(False)
    wr.add_chat_template(grq.CHATML_TEMPLATE)
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)

    counts = {}
    for name, arr in weights.items():
        qt = cfg["types"].get(name, T.F32)
        counts[qt.name] = counts.get(qt.name, 0) + 1
        if qt == T.F32:
            wr.add_tensor(name, arr)
        elif qt == T.F16:
            wr.add_tensor(name, arr.astype(np.float16))
        else:
            q = quantizer.quantize(arr.reshape(-1, arr.shape[-1]), qt)
            q = q.reshape(arr.shape[:-1] + (q.shape[-1],))
            wr.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    os.replace(tmp, out)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--tokenizer-from", default=grl.DEFAULT_TOKENIZER,
                    help="GGUF whose gpt2 vocab is truncated (SmolLM2-135M; env SMOLLM2_GGUF)")
    ap.add_argument("--ggml-lib", default=os.environ.get("LLAMA_CPP_LIB_PATH"),
                    help="directory with libggml-base.so (default $LLAMA_CPP_LIB_PATH)")
    ap.add_argument("--out", help="default tests/data/tiny-ARCH.gguf")
    a = ap.parse_args()
    if not a.ggml_lib:
        sys.exit("need --ggml-lib DIR or LLAMA_CPP_LIB_PATH (llama.cpp build/bin with libggml-base.so)")
    cfg = dict(CONFIGS[a.arch], arch=a.arch)
    out = a.out or os.path.join(REPO, "tests", "data", f"tiny-{a.arch}.gguf")
    tokens, types, merges, meta = grl.load_tokenizer(a.tokenizer_from, VOCAB)
    meta["endoftext"] = tokens.index("<|endoftext|>")
    meta["im_end"] = tokens.index("<|im_end|>")
    rng = np.random.default_rng(cfg["seed"])
    weights = (make_deepseek_weights if cfg.get("out_arch") == "deepseek2" else make_weights)(cfg, rng)
    counts = write_gguf(cfg, out, weights, (tokens, types, merges, meta), grq.GgmlQuantizer(a.ggml_lib))
    with open(out, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {out}: {os.path.getsize(out)} bytes, sha256 {sha}, tensor types "
          f"{dict(sorted(counts.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
