#!/usr/bin/env bash
# The quality table of docs/QUANTIZATION.md: a model dequantized to F32, then quantized to each
# type by llama.cpp's llama-quantize and by `sparetire quantize`; for each result its file size
# and `sparetire perplexity --kl-base` against the F32 model's logits (PPL, mean KL divergence,
# top-1 agreement). Identical files (the expected case) are measured once.
#
#   bash scripts/quant_quality.sh MODEL NAME TEXT CTX [TYPES...]
#   e.g. bash scripts/quant_quality.sh smollm2 smollm2 /tmp/ppl-long.txt 512
# PPL_FLAGS adds perplexity flags (e.g. "--chunks 8"); THREADS (default 2). Work files go to ${QQ_DIR:-/tmp/quant-quality}/NAME (a few GB for a 262k vocabulary).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$1"; NAME="$2"; TEXT="$3"; CTX="$4"; shift 4
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S Q5_K_M Q6_K Q8_0)
REF="${REF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
BIN="$REF/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin"
S="${CARGO_TARGET_DIR:-target}/release/sparetire"
T="${THREADS:-2}"
W="${QQ_DIR:-/tmp/quant-quality}/$NAME"
mkdir -p "$W"
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ppl() { # MODEL OUT_JSON [extra flags]
    local m="$1" out="$2"; shift 2
    # shellcheck disable=SC2086 # PPL_FLAGS is a list of flags
    "$S" perplexity -m "$m" -f "$TEXT" -c "$CTX" -t "$T" ${PPL_FLAGS:-} --json "$@" >"$out" 2>"$out.log"
}
[ -f "$W/f32.gguf" ] || "$S" quantize "$MODEL" "$W/f32.gguf" --type F32 --allow-requantize -t "$T" 2>"$W/f32.log"
[ -s "$W/base.json" ] || ppl "$W/f32.gguf" "$W/base.json" --save-logits "$W/base.logits"
rows=()
for ty in "${TYPES[@]}"; do
    "$BIN/llama-quantize" "$W/f32.gguf" "$W/llama-$ty.gguf" "$ty" "$T" >"$W/llama-$ty.log" 2>&1
    "$S" quantize "$W/f32.gguf" "$W/ours-$ty.gguf" --type "$ty" -t "$T" 2>"$W/ours-$ty.log"
    [ -s "$W/ours-$ty.json" ] || ppl "$W/ours-$ty.gguf" "$W/ours-$ty.json" --kl-base "$W/base.logits"
    if cmp -s "$W/ours-$ty.gguf" "$W/llama-$ty.gguf"; then
        same=yes
        cp "$W/ours-$ty.json" "$W/llama-$ty.json"
    else
        same=no
        [ -s "$W/llama-$ty.json" ] || ppl "$W/llama-$ty.gguf" "$W/llama-$ty.json" --kl-base "$W/base.logits"
    fi
    rm -f "$W/llama-$ty.gguf"
    echo "$ty $same" >>"$W/identical.txt"
    echo "done $ty (identical: $same)" >&2
done
python3 - "$W" "${TYPES[@]}" <<'PY'
import json, os, sys
w, *types = sys.argv[1:]
base = json.load(open(f"{w}/base.json"))
f32 = os.path.getsize(f"{w}/f32.gguf") / 2**20
print(f"F32 base: {f32:.1f} MiB, PPL {base['ppl']:.4f} ± {base['ppl_sd']:.4f}, {base['n_scored']} scored positions\n")
print("| type | size MiB (ours) | bytes = llama-quantize's | PPL ours | PPL llama-quantize's | mean KL ours | mean KL llama-quantize's | top-1 ours | top-1 llama-quantize's |")
print("|---|---|---|---|---|---|---|---|---|")
same = dict(l.split() for l in open(f"{w}/identical.txt"))
for ty in types:
    o = json.load(open(f"{w}/ours-{ty}.json")); l = json.load(open(f"{w}/llama-{ty}.json"))
    size = os.path.getsize(f"{w}/ours-{ty}.gguf") / 2**20
    print(f"| {ty} | {size:.1f} | {same.get(ty, '?')} | {o['ppl']:.4f} | {l['ppl']:.4f} | "
          f"{o['kl']['mean']:.5f} | {l['kl']['mean']:.5f} | {100*o['kl']['top1_agreement']:.2f}% | {100*l['kl']['top1_agreement']:.2f}% |")
PY
