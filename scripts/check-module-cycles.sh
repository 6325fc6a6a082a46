#!/usr/bin/env bash
# Fails when a crate's modules import each other in a circle.
#
#   scripts/check-module-cycles.sh [CRATE...]     (default: every crate that must be acyclic)
#
# cargo-modules draws each crate's module graph ("uses" edges between modules; items,
# external crates and test code left out) and tsort looks for loops in it. A loop is
# printed as the modules it runs through. cargo-modules is installed if missing (pinned:
# later versions need a newer rustc than the workspace's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly CARGO_MODULES_VERSION=0.27.0
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(registry-client registry-proxy registry-aws registry-gcp registry-ali conformance)

if ! cargo modules --version 2>/dev/null | grep -q "$CARGO_MODULES_VERSION"; then
  echo "installing cargo-modules $CARGO_MODULES_VERSION" >&2
  cargo install --locked --quiet cargo-modules --version "$CARGO_MODULES_VERSION"
fi

failed=0
for crate in "${crates[@]}"; do
  edges=$(cargo modules dependencies --lib -p "$crate" --no-externs --no-sysroot \
            --no-fns --no-traits --no-types --no-owns 2>/dev/null |
          sed -n -E 's/^ *"([^"]+)" -> "([^"]+)" \[label="uses".*/\1 \2/p' |
          awk '$1 != $2')
  # tsort fails when it finds a loop; what it prints is the answer.
  loops=$(printf '%s\n' "$edges" | { tsort 2>&1 >/dev/null || true; } |
          awk '/input contains a loop/ { if (loop) print loop; loop = ""; next }
               { sub(/^tsort: /, ""); loop = loop (loop ? " -> " : "") $0 }
               END { if (loop) print loop }')
  if [ -n "$loops" ]; then
    echo "$crate: modules in a circle (each line one loop):"
    printf '%s\n' "$loops" | sort -u | sed 's/^/  /'
    failed=1
  else
    echo "$crate: no module cycles ($(printf '%s\n' "$edges" | grep -c .) import edges)"
  fi
done
exit "$failed"
