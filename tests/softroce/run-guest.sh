#!/bin/bash
# Run a command on SoftRoCE (rxe) inside a throwaway qemu guest.
#
# Usage: tests/softroce/run-guest.sh [--cache DIR] [--results DIR]
#            [--timeout SECS] [--verbose] -- CMD [ARGS...]
#
# Boots Debian's kernel (fetched once into the cache) with a busybox
# initramfs under qemu (TCG), chroots into the host's root file system
# (read-only 9p), loads rdma_rxe, makes a veth pair va/vb (192.0.2.1/24,
# 192.0.2.2/24) with rxe devices rxe_a/rxe_b on top, and runs CMD in the
# caller's working folder with
#   AUGUR_TEST_DEVICES=rxe_a,rxe_b  AUGUR_TEST_ADDRS=192.0.2.1,192.0.2.2
#   AUGUR_TEST_RESULTS=DIR (with --results)   `ulimit -l unlimited`
# and the caller's other environment variables. CMD's output streams to
# stdout (the guest's serial console); its stdin is /dev/null.
#
# Writable in the guest: /tmp and /dev/shm (tmpfs, thrown away) and the
# --results folder (shared with the host, same absolute path). All else is
# the host's file system, read-only.
#
# Exit status: CMD's; 77 when qemu, busybox or the kernel is unavailable
# (prints what to install); 124 on timeout; 99 when the guest failed before
# reporting a status; 2 on usage errors.

set -eu
set -o pipefail

me=run-guest.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

usage() {
	cat <<EOF
usage: $0 [--cache DIR] [--results DIR] [--timeout SECS] [--verbose] -- CMD [ARGS...]
  --cache DIR     kernel and initramfs cache
                  (default \${XDG_CACHE_HOME:-~/.cache}/augur-softroce)
  --results DIR   host folder shared writable with the guest, same path
  --timeout SECS  kill the guest after SECS seconds (default 1200), exit 124
  --verbose       show the guest kernel's boot messages and set-up steps
EOF
}
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 2; }
say() { printf 'augur-softroce: %s\n' "$*"; }
skip() { printf 'SKIP: %s\n' "$*"; exit 77; }

cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/augur-softroce
results=
timeout=1200
verbose=0
while [ $# -gt 0 ]; do
	case $1 in
	--cache) [ $# -ge 2 ] || die "--cache needs a value"; cache=$2; shift 2 ;;
	--cache=*) cache=${1#*=}; shift ;;
	--results) [ $# -ge 2 ] || die "--results needs a value"; results=$2; shift 2 ;;
	--results=*) results=${1#*=}; shift ;;
	--timeout) [ $# -ge 2 ] || die "--timeout needs a value"; timeout=$2; shift 2 ;;
	--timeout=*) timeout=${1#*=}; shift ;;
	--verbose | -v) verbose=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[ $# -gt 0 ] || { usage >&2; die "no command given (put it after --)"; }
case $timeout in '' | *[!0-9]* | 0) die "--timeout wants a positive whole number of seconds" ;; esac
[ -n "$cache" ] || die "--cache is empty"

# ---- requirements ---------------------------------------------------------

PATH=$PATH:/usr/sbin:/sbin
qemu=$(command -v "${AUGUR_SOFTROCE_QEMU:-qemu-system-x86_64}" || true)
[ -n "$qemu" ] || skip "${AUGUR_SOFTROCE_QEMU:-qemu-system-x86_64} not found: apt-get install qemu-system-x86"
bb=
bbs=(/bin/busybox /usr/bin/busybox "$(command -v busybox || true)")
[ -z "${AUGUR_SOFTROCE_BUSYBOX:-}" ] || bbs=("$AUGUR_SOFTROCE_BUSYBOX")
for c in "${bbs[@]}"; do
	[ -n "$c" ] && [ -x "$c" ] || continue
	# The initramfs has no C library: busybox must be linked statically.
	if ! ldd "$c" >/dev/null 2>&1; then bb=$c; break; fi
done
[ -n "$bb" ] || skip "static busybox not found: apt-get install busybox-static"
command -v gzip >/dev/null || skip "gzip not found: apt-get install gzip"
for t in ip rdma; do
	command -v "$t" >/dev/null || skip "$t not found (the guest uses the host's): apt-get install iproute2"
done
# The rxe user-space driver (the guest runs the host's rdma-core).
rxe_provider=$(ls /usr/lib/*/libibverbs/librxe-rdmav*.so /usr/lib*/libibverbs/librxe-rdmav*.so 2>/dev/null | head -n 1 || true)
[ -n "$rxe_provider" ] || skip "rxe user-space driver (librxe-rdmav*.so) not found: apt-get install ibverbs-providers"

mkdir -p "$cache" || die "cannot create the cache folder $cache"
cache=$(cd "$cache" && pwd -P)

# Serialise fetching and building between concurrent runs.
if command -v flock >/dev/null; then
	exec 9>"$cache/.lock"
	flock 9
fi

kfetch_rc=0
kdir=$("$here/fetch-kernel.sh" "$cache") || kfetch_rc=$?
if [ "$kfetch_rc" != 0 ]; then
	[ "$kfetch_rc" = 77 ] || printf 'SKIP: the guest kernel could not be prepared (fetch-kernel.sh exit %s)\n' "$kfetch_rc"
	exit 77
fi
kver=$(cat "$kdir/kver")
vmlinuz=$kdir/boot/vmlinuz-$kver

# ---- initramfs (cached by content) ---------------------------------------

modules="virtio_pci 9pnet_virtio 9p crc32_generic veth rdma_rxe rdma_ucm"
modlist=$(for m in $modules; do
	modprobe -S "$kver" -d "$kdir" --show-depends "$m" || echo "missing $m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 } $1 == "missing" { print "MISSING " $2 }')
case $modlist in *MISSING*) printf 'SKIP: kernel %s lacks modules: %s\n' "$kver" "$(echo "$modlist" | grep MISSING | tr '\n' ' ')"; exit 77 ;; esac

key=$({
	echo "$kdir $kver"
	echo "$modlist"
	cat "$here/guest-init.sh"
	cksum <"$bb"
} | sha256sum | cut -c1-16)
initrd=$cache/initramfs/$key.cpio.gz
if [ ! -f "$initrd" ]; then
	mkdir -p "$cache/initramfs"
	# Drop old ones (not recent ones: a concurrent run may be about to boot one).
	find "$cache/initramfs" -maxdepth 1 -name "*.cpio.gz" -mtime +30 -delete 2>/dev/null || true
	t=$(mktemp -d "$cache/initramfs/.build.XXXXXX")
	mkdir -p "$t/bin" "$t/lib/modules"
	cp "$bb" "$t/bin/busybox"
	cp "$here/guest-init.sh" "$t/init"
	chmod 755 "$t/init" "$t/bin/busybox"
	: >"$t/modules.list"
	while read -r p; do
		b=${p##*/}
		case $b in
		*.ko) cp "$p" "$t/lib/modules/$b" ;;
		*.ko.xz) b=${b%.xz}; xz -dc "$p" >"$t/lib/modules/$b" ;;
		*.ko.zst) b=${b%.zst}; zstd -qdc "$p" >"$t/lib/modules/$b" ;;
		*.ko.gz) b=${b%.gz}; gzip -dc "$p" >"$t/lib/modules/$b" ;;
		*) die "unexpected module file $p" ;;
		esac
		echo "$b" >>"$t/modules.list"
	done <<<"$modlist"
	(cd "$t" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -1 >"$t.cpio.gz"
	mv "$t.cpio.gz" "$initrd"
	rm -rf "$t"
fi
touch "$initrd" 2>/dev/null || true # in use: keep it from the clean-up above

exec 9>&- # release the cache lock

# ---- control share: what to run, where; the status comes back here -------

ctl=$(mktemp -d "${TMPDIR:-/tmp}/augur-softroce.XXXXXX")
qpid= wpid=
cleanup() {
	[ -z "$wpid" ] || kill "$wpid" 2>/dev/null || true
	[ -z "$qpid" ] || kill -KILL "$qpid" 2>/dev/null || true
	rm -rf "$ctl"
}
trap cleanup EXIT
# Stop the guest first: the message may hit a closed pipe (SIGPIPE).
trap 'cleanup; trap - EXIT; printf "augur-softroce: interrupted; guest stopped\n" >&2 || true; exit 130' INT TERM HUP PIPE

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # quote for sh

cwd=$(pwd -P)
if [ -n "$results" ]; then
	mkdir -p "$results" || die "cannot create the results folder $results"
	results=$(cd "$results" && pwd -P)
	[ "$results" != / ] || die "--results / is not allowed"
fi

{
	echo "AUGUR_CWD=$(q "$cwd")"
	echo "AUGUR_RESULTS=$(q "$results")"
} >"$ctl/env.sh"
{
	echo "# generated by run-guest.sh"
	for v in $(compgen -e); do
		case $v in PWD | OLDPWD | SHLVL | _ | TMPDIR | AUGUR_TEST_RESULTS | AUGUR_SOFTROCE_VERBOSE) continue ;; esac
		echo "export $v=$(q "${!v}")"
	done
	echo "AUGUR_CWD=$(q "$cwd")"
	[ -z "$results" ] || echo "export AUGUR_TEST_RESULTS=$(q "$results")"
	[ "$verbose" = 0 ] || echo "export AUGUR_SOFTROCE_VERBOSE=1"
	printf 'set --'
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
} >"$ctl/cmd.sh"
cp "$here/guest-setup.sh" "$ctl/guest-setup.sh"

# ---- boot ----------------------------------------------------------------

append="console=ttyS0 panic=-1 mitigations=off"
if [ "$verbose" = 1 ]; then
	append="$append loglevel=7 augur.verbose=1"
else
	append="$append loglevel=3"
fi
share() { # tag path [extra options]; commas in paths are doubled for qemu
	printf 'local,path=%s,mount_tag=%s,security_model=passthrough,multidevs=remap%s' \
		"${2//,/,,}" "$1" "${3:-}"
}
qargs=(
	-nodefaults -no-user-config
	-accel tcg,thread=multi -cpu max -m 2048 -smp 2
	-display none -serial stdio -no-reboot
	-kernel "$vmlinuz" -initrd "$initrd" -append "$append"
	-virtfs "$(share hostroot / ,readonly=on)"
	-virtfs "$(share augurctl "$ctl")"
)
[ -z "$results" ] || qargs+=(-virtfs "$(share augurresults "$results")")

say "booting kernel $kver under qemu (TCG, 2 vCPUs, 2 GiB); timeout ${timeout} s"
cmdq=$(printf " %q" "$@")
say "command:$cmdq"
t0=$(date +%s%N)
"$qemu" "${qargs[@]}" </dev/null &
qpid=$!
(
	deadline=$(($(date +%s) + timeout))
	while kill -0 "$qpid" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			: >"$ctl/timed-out"
			kill -TERM "$qpid" 2>/dev/null
			sleep 5
			kill -KILL "$qpid" 2>/dev/null
			exit 0
		fi
		sleep 1
	done
) &
wpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=
elapsed=$((($(date +%s%N) - t0) / 1000000))
secs=$(printf '%d.%03d' $((elapsed / 1000)) $((elapsed % 1000)))

if [ -e "$ctl/timed-out" ]; then
	say "TIMEOUT: the guest did not finish within $timeout s; qemu was killed (command:$cmdq)"
	exit 124
fi
if [ -f "$ctl/status" ]; then
	st=$(cat "$ctl/status")
	case $st in '' | *[!0-9]*) say "ERROR: bad status '$st' from the guest"; exit 99 ;; esac
	if [ "$st" != 0 ] && [ -s "$ctl/dmesg.txt" ]; then
		# Kernel messages logged while the command ran (rxe errors and the like).
		since=$(cat "$ctl/started" 2>/dev/null || echo 0)
		awk -v t="${since:-0}" -F"[][]" 'NF >= 3 && $2 + 0 >= t + 0' "$ctl/dmesg.txt" >"$ctl/dmesg.run"
		if [ -s "$ctl/dmesg.run" ]; then
			say "---- guest kernel messages while the command ran (last 40) ----"
			tail -n 40 "$ctl/dmesg.run"
			say "---- end of guest kernel messages ----"
		fi
	fi
	say "command exited with status $st; whole run $secs s"
	exit "$st"
fi
if [ -f "$ctl/setup-failed" ]; then
	say "ERROR: guest set-up failed: $(cat "$ctl/setup-failed") (see the log above; rerun with --verbose)"
else
	say "ERROR: the guest stopped without reporting a status (qemu exit $qrc, after $secs s); rerun with --verbose"
fi
exit 99
