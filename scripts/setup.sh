#!/usr/bin/env bash
# scripts/setup.sh - install what augur needs from Debian's packages (idempotent).
# Build: cmake, gcc, pkg-config, rdma-core headers (libibverbs, librdmacm),
# liburing.  SoftRoCE tier: qemu, busybox, cpio, kmod, iproute2, rdma-core
# user space, perftest.  Sanitizers: clang's runtimes are not needed (gcc's).
# Plots: gnuplot-nox.  tcp fuzz target: clang with libFuzzer (libclang-rt-dev).  See docs/dependencies.md for why each one is here.
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libibverbs-dev librdmacm-dev liburing-dev
      rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest
      qemu-system-x86 busybox-static cpio kmod iproute2
      gnuplot-nox
      clang libclang-rt-dev)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "setup: all packages present"
	exit 0
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
	--no-install-recommends "${missing[@]}"
