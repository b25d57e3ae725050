#!/usr/bin/env bash
# Install the Debian packages devbox needs to build and run code-server
# (native Node modules, ripgrep, git, TLS/zlib headers for the Rust build), or the
# packages named as arguments. With NO_SERVICE_START=1, packages that ship a service
# (nginx) are kept from starting it during the install.
#
# Idempotent: only packages that are missing are installed, and `apt-get
# update` runs only when something has to be installed. Prints nothing when
# there is nothing to do; progress goes to stderr.
set -euo pipefail

PACKAGES=(
  libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev
  build-essential python3 pkg-config ripgrep git libssl-dev zlib1g-dev
)
if (($# > 0)); then
  PACKAGES=("$@")
fi

log() { printf 'install-system-deps: %s\n' "$*" >&2; }

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
# A policy-rc.d that answers 101 keeps packages from starting their services.
policy=/usr/sbin/policy-rc.d
if [[ "${NO_SERVICE_START:-}" == 1 && ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  trap '"${SUDO[@]}" rm -f "$policy"' EXIT
fi
"${SUDO[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >&2
log "done"
