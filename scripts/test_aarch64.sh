#!/usr/bin/env bash
# ARM (aarch64) check, run at the end of scripts/test.sh:
#  1. cross-builds the whole `sparetire` binary for aarch64-unknown-linux-gnu;
#  2. runs the quant crate's tests (every NEON kernel against the scalar reference, matmul, the
#     llama.cpp goldens with the tolerance that applies off x86) under qemu-user, twice: as
#     qemu's default CPU (`max`: NEON + dotprod) and as a Cortex-A53 (NEON, no dotprod), so
#     run-time detection picks each kernel variant in turn (SPARETIRE_EXPECT_ISA makes a test
#     check which one was picked).
# Only the quant crate's tests run under qemu: the tests that load real model files live in other
# crates. Installs what it needs if missing: the Rust target (rustup), the cross linker and C
# library, qemu-user (apt-get, through sudo when not root). .cargo/config.toml names the linker
# and the qemu runner. On an aarch64 host the tests simply run natively.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
start=$SECONDS

if [ "$(uname -m)" = aarch64 ]; then
    cargo build --release --locked -p sparetire
    cargo test --release --locked -p sparetire-quant
    exit 0
fi

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/crt1.o ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "test_aarch64.sh: needs ${need[*]} (apt-get) but is not root and has no sudo" >&2
            exit 1
        fi
    fi
    echo "test_aarch64.sh: installing ${need[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "test_aarch64.sh: building sparetire for $TARGET" >&2
cargo build --release --locked --target "$TARGET" -p sparetire
echo "test_aarch64.sh: quant tests under qemu, CPU max (NEON + dotprod)" >&2
QEMU_CPU=max SPARETIRE_EXPECT_ISA=neon-dotprod \
    cargo test --release --locked --target "$TARGET" -p sparetire-quant
echo "test_aarch64.sh: quant tests under qemu, CPU cortex-a53 (NEON without dotprod)" >&2
QEMU_CPU=cortex-a53 SPARETIRE_EXPECT_ISA=neon \
    cargo test --release --locked --target "$TARGET" -p sparetire-quant
echo "test_aarch64.sh: passed in $((SECONDS - start)) s" >&2
