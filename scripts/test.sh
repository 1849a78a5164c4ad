#!/usr/bin/env bash
# The test suite: install the OpenAI Python client and fetch the test models into the store
# (once; no-ops after),
# then run every test of the workspace in release mode (real models are run).
set -euo pipefail
cd "$(dirname "$0")/.."
# The server test drives `sparetire serve` with the official OpenAI Python client.
python3 -c "import openai" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check "openai==3.57.0"
# The cluster tests run the real mpirun: Open MPI from Debian, and libclang for the `mpi`
# crate's bindings (no-ops when installed).
need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
# The Vulkan tests run on Mesa's software device (lavapipe) through the system loader, and
# check the shipped SPIR-V against glslc's output.
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need+=(libvulkan1)
command -v glslc >/dev/null 2>&1 || need+=(glslc)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --locked -p sparetire --features mpi
SPARETIRE="${CARGO_TARGET_DIR:-target}/release/sparetire"
"$SPARETIRE" pull smollm2 >/dev/null
"$SPARETIRE" pull gemma3-270m >/dev/null
cargo test --workspace --release --locked --features sparetire/mpi
# ARM: cross-build for aarch64 and run the NEON kernel tests under qemu (both variants).
bash scripts/test_aarch64.sh
