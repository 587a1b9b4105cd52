// SPDX-License-Identifier: MIT
/*
 * verbs/error.c - augur_strerror(): one place that explains every code any
 * augur layer returns.
 */
#include <limits.h>
#include <string.h>

#include <augur/error.h>

static const char *const own[] = {
	[AUGUR_EREMOTE_ACCESS - AUGUR_ERR_BASE] =
		"remote access error: bad remote key, out of the region's "
		"bounds, or access right missing",
	[AUGUR_ELOCAL_ACCESS - AUGUR_ERR_BASE] =
		"local access error: buffer not inside its registered region, "
		"or right missing",
	[AUGUR_EPEER_GONE - AUGUR_ERR_BASE] =
		"peer gone: it died, disconnected or stopped answering",
	[AUGUR_EFLUSHED - AUGUR_ERR_BASE] =
		"flushed: not carried out because the endpoint failed earlier",
	[AUGUR_EREMOTE_INVALID - AUGUR_ERR_BASE] =
		"remote invalid request: the peer could not carry it out",
	[AUGUR_ENO_RECV - AUGUR_ERR_BASE] =
		"no receive buffer posted at the peer",
	[AUGUR_EMEMLOCK - AUGUR_ERR_BASE] =
		"RLIMIT_MEMLOCK too small for the memory to register "
		"(raise ulimit -l)",
	[AUGUR_ENO_TRANSPORT - AUGUR_ERR_BASE] =
		"no such transport provider or device",
	[AUGUR_EPROTO - AUGUR_ERR_BASE] = "malformed message from the network",
	[AUGUR_EKEY_RANGE - AUGUR_ERR_BASE] = "key out of range",
	[AUGUR_EVALUE_LEN - AUGUR_ERR_BASE] = "wrong value length for key",
	[AUGUR_ESHUTDOWN - AUGUR_ERR_BASE] = "node already shut down",
};

const char *augur_strerror(int code)
{
	if (code == INT_MIN)
		return "unknown augur error";
	if (code < 0)
		code = -code;
	if (code == 0)
		return "success";
	if (code > AUGUR_ERR_BASE && code < AUGUR_ERR_MAX &&
	    own[code - AUGUR_ERR_BASE])
		return own[code - AUGUR_ERR_BASE];
	if (code < AUGUR_ERR_BASE)
		return strerror(code); /* glibc: thread-safe for known codes */
	return "unknown augur error";
}
