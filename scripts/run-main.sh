#!/usr/bin/env bash
# scripts/run-main.sh - set everything up, build, and run the main job on the
# embedded default: matrix factorization (AdaGrad SGD, rank 32) on 4 augur
# nodes started by augur-run on this host, over the shm transport (no RDMA
# hardware needed).  Prints training/test RMSE per epoch, throughput and the
# store's counters.  Extra arguments go to mf-train (e.g. --epochs 5).
# AUGUR_NODES (default 4) and AUGUR_TRANSPORT (default shm) override.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== building (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
data=build/mf-data/mf
if [ ! -s "$data.train.mm" ]; then
	echo "== generating synthetic MF data ($data.*.mm)"
	mkdir -p build/mf-data
	build/examples/mf/mf-gen -o "$data"
fi
nodes=${AUGUR_NODES:-4}
echo "== training on $nodes augur nodes (augur-run -n $nodes, ${AUGUR_TRANSPORT:-shm})"
exec build/augur-run -n "$nodes" --transport "${AUGUR_TRANSPORT:-shm}" \
	build/examples/mf/mf-train "$data.train.mm" --test "$data.test.mm" \
	--epochs 3 "$@"
