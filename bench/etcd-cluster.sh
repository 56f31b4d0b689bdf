#!/usr/bin/env bash
# etcd-cluster.sh: a local 3-member etcd cluster for the DLM comparison.
#
#   bench/etcd-cluster.sh up DIR     start 3 members on 127.0.0.1, wait until
#                                    healthy, print the client endpoints
#                                    (comma-separated) as the last stdout line
#   bench/etcd-cluster.sh down DIR   stop exactly the pids in DIR/pids and
#                                    remove DIR/data (logs stay in DIR/logs)
#
# Uses Debian's etcd (apt-get install etcd-server) and etcdctl
# (apt-get install etcd-client). Data lives in DIR/data/mN with etcd's default
# fsync behaviour; put DIR on an ordinary disk. Both subcommands are
# idempotent. Ports: clients ETCD_BENCH_CLIENT_PORT..+2 (default 23791..23793),
# peers ETCD_BENCH_PEER_PORT..+2 (default 23801..23803).
set -euo pipefail

CLIENT_PORT=${ETCD_BENCH_CLIENT_PORT:-23791}
PEER_PORT=${ETCD_BENCH_PEER_PORT:-23801}
MEMBERS=3
HEALTH_TIMEOUT=${ETCD_BENCH_HEALTH_TIMEOUT:-60}

die() { echo "etcd-cluster: $*" >&2; exit 1; }
log() { echo "etcd-cluster: $*" >&2; }

usage() {
	echo "usage: $0 up DIR | down DIR" >&2
	exit 2
}

endpoints() {
	local i eps=()
	for ((i = 0; i < MEMBERS; i++)); do eps+=("127.0.0.1:$((CLIENT_PORT + i))"); done
	local IFS=,
	echo "${eps[*]}"
}

# is_ours PID DIR: the pid is alive and is an etcd whose data dir is under DIR
# (guards against a recycled pid).
is_ours() {
	local pid=$1 dir=$2 cmd
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmd == *etcd* && $cmd == *"--data-dir $dir/data/"* ]]
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

healthy() {
	ETCDCTL_API=3 etcdctl --endpoints="$(endpoints)" --dial-timeout=2s --command-timeout=3s \
		endpoint health >/dev/null 2>&1
}

# stop_pids DIR: stop the recorded members one at a time (TERM, then KILL
# after 10 s). One at a time because a leader that is TERMed together with its
# followers waits seconds for a leadership transfer that cannot happen.
stop_pids() {
	local dir=$1 pid i
	[[ -f $dir/pids ]] || return 0
	while read -r pid; do
		[[ -n $pid ]] || continue
		is_ours "$pid" "$dir" || continue
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			is_ours "$pid" "$dir" || break
			sleep 0.1
		done
		if is_ours "$pid" "$dir"; then
			log "member pid $pid did not stop on TERM in 10 s; sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done <"$dir/pids"
	rm -f "$dir/pids"
}

cmd_up() {
	local dir=$1 pid live=0 recorded=0
	command -v etcd >/dev/null || die "etcd not found: apt-get install etcd-server"
	command -v etcdctl >/dev/null || die "etcdctl not found: apt-get install etcd-client"
	mkdir -p "$dir" || die "cannot create $dir"
	dir=$(cd "$dir" && pwd -P)

	if [[ -f $dir/pids ]]; then
		while read -r pid; do
			[[ -n $pid ]] || continue
			recorded=$((recorded + 1))
			is_ours "$pid" "$dir" && live=$((live + 1))
		done <"$dir/pids"
		if ((live == MEMBERS)) && healthy; then
			log "cluster in $dir is already up"
			endpoints
			return 0
		fi
		if ((live > 0)); then
			die "$live of $recorded recorded members in $dir are running but the cluster is not healthy; run: $0 down $dir"
		fi
		log "removing a stale cluster record in $dir"
		rm -f "$dir/pids"
		rm -rf "$dir/data"
	fi

	local i port
	for ((i = 0; i < MEMBERS; i++)); do
		for port in $((CLIENT_PORT + i)) $((PEER_PORT + i)); do
			port_busy "$port" && die "port 127.0.0.1:$port is in use; set ETCD_BENCH_CLIENT_PORT/ETCD_BENCH_PEER_PORT to free ones"
		done
	done

	# etcd 3.4 runs only on amd64 without this; set it for other architectures.
	case $(uname -m) in
	x86_64 | amd64) ;;
	*) export ETCD_UNSUPPORTED_ARCH=${ETCD_UNSUPPORTED_ARCH:-$(dpkg --print-architecture 2>/dev/null || uname -m)} ;;
	esac

	local cluster="" token
	for ((i = 0; i < MEMBERS; i++)); do
		cluster+="${cluster:+,}m$((i + 1))=http://127.0.0.1:$((PEER_PORT + i))"
	done
	token="vigil-bench-$$-$(date +%s)"
	rm -rf "$dir/data"
	mkdir -p "$dir/data" "$dir/logs"
	: >"$dir/pids"
	for ((i = 0; i < MEMBERS; i++)); do
		local name="m$((i + 1))" cu="http://127.0.0.1:$((CLIENT_PORT + i))" pu="http://127.0.0.1:$((PEER_PORT + i))"
		# env execs etcd, so $! is the member's own pid.
		env -u ETCD_NAME -u ETCD_DATA_DIR -u ETCD_INITIAL_CLUSTER \
			etcd --name "$name" --data-dir "$dir/data/$name" \
			--listen-client-urls "$cu" --advertise-client-urls "$cu" \
			--listen-peer-urls "$pu" --initial-advertise-peer-urls "$pu" \
			--initial-cluster "$cluster" --initial-cluster-token "$token" \
			--initial-cluster-state new --logger zap --log-outputs stderr \
			</dev/null >"$dir/logs/$name.log" 2>&1 &
		echo "$!" >>"$dir/pids"
	done

	local deadline=$((SECONDS + HEALTH_TIMEOUT))
	until healthy; do
		local dead=""
		while read -r pid; do is_ours "$pid" "$dir" || dead+=" $pid"; done <"$dir/pids"
		if [[ -n $dead || $SECONDS -ge $deadline ]]; then
			if [[ -n $dead ]]; then log "member(s) exited:$dead"; else log "not healthy after ${HEALTH_TIMEOUT}s"; fi
			for ((i = 0; i < MEMBERS; i++)); do
				log "--- tail of $dir/logs/m$((i + 1)).log"
				tail -n 5 "$dir/logs/m$((i + 1)).log" >&2 || true
			done
			stop_pids "$dir"
			rm -rf "$dir/data"
			die "cluster did not come up"
		fi
		sleep 0.2
	done
	log "3 members healthy in $dir (pids $(tr '\n' ' ' <"$dir/pids"))"
	endpoints
}

cmd_down() {
	local dir=$1
	if [[ ! -d $dir ]]; then
		log "no $dir: nothing to stop"
		return 0
	fi
	dir=$(cd "$dir" && pwd -P)
	if [[ -f $dir/pids ]]; then
		stop_pids "$dir"
		log "stopped the cluster in $dir"
	else
		log "no $dir/pids: nothing to stop"
	fi
	rm -rf "$dir/data"
}

[[ $# -eq 2 && -n $2 ]] || usage
case $1 in
up) cmd_up "$2" ;;
down) cmd_down "$2" ;;
*) usage ;;
esac
