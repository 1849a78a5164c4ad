#!/usr/bin/env python3
"""Writes the tiny Hugging Face checkpoints `sparetire convert` is tested on, and their goldens.

For each of llama (two safetensors shards + index, untied output), qwen2 (Q/K/V biases) and
qwen3 (Q/K norms, head_dim 16 != hidden/heads, tied output):

  tests/data/hf/NAME/  config.json, tokenizer.json, tokenizer_config.json, *.safetensors
                       (random weights written with the `safetensors` package; the tokenizer is
                       tests/data/tiny-llama.gguf's SmolLM2-derived BPE vocabulary, as HF files)
  tests/golden/convert/NAME.json
                       the same weights written independently to an F32 GGUF with gguf-py (the
                       llama.cpp converter's key names, tensor names and Q/K permutation): each
                       tensor's sha256, then llama.cpp's tokens and logits for that GGUF
                       (scripts/gen_model_goldens.py)

Usage (needs numpy, safetensors, gguf-py and the llama.cpp build, see README "Tests"):
  PYTHONPATH=<llama_cpp_python-0.3.36> LLAMA_CPP_LIB_PATH=<.../build/bin> \
      python3 scripts/gen_hf_checkpoints.py [--ref-dir DIR]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPECS = [
    dict(name="llama", arch="llama", hf="LlamaForCausalLM", d=32, n_head=4, n_kv=2, ff=64,
         n_layer=2, head_dim=None, tied=False, bias=False, qk_norm=False, dtype="float16",
         shards=2, merges="pairs"),
    dict(name="qwen2", arch="qwen2", hf="Qwen2ForCausalLM", d=32, n_head=4, n_kv=2, ff=64,
         n_layer=2, head_dim=None, tied=False, bias=True, qk_norm=False, dtype="float16",
         shards=1, merges="strings"),
    dict(name="qwen3", arch="qwen3", hf="Qwen3ForCausalLM", d=32, n_head=4, n_kv=2, ff=64,
         n_layer=2, head_dim=16, tied=True, bias=False, qk_norm=True, dtype="float16",
         shards=1, merges="pairs"),
]


def tiny_vocab(gguf):
    r = gguf.GGUFReader(os.path.join(ROOT, "tests/data/tiny-llama.gguf"))
    f = r.fields

    def arr(k):
        fl = f[k]
        return [fl.parts[i] for i in fl.data]

    def scalar(k):
        fl = f.get(k)
        return None if fl is None else fl.parts[fl.data[0]].tolist()[0]

    tokens = [bytes(p).decode() for p in arr("tokenizer.ggml.tokens")]
    types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]
    merges = [bytes(p).decode() for p in arr("tokenizer.ggml.merges")]
    tpl = bytes(f["tokenizer.chat_template"].parts[-1]).decode()
    return dict(tokens=tokens, types=types, merges=merges, template=tpl,
                bos=scalar("tokenizer.ggml.bos_token_id"), eos=scalar("tokenizer.ggml.eos_token_id"),
                unk=scalar("tokenizer.ggml.unknown_token_id"), pad=scalar("tokenizer.ggml.padding_token_id"))


def tokenizer_files(v, merges_format):
    added = [dict(id=i, content=t, single_word=False, lstrip=False, rstrip=False,
                  normalized=False, special=True)
             for i, (t, ty) in enumerate(zip(v["tokens"], v["types"])) if ty == 3]
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = v["merges"] if merges_format == "strings" else [m.split(" ", 1) for m in v["merges"]]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    cfg = {
        "add_prefix_space": False,
        "bos_token": v["tokens"][v["bos"]], "eos_token": v["tokens"][v["eos"]],
        "unk_token": v["tokens"][v["unk"]], "pad_token": v["tokens"][v["pad"]],
        "chat_template": v["template"], "model_max_length": 256,
        "tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False,
    }
    return tok, cfg


def make_weights(s, n_vocab, rng):
    d, ff, hd = s["d"], s["ff"], s["head_dim"] or s["d"] // s["n_head"]
    q, kv = s["n_head"] * hd, s["n_kv"] * hd
    dt = np.dtype(s["dtype"])

    def w(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(dt)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(dt)

    t = {"model.embed_tokens.weight": w(n_vocab, d), "model.norm.weight": norm(d)}
    if not s["tied"]:
        t["lm_head.weight"] = w(n_vocab, d)
    for l in range(s["n_layer"]):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = norm(d)
        t[p + "post_attention_layernorm.weight"] = norm(d)
        t[p + "self_attn.q_proj.weight"] = w(q, d)
        t[p + "self_attn.k_proj.weight"] = w(kv, d)
        t[p + "self_attn.v_proj.weight"] = w(kv, d)
        t[p + "self_attn.o_proj.weight"] = w(d, q)
        if s["bias"]:
            t[p + "self_attn.q_proj.bias"] = w(q)
            t[p + "self_attn.k_proj.bias"] = w(kv)
            t[p + "self_attn.v_proj.bias"] = w(kv)
        if s["qk_norm"]:
            t[p + "self_attn.q_norm.weight"] = norm(hd)
            t[p + "self_attn.k_norm.weight"] = norm(hd)
        t[p + "mlp.gate_proj.weight"] = w(ff, d)
        t[p + "mlp.up_proj.weight"] = w(ff, d)
        t[p + "mlp.down_proj.weight"] = w(d, ff)
    return t


def permute(w, n_head):
    """Hugging Face rotate-half rows -> llama.cpp interleaved rows (per head)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def reference_gguf(gguf, s, v, weights, path):
    hd = s["head_dim"] or s["d"] // s["n_head"]
    a = s["arch"]
    g = gguf.GGUFWriter(path, a)
    g.add_type("model")
    g.add_name(s["name"])
    g.add_block_count(s["n_layer"])
    g.add_context_length(256)
    g.add_embedding_length(s["d"])
    g.add_feed_forward_length(s["ff"])
    g.add_head_count(s["n_head"])
    g.add_head_count_kv(s["n_kv"])
    g.add_rope_freq_base(10000.0)
    g.add_layer_norm_rms_eps(1e-6)
    if s["head_dim"]:
        g.add_key_length(hd)
        g.add_value_length(hd)
    if a == "llama":
        g.add_vocab_size(len(v["tokens"]))
        g.add_rope_dimension_count(hd)
    g.add_file_type(0)
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("smollm")
    g.add_token_list(v["tokens"])
    g.add_token_types(v["types"])
    g.add_token_merges(v["merges"])
    g.add_bos_token_id(v["bos"])
    g.add_eos_token_id(v["eos"])
    g.add_unk_token_id(v["unk"])
    g.add_pad_token_id(v["pad"])
    g.add_add_bos_token(False)
    g.add_add_eos_token(False)
    g.add_chat_template(v["template"])
    names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
             "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.bias": "attn_v.bias", "self_attn.q_norm.weight": "attn_q_norm.weight",
             "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
             "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    shas = {}
    for hf, t in weights.items():
        t = t.astype(np.float32)
        if hf == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif hf == "model.norm.weight":
            name = "output_norm.weight"
        elif hf == "lm_head.weight":
            name = "output.weight"
        else:
            l, rest = hf[len("model.layers."):].split(".", 1)
            name = f"blk.{l}.{names[rest]}"
            if a == "llama" and rest.startswith("self_attn.q_proj"):
                t = permute(t, s["n_head"])
            if a == "llama" and rest.startswith("self_attn.k_proj"):
                t = permute(t, s["n_kv"])
        t = np.ascontiguousarray(t)
        g.add_tensor(name, t)
        shas[name] = hashlib.sha256(t.tobytes()).hexdigest()
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    return shas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "sparetire-ref"))
    args = ap.parse_args()
    llama = os.path.join(args.ref_dir, "llama_cpp_python-0.3.36", "vendor", "llama.cpp")
    sys.path.insert(0, os.path.join(llama, "gguf-py"))
    import gguf
    from safetensors.numpy import save_file

    v = tiny_vocab(gguf)
    n_vocab = len(v["tokens"])
    for i, s in enumerate(SPECS):
        rng = np.random.default_rng(1234 + i)
        d = os.path.join(ROOT, "tests/data/hf", s["name"])
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        hd = s["head_dim"] or s["d"] // s["n_head"]
        cfg = {"architectures": [s["hf"]], "model_type": s["arch"], "hidden_size": s["d"],
               "intermediate_size": s["ff"], "num_attention_heads": s["n_head"],
               "num_key_value_heads": s["n_kv"], "num_hidden_layers": s["n_layer"],
               "vocab_size": n_vocab, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "tie_word_embeddings": s["tied"], "hidden_act": "silu",
               "bos_token_id": v["bos"], "eos_token_id": v["eos"], "torch_dtype": s["dtype"]}
        if s["head_dim"]:
            cfg["head_dim"] = hd
        if s["bias"]:
            cfg["attention_bias"] = True
        with open(os.path.join(d, "config.json"), "w") as fh:
            json.dump(cfg, fh, indent=2)
        tok, tcfg = tokenizer_files(v, s["merges"])
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as fh:
            json.dump(tok, fh, ensure_ascii=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
            json.dump(tcfg, fh, indent=2, ensure_ascii=False)
        weights = make_weights(s, n_vocab, rng)
        names = list(weights)
        if s["shards"] == 1:
            save_file(weights, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        else:
            parts = np.array_split(np.arange(len(names)), s["shards"])
            wmap = {}
            for k, idx in enumerate(parts):
                fname = f"model-{k + 1:05d}-of-{s['shards']:05d}.safetensors"
                save_file({names[j]: weights[names[j]] for j in idx}, os.path.join(d, fname),
                          metadata={"format": "pt"})
                wmap.update({names[j]: fname for j in idx})
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
                json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, fh, indent=2)

        with tempfile.TemporaryDirectory() as tmp:
            ref = os.path.join(tmp, f"{s['name']}-ref.gguf")
            shas = reference_gguf(gguf, s, v, weights, ref)
            out = os.path.join(ROOT, "tests/golden/convert", f"{s['name']}.json")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/gen_model_goldens.py"), ref,
                            f"hf-{s['name']}", out, "--prompt-set", "tiny-chatml", "--n-gen", "16",
                            "--n-ctx", "256"], check=True)
            with open(out) as fh:
                golden = json.load(fh)
            golden["reference"] = ("F32 GGUF written by scripts/gen_hf_checkpoints.py with gguf-py "
                                   "(llama.cpp's converter's names and Q/K permutation)")
            golden["tensor_sha256"] = shas
            with open(out, "w") as fh:
                json.dump(golden, fh, indent=1)
                fh.write("\n")
        print(f"wrote tests/data/hf/{s['name']} and {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
