#!/usr/bin/env bash
# scripts/run-tests.sh - set everything up and run the whole test suite:
#   1. the fast tier (-Werror build), with the tcp provider across network
#      namespaces and a bounded fuzzing run,
#   2. the fast tier again under ASan+UBSan and under TSan,
#   3. the SoftRoCE tier: a qemu guest with rxe runs the conformance suite
#      over the ibv provider, plus perftest-relative latency figures.
# Options: --no-sanitizers, --no-softroce (for quick local runs; CI runs all).
set -uo pipefail
cd "$(dirname "$0")/.."

SAN=1
SOFTROCE=1
for a in "$@"; do
	case "$a" in
	--no-sanitizers) SAN=0 ;;
	--no-softroce) SOFTROCE=0 ;;
	*) echo "usage: $0 [--no-sanitizers] [--no-softroce]" >&2; exit 2 ;;
	esac
done

bash scripts/setup.sh || exit 1
JOBS=$(nproc)
PASS=0
FAIL=0
SKIP=0
FAILED_TIERS=()

# run_tier NAME BUILD_DIR CMAKE_ARGS... -- CTEST_ARGS...
run_tier() {
	local name=$1 dir=$2
	shift 2
	local cargs=() targs=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do cargs+=("$1"); shift; done
	shift
	targs=("$@")
	echo "=== tier: $name ($dir) ==="
	if ! cmake -S . -B "$dir" -DAUGUR_WERROR=ON "${cargs[@]}" >"$dir.cmake.log" 2>&1; then
		cat "$dir.cmake.log"; FAIL=$((FAIL + 1)); FAILED_TIERS+=("$name:configure"); return
	fi
	if ! cmake --build "$dir" -j "$JOBS" >"$dir.build.log" 2>&1; then
		tail -60 "$dir.build.log"; FAIL=$((FAIL + 1)); FAILED_TIERS+=("$name:build"); return
	fi
	local out
	out=$(mktemp)
	ctest --test-dir "$dir" --output-on-failure --no-tests=error "${targs[@]}" 2>&1 | tee "$out"
	local rc=${PIPESTATUS[0]}
	local total failed skipped
	total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$out" | tail -1)
	failed=$(sed -n 's/.*, \([0-9]*\) tests failed out of.*/\1/p' "$out" | tail -1)
	skipped=$(grep -c '\*\*\*Skipped\|Not Run' "$out" || true)
	total=${total:-0}; failed=${failed:-0}
	PASS=$((PASS + total - failed - skipped))
	FAIL=$((FAIL + failed))
	SKIP=$((SKIP + skipped))
	if [ "$rc" -ne 0 ] || [ "$total" -eq 0 ]; then
		FAILED_TIERS+=("$name")
		[ "$total" -eq 0 ] && FAIL=$((FAIL + 1))
	fi
	rm -f "$out"
}

# The fast tier also runs the tcp provider between network namespaces
# (label netns: root only) and a bounded fuzzing run of its request parser
# (label fuzz: clang/libFuzzer).  In CI neither may skip.
if [ -n "${CI:-}" ]; then export AUGUR_REQUIRE_NETNS=1 AUGUR_REQUIRE_FUZZ=1; fi
run_tier fast build -DCMAKE_BUILD_TYPE=RelWithDebInfo -- -L 'fast|netns|fuzz' -j "$JOBS" --timeout 300
if [ "$SAN" = 1 ]; then
	run_tier asan build-asan -DAUGUR_SANITIZE=address -DCMAKE_BUILD_TYPE=Debug -- -L fast --timeout 600
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	run_tier tsan build-tsan -DAUGUR_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug -- -L fast --timeout 600
fi
if [ "$SOFTROCE" = 1 ]; then
	# Label softroce: boots a qemu guest with rxe (tests/softroce/).  In CI
	# it must run, never skip silently: AUGUR_REQUIRE_SOFTROCE=1 turns a
	# skip into a failure there.
	if [ -n "${CI:-}" ]; then export AUGUR_REQUIRE_SOFTROCE=1; fi
	run_tier softroce build -DCMAKE_BUILD_TYPE=RelWithDebInfo -- -L softroce --timeout 1500
fi

echo
if [ ${#FAILED_TIERS[@]} -gt 0 ]; then
	echo "failed: ${FAILED_TIERS[*]}"
fi
echo "$PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ] && [ ${#FAILED_TIERS[@]} -eq 0 ]
