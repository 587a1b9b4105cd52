#!/bin/busybox sh
# /init (PID 1) of the SoftRoCE test guest; run-guest.sh packs it into the
# initramfs with a static busybox and the kernel modules listed in
# /modules.list. It loads the modules, mounts the host's root (read-only 9p)
# and the control/results shares (writable 9p), chroots into the host root to
# run guest-setup.sh (network, rxe, then the caller's command), writes that
# command's exit status to the control share, and powers off.

/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp /ctl /host /hosttmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# No CR before each LF on the serial console: keeps the host's logs clean.
stty -F /dev/console -onlcr 2>/dev/null

verbose=0
case " $(cat /proc/cmdline) " in *" augur.verbose=1 "*) verbose=1 ;; esac
log() { [ "$verbose" = 1 ] && echo "augur-softroce(guest): $*"; }

ctl_ok=0
fail() {
	echo "augur-softroce(guest): set-up failed: $*"
	echo "augur-softroce(guest): ---- guest kernel log (last 40 lines) ----"
	dmesg | tail -n 40
	echo "augur-softroce(guest): ---- end of guest kernel log ----"
	if [ "$ctl_ok" = 1 ]; then
		echo "$*" >/ctl/setup-failed
		dmesg >/ctl/dmesg.txt
	fi
	sync
	poweroff -f
	sleep 60
}

while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/$m" || fail "insmod $m"
done </modules.list
log "modules loaded at $(cut -d' ' -f1 /proc/uptime) s"

o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o" augurctl /ctl || fail "cannot mount the control share"
ctl_ok=1
[ -f /ctl/env.sh ] || fail "no env.sh in the control share"
# Defines AUGUR_CWD (absolute) and AUGUR_RESULTS (absolute or empty).
. /ctl/env.sh
mount -t 9p -o "$o,ro,cache=loose" hostroot /host || fail "cannot mount the host root share"

# /tmp becomes a fresh tmpfs; if the caller's working folder is below the
# host's /tmp, bind its top folder under /tmp back in (read-only, like the
# rest of the host), so a clone under /tmp (sources and build) is visible.
mount --bind /host/tmp /hosttmp || fail "cannot bind the host's /tmp"
mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fail "cannot mount tmpfs on /tmp"
case $AUGUR_CWD in
/tmp/?*)
	top=${AUGUR_CWD#/tmp/}
	top=/tmp/${top%%/*}
	mkdir -p "/host$top"
	mount --bind "/hosttmp${top#/tmp}" "/host$top" ||
		fail "cannot bind the host's $top"
	;;
esac
mount -t proc proc /host/proc || fail "cannot mount /proc"
mount -t sysfs sysfs /host/sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /host/dev || fail "cannot mount /dev"
mkdir -p /host/dev/shm /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts 2>/dev/null
if [ -n "$AUGUR_RESULTS" ]; then
	mkdir -p "/host$AUGUR_RESULTS" 2>/dev/null
	mount -t 9p -o "$o" augurresults "/host$AUGUR_RESULTS" ||
		fail "cannot mount the results share at $AUGUR_RESULTS"
fi
mkdir -p /host/tmp/.augur-softroce
mount --bind /ctl /host/tmp/.augur-softroce || fail "cannot bind the control share"
hostname augur-softroce

log "mounts done at $(cut -d' ' -f1 /proc/uptime) s"
chroot /host /bin/sh /tmp/.augur-softroce/guest-setup.sh
st=$?
[ -e /ctl/started ] || fail "network/rxe set-up inside the chroot failed (status $st)"
log "command exited with status $st at $(cut -d' ' -f1 /proc/uptime) s"
dmesg >/ctl/dmesg.txt
echo "$st" >/ctl/status
sync
# Quiet "reboot: Power down" (printed at KERN_EMERG) unless verbose.
[ "$verbose" = 1 ] || echo 0 >/proc/sys/kernel/printk
poweroff -f
sleep 60
