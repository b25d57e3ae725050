#!/usr/bin/env bash
# Install the Debian packages the proxy benchmark (`cargo bench --bench proxy`) needs:
# `nginx` (the reference reverse proxy, started by the bench itself on loopback with
# its own config; the package's own service is not used) and `wrk` (the load
# generator). code-server comes from scripts/install-code-server.sh.
#
# Idempotent: only packages that are missing are installed, and `apt-get update`
# runs only when something has to be installed. Prints nothing when there is nothing
# to do; progress goes to stderr.
set -euo pipefail

PACKAGES=(nginx wrk)

log() { printf 'install-bench-deps: %s\n' "$*" >&2; }

# A package counts as present only when dpkg reports it fully installed.
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

# Run as root directly; otherwise go through sudo.
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    log "need root (or sudo) to install: ${missing[*]}"
    exit 1
  fi
  SUDO=(sudo)
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
# policy-rc.d answering 101 keeps the package from starting (or failing to start) its
# own nginx service on port 80 during the install; the bench runs its own nginx.
policy=/usr/sbin/policy-rc.d
added_policy=false
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  added_policy=true
fi
trap '[[ "$added_policy" == true ]] && "${SUDO[@]}" rm -f "$policy"' EXIT
"${SUDO[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >&2
log "done"
