// SPDX-License-Identifier: GPL-2.0
/*
 * Loopback transport: the peer QP is on an hmr device of this kernel whose port has the
 * destination GID; its responder runs directly in the requester's context.
 */
#include "hmr_dev.h"
#include "hmr_transport.h"

static int hmr_loopback_execute(struct hmr_request *req)
{
	struct hmr_qp *qp = req->src;
	struct hmr_qp *peer;
	int ret;

	if (req->ud && hmr_mcast_dest(req->ud)) {
		hmr_mcast_send_local(req);
		return IB_WC_SUCCESS;
	}
	if (req->ud)
		peer = hmr_qp_get_by_gid((const union ib_gid *)req->ud->dgid,
					 req->ud->dest_qpn & 0xffffff);
	else
		peer = hmr_qp_get_by_gid(&qp->attr.ah_attr.grh.dgid, qp->attr.dest_qp_num);
	if (!peer)
		return HMR_RESP_LOST;	/* nobody answers */
	ret = hmr_resp_execute(peer, req);
	hmr_qp_put(peer);
	return ret;
}

const struct hmr_transport_ops hmr_loopback_transport = {
	.execute = hmr_loopback_execute,
};
