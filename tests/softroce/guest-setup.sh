#!/bin/sh
# Runs inside the SoftRoCE guest as the first command in the chroot of the
# host's root file system. run-guest.sh puts this file and cmd.sh into the
# control share, which guest-init.sh mounts at /tmp/.augur-softroce. Sets up
# two rxe devices over a veth pair, then runs the caller's command (from
# cmd.sh) in the caller's working folder. Exit status: the command's; if the
# set-up fails, non-zero without writing /tmp/.augur-softroce/started.

set -e
ctl=/tmp/.augur-softroce
# cmd.sh exports the caller's environment, sets AUGUR_CWD and `set -- CMD ARGS`.
. "$ctl/cmd.sh"

say() { echo "augur-softroce(guest): $*"; }

# Both addresses are local to this one kernel, so by default traffic between
# them takes the loopback device: rxe drops what arrives on lo (rxe_b ->
# 192.0.2.1 never connects), and rdma_cm maps a connection to 192.0.2.1 onto
# rxe_a whatever device the client asked for. Policy routing makes the pair
# act like two hosts: locally sent packets to 192.0.2.1 leave through vb
# (source 192.0.2.2) and arrive on va, and the other way round; packets that
# arrive on va/vb are then delivered locally (accept_local lets their local
# source address through). One `ip -batch`: every exec costs time here.
ip -batch - <<'IP'
link set lo up
link add va type veth peer name vb
addr add 192.0.2.1/24 dev va
addr add 192.0.2.2/24 dev vb
link set va up
link set vb up
route add 192.0.2.1/32 dev vb src 192.0.2.2 table 101
route add 192.0.2.2/32 dev va src 192.0.2.1 table 102
rule add pref 10 iif lo to 192.0.2.1 lookup 101
rule add pref 11 iif lo to 192.0.2.2 lookup 102
rule add pref 100 lookup local
rule del pref 0 lookup local
IP
for i in all va vb; do
	echo 1 >"/proc/sys/net/ipv4/conf/$i/accept_local"
	echo 0 >"/proc/sys/net/ipv4/conf/$i/rp_filter"
done
rdma link add rxe_a type rxe netdev va
rdma link add rxe_b type rxe netdev vb

# Wait (up to 10 s) until both ports are ACTIVE.
i=0
while :; do
	read -r sa </sys/class/infiniband/rxe_a/ports/1/state
	read -r sb </sys/class/infiniband/rxe_b/ports/1/state
	case "$sa $sb" in *ACTIVE*ACTIVE*) break ;; esac
	i=$((i + 1))
	if [ "$i" -ge 100 ]; then
		say "rxe ports did not become ACTIVE (rxe_a: $sa, rxe_b: $sb)"
		exit 1
	fi
	sleep 0.1
done
[ -z "${AUGUR_SOFTROCE_VERBOSE:-}" ] || { rdma link show; ip rule; }

ulimit -l unlimited
export AUGUR_TEST_DEVICES=rxe_a,rxe_b
export AUGUR_TEST_ADDRS=192.0.2.1,192.0.2.2
export TMPDIR=/tmp
cd "$AUGUR_CWD"
read -r up _ </proc/uptime
say "rxe_a, rxe_b ready after $up s (guest clock)"
echo "$up" >"$ctl/started"
set +e
exec "$@" </dev/null
