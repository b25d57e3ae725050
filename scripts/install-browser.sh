#!/usr/bin/env bash
# Installs what the real-browser test needs (idempotent; quiet when done): Debian's
# Chromium, and playwright-core (only the driver library: it never downloads a browser)
# into .tools/playwright. Prints the node_modules directory to use as NODE_PATH.
set -euo pipefail

PLAYWRIGHT_VERSION=1.64.1
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PREFIX="$REPO_DIR/.tools/playwright"

log() { printf 'install-browser: %s\n' "$*" >&2; }

if [[ ! -x /usr/bin/chromium ]]; then
  SUDO=()
  [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq >&2
  "${SUDO[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends chromium >&2
fi

if [[ "$(cat "$PREFIX/.version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]]; then
  log "installing playwright-core $PLAYWRIGHT_VERSION into $PREFIX"
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION" >&2
  echo "$PLAYWRIGHT_VERSION" > "$PREFIX/.version"
fi

echo "$PREFIX/node_modules"
