// SPDX-License-Identifier: MIT
/* verbs/ibv.c - placeholder until the ibv provider lands. */
#include <errno.h>
#include "provider.h"

static int ph_open(const struct auv_ctx_opts *o, struct auv_ctx **out)
{
	return auvp_fail(-EOPNOTSUPP, "ibv provider not implemented yet");
}

const struct auv_provider_ops auvp_ibv_ops = {
	.name = "ibv",
	.ctx_open = ph_open,
};
