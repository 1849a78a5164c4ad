#!/usr/bin/env bash
# The KV-cache table of docs/QUANTIZATION.md: for each cache type, its bytes per position and
# `sparetire perplexity --kl-base` against the f16 cache's logits (PPL, mean KL divergence, top-1
# agreement), on the model as shipped and on its F32 expansion (`quantize --type F32`: f32
# activations, so nothing but the cache moves the logits). With llama.cpp built
# (scripts/build_llamacpp.sh; LLAMA_BUILD=build-avx2 on an AVX-512 CPU), llama-perplexity's own
# KL for the same cache types on the shipped model is printed beside ours.
#
#   bash scripts/kv_quality.sh MODEL NAME TEXT CTX [TYPES...]
#   e.g. bash scripts/kv_quality.sh gemma3-270m gemma3-270m tests/data/ppl/text.txt 256
# THREADS (default 2). Work files go to ${KVQ_DIR:-/tmp/kv-quality}/NAME (about 4 bytes per
# parameter for the F32 file, plus n_vocab x scored positions x 4 bytes per logits file).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$1"; NAME="$2"; TEXT="$3"; CTX="$4"; shift 4
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(q8_0 q5_1 q5_0 q4_1 q4_0)
REF="${REF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
BIN="$REF/llama_cpp_python-0.3.36/vendor/llama.cpp/${LLAMA_BUILD:-build}/bin"
S="${CARGO_TARGET_DIR:-target}/release/sparetire"
T="${THREADS:-2}"
W="${KVQ_DIR:-/tmp/kv-quality}/$NAME"
mkdir -p "$W"
ppl() { # MODEL OUT_JSON [extra flags]
    local m="$1" out="$2"; shift 2
    "$S" perplexity -m "$m" -f "$TEXT" -c "$CTX" -t "$T" --json "$@" >"$out" 2>"$out.log"
}
[ -f "$W/f32.gguf" ] || "$S" quantize "$MODEL" "$W/f32.gguf" --type F32 --allow-requantize -t "$T" 2>"$W/f32.log"
for src in shipped f32; do
    m="$MODEL"; [ "$src" = f32 ] && m="$W/f32.gguf"
    ppl "$m" "$W/$src-f16.json" --save-logits "$W/$src-f16.logits"
    for ty in "${TYPES[@]}"; do
        ppl "$m" "$W/$src-$ty.json" -ctk "$ty" -ctv "$ty" --kl-base "$W/$src-f16.logits"
        echo "done $src $ty" >&2
    done
    rm -f "$W/$src-f16.logits"
done
if [ -x "$BIN/llama-perplexity" ]; then
    path="$("$S" list --json | python3 -c "import json,sys; print(next((r['path'] for r in json.load(sys.stdin) if r['name']=='$MODEL'), '$MODEL'))")"
    lp() { "$BIN/llama-perplexity" -m "$path" -f "$TEXT" -c "$CTX" -b "$CTX" -t "$T" "$@"; }
    lp --kl-divergence-base "$W/llama-f16.kld" >"$W/llama-f16.log" 2>&1
    for ty in "${TYPES[@]}"; do
        lp --kl-divergence-base "$W/llama-f16.kld" --kl-divergence -ctk "$ty" -ctv "$ty" >"$W/llama-$ty.log" 2>&1
        echo "done llama.cpp $ty" >&2
    done
    rm -f "$W/llama-f16.kld"
fi
python3 - "$W" "${TYPES[@]}" <<'PY'
import json, os, re, sys
w, *types = sys.argv[1:]
def load(n):
    return json.load(open(f"{w}/{n}.json"))
def llama(ty):
    p = f"{w}/llama-{ty}.log"
    if not os.path.exists(p):
        return None
    t = open(p).read()
    ppl = re.search(r"Mean PPL\(Q\)\s*:\s*([0-9.]+)", t)
    kl = re.search(r"Mean\s+KLD:\s*([0-9.-]+)", t)
    top = re.search(r"Same top p:\s*([0-9.]+)", t)
    return (float(ppl.group(1)) if ppl else None, float(kl.group(1)) if kl else None,
            float(top.group(1)) if top else None)
f16 = {s: load(f"{s}-f16") for s in ("shipped", "f32")}
kv16 = f16["shipped"]["kv_cache"]["bytes"]
print(f"f16 cache: {kv16 / f16['shipped']['n_ctx'] / 1024:.2f} KiB per position; PPL shipped "
      f"{f16['shipped']['ppl']:.4f}, F32 weights {f16['f32']['ppl']:.4f}; "
      f"{f16['shipped']['n_scored']} scored positions\n")
print("| cache | bytes vs f16 | PPL (shipped) | mean KL (shipped) | top-1 (shipped) | llama.cpp PPL / KL / top-1 (shipped) | PPL (F32 weights) | mean KL (F32 weights) | top-1 (F32 weights) |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
for ty in types:
    s, f = load(f"shipped-{ty}"), load(f"f32-{ty}")
    l = llama(ty)
    lc = "-" if l is None else " / ".join("?" if x is None else f"{x:.4f}" if i < 2 else f"{x:.2f}%" for i, x in enumerate(l))
    print(f"| {ty} | {s['kv_cache']['bytes'] / kv16:.3f} | {s['ppl']:.4f} | {s['kl']['mean']:.5f} | "
          f"{100 * s['kl']['top1_agreement']:.2f}% | {lc} | {f['ppl']:.4f} | {f['kl']['mean']:.5f} | "
          f"{100 * f['kl']['top1_agreement']:.2f}% |")
PY
