#!/usr/bin/env bash
# Pull benchmark: our pull engine (registry-client/examples/pull.rs) against skopeo,
# both pulling the same multi-layer image from a local Distribution registry.
#
#   scripts/bench-pull.sh [--size-mb N] [--runs R] [--strict] [--rebuild-image] [--keep]
#                         [--keep-page-cache] [--skip-build]
#
#   --size-mb N        at least N MB of real files in the image (default 320)
#   --runs R           runs per tool per scenario (default 3)
#   --strict           exit 1 when a target is missed
#   --rebuild-image    rebuild the cached image under target/bench-image/
#   --keep             keep the temporary work directory (outputs, logs)
#   --keep-page-cache  as root, do not drop the page cache before each run
#   --skip-build       use the existing binary instead of building it
#
# PULL_BIN (environment) names the pull example's binary to run (default
# target/release/examples/pull): a build of another commit, for before/after runs.
#
# It measures wall time and peak RSS (wait4's rusage) for three scenarios:
#   oci-layout      ours --format oci       vs  skopeo copy docker://… oci:DIR:v1
#   docker-archive  ours --format docker    vs  skopeo copy docker://… docker-archive:FILE:…
#   warm-cache      ours --cache-dir (warm) vs  ours with no cache (cold)
# and prints a table plus PASS/FAIL against the targets. It is a measurement tool: it
# exits 0 on a missed target unless --strict is given. Everything stays on loopback.
# See docs/benchmarks.md.
set -euo pipefail
# C locale: sort order and awk number formatting.
export LC_ALL=C

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
readonly PULL_BIN=${PULL_BIN:-$TARGET_DIR/release/examples/pull}
readonly IMAGE_PATH=bench/image
readonly IMAGE_TAG=v1

# Targets (see docs/benchmarks.md for why these numbers).
readonly TARGET_OCI_RATIO=0.50
readonly TARGET_DOCKER_RATIO=0.15
readonly TARGET_RSS_MIB=48
readonly TARGET_WARM_RATIO=0.10

size_mb=320
runs=3
strict=false
rebuild_image=false
keep=false
drop_page_cache=true
skip_build=false

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

parse_args() {
  while (($#)); do
    case $1 in
      --size-mb) size_mb=${2:?--size-mb needs a value}; shift 2 ;;
      --runs) runs=${2:?--runs needs a value}; shift 2 ;;
      --strict) strict=true; shift ;;
      --rebuild-image) rebuild_image=true; shift ;;
      --keep) keep=true; shift ;;
      --keep-page-cache) drop_page_cache=false; shift ;;
      --skip-build) skip_build=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  [[ $size_mb =~ ^[1-9][0-9]*$ ]] || { echo "--size-mb takes a positive integer" >&2; exit 2; }
  [[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive integer" >&2; exit 2; }
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------

# Same approach as scripts/install-test-tools.sh, but without sudo: as root we install,
# otherwise we say which Debian packages are missing and stop.
check_tools() {
  declare -A package_of=(
    [docker-registry]=docker-registry
    [skopeo]=skopeo
    [umoci]=umoci
    [curl]=curl
    [python3]=python3
    [cargo]=cargo
  )
  local tool missing=()
  for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
  done
  ((${#missing[@]})) || return 0
  if [[ " ${missing[*]} " == *" cargo "* ]]; then
    die "cargo not found: install a Rust toolchain (https://rustup.rs)"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    die "missing tools; install them with: sudo apt-get install ${missing[*]}"
  fi
  for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "still missing after install: $tool"
  done
}

build_pull() {
  if $skip_build; then
    [ -x "$PULL_BIN" ] || die "--skip-build, but there is no $PULL_BIN"
    log "using the existing $PULL_BIN (--skip-build)"
    return
  fi
  log "building the pull example (release)"
  (cd "$REPO_ROOT" && cargo build --release -p registry-client --example pull)
  [ -x "$PULL_BIN" ] || die "built, but $PULL_BIN is not there (CARGO_TARGET_DIR?)"
}

# ---------------------------------------------------------------------------------------
# 2. Registry
# ---------------------------------------------------------------------------------------

WORK=""
REGISTRY_PID=""

cleanup() {
  local status=$?
  if [ -n "$REGISTRY_PID" ]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
  fi
  if [ -n "$WORK" ]; then
    if $keep; then log "kept work directory $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$status"
}


# The registry both tools pull from (access log on, Distribution's default).
start_registry() {
  start_registry_in "$WORK/registry" on
  REGISTRY=$REGISTRY_ADDR
  log "registry (Distribution $(docker-registry --version | awk '{print $NF}')) on $REGISTRY"
}

# ---------------------------------------------------------------------------------------
# 3. The image
# ---------------------------------------------------------------------------------------

# The image recipe and its builder: image_sources, plan_layers, build_image.
# shellcheck source=scripts/bench-common.sh
source "$REPO_ROOT/scripts/bench-common.sh"

push_image() {
  log "pushing the image to $REGISTRY/$IMAGE_PATH:$IMAGE_TAG"
  skopeo copy --quiet --dest-tls-verify=false \
    "oci:$LAYOUT:bench" "docker://$REGISTRY/$IMAGE_PATH:$IMAGE_TAG" >&2
  IMAGE_REF=$REGISTRY/$IMAGE_PATH:$IMAGE_TAG
  # Sizes as the registry serves them: compressed layer bytes are what is transferred.
  read -r LAYER_COUNT COMPRESSED_BYTES < <(
    skopeo inspect --raw --tls-verify=false "docker://$IMAGE_REF" |
      python3 -c 'import json, sys; m = json.load(sys.stdin); print(len(m["layers"]), sum(l["size"] for l in m["layers"]))'
  )
  mapfile -t LAYER_URLS < <(
    skopeo inspect --raw --tls-verify=false "docker://$IMAGE_REF" |
      python3 -c 'import json, sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]' |
      sed "s|^|http://$REGISTRY/v2/$IMAGE_PATH/blobs/|"
  )
  UNCOMPRESSED_BYTES=$(cat "$(dirname "$LAYOUT")/uncompressed-bytes")
  FILE_BYTES=$(cat "$(dirname "$LAYOUT")/file-bytes")
}

# ---------------------------------------------------------------------------------------
# 4. Measurements
# ---------------------------------------------------------------------------------------

DROP_CACHES=false

# The transfer floor: one curl fetching every layer blob in parallel into files that are
# then fsynced (as both pullers do), with no digest check and no format work. Roughly what a
# puller cannot beat on this machine, so it tells whether a ratio target is reachable at
# all. Rough: it includes curl's start-up (~30 shared libraries). Arguments: DIR URL...
# shellcheck disable=SC2016 # expanded by the inner bash
FLOOR_SCRIPT='
  set -eu
  dir=$1; shift
  mkdir -p "$dir"
  args=()
  for url in "$@"; do args+=(-o "$dir/${url##*:}" "$url"); done
  curl -fsS --parallel --parallel-max 16 "${args[@]}"
  sync "$dir"/*
'

# Dropping the page cache makes every run read the registry's blobs (and, for the warm
# cache, the layer cache) from disk, the same for both tools. Needs root; otherwise both
# tools run with a warm page cache, which the report says.
probe_drop_caches() {
  $drop_page_cache || return 0
  if [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    DROP_CACHES=true
  fi
}

before_run() {
  # Flush the previous run's dirty pages so its writeback is not billed to this run.
  sync
  if $DROP_CACHES; then echo 3 >/proc/sys/vm/drop_caches; fi
}


# measure LABEL RUN OUTPUT -- COMMAND...: runs COMMAND under the timer and appends
# "LABEL RUN SECONDS MAX_RSS_KB" to $RESULTS. A failed command stops the benchmark: a
# time for a pull that did not happen means nothing.
measure() {
  local label=$1 run=$2 output=$3
  shift 4
  local timing=$WORK/time.$label.$run out=$WORK/log.$label.$run
  rm -rf "$output"
  before_run
  if ! python3 -c "$TIMER_SCRIPT" "$timing" "$out" "$@"; then
    echo "FAILED ($label, run $run): $*" >&2
    tail -n 30 "$out" >&2
    exit 1
  fi
  local secs kb user sys
  read -r secs kb user sys <"$timing"
  echo "$label $run $secs $kb" >>"$RESULTS"
  printf '  %-16s run %d: %7.3f s wall  %6.2f s cpu  %6.1f MiB peak RSS\n' "$label" "$run" "$secs" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" >&2
}

# prune_runs PATH...: removes the outputs of every run but the last (verified below), each
# PATH with @ standing for the run number. Called after a scenario, not after each run:
# deleting hundreds of MB (and, on a disk mounted with `discard`, trimming them) right
# before the next run would be billed to that run.
prune_runs() {
  local path r
  for path in "$@"; do
    for r in $(seq $((runs - 1))); do rm -rf "${path//@/$r}"; done
  done
  sync
}

run_benchmarks() {
  RESULTS=$WORK/results
  : >"$RESULTS"
  local out=$WORK/out cache=$WORK/layer-cache
  mkdir -p "$out"
  local r
  # The timer runs a program, not a shell function: the pull command as an array.
  local ours=("$PULL_BIN" "$IMAGE_REF" --insecure)

  log "oci-layout: ours vs skopeo (and the curl floor), $runs run(s) each, interleaved"
  for r in $(seq "$runs"); do
    measure oci.ours "$r" "$out/oci.ours.$r" -- "${ours[@]}" -o "$out/oci.ours.$r" --format oci
    measure oci.skopeo "$r" "$out/oci.skopeo.$r" -- \
      skopeo copy --src-tls-verify=false "docker://$IMAGE_REF" "oci:$out/oci.skopeo.$r:$IMAGE_TAG"
    measure floor "$r" "$out/floor.$r" -- bash -c "$FLOOR_SCRIPT" floor "$out/floor.$r" "${LAYER_URLS[@]}"
  done
  prune_runs "$out/oci.ours.@" "$out/oci.skopeo.@" "$out/floor.@"

  log "docker-archive: ours vs skopeo, $runs run(s) each, interleaved"
  for r in $(seq "$runs"); do
    measure docker.ours "$r" "$out/docker.ours.$r.tar" -- "${ours[@]}" -o "$out/docker.ours.$r.tar" --format docker
    measure docker.skopeo "$r" "$out/docker.skopeo.$r.tar" -- \
      skopeo copy --src-tls-verify=false "docker://$IMAGE_REF" \
      "docker-archive:$out/docker.skopeo.$r.tar:$IMAGE_PATH:$IMAGE_TAG"
  done
  prune_runs "$out/docker.ours.@.tar" "$out/docker.skopeo.@.tar"

  # The layer cache sits next to the outputs (same filesystem), so a warm pull may link or
  # clone from it instead of copying.
  log "warm layer cache: priming run"
  measure cache.prime 1 "$out/cache.prime" -- "${ours[@]}" -o "$out/cache.prime" --format oci --cache-dir "$cache"
  rm -rf "$out/cache.prime"
  sync
  log "warm layer cache: warm vs cold (no cache), $runs run(s) each, interleaved"
  for r in $(seq "$runs"); do
    measure cache.warm "$r" "$out/cache.warm.$r" -- \
      "${ours[@]}" -o "$out/cache.warm.$r" --format oci --cache-dir "$cache"
    measure cache.cold "$r" "$out/cache.cold.$r" -- "${ours[@]}" -o "$out/cache.cold.$r" --format oci
  done
  prune_runs "$out/cache.warm.@" "$out/cache.cold.@"
}

# ---------------------------------------------------------------------------------------
# 5. Verification: a fast broken output proves nothing
# ---------------------------------------------------------------------------------------

# Layer digests as skopeo reads them from a transport reference.
layer_digests() {
  skopeo inspect "$@" | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)["Layers"]))'
}

verify_outputs() {
  local out=$WORK/out last=$runs
  local expected
  expected=$(layer_digests --tls-verify=false "docker://$IMAGE_REF")
  log "verifying our outputs of run $last with skopeo"

  local dir
  for dir in "$out/oci.ours.$last" "$out/cache.warm.$last"; do
    [ "$(layer_digests "oci:$dir:$IMAGE_TAG")" = "$expected" ] ||
      die "skopeo inspect oci:$dir:$IMAGE_TAG: layers differ from the registry's"
    # skopeo inspect reads only the manifest and config; hash every blob as well.
    local blob bad=0
    for blob in "$dir"/blobs/sha256/*; do
      [ "$(sha256sum <"$blob" | cut -d' ' -f1)" = "$(basename "$blob")" ] || { echo "bad blob $blob" >&2; bad=1; }
    done
    ((bad == 0)) || die "$dir has blobs whose content does not match their digest"
    log "  ok: oci:$dir:$IMAGE_TAG ($(wc -l <<<"$expected") layers, every blob hashes to its name)"
  done

  local tar=$out/docker.ours.$last.tar
  local layers
  layers=$(layer_digests "docker-archive:$tar") || die "skopeo inspect docker-archive:$tar failed"
  [ "$(wc -l <<<"$layers")" = "$(wc -l <<<"$expected")" ] ||
    die "docker-archive:$tar has $(wc -l <<<"$layers") layers, the registry $(wc -l <<<"$expected")"
  # A full read through skopeo checks every layer against the config's diff_ids.
  skopeo copy --quiet "docker-archive:$tar" "dir:$WORK/verify-docker" >/dev/null ||
    die "skopeo could not read every layer of docker-archive:$tar"
  rm -rf "$WORK/verify-docker"
  log "  ok: docker-archive:$tar ($(wc -l <<<"$layers") layers, all read back by skopeo copy)"
}

# ---------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------

# summary LABEL median|maxrss: median wall seconds, or the largest peak RSS in MiB, over runs.
summary() {
  local label=$1 what=$2
  awk -v label="$label" -v what="$what" '
    $1 == label { n++; t[n] = $3; if ($4 > rss) rss = $4 }
    END {
      if (what == "maxrss") { printf "%.1f", rss / 1024; exit }
      # insertion sort: R is small
      for (i = 2; i <= n; i++) { v = t[i]; for (j = i - 1; j > 0 && t[j] > v; j--) t[j + 1] = t[j]; t[j + 1] = v }
      m = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
      printf "%.3f", m
    }' "$RESULTS"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

FAILED=0
check() {
  local what=$1 value=$2 limit=$3
  if le "$value" "$limit"; then
    printf 'PASS  %-44s %8s <= %s\n' "$what" "$value" "$limit"
  else
    printf 'FAIL  %-44s %8s >  %s   <-- target missed\n' "$what" "$value" "$limit"
    FAILED=1
  fi
}

report() {
  local oci_o oci_p dk_o dk_p warm cold
  oci_o=$(summary oci.ours median); oci_p=$(summary oci.skopeo median)
  dk_o=$(summary docker.ours median); dk_p=$(summary docker.skopeo median)
  warm=$(summary cache.warm median); cold=$(summary cache.cold median)
  local oci_r dk_r warm_r ours_rss
  oci_r=$(ratio "$oci_o" "$oci_p"); dk_r=$(ratio "$dk_o" "$dk_p"); warm_r=$(ratio "$warm" "$cold")
  ours_rss=$(awk '$1 ~ /^(oci|docker)\.ours$|^cache\./ && $4 > m { m = $4 } END { printf "%.1f", m / 1024 }' "$RESULTS")

  echo
  echo "mcreg pull benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -sr)"
  printf 'image: %s, %d layers: %d MB of real files, %d MB as tar, %d MB gzip (transferred)\n' \
    "$IMAGE_REF" "$LAYER_COUNT" "$((FILE_BYTES / 1000000))" "$((UNCOMPRESSED_BYTES / 1000000))" \
    "$((COMPRESSED_BYTES / 1000000))"
  echo "peer: $(skopeo --version); registry: Distribution $(docker-registry --version | awk '{print $NF}') on loopback"
  if $DROP_CACHES; then
    echo "page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every run"
  elif $drop_page_cache; then
    echo "page cache: NOT dropped (needs root); both tools ran with a warm page cache"
  else
    echo "page cache: kept (--keep-page-cache); both tools ran with a warm page cache"
  fi
  echo "load average at the end (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg) — other work on the machine adds noise"
  echo "runs: $runs per tool per scenario, interleaved; times are medians, RSS is the max over runs"
  echo
  printf '%-16s %10s %10s %10s %10s %10s  %s\n' scenario "ours s" "peer s" ours/peer "ours MiB" "peer MiB" peer
  printf '%-16s %10s %10s %10s %10s %10s  %s\n' oci-layout "$oci_o" "$oci_p" "$oci_r" \
    "$(summary oci.ours maxrss)" "$(summary oci.skopeo maxrss)" "skopeo copy → oci:"
  printf '%-16s %10s %10s %10s %10s %10s  %s\n' docker-archive "$dk_o" "$dk_p" "$dk_r" \
    "$(summary docker.ours maxrss)" "$(summary docker.skopeo maxrss)" "skopeo copy → docker-archive:"
  printf '%-16s %10s %10s %10s %10s %10s  %s\n' warm-cache "$warm" "$cold" "$warm_r" \
    "$(summary cache.warm maxrss)" "$(summary cache.cold maxrss)" "ours, no cache (cold)"
  printf '(priming run that filled the cache: %s s, %s MiB)\n' "$(summary cache.prime median)" "$(summary cache.prime maxrss)"
  local floor
  floor=$(summary floor median)
  printf '(transfer floor, one curl with %d parallel transfers into files + fsync: %s s = %s of skopeo oci-layout)\n' \
    "${#LAYER_URLS[@]}" "$floor" "$(ratio "$floor" "$oci_p")"
  echo
  check "oci-layout ours/skopeo (median wall)" "$oci_r" "$TARGET_OCI_RATIO"
  check "docker-archive ours/skopeo (median wall)" "$dk_r" "$TARGET_DOCKER_RATIO"
  check "our peak RSS MiB, every run" "$ours_rss" "$TARGET_RSS_MIB"
  check "warm cache / cold (median wall)" "$warm_r" "$TARGET_WARM_RATIO"
}

main() {
  parse_args "$@"
  check_tools
  build_pull
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-pull.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  build_image
  start_registry
  push_image
  probe_drop_caches
  run_benchmarks
  verify_outputs
  report
  if ((FAILED)) && $strict; then exit 1; fi
  exit 0
}

# Sourcing the script (for trying one function) does not run it.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
