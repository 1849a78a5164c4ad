#!/usr/bin/env python3
"""Write tests/data/tiny-qwen2.gguf or tiny-qwen3.gguf: tiny, deterministic, random `qwen2`/`qwen3` models.

    python3 scripts/gen_random_qwen.py --arch qwen2|qwen3 [--tokenizer-from SMOLLM2.gguf]
        [--ggml-lib DIR] [--out PATH] [--check]

Metadata keys and tensor names are the ones llama.cpp's converter (convert_hf_to_gguf.py,
conversion/qwen.py `Qwen2Model` / `Qwen3Model`, gguf-py constants + tensor_mapping) writes for
Qwen2ForCausalLM / Qwen3ForCausalLM:

  general.architecture/type/name/description, ARCH.block_count, ARCH.context_length,
  ARCH.embedding_length, ARCH.feed_forward_length, ARCH.attention.head_count,
  ARCH.attention.head_count_kv, ARCH.rope.freq_base, ARCH.attention.layer_norm_rms_epsilon,
  [qwen3 only: ARCH.attention.key_length, ARCH.attention.value_length (HF config's head_dim)],
  general.file_type, general.quantization_version, tokenizer.ggml.{model=gpt2, pre=qwen2, tokens,
  token_type, merges, bos_token_id, eos_token_id, padding_token_id, add_bos_token=false},
  tokenizer.chat_template (ChatML).
  No rope.dimension_count and no vocab_size (the converter writes neither for Qwen; llama.cpp uses
  n_rot = key_length, or n_embd/n_head).

Tensors: token_embd.weight, [output.weight], output_norm.weight, and per layer blk.N.attn_norm,
attn_q/attn_k/attn_v/attn_output .weight, ffn_norm, ffn_gate, ffn_up, ffn_down .weight, plus
  qwen2: blk.N.attn_q.bias, attn_k.bias, attn_v.bias (F32)
  qwen3: blk.N.attn_q_norm.weight, attn_k_norm.weight (F32, width head_dim: RMSNorm per head)

What llama.cpp does with them (not stored in the file): RoPE type NEOX (rotates pairs (i, i+d/2)),
attention scale 1/sqrt(head_dim), SwiGLU FFN, RMSNorm; qwen3 applies q_norm/k_norm to each head
BEFORE RoPE; qwen2 adds the biases right after the Q/K/V matmuls. Missing output.weight means the
output is tied to token_embd.weight.

Models (see CONFIGS): qwen2 is tied (no output.weight), head_dim = n_embd/n_head = 16;
qwen3 is untied, 8 query heads of head_dim 32 (q width 256 != n_embd 64), 2 KV heads.
n_ff = 256 so ffn_down rows (and qwen3's attn_output rows, width 256) can be K-quants.

Quantization: every quantized tensor is produced by ggml's own quantizer (`ggml_quantize_chunk`
in libggml-base.so, loaded with ctypes: the code path llama-quantize runs, without imatrix), so
K-quants (Q4_K, Q5_K, Q6_K) are possible and every block is exactly what llama-quantize writes.
The library directory is --ggml-lib, else $LLAMA_CPP_LIB_PATH (scripts/build_llamacpp.sh prints it).

Tokenizer: the first 1024 tokens of SmolLM2-135M's gpt2 vocab, as in gen_random_llama.py, but
with pre-tokenizer `qwen2`; <|endoftext|> (0) is bos/pad, <|im_end|> (2) is eos; no BOS added.

Deterministic: byte-identical for a given gguf package (0.19) and libggml. --check runs a
float64 numpy forward pass (greedy from a few prompts, naive tokenization) and prints margins;
--check-against-llama also compares its logits with llama.cpp's (needs llama_cpp bindings).
"""
import argparse
import ctypes
import hashlib
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_random_llama as grl  # noqa: E402  (tokenizer truncation, naive tokenizer)

VOCAB = 1024
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONFIGS = {
    "qwen2": dict(
        seed=20261130,
        n_layer=3, n_embd=64, n_head=4, n_head_kv=2, head_dim=16, n_ff=256,
        ctx=4096, rope_base=1000000.0, rms_eps=1e-6, tied=True, write_head_dim=False,
        # qk_gain 2: sharper attention, so the random model's output varies with the context
        resid_gain=1.0, qk_gain=2.0,
        file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M,
        types={
            "token_embd.weight": T.Q8_0,  # tied: also the output matrix
            "blk.0.attn_q.weight": T.F16, "blk.0.attn_k.weight": T.F16,
            "blk.0.attn_v.weight": T.F16, "blk.0.attn_output.weight": T.F16,
            "blk.0.ffn_gate.weight": T.Q8_0, "blk.0.ffn_up.weight": T.Q8_0,
            "blk.0.ffn_down.weight": T.Q4_K,
            "blk.1.attn_q.weight": T.Q5_0, "blk.1.attn_k.weight": T.Q5_1,
            "blk.1.attn_v.weight": T.Q8_0, "blk.1.attn_output.weight": T.Q4_0,
            "blk.1.ffn_gate.weight": T.Q4_1, "blk.1.ffn_up.weight": T.Q5_0,
            "blk.1.ffn_down.weight": T.Q6_K,
            "blk.2.attn_q.weight": T.Q4_0, "blk.2.attn_k.weight": T.Q4_1,
            "blk.2.attn_v.weight": T.Q5_0, "blk.2.attn_output.weight": T.Q8_0,
            "blk.2.ffn_gate.weight": T.Q4_0, "blk.2.ffn_up.weight": T.Q4_1,
            "blk.2.ffn_down.weight": T.Q5_K,
        },
    ),
    "qwen3": dict(
        seed=20261131,
        n_layer=3, n_embd=64, n_head=8, n_head_kv=2, head_dim=32, n_ff=256,
        ctx=4096, rope_base=1000000.0, rms_eps=1e-6, tied=False, write_head_dim=True,
        resid_gain=1.0, qk_gain=1.0,
        file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M,
        types={
            "token_embd.weight": T.Q5_0,
            "output.weight": T.F16,
            "blk.0.attn_q.weight": T.F16, "blk.0.attn_k.weight": T.Q8_0,
            "blk.0.attn_v.weight": T.Q8_0, "blk.0.attn_output.weight": T.Q4_K,
            "blk.0.ffn_gate.weight": T.F16, "blk.0.ffn_up.weight": T.F16,
            "blk.0.ffn_down.weight": T.Q6_K,
            "blk.1.attn_q.weight": T.Q4_0, "blk.1.attn_k.weight": T.Q4_1,
            "blk.1.attn_v.weight": T.Q5_0, "blk.1.attn_output.weight": T.Q6_K,
            "blk.1.ffn_gate.weight": T.Q5_1, "blk.1.ffn_up.weight": T.Q5_0,
            "blk.1.ffn_down.weight": T.Q4_K,
            "blk.2.attn_q.weight": T.Q8_0, "blk.2.attn_k.weight": T.F16,
            "blk.2.attn_v.weight": T.Q4_0, "blk.2.attn_output.weight": T.Q8_0,
            "blk.2.ffn_gate.weight": T.Q4_1, "blk.2.ffn_up.weight": T.Q4_0,
            "blk.2.ffn_down.weight": T.Q5_K,
        },
    ),
}

# Standard deviations (same scheme as gen_random_llama.py).
EMBD_STD = 1.0
OUT_STD = 1.0
GAIN = 1.0
NORM_JITTER = 0.1     # norm weights: 1 + N(0, NORM_JITTER)
QKV_BIAS_STD = 0.5    # qwen2 biases: large enough that dropping them changes the output


class GgmlQuantizer:
    """ggml_quantize_chunk from libggml-base.so (reference quantizers, no imatrix)."""

    def __init__(self, libdir):
        path = os.path.join(libdir, "libggml-base.so")
        if not os.path.exists(path):
            sys.exit(f"{path} not found: pass --ggml-lib or set LLAMA_CPP_LIB_PATH to llama.cpp's build/bin")
        self.lib = ctypes.CDLL(path)
        f = self.lib.ggml_quantize_chunk
        f.restype = ctypes.c_size_t
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                      ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        self.fn = f

    def quantize(self, arr, qt):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        nrows, n_per_row = arr.shape
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        assert n_per_row % bs == 0, f"{qt.name} needs rows that are multiples of {bs}"
        out = np.zeros((nrows, n_per_row // bs * ts), dtype=np.uint8)
        n = self.fn(int(qt), arr.ctypes.data, out.ctypes.data, 0, nrows, n_per_row, None)
        assert n == out.size, (n, out.size)
        return out


def make_weights(cfg, rng):
    """float32 arrays in llama.cpp's (rows=out, cols=in) layout, drawn in a fixed order."""
    E, H, KV, D, F = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["n_ff"]
    w = {}

    def mat(n_out, n_in, gain=GAIN):
        return (rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + NORM_JITTER * rng.standard_normal(n)).astype(np.float32)

    def bias(n):
        return (QKV_BIAS_STD * rng.standard_normal(n)).astype(np.float32)

    w["token_embd.weight"] = (rng.standard_normal((VOCAB, E)) * EMBD_STD).astype(np.float32)
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(E)
        w[p + "attn_q.weight"] = mat(H * D, E, cfg["qk_gain"])
        w[p + "attn_k.weight"] = mat(KV * D, E, cfg["qk_gain"])
        w[p + "attn_v.weight"] = mat(KV * D, E)
        if cfg["arch"] == "qwen2":
            w[p + "attn_q.bias"] = bias(H * D)
            w[p + "attn_k.bias"] = bias(KV * D)
            w[p + "attn_v.bias"] = bias(KV * D)
        else:
            w[p + "attn_q_norm.weight"] = norm(D)
            w[p + "attn_k_norm.weight"] = norm(D)
        w[p + "attn_output.weight"] = mat(E, H * D, cfg["resid_gain"])
        w[p + "ffn_norm.weight"] = norm(E)
        w[p + "ffn_gate.weight"] = mat(F, E)
        w[p + "ffn_up.weight"] = mat(F, E)
        w[p + "ffn_down.weight"] = mat(E, F, cfg["resid_gain"])
    w["output_norm.weight"] = norm(E)
    if cfg["tied"]:
        # Tied output: logits = (x * output_norm) . token_embd, and the residual x still holds the
        # current token's own embedding, so with positive norm weights the model just repeats its
        # input token. Random signs on the output norm remove that self-correlation.
        w["output_norm.weight"] *= np.where(rng.random(E) < 0.5, -1.0, 1.0).astype(np.float32)
    if not cfg["tied"]:
        w["output.weight"] = (rng.standard_normal((VOCAB, E)) * OUT_STD).astype(np.float32)
    return w


def tensor_order(cfg):
    names = ["token_embd.weight"]
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        names.append(p + "attn_norm.weight")
        if cfg["arch"] == "qwen2":
            names += [p + "attn_q.weight", p + "attn_q.bias", p + "attn_k.weight", p + "attn_k.bias",
                      p + "attn_v.weight", p + "attn_v.bias"]
        else:
            names += [p + "attn_q.weight", p + "attn_q_norm.weight", p + "attn_k.weight",
                      p + "attn_k_norm.weight", p + "attn_v.weight"]
        names += [p + n for n in ("attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                                  "ffn_up.weight", "ffn_down.weight")]
    names.append("output_norm.weight")
    if not cfg["tied"]:
        names.append("output.weight")
    return names


def write_gguf(cfg, out, weights, tok, quantizer):
    tokens, types, merges, meta = tok
    arch = cfg["arch"]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    wr = gguf.GGUFWriter(tmp, arch)
    wr.add_type(gguf.GGUFType.MODEL)
    wr.add_name(f"sparetire tiny-{arch} (random weights)")
    wr.add_description(f"random weights, numpy default_rng({cfg['seed']}); scripts/gen_random_qwen.py")
    # TextModel.set_gguf_parameters order
    wr.add_block_count(cfg["n_layer"])
    wr.add_context_length(cfg["ctx"])
    wr.add_embedding_length(cfg["n_embd"])
    wr.add_feed_forward_length(cfg["n_ff"])
    wr.add_head_count(cfg["n_head"])
    wr.add_head_count_kv(cfg["n_head_kv"])
    wr.add_rope_freq_base(cfg["rope_base"])
    wr.add_layer_norm_rms_eps(cfg["rms_eps"])
    if cfg["write_head_dim"]:
        wr.add_key_length(cfg["head_dim"])
        wr.add_value_length(cfg["head_dim"])
    wr.add_file_type(cfg["file_type"])
    # _set_vocab_gpt2 + SpecialVocab
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("qwen2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_eos_token_id(meta["im_end"])
    wr.add_pad_token_id(meta["endoftext"])
    wr.add_bos_token_id(meta["endoftext"])
    wr.add_add_bos_token(False)
    wr.add_chat_template(CHATML_TEMPLATE)
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)

    deq, counts = {}, {}
    for name in tensor_order(cfg):
        arr = weights[name]
        qt = cfg["types"].get(name, T.F32)
        assert arr.ndim == 2 or qt == T.F32, f"{name}: 1-D tensors stay F32"
        counts[qt.name] = counts.get(qt.name, 0) + 1
        if qt == T.F32:
            wr.add_tensor(name, arr)
            deq[name] = arr
        elif qt == T.F16:
            h = arr.astype(np.float16)
            wr.add_tensor(name, h)
            deq[name] = h.astype(np.float32)
        else:
            q = quantizer.quantize(arr, qt)
            wr.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
            deq[name] = gguf.quants.dequantize(q, qt).reshape(arr.shape).astype(np.float32)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    os.replace(tmp, out)
    return deq, counts


# ---------------------------------------------------------------- numpy reference (for --check)

def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_neox(x, pos, base):
    # x: (n_tok, n_heads, d); LLAMA_ROPE_TYPE_NEOX rotates (i, i + d/2), theta_i = base^(-2i/d).
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)


def forward(cfg, w, ids):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    H, KV, D, eps = cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["rms_eps"]
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = w["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    g = H // KV
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], eps)
        q, k, v = (h @ w[p + "attn_q.weight"].T, h @ w[p + "attn_k.weight"].T,
                   h @ w[p + "attn_v.weight"].T)
        if cfg["arch"] == "qwen2":
            q, k, v = q + w[p + "attn_q.bias"], k + w[p + "attn_k.bias"], v + w[p + "attn_v.bias"]
        q, k, v = q.reshape(n, H, D), k.reshape(n, KV, D), v.reshape(n, KV, D)
        if cfg["arch"] == "qwen3":
            q = rmsnorm(q, w[p + "attn_q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "attn_k_norm.weight"], eps)
        q, k = rope_neox(q, pos, cfg["rope_base"]), rope_neox(k, pos, cfg["rope_base"])
        att = np.empty((n, H, D))
        for hd in range(H):
            kv = hd // g
            s = q[:, hd] @ k[:, kv].T / np.sqrt(D) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hd] = s @ v[:, kv]
        x = x + att.reshape(n, -1) @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        gt, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
        x = x + (gt / (1 + np.exp(-gt)) * up) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"], eps)
    out = w["token_embd.weight"] if cfg["tied"] else w["output.weight"]
    return x @ out.T


CHECK_PROMPTS = ["The quick brown fox jumps over the lazy dog.",
                 "Once upon a time, there was a little girl who",
                 "def add(a, b):\n    return a + b\n"]


def check(cfg, deq, tokens, eos):
    margins = []
    for pr in CHECK_PROMPTS:
        ids = grl.naive_tokenize(pr, tokens)
        for _ in range(32):
            lg = forward(cfg, deq, ids)[-1]
            top = np.sort(lg)[::-1]
            margins.append(top[0] - top[1])
            nxt = int(np.argmax(lg))
            if nxt == eos:
                break
            ids.append(nxt)
        lg = forward(cfg, deq, ids)
        print(f"prompt {pr!r}: {len(ids)} tokens, logit std {lg.std():.2f}, greedy tail {ids[-10:]}")
    m = np.array(margins)
    print(f"greedy margins: n={len(m)} min={m.min():.4f} median={np.median(m):.3f} "
          f"<0.1: {(m < 0.1).sum()} <0.25: {(m < 0.25).sum()}")


def check_against_llama(cfg, deq, tokens, path):
    """Compare the float64 forward pass with llama.cpp's logits (FA off: plain F32 softmax path)."""
    import llama_cpp as L
    global _quiet_log  # keep the ctypes callback alive
    _quiet_log = L.llama_log_callback(lambda level, text, user_data: None)
    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
    assert model, "llama.cpp failed to load the model"
    cp = L.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = 256
    cp.n_threads = cp.n_threads_batch = 2
    cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(model, cp)
    for pr in CHECK_PROMPTS:
        ids = grl.naive_tokenize(pr, tokens)
        b = L.llama_batch_init(len(ids), 0, 1)
        b.n_tokens = len(ids)
        for i, t in enumerate(ids):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, i, 1, 1
            b.seq_id[i][0] = 0
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        assert L.llama_decode(ctx, b) == 0
        ref = np.array([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(VOCAB,))
                        for i in range(len(ids))])
        L.llama_batch_free(b)
        ours = forward(cfg, deq, ids)
        d = np.abs(ours - ref)
        agree = (ours.argmax(-1) == ref.argmax(-1)).mean()
        print(f"vs llama.cpp {pr!r}: max |dlogit| {d.max():.4f}, mean {d.mean():.4f}, "
              f"argmax agreement {agree:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--tokenizer-from", default=grl.DEFAULT_TOKENIZER,
                    help="GGUF whose gpt2 vocab is truncated (SmolLM2-135M; env SMOLLM2_GGUF)")
    ap.add_argument("--ggml-lib", default=os.environ.get("LLAMA_CPP_LIB_PATH"),
                    help="directory with libggml-base.so (default $LLAMA_CPP_LIB_PATH)")
    ap.add_argument("--out", help="default tests/data/tiny-ARCH.gguf")
    ap.add_argument("--check", action="store_true", help="numpy forward pass + margin stats")
    ap.add_argument("--check-against-llama", action="store_true",
                    help="compare the numpy forward pass with llama.cpp (needs the llama_cpp bindings)")
    a = ap.parse_args()
    if not a.ggml_lib:
        sys.exit("need --ggml-lib DIR or LLAMA_CPP_LIB_PATH (llama.cpp build/bin with libggml-base.so)")
    cfg = dict(CONFIGS[a.arch], arch=a.arch)
    out = a.out or os.path.join(REPO, "tests", "data", f"tiny-{a.arch}.gguf")

    tokens, types, merges, meta = grl.load_tokenizer(a.tokenizer_from, VOCAB)
    meta["endoftext"] = tokens.index("<|endoftext|>")
    meta["im_end"] = tokens.index("<|im_end|>")
    tokens.index("<|im_start|>")
    rng = np.random.default_rng(cfg["seed"])
    weights = make_weights(cfg, rng)
    deq, counts = write_gguf(cfg, out, weights, (tokens, types, merges, meta),
                             GgmlQuantizer(a.ggml_lib))
    with open(out, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {out}: {os.path.getsize(out)} bytes, sha256 {sha}, {len(tokens)} tokens, "
          f"{len(merges)} merges, tensor types {dict(sorted(counts.items()))}", file=sys.stderr)
    if a.check:
        check(cfg, deq, tokens, meta["im_end"])
    if a.check_against_llama:
        check_against_llama(cfg, deq, tokens, out)


if __name__ == "__main__":
    main()
