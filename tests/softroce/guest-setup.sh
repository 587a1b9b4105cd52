#!/bin/sh
# Runs inside the SoftRoCE guest, chrooted into the host's root file system
# (guest-init.sh copies nothing: run-guest.sh puts this file and cmd.sh in the
# control share, seen here as /tmp/.augur-softroce). Sets up two rxe devices
# over a veth pair, then runs the caller's command (from cmd.sh) in the
# caller's working folder. Exit status: the command's, or non-zero without
# /tmp/.augur-softroce/started if the set-up failed.

set -e
ctl=/tmp/.augur-softroce
# cmd.sh exports the caller's environment, sets AUGUR_CWD and `set -- CMD ARGS`.
. "$ctl/cmd.sh"

say() { echo "augur-softroce(guest): $*"; }

ip link set lo up
ip link add va type veth peer name vb
ip addr add 192.0.2.1/24 dev va
ip addr add 192.0.2.2/24 dev vb
ip link set va up
ip link set vb up
rdma link add rxe_a type rxe netdev va
rdma link add rxe_b type rxe netdev vb

# Wait (up to 10 s) until both ports are ACTIVE.
i=0
until rdma link show rxe_a/1 | grep -q 'state ACTIVE' &&
	rdma link show rxe_b/1 | grep -q 'state ACTIVE'; do
	i=$((i + 1))
	if [ "$i" -ge 100 ]; then
		say "rxe ports did not become ACTIVE:"
		rdma link show >&2 || true
		exit 1
	fi
	sleep 0.1
done
[ -z "${AUGUR_SOFTROCE_VERBOSE:-}" ] || rdma link show

ulimit -l unlimited
export AUGUR_TEST_DEVICES=rxe_a,rxe_b
export AUGUR_TEST_ADDRS=192.0.2.1,192.0.2.2
export TMPDIR=/tmp
cd "$AUGUR_CWD"
up=$(cut -d" " -f1 /proc/uptime)
say "rxe_a, rxe_b ready after $up s (guest clock)"
echo "$up" >"$ctl/started"
set +e
exec "$@" </dev/null
