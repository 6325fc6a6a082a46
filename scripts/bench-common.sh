# shellcheck shell=bash
# shellcheck disable=SC2154 # size_mb, rebuild_image: the sourcing script's options
# What the benchmarks share (scripts/bench-pull.sh, bench-proxy.sh and bench-copy.sh source
# it): the benchmark image, so that all measure the same one and share target/bench-image/
# (a multi-layer OCI image of real files from this machine, built once per size with GNU
# tar and umoci); the timer; CPU time of a process; a Distribution registry; free ports.
#
# The sourcing script provides: TARGET_DIR, size_mb, rebuild_image, log and die.
# build_image sets LAYOUT (an OCI layout whose image is tagged `bench`).

# Share of the image each layer gets, in percent: two big layers (~100 MB and ~80 MB at
# the default 320 MB), a few medium ones and a tail of small ones, like real images.
readonly LAYER_WEIGHTS=(31 25 14 10 8 5 4 2 1)
# No single file above this, so that one huge .so cannot swallow a layer's whole budget.
readonly MAX_FILE_MB=64
# Bump when the image recipe changes, so that a cached image is rebuilt.
readonly IMAGE_RECIPE=3

# Real directory trees from this machine, in the order layers draw from them. Layer i
# takes files from source (i mod n), continuing where that source left off, so big and
# small layers each get a different kind of content (shared libraries, Rust rlibs, text
# and docs, Python sources, executables).
image_sources() {
  local dir
  for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu \
    "$(rustc --print sysroot 2>/dev/null || true)" \
    /usr/share \
    "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" \
    /usr/bin; do
    [ -n "$dir" ] && [ -d "$dir" ] && realpath "$dir"
  done
}

# Prints "LAYER<TAB>PATH[<TAB>SIZE]" for every file (with its size) and parent directory
# of every layer, paths relative to /. Deterministic for a given machine: each source is
# listed sorted, and layers fill their byte budgets in order.
plan_layers() {
  local -a sources
  mapfile -t sources < <(image_sources)
  local i src
  for i in "${!sources[@]}"; do
    src=${sources[$i]}
    # /usr/share/package-lists is a big generated data file, not part of a typical image.
    # Hard-linked files are skipped: tar would store the second name as a link, and the
    # layer would come out smaller than planned.
    find "$src" -xdev -path /usr/share/package-lists -prune -o \
      -type f -links 1 -readable -size -"$((MAX_FILE_MB * 1024))"k -printf "$i\t%s\t%p\n" |
      LC_ALL=C sort -t $'\t' -k3,3
  done | awk -F '\t' -v nsrc="${#sources[@]}" -v total="$((size_mb * 1000 * 1000))" \
    -v weights="${LAYER_WEIGHTS[*]}" '
    { n[$1]++; size[$1, n[$1]] = $2; path[$1, n[$1]] = $3 }
    END {
      nl = split(weights, w, " ")
      for (l = 1; l <= nl; l++) {
        budget = total * w[l] / 100; got = 0; tries = 0
        s = (l - 1) % nsrc
        while (got < budget && tries < nsrc) {
          if (cur[s] >= n[s]) { s = (s + 1) % nsrc; tries++; continue }
          k = ++cur[s]; p = substr(path[s, k], 2)
          # Parent directories first, once per layer, so the layer unpacks cleanly.
          m = split(p, parts, "/"); d = ""
          for (j = 1; j < m; j++) {
            d = d (j > 1 ? "/" : "") parts[j]
            if (!((l, d) in seen)) { seen[l, d] = 1; print l "\t" d }
          }
          print l "\t" p "\t" size[s, k]; got += size[s, k]
        }
        if (got < budget) { print "not enough files for layer " l > "/dev/stderr"; exit 3 }
      }
    }'
}

# Builds the OCI layout once per size under target/bench-image/<N>mb and reuses it.
build_image() {
  local dir=$TARGET_DIR/bench-image/${size_mb}mb
  LAYOUT=$dir/layout
  # The marker holds the recipe version: a changed recipe rebuilds instead of reusing.
  if ! $rebuild_image && [ "$(cat "$dir/complete" 2>/dev/null)" = "$IMAGE_RECIPE" ]; then
    log "reusing cached image $LAYOUT"
    return
  fi
  log "building a ${size_mb} MB image from real files into $LAYOUT"
  rm -rf "$dir"
  mkdir -p "$dir"
  local plan=$dir/plan.tsv
  plan_layers >"$plan" || die "could not find ${size_mb} MB of files to build the image from"

  umoci init --layout "$LAYOUT"
  umoci new --image "$LAYOUT:bench"
  local l list bytes total=0
  for l in $(cut -f1 "$plan" | uniq); do
    list=$dir/layer-$l.list
    awk -F '\t' -v l="$l" '$1 == l { print $2 }' "$plan" >"$list"
    # GNU tar with an explicit list (dirs included, no recursion), numeric root owner.
    tar --create --file "$dir/layer.tar" --directory / --no-recursion \
      --numeric-owner --owner=0 --group=0 --verbatim-files-from --files-from "$list"
    bytes=$(stat -c %s "$dir/layer.tar")
    total=$((total + bytes))
    log "  layer $l: $(wc -l <"$list") entries, $((bytes / 1000000)) MB uncompressed"
    # umoci gzips the layer (as `umoci repack` would) and appends it to the manifest.
    umoci raw add-layer --image "$LAYOUT:bench" \
      --history.created_by "bench-pull.sh layer $l" "$dir/layer.tar"
    rm -f "$dir/layer.tar"
  done
  umoci gc --layout "$LAYOUT"
  echo "$total" >"$dir/uncompressed-bytes"
  awk -F '\t' '{ s += $3 } END { print s }' "$plan" >"$dir/file-bytes"
  echo "$IMAGE_RECIPE" >"$dir/complete"
}

# The timer: starts COMMAND, waits for it with wait4 and writes "WALL_S MAX_RSS_KIB USER_S
# SYS_S" to TIMING. The clock starts after python is up, so neither its start-up nor a
# wrapper's (GNU time's own exec costs several ms with a cold page cache) is billed to the
# command; ru_maxrss is the figure `/usr/bin/time -v` prints as "Maximum resident set size".
# Arguments: TIMING LOG COMMAND...; exits with COMMAND's status.
# shellcheck disable=SC2016,SC2034 # python, not shell; used by the scripts that source this
TIMER_SCRIPT='
import os, subprocess, sys, time
timing, log, command = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "wb") as out:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
with open(timing, "w") as t:
    t.write(f"{wall:.4f} {usage.ru_maxrss} {usage.ru_utime:.3f} {usage.ru_stime:.3f}\n")
sys.exit(os.waitstatus_to_exitcode(status))
'

# CPU seconds (user + system) a live process has used so far.
cpu_seconds() {
  local ticks
  ticks=$(getconf CLK_TCK)
  # Fields after the command name, which is in parentheses: utime and stime are 12 and 13.
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$ticks" '{ printf "%.2f", ($12 + $13) / hz }'
}

# start_registry_in DIR on|off: a Distribution registry on a free loopback port, storing
# under DIR/data, its config in DIR/config.yml and its output in DIR/log, the access log on
# or off. Sets REGISTRY_PID and REGISTRY_ADDR once GET /v2/ answers; dies, showing the log,
# if it does not come up.
start_registry_in() {
  local dir=$1 accesslog=$2 port i
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $([ "$accesslog" = on ] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY_ADDR=127.0.0.1:$port
  for i in $(seq 200); do
    curl -fs -o /dev/null "http://$REGISTRY_ADDR/v2/" && return 0
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/log" >&2
  die "docker-registry ($dir) did not come up"
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
