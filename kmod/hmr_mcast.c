// SPDX-License-Identifier: GPL-2.0
/*
 * Multicast groups of UD QPs (ibv_attach_mcast; rdma_join_multicast attaches the QP of its ID).
 *
 * A UD send to a multicast GID and QP number 0xFFFFFF reaches every QP of the sender's device
 * attached to that group (the sender too, if attached), and on a device with the wire also
 * leaves as one packet to the group's IP address. A multicast packet from the network reaches
 * every QP of the receiving device attached to its group; our own packets, which IP loops back
 * to a member interface, are dropped there (their local copies went already). Joining the IP
 * group on the netdev (IGMP, MLD) is rdma_cm's part, as for every RoCE device.
 *
 * Attachments are a flat list per device: a group exists while a QP is attached to it. Senders
 * take references on the members (hmr_qp_get's) under the list's lock, and deliver after.
 */
#include <linux/in.h>
#include <linux/slab.h>
#include <net/ipv6.h>
#include <rdma/ib_cache.h>

#include "hmr_dev.h"
#include "hmr_transport.h"
#include "hmr_wire.h"

struct hmr_mca {
	struct list_head list;		/* in hdev->mcast */
	u8 mgid[16];
	struct hmr_qp *qp;
};

/* An IPv6 multicast GID, or an IPv4-mapped one of a class D address. */
static bool hmr_gid_is_mcast(const u8 *gid)
{
	if (ipv6_addr_v4mapped((const struct in6_addr *)gid))
		return ipv4_is_multicast(*(const __be32 *)(gid + 12));
	return gid[0] == 0xff;
}

/* Is this UD send for a group: QP number 0xFFFFFF and a multicast GID? */
bool hmr_mcast_dest(const struct hmr_ud_av *av)
{
	return (av->dest_qpn & HMR_MCAST_QPN) == HMR_MCAST_QPN && hmr_gid_is_mcast(av->dgid);
}

/* Attachments to @mgid; *@attached: is @qp's among them. Caller holds mcast_lock. */
static u32 hmr_mcast_count(struct hmr_dev *hdev, const u8 *mgid, struct hmr_qp *qp,
			   bool *attached)
{
	struct hmr_mca *a;
	u32 n = 0;

	*attached = false;
	list_for_each_entry(a, &hdev->mcast, list) {
		if (!memcmp(a->mgid, mgid, 16)) {
			n++;
			*attached |= a->qp == qp;
		}
	}
	return n;
}

int hmr_attach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid)
{
	struct hmr_dev *hdev = to_hdev(ibqp->device);
	struct hmr_qp *qp = to_hqp(ibqp);
	struct hmr_mca *mca;
	bool attached;
	u32 members;
	int ret = 0;

	if (ibqp->qp_type != IB_QPT_UD || !hmr_gid_is_mcast(gid->raw))
		return -EINVAL;
	mca = kzalloc(sizeof(*mca), GFP_KERNEL);
	if (!mca)
		return -ENOMEM;
	memcpy(mca->mgid, gid->raw, 16);
	mca->qp = qp;
	mutex_lock(&hdev->mcast_lock);
	members = hmr_mcast_count(hdev, gid->raw, qp, &attached);
	if (attached)
		goto out_free;	/* attached already: nothing to do */
	if (members >= HMR_MAX_MCAST_QP_ATTACH ||
	    (!members && hdev->mcast_groups >= HMR_MAX_MCAST_GRP) ||
	    hdev->mcast_total >= HMR_MAX_TOTAL_MCAST_QP_ATTACH) {
		ret = -ENOMEM;
		goto out_free;
	}
	list_add_tail(&mca->list, &hdev->mcast);
	hdev->mcast_total++;
	hdev->mcast_groups += !members;
	mutex_unlock(&hdev->mcast_lock);
	return 0;

out_free:
	mutex_unlock(&hdev->mcast_lock);
	kfree(mca);
	return ret;
}

/* Detach @qp from @mgid, or from every group when @mgid is NULL; -EINVAL if it was not. */
static int hmr_mcast_detach(struct hmr_qp *qp, const u8 *mgid)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	struct hmr_mca *a, *tmp;
	int ret = -EINVAL;
	bool attached;

	mutex_lock(&hdev->mcast_lock);
	list_for_each_entry_safe(a, tmp, &hdev->mcast, list) {
		if (a->qp != qp || (mgid && memcmp(a->mgid, mgid, 16)))
			continue;
		list_del(&a->list);
		hdev->mcast_total--;
		if (!hmr_mcast_count(hdev, a->mgid, qp, &attached))
			hdev->mcast_groups--;	/* its last member left */
		kfree(a);
		ret = 0;
	}
	mutex_unlock(&hdev->mcast_lock);
	return ret;
}

int hmr_detach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid)
{
	return hmr_mcast_detach(to_hqp(ibqp), gid->raw);
}

/* A QP being destroyed leaves every group it is still in. */
void hmr_mcast_qp_destroy(struct hmr_qp *qp)
{
	hmr_mcast_detach(qp, NULL);
}

/* The members of @mgid on @hdev, referenced (hmr_qp_put); returns how many. */
static u32 hmr_mcast_members(struct hmr_dev *hdev, const u8 *mgid, struct hmr_qp **qps)
{
	struct hmr_mca *a;
	u32 n = 0;

	mutex_lock(&hdev->mcast_lock);
	list_for_each_entry(a, &hdev->mcast, list)
		if (n < HMR_MAX_MCAST_QP_ATTACH && !memcmp(a->mgid, mgid, 16) &&
		    refcount_inc_not_zero(&a->qp->ref))
			qps[n++] = a->qp;
	mutex_unlock(&hdev->mcast_lock);
	return n;
}

/* A UD send to a group: each member on the sender's device gets its copy (best effort). */
void hmr_mcast_send_local(struct hmr_request *req)
{
	struct hmr_dev *hdev = to_hdev(req->src->ibqp.device);
	struct hmr_qp *qps[HMR_MAX_MCAST_QP_ATTACH];
	u32 i, n = hmr_mcast_members(hdev, req->ud->dgid, qps);

	for (i = 0; i < n; i++) {
		req->srq = NULL;
		hmr_resp_execute(qps[i], req);
		hmr_qp_put(qps[i]);
	}
}

/* The IP destination and source of a received packet, as GIDs. */
static void hmr_mcast_addrs(struct sk_buff *skb, union ib_gid *dgid, union ib_gid *sgid)
{
	if (skb->protocol == htons(ETH_P_IP)) {
		ipv6_addr_set_v4mapped(ip_hdr(skb)->daddr, (struct in6_addr *)dgid->raw);
		ipv6_addr_set_v4mapped(ip_hdr(skb)->saddr, (struct in6_addr *)sgid->raw);
	} else {
		memcpy(dgid->raw, &ipv6_hdr(skb)->daddr, 16);
		memcpy(sgid->raw, &ipv6_hdr(skb)->saddr, 16);
	}
}

/* Did @hdev send it (a source GID of its own port)? */
static bool hmr_mcast_own(struct hmr_dev *hdev, const union ib_gid *sgid)
{
	const struct ib_gid_attr *attr;

	attr = rdma_find_gid_by_port(&hdev->ibdev, sgid, IB_GID_TYPE_ROCE_UDP_ENCAP, HMR_PORT,
				     NULL);
	if (IS_ERR(attr))
		return false;
	rdma_put_gid_attr(attr);
	return true;
}

/*
 * A packet for QP 0xFFFFFF arrived at @hdev: a copy to each member of the group it was sent
 * to. Returns the number of members reached, or -EALREADY for the device's own packet (looped
 * back by IP: not a packet received); consumes @skb.
 */
int hmr_mcast_rx(struct hmr_dev *hdev, struct sk_buff *skb, struct hmr_pkt *pkt)
{
	struct hmr_qp *qps[HMR_MAX_MCAST_QP_ATTACH];
	union ib_gid dgid, sgid;
	u32 i, n = 0;

	hmr_mcast_addrs(skb, &dgid, &sgid);
	if (hmr_mcast_own(hdev, &sgid)) {
		kfree_skb(skb);
		return -EALREADY;
	}
	if (hmr_gid_is_mcast(dgid.raw))
		n = hmr_mcast_members(hdev, dgid.raw, qps);
	for (i = 0; i < n; i++) {
		hmr_wire_resp_rx(qps[i], skb_get(skb), pkt);	/* consumes its reference */
		hmr_qp_put(qps[i]);
	}
	kfree_skb(skb);
	return n;
}
