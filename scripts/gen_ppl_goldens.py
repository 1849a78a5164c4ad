#!/usr/bin/env python3
"""Record llama-perplexity's result for one model, text and context size as a golden JSON file.

    PYTHONPATH=<llama_cpp_python-0.3.36> LLAMA_CPP_LIB_PATH=<its vendor/llama.cpp/build/bin> \
        python3 scripts/gen_ppl_goldens.py MODEL_PATH NAME TEXT OUT_JSON [--n-ctx 128] [--threads 2]

Runs `BIN/llama-perplexity -m MODEL -f TEXT -c N_CTX -b N_CTX -t THREADS` (BIN defaults to
$LLAMA_CPP_LIB_PATH), parses the running per-chunk values `[i]x` it prints on stdout and the
`Final estimate: PPL = p +/- s` line, and counts the tokens the way llama-perplexity does
(common_tokenize(text, add_special=true, parse_special=false) after `-f` dropped one trailing
newline) through the llama.cpp Python bindings. tests/golden/perplexity/README.md explains the
chunking that produced the numbers.
"""
import argparse
import ctypes
import hashlib
import json
import os
import re
import subprocess
import sys

LLAMA_CPP_VERSION = "0c1e57098 (llama-cpp-python 0.3.36)"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def count_tokens(model_path, text):
    import llama_cpp as L
    global _quiet_log  # keep the ctypes callback alive
    _quiet_log = L.llama_log_callback(lambda level, t, user_data: None)
    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.vocab_only = True
    model = L.llama_model_load_from_file(model_path.encode(), mp)
    if not model:
        sys.exit(f"llama.cpp failed to load {model_path}")
    vocab = L.llama_model_get_vocab(model)
    b = text.encode("utf-8")
    n_max = len(b) + 16
    buf = (L.llama_token * n_max)()
    n = L.llama_tokenize(vocab, b, len(b), buf, n_max, True, False)
    assert n >= 0
    add_bos = bool(L.llama_vocab_get_add_bos(vocab))
    bos = int(L.llama_vocab_bos(vocab))
    toks = [buf[i] for i in range(n)]
    L.llama_model_free(model)
    return toks, add_bos, bos


def main():
    ap = argparse.ArgumentParser(description="llama-perplexity golden for a GGUF model")
    ap.add_argument("model")
    ap.add_argument("name")
    ap.add_argument("text")
    ap.add_argument("out_json")
    ap.add_argument("--n-ctx", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-type-k", default="f16", help="llama-perplexity -ctk (default f16)")
    ap.add_argument("--cache-type-v", default="f16", help="llama-perplexity -ctv (default f16)")
    ap.add_argument("--bin", default=os.environ.get("LLAMA_CPP_LIB_PATH"),
                    help="directory with llama-perplexity (default $LLAMA_CPP_LIB_PATH)")
    a = ap.parse_args()
    if not a.bin:
        sys.exit("need --bin DIR or LLAMA_CPP_LIB_PATH")

    kv = []
    if (a.cache_type_k, a.cache_type_v) != ("f16", "f16"):
        kv = ["-ctk", a.cache_type_k, "-ctv", a.cache_type_v]
    cmd = [os.path.join(a.bin, "llama-perplexity"), "-m", a.model, "-f", a.text,
           "-c", str(a.n_ctx), "-b", str(a.n_ctx), "-t", str(a.threads)] + kv
    print(">> " + " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + "\n" + p.stderr
    if p.returncode != 0:
        sys.exit(f"llama-perplexity failed ({p.returncode}):\n{out[-3000:]}")
    chunk_ppls = [float(x) for x in re.findall(r"\[(?:\d+)\]([0-9.]+|nan|inf),", p.stdout)]
    idx = [int(x) for x in re.findall(r"\[(\d+)\][0-9.]+,", p.stdout)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    mc = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", out)
    if not (m and mc and chunk_ppls):
        sys.exit("could not parse llama-perplexity's output:\n" + out[-3000:])
    n_chunks, n_ctx, n_batch, n_seq = (int(x) for x in mc.groups())
    assert n_ctx == a.n_ctx and idx == list(range(1, n_chunks + 1)), (n_ctx, idx)

    with open(a.text, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    if text.endswith("\n"):
        text = text[:-1]  # what `-f` does
    toks, add_bos, bos = count_tokens(a.model, text)
    first = n_ctx // 2
    doc = {
        "model": a.name,
        "file": os.path.basename(a.model),
        "file_sha256": sha256_file(a.model),
        "llama_cpp": LLAMA_CPP_VERSION,
        "text": os.path.relpath(os.path.abspath(a.text),
                                os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "text_sha256": hashlib.sha256(raw).hexdigest(),
        "command": f"llama-perplexity -m {os.path.basename(a.model)} -f {a.text} -c {a.n_ctx} "
                   f"-b {a.n_ctx} -t {a.threads}" + "".join(" " + x for x in kv),
        "cache_type_k": a.cache_type_k,
        "cache_type_v": a.cache_type_v,
        "n_ctx": n_ctx,
        "n_batch": n_batch,
        "n_seq": n_seq,
        "add_bos": add_bos,
        "bos": bos,
        "n_tokens": len(toks),
        "n_chunks": n_chunks,
        "first": first,
        "n_scored_per_chunk": n_ctx - first - 1,
        "n_scored": n_chunks * (n_ctx - first - 1),
        "ppl": float(m.group(1)),
        "ppl_sd": float(m.group(2)),
        "chunk_ppls": chunk_ppls,
    }
    assert n_chunks == len(toks) // n_ctx, (n_chunks, len(toks))
    os.makedirs(os.path.dirname(os.path.abspath(a.out_json)), exist_ok=True)
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"{a.name} n_ctx={n_ctx}: {len(toks)} tokens, {n_chunks} chunks, PPL {doc['ppl']} "
          f"+/- {doc['ppl_sd']}; wrote {a.out_json}", file=sys.stderr)


if __name__ == "__main__":
    main()
