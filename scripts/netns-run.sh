#!/usr/bin/env bash
# scripts/netns-run.sh - run an augur job on N "hosts" made of network
# namespaces: each node gets its own namespace, its own address and its own
# network stack, and the namespaces are joined by a bridge (a switch) that
# lives in one more namespace.  Packets between nodes cross veth pairs and
# the bridge, as they would cross NICs and a switch; nothing is loopback.
# Nodes find each other as they would on separate hosts: a TCP rendezvous at
# node 0's address (AUGUR_RENDEZVOUS=<ip0>:<port>), not augur-run's unix
# socket.
#
#   scripts/netns-run.sh -n N [--transport tcp] [--timeout S] PROGRAM [ARGS...]
#
# Node i: namespace augur-h<pid>-<i>, address 10.77.0.<i+1>/24, environment
# AUGUR_RANK=i AUGUR_SIZE=N AUGUR_RENDEZVOUS=10.77.0.1:<port>
# AUGUR_TRANSPORT=<transport> AUGUR_ADDRS=<its address>:0 (the tcp provider
# listens there).  Every node's output is prefixed with "[i] ".  The first
# node to fail sets the exit status; the others get a grace period (10 s)
# to notice through the bootstrap, then are killed.  Everything made is
# removed on exit.  Needs root (ip netns add).  Exit 77: cannot make
# namespaces here (printed why).
set -uo pipefail

n=2
transport=tcp
timeout=600
usage() {
	echo "usage: $0 -n N [--transport tcp] [--timeout S] PROGRAM [ARGS...]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n=$2; shift 2 ;;
	--transport) transport=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
case "$n" in '' | *[!0-9]*) usage ;; esac
[ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "$0: -n must be 1..200" >&2; exit 2; }

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

tag=augur-h$$
sw=$tag-sw
pids=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local p i
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for ((i = 0; i < n; i++)); do ip netns del "$tag-$i" 2>/dev/null; done
	ip netns del "$sw" 2>/dev/null
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$sw" 2>/dev/null || skip "cannot create a network namespace here"
ip -n "$sw" link add br0 type bridge 2>/dev/null || skip "no bridge support in this kernel"
ip -n "$sw" link set br0 up
for ((i = 0; i < n; i++)); do
	ns=$tag-$i
	ip netns add "$ns" || exit 1
	# veth: "eth0" inside the node, "p<i>" on the switch
	ip link add "a$$x$i" type veth peer name "b$$x$i" 2>/dev/null ||
		skip "cannot create a veth pair (no veth support?)"
	ip link set "a$$x$i" netns "$ns" name eth0 &&
		ip link set "b$$x$i" netns "$sw" name "p$i" &&
		ip -n "$sw" link set "p$i" master br0 &&
		ip -n "$sw" link set "p$i" up &&
		ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0 &&
		ip -n "$ns" link set eth0 up &&
		ip -n "$ns" link set lo up || { echo "$0: setting up $ns failed" >&2; exit 1; }
done
port=$((20000 + $$ % 20000))
echo "netns-run: $n nodes in namespaces $tag-0..$((n - 1)) (10.77.0.1..$n) on a bridge, transport $transport, rendezvous 10.77.0.1:$port"

for ((i = 0; i < n; i++)); do
	ip netns exec "$tag-$i" env AUGUR_RANK=$i AUGUR_SIZE="$n" \
		AUGUR_LOCAL_RANK=0 AUGUR_RENDEZVOUS="10.77.0.1:$port" \
		AUGUR_TRANSPORT="$transport" AUGUR_ADDRS="10.77.0.$((i + 1)):0" \
		"$@" > >(sed -u "s/^/[$i] /") 2>&1 &
	pids+=($!)
done

# Wait: the first failure sets the status; the others get a grace period.
status=0
deadline=$((SECONDS + timeout))
left=$n
declare -A done_
while [ "$left" -gt 0 ]; do
	for ((i = 0; i < n; i++)); do
		[ -n "${done_[$i]:-}" ] && continue
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			wait "${pids[$i]}"
			rc=$?
			done_[$i]=1
			left=$((left - 1))
			if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
				echo "netns-run: node $i exited with status $rc"
				status=$rc
				[ $deadline -gt $((SECONDS + 10)) ] && deadline=$((SECONDS + 10))
			fi
		fi
	done
	if [ "$left" -gt 0 ] && [ $SECONDS -ge $deadline ]; then
		echo "netns-run: timeout; killing the nodes still running"
		[ "$status" -eq 0 ] && status=124
		break
	fi
	sleep 0.2
done
wait 2>/dev/null
exit "$status"
