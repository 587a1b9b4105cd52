#!/bin/sh
# Guest half of selftest.sh: run inside the SoftRoCE guest
# (run-guest.sh -- tests/softroce/selftest-guest.sh [ITERATIONS]).
# Lists the rxe devices and runs perftest latency pairs, server on rxe_a
# (192.0.2.1), client on rxe_b; checks that both devices carried packets.
# Prints one summary line per pair and, if AUGUR_TEST_RESULTS is set, writes
# them to $AUGUR_TEST_RESULTS/softroce-selftest.txt. Exit status 0 if all
# pairs passed.

set -u
n=${1:-1000}
failed=0
summary=/tmp/softroce-selftest.txt
: >"$summary"

ibv_devices || failed=1
ibv_devinfo -d rxe_a | head -20 || failed=1

sent() { cat "/sys/class/infiniband/$1/ports/1/hw_counters/sent_pkts"; }

# Wait (up to 10 s) until the server listens: rdma_cm id, or perftest's TCP port.
wait_listen() {
	i=0
	while [ "$i" -lt 100 ]; do
		case $1 in
		rdma_cm) rdma res show cm_id 2>/dev/null | grep -q LISTEN && return 0 ;;
		*) ss -ltn 2>/dev/null | grep -q ':18515 ' && return 0 ;;
		esac
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# pair NAME MODE TOOL [ARGS...]: server on rxe_a, client on rxe_b.
pair() {
	name=$1 mode=$2 tool=$3
	shift 3
	a0=$(sent rxe_a) b0=$(sent rxe_b)
	"$tool" -d rxe_a -n "$n" "$@" >/tmp/server.log 2>&1 &
	spid=$!
	wait_listen "$mode" || echo "($name: server not listening yet after 10 s)"
	timeout 300 "$tool" -d rxe_b -n "$n" "$@" 192.0.2.1 >/tmp/client.log 2>&1
	crc=$?
	i=0
	while kill -0 "$spid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill "$spid" 2>/dev/null
	wait "$spid"
	src=$?
	da=$(($(sent rxe_a) - a0)) db=$(($(sent rxe_b) - b0))
	# perftest columns: #bytes #iterations t_min t_max t_typical t_avg ...
	lat=$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ && NF >= 6 { print "typical " $5 " us, avg " $6 " us, min " $3 " us" }' /tmp/client.log)
	if [ "$crc" = 0 ] && [ "$src" = 0 ] && [ -n "$lat" ] && [ "$da" -gt 0 ] && [ "$db" -gt 0 ]; then
		line="PASS $name: $lat (packets sent rxe_a $da, rxe_b $db)"
	else
		line="FAIL $name: client exit $crc, server exit $src, packets sent rxe_a $da, rxe_b $db"
		failed=1
		echo "---- $name client log ----"
		cat /tmp/client.log
		echo "---- $name server log ----"
		cat /tmp/server.log
	fi
	echo "$line"
	echo "$line" >>"$summary"
}

pair "ib_read_lat -R (rdma_cm)" rdma_cm ib_read_lat -R
pair "ib_write_lat -R (rdma_cm)" rdma_cm ib_write_lat -R
pair "ib_send_lat -R (rdma_cm)" rdma_cm ib_send_lat -R
pair "ib_write_lat -x 1 (TCP exchange, GID index 1)" tcp ib_write_lat -x 1

if [ -n "${AUGUR_TEST_RESULTS:-}" ]; then
	cp "$summary" "$AUGUR_TEST_RESULTS/softroce-selftest.txt" || failed=1
fi
exit "$failed"
