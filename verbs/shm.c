// SPDX-License-Identifier: MIT
/* verbs/shm.c - placeholder until the shm provider lands. */
#include <errno.h>
#include "provider.h"

static int ph_open(const struct auv_ctx_opts *o, struct auv_ctx **out)
{
	return auvp_fail(-EOPNOTSUPP, "shm provider not implemented yet");
}

const struct auv_provider_ops auvp_shm_ops = {
	.name = "shm",
	.ctx_open = ph_open,
};
