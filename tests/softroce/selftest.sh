#!/bin/bash
# Check the SoftRoCE harness end to end (two guest boots):
#  1. a results file written in the guest appears on the host, and the
#     command's exit status (3) comes back as run-guest.sh's;
#  2. rxe_a/rxe_b exist and perftest latency pairs pass between them
#     (selftest-guest.sh).
# Usage: tests/softroce/selftest.sh [--cache DIR] [ITERATIONS]
# Exit status: 0 pass, 77 skip (requirements missing), 1 fail.

set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cacheopt=()
if [ "${1:-}" = --cache ]; then
	cacheopt=(--cache "$2")
	shift 2
fi
n=${1:-1000}

res=$(mktemp -d "${TMPDIR:-/tmp}/augur-softroce-selftest.XXXXXX")
trap 'rm -rf "$res"' EXIT
fail=0

t0=$SECONDS
"$here/run-guest.sh" "${cacheopt[@]}" --results "$res" --timeout 300 -- \
	sh -c 'echo "written in the guest" >"$AUGUR_TEST_RESULTS/probe.txt"; exit 3'
rc=$?
[ "$rc" != 77 ] || exit 77
if [ "$rc" = 3 ]; then
	echo "PASS exit status propagated (3)"
else
	echo "FAIL exit status: expected 3, got $rc"
	fail=1
fi
if [ "$(cat "$res/probe.txt" 2>/dev/null)" = "written in the guest" ]; then
	echo "PASS results file written in the guest is on the host"
else
	echo "FAIL results file $res/probe.txt missing or wrong"
	fail=1
fi
t1=$SECONDS

"$here/run-guest.sh" "${cacheopt[@]}" --results "$res" --timeout 900 -- \
	"$here/selftest-guest.sh" "$n"
rc=$?
[ "$rc" != 77 ] || exit 77
t2=$SECONDS
echo "==== summary (first run $((t1 - t0)) s, perftest run $((t2 - t1)) s) ===="
[ "$fail" = 0 ] || echo "FAIL (see above)"
if [ "$rc" = 0 ] && [ -s "$res/softroce-selftest.txt" ]; then
	cat "$res/softroce-selftest.txt"
else
	echo "FAIL perftest run (exit $rc)"
	cat "$res/softroce-selftest.txt" 2>/dev/null
	fail=1
fi
exit "$fail"
