#!/usr/bin/env bash
# Copy benchmark: `mcreg copy` against `skopeo copy`, registry to registry, the same
# multi-layer image (the pull benchmark's, scripts/bench-common.sh) from one local
# Distribution registry to another, side by side in one run.
#
#   scripts/bench-copy.sh [--size-mb N] [--runs R] [--strict] [--rebuild-image] [--skip-build]
#
#   --size-mb N        at least N MB of real files in the image (default 320)
#   --runs R           runs per tool (default 3), interleaved
#   --strict           exit 1 when a target is missed
#   --rebuild-image    rebuild the cached image under target/bench-image/
#   --skip-build       use the existing target/release/mcreg
#
# Each run copies into a fresh destination registry (nothing is there yet), with the page
# cache dropped first when run as root. Both copies are checked: the destination's manifest
# digest is the source's. Targets: mcreg's time ≤ 0.5× skopeo's (medians), peak RSS ≤ 64 MiB.
# It is a measurement tool: it exits 0 on a missed target unless --strict is given.
set -euo pipefail
export LC_ALL=C

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
readonly MCREG_BIN=${MCREG_BIN:-$TARGET_DIR/release/mcreg}
readonly TARGET_RATIO=0.50
readonly TARGET_RSS_MIB=64

size_mb=320
runs=3
strict=false
rebuild_image=false
skip_build=false

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --size-mb) size_mb=${2:?--size-mb needs a value}; shift 2 ;;
    --runs) runs=${2:?--runs needs a value}; shift 2 ;;
    --strict) strict=true; shift ;;
    --rebuild-image) rebuild_image=true; shift ;;
    --skip-build) skip_build=true; shift ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $size_mb =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] || die "--size-mb and --runs take positive integers"

# shellcheck source=scripts/bench-common.sh
source "$REPO_ROOT/scripts/bench-common.sh"

for tool in docker-registry skopeo umoci python3 curl; do
  if ! command -v "$tool" >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "missing $tool; install it with: sudo apt-get install docker-registry skopeo umoci curl"
    log "installing the benchmark's tools"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry skopeo umoci curl
    break
  fi
done
if ! $skip_build; then
  log "building mcreg (release)"
  (cd "$REPO_ROOT" && cargo build --release -p registry-cli)
fi
[ -x "$MCREG_BIN" ] || die "no $MCREG_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-copy.XXXXXX")
declare -a PIDS=()
cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT


# start_registry NAME: a Distribution registry with its own storage under $WORK/NAME, no
# access log; sets REGISTRY_ADDR and REGISTRY_PID.
start_registry() {
  start_registry_in "$WORK/$1" off
  PIDS+=("$REGISTRY_PID")
}

stop_registry() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

DROP_CACHES=false
if [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  DROP_CACHES=true
fi


build_image
start_registry source
SOURCE=$REGISTRY_ADDR
SOURCE_PID=$REGISTRY_PID
log "pushing the image to $SOURCE/bench/image:v1"
skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$SOURCE/bench/image:v1" >&2
DIGEST=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$SOURCE/bench/image:v1" | sha256sum | cut -d' ' -f1)
BYTES=$(skopeo inspect --raw --tls-verify=false "docker://$SOURCE/bench/image:v1" |
  python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["config"]["size"] + sum(l["size"] for l in m["layers"]))')
RESULTS=$WORK/results
: >"$RESULTS"

# copy_once TOOL RUN: one copy into a fresh destination, timed and checked.
copy_once() {
  local tool=$1 run=$2
  start_registry "dest-$tool-$run"
  local dest=$REGISTRY_ADDR dest_pid=$REGISTRY_PID
  sync
  if $DROP_CACHES; then echo 3 >/proc/sys/vm/drop_caches; fi
  local command
  case $tool in
    mcreg) command=("$MCREG_BIN" -q copy "$SOURCE/bench/image:v1" "$dest/bench/copy:v1") ;;
    skopeo) command=(skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false
      "docker://$SOURCE/bench/image:v1" "docker://$dest/bench/copy:v1") ;;
  esac
  local source_cpu dest_cpu
  source_cpu=$(cpu_seconds "$SOURCE_PID")
  dest_cpu=$(cpu_seconds "$dest_pid")
  if ! python3 -c "$TIMER_SCRIPT" "$WORK/time" "$WORK/log.$tool.$run" "${command[@]}"; then
    cat "$WORK/log.$tool.$run" >&2
    die "$tool copy failed (run $run)"
  fi
  local got
  got=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$dest/bench/copy:v1" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$DIGEST" ] || die "$tool copied $got, the source is $DIGEST"
  local secs kib user sys
  read -r secs kib user sys <"$WORK/time"
  # CPU seconds of the tool, and of each registry during the copy.
  local cpu
  cpu=$(awk -v u="$user" -v s="$sys" -v s0="$source_cpu" -v s1="$(cpu_seconds "$SOURCE_PID")" \
    -v d0="$dest_cpu" -v d1="$(cpu_seconds "$dest_pid")" 'BEGIN { printf "%.2f %.2f %.2f", u + s, s1 - s0, d1 - d0 }')
  echo "$tool $run $secs $kib $cpu" >>"$RESULTS"
  printf '  %-7s run %d: %7.3f s  peak RSS %6.1f MiB  CPU s: tool, source, destination %s\n' "$tool" "$run" "$secs" \
    "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$cpu" >&2
  stop_registry "$dest_pid"
  rm -rf "$WORK/dest-$tool-$run"
}

log "copying $((BYTES / 1000000)) MB ($DIGEST), $runs run(s) each, interleaved"
for run in $(seq "$runs"); do
  for tool in mcreg skopeo; do copy_once "$tool" "$run"; done
done

# median TOOL [COLUMN]: of the wall times, or of COLUMN.
median() {
  awk -v tool="$1" -v col="${2:-3}" '$1 == tool { n++; t[n] = $col }
    END { for (i = 2; i <= n; i++) { v = t[i]; for (j = i - 1; j > 0 && t[j] > v; j--) t[j + 1] = t[j]; t[j + 1] = v }
          printf "%.3f", (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2 }' "$RESULTS"
}
max_rss_mib() { awk -v tool="$1" '$1 == tool && $4 > m { m = $4 } END { printf "%.1f", m / 1024 }' "$RESULTS"; }

ours=$(median mcreg)
theirs=$(median skopeo)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.3f", a / b }')
rss=$(max_rss_mib mcreg)
echo
echo "copy benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs; $((BYTES / 1000000)) MB of blobs, registry to registry on loopback"
echo "mcreg: $("$MCREG_BIN" --version | head -n1); $(skopeo --version); Distribution $(docker-registry --version | awk '{print $NF}')"
echo "page cache: $($DROP_CACHES && echo "dropped before every copy" || echo "not dropped (needs root)")"
printf '%-8s %10s %14s %27s\n' tool "median s" "peak RSS MiB" "CPU s: tool source dest"
printf '%-8s %10s %14s %9s %8s %8s\n' \
  mcreg "$ours" "$rss" "$(median mcreg 5)" "$(median mcreg 6)" "$(median mcreg 7)" \
  skopeo "$theirs" "$(max_rss_mib skopeo)" "$(median skopeo 5)" "$(median skopeo 6)" "$(median skopeo 7)"
# The two registries' own CPU bounds any copy on this machine: spread perfectly over every
# CPU and with no time waiting for the disk, it still takes this long.
registries_floor=$(awk -v a="$(median mcreg 6)" -v b="$(median mcreg 7)" -v n="$(nproc)" 'BEGIN { printf "%.3f", (a + b) / n }')
echo "the registries' CPU alone, over $(nproc) CPUs: $registries_floor s = $(awk -v f="$registries_floor" -v t="$theirs" 'BEGIN { printf "%.3f", f / t }')× skopeo's time, before any work of the copying tool"
failed=0
if awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { exit !(r <= t) }'; then
  echo "PASS  mcreg / skopeo time $ratio <= $TARGET_RATIO"
else
  echo "FAIL  mcreg / skopeo time $ratio (target <= $TARGET_RATIO)"; failed=1
fi
if awk -v r="$rss" -v t="$TARGET_RSS_MIB" 'BEGIN { exit !(r <= t) }'; then
  echo "PASS  mcreg peak RSS $rss MiB <= $TARGET_RSS_MIB"
else
  echo "FAIL  mcreg peak RSS $rss MiB (target <= $TARGET_RSS_MIB)"; failed=1
fi
if ((failed)) && $strict; then exit 1; fi
