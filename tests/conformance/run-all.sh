#!/bin/sh
# Run every transport conformance test over one provider.
#
# Usage: tests/conformance/run-all.sh PROVIDER BUILD_DIR
#
# The programs are those listed in BUILD_DIR/tests/conformance/tests.list
# (written by tests/CMakeLists.txt from AUGUR_CONFORMANCE_TESTS), else every
# conf_* program in that folder.  Prints one line per test
#   PASS conf_x (1.2 s) | FAIL conf_x (exit N, 3.4 s) | SKIP conf_x: why
# with the output of each failed test after its line, then
#   "N passed, N failed, N skipped".
# Exit status: 1 if any test failed, 77 if every test skipped, else 0.
#
# Environment: passed on to the tests (AUGUR_TEST_DEVICES, AUGUR_TEST_ADDRS,
# AUGUR_TEST_SCALE, AUGUR_TEST_TIMEOUT, AUGUR_TEST_VERBOSE, ...);
# AUGUR_TEST_LOG_DIR, when set, keeps every test's output there as
# <test>.<provider>.log.  Each test bounds its own time; a wrapper timeout
# (AUGUR_TEST_TIMEOUT + 60 s, default 300 s) catches a test that does not.

set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 PROVIDER BUILD_DIR" >&2
	exit 1
fi
provider=$1
dir=$2/tests/conformance
if [ ! -d "$dir" ]; then
	echo "$0: no $dir (build the project first)" >&2
	exit 1
fi

if [ -f "$dir/tests.list" ]; then
	tests=$(cat "$dir/tests.list")
else
	tests=$(cd "$dir" && ls conf_* 2>/dev/null)
fi
if [ -z "$tests" ]; then
	echo "$0: no conformance programs in $dir" >&2
	exit 1
fi

limit=$(( ${AUGUR_TEST_TIMEOUT:-240} + 60 ))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/augur-conf.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

now() { date +%s.%N 2>/dev/null || date +%s; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

pass=0 fail=0 skip=0
for t in $tests; do
	prog=$dir/$t
	log=$tmp/$t.log
	if [ ! -x "$prog" ]; then
		echo "FAIL $t (program missing: $prog)"
		fail=$((fail + 1))
		continue
	fi
	start=$(now)
	if command -v timeout >/dev/null 2>&1; then
		timeout -k 10 "$limit" "$prog" --provider "$provider" >"$log" 2>&1
	else
		"$prog" --provider "$provider" >"$log" 2>&1
	fi
	rc=$?
	took=$(secs "$start" "$(now)")
	if [ -n "${AUGUR_TEST_LOG_DIR:-}" ]; then
		mkdir -p "$AUGUR_TEST_LOG_DIR" &&
			cp "$log" "$AUGUR_TEST_LOG_DIR/$t.$provider.log"
	fi
	case $rc in
	0)
		echo "PASS $t ($took s)"
		pass=$((pass + 1))
		;;
	77)
		why=$(grep -m1 '^SKIP: ' "$log" | sed 's/^SKIP: //')
		echo "SKIP $t: ${why:-no reason given}"
		skip=$((skip + 1))
		;;
	*)
		echo "FAIL $t (exit $rc, $took s)"
		[ $rc -eq 124 ] && echo "    (killed by the $limit s wrapper timeout)"
		sed 's/^/    /' "$log"
		fail=$((fail + 1))
		;;
	esac
done

echo "$pass passed, $fail failed, $skip skipped"
[ $fail -gt 0 ] && exit 1
[ $pass -eq 0 ] && exit 77
exit 0
