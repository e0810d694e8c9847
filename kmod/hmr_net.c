// SPDX-License-Identifier: GPL-2.0
/*
 * The socket of the RoCEv2 wire transport: UDP tunnel sockets (IPv4 and IPv6) on port
 * `wire_port` (4791) of the initial network namespace, and the IP/UDP encapsulation of the
 * packets hmr sends.
 *
 * Receive runs in softirq (the socket's encap_rcv): it checks the UDP length, the BTH and the
 * ICRC, and queues the packet; nothing there looks up a QP or touches memory. A work item
 * (process context, where faults may sleep) hands each packet to hmr_wire_rx().
 *
 * The sockets exist while an hmr device sits on a netdev that can reach another host (not a
 * loopback device): hmr0 on lo never needs them, so rdma_rxe, which binds port 4791 as soon
 * as it loads, can load before or after hmr. A device on a real netdev whose port is already
 * taken (rdma_rxe loaded) is refused with EADDRINUSE and a line in the kernel log.
 */
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/module.h>
#include <linux/udp.h>
#include <net/addrconf.h>
#include <net/dst_cache.h>
#include <net/ip.h>
#include <net/ip6_route.h>
#include <net/route.h>
#include <net/udp_tunnel.h>

#include "hmr_dev.h"
#include "hmr_pkt.h"
#include "hmr_wire.h"

static ushort wire_port = HMR_ROCE_PORT;
module_param(wire_port, ushort, 0444);
MODULE_PARM_DESC(wire_port, "UDP port of the RoCEv2 wire transport (4791; peers must agree)");

/* Received packets waiting for the work item. */
#define HMR_RX_QUEUE_MAX	8192

static struct {
	/* Protects users, sk4 and sk6 (who opens and closes the sockets). */
	struct mutex lock;
	int users;
	struct socket *sk4;
	struct socket *sk6;
} hmr_net = { .lock = __MUTEX_INITIALIZER(hmr_net.lock) };

/* Packets from softirq to hmr_rx_work; the queue's own lock (softirq-safe). */
static struct sk_buff_head hmr_rxq;
static struct workqueue_struct *hmr_rx_wq;
static void hmr_rx_work_fn(struct work_struct *work);
static DECLARE_WORK(hmr_rx_work, hmr_rx_work_fn);

/* What softirq learned of a packet, kept in skb->cb for the work item. */
struct hmr_rx_cb {
	int ifindex;
	u32 bth_off;		/* from skb->data */
	u32 len;		/* BTH .. ICRC */
};

static struct hmr_rx_cb *hmr_rx_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct hmr_rx_cb) > sizeof(skb->cb));
	return (struct hmr_rx_cb *)skb->cb;
}

atomic64_t hmr_net_rx_dropped = ATOMIC64_INIT(0);
atomic64_t hmr_net_icrc_errors = ATOMIC64_INIT(0);

/* Check what can be checked without a QP: lengths, headers, ICRC. */
static bool hmr_rx_check(struct sk_buff *skb, struct hmr_rx_cb *cb)
{
	struct udphdr *udp = udp_hdr(skb);
	bool ipv6 = skb->protocol == htons(ETH_P_IPV6);
	u8 *l3 = skb_network_header(skb);
	u32 l3len = ipv6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	struct hmr_pkt pkt;
	u32 len;

	if (ipv6 ? ipv6_hdr(skb)->nexthdr != IPPROTO_UDP : ip_hdr(skb)->ihl != 5)
		return false;	/* options or extension headers: not from a RoCE device */
	if ((u8 *)udp != l3 + l3len || ntohs(udp->len) < sizeof(*udp))
		return false;
	len = ntohs(udp->len) - sizeof(*udp);
	if ((u8 *)(udp + 1) + len > skb_tail_pointer(skb))
		return false;
	if (hmr_pkt_parse(&pkt, (u8 *)(udp + 1), len))
		return false;
	if (get_unaligned_le32(pkt.bth + len - HMR_ICRC_LEN) !=
	    hmr_icrc(l3, ipv6, pkt.bth, len - HMR_ICRC_LEN, pkt.hdr_len)) {
		atomic64_inc(&hmr_net_icrc_errors);
		return false;
	}
	cb->bth_off = (u8 *)(udp + 1) - skb->data;
	cb->len = len;
	return true;
}

/* Softirq: the socket's encapsulation receive. Always consumes the packet. */
static int hmr_encap_rcv(struct sock *sk, struct sk_buff *skb)
{
	struct hmr_rx_cb *cb = hmr_rx_cb(skb);

	if (skb_linearize(skb) || !skb->dev || !hmr_rx_check(skb, cb) ||
	    skb_queue_len(&hmr_rxq) >= HMR_RX_QUEUE_MAX)
		goto drop;
	cb->ifindex = skb->dev->ifindex;
	skb_queue_tail(&hmr_rxq, skb);
	queue_work(hmr_rx_wq, &hmr_rx_work);
	return 0;
drop:
	atomic64_inc(&hmr_net_rx_dropped);
	kfree_skb(skb);
	return 0;
}

/* Parse a queued packet again (process context: after softirq checked it). */
int hmr_net_parse(struct sk_buff *skb, struct hmr_pkt *pkt)
{
	struct hmr_rx_cb *cb = hmr_rx_cb(skb);

	return hmr_pkt_parse(pkt, skb->data + cb->bth_off, cb->len);
}

/* Process context: hand each queued packet to its device's wire transport. */
static void hmr_rx_work_fn(struct work_struct *work)
{
	struct sk_buff *skb;

	while ((skb = skb_dequeue(&hmr_rxq))) {
		struct hmr_rx_cb *cb = hmr_rx_cb(skb);
		struct hmr_dev *hdev = hmr_dev_get_by_ifindex(cb->ifindex);
		struct hmr_pkt pkt;

		if (!hdev || hmr_net_parse(skb, &pkt)) {
			atomic64_inc(&hmr_net_rx_dropped);
			kfree_skb(skb);
		} else {
			hmr_wire_rx(hdev, skb, &pkt);	/* consumes skb */
		}
		if (hdev)
			ib_device_put(&hdev->ibdev);
		cond_resched();
	}
}

static struct socket *hmr_sock_open(bool ipv6)
{
	struct udp_tunnel_sock_cfg tcfg = { .encap_type = 1, .encap_rcv = hmr_encap_rcv };
	struct udp_port_cfg cfg = {
		.family = ipv6 ? AF_INET6 : AF_INET,
		.local_udp_port = htons(wire_port),
		.ipv6_v6only = ipv6,
	};
	struct socket *sock;
	int ret;

	ret = udp_sock_create(&init_net, &cfg, &sock);
	if (ret)
		return ERR_PTR(ret);
	setup_udp_tunnel_sock(&init_net, hmr_udp_tunnel_sock(sock), &tcfg);
	return sock;
}

/* A device on @ndev will use the wire: open the sockets with the first such device. */
int hmr_net_get(struct net_device *ndev)
{
	int ret = 0;

	if (ndev->flags & IFF_LOOPBACK)
		return 0;
	mutex_lock(&hmr_net.lock);
	if (hmr_net.users++)
		goto out_unlock;
	hmr_net.sk4 = hmr_sock_open(false);
	if (IS_ERR(hmr_net.sk4)) {
		ret = PTR_ERR(hmr_net.sk4);
		goto err;
	}
	hmr_net.sk6 = IS_ENABLED(CONFIG_IPV6) ? hmr_sock_open(true) : NULL;
	if (IS_ERR(hmr_net.sk6)) {
		ret = PTR_ERR(hmr_net.sk6);
		udp_tunnel_sock_release(hmr_udp_tunnel_sock(hmr_net.sk4));
		goto err;
	}
	goto out_unlock;
err:
	hmr_net.users--;
	hmr_net.sk4 = NULL;
	hmr_net.sk6 = NULL;
	pr_err("hmr: cannot bind UDP port %u for the RoCEv2 wire transport (%d)%s\n", wire_port,
	       ret, ret == -EADDRINUSE ?
	       ": another RoCE driver (rdma_rxe?) has it; unload it or load hmr with wire_port=N" :
	       "");
out_unlock:
	mutex_unlock(&hmr_net.lock);
	return ret;
}

void hmr_net_put(struct net_device *ndev)
{
	if (ndev->flags & IFF_LOOPBACK)
		return;
	mutex_lock(&hmr_net.lock);
	if (!--hmr_net.users) {
		if (hmr_net.sk6)
			udp_tunnel_sock_release(hmr_udp_tunnel_sock(hmr_net.sk6));
		udp_tunnel_sock_release(hmr_udp_tunnel_sock(hmr_net.sk4));
		hmr_net.sk4 = NULL;
		hmr_net.sk6 = NULL;
	}
	mutex_unlock(&hmr_net.lock);
}

/* A packet buffer for @len bytes from BTH to ICRC, with room for the headers before it. */
struct sk_buff *hmr_net_alloc(struct hmr_dev *hdev, u32 len)
{
	u32 room = LL_RESERVED_SPACE(hdev->ndev) + sizeof(struct ipv6hdr) + sizeof(struct udphdr);
	struct sk_buff *skb = alloc_skb(room + len, GFP_KERNEL);

	if (!skb)
		return NULL;
	skb_reserve(skb, room);
	skb_put(skb, len);
	return skb;
}

static struct dst_entry *hmr_route_lookup(struct hmr_dev *hdev, const struct hmr_path *path)
{
	if (!path->ipv6) {
		struct flowi4 fl = {
			.flowi4_oif = hdev->ndev->ifindex,
			.flowi4_proto = IPPROTO_UDP,
		};
		struct rtable *rt;

		memcpy(&fl.saddr, path->sgid + 12, 4);
		memcpy(&fl.daddr, path->dgid + 12, 4);
		rt = ip_route_output_key(&init_net, &fl);
		return IS_ERR(rt) ? NULL : &rt->dst;
	}
#if IS_ENABLED(CONFIG_IPV6)
	{
		struct flowi6 fl6 = {
			.flowi6_oif = hdev->ndev->ifindex,
			.flowi6_proto = IPPROTO_UDP,
		};
		struct dst_entry *dst;

		memcpy(&fl6.saddr, path->sgid, 16);
		memcpy(&fl6.daddr, path->dgid, 16);
		if (!hmr_net.sk6)
			return NULL;
		dst = ip6_dst_lookup_flow(&init_net, hmr_net.sk6->sk, &fl6, NULL);
		if (IS_ERR(dst))
			return NULL;
		if (dst->error) {
			dst_release(dst);
			return NULL;
		}
		return dst;
	}
#else
	return NULL;
#endif
}

/*
 * The route of @path (referenced), from @cache when it holds a valid one (an RC QP's path:
 * one lookup per path, not per packet), else looked up and kept there. dst_cache is per CPU
 * and wants bottom halves off.
 */
static struct dst_entry *hmr_route(struct hmr_dev *hdev, const struct hmr_path *path,
				   struct dst_cache *cache)
{
	struct dst_entry *dst = NULL;

	if (cache) {
		local_bh_disable();
		dst = dst_cache_get(cache);
		local_bh_enable();
		if (dst)
			return dst;
	}
	dst = hmr_route_lookup(hdev, path);
	if (!dst || !cache)
		return dst;
	local_bh_disable();
#if IS_ENABLED(CONFIG_IPV6)
	if (path->ipv6)
		dst_cache_set_ip6(cache, dst, (const struct in6_addr *)path->sgid);
	else
#endif
		dst_cache_set_ip4(cache, dst, get_unaligned((__be32 *)(path->sgid + 12)));
	local_bh_enable();
	return dst;
}

static void hmr_push_ip4(struct sk_buff *skb, const struct hmr_path *path)
{
	struct iphdr *ip;

	skb_push(skb, sizeof(*ip));
	skb_reset_network_header(skb);
	ip = ip_hdr(skb);
	memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = path->tclass;
	ip->tot_len = htons(skb->len);
	ip->frag_off = htons(IP_DF);	/* with DF, the identification may stay 0 (RFC 6864) */
	ip->ttl = path->hop_limit;
	ip->protocol = IPPROTO_UDP;
	memcpy(&ip->saddr, path->sgid + 12, 4);
	memcpy(&ip->daddr, path->dgid + 12, 4);
	ip->check = ip_fast_csum((u8 *)ip, ip->ihl);
	skb->protocol = htons(ETH_P_IP);
}

static void hmr_push_ip6(struct sk_buff *skb, const struct hmr_path *path)
{
	struct ipv6hdr *ip6;

	skb_push(skb, sizeof(*ip6));
	skb_reset_network_header(skb);
	ip6 = ipv6_hdr(skb);
	ip6_flow_hdr(ip6, path->tclass, htonl(path->flow_label));
	ip6->payload_len = htons(skb->len - sizeof(*ip6));
	ip6->nexthdr = IPPROTO_UDP;
	ip6->hop_limit = path->hop_limit;
	memcpy(&ip6->saddr, path->sgid, 16);
	memcpy(&ip6->daddr, path->dgid, 16);
	skb->protocol = htons(ETH_P_IPV6);
}

/*
 * Send @skb (BTH .. ICRC filled but for the ICRC; @hdr_len bytes of headers) along @path
 * (its route kept in @cache unless NULL): UDP and IP headers, ICRC, out. Consumes @skb.
 * Returns 0 or -errno (the packet is lost).
 */
int hmr_net_xmit(struct hmr_dev *hdev, const struct hmr_path *path, struct dst_cache *cache,
		 struct sk_buff *skb, u8 hdr_len)
{
	u32 len = skb->len;
	struct dst_entry *dst;
	struct udphdr *udp;
	int ret;

	dst = hmr_route(hdev, path, cache);
	if (!dst) {
		kfree_skb(skb);
		return -EHOSTUNREACH;
	}
	skb_push(skb, sizeof(*udp));
	skb_reset_transport_header(skb);
	udp = udp_hdr(skb);
	udp->source = htons(path->src_port);
	udp->dest = htons(wire_port);
	udp->len = htons(skb->len);
	udp->check = 0;		/* the ICRC covers the payload, as rxe does */
	if (path->ipv6)
		hmr_push_ip6(skb, path);
	else
		hmr_push_ip4(skb, path);
	put_unaligned_le32(hmr_icrc(skb_network_header(skb), path->ipv6, (u8 *)(udp + 1),
				    len - HMR_ICRC_LEN, hdr_len),
			   (u8 *)(udp + 1) + len - HMR_ICRC_LEN);
	memset(IPCB(skb), 0, sizeof(*IPCB(skb)));
	skb->dev = hdev->ndev;
	skb->ip_summed = CHECKSUM_NONE;
	skb_dst_set(skb, dst);
	if (path->ipv6)
		ret = ip6_local_out(&init_net, NULL, skb);
	else
		ret = ip_local_out(&init_net, NULL, skb);
	return net_xmit_eval(ret) ? -ENOBUFS : 0;
}

int hmr_net_init(void)
{
	skb_queue_head_init(&hmr_rxq);
	hmr_rx_wq = alloc_workqueue("hmr_rx", WQ_UNBOUND | WQ_MEM_RECLAIM, 1);
	if (!hmr_rx_wq)
		return -ENOMEM;
	hmr_crc32_init();
	return 0;
}

/* After every device is gone (no socket left): drain what softirq queued. */
void hmr_net_exit(void)
{
	flush_workqueue(hmr_rx_wq);
	destroy_workqueue(hmr_rx_wq);
	skb_queue_purge(&hmr_rxq);
	hmr_crc32_exit();
}
