#!/usr/bin/env bash
# dlm-lab-latency.sh: the lock manager's lock latency on the lab network
# (root): a 3-member lab cluster, then from m2 through its socket, Lock on
# resources mastered by m2 itself and by m1 and m3, and the same in m2's
# agent (`vigil locks probe`: the Go package, no socket), next to the ping
# round trip m2 -> m3 on the same link. The issue's target: the median of a
# remotely mastered lock within one round trip + 200 µs.
#
#   bench/dlm-lab-latency.sh [N]        (N locks per master, default 5000)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
n=${1:-5000}
dir=$(mktemp -d /tmp/vigil-lab-dlm.XXXXXX)
lab="$root/bin/vigil-lab --dir $dir"
cleanup() { $lab down >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

(cd "$root" && make -s build && go build -o bin/dlmbench ./bench/dlmbench)
$lab up --members 3 --no-service --vigil "$root/bin/vigil" >&2
sleep 3 # every member in the lock manager's view
addr=$($lab status | awk '$1 == "m3" && !seen { print $3; seen = 1 }')
rtt=$($lab exec m2 -- ping -c 1000 -i 0.002 -q "$addr" | awk -F/ '/^rtt/ { print $5 }')
out=$($lab exec m2 -- "$root/bin/dlmbench" --socket "$dir/m2/data/dlm.sock" --view m1,m2,m3 --self m2 --n "$n" ${DLMBENCH_ARGS:-})
echo "$out"
probe=$($lab exec m2 -- "$root/bin/vigil" --data-dir "$dir/m2/data" locks probe --n "$n" --json)
echo "$probe" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))'
python3 - "$out" "$rtt" "$probe" <<'PY'
import json, sys
r, rtt, probe = json.loads(sys.argv[1]), float(sys.argv[2]) * 1000, json.loads(sys.argv[3])
remote = sorted(v["p50_us"] for k, v in r.items() if k.startswith("remote_"))
print(f"ping m2->m3 avg {rtt:.0f} µs; target {rtt + 200:.0f} µs")
print(f"through m2's socket: lock p50 local {r['local']['p50_us']:.0f} µs, remote {', '.join(f'{x:.0f}' for x in remote)} µs")
local = [p["p50_us"] for p in probe if p["master"] == "m2"]
premote = sorted(p["p50_us"] for p in probe if p["master"] != "m2")
print(f"in m2's agent (vigil locks probe): lock p50 local {local[0]:.0f} µs, remote {', '.join(f'{x:.0f}' for x in premote)} µs")
PY
