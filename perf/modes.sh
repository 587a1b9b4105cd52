#!/usr/bin/env bash
# perf/modes.sh BUILD_DIR [OUT_DIR] - the four management modes side by side
# on the same data, same node count, same run: MF (DSGD and plain SGD) and,
# when built, KGE.  Reports throughput, the share of accesses served locally
# and the bytes sent per data point (counts, stable on any machine), writes
# OUT_DIR/modes.csv and, with gnuplot, OUT_DIR/modes.png.
# Environment: NODES (4), TRANSPORT (shm), EPOCHS (2), MF_ARGS (extra mf-gen
# arguments; default: the design's reference shape scaled to 1/4).
set -euo pipefail
B=$(cd "$1" && pwd)
OUT=${2:-$B/perf-modes}
NODES=${NODES:-4}
TRANSPORT=${TRANSPORT:-shm}
EPOCHS=${EPOCHS:-2}
mkdir -p "$OUT"
DATA=$OUT/mf
if [ ! -s "$DATA.train.mm" ]; then
	echo "modes: generating MF data" >&2
	# shellcheck disable=SC2086
	"$B/examples/mf/mf-gen" -o "$DATA" ${MF_ARGS:---rows 25000 --cols 2500 --nnz 500000 --test 50000 --row-zipf 0.5 --col-zipf 0.7} >/dev/null
fi
CSV=$OUT/modes.csv
echo "workload,mode,points_per_s,local_pull_pct,bytes_sent_per_point,relocations,replicas" >"$CSV"

run() { # workload mode cmd...
	local wl=$1 mode=$2 log
	shift 2
	log=$OUT/$wl-$mode.log
	echo "modes: $wl $mode ($NODES nodes, $TRANSPORT)" >&2
	if ! "$B/augur-run" -n "$NODES" --transport "$TRANSPORT" --timeout 900 "$@" --mode "$mode" --no-progress >"$log" 2>&1; then
		echo "modes: $wl $mode FAILED (see $log)" >&2
		tail -5 "$log" >&2
		return 1
	fi
	local pps lp bpp rel rep
	pps=$(sed -n 's/.*points_per_s=\([0-9.]*\).*/\1/p; s/.*triples_per_s=\([0-9.]*\).*/\1/p' "$log" | tail -1)
	lp=$(sed -n 's/^ *local pulls *\([0-9.]*\)%.*/\1/p' "$log" | tail -1)
	bpp=$(sed -n 's/^ *bytes sent per data point *\([0-9.]*\).*/\1/p; s/^ *bytes sent per triple *\([0-9.]*\).*/\1/p' "$log" | tail -1)
	rel=$(awk '$1=="relocations"{print $2}' "$log" | tail -1)
	rep=$(awk '$1=="replicas"{print $2}' "$log" | tail -1)
	echo "$wl,$mode,${pps:-0},${lp:-0},${bpp:-0},${rel:-0},${rep:-0}" >>"$CSV"
}

fails=0
for mode in static replicate relocate adaptive; do
	run mf-dsgd "$mode" "$B/examples/mf/mf-train" "$DATA.train.mm" --epochs "$EPOCHS" --algo dsgd || fails=$((fails + 1))
	run mf-sgd "$mode" "$B/examples/mf/mf-train" "$DATA.train.mm" --epochs "$EPOCHS" --algo sgd || fails=$((fails + 1))
done
if [ -x "$B/examples/kge/kge-train" ] && [ -x "$B/examples/kge/kge-gen" ]; then
	KG=$OUT/kg
	[ -s "$KG/train.del" ] || "$B/examples/kge/kge-gen" -o "$KG" ${KGE_ARGS:-} >/dev/null
	for mode in static replicate relocate adaptive; do
		run kge "$mode" "$B/examples/kge/kge-train" "$KG" --epochs 1 || fails=$((fails + 1))
	done
fi

echo
column -s, -t <"$CSV"
# ratios: adaptive vs static and vs the best other mode, per workload
awk -F, 'NR>1 { v[$1","$2]=$3; w[$1]=1 }
END { for (k in w) { a=v[k",adaptive"]; s=v[k",static"]; b=0
	for (m in v) { split(m, p, ","); if (p[1]==k && p[2]!="adaptive" && v[m]>b) b=v[m] }
	if (s>0 && b>0) printf "%s: adaptive/static %.1fx, adaptive/best-other %.2fx\n", k, a/s, a/b } }' "$CSV"
if command -v gnuplot >/dev/null; then
	gnuplot <<GP || true
set terminal pngcairo size 1000,420 noenhanced
set output "$OUT/modes.png"
set datafile separator ","
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set multiplot layout 1,2 title "augur management modes, $NODES nodes over $TRANSPORT"
set ylabel "data points / s"
set logscale y
set xtics rotate by -20
plot for [m in "static replicate relocate adaptive"] "< grep ,".m.", $CSV" using 3:xtic(1) title m
unset logscale y
set ylabel "% pulls served locally"
set yrange [0:100]
plot for [m in "static replicate relocate adaptive"] "< grep ,".m.", $CSV" using 4:xtic(1) title m
unset multiplot
GP
	echo "plot: $OUT/modes.png"
fi
[ "$fails" -eq 0 ]
