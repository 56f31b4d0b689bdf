#!/usr/bin/env bash
# etcd-mutex.sh: the etcd side of the DLM comparison. Builds bench/etcdmutex,
# starts a 3-member etcd with bench/etcd-cluster.sh, runs the benchmark
# against it and stops the cluster on exit. The one JSON line of the result
# is the only thing on stdout; progress goes to stderr.
#
#   bench/etcd-mutex.sh [--workers N] [--duration 10s] [--contended] ...
#
# Arguments pass through to the etcdmutex program (see its -h). The cluster
# lives in ETCD_BENCH_DIR if set (kept afterwards, less its data), else in a
# fresh temporary directory that is removed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
command -v go >/dev/null || { echo "etcd-mutex: go not found" >&2; exit 1; }

if [[ -n ${ETCD_BENCH_DIR:-} ]]; then
	dir=$ETCD_BENCH_DIR
	keep=1
	mkdir -p "$dir"
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/vigil-etcd-bench.XXXXXX")
	keep=0
fi

prog=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	if [[ -n $prog ]]; then
		kill -TERM "$prog" 2>/dev/null || true
		wait "$prog" 2>/dev/null || true
	fi
	"$here/etcd-cluster.sh" down "$dir" || true
	if ((keep == 0)); then rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "etcd-mutex: building bench/etcdmutex" >&2
go build -C "$here/etcdmutex" -o "$dir/etcdmutex" .

endpoints=$("$here/etcd-cluster.sh" up "$dir" | tail -n 1)
[[ -n $endpoints ]] || { echo "etcd-mutex: etcd-cluster.sh up printed no endpoints" >&2; exit 1; }

# In the background so that a signal to this script is handled at once.
"$dir/etcdmutex" --endpoints "$endpoints" "$@" &
prog=$!
rc=0
wait "$prog" || rc=$?
prog=""
exit "$rc"
