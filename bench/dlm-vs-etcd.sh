#!/usr/bin/env bash
# dlm-vs-etcd.sh: vigil's lock manager against etcd's concurrency.Mutex on
# this machine, side by side in one run: lock+unlock pairs per second of
# WORKERS workers (each with its own session and resource) on a 3-member
# vigil cluster and on a 3-member etcd (Debian's etcd-server). Prints both
# JSON lines and the ratio. Needs bin/vigil (make build) and etcd
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

echo "dlm-vs-etcd: vigil, $workers workers, $duration" >&2
v=$(cd "$root" && go run ./bench/dlmbench --vigil bin/vigil --workers "$workers" --duration "$duration")
echo "dlm-vs-etcd: etcd, $workers workers, $duration" >&2
e=$("$here/etcd-mutex.sh" --workers "$workers" --duration "$duration")
echo "$v"
echo "$e"
python3 - "$v" "$e" <<'PY'
import json, sys
v, e = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = v["pairs_per_sec"] / e["pairs_per_sec"] if e["pairs_per_sec"] else float("inf")
print(f"vigil {v['pairs_per_sec']:.0f} pairs/s (p50 {v['p50_us']:.0f} µs), etcd {e['pairs_per_sec']:.0f} pairs/s (p50 {e['p50_us']:.0f} µs): {ratio:.0f}x")
PY
