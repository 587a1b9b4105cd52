#!/usr/bin/env bash
# tests/store/peer_death.sh AUGUR_RUN TEST_BIN - run store_peer_death on 3
# nodes; the last one kills itself.  Pass when augur-run reports the failure
# (non-zero exit) and both survivors detected it and named the dead node.
set -u
RUN=$1 BIN=$2
out=$(mktemp)
"$RUN" -n 3 "$BIN" >"$out" 2>&1
rc=$?
cat "$out"
fail=0
if [ "$rc" -eq 0 ]; then
	echo "FAIL: augur-run exited 0 although node 2 was killed"; fail=1
fi
for r in 0 1; do
	if ! grep -q "^node $r: detected .*node 2" "$out"; then
		echo "FAIL: node $r did not report node 2 dead"; fail=1
	fi
done
rm -f "$out"
[ "$fail" -eq 0 ] && echo "peer_death: ok"
exit "$fail"
