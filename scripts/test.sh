#!/usr/bin/env bash
# Sets up everything the test suite needs (idempotent: fast when already done) and runs
# it: formatting and lint checks, then every unit and end-to-end test against real
# code-server. This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Rust components used below (already present on most toolchains).
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    log "installing Rust component $component"
    rustup component add "$component"
  fi
done

# Debian packages the build and code-server need (a no-op when all are present).
scripts/install-system-deps.sh
# Prometheus' promtool, which checks devbox's /metrics (its service is kept from starting).
NO_SERVICE_START=1 scripts/install-system-deps.sh prometheus
# Python's `requests`, for the test that runs the API reference's Python example as written.
if ! python3 -c 'import requests' 2>/dev/null; then
  log "installing python3 requests"
  python3 -m pip install --quiet --disable-pip-version-check requests
fi

# code-server (installs 4.100.3 under .tools/ unless a 4.x is already available).
DEVBOX_CODE_SERVER=$(scripts/install-code-server.sh | tail -n1)
export DEVBOX_CODE_SERVER
log "code-server: $DEVBOX_CODE_SERVER"

# Headless Chromium and playwright-core for the real-browser test of the dashboard.
DEVBOX_PLAYWRIGHT_NODE_PATH=$(scripts/install-browser.sh | tail -n1)
export DEVBOX_PLAYWRIGHT_NODE_PATH

# A single-node Slurm on loopback (slurmctld, slurmd, munge), for the Slurm backend's
# tests; left running afterwards (`scripts/slurm-dev.sh down` stops it).
log "single-node Slurm"
scripts/slurm-dev.sh up >/dev/null

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
log "cargo test"
cargo test --locked --no-fail-fast "$@"
