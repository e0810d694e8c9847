/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hmr: a software RDMA device whose memory regions are mirrored, never pinned.
 *
 * Object model: one struct hmr_dev per `rdma link add NAME type hmr netdev IF`, with one
 * RoCE-style port bound to IF. Every verbs object embeds the ib_* object as its first member
 * (INIT_RDMA_OBJ_SIZE): the RDMA core allocates and frees the memory, hmr only fills it in.
 */
#ifndef HMR_DEV_H
#define HMR_DEV_H

#include <linux/completion.h>
#include <linux/list.h>
#include <linux/math64.h>
#include <linux/refcount.h>
#include <linux/ktime.h>
#include <linux/timex.h>		/* x86: rdtsc(), tsc_khz */
#include <linux/skbuff.h>
#include <linux/wait.h>
#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <net/dst_cache.h>
#include <rdma/ib_verbs.h>

#include "hmr.h"		/* libhmr: the mirrored device page table */
#include "hmr_compat.h"
#include "hmr_ring.h"

#define HMR_PORT		1
#define HMR_VENDOR_ID		0xffffff	/* no IEEE OUI: a software device */
#define HMR_GID_TABLE_LEN	64
#define HMR_MAX_MSG_SIZE	(1u << 31)

/* Device limits (query_device). Rings are physically contiguous: keep them modest. */
#define HMR_MAX_QP		(1 << 14)
#define HMR_MAX_QP_WR		(1 << 12)
#define HMR_MAX_SGE		16
#define HMR_MAX_CQ		(1 << 14)
#define HMR_MAX_CQE		((1 << 15) - 1)	/* rxe's; a ring of 32768 entries, 1.5 MiB */
#define HMR_MAX_MR		(1 << 16)
#define HMR_MAX_PD		(1 << 16)
#define HMR_MAX_RD_ATOM		128	/* as rxe: perftest asks its peer's value */
#define HMR_MAX_INLINE		256
#define HMR_MAX_SRQ		(1 << 14)
#define HMR_MAX_SRQ_WR		HMR_MAX_QP_WR
#define HMR_MAX_MCAST_GRP	256
#define HMR_MAX_MCAST_QP_ATTACH	16	/* per group */
#define HMR_MAX_TOTAL_MCAST_QP_ATTACH	1024
#define HMR_MCAST_QPN		0xffffff	/* a UD send's destination QP for a group */

/* Transport counters of a device (hmr_stats.c names them, the wire's as rxe's). */
enum {
	HMR_WIRE_SENT,			/* packets sent */
	HMR_WIRE_RCVD,			/* packets received for a QP of the device */
	HMR_WIRE_RETRANSMITS,		/* request packets sent again (timeout, NAK) */
	HMR_WIRE_TIMEOUTS,		/* local ACK timeouts */
	HMR_WIRE_SEQ_ERR,		/* PSN sequence-error NAKs sent */
	HMR_WIRE_RNR_SENT,		/* RNR NAKs sent */
	HMR_WIRE_RNR_RCVD,		/* RNR NAKs received */
	HMR_WIRE_DUP,			/* duplicate requests answered */
	HMR_WIRE_NAK_SENT,		/* NAKs sent: invalid request, remote access or operation */
	HMR_WIRE_DROPPED,		/* received packets dropped: no QP, wrong state or address */
	HMR_MAD_SENT,			/* QP1: MADs sent (any transport) */
	HMR_MAD_RCVD,			/* QP1: MADs received into a posted buffer */
	HMR_MAD_DROPPED,		/* QP1: MADs dropped: wrong Q_Key, no receive posted */
	HMR_WIRE_NUM
};

struct hmr_dev {
	struct ib_device ibdev;
	/*
	 * The netdev the port is bound to. Set once before registration; the core holds the
	 * reference (ib_device_set_netdev) until the device is deallocated.
	 */
	struct net_device *ndev;
	/* Entry in hmr_devices, protected by hmr_devices_lock (hmr_main.c). */
	struct list_head list;
	/* Registration finished: the netdev notifier may queue unregistration. hmr_devices_lock. */
	bool registered;
	/* QP number -> struct hmr_qp; the xarray's own lock. */
	struct xarray qps;
	u32 next_qpn;			/* cyclic QPN allocation, under the xarray's lock */
	/* XRC SRQ number -> struct hmr_srq; the xarray's own lock. */
	struct xarray srqs;
	u32 next_srqn;			/* cyclic SRQ number allocation, under the xarray's lock */
	/*
	 * Key index (key >> 8) -> struct hmr_mr, or a struct hmr_mw tagged HMR_KEY_MW: MRs and
	 * memory windows share one key space. The xarray's own lock, which also guards every
	 * look at an MW's binding (hmr_mw.c).
	 */
	struct xarray mrs;
	u32 next_mr;			/* cyclic key index allocation, under the xarray's lock */
	atomic64_t mr_gen;		/* numbers every MR: an MW names its MR by key and number */
	/* Protects mms, each hmr_mm's users and dead flag, and retired (hmr_mm.c). */
	spinlock_t mms_lock;
	struct list_head mms;		/* struct hmr_mm: one mirror per process using the device */
	struct hmr_stats retired;	/* mirror statistics of mirrors gone */
	/* Totals over every mirror (and MR), live or not. */
	atomic64_t prefetched_pages;	/* pages made present by advise_mr */
	atomic64_t fence_wait_ns;	/* time invalidations spent waiting for chunks */
	atomic64_t fault_clock;		/* hmr_fault_clock() time the DMA engine spent in faults */
	atomic64_t lookup_clock;	/* the same, in HMM look-ups of present pages (no fault) */
	atomic64_t nonblock_invalidations;	/* non-blockable invalidations of a mirror */
	/* Multicast attachments (struct hmr_mca, hmr_mcast.c); protects mcast and the counts. */
	struct mutex mcast_lock;
	struct list_head mcast;
	u32 mcast_total;		/* attachments */
	u32 mcast_groups;		/* distinct groups among them */
	bool wire;			/* the netdev reaches other hosts: the sockets are held */
	atomic64_t wire_cnt[HMR_WIRE_NUM];
};

struct hmr_ucontext {
	struct ib_ucontext ibuc;
	/*
	 * The mirror of the first process that registered memory through this context, held
	 * until the context closes: memory registered again after its MRs went finds its pages
	 * still mirrored (hmr_mm.c). Set once under keep_lock.
	 */
	struct mutex keep_lock;
	struct hmr_mm *keep;
};

struct hmr_pd {
	struct ib_pd ibpd;
};

/*
 * User UD sends carry their address in the WQE (hmr_ud.c); a kernel consumer's post_send
 * copies it from the AH (hmr_kverbs.c): destination GID and source GID index.
 */
struct hmr_ah {
	struct ib_ah ibah;
	struct hmr_ud_av av;
};

struct hmr_xrcd {
	struct ib_xrcd ibxrcd;
};

/*
 * A shared receive queue: its ring is read by the responders of every QP attached to it (an
 * XRC SRQ: of every XRC receive QP of its XRC domain whose requests name it).
 */
struct hmr_srq {
	struct ib_srq ibsrq;
	struct hmr_ring rq;		/* receive WQEs; the provider produces, the kernel consumes */
	/*
	 * Held by a responder from taking a receive WQE off the ring until it is consumed or
	 * given back; protects rq (resize swaps it), cons, limit and error. Nests inside the
	 * QP's resp_lock.
	 */
	struct mutex lock;
	u32 cons;			/* consumer index: the kernel's own copy */
	u32 limit;			/* armed when non-zero: an event once fewer WQEs remain */
	u32 max_sge;
	bool error;			/* userspace corrupted the ring's index: nothing is taken */
	refcount_t ref;			/* lookups by SRQ number (hmr_srq_get) and the SRQ's own */
	struct completion done;		/* ref reached zero: destroy may proceed */
};

struct hmr_cq {
	struct ib_cq ibcq;
	struct hmr_ring ring;		/* CQEs; the kernel produces; replaced by resize */
	/* Serialises producers; protects ring (which resize replaces), prod, notify and error. */
	spinlock_t lock;
	u32 prod;			/* producer index: the kernel's own copy */
	u8 notify;			/* armed: 0, IB_CQ_SOLICITED or IB_CQ_NEXT_COMP */
	bool error;			/* overflowed: no more completions */
};

/*
 * One process's address space as a device mirrors it (hmr_mm.c): every MR the process
 * registers on the device is a window over this one mirror.
 */
struct hmr_mm {
	struct hmr_dev *hdev;
	/* Subscription to the whole of the process's mm: one per mirror, whatever its MRs. */
	struct mmu_interval_notifier notifier;
	/*
	 * The device's view of the mm (libhmr): filled by faults (hmm_range_fault), emptied
	 * and fenced by the notifier, read by the DMA engine a chunk at a time.
	 */
	struct hmr_mirror mirror;
	struct list_head list;		/* in hdev->mms; hdev->mms_lock */
	unsigned int users;		/* MRs over it; hdev->mms_lock */
	bool dead;			/* its last MR went: no MR joins it again; hdev->mms_lock */
};

struct hmr_mr {
	struct ib_mr ibmr;
	struct hmr_dev *hdev;
	struct hmr_mm *pmirror;	/* the registering process's mirror (hmr_mm.c); NULL if kernel */
	/* Its window over that mirror: the MR's pages and whether it may write (rereg). */
	struct hmr_window win;
	refcount_t ref;			/* lookups by key (hmr_mr_get) and the registration */
	struct completion done;		/* ref reached zero: dereg may free */
	bool dying;			/* dereg started: a prefetch stops early (READ_ONCE) */
	bool kernel;			/* a kernel PD's DMA MR: kernel addresses, no mirror */
	u64 gen;			/* this MR's number on the device (hdev->mr_gen) */
	u64 start;			/* user virtual address */
	u64 length;
	u64 iova;			/* address the MR is accessed by: iova maps to start */
	int access;			/* IB_ACCESS_*: rereg changes it (READ_ONCE) */
	/* What was done through this MR (`rdma statistic show mr`); the mirror counts for all. */
	atomic64_t faults;		/* faults that installed pages */
	atomic64_t faulted_pages;	/* pages they installed */
	atomic64_t access_faults;	/* accesses that found a page missing */
	atomic64_t prefetched_pages;	/* this MR's share of hdev->prefetched_pages */
};

/* The tag of a memory window's entry in hdev->mrs (xa_tag_pointer); MRs are untagged. */
#define HMR_KEY_MW	1
/* Key indices: the upper 24 bits of a key; the low 8 bits make reused keys differ. */
#define HMR_KEY_INDEX_LIMIT	XA_LIMIT(1, (1 << 24) - 1)

/*
 * A memory window (hmr_mw.c): a remote key to part of an MR, with rights of its own. It holds
 * no reference: its MR is named by key and number and looked up at each access, so an MR goes
 * away with windows bound (their accesses then fail), and a type 2 window names the QP that
 * bound it, which unbinds it when destroyed.
 */
struct hmr_mw {
	struct ib_mw ibmw;
	/* The binding, written and read under hdev->mrs' xarray lock. */
	u32 key;			/* the current R_Key; its index (key >> 8) never changes */
	bool bound;			/* type 2: bound, else free; type 1: bound to a range */
	struct hmr_qp *qp;		/* type 2: the QP that bound it */
	u32 mr_key;			/* the MR the window lies in, by L_Key... */
	u64 mr_gen;			/* ...and number */
	u64 addr;			/* the window, in the MR's iova space */
	u64 length;
	int access;			/* IB_ACCESS_REMOTE_*: what the key allows */
};

struct hmr_transport_ops;
struct hmr_sgl;

/* Where a QP's packets go: IP addresses (GIDs) and the IP/UDP fields from its AV. */
struct hmr_path {
	u8 sgid[16];
	u8 dgid[16];
	bool ipv6;			/* else both GIDs are IPv4-mapped */
	u8 tclass;
	u8 hop_limit;
	u32 flow_label;
	u16 src_port;
};

/* A READ or atomic executed by the responder, kept to answer its duplicate. */
struct hmr_wire_res {
	bool valid;
	bool atomic;			/* an atomic, ATOMIC WRITE or FLUSH: one packet, answered */
	u8 answer;			/* ...with this opcode (the ATOMIC ACK, or a READ response) */
	u32 psn;			/* of the request; a READ's responses use psn .. psn + n - 1 */
	u32 npkts;
	u64 va;
	u32 rkey;
	u32 len;
	u64 orig;			/* an atomic's original value */
};

/* The wire transport's state of a QP (hmr_wire.c, hmr_wire_resp.c). */
struct hmr_wire_qp {
	/* Requester: under qp->lock. */
	struct hmr_path path;		/* RC: from the AV, set by modify_qp */
	/* The path's route, per CPU; reset under both locks when the path changes. */
	struct dst_cache dst_cache;
	u32 sq_psn;			/* PSN of the next request packet */
	bool local;			/* RC: the peer is on this kernel (direct path) */
	unsigned long *read_got;	/* READ: the responses placed, of the window asked for */
	/* Responses for the requester: queued by the receive work, the queue's own lock. */
	struct sk_buff_head rx;
	wait_queue_head_t wait;		/* the requester waits here for rx */
	bool stop;			/* the QP is being destroyed: stop waiting (READ_ONCE) */
	/* Responder: under qp->resp_lock. */
	u32 epsn;			/* expected PSN */
	u32 msn;			/* messages completed */
	u32 cur;			/* HMR_PF_SEND or HMR_PF_WRITE in progress, or 0 */
	bool nak_sent;			/* a sequence-error NAK is out: no more until epsn comes */
	u32 off;			/* bytes of the message in progress placed */
	/*
	 * The message in progress keeps keys, never MR references: each packet resolves its
	 * buffers again, so a requester that gives up mid-message holds up no deregistration.
	 */
	struct hmr_recv_wqe *rwqe;	/* SEND: the receive WQE taken at the first packet */
	bool rwqe_held;			/* UC: rwqe's message was dropped: the next SEND's */
	struct hmr_sgl *sgl;		/* scratch: one packet's resolved buffers */
	u64 va;				/* WRITE: where the next packet goes, under rkey */
	u32 resid;			/* WRITE: bytes still to come */
	u32 rkey;
	struct hmr_wire_res res[HMR_MAX_RD_ATOM];
	u32 res_next;
};

/*
 * Locking: qp->lock (the requester: modify/query, the SQ) may be held
 * while taking any QP's resp_lock (the responder: the RQ); never the other way round.
 * What the responder reads of the QP (state, attr) is written under both locks, so either
 * lock gives a consistent view; hmr_qp_error_async() alone sets state under resp_lock only.
 */
struct hmr_qp {
	struct ib_qp ibqp;
	struct hmr_ring sq;		/* send WQEs; the provider produces, the kernel consumes */
	struct hmr_ring rq;		/* receive WQEs; likewise */
	/* The requester's lock; protects everything below up to resp_lock. */
	struct mutex lock;
	enum ib_qp_state state;		/* written under lock and resp_lock; read with either */
	/* As set by modify_qp (ah_attr.grh.sgid_attr is NULL); written under both locks. */
	struct ib_qp_attr attr;
	struct ib_qp_cap cap;		/* what the QP really has */
	/* A kernel QP's (hmr_kverbs.c): serialises its posters, the SQ's and RQ's producer. */
	spinlock_t kpost_lock;
	u32 sq_cons;			/* SQ consumer index: the kernel's own copy */
	bool sq_sig_all;		/* IB_SIGNAL_ALL_WR */
	bool destroying;		/* no more RNR retries are scheduled */
	u8 rnr_left;			/* RNR retries left for the WQE at the head of the SQ */
	u8 retry_left;			/* transport retries left for it */
	const struct hmr_transport_ops *transport;
	struct delayed_work retry_work;	/* runs the SQ: after an RNR NAK, a timeout, or a doorbell */
	struct work_struct err_work;	/* moves the QP to ERROR for its responder */
	/* In ERROR: flushes WRs posted since (post_recv makes no system call). */
	struct delayed_work flush_work;
	unsigned long flush_delay;	/* flush_work's next period, in jiffies; lock */
	/* The responder's lock; protects rq_cons and err_fatal. */
	struct mutex resp_lock;
	u32 rq_cons;			/* RQ consumer index: the kernel's own copy */
	bool err_fatal;			/* err_work also raises IB_EVENT_QP_FATAL */
	bool last_wqe;			/* IB_EVENT_QP_LAST_WQE_REACHED raised (on an SRQ); lock */
	refcount_t ref;			/* lookups by QPN (hmr_qp_get) and the QP's own */
	struct completion done;		/* ref reached zero: destroy may proceed */
	struct hmr_wire_qp wire;
};

static inline struct hmr_dev *to_hdev(struct ib_device *ibdev)
{
	return container_of(ibdev, struct hmr_dev, ibdev);
}

static inline struct hmr_qp *to_hqp(struct ib_qp *ibqp)
{
	return container_of(ibqp, struct hmr_qp, ibqp);
}

static inline struct hmr_ah *to_hah(struct ib_ah *ibah)
{
	return container_of(ibah, struct hmr_ah, ibah);
}

/* A datagram QP: UD, or the GSI QP (QP1), which is UD with fixed rules. */
static inline bool hmr_qp_is_ud(const struct hmr_qp *qp)
{
	return qp->ibqp.qp_type == IB_QPT_UD || qp->ibqp.qp_type == IB_QPT_GSI;
}

static inline struct hmr_mr *to_hmr(struct ib_mr *ibmr)
{
	return container_of(ibmr, struct hmr_mr, ibmr);
}

static inline struct hmr_mw *to_hmw(struct ib_mw *ibmw)
{
	return container_of(ibmw, struct hmr_mw, ibmw);
}

static inline struct hmr_cq *to_hcq(struct ib_cq *ibcq)
{
	return container_of(ibcq, struct hmr_cq, ibcq);
}

static inline struct hmr_srq *to_hsrq(struct ib_srq *ibsrq)
{
	return container_of(ibsrq, struct hmr_srq, ibsrq);
}

/* hmr_verbs.c */
extern const struct ib_device_ops hmr_dev_ops;
enum ib_port_state hmr_port_state(struct hmr_dev *hdev);

/* hmr_cq.c */
int hmr_create_cq(struct ib_cq *ibcq, const struct ib_cq_init_attr *attr,
		  hmr_cq_last_t *hmr_last);
int hmr_destroy_cq(struct ib_cq *ibcq, struct ib_udata *udata);
int hmr_resize_cq(struct ib_cq *ibcq, hmr_resize_cqe_t cqe, struct ib_udata *udata);
int hmr_poll_cq(struct ib_cq *ibcq, int num_entries, struct ib_wc *wc);
int hmr_req_notify_cq(struct ib_cq *ibcq, enum ib_cq_notify_flags flags);
int hmr_cq_post(struct hmr_cq *cq, const struct hmr_cqe *cqe, bool solicited);

/* hmr_qp.c */
int hmr_create_qp(struct ib_qp *ibqp, struct ib_qp_init_attr *init, struct ib_udata *udata);
int hmr_destroy_qp(struct ib_qp *ibqp, struct ib_udata *udata);
int hmr_modify_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		  struct ib_udata *udata);
int hmr_query_qp(struct ib_qp *ibqp, struct ib_qp_attr *attr, int mask,
		 struct ib_qp_init_attr *init);
int hmr_qp_doorbell(struct hmr_qp *qp);
struct hmr_qp *hmr_qp_get(struct hmr_dev *hdev, u32 qpn);
void hmr_qp_put(struct hmr_qp *qp);
u32 hmr_qp_flush(struct hmr_qp *qp);
void hmr_qp_set_error(struct hmr_qp *qp);
void hmr_qp_fatal(struct hmr_qp *qp);
void hmr_qp_error_async(struct hmr_qp *qp, bool fatal);

/* hmr_srq.c */
int hmr_alloc_xrcd(struct ib_xrcd *ibxrcd, struct ib_udata *udata);
int hmr_dealloc_xrcd(struct ib_xrcd *ibxrcd, struct ib_udata *udata);
int hmr_create_srq(struct ib_srq *ibsrq, struct ib_srq_init_attr *init, struct ib_udata *udata);
int hmr_modify_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr, enum ib_srq_attr_mask mask,
		   struct ib_udata *udata);
int hmr_query_srq(struct ib_srq *ibsrq, struct ib_srq_attr *attr);
int hmr_destroy_srq(struct ib_srq *ibsrq, struct ib_udata *udata);
struct hmr_srq *hmr_srq_get(struct hmr_dev *hdev, u32 srqn);
void hmr_srq_put(struct hmr_srq *srq);
int hmr_srq_take(struct hmr_srq *srq, struct hmr_recv_wqe *wqe);
void hmr_srq_consume(struct hmr_srq *srq);
void hmr_srq_give_back(struct hmr_srq *srq);

/* hmr_kverbs.c */
int hmr_kpost_send(struct hmr_qp *qp, const struct ib_send_wr *wr,
		   const struct ib_send_wr **bad_wr);
int hmr_kpost_recv(struct hmr_qp *qp, const struct ib_recv_wr *wr,
		   const struct ib_recv_wr **bad_wr);
int hmr_kpoll_cq(struct hmr_cq *cq, int num, struct ib_wc *wc);

/* hmr_mcast.c */
int hmr_attach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid);
int hmr_detach_mcast(struct ib_qp *ibqp, union ib_gid *gid, u16 lid);
void hmr_mcast_qp_destroy(struct hmr_qp *qp);

/* hmr_ud.c */
int hmr_create_ah(struct ib_ah *ibah, struct rdma_ah_init_attr *init, struct ib_udata *udata);
int hmr_destroy_ah(struct ib_ah *ibah, u32 flags);

/* hmr_req.c */
void hmr_req_process(struct hmr_qp *qp);
void hmr_req_doorbell(struct hmr_qp *qp);
void hmr_req_retry_work(struct work_struct *work);

/* hmr_resp.c */
int hmr_sgl_resolve(struct ib_pd *pd, struct hmr_sgl *sgl, const struct hmr_sge *sge,
		    u32 num, int access);
void hmr_sgl_put(struct hmr_sgl *sgl);

/* hmr_mr.c */
struct ib_mr *hmr_reg_user_mr(struct ib_pd *ibpd, u64 start, u64 length, u64 iova,
			      int access, HMR_REG_USER_MR_EXTRA_ARG struct ib_udata *udata);
struct ib_mr *hmr_rereg_user_mr(struct ib_mr *ibmr, int flags, u64 start, u64 length, u64 iova,
				int access, struct ib_pd *pd, struct ib_udata *udata);
int hmr_dereg_mr(struct ib_mr *ibmr, struct ib_udata *udata);
struct ib_mr *hmr_get_dma_mr(struct ib_pd *ibpd, int access);
struct hmr_mr *hmr_mr_get(struct hmr_dev *hdev, u32 key);
void hmr_mr_put(struct hmr_mr *mr);
bool hmr_mr_allows(struct hmr_mr *mr, struct ib_pd *pd, u64 iova, u64 len, int access);
int hmr_mr_prefetch(struct hmr_mr *mr, u64 iova, u64 len, unsigned long hmm_flags);
int hmr_mr_copy(struct hmr_mr *mr, u64 iova, void *buf, size_t len, bool to_mr);
int hmr_mr_copy_mr(struct hmr_mr *dst, u64 dst_iova, struct hmr_mr *src, u64 src_iova,
		   size_t len, bool *dst_failed);
int hmr_mr_atomic(struct hmr_mr *mr, u64 iova, bool cmp_swap, u64 compare_add, u64 swap,
		  u64 *orig);

/* hmr_mw.c */
int hmr_alloc_mw(struct ib_mw *ibmw, struct ib_udata *udata);
int hmr_dealloc_mw(struct ib_mw *ibmw);
int hmr_mw_bind(struct hmr_qp *qp, const struct hmr_send_wqe *wqe);
int hmr_mw_invalidate(struct hmr_qp *qp, u32 key);
int hmr_mw_resolve(struct hmr_qp *qp, struct ib_pd *pd, const struct hmr_sge *sge, int access,
		   struct hmr_sgl *sgl);
void hmr_mw_qp_destroy(struct hmr_qp *qp);

/* hmr_odp.c */
int hmr_advise_mr(struct ib_pd *pd, enum ib_uverbs_advise_mr_advice advice, u32 flags,
		  struct ib_sge *sg_list, u32 num_sge, struct uverbs_attr_bundle *attrs);

/* hmr_mm.c */
struct hmr_mm *hmr_mm_get(struct hmr_dev *hdev, struct mm_struct *mm);
void hmr_mm_put(struct hmr_mm *hm);
void hmr_mm_keep(struct hmr_ucontext *uctx, struct hmr_mm *hm);
void hmr_mm_stats_sum(struct hmr_dev *hdev, struct hmr_stats *sum);

/* hmr_stats.c */
void hmr_stats_add(struct hmr_stats *sum, const struct hmr_stats *st, bool subtract);
struct rdma_hw_stats *hmr_alloc_hw_port_stats(struct ib_device *ibdev, u32 port);
int hmr_get_hw_stats(struct ib_device *ibdev, struct rdma_hw_stats *stats, u32 port, int index);
int hmr_fill_stat_mr_entry(struct sk_buff *msg, struct ib_mr *ibmr);

/* hmr_ring.c */
int hmr_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma);
void hmr_mmap_free(struct rdma_user_mmap_entry *rentry);

/* hmr_main.c */
extern struct workqueue_struct *hmr_wq;
void hmr_dealloc_driver(struct ib_device *ibdev);
struct hmr_qp *hmr_qp_get_by_gid(const union ib_gid *gid, u32 qpn);
struct hmr_dev *hmr_dev_get_by_ifindex(int ifindex);
bool hmr_gid_is_local(const union ib_gid *gid);

/*
 * The clock of the fault counters (page_fault_ns, page_lookup_ns): on x86 the TSC, read in a
 * few instructions and turned into nanoseconds (tsc_khz) only when the counters are read;
 * ktime elsewhere. ktime_get() is about 40 instructions a read (its seqcount, the
 * clocksource's indirect call, the scaling): the four reads of a one-page fault were 184 of
 * the 2141 instructions it cost beyond the CPU's own first touch (6.12's instruction clock).
 * The TSC is the kernel's clocksource wherever it is stable; a fault that moved to a CPU whose
 * counter is behind counts 0.
 */
#ifdef CONFIG_X86_TSC
static inline u64 hmr_fault_clock(void)
{
	return rdtsc();
}

static inline u64 hmr_fault_clock_ns(u64 cycles)
{
	unsigned int khz = READ_ONCE(tsc_khz);

	return khz ? mul_u64_u32_div(cycles, NSEC_PER_MSEC, khz) : 0;
}
#else
static inline u64 hmr_fault_clock(void)
{
	return ktime_get_ns();
}

static inline u64 hmr_fault_clock_ns(u64 ns)
{
	return ns;
}
#endif

/* Add the hmr_fault_clock() time since @t0 to @total (never a negative step). */
static inline void hmr_fault_clock_add(atomic64_t *total, u64 t0)
{
	s64 d = hmr_fault_clock() - t0;

	if (d > 0)
		atomic64_add(d, total);
}

#endif /* HMR_DEV_H */
