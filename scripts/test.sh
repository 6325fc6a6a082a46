#!/usr/bin/env bash
# The whole test suite on a fresh machine: install the real peers, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-tools.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
