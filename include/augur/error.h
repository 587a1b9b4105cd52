/* SPDX-License-Identifier: MIT */
/*
 * augur/error.h - error codes shared by every augur layer.
 *
 * Every augur function that can fail returns 0 (or a count) on success and a
 * negative code on failure.  A code is either a negated errno value
 * (-EINVAL, -ENOMEM, ...) or one of augur's own codes below, negated in the
 * same way (-AUGUR_EPEER_GONE, ...).  The own codes live outside the errno
 * range (errno values stay below 4096) so the two never collide.  Where
 * the documentation names a code without its sign, the negative value is
 * what is returned.  augur never reads or writes the global errno on behalf of its
 * caller.  augur_strerror() explains every code.
 */
#ifndef AUGUR_ERROR_H
#define AUGUR_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum augur_error {
	AUGUR_ERR_BASE = 4096,
	/* A remote region was addressed out of its bounds, with a wrong or
	 * revoked remote key, or without the access right the operation needs. */
	AUGUR_EREMOTE_ACCESS = 4097,
	/* The local buffer of an operation is not inside the local region it
	 * names, or that region lacks the right the operation needs. */
	AUGUR_ELOCAL_ACCESS = 4098,
	/* The peer is gone: it died, disconnected, or stopped answering. */
	AUGUR_EPEER_GONE = 4099,
	/* The operation was not carried out because an earlier one on the
	 * same endpoint failed and the endpoint is now in an error state. */
	AUGUR_EFLUSHED = 4100,
	/* The peer rejected a request it could not carry out (for example a
	 * SEND larger than the receive buffer posted for it). */
	AUGUR_EREMOTE_INVALID = 4101,
	/* The receiver had no receive buffer posted for a SEND or a WRITE
	 * with immediate, and did not post one in time. */
	AUGUR_ENO_RECV = 4102,
	/* RLIMIT_MEMLOCK is too small for the memory to be registered. */
	AUGUR_EMEMLOCK = 4103,
	/* The transport (provider or device) asked for does not exist here. */
	AUGUR_ENO_TRANSPORT = 4104,
	/* A message from the network was malformed. */
	AUGUR_EPROTO = 4105,
	/* A key passed to the parameter store is outside [0, num_keys). */
	AUGUR_EKEY_RANGE = 4106,
	/* A value length does not match the key's configured length. */
	AUGUR_EVALUE_LEN = 4107,
	/* The node has been shut down; no further calls are accepted. */
	AUGUR_ESHUTDOWN = 4108,
	AUGUR_ERR_MAX
};

/**
 * augur_strerror() - describe an augur return code.
 * @code: a value returned by any augur function (negative or positive sign
 *        is accepted; 0 means success).
 *
 * Return: a static, NUL-terminated, thread-safe description; never NULL.
 */
const char *augur_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* AUGUR_ERROR_H */
