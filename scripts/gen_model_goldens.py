#!/usr/bin/env python3
"""Record llama.cpp's tokens and logits for a GGUF model as a golden JSON file.

    PYTHONPATH=<llama_cpp_python-0.3.36> LLAMA_CPP_LIB_PATH=<its vendor/llama.cpp/build/bin> \
        python3 scripts/gen_model_goldens.py MODEL_PATH NAME OUT_JSON [--prompts P ...]

(scripts/build_llamacpp.sh prints both paths.) Uses the low-level llama.cpp API through the
ctypes bindings of llama-cpp-python, with llama.cpp's default context parameters (F16 KV cache,
flash attention "auto", which resolves to enabled on the CPU backend), as llama-completion does.
`--cache-type-k/-v q8_0` (…) record a quantized KV cache instead (llama.cpp's -ctk/-ctv).

For every prompt:
  prompt_tokens      llama_tokenize(add_special=true, parse_special=true): BOS only if the GGUF's
                     tokenizer.ggml.add_bos_token says so; special tokens such as <|im_start|> parsed.
  greedy_tokens      up to N_GEN greedy tokens: the prompt is decoded as one batch, then each argmax
                     token is fed back one at a time; stops before an end-of-generation token.
  greedy_margins     per greedy step, logit(top1) - logit(top2).
  greedy_top_ids     per greedy step, the top-K ids / logits of the logits that chose it
  greedy_top_logits  (step 0: the batched prompt's last row; later: single-token decodes).
  teacher_top_ids    prompt_tokens + greedy_tokens decoded as ONE batch in a fresh KV cache, logits
  teacher_top_logits at every position; the top-K ids (ties: lower id first) and their logits.
                     Row i predicts the token at position i+1.
Floats are rounded to 5 decimals.
"""
import argparse
import ctypes
import hashlib
import json
import os
import sys

import numpy as np

try:
    import llama_cpp as L
except Exception as e:  # pragma: no cover
    sys.exit(f"cannot import llama_cpp ({e}); set PYTHONPATH and LLAMA_CPP_LIB_PATH "
             "as printed by scripts/build_llamacpp.sh")

LLAMA_CPP_VERSION = "0c1e57098 (llama-cpp-python 0.3.36)"

PROMPT_SETS = {
    "smollm2": [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived",
        "The three primary colors are red, yellow and",
        "In 1969, Neil Armstrong became the first person to",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ],
    "tiny": [
        "The quick brown fox",
        "Hello, world! This is a test.",
        "Once upon a time there was a little girl",
        "We went to the market and",
    ],
    # Base (non-chat) models such as Gemma 3 270M: the five plain continuations of "smollm2".
    "base": [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived",
        "The three primary colors are red, yellow and",
        "In 1969, Neil Armstrong became the first person to",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    ],
    # Tiny random models with a ChatML template (tiny-qwen2, tiny-qwen3): three plain prompts
    # and one ChatML turn, so <|im_start|>/<|im_end|> are parsed as special tokens.
    "tiny-chatml": [
        "The quick brown fox",
        "Hello, world! This is a test.",
        "Once upon a time there was a little girl",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    ],
}

_log_lines = []


@L.llama_log_callback
def _log_cb(level, text, user_data):
    _log_lines.append(text.decode("utf-8", "replace") if text else "")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ggml type ids of the KV cache types (--cache-type-k/-v)
KV_TYPES = {"f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8}


class Ref:
    def __init__(self, model_path, n_ctx, n_threads, type_k="f16", type_v="f16"):
        L.llama_log_set(_log_cb, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            sys.exit(f"llama.cpp failed to load {model_path}:\n" + "".join(_log_lines[-20:]))
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.type_k = KV_TYPES[type_k]
        cp.type_v = KV_TYPES[type_v]
        self.cparams = cp
        self.n_ctx = n_ctx
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            sys.exit("llama.cpp failed to create a context:\n" + "".join(_log_lines[-20:]))
        self.batch = L.llama_batch_init(n_ctx, 0, 1)

    def tokenize(self, text):
        b = text.encode("utf-8")
        n_max = len(b) + 16
        buf = (L.llama_token * n_max)()
        n = L.llama_tokenize(self.vocab, b, len(b), buf, n_max, True, True)
        if n < 0:
            raise RuntimeError("tokenize buffer too small")
        return [buf[i] for i in range(n)]

    def piece(self, tok):
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, True)
        return buf.raw[:max(n, 0)]

    def clear(self):
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def decode(self, tokens, pos0, all_logits):
        """Decode tokens at positions pos0.. as one batch; return logits rows (float32 copies)."""
        n = len(tokens)
        assert pos0 + n <= self.n_ctx, "sequence longer than n_ctx"
        b = self.batch
        b.n_tokens = n
        for i, t in enumerate(tokens):
            b.token[i] = t
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if (all_logits or i == n - 1) else 0
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        rows = range(n) if all_logits else [n - 1]
        out = []
        for i in rows:
            p = L.llama_get_logits_ith(self.ctx, i)
            out.append(np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy())
        return out

    def is_eog(self, tok):
        return bool(L.llama_vocab_is_eog(self.vocab, tok))


def top2_margin(logits):
    top = np.partition(logits, -2)[-2:]
    return float(top[1] - top[0])


def topk(logits, k):
    idx = np.argsort(-logits, kind="stable")[:k]  # ties: lower id first
    return [int(i) for i in idx], [round(float(logits[i]), 5) for i in idx]


def run_case(ref, prompt, n_gen, top_k):
    ptoks = ref.tokenize(prompt)
    assert ptoks, "empty prompt"
    # Greedy: batched prompt, then one token at a time.
    ref.clear()
    logits = ref.decode(ptoks, 0, all_logits=False)[0]
    gen, margins, g_ids, g_logits = [], [], [], []
    for _ in range(n_gen):
        tok = int(np.argmax(logits))  # first maximum = lowest id, like llama.cpp's greedy sampler
        if ref.is_eog(tok):
            break
        gen.append(tok)
        margins.append(top2_margin(logits))
        i, l = topk(logits, top_k)
        g_ids.append(i)
        g_logits.append(l)
        if len(gen) == n_gen:
            break
        logits = ref.decode([tok], len(ptoks) + len(gen) - 1, all_logits=False)[0]
    # Teacher forcing: everything in one batch, logits at every position.
    ref.clear()
    seq = ptoks + gen
    rows = ref.decode(seq, 0, all_logits=True)
    top_ids, top_logits = [], []
    for r in rows:
        i, l = topk(r, top_k)
        top_ids.append(i)
        top_logits.append(l)
    # Consistency: teacher-forced argmax should reproduce the greedy tokens except at near-ties.
    disagree = [i for i, t in enumerate(gen) if top_ids[len(ptoks) - 1 + i][0] != t]
    return {
        "prompt": prompt,
        "prompt_tokens": ptoks,
        "greedy_tokens": gen,
        "greedy_text": b"".join(ref.piece(t) for t in gen).decode("utf-8", "replace"),
        "greedy_margins": [round(m, 5) for m in margins],
        "greedy_top_ids": g_ids,
        "greedy_top_logits": g_logits,
        "teacher_top_ids": top_ids,
        "teacher_top_logits": top_logits,
    }, disagree


def dump(doc, path):
    """JSON with one line per case list entry row (compact, but diffs stay readable)."""
    def enc(v, ind):
        pad = "  " * ind
        if isinstance(v, dict):
            items = [f'{pad}  {json.dumps(k)}: {enc(x, ind + 1)}' for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list) and v and isinstance(v[0], (list, dict)):
            items = [pad + "  " + enc(x, ind + 1) for x in v]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(v, ensure_ascii=False)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(enc(doc, 0) + "\n")


def main():
    ap = argparse.ArgumentParser(description="llama.cpp golden tokens/logits for a GGUF model")
    ap.add_argument("model")
    ap.add_argument("name")
    ap.add_argument("out_json")
    ap.add_argument("--prompts", nargs="+", help="prompts (default: a built-in set chosen by NAME)")
    ap.add_argument("--prompt-set", choices=sorted(PROMPT_SETS),
                    help="built-in prompt set (default: 'tiny' if NAME contains 'tiny', else smollm2)")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-type-k", choices=sorted(KV_TYPES), default="f16",
                    help="KV cache type of keys (llama.cpp's -ctk)")
    ap.add_argument("--cache-type-v", choices=sorted(KV_TYPES), default="f16",
                    help="KV cache type of values (llama.cpp's -ctv)")
    a = ap.parse_args()

    if a.prompts:
        prompts = a.prompts
    else:
        ps = a.prompt_set or ("tiny" if "tiny" in a.name else "smollm2")
        prompts = PROMPT_SETS[ps]

    ref = Ref(a.model, a.n_ctx, a.threads, a.cache_type_k, a.cache_type_v)
    log = "".join(_log_lines)
    fa = "enabled" if "Flash Attention enabled" in log else (
        "disabled" if "Flash Attention not supported" in log else "auto (unresolved)")

    cases = []
    for p in prompts:
        case, disagree = run_case(ref, p, a.n_gen, a.top_k)
        m = np.array(case["greedy_margins"]) if case["greedy_margins"] else np.zeros(0)
        print(f"{a.name}: {len(case['prompt_tokens'])} prompt + {len(case['greedy_tokens'])} greedy "
              f"tokens; margins <0.25: {(m < 0.25).sum()}, min {m.min() if m.size else 'n/a'}; "
              f"teacher-forced argmax != greedy at steps {disagree}; "
              f"{case['greedy_text'][:60]!r}", file=sys.stderr)
        cases.append(case)

    doc = {
        "model": a.name,
        "file": os.path.basename(a.model),
        "file_sha256": sha256_file(a.model),
        "llama_cpp": LLAMA_CPP_VERSION,
        "n_ctx": a.n_ctx,
        "settings": {
            "n_threads": a.threads,
            "n_batch": a.n_ctx,
            "n_ubatch": a.n_ctx,
            "flash_attn": fa,
            "kv_cache": "f16" if a.cache_type_k == a.cache_type_v == "f16" else
                        f"K {a.cache_type_k}, V {a.cache_type_v}",
            "cache_type_k": a.cache_type_k,
            "cache_type_v": a.cache_type_v,
            "add_bos": bool(L.llama_vocab_get_add_bos(ref.vocab)),
            "n_gen": a.n_gen,
            "top_k": a.top_k,
        },
        "cases": cases,
    }
    dump(doc, a.out_json)
    print(f"wrote {a.out_json}", file=sys.stderr)


if __name__ == "__main__":
    main()
