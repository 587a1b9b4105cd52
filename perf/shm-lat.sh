#!/bin/bash
# Host-side transport latency: augur over the shm provider (64 B READ, WRITE
# and CAS, perftest's columns, plus the message rate), next to a plain
# memcpy() of the same 64 bytes measured in the same run, and the ratio.
#
# Usage: perf/shm-lat.sh BUILD_DIR [ITERATIONS]
#   BUILD_DIR   the CMake build folder (holds perf/auv_lat)
#   ITERATIONS  latency iterations per operation (default 100000)
# Environment: AUV_LAT_CSV=FILE also appends auv_lat's CSV rows to FILE.
#
# Prints auv_lat's full report, then a summary table. Exit status: 0 done
# (whatever the figures: it is a benchmark, not a test), 77 the shm
# provider is not available, 1 auv_lat failed, 2 usage.

set -eu
set -o pipefail

me=shm-lat.sh
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	echo "usage: $0 BUILD_DIR [ITERATIONS]" >&2
	exit 2
fi
build=$1
iters=${2:-100000}
case $iters in '' | *[!0-9]*) echo "$me: ITERATIONS must be a number" >&2; exit 2 ;; esac
auv=$build/perf/auv_lat
[ -x "$auv" ] || { echo "$me: $auv not found: build first (cmake --build $build)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shm-lat.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
csv=$tmp/auv_lat.csv

st=0
"$auv" -p shm -s 64 -o all -n "$iters" --csv "$csv" >"$tmp/out.txt" || st=$?
cat "$tmp/out.txt"
if [ "$st" -ne 0 ]; then
	[ "$st" -eq 77 ] && echo "$me: SKIP: the shm provider is not available" >&2
	[ "$st" -ne 77 ] && echo "$me: auv_lat failed (status $st)" >&2
	exit "$st"
fi
if [ -n "${AUV_LAT_CSV:-}" ]; then
	if [ -s "$AUV_LAT_CSV" ]; then
		tail -n +2 "$csv" >>"$AUV_LAT_CSV"
	else
		cat "$csv" >>"$AUV_LAT_CSV"
	fi || { echo "$me: cannot append to $AUV_LAT_CSV" >&2; exit 1; }
fi

# CSV columns: tool,provider,op,bytes,iterations,t_min_us,t_max_us,
# t_typical_us,t_avg_us,t_stdev_us,p99_us,p999_us,rate_ops,rate_mops,rate_mib_s
echo
echo "summary (shm, $iters iterations; microseconds; rate from the pipelined run)"
awk -F, '
NR == 1 { next }
{
	name = ($1 == "memcpy") ? "memcpy" : "augur " toupper($3)
	printf " %-12s %6s B  typical %9.3f  avg %9.3f  p99 %9.3f  p99.9 %9.3f", name, $4, $8, $9, $11, $12
	if ($14 != "")
		printf "  %8.3f Mops/s", $14
	printf "\n"
}' "$csv"
# The ratio as auv_lat computed it (from unrounded figures).
grep '^ *ratio augur_read/memcpy' "$tmp/out.txt" ||
	{ echo "$me: auv_lat printed no memcpy ratio" >&2; exit 1; }
