#!/usr/bin/env bash
# dlm-vs-etcd.sh: vigil's lock manager against etcd's concurrency.Mutex on
# this machine, side by side in one run: lock+unlock pairs per second of
# WORKERS workers (each with its own session and resource) on a 3-member
# vigil cluster and on a 3-member etcd (Debian's etcd-server). vigil runs
# four ways: clients on m1's socket and sessions in m1's agent (the Go
# package, `vigil locks probe`), each with resources spread over the
# masters and with resources m1 masters. Prints the JSON lines and the
# ratios. Needs bin/vigil (make build) and etcd
# (apt-get install etcd-server etcd-client).
#
#   bench/dlm-vs-etcd.sh [WORKERS [DURATION]]     (default 4 10s)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/.." && pwd -P)
workers=${1:-4}
duration=${2:-10s}

[[ -x $root/bin/vigil ]] || { echo "dlm-vs-etcd: $root/bin/vigil not found: run make build" >&2; exit 1; }
command -v etcd >/dev/null || { echo "dlm-vs-etcd: etcd not found: apt-get install etcd-server etcd-client" >&2; exit 1; }

(cd "$root" && go build -o bin/dlmbench ./bench/dlmbench)
echo "dlm-vs-etcd: vigil, resources spread over the masters, $workers workers, $duration" >&2
v=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration")
echo "dlm-vs-etcd: vigil, resources mastered where the workers are, $workers workers, $duration" >&2
vl=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration" --local)
echo "dlm-vs-etcd: vigil, sessions in the agent (Go package), resources spread over the masters, $workers workers" >&2
va=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --in-agent --n 5000)
echo "dlm-vs-etcd: vigil, sessions in the agent (Go package), resources mastered there, $workers workers" >&2
val=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --in-agent --local --n 100000)
echo "dlm-vs-etcd: etcd, $workers workers, $duration" >&2
e=$("$here/etcd-mutex.sh" --workers "$workers" --duration "$duration")
echo "$v"
echo "$vl"
echo "$va"
echo "$val"
echo "$e"
python3 - "$v" "$vl" "$va" "$val" "$e" <<'PY'
import json, sys
v, vl, va, val, e = (json.loads(a) for a in sys.argv[1:6])
def line(name, r):
    ratio = r["pairs_per_sec"] / e["pairs_per_sec"] if e["pairs_per_sec"] else float("inf")
    print(f"{name}: {r['pairs_per_sec']:.0f} pairs/s (p50 {r['p50_us']:.0f} µs) = {ratio:.0f}x etcd's {e['pairs_per_sec']:.0f} pairs/s (p50 {e['p50_us']:.0f} µs)")
line("vigil socket, spread over the masters", v)
line("vigil socket, mastered locally", vl)
line("vigil in the agent, spread over the masters", va)
line("vigil in the agent, mastered locally", val)
PY
