#!/bin/bash
# Transport latency on SoftRoCE: augur's ibv provider against perftest, both
# measured in the same boot of the same guest, reported as ratios.
#
# Usage (on the host, through the guest harness):
#   tests/softroce/run-guest.sh --results /tmp/r -- perf/softroce-lat.sh build-perf /tmp/r
# or directly, inside a SoftRoCE guest:
#   perf/softroce-lat.sh BUILD_DIR [RESULTS_DIR]
#
# Runs, each server on the first device and each client on the second:
#   ib_read_lat  -R -d rxe_a -n N -s S   /  ib_read_lat  -R -d rxe_b -n N -s S 192.0.2.1
#   ib_write_lat -R ... (the same), for S = 2 and 64 bytes,
#   ib_atomic_lat -R -A CMP_AND_SWAP (8 bytes; optional: perftest is known to
#   crash there on rxe, and then CAS simply has no reference),
# then auv_lat -p ibv for READ, WRITE (same sizes) and CAS; all of that
# AUV_SOFTROCE_ROUNDS times (default 3), interleaved. It parses the typical
# (median) latencies and prints a table of their medians over the rounds and
# the ratio lines
#   augur READ 64B / ib_read_lat: X.XX (goal <= 1.10; per round: ...)
# where X.XX = median augur typical / median perftest typical.
#
# perftest reports TSC cycles (-C): its own MHz estimate fails under TCG
# (prints inf), so the cycles are converted with the TSC rate that
# `auv_lat --clock-rate` calibrates, one conversion for both tools.
#
# Devices and addresses come from AUGUR_TEST_DEVICES (default rxe_a,rxe_b)
# and AUGUR_TEST_ADDRS (default 192.0.2.1,192.0.2.2), which the guest sets.
# Other knobs: AUV_SOFTROCE_ITERS (default 1000, perftest's default),
# AUV_SOFTROCE_ROUNDS (default 3),
# AUV_SOFTROCE_ATOMIC=0 (skip ib_atomic_lat), AUV_SOFTROCE_TIMEOUT (seconds
# per tool run, default 120), AUV_SOFTROCE_CLIENT_ARGS (extra arguments for
# the perftest clients), AUV_SOFTROCE_AUV_ARGS (extra arguments for auv_lat,
# e.g. --no-inline: perftest does not inline on rxe, "Device not recognized
# to implement inline feature").
#
# RESULTS_DIR (default $AUGUR_TEST_RESULTS, else a new folder under /tmp)
# receives softroce-lat.csv (every row of every round, perftest's and
# augur's, same columns), summary.txt, softroce-lat.png (if gnuplot is
# there) and raw/ (every tool's full output, per-round CSVs).
#
# Exit status: 0 when everything ran, whether or not the goals were met (it
# is a benchmark, not a test); 1 a tool failed; 2 usage; 77 not inside a
# SoftRoCE guest, or augur was built without the ibv provider.

set -u
set -o pipefail

me=softroce-lat.sh
say() { printf '%s: %s\n' "$me" "$*"; }
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s: %s\n' "$me" "$*" >&2; exit 77; }

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	echo "usage: $0 BUILD_DIR [RESULTS_DIR]" >&2
	exit 2
fi
build=$1
results=${2:-${AUGUR_TEST_RESULTS:-}}
iters=${AUV_SOFTROCE_ITERS:-1000}
rounds=${AUV_SOFTROCE_ROUNDS:-3}
tmo=${AUV_SOFTROCE_TIMEOUT:-120}
sizes="2 64"
case $iters in '' | *[!0-9]*) die "AUV_SOFTROCE_ITERS must be a number" ;; esac
case $rounds in '' | *[!0-9]* | 0) die "AUV_SOFTROCE_ROUNDS must be a positive number" ;; esac
case $tmo in '' | *[!0-9]*) die "AUV_SOFTROCE_TIMEOUT must be a number" ;; esac

devs=${AUGUR_TEST_DEVICES:-rxe_a,rxe_b}
addrs=${AUGUR_TEST_ADDRS:-192.0.2.1,192.0.2.2}
dev_s=${devs%%,*} dev_c=${devs#*,}
addr_s=${addrs%%,*} addr_c=${addrs#*,}

auv=$build/perf/auv_lat
[ -x "$auv" ] || die "$auv not found: build first (cmake --build $build)"
for t in ib_read_lat ib_write_lat timeout awk; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found (apt-get install perftest coreutils gawk)"
done
if [ ! -e "/sys/class/infiniband/$dev_s" ] || [ ! -e "/sys/class/infiniband/$dev_c" ]; then
	skip "RDMA devices $dev_s and $dev_c not found: run this inside the SoftRoCE guest (tests/softroce/run-guest.sh --results DIR -- $0 BUILD_DIR DIR)"
fi

if [ -z "$results" ]; then
	results=$(mktemp -d "${TMPDIR:-/tmp}/softroce-lat.XXXXXX") || die "mktemp failed"
fi
mkdir -p "$results/raw" || die "cannot create $results/raw"
csv=$results/softroce-lat.csv
rm -f "$csv" "$results"/raw/round-*.csv "$results"/raw/auv_lat-round-*.csv
echo "tool,provider,op,bytes,iterations,t_min_us,t_max_us,t_typical_us,t_avg_us,t_stdev_us,p99_us,p999_us,rate_ops,rate_mops,rate_mib_s" >"$csv" ||
	die "cannot write $csv"

# perftest's own MHz estimate fails under TCG (it then prints inf), so it
# reports TSC cycles (-C) and they are converted here with the TSC rate
# auv_lat calibrates against CLOCK_MONOTONIC: one conversion for both tools.
mhz=$("$auv" --clock-rate) || die "auv_lat --clock-rate failed"
case $mhz in '' | *[!0-9.]* | 0 | 0.*) die "auv_lat --clock-rate printed '$mhz'" ;; esac

say "server $dev_s ($addr_s), client $dev_c ($addr_c), $iters iterations, TSC $mhz MHz, results in $results"
ulimit -l unlimited 2>/dev/null || say "note: cannot raise ulimit -l (now $(ulimit -l))"

# perftest_pair TOOL OP SIZE [ARGS...]: run one perftest server/client pair
# and append its result row to the CSV. Returns non-zero if it failed.
# A failed attempt (perftest's client has been seen to crash inside
# librdmacm on rxe) is retried with a fresh server, up to 3 times.
perftest_pair() {
	local tool=$1 op=$2 size=$3 out sp cst=1 sst=1 try
	shift 3
	out=$results/raw/$tool-$size-r$round
	for try in 1 2 3; do
		timeout "$tmo" "$tool" -R -F -C -d "$dev_s" -n "$iters" -s "$size" "$@" \
			>"$out.server.txt" 2>&1 &
		sp=$!
		sleep 2 # let the server listen
		cst=1
		if kill -0 "$sp" 2>/dev/null; then
			# shellcheck disable=SC2086 # extra arguments split on purpose
			timeout "$tmo" "$tool" -R -F -C -d "$dev_c" -n "$iters" -s "$size" "$@" \
				${AUV_SOFTROCE_CLIENT_ARGS:-} "$addr_s" >"$out.txt" 2>&1
			cst=$?
		fi
		# The server ends with the test; stop it if it does not.
		for _ in $(seq 1 50); do
			kill -0 "$sp" 2>/dev/null || break
			sleep 0.2
		done
		kill "$sp" 2>/dev/null
		wait "$sp"
		sst=$?
		if [ "$cst" -eq 0 ] && [ "$sst" -eq 0 ]; then
			perftest_row "$tool" "$op" "$size" "$out.txt" >"$out.row" && break
			say "$tool -s $size attempt $try: no finite result row in its output"
			cst=1
			continue
		fi
		say "$tool -s $size attempt $try failed (client status $cst, server status $sst)"
	done
	if [ "$cst" -ne 0 ] || [ "$sst" -ne 0 ]; then
		say "$tool -s $size failed; last output:"
		sed 's/^/  client| /' "$out.txt" 2>/dev/null | tail -n 20
		sed 's/^/  server| /' "$out.server.txt" | tail -n 20
		return 1
	fi
	cat "$out.row" >>"$rcsv" || return 1
	say "$tool -s $size: typical $(cut -d, -f8 "$out.row") us"
}

# perftest_row TOOL OP SIZE FILE: perftest's result row (run with -C: TSC
# cycles) as a CSV row in microseconds, converted with auv_lat's TSC rate.
# Fails if there is no row or it holds no finite numbers.
perftest_row() {
	awk -v tool="$1" -v op="$2" -v size="$3" -v mhz="$mhz" '
		$1 == size && $2 ~ /^[0-9]+$/ && NF >= 9 {
			# field 7 is the stdev, which perftest computes in int
			# and which overflows to -nan in cycles: leave it empty
			for (i = 3; i <= 9; i++)
				if (i != 7 && $i !~ /^[0-9.]+$/)
					exit
			printf "%s,rxe,%s,%s,%s", tool, op, $1, $2
			for (i = 3; i <= 9; i++)
				if (i == 7 && $i !~ /^[0-9.]+$/)
					printf ","
				else
					printf ",%.4f", $i / mhz
			printf ",,,\n"
			found = 1
			exit
		}
		END { exit !found }' "$4"
}

# auv_run NAME ARGS...: auv_lat over ibv, rows appended to raw/auv_lat.csv.
auv_run() {
	local name=$1 st
	shift
	# shellcheck disable=SC2086 # extra arguments split on purpose
	timeout "$tmo" "$auv" -p ibv -d "$dev_s" --client-device "$dev_c" \
		--addr "$addr_s" --client-addr "$addr_c" -n "$iters" \
		--timeout 60 --csv "$acsv" ${AUV_SOFTROCE_AUV_ARGS:-} "$@" \
		>"$results/raw/$name.txt" 2>&1
	st=$?
	cat "$results/raw/$name.txt"
	if [ "$st" -eq 77 ]; then
		skip "auv_lat: the ibv provider is not available (built without rdma-core?)"
	fi
	[ "$st" -eq 0 ] || { say "auv_lat $* failed (status $st)"; return 1; }
}

# Rounds interleave the two tools so that drift in the guest (TCG is noisy)
# hits both alike; the summary takes medians over the rounds.
fail=0
atomic=none
round=1
while [ "$round" -le "$rounds" ]; do
	say "---- round $round of $rounds ----"
	rcsv=$results/raw/round-$round.csv
	: >"$rcsv" || die "cannot write $rcsv"
	for s in $sizes; do
		perftest_pair ib_read_lat read "$s" || fail=1
	done
	for s in $sizes; do
		perftest_pair ib_write_lat write "$s" || fail=1
	done
	if [ "${AUV_SOFTROCE_ATOMIC:-1}" != 0 ] && [ "$atomic" != failed ] &&
		command -v ib_atomic_lat >/dev/null 2>&1; then
		if perftest_pair ib_atomic_lat cas 8 -A CMP_AND_SWAP; then
			atomic=ok
		else
			atomic=failed
			say "ib_atomic_lat failed (a known perftest crash with -R on rxe): CAS has no reference in this run"
		fi
	fi
	acsv=$results/raw/auv_lat-round-$round.csv
	rm -f "$acsv"
	for s in $sizes; do
		auv_run "auv_lat-$s-r$round" -s "$s" -o read -o write || fail=1
	done
	auv_run "auv_lat-cas-r$round" -o cas || fail=1
	[ -s "$acsv" ] && tail -n +2 "$acsv" >>"$rcsv"
	round=$((round + 1))
done
for f in "$results"/raw/round-*.csv; do
	cat "$f" >>"$csv" || die "cannot write $csv"
done

# ---- table and ratios -------------------------------------------------------
summary=$results/summary.txt
awk -F, -v iters="$iters" -v rounds="$rounds" -v dat="$results/raw/lat.dat" '
FNR == 1 { r++ }
{
	key = $3 " " $4
	if ($1 == "auv_lat") {
		aug[key, r] = $8; rate[key, r] = $14
	} else {
		ref[key, r] = $8
	}
}
# median of the values of arr[key, 1..r] that exist; "" if none
function median(arr, key, v, n, i, j, t) {
	n = 0
	for (i = 1; i <= r; i++)
		if ((key, i) in arr && arr[key, i] != "")
			v[++n] = arr[key, i] + 0
	if (!n)
		return ""
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function row(op, size, k, a, b, q) {
	k = op " " size
	a = median(ref, k); b = median(aug, k); q = median(rate, k)
	printf " %-6s %6s  %22s  %18s  %8s  %12s\n", toupper(op), size,
		a != "" ? sprintf("%.2f", a) : "-", b != "" ? sprintf("%.2f", b) : "-",
		(a != "" && b != "" && a > 0) ? sprintf("%.2f", b / a) : "-",
		q != "" ? sprintf("%.3f", q) : "-"
	printf "\"%s %sB\" %s %s\n", toupper(op), size, a != "" ? a : "?", b != "" ? b : "?" >dat
}
function ratio(op, size, t, k, a, b, i, each) {
	k = op " " size
	a = median(ref, k); b = median(aug, k)
	if (a == "" || b == "" || a <= 0) {
		printf "augur %s %sB / %s: n/a (%s)\n", toupper(op), size, t,
			b != "" ? "no reference in this run" : "augur did not run"
		return
	}
	each = ""
	for (i = 1; i <= r; i++)
		if ((k, i) in ref && (k, i) in aug && ref[k, i] > 0)
			each = each sprintf(" %.2f", aug[k, i] / ref[k, i])
	printf "augur %s %sB / %s: %.2f (goal <= 1.10; per round:%s)\n", toupper(op), size, t, b / a, each
}
END {
	printf "SoftRoCE transport latency, same guest, same boot: %s iterations, median of %s interleaved rounds\n", iters, rounds
	printf " %-6s %6s  %22s  %18s  %8s  %12s\n", "op", "bytes", "perftest typical[us]", "augur typical[us]", "ratio", "augur Mops/s"
	row("read", 2); row("read", 64); row("write", 2); row("write", 64); row("cas", 8)
	print ""
	ratio("read", 64, "ib_read_lat"); ratio("read", 2, "ib_read_lat")
	ratio("write", 64, "ib_write_lat"); ratio("write", 2, "ib_write_lat")
	ratio("cas", 8, "ib_atomic_lat")
}' "$results"/raw/round-*.csv | tee "$summary"

# ---- plot -------------------------------------------------------------------
if command -v gnuplot >/dev/null 2>&1 && [ -s "$results/raw/lat.dat" ]; then
	export XDG_CACHE_HOME=${TMPDIR:-/tmp}/softroce-lat-cache
	mkdir -p "$XDG_CACHE_HOME"
	term="pngcairo size 900,500"
	gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo || term="png size 900,500"
	if gnuplot >"$results/raw/gnuplot.txt" 2>&1 <<EOF
set terminal $term
set output '$results/softroce-lat.png'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ylabel 'typical latency [us] (lower is better)'
set title 'SoftRoCE (rxe in a TCG guest), $iters iterations: perftest vs augur, same run'
set key outside top center horizontal
plot '$results/raw/lat.dat' using 2:xtic(1) title 'perftest', '' using 3 title 'augur auv\_lat'
EOF
	then
		say "plot: $results/softroce-lat.png"
	else
		say "gnuplot failed (see $results/raw/gnuplot.txt); no plot"
	fi
else
	say "gnuplot not found: no plot"
fi

say "results: $csv, $summary"
if [ "$fail" -ne 0 ]; then
	say "FAILED: at least one tool run failed (see above and $results/raw)"
	exit 1
fi
exit 0
