#!/usr/bin/env bash
# Install the Debian packages the proxy benchmark (`cargo bench --bench proxy`) needs:
# `nginx` (the reference reverse proxy, started by the bench itself on loopback with
# its own config; the package's own service is kept from starting) and `wrk` (the load
# generator). code-server comes from scripts/install-code-server.sh. Idempotent and
# quiet when both are installed.
set -euo pipefail
NO_SERVICE_START=1 exec "$(dirname "${BASH_SOURCE[0]}")/install-system-deps.sh" nginx wrk
