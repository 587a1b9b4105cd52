#!/usr/bin/env bash
# tests/softroce_tier.sh BUILD_DIR [RESULTS_DIR] - the SoftRoCE tier, run
# INSIDE the qemu guest that tests/softroce/run-guest.sh boots (rxe_a on
# 192.0.2.1, rxe_b on 192.0.2.2).  Everything over the ibv provider:
#   1. the transport conformance suite (processes on both rxe devices);
#   2. the parameter store: invariants on 2 nodes, a killed peer on 3;
#   3. the perftest-relative latency benchmark (a report, not a test).
# Prints one line per part and "N passed, N failed, N skipped".
set -u
here=$(cd "$(dirname "$0")" && pwd)
B=$(cd "$1" && pwd)
R=${2:-}
export AUGUR_DEVICES=${AUGUR_TEST_DEVICES:-rxe_a,rxe_b}
export AUGUR_ADDRS=${AUGUR_TEST_ADDRS:-192.0.2.1,192.0.2.2}
export AUGUR_TRANSPORT=ibv
pass=0 fail=0 skip=0 failed=()

part() {
	local name=$1 rc t0=$SECONDS
	shift
	echo "=== softroce: $name"
	"$@"
	rc=$?
	case $rc in
	0) pass=$((pass + 1)); echo "=== PASS $name ($((SECONDS - t0)) s)" ;;
	77) skip=$((skip + 1)); echo "=== SKIP $name" ;;
	*) fail=$((fail + 1)); failed+=("$name"); echo "=== FAIL $name (exit $rc)" ;;
	esac
}

part "conformance over ibv" "$here/conformance/run-all.sh" ibv "$B"
part "store errors (1 node, ibv)" "$B/tests/store/store_errors"
part "store invariants, static (2 nodes, ibv)" \
	"$B/augur-run" -n 2 --transport ibv --timeout 600 \
	"$B/tests/store/store_invariants" 3000 static
part "store invariants, adaptive: relocations + replicas (2 nodes, ibv)" \
	"$B/augur-run" -n 2 --transport ibv --timeout 600 \
	"$B/tests/store/store_invariants" 3000 adaptive
part "store peer death (3 nodes, ibv)" \
	"$here/store/peer_death.sh" "$B/augur-run" "$B/tests/store/store_peer_death"
if [ -n "$R" ] && [ -x "$here/../perf/softroce-lat.sh" ]; then
	part "latency vs perftest (report)" "$here/../perf/softroce-lat.sh" "$B" "$R"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "softroce failures: ${failed[*]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
