#!/bin/bash
# Download Debian's x86-64 kernel package and unpack it (kernel image and
# modules) into a cache folder, for tests/softroce/run-guest.sh.
#
# Usage: tests/softroce/fetch-kernel.sh CACHE_DIR
#
# Prints the unpacked kernel folder (CACHE_DIR/kernel/<package>) on stdout;
# messages go to stderr. Exit status: 0 done (or already cached), 77 the
# kernel cannot be fetched (prints what to install), 1 other errors.
#
# The package is the one linux-image-amd64 depends on (for example
# linux-image-6.1.0-56-amd64); set AUGUR_SOFTROCE_KERNEL_PKG to pick another.
# When apt cannot resolve or download it but some kernel is cached already,
# that cached kernel is used (so offline reruns work).

set -eu
set -o pipefail

me=fetch-kernel.sh
say() { printf '%s: %s\n' "$me" "$*" >&2; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 CACHE_DIR" >&2
	exit 1
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd -P)
kroot=$cache/kernel

# Newest complete kernel already in the cache, if any.
newest_cached() {
	local d best=
	for d in "$kroot"/linux-image-*; do
		[ -f "$d/.complete" ] || continue
		best=$d
	done
	[ -n "$best" ] && printf '%s\n' "$best"
}

use_cached_or_skip() {
	local d
	if d=$(newest_cached); then
		say "$1; using cached ${d##*/}"
		printf '%s\n' "$d"
		exit 0
	fi
	skip "$1: $2"
}

for tool in depmod modprobe; do
	command -v "$tool" >/dev/null 2>&1 ||
		PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 ||
		skip "$tool not found: apt-get install kmod"
done
PATH=$PATH:/usr/sbin:/sbin
command -v dpkg >/dev/null 2>&1 || skip "dpkg not found (a Debian-like host is needed to unpack the kernel package)"

pkg=${AUGUR_SOFTROCE_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	command -v apt-cache >/dev/null 2>&1 ||
		use_cached_or_skip "apt-cache not found" "the harness needs Debian's apt to fetch linux-image-amd64"
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
	[ -n "$pkg" ] ||
		use_cached_or_skip "cannot resolve linux-image-amd64" \
			"run apt-get update (Debian main must be in the apt sources), or set AUGUR_SOFTROCE_KERNEL_PKG"
fi

dest=$kroot/$pkg
if [ -f "$dest/.complete" ]; then
	printf '%s\n' "$dest"
	exit 0
fi

mkdir -p "$kroot"
work=$(mktemp -d "$kroot/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "downloading $pkg (about 70 MB) ..."
if ! (cd "$work" && apt-get download "$pkg" >"$work/apt.log" 2>&1); then
	sed 's/^/  /' "$work/apt.log" >&2
	use_cached_or_skip "cannot download $pkg" "check the apt sources and network (apt-get update; apt-get download $pkg)"
fi
deb=$(ls "$work"/*.deb)
say "unpacking ${deb##*/} ..."
mkdir "$work/root"
dpkg -x "$deb" "$work/root"
rm -f "$deb"

kver=${pkg#linux-image-}
# Newer Debian kernels ship /usr/lib/modules; kmod's -d wants <dir>/lib/modules.
if [ ! -d "$work/root/lib/modules/$kver" ] && [ -d "$work/root/usr/lib/modules/$kver" ]; then
	mkdir -p "$work/root/lib"
	ln -s ../usr/lib/modules "$work/root/lib/modules"
fi
[ -d "$work/root/lib/modules/$kver" ] || { say "no modules for $kver in $pkg"; exit 1; }
vmlinuz=$work/root/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || { say "no $vmlinuz in $pkg"; exit 1; }

depmod -b "$work/root" "$kver"
printf '%s\n' "$kver" >"$work/root/kver"

rm -rf "$dest"
mv "$work/root" "$dest"
touch "$dest/.complete"
say "kernel $kver ready in $dest"
printf '%s\n' "$dest"
