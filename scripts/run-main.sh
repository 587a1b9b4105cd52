#!/usr/bin/env bash
# scripts/run-main.sh - set everything up, build, and run the main job on the
# embedded default: several augur nodes as processes on this host, over the
# shm transport (no RDMA hardware needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
AUGUR_TRANSPORT=${AUGUR_TRANSPORT:-shm} exec build/examples/transport_demo "$@"
