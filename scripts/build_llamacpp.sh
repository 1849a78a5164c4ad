#!/usr/bin/env bash
# Build the llama.cpp reference that sparetire is compared against.
#
# Reference: llama.cpp 0c1e57098, as vendored in llama-cpp-python 0.3.36 (source package).
#
# Usage: scripts/build_llamacpp.sh [DIR]
#   DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref
#
# Result:
#   DIR/llama_cpp_python-0.3.36/                         unpacked source package (Python bindings)
#   DIR/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin  llama-bench, llama-perplexity,
#       llama-completion, llama-tokenize, llama-quantize, llama-server (for
#       bench/serve_side_by_side.sh) and libllama.so / libggml*.so
#
# Idempotent: each step is skipped when its output already exists.
# Env: JOBS (parallel build jobs, default: nproc).
#      LLAMA_ISA=native (default: build/, -march=native: the yardstick for speed) or
#      LLAMA_ISA=avx2 (build-avx2/: AVX2+FMA+F16C only, whatever the CPU has). The goldens in
#      tests/golden come from an AVX2 build: on a CPU with AVX-512, llama.cpp's native build
#      takes other (AVX-512) kernels whose float sums differ, so regenerate goldens with
#      LLAMA_ISA=avx2 there.
set -euo pipefail

VERSION=0.3.36
DIR="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sparetire-ref}"
PKG="llama_cpp_python-${VERSION}"
SRC="$DIR/$PKG"
LLAMA="$SRC/vendor/llama.cpp"
LLAMA_ISA="${LLAMA_ISA:-native}"
case "$LLAMA_ISA" in
    native) BUILD=build; ISA_FLAGS=() ;;
    avx2) BUILD=build-avx2; ISA_FLAGS=(-DGGML_NATIVE=OFF) ;;
    *) echo "error: LLAMA_ISA must be native or avx2, not $LLAMA_ISA" >&2; exit 2 ;;
esac
BIN="$LLAMA/$BUILD/bin"

# A CPU may list AMX while its kernel (or hypervisor) does not enable the tile state
# (XTILEDATA): llama.cpp's native build then dies with SIGILL in its AMX kernels. Build
# without AMX there, the fastest llama.cpp that runs on such a machine.
amx_unusable() {
    grep -qw amx_int8 /proc/cpuinfo 2>/dev/null || return 1
    local t; t=$(mktemp -d)
    cat >"$t/amx.c" <<'C'
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    unsigned long mask = 0;
    if (syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_SUPP */, &mask) != 0) return 1;
    return (mask & (1UL << 18)) ? 0 : 1; /* XTILEDATA */
}
C
    local ok=1
    gcc -O1 "$t/amx.c" -o "$t/amx" 2>/dev/null && "$t/amx" && ok=0
    rm -rf "$t"
    [ $ok -ne 0 ]
}
if [ "$LLAMA_ISA" = native ] && amx_unusable; then
    echo ">> this CPU lists AMX but the kernel does not enable its tile data: building without AMX" >&2
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    ISA_FLAGS+=("-DCMAKE_C_FLAGS=$NO_AMX" "-DCMAKE_CXX_FLAGS=$NO_AMX")
fi
TARGETS=(llama-bench llama-perplexity llama-completion llama-tokenize llama-quantize llama-server)
JOBS="${JOBS:-$(nproc)}"

mkdir -p "$DIR"

# 1. Source package (sdist; contains vendor/llama.cpp).
if [ ! -f "$LLAMA/CMakeLists.txt" ]; then
    if ! ls "$DIR/$PKG".tar.gz >/dev/null 2>&1; then
        echo ">> downloading llama-cpp-python==$VERSION source package" >&2
        python3 -m pip download --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$VERSION" -d "$DIR"
    fi
    echo ">> unpacking $PKG.tar.gz" >&2
    # Unpack into a scratch directory first so an interrupted run never leaves a half tree.
    rm -rf "$DIR/.unpack" "$SRC"
    mkdir -p "$DIR/.unpack"
    tar -xzf "$DIR/$PKG.tar.gz" -C "$DIR/.unpack"
    mv "$DIR/.unpack/$PKG" "$SRC"
    rmdir "$DIR/.unpack"
fi
[ -f "$LLAMA/CMakeLists.txt" ] || { echo "error: $LLAMA/CMakeLists.txt missing after unpack" >&2; exit 1; }

# 2. Build tools.
if ! command -v cmake >/dev/null 2>&1; then
    echo ">> installing cmake" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y cmake
fi

# 3. Build (skipped when every target and libllama.so already exist).
built=1
for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || built=0
done
[ -e "$BIN/libllama.so" ] || built=0

if [ "$built" -eq 0 ]; then
    echo ">> building llama.cpp ($LLAMA_ISA) in $LLAMA/$BUILD (jobs: $JOBS; takes minutes)" >&2
    (
        cd "$LLAMA"
        cmake -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" \
            -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON
        cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"
    )
else
    echo ">> llama.cpp already built in $BIN" >&2
fi

for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || { echo "error: $BIN/$t missing after build" >&2; exit 1; }
done
[ -e "$BIN/libllama.so" ] || { echo "error: $BIN/libllama.so missing after build" >&2; exit 1; }

# The Python bindings need numpy and diskcache (no pip install of the package itself).
python3 -c "import numpy, diskcache" 2>/dev/null \
    || echo "note: the Python bindings need numpy and diskcache: python3 -m pip install numpy diskcache" >&2

cat <<EOF
# llama.cpp reference (0c1e57098, llama-cpp-python $VERSION) is ready:
export LLAMA_CPP_BIN=$BIN
export PYTHONPATH=$SRC
export LLAMA_CPP_LIB_PATH=$BIN
EOF
