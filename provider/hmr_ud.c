// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hmr provider: address handles and UD sends. The kernel validates an AH when it is created;
 * the provider keeps the address (struct hmr_ud_av) and copies it into every UD WQE, so a
 * send needs no lookup in the kernel (which still checks the source GID index). Multicast
 * attachments are the kernel's (a send to a group fans out there).
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmr.h"

struct ibv_ah *hmr_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr)
{
	struct ib_uverbs_create_ah_resp resp = {};
	struct hmr_ah *ah;

	if (!attr->is_global) {
		errno = EINVAL;	/* RoCE: every address is a GID */
		return NULL;
	}
	ah = calloc(1, sizeof(*ah));
	if (!ah)
		return NULL;
	if (ibv_cmd_create_ah(pd, &ah->ibah, attr, &resp, sizeof(resp))) {
		free(ah);
		return NULL;
	}
	memcpy(ah->av.dgid, attr->grh.dgid.raw, sizeof(ah->av.dgid));
	ah->av.sgid_index = attr->grh.sgid_index;
	return &ah->ibah;
}

int hmr_destroy_ah(struct ibv_ah *ibah)
{
	int ret;

	ret = ibv_cmd_destroy_ah(ibah);
	if (ret)
		return ret;
	free(to_hah(ibah));
	return 0;
}

void hmr_wqe_set_ud(struct hmr_send_wqe *wqe, struct ibv_ah *ibah, uint32_t remote_qpn,
		    uint32_t remote_qkey)
{
	wqe->ud = to_hah(ibah)->av;
	wqe->ud.dest_qpn = remote_qpn;
	wqe->ud.qkey = remote_qkey;
}

int hmr_attach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid)
{
	return ibv_cmd_attach_mcast(qp, gid, lid);
}

int hmr_detach_mcast(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid)
{
	return ibv_cmd_detach_mcast(qp, gid, lid);
}
