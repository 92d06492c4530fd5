#!/usr/bin/env bash
# User-space instructions and allocations per proxied HTTP/1.1 keep-alive request: the release
# dataplane on a static bootstrap (one listener, inline route to an nginx backend) under
# callgrind, counters zeroed after a warm-up, then `h2load --h1 -n N -c 10`.
#
#   bench/callgrind.sh [N] [PATH]   # prints instructions/request and mallocs/request
#
# PATH is / (a small body, the default) or /64k (64 KiB). PROTO=h2c measures HTTP/2 with
# prior knowledge instead (h2load's 10 connections x 10 streams, as bench/run.py's h2c load).
#
# Keeps the profile in $OUT (default /tmp/callgrind.h1.out) for callgrind_annotate;
# DATAPLANE runs another build of the binary (to compare two).
#
# glibc copies 4 KiB and more with `rep movsb`, which callgrind counts once per byte: a
# per-request future crossing that size would add ~4k "instructions" for a copy that costs
# the CPU about what a 3.9 KiB one does. The threshold is raised so every copy is counted
# as the vector loop it is below it.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.cpu.x86_rep_movsb_threshold=16777216}
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-5000}
URLPATH=${2:-/}
PROTO=${PROTO:-h1}
case "$PROTO" in
  h1) CODEC=HTTP1; LOAD=(h2load --h1 -c 10); CURL=(curl) ;;
  h2c) CODEC=HTTP2; LOAD=(h2load -c 10 -m 10); CURL=(curl --http2-prior-knowledge) ;;
  *) echo "PROTO is h1 or h2c" >&2; exit 2 ;;
esac
OUT=${OUT:-/tmp/callgrind.h1.out}
WORK=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(port); LISTEN=$(port); ADMIN=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/root"
head -c 65536 /dev/zero | tr '\0' x > "$WORK/root/64k"
chmod 755 "$WORK" "$WORK/root"   # nginx's workers run as another user
sed -e "s#{{workdir}}#$WORK#g" -e "s#{{port}}#$BACKEND#g" -e "s#{{root}}#$WORK/root#g" \
  "$ROOT/bench/configs/nginx-backend.conf" > "$WORK/backend.conf"
nginx -c "$WORK/backend.conf" -p "$WORK" >"$WORK/backend.log" 2>&1 &
pids+=($!)

cat > "$WORK/bootstrap.yaml" <<YAML
node: { id: callgrind, cluster: bench }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN } } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: $LISTEN } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          codec_type: $CODEC
          route_config:
            name: bench
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BACKEND } } } } ] } ]
YAML

valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  "${DATAPLANE:-$ROOT/target/release/dataplane}" --bootstrap "$WORK/bootstrap.yaml" --concurrency 1 \
  >"$WORK/dataplane.log" 2>&1 &
VG=$!
pids+=($VG)
for _ in $(seq 600); do
  "${CURL[@]}" -sf -o /dev/null "http://127.0.0.1:$LISTEN/" && break
  sleep 0.1
done
"${CURL[@]}" -sf -o /dev/null "http://127.0.0.1:$LISTEN/" || { cat "$WORK/dataplane.log"; exit 1; }
"${LOAD[@]}" -n 1000 "http://127.0.0.1:$LISTEN$URLPATH" >/dev/null
callgrind_control -z "$VG" >/dev/null
"${LOAD[@]}" -n "$N" "http://127.0.0.1:$LISTEN$URLPATH" | grep -E '^(requests|status codes):'
callgrind_control -d "$VG" >/dev/null
kill "$VG"; wait "$VG" 2>/dev/null || true
# The dump after zeroing is the one with the highest number.
DUMP=$(ls -v "$OUT".* 2>/dev/null | tail -1)
python3 - "$DUMP" "$N" <<'PY'
import re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, total, allocs, cfn = {}, 0, 0, None
for line in open(path, errors="replace"):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
    elif line.startswith("cfn="):
        m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.strip())
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            cfn = names.get(m.group(1), "")
        else:
            cfn = line[4:].strip()
    elif line.startswith("fn="):
        m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.strip())
        if m and m.group(2):
            names[m.group(1)] = m.group(2)
    elif line.startswith("calls=") and cfn is not None:
        if cfn in ("malloc", "calloc", "realloc"):
            allocs += int(line.split()[0][6:])
        cfn = None
print(f"instructions/request: {total / n:.0f}  mallocs/request: {allocs / n:.1f}  ({path})")
PY
echo "annotate: callgrind_annotate $DUMP | head -60"
