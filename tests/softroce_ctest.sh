#!/usr/bin/env bash
# tests/softroce_ctest.sh SRC_DIR BUILD_DIR - ctest entry of the softroce
# label: boots the guest and runs tests/softroce_tier.sh in it.  A skip (no
# qemu, no kernel) exits 77 with the reason, except when
# AUGUR_REQUIRE_SOFTROCE=1 (CI), where it is a failure: never silently
# skipped there.
set -u
S=$1 B=$2
R=$B/softroce-results
mkdir -p "$R"
cd "$B" || exit 1
"$S/tests/softroce/run-guest.sh" --results "$R" --timeout 1400 -- \
	"$S/tests/softroce_tier.sh" "$B" "$R"
rc=$?
if [ "$rc" -eq 77 ] && [ "${AUGUR_REQUIRE_SOFTROCE:-0}" = 1 ]; then
	echo "FAIL: the SoftRoCE tier was skipped but AUGUR_REQUIRE_SOFTROCE=1"
	exit 1
fi
exit "$rc"
