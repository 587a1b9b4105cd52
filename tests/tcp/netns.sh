#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The tcp provider between two network namespaces joined by a veth pair.
#
# Usage: tests/tcp/netns.sh BUILD_DIR [--quick]
#
# Makes namespaces augur-tcp-<pid>-a and -b, a veth pair between them with
# 198.51.100.1/24 and 198.51.100.2/24 (TEST-NET-2, a documentation range:
# nothing real is ever addressed), then runs
#   0. the whole conformance suite over tcp (tests/conformance/run-all.sh,
#      AUGUR_TEST_NETNS: rank 0 in one namespace, the others in the other);
#   1. tcp_netns (BUILD_DIR/tests/tcp): traffic across the link, a target
#      and an initiator SIGKILLed mid-stream, and (without --quick) the link
#      taken down under a stream, which only keepalive and TCP_USER_TIMEOUT
#      can notice (about 20 s);
#   2. tcp_lat across the link (latency and message rate against plain TCP
#      in the same run; printed, never judged).
# Everything it made is removed on exit, whatever happens.
# Exit: 0 pass, 1 fail, 77 skip (not root, no `ip netns`, no veth).
set -u

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [--quick]" >&2
	exit 1
fi
build=$1
quick=${2:-}
bin=$build/tests/tcp

skip() {
	if [ "${AUGUR_REQUIRE_NETNS:-0}" = 1 ]; then
		echo "FAIL: $* (AUGUR_REQUIRE_NETNS=1: network namespaces are required here)"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root (ip netns add)"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"
[ -x "$bin/tcp_netns" ] || { echo "no $bin/tcp_netns (build first)" >&2; exit 1; }

ns_a=augur-tcp-$$-a
ns_b=augur-tcp-$$-b
veth_a=augva$$
veth_b=augvb$$
ip_a=198.51.100.1
ip_b=198.51.100.2

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	ip netns del "$ns_a" 2>/dev/null
	ip netns del "$ns_b" 2>/dev/null
	ip link del "$veth_a" 2>/dev/null
	return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ip netns add "$ns_a" 2>/dev/null || skip "cannot create a network namespace (ip netns add: no permission or no support)"
ip netns add "$ns_b" || exit 1
if ! ip link add "$veth_a" type veth peer name "$veth_b" 2>/dev/null; then
	skip "cannot create a veth pair (no veth support in this kernel?)"
fi
if ! { ip link set "$veth_a" netns "$ns_a" &&
	ip link set "$veth_b" netns "$ns_b" &&
	ip -n "$ns_a" addr add "$ip_a/24" dev "$veth_a" &&
	ip -n "$ns_b" addr add "$ip_b/24" dev "$veth_b" &&
	ip -n "$ns_a" link set "$veth_a" up &&
	ip -n "$ns_b" link set "$veth_b" up &&
	ip -n "$ns_a" link set lo up &&
	ip -n "$ns_b" link set lo up; }; then
	echo "FAIL: setting up the link" >&2
	exit 1
fi
# The link is up when a ping goes through (a few tries: DAD, carrier).
ok=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
	if ip netns exec "$ns_a" ping -c 1 -W 1 "$ip_b" >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 0.3
done
[ $ok -eq 1 ] || echo "note: no ping reply across the veth (no ping?); going on"

echo "netns: $ns_a ($ip_a) <-> $ns_b ($ip_b) over $veth_a/$veth_b"
export AUGUR_TEST_NETNS="$ns_a=$ip_a,$ns_b=$ip_b"
echo "--- the conformance suite over tcp, rank 0 in $ns_a, the others in $ns_b ---"
if ! sh "$(dirname "$0")/../conformance/run-all.sh" tcp "$build"; then
	echo "FAIL: conformance over tcp between namespaces"
	exit 1
fi
if [ "$quick" = "--quick" ]; then
	procs=3
	unset AUGUR_TCP_UNPLUG
else
	procs=4
	export AUGUR_TCP_UNPLUG="ip -n $ns_b link set $veth_b down"
fi
"$bin/tcp_netns" --provider tcp --procs $procs
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: tcp_netns exited with $rc"
	exit 1
fi
# The unplug took B's end down: bring it back for the measurement.
ip -n "$ns_b" link set "$veth_b" up
sleep 0.5

if [ -x "$bin/tcp_lat" ]; then
	echo "--- latency and message rate across the veth ---"
	"$bin/tcp_lat" --iters 3000 --netns "$ns_a=$ip_a,$ns_b=$ip_b" || {
		echo "FAIL: tcp_lat across the veth"
		exit 1
	}
fi
echo "PASS: tcp provider between network namespaces"
exit 0
