#!/usr/bin/env bash
# The test suite: fetch the test models into the store (once; a no-op after),
# then run every test of the workspace in release mode (real models are run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sparetire
SPARETIRE="${CARGO_TARGET_DIR:-target}/release/sparetire"
"$SPARETIRE" pull smollm2 >/dev/null
"$SPARETIRE" pull gemma3-270m >/dev/null
cargo test --workspace --release --locked
