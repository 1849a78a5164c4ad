#!/usr/bin/env bash
# Compiles the Vulkan backend's GLSL compute shaders (crates/vulkan/shaders/*.comp) to the
# SPIR-V files the crate embeds (crates/vulkan/shaders/spv/), so that building sparetire never
# needs a shader compiler. Needs glslc (Debian: apt-get install glslc). Run it after editing a
# shader and commit the .spv files; the test `spirv_is_current` fails when they are stale.
#   scripts/gen_spirv.sh [OUT_DIR]    (default: crates/vulkan/shaders/spv)
set -euo pipefail
cd "$(dirname "$0")/../crates/vulkan/shaders"
out="${1:-spv}"
mkdir -p "$out"
flags=(--target-env=vulkan1.1 -O -I .)
for t in F32 F16 Q4_0 Q4_1 Q5_0 Q8_0 Q4_K Q6_K; do
    lower=$(echo "$t" | tr '[:upper:]' '[:lower:]')
    glslc "${flags[@]}" -DTYPE_$t matmul.comp -o "$out/matmul_$lower.spv"
    glslc "${flags[@]}" -DTYPE_$t -DROW_PER_THREAD matmul.comp -o "$out/matmul_rows_$lower.spv"
    glslc "${flags[@]}" -DTYPE_$t get_rows.comp -o "$out/get_rows_$lower.spv"
done
for s in rms_norm softmax rope glu eltwise kv_store attention quant_act; do
    glslc "${flags[@]}" "$s.comp" -o "$out/$s.spv"
done
