#!/usr/bin/env bash
# stop-local-cluster.sh - stop the one-node cluster started by start-local-cluster.sh, by PID
# (the pid files under $SLURM_DIR; a pid is only signalled if the process still
# has the expected name).  Cancels remaining jobs first so that no slurmstepd /
# job processes outlive the cluster.  Idempotent.
#   SLURM_DIR    same as for start-local-cluster.sh (default ${TMPDIR:-/tmp}/rtp-slurm)
#   SLURM_WIPE=1 afterwards delete $SLURM_DIR (config, state, logs, key, DB)
set -uo pipefail
SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/rtp-slurm}
RUN=$SLURM_DIR/run
export SLURM_CONF=$SLURM_DIR/etc/slurm.conf

alive() { [[ -s $1 ]] && [[ $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$2" ]]; }
stop() {                       # stop PIDFILE NAME: SIGTERM, wait <=10 s, then SIGKILL
  local pidfile=$1 name=$2 pid
  if alive "$pidfile" "$name"; then
    pid=$(cat "$pidfile"); kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "stop-local-cluster: $name ($pid) ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid"; fi
    echo "stop-local-cluster: stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# 1. cancel the jobs slurmctld still knows, and wait (<=15 s) until they have
#    left the node, so their slurmstepd and user processes end with the cluster
if alive "$RUN/slurmctld.pid" slurmctld && alive "$RUN/slurmd.pid" slurmd; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [[ -n ${jobs// /} ]]; then
    echo "stop-local-cluster: cancelling jobs $jobs"
    scancel $jobs 2>/dev/null
    for _ in $(seq 150); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.1; done
  fi
fi

# 2. daemons, in reverse start order
stop "$RUN/slurmd.pid"             slurmd
stop "$RUN/slurmctld.pid"          slurmctld
stop "$RUN/slurmdbd.pid"           slurmdbd
stop "$SLURM_DIR/mysql/mysqld.pid" mariadbd
stop "$RUN/munged.pid"             munged
rm -f "$RUN"/munge/munge.socket.2*

if [[ ${SLURM_WIPE:-0} == 1 ]]; then rm -rf "$SLURM_DIR"; echo "stop-local-cluster: removed $SLURM_DIR"; fi
exit 0
