#!/usr/bin/env bash
# The conformance matrix: runs the conformance suite for every endpoint (the
# generic oci provider against Distribution in each auth mode, aws, gcp and
# ali against their emulators, the pull-through cache) and writes
# docs/conformance.md: case × endpoint → passed, skipped (the capability the
# endpoint lacks) or failed, with the tools' versions and the date.
#
#   scripts/conformance-matrix.sh [--out FILE] [--skip-install]
#
# Exits 1 when a case failed (the matrix is written all the same).
set -euo pipefail
cd "$(dirname "$0")/.."

out=docs/conformance.md
install=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --skip-install) install=0; shift ;;
        *) echo "usage: $0 [--out FILE] [--skip-install]" >&2; exit 2 ;;
    esac
done
[ "$install" = 1 ] && bash scripts/install-test-tools.sh

report=$(mktemp)
trap 'rm -f "$report"' EXIT
export CONFORMANCE_REPORT=$report
status=0
# Every endpoint's suite; a failure is recorded and the rest still run.
# Each crate has one test binary, `it`; the suite is its `oci` (conformance) or
# `conformance` module (the providers and the cache).
cargo test --no-fail-fast -p conformance --test it -- oci:: || status=1
cargo test --no-fail-fast -p registry-aws -p registry-gcp -p registry-ali -p registry-proxy \
    --test it -- conformance:: || status=1

version() { "$@" 2>/dev/null | head -n 1 || echo "not found"; }
{
    echo "# Conformance matrix"
    echo
    echo "What each endpoint does, case by case: the suite in \`conformance/src/suite/\`, run for"
    echo "every endpoint by \`scripts/conformance-matrix.sh\` (this file is its output; do not"
    echo "edit it by hand). A case runs where the endpoint has every capability it needs and is"
    echo "skipped elsewhere, naming what is missing. The cloud providers run against their"
    echo "emulators in front of a real Distribution registry (see [testing.md](testing.md)), so"
    echo "their columns say what the provider's client does, not what the cloud's registry offers."
    echo
    echo "Generated $(date -u +%Y-%m-%dT%H:%MZ) at \`$(git rev-parse --short HEAD)\` with:"
    echo
    echo "- $(version rustc --version)"
    echo "- Distribution: $(version docker-registry --version)"
    echo "- moto (ECR's API for aws): $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo "not found")"
    echo
    # Sorted, so that rows and columns come in the same order every time.
    sort -t $'\t' -k3,3 -k1,1 -k2,2 "$report" | awk -F '\t' -f scripts/conformance-matrix.awk
} > "$out"
echo "wrote $out"
if grep -q $'\tfailed$' "$report"; then
    status=1
fi
exit $status
