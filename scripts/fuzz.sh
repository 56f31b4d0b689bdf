#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the repository, one at a time, for the
# duration given as $1 (default 60s). New failing inputs are written by go test
# under the package's testdata/fuzz/FuzzXxx/; commit them with the fix.
set -euo pipefail

fuzztime=${1:-60s}
cd "$(dirname "$0")/.."

# Every "func FuzzXxx(f *testing.F)" in a test file, as "dir name" pairs.
targets=$(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' \
	--exclude-dir=.git --exclude-dir=vendor --exclude-dir=testdata . |
	sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$|\1 \2|' | sort -u)

if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

n=$(wc -l <<<"$targets")
echo "fuzz.sh: $n targets, $fuzztime each"
failed=()
while read -r dir name; do
	echo "=== $name ($dir)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir"; then
		failed+=("$name ($dir)")
	fi
done <<<"$targets"

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: ${#failed[@]} of $n targets failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz.sh: all $n targets passed"
