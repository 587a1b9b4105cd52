#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Fuzz the tcp provider's request parser (tests/tcp/fuzz_request.c, which
# drives verbs/tcp_wire.c) with libFuzzer for a bounded time.
#
# Usage: tests/tcp/fuzz.sh [SECONDS] [WORK_DIR]
#   SECONDS   fuzzing time (default 45); CI runs 30-60 s.
#   WORK_DIR  keeps the binaries and the corpus (default: a temporary dir,
#             removed afterwards); a crash leaves crash-* files there.
# Needs clang with libFuzzer (Debian: clang, libclang-rt-<ver>-dev).
# Exit: 0 no finding, 1 a finding (crash, leak, invariant, timeout), 77 no
# clang/libFuzzer.
set -u
secs=${1:-45}
src=$(cd "$(dirname "$0")/../.." && pwd)
cc=${CLANG:-clang}
# AUGUR_REQUIRE_FUZZ=1 (CI): a missing fuzzer is a failure, not a skip.
skipcode=77
[ "${AUGUR_REQUIRE_FUZZ:-0}" = 1 ] && skipcode=1
command -v "$cc" >/dev/null 2>&1 || { echo "SKIP: no clang"; exit $skipcode; }
if [ $# -ge 2 ]; then
	work=$2
	mkdir -p "$work"
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/augur-fuzz.XXXXXX") || exit 1
	trap 'rm -rf "$work"' EXIT
fi
flags="-g -O1 -I$src/include -I$src/verbs"
files="$src/tests/tcp/fuzz_request.c $src/verbs/tcp_wire.c"
# shellcheck disable=SC2086
if ! $cc $flags -fsanitize=fuzzer,address,undefined -DFUZZ_LIBFUZZER \
	$files -o "$work/fuzz_request" 2>"$work/cc.log"; then
	echo "SKIP: $cc cannot build with -fsanitize=fuzzer (libFuzzer missing?):"
	sed 's/^/    /' "$work/cc.log" | head -5
	exit $skipcode
fi
# shellcheck disable=SC2086
$cc $flags -fsanitize=address,undefined $files -o "$work/replay" || exit 1
mkdir -p "$work/corpus" "$work/seeds"
"$work/replay" --seeds "$work/seeds" || exit 1
cd "$work" || exit 1
./fuzz_request -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
	-print_final_stats=1 corpus seeds >fuzz.log 2>&1
rc=$?
grep -E '^stat::(number_of_executed_units|new_units_added)|^Done ' fuzz.log
if [ $rc -ne 0 ]; then
	echo "FAIL: libFuzzer found something (exit $rc):"
	grep -E 'ERROR|SUMMARY|invariant|crash-|timeout-|leak-' fuzz.log | head -20
	exit 1
fi
echo "PASS: ${secs} s of fuzzing, no finding"
exit 0
