#!/usr/bin/env bash
# Proxy benchmark: our pull-through cache (`mcreg serve`, crate registry-proxy) against
# CNCF Distribution 2.8 in proxy mode (`proxy.remoteurl`), side by side in one run, both
# caching the same multi-layer image from one local upstream Distribution registry.
#
#   scripts/bench-proxy.sh [--size-mb N] [--runs R] [--concurrent N] [--wrk-seconds S]
#                          [--strict] [--rebuild-image] [--keep] [--keep-page-cache]
#                          [--skip-build]
#
#   --size-mb N        at least N MB of real files in the image (default 320)
#   --runs R           runs per server per scenario (default 3)
#   --concurrent N     clients in the concurrent cold pull (default 20)
#   --wrk-seconds S    duration of each wrk load run (default 10)
#   --strict           exit 1 when a target is missed
#   --rebuild-image    rebuild the cached image under target/bench-image/
#   --keep             keep the temporary work directory (outputs, logs, caches)
#   --keep-page-cache  as root, do not drop the page cache before each pull
#   --skip-build       use the existing binary instead of building it
#
# MCREG_BIN (environment) names the binary to run; default target/release/mcreg.
#
# The client is skopeo (`skopeo copy docker://… oci:DIR:v1`). Scenarios:
#   (a) cold pull through each server (empty cache, server restarted), directly from
#       the upstream, and through a plain TCP relay (socat: what one more hop costs);
#   (b) warm pull through each (cache filled), page cache dropped and page cache hot;
#   (c) N concurrent cold pulls through each freshly started server, counting the
#       upstream's blob GETs (from its access log) per blob;
#   (d) each server's peak RSS (VmHWM) during (c);
#   (e) requests per second with wrk on a cached manifest and a cached blob.
# It prints a table, ratios and PASS/FAIL against the targets. It is a measurement tool:
# it exits 0 on a missed target unless --strict is given. Everything stays on loopback.
# See docs/benchmarks.md for the method it shares with scripts/bench-pull.sh.
set -euo pipefail
# C locale: sort order and awk number formatting.
export LC_ALL=C

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
readonly MCREG_BIN=${MCREG_BIN:-$TARGET_DIR/release/mcreg}
readonly IMAGE_PATH=bench/image
readonly IMAGE_TAG=v1

# Targets (the issue's).
readonly TARGET_COLD_RATIO=1.10     # cold pull through ours / direct pull, at most
readonly TARGET_WARM_SPEEDUP=1.50   # warm pull: Distribution's time / ours, at least
readonly TARGET_BLOB_SPEEDUP=1.50   # cached blob req/s: ours / Distribution's, at least
readonly TARGET_GETS_PER_BLOB=1     # upstream GETs per blob in (c), ours, exactly
readonly TARGET_RSS_MIB=64          # our peak RSS during (c), at most

# What a registry client accepts for a manifest (wrk and curl send it).
readonly ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
# wrk's load: threads and connections.
readonly WRK_THREADS=2
readonly WRK_CONNECTIONS=32
# The blob under wrk: the smallest layer of at least this many bytes ("a few MB").
readonly WRK_BLOB_MIN_BYTES=1000000


size_mb=320
runs=3
concurrent=20
wrk_seconds=10
strict=false
rebuild_image=false
keep=false
drop_page_cache=true
skip_build=false

usage() {
  sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

parse_args() {
  while (($#)); do
    case $1 in
      --size-mb) size_mb=${2:?--size-mb needs a value}; shift 2 ;;
      --runs) runs=${2:?--runs needs a value}; shift 2 ;;
      --concurrent) concurrent=${2:?--concurrent needs a value}; shift 2 ;;
      --wrk-seconds) wrk_seconds=${2:?--wrk-seconds needs a value}; shift 2 ;;
      --strict) strict=true; shift ;;
      --rebuild-image) rebuild_image=true; shift ;;
      --keep) keep=true; shift ;;
      --keep-page-cache) drop_page_cache=false; shift ;;
      --skip-build) skip_build=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  local name
  for name in size_mb runs concurrent wrk_seconds; do
    [[ ${!name} =~ ^[1-9][0-9]*$ ]] || { echo "--${name//_/-} takes a positive integer" >&2; exit 2; }
  done
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------

# Same approach as bench-pull.sh: as root we install the missing Debian packages,
# otherwise we say which ones are missing and stop.
check_tools() {
  declare -A package_of=(
    [docker-registry]=docker-registry
    [skopeo]=skopeo
    [umoci]=umoci
    [curl]=curl
    [python3]=python3
    [wrk]=wrk
    [socat]=socat
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

build_mcreg() {
  if $skip_build; then
    [ -x "$MCREG_BIN" ] || die "--skip-build, but there is no $MCREG_BIN"
    log "using the existing $MCREG_BIN (--skip-build)"
    MCREG_BUILT="existing binary of $(date -u -r "$MCREG_BIN" +%Y-%m-%dT%H:%MZ), --skip-build"
    return
  fi
  log "building mcreg (release)"
  # The tree it is built from, as of the build (others may be changing it).
  MCREG_BUILT="built from git $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
  (cd "$REPO_ROOT" && cargo build --release -p registry-cli)
  [ -x "$MCREG_BIN" ] || die "built, but $MCREG_BIN is not there (CARGO_TARGET_DIR?)"
}

# ---------------------------------------------------------------------------------------
# 2. Servers: the upstream, ours, Distribution's proxy
# ---------------------------------------------------------------------------------------

WORK=""
UPSTREAM_PID=""
# Every server process started and not yet stopped (the trap stops what is left).
declare -A SERVER_PIDS=()

cleanup() {
  local status=$?
  local pid
  for pid in "${!SERVER_PIDS[@]}" $UPSTREAM_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${!SERVER_PIDS[@]}" $UPSTREAM_PID; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ]; then
    if $keep; then log "kept work directory $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$status"
}


# wait_ready NAME PID ADDR LOG: until GET /v2/ answers 200, or the process is gone.
wait_ready() {
  local name=$1 pid=$2 addr=$3 logfile=$4 i
  for i in $(seq 200); do
    if curl -fs -o /dev/null "http://$addr/v2/"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  tail -n 30 "$logfile" >&2
  die "$name did not come up on $addr"
}

# Distribution's access log (one Apache "combined" line per request, written to its
# stdout when the answer is complete) is how upstream requests are counted.
start_upstream() {
  local port dir=$WORK/upstream
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
EOF
  UPSTREAM_LOG=$dir/access.log
  docker-registry serve "$dir/config.yml" >"$UPSTREAM_LOG" 2>"$dir/stderr" &
  UPSTREAM_PID=$!
  UPSTREAM=127.0.0.1:$port
  wait_ready "upstream registry" "$UPSTREAM_PID" "$UPSTREAM" "$dir/stderr"
  log "upstream (Distribution $(docker-registry --version | awk '{print $NF}')) on $UPSTREAM, access log $UPSTREAM_LOG"
}

# start_ours NAME CACHE_DIR [MCREG_OPTION...]: a fresh `mcreg serve` on a free port; sets
# SERVER_PID and SERVER_ADDR. Default logging (the access log on stderr, to a file)
# unless an option says otherwise (-q).
start_ours() {
  local name=$1 cache=$2
  shift 2
  local port logfile=$WORK/logs/ours.$name.log
  port=$(free_port)
  mkdir -p "$WORK/logs"
  "$MCREG_BIN" "$@" serve --listen "127.0.0.1:$port" --upstream "$UPSTREAM" --cache-dir "$cache" \
    >"$logfile" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS[$SERVER_PID]=1
  SERVER_ADDR=127.0.0.1:$port
  wait_ready "mcreg serve ($name)" "$SERVER_PID" "$SERVER_ADDR" "$logfile"
}

# start_distribution NAME STORAGE_DIR [ACCESSLOG]: Distribution in proxy mode, with the
# in-memory blob descriptor cache of its stock config.yml; ACCESSLOG (default on) is "on"
# or "off". Sets SERVER_PID and SERVER_ADDR.
start_distribution() {
  local name=$1 storage=$2 accesslog=${3:-on}
  local port dir=$WORK/distribution
  port=$(free_port)
  mkdir -p "$dir" "$WORK/logs"
  local disabled=false
  [ "$accesslog" = on ] || disabled=true
  cat >"$dir/config.$name.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $disabled
storage:
  filesystem:
    rootdirectory: $storage
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
proxy:
  remoteurl: http://$UPSTREAM
EOF
  local logfile=$WORK/logs/distribution.$name.log
  docker-registry serve "$dir/config.$name.yml" >"$logfile" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS[$SERVER_PID]=1
  SERVER_ADDR=127.0.0.1:$port
  wait_ready "Distribution proxy ($name)" "$SERVER_PID" "$SERVER_ADDR" "$logfile"
}

# start_relay: a plain TCP relay (socat, one process per connection, 256 KiB buffers) in
# front of the upstream: no cache, no parsing. What one more hop costs on this machine,
# the least any proxy adds to a pull. Sets SERVER_PID and SERVER_ADDR.
start_relay() {
  local port logfile=$WORK/logs/relay.log
  port=$(free_port)
  mkdir -p "$WORK/logs"
  socat -b 262144 "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "TCP:$UPSTREAM" >"$logfile" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS[$SERVER_PID]=1
  SERVER_ADDR=127.0.0.1:$port
  wait_ready "socat relay" "$SERVER_PID" "$SERVER_ADDR" "$logfile"
}

# start_server ours|distribution NAME DIR: one or the other.
start_server() {
  local server=$1
  shift
  case $server in
    ours) start_ours "$@" ;;
    distribution) start_distribution "$@" ;;
    *) die "unknown server $server" ;;
  esac
}

stop_server() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "SERVER_PIDS[$pid]"
}

# Peak resident set size of a live process, in KiB (VmHWM: the high-water mark since it
# started).
vm_hwm_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}


# ---------------------------------------------------------------------------------------
# 3. The image (bench-pull.sh's recipe, unchanged: both scripts share the cached image)
# ---------------------------------------------------------------------------------------

# The image recipe and its builder: image_sources, plan_layers, build_image.
# shellcheck source=scripts/bench-common.sh
source "$REPO_ROOT/scripts/bench-common.sh"

push_image() {
  log "pushing the image to $UPSTREAM/$IMAGE_PATH:$IMAGE_TAG"
  skopeo copy --quiet --dest-tls-verify=false \
    "oci:$LAYOUT:bench" "docker://$UPSTREAM/$IMAGE_PATH:$IMAGE_TAG" >&2
  local manifest=$WORK/manifest.json
  skopeo inspect --raw --tls-verify=false "docker://$UPSTREAM/$IMAGE_PATH:$IMAGE_TAG" >"$manifest"
  MANIFEST_DIGEST=sha256:$(sha256sum <"$manifest" | cut -d' ' -f1)
  # Sizes as the registry serves them: compressed layer bytes are what is transferred.
  read -r LAYER_COUNT COMPRESSED_BYTES < <(
    python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(len(m["layers"]), sum(l["size"] for l in m["layers"]))' "$manifest"
  )
  # Every blob a pull fetches: the config and the layers.
  mapfile -t BLOB_DIGESTS < <(
    python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); [print(d["digest"]) for d in [m["config"]] + m["layers"]]' "$manifest"
  )
  # The blob under wrk: the smallest layer of at least WRK_BLOB_MIN_BYTES.
  read -r WRK_BLOB WRK_BLOB_BYTES < <(
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
big = [l for l in m["layers"] if l["size"] >= int(sys.argv[2])] or m["layers"]
l = min(big, key=lambda l: l["size"])
print(l["digest"], l["size"])' "$manifest" "$WRK_BLOB_MIN_BYTES"
  )
  UNCOMPRESSED_BYTES=$(cat "$(dirname "$LAYOUT")/uncompressed-bytes")
  FILE_BYTES=$(cat "$(dirname "$LAYOUT")/file-bytes")
}

# ---------------------------------------------------------------------------------------
# 4. Measurement tools
# ---------------------------------------------------------------------------------------

DROP_CACHES=false

# Dropping the page cache makes every pull read the blobs from disk (the upstream's, and
# the cache's for a warm pull), the same for every server. Needs root; otherwise every run
# has a warm page cache, which the report says.
probe_drop_caches() {
  $drop_page_cache || return 0
  if [ -w /proc/sys/vm/drop_caches ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    DROP_CACHES=true
  fi
}

# before_run [drop]: flush the previous run's dirty pages so that their writeback is not
# billed to this run; drop the page cache unless told "keep".
before_run() {
  sync
  if $DROP_CACHES && [ "${1:-drop}" = drop ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}


# measure LABEL RUN drop|keep -- COMMAND...: runs COMMAND under the timer and appends
# "LABEL RUN SECONDS MAX_RSS_KIB" to $RESULTS (the RSS is the client's: skopeo's), and the
# CPU seconds of the server MEASURED_PID (if set) and of the upstream to $STATS. A failed
# command stops the benchmark: a time for a pull that did not happen means nothing.
MEASURED_PID=""
measure() {
  local label=$1 run=$2 page_cache=$3
  shift 4
  local timing=$WORK/time.$label.$run out=$WORK/logs/client.$label.$run
  before_run "$page_cache"
  local server_cpu="" upstream_cpu
  if [ -n "$MEASURED_PID" ]; then server_cpu=$(cpu_seconds "$MEASURED_PID"); fi
  upstream_cpu=$(cpu_seconds "$UPSTREAM_PID")
  if ! python3 -c "$TIMER_SCRIPT" "$timing" "$out" "$@"; then
    echo "FAILED ($label, run $run): $*" >&2
    tail -n 30 "$out" >&2
    exit 1
  fi
  local secs kb user sys
  read -r secs kb user sys <"$timing"
  echo "$label $run $secs $kb" >>"$RESULTS"
  echo "$label $run $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" >>"$CLIENT_CPU"
  # CPU the servers spent on it: the one under test (if any) and the upstream.
  if [ -n "$MEASURED_PID" ]; then
    note "$label.cpu" "$run" "$(awk -v a="$server_cpu" -v b="$(cpu_seconds "$MEASURED_PID")" 'BEGIN { printf "%.2f", b - a }')"
  fi
  note "$label.upstream_cpu" "$run" "$(awk -v a="$upstream_cpu" -v b="$(cpu_seconds "$UPSTREAM_PID")" 'BEGIN { printf "%.2f", b - a }')"
  printf '  %-24s run %d: %7.3f s wall  %6.2f s client cpu\n' "$label" "$run" "$secs" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" >&2
}

# note KEY RUN VALUE...: numbers for the report.
note() {
  echo "$*" >>"$STATS"
}

# measure_pull LABEL RUN drop|keep REGISTRY DIR: skopeo copy REGISTRY/bench/image:v1 to an
# OCI layout, timed, then checked.
measure_pull() {
  local label=$1 run=$2 page_cache=$3 registry=$4 dir=$5
  measure "$label" "$run" "$page_cache" -- skopeo copy --quiet --src-tls-verify=false \
    "docker://$registry/$IMAGE_PATH:$IMAGE_TAG" "oci:$dir:$IMAGE_TAG"
  verify_output "$dir"
}

# N pulls at once, each into its own layout; fails if any fails. Arguments: N REGISTRY OUT.
# shellcheck disable=SC2016 # expanded by the inner bash
CONCURRENT_SCRIPT='
  set -u
  n=$1 registry=$2 out=$3 image=$4
  mkdir -p "$out"
  pids=()
  for i in $(seq "$n"); do
    skopeo copy --quiet --src-tls-verify=false "docker://$registry/$image" "oci:$out/$i:${image##*:}" \
      >"$out/log.$i" 2>&1 &
    pids+=($!)
  done
  failed=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "pull $((i + 1)) of $n failed:"; cat "$out/log.$((i + 1))"; failed=1
    fi
  done
  exit "$failed"
'

# Every blob of the image fetched at once by one curl, into /dev/null: what the server
# itself can send, without the client's hashing and writing. Arguments: REGISTRY BLOB...
# shellcheck disable=SC2016 # expanded by the inner bash
CURL_ALL_SCRIPT='
  set -eu
  registry=$1 repository=$2; shift 2
  args=()
  for blob in "$@"; do args+=(-o /dev/null "http://$registry/v2/$repository/blobs/$blob"); done
  curl -fsS --parallel --parallel-max 16 "${args[@]}"
'

# measure_curl LABEL RUN REGISTRY: CURL_ALL_SCRIPT timed, page cache dropped.
measure_curl() {
  measure "$1" "$2" drop -- bash -c "$CURL_ALL_SCRIPT" curl "$3" "$IMAGE_PATH" "${BLOB_DIGESTS[@]}"
}

# verify_output DIR: the layout holds the upstream's manifest (same digest) and every blob.
verify_output() {
  local dir=$1 digest
  digest=sha256:$(skopeo inspect --raw "oci:$dir:$IMAGE_TAG" | sha256sum | cut -d' ' -f1) ||
    die "skopeo inspect oci:$dir:$IMAGE_TAG failed"
  [ "$digest" = "$MANIFEST_DIGEST" ] ||
    die "oci:$dir:$IMAGE_TAG has manifest $digest, the upstream $MANIFEST_DIGEST"
  local blob
  for blob in "${BLOB_DIGESTS[@]}"; do
    [ -s "$dir/blobs/sha256/${blob#sha256:}" ] || die "oci:$dir:$IMAGE_TAG lacks blob $blob"
  done
}

# The upstream's access log: a byte offset now, and a tally of what was asked since.
upstream_mark() {
  stat -c %s "$UPSTREAM_LOG"
}

# Prints "MIN MAX BLOB_GETS MANIFEST_GETS HEADS OTHER": blob GETs per blob of the image
# (smallest and largest count over its blobs), all blob GETs, manifest GETs, HEADs and
# other requests, from the upstream's access log after OFFSET.
# shellcheck disable=SC2016 # python, not shell
TALLY_SCRIPT='
import re, sys
path, offset, repository, blobs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
per_blob = dict.fromkeys(blobs, 0)
blob_gets = manifest_gets = heads = other = 0
request = re.compile(r"\"([A-Z]+) (/v2/\S*) HTTP/[0-9.]+\"")
with open(path, "rb") as log:
    log.seek(offset)
    for line in log.read().decode(errors="replace").splitlines():
        m = request.search(line)
        if not m:
            continue
        method, uri = m.group(1), m.group(2).split("?")[0]
        if method == "HEAD":
            heads += 1
        elif method == "GET" and uri.startswith(f"/v2/{repository}/blobs/"):
            blob_gets += 1
            digest = uri.rsplit("/", 1)[1]
            if digest in per_blob:
                per_blob[digest] += 1
        elif method == "GET" and uri.startswith(f"/v2/{repository}/manifests/"):
            manifest_gets += 1
        else:
            other += 1
print(min(per_blob.values()), max(per_blob.values()), blob_gets, manifest_gets, heads, other)
'

upstream_tally() {
  # The upstream logs a request once its answer is sent; give the last lines a moment.
  sleep 0.3
  python3 -c "$TALLY_SCRIPT" "$UPSTREAM_LOG" "$1" "$IMAGE_PATH" "${BLOB_DIGESTS[@]}"
}

# prune PATH...: removes outputs and caches after a scenario (not right before a run:
# deleting hundreds of MB, with `discard` also trimming them, would be billed to it).
prune() {
  rm -rf "$@"
  sync
}

# (c) writes N copies of the image at once, next to the caches of both servers: stop
# early with a clear message rather than fail half-way with a full disk.
check_disk() {
  local need avail
  need=$(((concurrent + 3) * COMPRESSED_BYTES + 300000000))
  avail=$(df --output=avail -B1 "$WORK" | tail -n 1)
  ((avail >= need)) ||
    die "$WORK has $((avail / 1000000)) MB free; (c) needs about $((need / 1000000)) MB ($concurrent pulls at once)"
}

# ---------------------------------------------------------------------------------------
# 5. Scenarios
# ---------------------------------------------------------------------------------------

readonly SERVERS=(ours distribution)

# (a) and (b): per run, a direct pull, then for each server a fresh process on an empty
# cache: cold pull, warm pull (page cache dropped), warm pull (page cache hot).
run_pulls() {
  local out=$WORK/out/pulls caches=$WORK/caches/pulls r server mark tally
  mkdir -p "$out" "$caches"
  log "(a, b) cold and warm pulls: direct, ours, Distribution's proxy; $runs run(s), interleaved"
  for r in $(seq "$runs"); do
    measure_pull direct "$r" drop "$UPSTREAM" "$out/direct.$r"
    measure_curl direct.curl "$r" "$UPSTREAM"
    start_relay
    measure_pull relay "$r" drop "$SERVER_ADDR" "$out/relay.$r"
    stop_server "$SERVER_PID"
    for server in "${SERVERS[@]}"; do
      start_server "$server" "pulls.$r" "$caches/$server.$r"
      MEASURED_PID=$SERVER_PID
      mark=$(upstream_mark)
      measure_pull "$server.cold" "$r" drop "$SERVER_ADDR" "$out/$server.cold.$r"
      tally=$(upstream_tally "$mark")
      note "$server.cold.upstream" "$r" "$tally"
      mark=$(upstream_mark)
      measure_pull "$server.warm" "$r" drop "$SERVER_ADDR" "$out/$server.warm.$r"
      measure_pull "$server.hot" "$r" keep "$SERVER_ADDR" "$out/$server.hot.$r"
      measure_curl "$server.curl" "$r" "$SERVER_ADDR"
      tally=$(upstream_tally "$mark")
      note "$server.warm.upstream" "$r" "$tally"
      note "$server.pulls.hwm" "$r" "$(vm_hwm_kib "$SERVER_PID")"
      MEASURED_PID=""
      stop_server "$SERVER_PID"
    done
  done
  prune "$out" "$caches"
}

# (c) and (d): per run and server, a fresh process on an empty cache, N skopeo copies at
# once; the upstream's blob GETs per blob and the server's VmHWM afterwards. The servers
# of the last run stay up, with their caches filled, for (e).
declare -A LIVE=()
run_concurrent() {
  local out=$WORK/out/concurrent caches=$WORK/caches/concurrent r server mark tally i max gets
  mkdir -p "$out" "$caches"
  log "(c, d) $concurrent concurrent cold pulls: ours, Distribution's proxy (and direct); $runs run(s)"
  for r in $(seq "$runs"); do
    for server in "${SERVERS[@]}"; do
      if [ -n "${LIVE[$server]:-}" ]; then stop_server "${LIVE[$server]%% *}"; fi
      prune "$caches/$server.$((r - 1))"
      start_server "$server" "concurrent.$r" "$caches/$server.$r"
      LIVE[$server]="$SERVER_PID $SERVER_ADDR $caches/$server.$r"
      mark=$(upstream_mark)
      MEASURED_PID=$SERVER_PID
      measure "$server.concurrent" "$r" drop -- \
        bash -c "$CONCURRENT_SCRIPT" concurrent "$concurrent" "$SERVER_ADDR" "$out/$server.$r" \
        "$IMAGE_PATH:$IMAGE_TAG"
      MEASURED_PID=""
      for i in $(seq "$concurrent"); do verify_output "$out/$server.$r/$i"; done
      tally=$(upstream_tally "$mark")
      note "$server.concurrent.upstream" "$r" "$tally"
      note "$server.concurrent.hwm" "$r" "$(vm_hwm_kib "$SERVER_PID")"
      read -r _ max gets _ <<<"$tally"
      log "    $server: upstream blob GETs $gets for ${#BLOB_DIGESTS[@]} blobs (at most $max for one)," \
        "peak RSS $(awk -v k="$(vm_hwm_kib "$SERVER_PID")" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
      prune "$out/$server.$r"
    done
    measure direct.concurrent "$r" drop -- \
      bash -c "$CONCURRENT_SCRIPT" concurrent "$concurrent" "$UPSTREAM" "$out/direct.$r" \
      "$IMAGE_PATH:$IMAGE_TAG"
    for i in $(seq "$concurrent"); do verify_output "$out/direct.$r/$i"; done
    prune "$out/direct.$r"
  done
}

# wrk_once LABEL RUN SERVER_PID URL [HEADER]: wrk on URL; appends "LABEL RUN REQ_PER_S
# BODY_BYTES_PER_S SERVER_CPU_S UPSTREAM_REQUESTS" to $WRK_RESULTS. Non-2xx answers or
# socket errors stop the benchmark.
wrk_once() {
  local label=$1 run=$2 pid=$3 url=$4 header=${5:-}
  local args=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${wrk_seconds}s")
  [ -n "$header" ] && args+=(-H "$header")
  local cpu0 cpu1 mark output=$WORK/logs/wrk.$label.$run
  sync
  mark=$(upstream_mark)
  cpu0=$(cpu_seconds "$pid")
  wrk "${args[@]}" "$url" >"$output" 2>&1 || { cat "$output" >&2; die "wrk failed on $url"; }
  cpu1=$(cpu_seconds "$pid")
  if grep -q -e 'Non-2xx' -e 'Socket errors' "$output"; then
    cat "$output" >&2
    die "wrk on $url ($label): error answers or socket errors"
  fi
  local rps bytes upstream_requests
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$output")
  [ -n "$rps" ] || { cat "$output" >&2; die "no Requests/sec in wrk's output"; }
  # wrk's total: "N requests in Ts, B read" (headers included; B with a binary unit).
  bytes=$(awk '/requests in/ {
      b = $5; u = b; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", b)
      m = (u == "KB") ? 1024 : (u == "MB") ? 1048576 : (u == "GB") ? 1073741824 : (u == "TB") ? 1099511627776 : 1
      sub(/s,?$/, "", $4); printf "%.0f", b * m / $4 }' "$output")
  if [ "$label" = "${label#upstream.}" ]; then
    upstream_requests=$(upstream_tally "$mark" | awk '{ print $3 + $4 + $5 + $6 }')
  else
    upstream_requests=-
  fi
  echo "$label $run $rps $bytes $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') $upstream_requests" \
    >>"$WRK_RESULTS"
  printf '  %-28s run %d: %10.0f req/s  %8.1f MB/s  server cpu %5.2f s  upstream requests %s\n' \
    "$label" "$run" "$rps" "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" \
    "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" "$upstream_requests" >&2
}

# check_cached URL HEADER: the answer is 200 (and, from ours, a cache hit).
check_cached() {
  local url=$1 header=$2 headers
  headers=$(curl -fsS -o /dev/null -D - -H "$header" "$url") || die "GET $url failed"
  if grep -qi '^x-cache:' <<<"$headers" && ! grep -qi '^x-cache: *HIT' <<<"$headers"; then
    die "GET $url is not a cache hit: $(grep -i '^x-cache:' <<<"$headers")"
  fi
}

# (e): the servers of the last (c) run, caches full: wrk on the manifest by tag and on a
# cached blob, ours, Distribution's and the upstream's own (for reference). Then once with
# the access logs off (ours -q, Distribution accesslog.disabled).
run_wrk() {
  local r server pid addr manifest_path blob_path
  manifest_path=/v2/$IMAGE_PATH/manifests/$IMAGE_TAG
  blob_path=/v2/$IMAGE_PATH/blobs/$WRK_BLOB
  for server in "${SERVERS[@]}"; do
    read -r pid addr _ <<<"${LIVE[$server]}"
    check_cached "http://$addr$manifest_path" "Accept: $ACCEPT"
    check_cached "http://$addr$blob_path" "Accept: */*"
  done
  log "(e) wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${wrk_seconds}s: cached manifest and cached blob" \
    "($((WRK_BLOB_BYTES / 1000)) kB layer $WRK_BLOB); $runs run(s), interleaved"
  for r in $(seq "$runs"); do
    for server in "${SERVERS[@]}" upstream; do
      if [ "$server" = upstream ]; then pid=$UPSTREAM_PID addr=$UPSTREAM; else read -r pid addr _ <<<"${LIVE[$server]}"; fi
      wrk_once "$server.manifest" "$r" "$pid" "http://$addr$manifest_path" "Accept: $ACCEPT"
      wrk_once "$server.blob" "$r" "$pid" "http://$addr$blob_path"
    done
  done
  for server in "${SERVERS[@]}"; do
    read -r pid _ _ <<<"${LIVE[$server]}"
    note "$server.wrk.hwm" 1 "$(vm_hwm_kib "$pid")"
  done

  log "(e) once more with the access logs off: ours -q, Distribution accesslog.disabled: true"
  local cache
  read -r pid _ cache <<<"${LIVE[ours]}"
  stop_server "$pid"
  start_ours quiet "$cache" -q
  LIVE[ours]="$SERVER_PID $SERVER_ADDR $cache"
  read -r pid _ cache <<<"${LIVE[distribution]}"
  stop_server "$pid"
  start_distribution quiet "$cache" off
  LIVE[distribution]="$SERVER_PID $SERVER_ADDR $cache"
  for server in "${SERVERS[@]}"; do
    read -r pid addr _ <<<"${LIVE[$server]}"
    check_cached "http://$addr$manifest_path" "Accept: $ACCEPT"
    check_cached "http://$addr$blob_path" "Accept: */*"
    wrk_once "$server.quiet.manifest" 1 "$pid" "http://$addr$manifest_path" "Accept: $ACCEPT"
    wrk_once "$server.quiet.blob" 1 "$pid" "http://$addr$blob_path"
  done
}

# ---------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------

# median FILE LABEL COLUMN: the median of COLUMN over the lines of LABEL.
median() {
  awk -v label="$2" -v col="$3" '
    $1 == label { n++; t[n] = $col }
    END {
      if (n == 0) { printf "-"; exit }
      for (i = 2; i <= n; i++) { v = t[i]; for (j = i - 1; j > 0 && t[j] > v; j--) t[j + 1] = t[j]; t[j + 1] = v }
      m = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
      printf "%.3f", m
    }' "$1"
}

# column_max FILE LABEL COLUMN / column_min: over the lines of LABEL.
column_max() { awk -v label="$2" -v col="$3" '$1 == label && (n++ == 0 || $col > m) { m = $col } END { print m + 0 }' "$1"; }
column_min() { awk -v label="$2" -v col="$3" '$1 == label && (n++ == 0 || $col < m) { m = $col } END { print m + 0 }' "$1"; }
column_sum() { awk -v label="$2" -v col="$3" '$1 == label { s += $col } END { print s + 0 }' "$1"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

FAILED=0
# check WHAT VALUE <=|>=|== LIMIT
check() {
  local what=$1 value=$2 op=$3 limit=$4 ok
  case $op in
    '<=') ok=$(awk -v a="$value" -v b="$limit" 'BEGIN { print (a <= b) }') ;;
    '>=') ok=$(awk -v a="$value" -v b="$limit" 'BEGIN { print (a >= b) }') ;;
    '==') ok=$([ "$value" = "$limit" ] && echo 1 || echo 0) ;;
  esac
  if [ "$ok" = 1 ]; then
    printf 'PASS  %-52s %9s %s %s\n' "$what" "$value" "$op" "$limit"
  else
    printf 'FAIL  %-52s %9s    (target %s %s)   <-- target missed\n' "$what" "$value" "$op" "$limit"
    FAILED=1
  fi
}

# gets_summary SERVER SCENARIO: "MIN-MAX per blob (TOTAL blob GETs, H HEADs, M manifest
# GETs per run)" over the runs.
gets_summary() {
  local key=$1.$2.upstream
  local lo hi blob_gets manifest_gets heads
  lo=$(column_min "$STATS" "$key" 3); hi=$(column_max "$STATS" "$key" 4)
  blob_gets=$(awk -v k="$key" '$1 == k { printf "%s%s", sep, $5; sep = "," }' "$STATS")
  manifest_gets=$(awk -v k="$key" '$1 == k { printf "%s%s", sep, $6; sep = "," }' "$STATS")
  heads=$(awk -v k="$key" '$1 == k { printf "%s%s", sep, $7; sep = "," }' "$STATS")
  printf '%s–%s per blob; per run: %s blob GETs, %s manifest GETs, %s HEADs' \
    "$lo" "$hi" "$blob_gets" "$manifest_gets" "$heads"
}

report() {
  local nblobs=${#BLOB_DIGESTS[@]}
  local oc dc dr ow dw oh dh ocn dcn drn
  oc=$(median "$RESULTS" ours.cold 3); dc=$(median "$RESULTS" distribution.cold 3)
  dr=$(median "$RESULTS" direct 3)
  ow=$(median "$RESULTS" ours.warm 3); dw=$(median "$RESULTS" distribution.warm 3)
  oh=$(median "$RESULTS" ours.hot 3); dh=$(median "$RESULTS" distribution.hot 3)
  ocn=$(median "$RESULTS" ours.concurrent 3); dcn=$(median "$RESULTS" distribution.concurrent 3)
  drn=$(median "$RESULTS" direct.concurrent 3)

  echo
  echo "mcreg serve (pull-through cache) benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -sr)"
  printf 'image: %s/%s:%s, %d layers + config: %d MB of real files, %d MB as tar, %d MB gzip (transferred)\n' \
    "$UPSTREAM" "$IMAGE_PATH" "$IMAGE_TAG" "$LAYER_COUNT" "$((FILE_BYTES / 1000000))" \
    "$((UNCOMPRESSED_BYTES / 1000000))" "$((COMPRESSED_BYTES / 1000000))"
  echo "upstream: Distribution $(docker-registry --version | awk '{print $NF}') (filesystem storage, access log on)"
  echo "ours: $("$MCREG_BIN" --version 2>/dev/null | head -n1) ($MCREG_BUILT) serve --upstream $UPSTREAM (default logging: access log to a file)"
  echo "peer: Distribution $(docker-registry --version | awk '{print $NF}') proxy mode (proxy.remoteurl, blobdescriptor cache inmemory, access log to a file)"
  echo "client: $(skopeo --version), skopeo copy docker://… oci:DIR:$IMAGE_TAG"
  if $DROP_CACHES; then
    echo "page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every pull, except 'warm, hot'"
  elif $drop_page_cache; then
    echo "page cache: NOT dropped (needs root); every pull ran with a warm page cache"
  else
    echo "page cache: kept (--keep-page-cache); every pull ran with a warm page cache"
  fi
  echo "load average (1/5/15 min) at the start: $LOAD_AT_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "— other work on the machine adds noise ((c) itself runs $concurrent clients at once)"
  echo "runs: $runs per server per scenario, interleaved; times are medians, RSS the max over runs"
  echo
  printf '%-30s %9s %9s %9s %12s %12s\n' "pull (skopeo, median wall s)" ours distrib direct ours/direct distrib/ours
  printf '%-30s %9s %9s %9s %12s %12s\n' "(a) cold" "$oc" "$dc" "$dr" "$(ratio "$oc" "$dr")" "$(ratio "$dc" "$oc")"
  local rl
  rl=$(median "$RESULTS" relay 3)
  printf '%-30s %9s %9s %9s %12s %12s\n' "(a) cold, plain TCP relay" "$rl" "-" "$dr" "$(ratio "$rl" "$dr")" "-"
  printf '%-30s %9s %9s %9s %12s %12s\n' "(b) warm, page cache dropped" "$ow" "$dw" "-" "$(ratio "$ow" "$dr")" "$(ratio "$dw" "$ow")"
  printf '%-30s %9s %9s %9s %12s %12s\n' "(b) warm, page cache hot" "$oh" "$dh" "-" "$(ratio "$oh" "$dr")" "$(ratio "$dh" "$oh")"
  printf '%-30s %9s %9s %9s %12s %12s\n' "(c) $concurrent concurrent cold" "$ocn" "$dcn" "$drn" "$(ratio "$ocn" "$drn")" "$(ratio "$dcn" "$ocn")"
  local ocu dcu dru
  ocu=$(median "$RESULTS" ours.curl 3); dcu=$(median "$RESULTS" distribution.curl 3); dru=$(median "$RESULTS" direct.curl 3)
  printf '%-30s %9s %9s %9s %12s %12s\n' "warm, curl all blobs→/dev/null" "$ocu" "$dcu" "$dru" "$(ratio "$ocu" "$dru")" "$(ratio "$dcu" "$ocu")"
  echo "(Distribution's cold pull / direct: $(ratio "$dc" "$dr"); the relay is socat between skopeo and the upstream:"
  echo " no cache, no parsing, the least any proxy adds here; the curl row is no client work: one curl --parallel"
  echo " fetching the $nblobs blobs from the warm cache, page cache dropped; direct = from the upstream)"
  echo
  echo "CPU seconds per pull (median; server = the cache under test, upstream = the upstream registry)"
  printf '  %-13s server: cold %5s  warm %5s  hot %5s  curl %5s  %2d× cold %6s   upstream during cold pull %5s, %d× %6s\n' \
    ours "$(median "$STATS" ours.cold.cpu 3)" "$(median "$STATS" ours.warm.cpu 3)" "$(median "$STATS" ours.hot.cpu 3)" \
    "$(median "$STATS" ours.curl.cpu 3)" "$concurrent" "$(median "$STATS" ours.concurrent.cpu 3)" \
    "$(median "$STATS" ours.cold.upstream_cpu 3)" "$concurrent" "$(median "$STATS" ours.concurrent.upstream_cpu 3)"
  printf '  %-13s server: cold %5s  warm %5s  hot %5s  curl %5s  %2d× cold %6s   upstream during cold pull %5s, %d× %6s\n' \
    distribution "$(median "$STATS" distribution.cold.cpu 3)" "$(median "$STATS" distribution.warm.cpu 3)" \
    "$(median "$STATS" distribution.hot.cpu 3)" "$(median "$STATS" distribution.curl.cpu 3)" "$concurrent" \
    "$(median "$STATS" distribution.concurrent.cpu 3)" "$(median "$STATS" distribution.cold.upstream_cpu 3)" \
    "$concurrent" "$(median "$STATS" distribution.concurrent.upstream_cpu 3)"
  printf '  %-13s upstream: pull %5s  curl %5s  %2d× %6s;  skopeo per pull: %s s CPU (cold through ours)\n' direct \
    "$(median "$STATS" direct.upstream_cpu 3)" "$(median "$STATS" direct.curl.upstream_cpu 3)" "$concurrent" \
    "$(median "$STATS" direct.concurrent.upstream_cpu 3)" "$(median "$CLIENT_CPU" ours.cold 3)"
  echo
  echo "upstream requests (the upstream's access log; $nblobs blobs: config + $LAYER_COUNT layers)"
  local server
  for server in "${SERVERS[@]}"; do
    printf '  %-13s (a) cold:  %s\n' "$server" "$(gets_summary "$server" cold)"
    printf '  %-13s (b) warm:  %s\n' "$server" "$(gets_summary "$server" warm)"
    printf '  %-13s (c) %2d×:   %s\n' "$server" "$concurrent" "$(gets_summary "$server" concurrent)"
  done
  echo
  echo "server peak RSS (VmHWM, MiB; max over runs)"
  printf '  %-13s (c) %d concurrent: %6s   (a+b) one client: %6s   after (e) wrk: %6s\n' ours "$concurrent" \
    "$(mib "$(column_max "$STATS" ours.concurrent.hwm 3)")" "$(mib "$(column_max "$STATS" ours.pulls.hwm 3)")" \
    "$(mib "$(column_max "$STATS" ours.wrk.hwm 3)")"
  printf '  %-13s (c) %d concurrent: %6s   (a+b) one client: %6s   after (e) wrk: %6s\n' distribution "$concurrent" \
    "$(mib "$(column_max "$STATS" distribution.concurrent.hwm 3)")" "$(mib "$(column_max "$STATS" distribution.pulls.hwm 3)")" \
    "$(mib "$(column_max "$STATS" distribution.wrk.hwm 3)")"
  printf '  (skopeo itself: %s MiB peak per pull)\n' "$(mib "$(column_max "$RESULTS" ours.cold 4)")"
  echo
  echo "(e) wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${wrk_seconds}s, cached; medians over $runs run(s)"
  echo "    manifest: GET $IMAGE_PATH/manifests/$IMAGE_TAG (by tag, Accept: OCI + Docker types)"
  echo "    blob: GET the $WRK_BLOB_BYTES-byte layer $WRK_BLOB (the smallest layer ≥ $((WRK_BLOB_MIN_BYTES / 1000000)) MB)"
  printf '  %-28s %10s %10s %10s %10s %12s %16s\n' "" "req/s" "MB/s" "ours/dist" "cpu µs/req" "upstream req" "(upstream req/s)"
  local what label rps mbs cpu up total_rps
  for what in manifest blob quiet.manifest quiet.blob; do
    for server in "${SERVERS[@]}"; do
      label=$server.$what
      rps=$(median "$WRK_RESULTS" "$label" 3)
      [ "$rps" != - ] || continue
      mbs=$(awk -v b="$(median "$WRK_RESULTS" "$label" 4)" 'BEGIN { printf "%.1f", b / 1e6 }')
      # CPU per request from the totals over the runs.
      total_rps=$(column_sum "$WRK_RESULTS" "$label" 3)
      cpu=$(awk -v c="$(column_sum "$WRK_RESULTS" "$label" 5)" -v r="$total_rps" -v d="$wrk_seconds" \
        'BEGIN { printf "%.1f", (r > 0) ? c / (r * d) * 1e6 : 0 }')
      up=$(column_sum "$WRK_RESULTS" "$label" 6)
      local versus=""
      if [ "$server" = ours ]; then
        versus=$(ratio "$rps" "$(median "$WRK_RESULTS" "distribution.$what" 3)")
      fi
      local reference=""
      if [ "$server" = ours ] && [ "${what#quiet.}" = "$what" ]; then
        reference=$(median "$WRK_RESULTS" "upstream.$what" 3)
      fi
      printf '  %-28s %10.0f %10s %10s %10s %12s %16s\n' "$label" "$rps" "$mbs" "$versus" "$cpu" "$up" "$reference"
    done
  done
  echo "  (quiet: one run, ours -q and Distribution with accesslog.disabled; upstream req/s: wrk on the upstream registry itself)"
  echo "  (ours, access log on vs -q: manifest $(ratio "$(median "$WRK_RESULTS" ours.manifest 3)" "$(median "$WRK_RESULTS" ours.quiet.manifest 3)")," \
    "blob $(ratio "$(median "$WRK_RESULTS" ours.blob 3)" "$(median "$WRK_RESULTS" ours.quiet.blob 3)") of the -q rate)"
  echo

  local gets_lo gets_hi gets_value
  gets_lo=$(column_min "$STATS" ours.concurrent.upstream 3)
  gets_hi=$(column_max "$STATS" ours.concurrent.upstream 4)
  if [ "$gets_lo" = "$gets_hi" ]; then gets_value=$gets_lo; else gets_value="$gets_lo–$gets_hi"; fi
  check "(a) cold pull through ours / direct (median wall)" "$(ratio "$oc" "$dr")" '<=' "$TARGET_COLD_RATIO"
  check "(b) warm pull Distribution / ours (median wall)" "$(ratio "$dw" "$ow")" '>=' "$TARGET_WARM_SPEEDUP"
  check "(e) cached blob req/s ours / Distribution (median)" \
    "$(ratio "$(median "$WRK_RESULTS" ours.blob 3)" "$(median "$WRK_RESULTS" distribution.blob 3)")" '>=' "$TARGET_BLOB_SPEEDUP"
  check "(c) upstream GETs per blob, ours (every blob, run)" "$gets_value" '==' "$TARGET_GETS_PER_BLOB"
  check "(d) our peak RSS MiB during (c)" "$(mib "$(column_max "$STATS" ours.concurrent.hwm 3)")" '<=' "$TARGET_RSS_MIB"
}

main() {
  parse_args "$@"
  check_tools
  build_mcreg
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-proxy.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  RESULTS=$WORK/results STATS=$WORK/stats WRK_RESULTS=$WORK/wrk CLIENT_CPU=$WORK/client-cpu
  mkdir -p "$WORK/logs"
  : >"$RESULTS"; : >"$STATS"; : >"$WRK_RESULTS"; : >"$CLIENT_CPU"
  build_image
  start_upstream
  push_image
  probe_drop_caches
  check_disk
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  run_pulls
  run_concurrent
  run_wrk
  report
  if ((FAILED)) && $strict; then exit 1; fi
  exit 0
}

# Sourcing the script (for trying one function) does not run it.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
