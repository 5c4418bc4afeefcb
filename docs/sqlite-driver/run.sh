#!/usr/bin/env bash
# Runs every driver's benchmarks in interleaved rounds (the candidates live in
# two modules: see driver_test.go) and prints each benchmark's median.
# Usage: docs/sqlite-driver/run.sh [rounds] [benchtime]
set -euo pipefail
cd "$(dirname "$0")"
rounds=${1:-3}
benchtime=${2:-1s}
out=$(mktemp)
for ((i = 1; i <= rounds; i++)); do
	# Alternate which module goes first, so neither always runs on a warmer machine.
	if ((i % 2)); then dirs=(. libtnb); else dirs=(libtnb .); fi
	for d in "${dirs[@]}"; do
		(cd "$d" && go test -run '^$' -bench . -benchtime "$benchtime" -count 1) | grep '^Benchmark' | tee -a "$out"
	done
done
echo "# medians of $rounds rounds (ns/op, and rows/s where reported)"
awk '{ns[$1] = ns[$1] " " $3; for (i = 4; i < NF; i++) if ($(i+1) == "rows/s") rs[$1] = rs[$1] " " $i}
END { for (k in ns) print k, ns[k] "|" rs[k] }' "$out" | sort | while read -r name rest; do
	med() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
	nsmed=$(echo "${rest%%|*}" | med)
	rsmed=$(echo "${rest#*|}" | med)
	printf '%-70s %12s ns/op %10s rows/s\n' "$name" "$nsmed" "${rsmed:--}"
done
rm -f "$out"
