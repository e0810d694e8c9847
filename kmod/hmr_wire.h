/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The RoCEv2 wire transport: hmr_net.c (sockets, encapsulation), hmr_pkt.c (formats),
 * hmr_wire.c (the requester), hmr_wire_resp.c (the responder).
 */
#ifndef HMR_WIRE_H
#define HMR_WIRE_H

#include "hmr_dev.h"
#include "hmr_pkt.h"

struct hmr_path;	/* hmr_dev.h */
struct hmr_request;

/* hmr_net.c */
int hmr_net_init(void);
void hmr_net_exit(void);
int hmr_net_get(struct net_device *ndev);
void hmr_net_put(struct net_device *ndev);
struct sk_buff *hmr_net_alloc(struct hmr_dev *hdev, u32 len);
int hmr_net_xmit(struct hmr_dev *hdev, const struct hmr_path *path, struct dst_cache *cache,
		 struct sk_buff *skb, u8 hdr_len);
int hmr_net_parse(struct sk_buff *skb, struct hmr_pkt *pkt);
extern atomic64_t hmr_net_rx_dropped;
extern atomic64_t hmr_net_icrc_errors;

/* hmr_wire.c */
extern const struct hmr_transport_ops hmr_wire_transport;
int hmr_wire_path(struct hmr_qp *qp, const union ib_gid *dgid, u8 sgid_index, u8 tclass,
		  u8 hop_limit, u32 flow_label, struct hmr_path *path);
u32 hmr_wire_mtu(struct hmr_qp *qp);
void hmr_wire_pkt_init(struct hmr_pkt *pkt, u8 opcode, u32 qpn, u32 psn, u32 paylen);
int hmr_wire_send(struct hmr_qp *qp, const struct hmr_path *path, struct hmr_pkt *pkt,
		  struct hmr_sgl *sgl, u64 off);
void hmr_wire_rx(struct hmr_dev *hdev, struct sk_buff *skb, struct hmr_pkt *pkt);
int hmr_wire_qp_init(struct hmr_qp *qp);
void hmr_wire_qp_reset(struct hmr_qp *qp);
void hmr_wire_qp_stop(struct hmr_qp *qp);
void hmr_wire_qp_destroy(struct hmr_qp *qp);

/* hmr_wire_resp.c */
void hmr_wire_resp_rx(struct hmr_qp *qp, struct sk_buff *skb, struct hmr_pkt *pkt);
void hmr_wire_resp_release(struct hmr_qp *qp);
u32 hmr_wire_resp_flush(struct hmr_qp *qp);

#endif /* HMR_WIRE_H */
