#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for ncbench's tests, CI and local trials.
#
#   scripts/slurm-local.sh start    install (Debian packages, once) and start munge, MariaDB,
#                                   slurmdbd, slurmctld, slurmd; returns at once when already up
#   scripts/slurm-local.sh stop     stop the daemons that this script started (pid files only)
#   scripts/slurm-local.sh status   print the daemons and the node state; exit 0 when usable
#   scripts/slurm-local.sh install  only install the packages
#
# The node has 8 CPU slots and 4 fake GPUs (gres gpu:4, device files are links to /dev/null), so
# Slurm assigns CUDA_VISIBLE_DEVICES exactly as on a GPU node. Accounting (slurmdbd + MariaDB) is
# on so that `sacct`, and submitit through it, report real job states.
#
# Needs root, Debian/Ubuntu with apt, and (first time only) the Debian mirrors. Exit codes:
#   0 ok; 1 failure while starting (see the logs named); 3 cannot run here (not root, no apt,
#   packages not installable: the message says which); 4 a Slurm config not written by this
#   script exists (refuses to touch it).
# Never removes packages. Stops only daemons it started itself, by pid file, after checking
# /proc/PID/comm. Environment: NCBENCH_SLURM_CPUS (8), NCBENCH_SLURM_GPUS (4),
# NCBENCH_SLURM_ACCOUNTING (1; 0 = no slurmdbd/MariaDB, sacct then fails).
set -uo pipefail

MARK="# Managed by ncbench scripts/slurm-local.sh"
ETC=/etc/slurm
STATE=/run/ncbench-slurm            # which daemons this script started (name -> pid file)
LOGDIR=/var/log/slurm
FAKEGPU=/var/lib/slurm-fakegpu
CPUS="${NCBENCH_SLURM_CPUS:-8}"
GPUS="${NCBENCH_SLURM_GPUS:-4}"
ACCOUNTING="${NCBENCH_SLURM_ACCOUNTING:-1}"
DB_PASS=ncbench-slurm
PKGS=(slurmctld slurmd slurm-client munge)
DB_PKGS=(slurmdbd mariadb-server mariadb-client)

log() { echo "slurm-local: $*" >&2; }
die() { local code=$1; shift; log "$*"; exit "$code"; }

# ---------------------------------------------------------------------------------------------
# processes

# pid_alive PIDFILE COMM: true when PIDFILE names a live process whose /proc/PID/comm is COMM.
pid_alive() {
    local pidfile=$1 comm=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm") == "$comm" ]]
}

# Remember that we started daemon NAME (so `stop` may stop it, and nothing else).
mark_started() { mkdir -p "$STATE"; printf '%s %s\n' "$2" "$3" >"$STATE/$1"; }

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# install

have_binaries() {
    local b
    for b in slurmctld slurmd sbatch sacct munged; do command -v "$b" >/dev/null || return 1; done
    if [[ $ACCOUNTING == 1 ]]; then
        for b in slurmdbd mariadbd mariadb; do command -v "$b" >/dev/null || return 1; done
    fi
}

install_packages() {
    have_binaries && return 0
    [[ $(id -u) == 0 ]] || die 3 "not root: cannot install or run Slurm daemons here"
    command -v apt-get >/dev/null || die 3 "no apt-get: install Slurm (slurmctld slurmd munge) yourself"
    local pkgs=("${PKGS[@]}")
    [[ $ACCOUNTING == 1 ]] && pkgs+=("${DB_PKGS[@]}")
    log "installing ${pkgs[*]} (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$STATE/apt.log" 2>&1; then
        apt-get update -q >>"$STATE/apt.log" 2>&1 ||
            die 3 "apt-get update failed (no network to the Debian mirrors?); see $STATE/apt.log"
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$STATE/apt.log" 2>&1 ||
            die 1 "apt-get install ${pkgs[*]} failed; see $STATE/apt.log"
    fi
    have_binaries || die 1 "packages installed but Slurm binaries are missing; see $STATE/apt.log"
}

# ---------------------------------------------------------------------------------------------
# configuration

# write_if_changed FILE MODE: write stdin to FILE when different; returns 0 when it changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$file"
    return 0
}

check_foreign_config() {
    local f
    for f in "$ETC/slurm.conf" "$ETC/gres.conf" "$ETC/slurmdbd.conf"; do
        if [[ -f $f ]] && ! head -n1 "$f" | grep -qF "$MARK"; then
            die 4 "$f exists and was not written by this script: refusing to replace it"
        fi
    done
}

CONFIG_CHANGED=0
write_configs() {
    local host acct mem
    host=$(hostname -s)
    mkdir -p "$ETC" /var/spool/slurmctld /var/spool/slurmd "$LOGDIR" /run/slurm "$FAKEGPU"
    local i
    for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$FAKEGPU/nvidia$i"; done
    if [[ $ACCOUNTING == 1 ]]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none"
    else
        acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
    fi
    mem=$((CPUS * 1024))
    write_if_changed "$ETC/slurm.conf" 644 <<EOF && CONFIG_CHANGED=1
$MARK (do not edit: rewritten on start)
ClusterName=ncbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    local gres="$MARK (do not edit: rewritten on start)
AutoDetect=off"
    ((GPUS > 0)) && gres+="
NodeName=$host Name=gpu File=$FAKEGPU/nvidia[0-$((GPUS - 1))]"
    write_if_changed "$ETC/gres.conf" 644 <<<"$gres" && CONFIG_CHANGED=1
    if [[ $ACCOUNTING == 1 ]]; then
        write_if_changed "$ETC/slurmdbd.conf" 600 <<EOF && CONFIG_CHANGED=1
$MARK (do not edit: rewritten on start)
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    fi
}

# ---------------------------------------------------------------------------------------------
# daemons

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi   # ours or the system's
    [[ -s /etc/munge/munge.key ]] || {
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
        else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --force 9>&- || die 1 "munged did not start; see /var/log/munge/munged.log"
    mark_started munge /run/munge/munged.pid munged
    wait_for 10 bash -c 'munge -n | unmunge' || die 1 "munge does not answer; see /var/log/munge/munged.log"
}

mysql_ok() { mariadb -u root -e 'SELECT 1' >/dev/null 2>&1; }

start_mariadb() {
    if mysql_ok; then :; else
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/mariadb-install.log" 2>&1 ||
                die 1 "mariadb-install-db failed; see $STATE/mariadb-install.log"
        fi
        setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
            --pid-file=/run/mysqld/ncbench-slurm.pid --log-error="$LOGDIR/mariadb.log" \
            </dev/null >/dev/null 2>&1 9>&- &
        wait_for 30 mysql_ok || die 1 "MariaDB did not start; see $LOGDIR/mariadb.log"
        mark_started mariadb /run/mysqld/ncbench-slurm.pid mariadbd
    fi
    mariadb -u root <<EOF || die 1 "cannot create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# start_slurm_daemon NAME COMM PIDFILE ARGS...: start unless running; restart when config changed.
start_slurm_daemon() {
    local name=$1 comm=$2 pidfile=$3; shift 3
    if pid_alive "$pidfile" "$comm"; then
        ((CONFIG_CHANGED)) || return 0
        stop_group "$name $pidfile $comm force"
    fi
    "$@" 9>&- || die 1 "$name did not start; see $LOGDIR/$name.log"
    wait_for 10 pid_alive "$pidfile" "$comm" || die 1 "$name exited at start; see $LOGDIR/$name.log"
    mark_started "$name" "$pidfile" "$comm"
}

cluster_up() {
    local st
    pid_alive /run/slurm/slurmctld.pid slurmctld && pid_alive /run/slurm/slurmd.pid slurmd || return 1
    st=$(sinfo -h -o %t 2>/dev/null) || return 1
    [[ $st =~ ^(idle|mix|alloc|comp)\*?$ ]] && { [[ $ACCOUNTING != 1 ]] || sacct -n -X -S now >/dev/null 2>&1; }
}

start() {
    mkdir -p "$STATE" 2>/dev/null || die 3 "cannot create $STATE (not root?)"
    exec 9>"$STATE/lock"
    flock -w 300 9 || die 1 "another slurm-local.sh is running"
    [[ $(id -u) == 0 ]] || die 3 "not root: cannot install or run Slurm daemons here"
    check_foreign_config
    install_packages
    write_configs
    if ((CONFIG_CHANGED == 0)) && cluster_up; then return 0; fi    # the fast path
    local t0=$SECONDS
    start_munge
    if [[ $ACCOUNTING == 1 ]]; then
        start_mariadb
        start_slurm_daemon slurmdbd slurmdbd /run/slurm/slurmdbd.pid /usr/sbin/slurmdbd
        wait_for 30 sacctmgr -n show cluster || die 1 "slurmdbd does not answer; see $LOGDIR/slurmdbd.log"
    fi
    start_slurm_daemon slurmctld slurmctld /run/slurm/slurmctld.pid /usr/sbin/slurmctld
    start_slurm_daemon slurmd slurmd /run/slurm/slurmd.pid /usr/sbin/slurmd
    if ! wait_for 30 cluster_up; then
        # a node left DOWN/DRAIN by an earlier unclean stop: bring it back
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1
        wait_for 20 cluster_up || die 1 "node not idle: $(sinfo -h -o '%t %E' 2>&1); see $LOGDIR/"
    fi
    log "cluster up in $((SECONDS - t0)) s ($(sinfo -h -o '%n %c CPUs %G %t'))"
}

# stop_group "NAME PIDFILE COMM [force]"...: SIGTERM each (in parallel), wait up to 10 s for all,
# SIGKILL what is left (only if /proc/PID/comm still matches).
stop_group() {
    local -a names=() pids=() comms=()
    local item name pidfile comm force pid i
    for item in "$@"; do
        read -r name pidfile comm force <<<"$item"
        if [[ -z ${force:-} && ! -f $STATE/$name ]]; then continue; fi
        if pid_alive "$pidfile" "$comm"; then
            pid=$(tr -dc '0-9' <"$pidfile")
            kill -TERM "$pid" 2>/dev/null
            names+=("$name") pids+=("$pid") comms+=("$comm")
        fi
        rm -f "$STATE/$name"
    done
    for ((i = 0; i < 100; i++)); do
        local alive=0 p
        for p in "${pids[@]}"; do [[ -d /proc/$p ]] && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        if [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "${comms[$i]}" ]]; then
            kill -KILL "$pid" 2>/dev/null
        fi
        log "stopped ${names[$i]} (pid $pid)"
    done
}

# The recorded "NAME PIDFILE COMM" of a daemon this script started, if any.
started_item() { [[ -f $STATE/$1 ]] && echo "$1 $(cat "$STATE/$1")"; }

stop() {
    [[ -d $STATE ]] || return 0
    exec 9>"$STATE/lock"
    flock -w 60 9 || die 1 "another slurm-local.sh is running"
    local -a group
    # slurm daemons first (slurmctld reports to slurmdbd), then slurmdbd, then its database/munge
    for phase in "slurmd slurmctld" "slurmdbd" "mariadb munge"; do
        group=()
        for name in $phase; do
            item=$(started_item "$name") && group+=("$item")
        done
        ((${#group[@]})) && stop_group "${group[@]}"
    done
    return 0
}

status() {
    local name pidfile comm rc=0
    for name in munge mariadb slurmdbd slurmctld slurmd; do
        case $name in
            munge) pidfile=/run/munge/munged.pid comm=munged ;;
            mariadb) pidfile=/run/mysqld/ncbench-slurm.pid comm=mariadbd ;;
            *) pidfile=/run/slurm/$name.pid comm=$name ;;
        esac
        if pid_alive "$pidfile" "$comm"; then
            echo "$name: running (pid $(tr -dc '0-9' <"$pidfile"))$([[ -f $STATE/$name ]] && echo ', started by this script')"
        else
            echo "$name: not running"
        fi
    done
    if command -v sinfo >/dev/null && cluster_up; then
        sinfo -h -o 'node %n: %t, %c CPUs, %G'
    else
        echo "cluster: not usable"; rc=1
    fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    install) mkdir -p "$STATE" && install_packages ;;
    *) echo "usage: $0 start|stop|status|install" >&2; exit 2 ;;
esac
