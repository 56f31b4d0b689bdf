#!/usr/bin/env bash
# dlm-vs-etcd.sh: vigil's lock manager against etcd's concurrency.Mutex on
# this machine, side by side in one run: lock+unlock pairs per second of
# WORKERS workers (each with its own session and resource name) on a
# 3-member vigil cluster and on a 3-member etcd (Debian's etcd-server). The
# names are spread over the hash masters as etcd's keys would be. vigil
# runs four ways: clients on m1's socket and sessions in m1's agent (the
# Go package, `vigil locks probe`), each with resources that move to the
# member that uses them (the default) and in a fixed lockspace (each stays
# on its hash master: two of three are remote); and both systems once more
# with one session (etcd: one client and one session) that the workers
# share, each still locking its own name; and vigil's socket clients with
# posted unlocks (dlmclient.PostUnlocks), and with the raw protocol
# (dlmclient.NoRings: frames through the socket, not shared rings). Prints
# the JSON lines and the ratios. Needs bin/vigil (make build) and etcd
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
echo "dlm-vs-etcd: vigil socket, $workers workers, $duration" >&2
v=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration")
echo "dlm-vs-etcd: vigil socket, fixed lockspace, $workers workers, $duration" >&2
vf=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration" --fixed)
echo "dlm-vs-etcd: vigil in the agent (Go package), $workers workers" >&2
va=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --in-agent --n 50000)
echo "dlm-vs-etcd: vigil in the agent (Go package), fixed lockspace, $workers workers" >&2
vaf=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --in-agent --fixed --n 5000)
echo "dlm-vs-etcd: vigil socket, posted unlocks, $workers workers, $duration" >&2
vp=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration" --posted)
echo "dlm-vs-etcd: vigil socket, raw protocol, $workers workers, $duration" >&2
vr=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration" --raw)
echo "dlm-vs-etcd: vigil socket, one session shared by $workers workers, $duration" >&2
vs=$("$root/bin/dlmbench" --vigil "$root/bin/vigil" --workers "$workers" --duration "$duration" --shared)
echo "dlm-vs-etcd: etcd, $workers workers, $duration" >&2
e=$("$here/etcd-mutex.sh" --workers "$workers" --duration "$duration")
echo "dlm-vs-etcd: etcd, one client and session shared by $workers workers, $duration" >&2
es=$("$here/etcd-mutex.sh" --workers "$workers" --duration "$duration" --shared)
echo "$v"
echo "$vf"
echo "$va"
echo "$vaf"
echo "$vp"
echo "$vs"
echo "$vr"
echo "$e"
echo "$es"
python3 - "$v" "$vf" "$va" "$vaf" "$vp" "$vs" "$vr" "$e" "$es" <<'PY'
import json, sys
v, vf, va, vaf, vp, vs, vr, e, es = (json.loads(a) for a in sys.argv[1:10])
def line(name, r, e=e, what="etcd's"):
    ratio = r["pairs_per_sec"] / e["pairs_per_sec"] if e["pairs_per_sec"] else float("inf")
    print(f"{name}: {r['pairs_per_sec']:.0f} pairs/s (p50 {r['p50_us']:.0f} µs) = {ratio:.0f}x {what} {e['pairs_per_sec']:.0f} pairs/s (p50 {e['p50_us']:.0f} µs)")
line("vigil socket (resources mastered where used)", v)
line("vigil socket, fixed lockspace (2 of 3 remote)", vf)
line("vigil in the agent (resources mastered where used)", va)
line("vigil in the agent, fixed lockspace (2 of 3 remote)", vaf)
line("vigil socket, posted unlocks (dlmclient.PostUnlocks)", vp)
line("vigil socket, raw protocol (dlmclient.NoRings)", vr)
line("vigil socket, one session shared by the workers", vs, es, "etcd's with one client and session shared,")
PY
