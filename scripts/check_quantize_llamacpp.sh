#!/usr/bin/env bash
# Quantizes the generated test models (crates/cli/tests/quantize.rs) with the pinned llama.cpp's
# llama-quantize for every file type, checks that llama.cpp loads and runs each result, and
# writes tests/golden/quantize/llamacpp.json (sha256 and tensor types of each output), which
# `cargo test --test quantize` compares sparetire's output against. With --compare it also runs
# `sparetire quantize` and reports any type whose bytes differ, and runs `sparetire convert`'s
# output for each checkpoint in tests/data/hf in llama.cpp.
#
#   bash scripts/check_quantize_llamacpp.sh [--compare] [REF_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
COMPARE=0
if [ "${1:-}" = "--compare" ]; then COMPARE=1; shift; fi
REF="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
LLAMA="$REF/llama_cpp_python-0.3.36/vendor/llama.cpp"
BIN="$LLAMA/build/bin"
for t in llama-quantize llama-completion; do
    [ -x "$BIN/$t" ] || { echo "error: $BIN/$t missing: run scripts/build_llamacpp.sh" >&2; exit 1; }
done
TYPES=(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K F16 BF16 F32)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SPARETIRE_QUANT_INPUTS="$WORK/in" cargo test --release --locked -p sparetire --test quantize -- \
    --ignored --exact write_inputs >&2
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUTS="$WORK/out"
mkdir -p "$OUTS"
for in in "$WORK"/in/*.gguf; do
    name="$(basename "$in" .gguf)"
    for ty in "${TYPES[@]}"; do
        out="$OUTS/$name-$ty.gguf"
        "$BIN/llama-quantize" "$in" "$out" "$ty" 2 >"$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
        # llama.cpp loads and runs the result (4 greedy tokens).
        "$BIN/llama-completion" -m "$out" -p "hello world" -n 4 --temp 0 -no-cnv -t 2 \
            >"$WORK/run" 2>&1 </dev/null || { cat "$WORK/run" >&2; echo "error: llama.cpp cannot run $out" >&2; exit 1; }
        echo "$name $ty: llama-quantize ok, llama.cpp runs it" >&2
    done
done
python3 - "$WORK" "$LLAMA/gguf-py" tests/golden/quantize/llamacpp.json "${TYPES[@]}" <<'PY'
import hashlib, json, os, sys
work, gguf_py, out_path, *types = sys.argv[1:]
sys.path.insert(0, gguf_py)
import gguf
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
res = {"llama_cpp": "0c1e57098 (llama-cpp-python 0.3.36), llama-quantize IN OUT TYPE 2",
       "generated_by": "scripts/check_quantize_llamacpp.sh",
       "inputs": {}, "outputs": {}}
for f in sorted(os.listdir(os.path.join(work, "in"))):
    name = f[:-5]
    res["inputs"][name] = {"sha256": sha(os.path.join(work, "in", f))}
    res["outputs"][name] = {}
    for ty in types:
        p = os.path.join(work, "out", f"{name}-{ty}.gguf")
        r = gguf.GGUFReader(p)
        res["outputs"][name][ty] = {
            "sha256": sha(p),
            "size": os.path.getsize(p),
            "tensor_types": {t.name: t.tensor_type.name for t in r.tensors},
        }
os.makedirs(os.path.dirname(out_path), exist_ok=True)
with open(out_path, "w") as fh:
    json.dump(res, fh, indent=1, sort_keys=True)
    fh.write("\n")
print(f"wrote {out_path}", file=sys.stderr)
PY
if [ "$COMPARE" = 1 ]; then
    S="${CARGO_TARGET_DIR:-target}/release/sparetire"
    cargo build --release --locked -p sparetire >&2
    bad=0
    for in in "$WORK"/in/*.gguf; do
        name="$(basename "$in" .gguf)"
        for ty in "${TYPES[@]}"; do
            "$S" quantize "$in" "$WORK/ours.gguf" --type "$ty" -t 2 2>/dev/null
            if cmp -s "$WORK/ours.gguf" "$OUTS/$name-$ty.gguf"; then
                echo "$name $ty: identical" >&2
            else
                echo "$name $ty: DIFFERENT" >&2; bad=1
                cp "$WORK/ours.gguf" "/tmp/ours-$name-$ty.gguf"; cp "$OUTS/$name-$ty.gguf" "/tmp/theirs-$name-$ty.gguf"
            fi
        done
    done
    # `sparetire convert` outputs of the tiny checkpoints run in llama.cpp too.
    for m in tests/data/hf/*/; do
        for ty in F16 Q8_0 Q4_K_M; do
            "$S" convert "$m" "$WORK/conv.gguf" --type "$ty" -t 2 2>/dev/null
            if "$BIN/llama-completion" -m "$WORK/conv.gguf" -p "The quick brown fox" -n 8 --temp 0 \
                -no-cnv -t 2 </dev/null >"$WORK/run" 2>&1; then
                echo "convert $(basename "$m") $ty: llama.cpp runs it" >&2
            else
                echo "convert $(basename "$m") $ty: llama.cpp FAILED" >&2; bad=1
            fi
        done
    done
    exit $bad
fi
