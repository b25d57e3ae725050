#!/usr/bin/env bash
# Sets up and starts devbox on its embedded default configuration (idempotent: fast
# when already done): installs code-server if none is found, builds the release binary,
# then runs `devbox serve` with specs/ and the state dir .devbox/ under the project.
# Extra arguments go to `devbox serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the build and code-server need (a no-op when all are present).
scripts/install-system-deps.sh
DEVBOX_CODE_SERVER=$(scripts/install-code-server.sh | tail -n1)
export DEVBOX_CODE_SERVER
cargo build --release --locked
exec target/release/devbox --specs specs --state-dir .devbox serve "$@"
