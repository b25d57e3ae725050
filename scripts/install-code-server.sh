#!/usr/bin/env bash
# Make a working code-server available and print the absolute path of its
# binary as the last line on stdout; everything else goes to stderr:
#
#   CS=$(scripts/install-code-server.sh | tail -n1)
#
# Which binary, in order:
#   1. $DEVBOX_CODE_SERVER, if set (it must be an executable);
#   2. the project-local install in <repo>/.tools/code-server, if complete;
#   3. `code-server` on PATH, if `code-server --version` reports 4.x;
#   4. otherwise install code-server $CS_VERSION into <repo>/.tools/code-server.
#
# The install follows the recipe in shared/design.md ("code-server facts"): the
# npm package's own post-install step downloads things and so cannot run here,
# so it is done by hand (the links it makes are those of its postinstall.sh).
# The install is built in a temporary directory next to the final one, moved
# into place, started once as a check, and only then marked complete with a
# version file; a run that finds that file returns at once.
set -euo pipefail

CS_VERSION=4.100.3
# Native modules of lib/vscode whose build scripts --ignore-scripts skipped.
NATIVE_MODULES=(kerberos @parcel/watcher @vscode/deviceid @vscode/spdlog native-watchdog node-pty)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname "$SCRIPT_DIR")
TOOLS_DIR="$REPO_DIR/.tools"
PREFIX="$TOOLS_DIR/code-server"
BIN="$PREFIX/bin/code-server"
MARKER="$PREFIX/.devbox-installed-version"

log() { printf 'install-code-server: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Absolute path of an executable given as a path or as a command name.
abs_exe() {
  local p
  p=$(command -v -- "$1") || return 1
  [[ -f "$p" && -x "$p" ]] || return 1
  printf '%s/%s\n' "$(cd "$(dirname "$p")" && pwd -P)" "$(basename "$p")"
}

local_install_complete() {
  [[ -x "$BIN" && -f "$MARKER" && "$(<"$MARKER")" == "$CS_VERSION" ]]
}

# Variables that would make code-server talk to another instance or read
# someone else's settings (see design.md, "a clean environment").
CLEAN_ENV=(env -u VSCODE_IPC_HOOK_CLI -u PASSWORD -u HASHED_PASSWORD -u PORT -u CODE_SERVER_CONFIG)

# ---- 1-3: use what is already there -------------------------------------

if [[ -n "${DEVBOX_CODE_SERVER:-}" ]]; then
  cs=$(abs_exe "$DEVBOX_CODE_SERVER") ||
    die "DEVBOX_CODE_SERVER=$DEVBOX_CODE_SERVER is not an executable file"
  log "using DEVBOX_CODE_SERVER"
  echo "$cs"
  exit 0
fi

if local_install_complete; then
  echo "$BIN"
  exit 0
fi

if cs=$(abs_exe code-server); then
  # Even --version writes a default ~/.config/code-server/config.yaml and
  # creates ~/.local/share/code-server unless pointed elsewhere.
  scratch=$(mktemp -d)
  version=$("${CLEAN_ENV[@]}" XDG_DATA_HOME="$scratch" XDG_CONFIG_HOME="$scratch" \
    timeout 30 "$cs" --config /dev/null --version 2>/dev/null | head -n1 || true)
  rm -rf "$scratch"
  if [[ "$version" == 4.* ]]; then
    log "using code-server from PATH ($version)"
    echo "$cs"
    exit 0
  fi
  log "ignoring $cs: its --version printed '${version:-nothing}', not 4.x"
fi

# ---- 4: install -----------------------------------------------------------

STAGE=""      # temporary install directory, removed unless moved into place
CHECK_DIR=""  # scratch directories of the start-up check
CHECK_PID=""  # process (group) of the code-server started by the check

cleanup() {
  if [[ -n "$CHECK_PID" ]]; then
    stop_group "$CHECK_PID"
  fi
  if [[ -n "$CHECK_DIR" ]]; then rm -rf "$CHECK_DIR"; fi
  if [[ -n "$STAGE" ]]; then rm -rf "$STAGE"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stop a process group started with setsid: TERM, then KILL after 5 s.
stop_group() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start the binary as devbox would and wait for a 200 with JSON from /healthz,
# then check that the extension CLI works too.
verify() {
  local bin=$1 port url code deadline
  CHECK_DIR=$(mktemp -d)
  mkdir -p "$CHECK_DIR"/{data,ext,folder,xdg}
  port=$(free_port)
  url="http://127.0.0.1:$port/healthz"
  log "checking: starting code-server on 127.0.0.1:$port"

  setsid "${CLEAN_ENV[@]}" XDG_DATA_HOME="$CHECK_DIR/xdg" "$bin" \
    --auth none --bind-addr "127.0.0.1:$port" \
    --disable-telemetry --disable-update-check \
    --user-data-dir "$CHECK_DIR/data" --extensions-dir "$CHECK_DIR/ext" \
    --config "$CHECK_DIR/config.yaml" "$CHECK_DIR/folder" \
    >"$CHECK_DIR/log" 2>&1 </dev/null &
  CHECK_PID=$!

  deadline=$((SECONDS + 30))
  while :; do
    code=$(curl -s -o "$CHECK_DIR/healthz" -w '%{http_code}' --max-time 2 "$url" || true)
    if [[ "$code" == 200 ]] && grep -q '"status"' "$CHECK_DIR/healthz"; then
      break
    fi
    if ! kill -0 "$CHECK_PID" 2>/dev/null; then
      sed 's/^/  | /' "$CHECK_DIR/log" >&2
      die "code-server exited before answering $url (its output is above)"
    fi
    if ((SECONDS >= deadline)); then
      sed 's/^/  | /' "$CHECK_DIR/log" >&2
      die "no 200 with JSON from $url within 30 s (last status: ${code:-none}; output above)"
    fi
    sleep 0.2
  done
  log "checking: /healthz answered $(<"$CHECK_DIR/healthz")"
  stop_group "$CHECK_PID"
  CHECK_PID=""

  if ! "${CLEAN_ENV[@]}" XDG_DATA_HOME="$CHECK_DIR/xdg" timeout 60 "$bin" \
    --user-data-dir "$CHECK_DIR/data" --extensions-dir "$CHECK_DIR/ext" \
    --config "$CHECK_DIR/config.yaml" --list-extensions >"$CHECK_DIR/list" 2>&1; then
    sed 's/^/  | /' "$CHECK_DIR/list" >&2
    die "'code-server --list-extensions' failed (its output is above)"
  fi
  rm -rf "$CHECK_DIR"
  CHECK_DIR=""
}

mkdir -p "$TOOLS_DIR"

# One install at a time (tests may call this script in parallel); whoever
# waited may find the work already done.
command -v flock >/dev/null 2>&1 || die "'flock' (util-linux) is needed"
exec 9>"$TOOLS_DIR/code-server.lock"
flock 9
if local_install_complete; then
  echo "$BIN"
  exit 0
fi

# Leftovers of installs that were killed before their cleanup could run.
rm -rf "$TOOLS_DIR"/code-server.tmp.* "$TOOLS_DIR"/code-server.old.*

start=$SECONDS
log "installing code-server $CS_VERSION into $PREFIX"
"$SCRIPT_DIR/install-system-deps.sh"

for tool in node npm npx python3 curl setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is needed but not on PATH"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [[ "$node_major" != 20 ]]; then
  log "warning: code-server $CS_VERSION is built for Node 20, this is Node $(node --version)"
fi

# Quiet, non-interactive npm. node-gyp must use the local Node headers (it
# cannot download them here): point it at Node's own install prefix.
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
node_home=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [[ -z "${npm_config_nodedir:-}" && -f "$node_home/include/node/node.h" ]]; then
  export npm_config_nodedir="$node_home"
fi

# Build next to the final place so the final move is a rename.
STAGE=$(mktemp -d "$TOOLS_DIR/code-server.tmp.XXXXXX")
chmod 755 "$STAGE"  # mktemp makes it private
VSCODE="$STAGE/node_modules/code-server/lib/vscode"

log "npm install code-server@$CS_VERSION (without install scripts)"
npm install --prefix "$STAGE" --ignore-scripts --save-exact "code-server@$CS_VERSION" >&2

# VS Code's own dependencies; npm 11 fails extracting these, npm 10 works.
log "installing lib/vscode dependencies with npm 10"
(cd "$VSCODE" && npx -y npm@10 install --omit=dev --ignore-scripts) >&2

# Build the native modules. npm_config_yes: node-pty's post-install step
# otherwise stops at an `npx node-gyp` prompt.
log "building native modules: ${NATIVE_MODULES[*]}"
(cd "$VSCODE" && npm_config_yes=true npm rebuild "${NATIVE_MODULES[@]}") >&2

# npm hoisted argon2 (a dependency of code-server itself) to the prefix.
log "building argon2"
(cd "$STAGE" && npm rebuild argon2) >&2

# @vscode/ripgrep would download its binary; use Debian's instead.
rg_path=$(command -v rg) || die "ripgrep (rg) not found"
mkdir -p "$VSCODE/node_modules/@vscode/ripgrep/bin"
ln -sfn "$rg_path" "$VSCODE/node_modules/@vscode/ripgrep/bin/rg"

# What code-server's postinstall.sh does after its npm install.
log "installing the built-in extensions' shared dependencies"
(cd "$VSCODE/extensions" && npm install --omit=dev) >&2
ln -sfn node_modules "$VSCODE/node_modules.asar"
ln -sfn code-linux.sh "$VSCODE/bin/remote-cli/code-server"
ln -sfn browser-linux.sh "$VSCODE/bin/helpers/browser.sh"

# Quick load test of every native module (the start-up check below does not
# load node-pty, which is only needed once a terminal opens).
(cd "$VSCODE" && node -e 'for (const m of process.argv.slice(1)) require(m)' \
  "${NATIVE_MODULES[@]}") >&2 || die "a native module does not load"

# A stable entry point.
mkdir -p "$STAGE/bin"
ln -sfn ../node_modules/code-server/out/node/entry.js "$STAGE/bin/code-server"

# Move into place (replacing an old or unfinished install), check, mark done.
if [[ -e "$PREFIX" ]]; then
  old=$(mktemp -d "$TOOLS_DIR/code-server.old.XXXXXX")
  mv "$PREFIX" "$old/"
  rm -rf "$old"
fi
mv "$STAGE" "$PREFIX"
STAGE=""

verify "$BIN"
echo "$CS_VERSION" >"$MARKER"
log "code-server $CS_VERSION installed in $((SECONDS - start)) s"
echo "$BIN"
