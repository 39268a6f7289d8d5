#!/usr/bin/env bash
# start-local-cluster.sh - install (if needed) and start a real one-node Slurm
# cluster (munged + slurmctld + slurmd, optionally MariaDB + slurmdbd for sacct)
# on localhost, for the tests that submit sweeps with submitit/sbatch
# (tests/test_slurm.py starts it itself) and for trying launch.sweep locally.
# Debian/Ubuntu only (slurm-wlm 22.05 packages); stop it with stop-local-cluster.sh.
#
# Idempotent: daemons that are already running (pid file + matching process
# name) are left alone; if the generated slurm.conf changed, slurmctld/slurmd
# are restarted.  Everything it writes lives under $SLURM_DIR, except the
# Debian packages it installs.  Needs root (apt-get, daemons run as root).
#
# Usage:  $(command -v sudo) SLURM_ACCOUNTING=1 bash slurm/start-local-cluster.sh && source "${TMPDIR:-/tmp}/rtp-slurm/env.sh"
#         python -m launch.sweep configs/sweeps/smoke.py --cluster slurm --wait
#         bash slurm/stop-local-cluster.sh
# Env knobs:
#   SLURM_DIR           base dir: etc/ run/ log/ state/ [mysql/]  (default ${TMPDIR:-/tmp}/rtp-slurm)
#   SLURM_ACCOUNTING=1  also install + start MariaDB and slurmdbd so that `sacct`
#                       works (submitit's job.state / detection of cancelled jobs use sacct)
#   SLURM_CLUSTER_NAME  ClusterName                                (default localcluster)
#   SLURMCTLD_PORT / SLURMD_PORT / SLURMDBD_PORT / MYSQL_PORT       (default 6817 / 6818 / 6819 / 3307)
#   SLURM_CRED_EXPIRE   AuthInfo cred_expire; also the delay before a requeued job
#                       (submitit checkpoint/preemption, scontrol requeue) may restart (default 10, Slurm's is 120)
#   SLURM_FRESH=1       stop and wipe previous state (jobs, job ids, accounting DB) first
#   SLURM_START_TIMEOUT seconds to wait for the node to become idle (default 60)
#   SLURM_LINK_ETC=1    also symlink /etc/slurm/slurm.conf to the generated file so that
#                       clients work without SLURM_CONF (off by default: no system config touched)
set -euo pipefail

T0=$EPOCHREALTIME
HERE=$(dirname "$(readlink -f "$0")")
SLURM_DIR=${SLURM_DIR:-${TMPDIR:-/tmp}/rtp-slurm}
ACCOUNTING=${SLURM_ACCOUNTING:-0}
CLUSTER=${SLURM_CLUSTER_NAME:-localcluster}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
DBD_PORT=${SLURMDBD_PORT:-6819}
MYSQL_PORT=${MYSQL_PORT:-3307}
CRED_EXPIRE=${SLURM_CRED_EXPIRE:-10}
TIMEOUT=${SLURM_START_TIMEOUT:-60}

ETC=$SLURM_DIR/etc  RUN=$SLURM_DIR/run  LOG=$SLURM_DIR/log  STATE=$SLURM_DIR/state
MYDIR=$SLURM_DIR/mysql                      # MariaDB data/socket/pid/log, owned by mysql
CONF=$ETC/slurm.conf
MUNGE_SOCKET=$RUN/munge/munge.socket.2
export SLURM_CONF=$CONF                     # clients, slurmdbd (reads slurmdbd.conf beside it)

elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
log()     { echo "[start-local-cluster $(elapsed)s] $*"; }
die()     { echo "start-local-cluster: ERROR: $*" >&2; exit 1; }
# alive PIDFILE NAME: pid file exists and names a live process called NAME
# (guards against stale pid files whose pid was reused by something else)
alive()   { [[ -s $1 ]] && [[ $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$2" ]]; }
stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, wait <=10 s, SIGKILL
  alive "$1" "$2" || return 0
  local pid; pid=$(cat "$1"); kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; rm -f "$1"
}

[[ $(id -u) -eq 0 ]] || die "must run as root"

# ------------------------------------------------------------------ 1. packages
need=()
command -v munged    >/dev/null || need+=(munge)
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd    >/dev/null || need+=(slurmd)
command -v sbatch    >/dev/null || need+=(slurm-client)
if [[ $ACCOUNTING == 1 ]]; then
  command -v slurmdbd >/dev/null || need+=(slurmdbd)
  command -v mariadbd >/dev/null || need+=(mariadb-server)
fi
mkdir -p "$LOG"
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  # No init system in the container: keep the postinst scripts from trying to
  # start system-wide daemons (Docker-style images already ship this file).
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # wait (rather than fail) while another apt/dpkg holds the lock, e.g. a parallel test session
  inst() { apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" >>"$LOG/apt.log" 2>&1; }
  if ! inst; then                     # fresh image: package lists not downloaded yet
    apt-get update -q -o DPkg::Lock::Timeout=300 >>"$LOG/apt.log" 2>&1 || true
    inst || { ((made_policy)) && rm -f /usr/sbin/policy-rc.d; tail -20 "$LOG/apt.log"; die "apt-get install failed"; }
  fi
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
fi

# ------------------------------------------------------------------ 2. dirs
if [[ ${SLURM_FRESH:-0} == 1 ]]; then
  SLURM_DIR=$SLURM_DIR bash "$HERE/stop-local-cluster.sh" >/dev/null 2>&1 || true
  rm -rf "$STATE" "$LOG" "$MYDIR"; mkdir -p "$LOG"
fi
mkdir -p "$ETC" "$RUN/munge" "$STATE/ctld" "$STATE/slurmd"
# Job ids restart at FirstJobId whenever the state is wiped; start each fresh
# state at a different id so that a reused submitit folder (.../%j) cannot hand
# back a stale <jobid>_0_result.pkl from an earlier cluster.  Kept per state dir
# so that slurm.conf stays identical across restarts.
[[ -s $STATE/first_job_id ]] || echo $(( ($(date +%s) % 600000) * 100 + 1 )) >"$STATE/first_job_id"
FIRST_JOB_ID=$(cat "$STATE/first_job_id")
# munged insists that the dirs holding its socket/key/log are not group/other
# writable; everyone needs +x on the socket dir (jobs of any user authenticate)
chmod 0755 "$SLURM_DIR" "$ETC" "$RUN" "$RUN/munge" "$LOG" "$STATE"

# ------------------------------------------------------------------ 3. node facts
# slurmctld decides "am I the controller?" by comparing SlurmctldHost with the
# short hostname; slurmd gets its node name via -N.  All traffic goes to
# 127.0.0.1 (SlurmctldHost=name(addr), NodeAddr), so the name need not resolve.
NODE=$(hostname -s)
[[ -n $NODE ]] || die "empty hostname"
# `slurmd -C` prints what slurmd will report when it registers; configuring
# exactly that avoids the node being drained for "Low RealMemory" etc.
HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
[[ $HW == *CPUs=* ]] || die "slurmd -C failed: $HW"

# ------------------------------------------------------------------ 4. slurm.conf
if [[ $ACCOUNTING == 1 ]]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# connections to slurmdbd do not use AuthInfo's socket but this one
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT="# no slurmdbd: sacct does not work; finished jobs stay visible to
# squeue/scontrol for MinJobAge seconds and are appended to JobCompLoc
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log"
fi
cat >"$CONF.new" <<EOF
# Generated by start-local-cluster.sh: single-node test cluster on localhost
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# private munged socket; cred_expire (default 120 s) is also how long a requeued
# job (submitit checkpoint/preemption, scontrol requeue) stays PENDING
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$ETC/plugstack.conf
MailProg=/bin/true
# no cgroups in a container: plain process tracking, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
# CPUs are consumable, memory is not (a job without --mem would otherwise
# be given, and block, the whole node's memory)
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# tiny cluster: run the scheduler every second instead of waiting up to
# sched_interval=60 s / bf_interval=30 s before starting queued array tasks
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
ReturnToService=2
MaxArraySize=10001
MaxJobCount=50000
FirstJobId=$FIRST_JOB_ID
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
JobRequeue=1
$ACCT
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $HW State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
: >"$ETC/plugstack.conf"        # do not pick up /etc/slurm/plugstack.conf(.d)
if [[ -f $CONF ]] && ! cmp -s "$CONF" "$CONF.new" \
   && { alive "$RUN/slurmd.pid" slurmd || alive "$RUN/slurmctld.pid" slurmctld; }; then
  # configuration changed (e.g. accounting switched on): restart the daemons
  # reading it; running jobs survive (their slurmstepd is independent)
  log "slurm.conf changed: restarting slurmd/slurmctld"
  stop_pid "$RUN/slurmd.pid" slurmd
  stop_pid "$RUN/slurmctld.pid" slurmctld
fi
mv "$CONF.new" "$CONF"
chmod 644 "$CONF" "$ETC/plugstack.conf"

# ------------------------------------------------------------------ 5. munge
if ! alive "$RUN/munged.pid" munged; then
  rm -f "$RUN/munged.pid" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  if [[ ! -s $ETC/munge.key ]]; then   # private key: independent of /etc/munge
    dd if=/dev/urandom of="$ETC/munge.key.tmp" bs=1024 count=1 status=none
    mv "$ETC/munge.key.tmp" "$ETC/munge.key"
  fi
  chown root:root "$ETC/munge.key"; chmod 0400 "$ETC/munge.key"   # owner-only or munged refuses it
  # runs as root (--force: munged otherwise warns/refuses), own socket/pid/log/seed
  # --origin: skip resolving the hostname (warning + null origin if it does not resolve)
  munged --force --socket="$MUNGE_SOCKET" --key-file="$ETC/munge.key" --origin=127.0.0.1 \
         --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" \
         --seed-file="$STATE/munged.seed" --num-threads=10 \
    || { tail -5 "$LOG/munged.log"; die "munged failed to start"; }
fi
for _ in $(seq 50); do munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && break; sleep 0.1; done
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null || die "munge self-test failed (see $LOG/munged.log)"
log "munged up (pid $(cat "$RUN/munged.pid"))"

# ------------------------------------------------------------------ 6. accounting (optional)
if [[ $ACCOUNTING == 1 ]]; then
  MYSOCK=$MYDIR/mysqld.sock
  if ! alive "$MYDIR/mysqld.pid" mariadbd; then
    rm -f "$MYDIR/mysqld.pid" "$MYSOCK"
    if [[ ! -d $MYDIR/data/mysql ]]; then
      rm -rf "$MYDIR/data"; mkdir -p "$MYDIR/data"; chown -R mysql:mysql "$MYDIR"
      mariadb-install-db --no-defaults --user=mysql --datadir="$MYDIR/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$LOG/mysql-install.log" 2>&1 \
        || { tail "$LOG/mysql-install.log"; die "mariadb-install-db failed"; }
    fi
    chown -R mysql:mysql "$MYDIR"
    # --no-defaults: ignore /etc/mysql; private datadir/socket, TCP on loopback only
    setsid mariadbd --no-defaults --user=mysql --datadir="$MYDIR/data" --socket="$MYSOCK" \
      --pid-file="$MYDIR/mysqld.pid" --log-error="$MYDIR/mysqld.log" \
      --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
      --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
    for _ in $(seq 150); do mariadb --no-defaults -S "$MYSOCK" -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
    mariadb --no-defaults -S "$MYSOCK" -uroot -e 'select 1' >/dev/null || { tail "$MYDIR/mysqld.log"; die "mariadbd did not come up"; }
    mariadb --no-defaults -S "$MYSOCK" -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmtestpw';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmtestpw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
  fi
  log "mariadbd up (pid $(cat "$MYDIR/mysqld.pid"), 127.0.0.1:$MYSQL_PORT)"

  umask 077     # slurmdbd refuses a slurmdbd.conf readable by others (it holds the DB password)
  cat >"$ETC/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=slurmtestpw
StorageLoc=slurm_acct_db
EOF
  umask 022
  if [[ -f $ETC/slurmdbd.conf ]] && ! cmp -s "$ETC/slurmdbd.conf" "$ETC/slurmdbd.conf.new"; then
    stop_pid "$RUN/slurmdbd.pid" slurmdbd
  fi
  mv "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf"
  if ! alive "$RUN/slurmdbd.pid" slurmdbd; then
    rm -f "$RUN/slurmdbd.pid"
    slurmdbd || { tail "$LOG/slurmdbd.log"; die "slurmdbd failed to start"; }   # reads $ETC/slurmdbd.conf
  fi
  for _ in $(seq 150); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  sacctmgr -n list cluster >/dev/null || { tail "$LOG/slurmdbd.log"; die "slurmdbd not answering"; }
  # register the cluster up front (slurmctld would add it itself, a bit later)
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  log "slurmdbd up (pid $(cat "$RUN/slurmdbd.pid"))"
fi

# ------------------------------------------------------------------ 7. slurmctld, slurmd
if ! alive "$RUN/slurmctld.pid" slurmctld; then
  rm -f "$RUN/slurmctld.pid"
  slurmctld -f "$CONF" || { tail -20 "$LOG/slurmctld.log"; die "slurmctld failed to start"; }
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
scontrol ping | grep -q 'is UP' || { tail -20 "$LOG/slurmctld.log"; die "slurmctld not answering"; }
log "slurmctld up (pid $(cat "$RUN/slurmctld.pid"))"

if ! alive "$RUN/slurmd.pid" slurmd; then
  rm -f "$RUN/slurmd.pid"
  slurmd -f "$CONF" -N "$NODE" || { tail -20 "$LOG/slurmd.log"; die "slurmd failed to start"; }
fi

# ------------------------------------------------------------------ 8. wait for an idle node
deadline=$(($(date +%s) + TIMEOUT)); resumed=0; st=
while :; do
  st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
  case $st in
    idle|mixed|allocated|completing) break ;;
    drain*|down*|fail*)   # e.g. left DOWN/DRAIN by an unclean stop: return it to service once
      ((resumed)) || { scontrol update nodename="$NODE" state=resume 2>/dev/null || true; resumed=1; } ;;
  esac
  if (($(date +%s) > deadline)); then
    sinfo -N -l; scontrol show node "$NODE" | grep -i reason || true; tail -20 "$LOG/slurmd.log"
    die "node $NODE not idle after ${TIMEOUT}s (state '$st')"
  fi
  sleep 0.1
done
log "slurmd up (pid $(cat "$RUN/slurmd.pid")), node $NODE is $st"

echo "export SLURM_CONF=$CONF" >"$SLURM_DIR/env.sh"
if [[ ${SLURM_LINK_ETC:-0} == 1 ]]; then mkdir -p /etc/slurm; ln -sfn "$CONF" /etc/slurm/slurm.conf; fi
sinfo
echo "Slurm cluster ready in $(elapsed) s.  Use: source $SLURM_DIR/env.sh  (export SLURM_CONF=$CONF)"
