#!/usr/bin/env bash
# A single-node Slurm cluster on loopback, for development and for devbox's Slurm tests.
#
#   scripts/slurm-dev.sh up      # install if needed, configure, start, wait until the node
#                                # takes jobs; prints the partition name as its last line
#   scripts/slurm-dev.sh down    # cancel the cluster's jobs, stop slurmd, slurmctld, munged
#   scripts/slurm-dev.sh status  # each daemon's state and sinfo; exit 0 only when all is up
#
# How: the Debian 12 packages (slurm-wlm slurmctld slurmd munge slurm-client) are installed
# through scripts/install-system-deps.sh with NO_SERVICE_START=1. The config goes where the
# plain sbatch/squeue/scancel look without any environment: /etc/slurm/slurm.conf and
# /etc/slurm/cgroup.conf, each starting with a marker line; a file without the marker was
# not written here and is never overwritten (the script stops and says so). PID 1 need not
# be systemd: the daemons are started directly in the order munged (as user munge),
# slurmctld, `slurmd -N localhost`; each daemonizes and writes its pid file in /run, and
# `down` stops them by those pid files.
#
# Idempotent: `up` starts only what is not running (a daemon that died is started again;
# a pid file whose process is gone is stale), rewrites the config only when it would
# change (and then restarts slurmctld and slurmd), resumes a node that is DOWN or DRAINED,
# and returns at once when all is up. `down` does nothing when nothing runs. Runs as root
# (`status` also as another user); progress goes to stderr.
#
# Environment: SLURM_DEV_TIMEOUT (seconds `up` waits for the node, default 30).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PACKAGES=(slurm-wlm slurmctld slurmd munge slurm-client)
readonly CONF_DIR=/etc/slurm
readonly SLURM_CONF_FILE=$CONF_DIR/slurm.conf
readonly CGROUP_CONF_FILE=$CONF_DIR/cgroup.conf
readonly MARKER="# Written by devbox scripts/slurm-dev.sh, which rewrites it on each 'up'."
readonly NODE=localhost
readonly PARTITION=devbox
readonly CTLD_SPOOL=/var/spool/slurmctld
readonly SLURMD_SPOOL=/var/spool/slurmd
readonly SLURM_LOG_DIR=/var/log/slurm
readonly CTLD_PID=/run/slurmctld.pid
readonly SLURMD_PID=/run/slurmd.pid
readonly CTLD_LOG=$SLURM_LOG_DIR/slurmctld.log
readonly SLURMD_LOG=$SLURM_LOG_DIR/slurmd.log
readonly MUNGE_RUN=/run/munge
readonly MUNGE_PID=$MUNGE_RUN/munged.pid
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_LOG=/var/log/munge/munged.log
readonly LOCK_FILE=/run/slurm-dev.lock
readonly TIMEOUT=${SLURM_DEV_TIMEOUT:-30}

# The client commands below read this file whatever the caller's environment says.
export SLURM_CONF=$SLURM_CONF_FILE

log() { printf 'slurm-dev: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

require_root() {
  [[ "$(id -u)" -eq 0 ]] || die "'$1' must run as root (it installs packages, writes $CONF_DIR and starts daemons); try: sudo $0 $1"
}

# One `up` or `down` at a time (tests may call `up` in parallel). Daemons started while
# the lock is held must not inherit its descriptor: start_daemon closes fd 9.
take_lock() {
  exec 9>"$LOCK_FILE"
  flock -w 120 9 || die "another slurm-dev.sh is still running (lock $LOCK_FILE)"
}

# ---- daemons, by pid file ---------------------------------------------------------------

# True if process $1 exists and is not a zombie. PID 1 here is not an init that reaps
# at once: a killed daemon can linger as a zombie, which `kill -0` still finds.
alive() {
  local stat state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ "$state" != Z && "$state" != X ]]
}

# The pid in $1 if that process is alive and its command name starts with $2, else nothing.
live_pid() {
  local pidfile=$1 name=$2 pid comm
  [[ -r "$pidfile" ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n "$pid" ]] && alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ "$comm" == "$name"* ]] || return 1
  printf '%s\n' "$pid"
}

# "running (pid N)", "stopped (stale pid file)" or "stopped".
daemon_state() {
  local pidfile=$1 name=$2 pid
  if pid=$(live_pid "$pidfile" "$name"); then
    printf 'running (pid %s)\n' "$pid"
  elif [[ -e "$pidfile" ]]; then
    printf 'stopped (stale pid file %s)\n' "$pidfile"
  else
    printf 'stopped\n'
  fi
}

# start_daemon NAME PIDFILE COMMAND...: runs COMMAND (which daemonizes), then waits for
# the pid file to name a live NAME. What the command prints before it daemonizes (config
# errors) is shown; stdin/stdout are /dev/null so no caller's pipe stays open.
start_daemon() {
  local name=$1 pidfile=$2 errfile rc=0
  shift 2
  rm -f "$pidfile"
  errfile=$(mktemp)
  "$@" </dev/null >/dev/null 2>"$errfile" 9>&- || rc=$?
  if [[ -s "$errfile" ]]; then
    sed "s/^/slurm-dev: $name: /" "$errfile" >&2
  fi
  rm -f "$errfile"
  ((rc == 0)) || fail_with_logs "$name exited with status $rc while starting"
  local deadline=$((SECONDS + 10)) pid
  until pid=$(live_pid "$pidfile" "$name"); do
    ((SECONDS < deadline)) || fail_with_logs "$name started but $pidfile names no live $name after 10 s"
    sleep 0.1
  done
  log "$name started (pid $pid)"
}

# stop_daemon NAME PIDFILE: SIGTERM, up to 15 s, then SIGKILL. Removes the pid file.
stop_daemon() {
  local name=$1 pidfile=$2 pid
  if ! pid=$(live_pid "$pidfile" "$name"); then
    [[ -e "$pidfile" ]] && log "$name: removing stale pid file $pidfile"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
}

show_log_tails() {
  local f
  for f in "$MUNGE_LOG" "$CTLD_LOG" "$SLURMD_LOG"; do
    if [[ -r "$f" ]]; then
      printf -- '--- last lines of %s ---\n' "$f" >&2
      tail -n 15 "$f" >&2
    fi
  done
}

fail_with_logs() {
  log "error: $*"
  show_log_tails
  exit 1
}

# ---- installation and configuration ------------------------------------------------------

install_packages() {
  NO_SERVICE_START=1 scripts/install-system-deps.sh "${PACKAGES[@]}"
}

# Spool and runtime directories with the owners the daemons expect, and a munge key.
prepare_dirs() {
  install -d -m 0755 -o slurm -g slurm "$CTLD_SPOOL" "$SLURM_LOG_DIR"
  install -d -m 0755 -o root -g root "$SLURMD_SPOOL"
  install -d -m 0755 -o munge -g munge "$MUNGE_RUN"
  if [[ ! -s "$MUNGE_KEY" ]]; then
    log "creating $MUNGE_KEY"
    install -d -m 0700 -o munge -g munge "$(dirname "$MUNGE_KEY")"
    mungekey --create --keyfile="$MUNGE_KEY"
    chown munge:munge "$MUNGE_KEY"
    chmod 0600 "$MUNGE_KEY"
  fi
}

# "v2" when /sys/fs/cgroup is the unified hierarchy, else "v1" (controllers mounted one by
# one under /sys/fs/cgroup/<controller>, as on this kind of machine).
cgroup_version() {
  if [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]]; then
    echo v2
  else
    echo v1
  fi
}

# The node's hardware as slurmd sees it (CPUs, sockets, cores, threads, RealMemory),
# so the node registers without a "configuration differs from hardware" drain.
node_hardware() {
  local line
  line=$(slurmd -C) || die "slurmd -C failed"
  line=${line%%$'\n'*}
  line=${line#NodeName=* }
  [[ "$line" == *RealMemory=* ]] || die "unexpected slurmd -C output: $line"
  printf '%s\n' "$line"
}

# slurm_conf_text HARDWARE (node_hardware's line)
slurm_conf_text() {
  cat <<EOF
$MARKER
# Remove that line to keep your own edits: the script then leaves this file alone
# (and refuses to run). A single-node cluster on loopback for development and tests.
ClusterName=devbox
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
# No mail on this host (the default /bin/mail is absent and slurmctld logs an error).
MailProg=/bin/true
# Kill every process of a job on scancel, also those that called setsid (VS Code terminals).
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
SchedulerType=sched/backfill
# Cores and memory are consumed; always submit with --mem (without it a job takes all).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
# sstat -j ID.batch (MaxRSS, CPU) works without an accounting database.
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue -t all for 5 minutes.
MinJobAge=300
KillWait=10
InactiveLimit=0
# A node that was DOWN becomes usable again as soon as its slurmd registers.
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 $1 State=UNKNOWN
# Interactive servers mostly idle: up to 4 jobs share a core.
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE OverSubscribe=FORCE:4 State=UP
EOF
}

cgroup_conf_text() {
  local version
  version=$(cgroup_version)
  cat <<EOF
$MARKER
# Remove that line to keep your own edits: the script then leaves this file alone.
# This host mounts cgroup $version.
CgroupPlugin=cgroup/$version
ConstrainRAMSpace=yes
EOF
  if [[ "$version" == v2 ]]; then
    # Without systemd as PID 1 there is no dbus to ask for a scope: build the tree by hand.
    printf 'IgnoreSystemdOnFailure=yes\nEnableControllers=yes\n'
  fi
}

# ours FILE: true if FILE is absent or carries the marker.
ours() {
  [[ ! -e "$1" ]] || [[ "$(head -n1 "$1")" == "$MARKER" ]]
}

refuse_foreign_config() {
  local f
  for f in "$SLURM_CONF_FILE" "$CGROUP_CONF_FILE"; do
    ours "$f" || die "$f was not written by this script (its first line is not the marker); not touching it. Move it away to let scripts/slurm-dev.sh manage the cluster, or use that config as it is."
  done
}

# write_if_changed FILE TEXT: sets CONFIG_CHANGED=1 when FILE had to be (re)written.
CONFIG_CHANGED=0
write_if_changed() {
  local file=$1 text=$2 tmp
  if [[ -r "$file" && "$(<"$file")" == "$text" ]]; then
    return 0
  fi
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$text" >"$tmp"
  chmod 0644 "$tmp"
  mv "$tmp" "$file"
  log "wrote $file"
  CONFIG_CHANGED=1
}

write_config() {
  local hardware slurm_text cgroup_text
  hardware=$(node_hardware)
  slurm_text=$(slurm_conf_text "$hardware")
  cgroup_text=$(cgroup_conf_text)
  install -d -m 0755 "$CONF_DIR"
  write_if_changed "$SLURM_CONF_FILE" "$slurm_text"
  write_if_changed "$CGROUP_CONF_FILE" "$cgroup_text"
}

# ---- starting ---------------------------------------------------------------------------

ensure_munged() {
  if ! live_pid "$MUNGE_PID" munged >/dev/null; then
    start_daemon munged "$MUNGE_PID" runuser -u munge -- /usr/sbin/munged
  fi
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail_with_logs "munged runs but a credential does not round-trip (munge -n | unmunge)"
}

ensure_slurmctld() {
  if ! live_pid "$CTLD_PID" slurmctld >/dev/null; then
    start_daemon slurmctld "$CTLD_PID" slurmctld
  fi
  local deadline=$((SECONDS + TIMEOUT))
  until [[ "$(timeout 5 scontrol ping 2>/dev/null)" == *"is UP"* ]]; do
    ((SECONDS < deadline)) || fail_with_logs "slurmctld does not answer scontrol ping after ${TIMEOUT} s"
    live_pid "$CTLD_PID" slurmctld >/dev/null || fail_with_logs "slurmctld died while starting"
    sleep 0.2
  done
}

ensure_slurmd() {
  if ! live_pid "$SLURMD_PID" slurmd >/dev/null; then
    start_daemon slurmd "$SLURMD_PID" slurmd -N "$NODE"
  fi
}

# The node's compact state as sinfo prints it (idle, mix, alloc, down*, drain, ...).
node_state() {
  timeout 10 sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true
}

node_reason() {
  timeout 10 scontrol show node "$NODE" 2>/dev/null | grep -o 'Reason=.*' || true
}

# Waits until the node takes jobs (idle, or busy with jobs), resuming it when it is DOWN
# or DRAINED without being unreachable (a "*" suffix means slurmd has not registered yet).
wait_for_node() {
  local deadline=$((SECONDS + TIMEOUT)) state="" last="" resumed_at=-100
  while :; do
    state=$(node_state)
    if [[ "$state" != "$last" ]]; then
      log "node $NODE: ${state:-(no answer)}"
      last=$state
    fi
    case "$state" in
      idle | mix | alloc | comp) return 0 ;;
      down | drain | drng | drained | fail | failg)
        if ((SECONDS - resumed_at >= 3)); then
          log "resuming node $NODE ($(node_reason))"
          scontrol update NodeName="$NODE" State=RESUME >&2 || true
          resumed_at=$SECONDS
        fi
        ;;
      inval) fail_with_logs "node $NODE is INVALID: its registration does not match slurm.conf ($(node_reason))" ;;
    esac
    if ((SECONDS >= deadline)); then
      fail_with_logs "node $NODE is '${state:-no answer}', not idle, after ${TIMEOUT} s ($(node_reason))"
    fi
    live_pid "$SLURMD_PID" slurmd >/dev/null || fail_with_logs "slurmd died"
    live_pid "$CTLD_PID" slurmctld >/dev/null || fail_with_logs "slurmctld died"
    sleep 0.2
  done
}

cmd_up() {
  require_root up
  take_lock
  install_packages
  refuse_foreign_config
  prepare_dirs
  write_config
  if ((CONFIG_CHANGED)); then
    # Node and plugin changes need restarts, not just `scontrol reconfigure`.
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
  fi
  ensure_munged
  ensure_slurmctld
  ensure_slurmd
  wait_for_node
  log "up: partition $PARTITION on node $NODE (sbatch/squeue/scancel use $SLURM_CONF_FILE)"
  printf '%s\n' "$PARTITION"
}

# ---- stopping ---------------------------------------------------------------------------

# Jobs outlive slurmd (their slurmstepd keeps running), so `down` cancels them first and
# waits up to KillWait (10 s) and a little more for them to end.
cancel_jobs() {
  live_pid "$CTLD_PID" slurmctld >/dev/null || return 0
  local jobs
  jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ') || return 0
  [[ -n "${jobs// /}" ]] || return 0
  log "cancelling jobs: $jobs"
  # shellcheck disable=SC2086 # one word per job id
  timeout 10 scancel $jobs >&2 || true
  local deadline=$((SECONDS + 15))
  while [[ -n "$(timeout 10 squeue -h -o '%i' 2>/dev/null)" ]] && ((SECONDS < deadline)); do
    sleep 0.2
  done
}

cmd_down() {
  require_root down
  take_lock
  if ! ours "$SLURM_CONF_FILE"; then
    die "$SLURM_CONF_FILE was not written by this script: the daemons are not ours to stop"
  fi
  cancel_jobs
  stop_daemon slurmd "$SLURMD_PID"
  stop_daemon slurmctld "$CTLD_PID"
  stop_daemon munged "$MUNGE_PID"
  log "down"
}

# ---- status -----------------------------------------------------------------------------

cmd_status() {
  local ok=0 out
  printf 'munged:    %s\n' "$(daemon_state "$MUNGE_PID" munged)"
  printf 'slurmctld: %s\n' "$(daemon_state "$CTLD_PID" slurmctld)"
  printf 'slurmd:    %s\n' "$(daemon_state "$SLURMD_PID" slurmd)"
  live_pid "$SLURMD_PID" slurmd >/dev/null || ok=1
  # Without munged or slurmctld, sinfo only retries until its timeout: not asked then.
  if ! live_pid "$MUNGE_PID" munged >/dev/null; then
    printf 'sinfo:     (not asked: munged is not running)\n'
    ok=1
  elif ! live_pid "$CTLD_PID" slurmctld >/dev/null; then
    printf 'sinfo:     (not asked: slurmctld is not running)\n'
    ok=1
  elif out=$(timeout 10 sinfo 2>&1); then
    printf '%s\n' "$out"
    case "$(node_state)" in
      idle | mix | alloc | comp) ;;
      *) ok=1 ;;
    esac
  else
    printf 'sinfo:     no answer: %s\n' "$out"
    ok=1
  fi
  return "$ok"
}

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (($# == 1)) || usage
  case "$1" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

main "$@"
