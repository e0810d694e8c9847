// SPDX-License-Identifier: GPL-2.0
/* bench_common: shared verbs setup and helpers of the perftest tools (see bench_common.h). */
#define _GNU_SOURCE
#include "bench_common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct ibv_context *open_dev(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	for (int i = 0; list && list[i] && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	if (!ctx && !errno)
		errno = ENODEV;
	return ctx;
}

static int qp_to_init(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT,
		.port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ,
	};

	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			     IBV_QP_ACCESS_FLAGS);
}

static int qp_to_rtr(struct ibv_qp *qp, uint32_t dest_qpn, const union ibv_gid *gid,
		     enum ibv_mtu mtu)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_RTR,
		.path_mtu = mtu,
		.dest_qp_num = dest_qpn,
		.max_dest_rd_atomic = 1,
		.min_rnr_timer = 12,
		.ah_attr = {
			.is_global = 1,
			.grh = { .dgid = *gid, .sgid_index = BENCH_GID, .hop_limit = 1 },
			.port_num = 1,
		},
	};

	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			     IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			     IBV_QP_MIN_RNR_TIMER);
}

static int qp_to_rts(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_RTS,
		.timeout = 14,
		.retry_cnt = 7,
		.rnr_retry = 7,
		.max_rd_atomic = 1,
	};

	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			     IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

static int qp_reset(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_RESET };

	return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

int bench_reconnect(struct bench *b)
{
	struct ibv_port_attr port;
	union ibv_gid gid;
	int err;

	err = ibv_query_port(b->ctx, 1, &port);
	if (!err)
		err = ibv_query_gid(b->ctx, 1, BENCH_GID, &gid) ? errno : 0;
	for (int i = 0; i < 2 && !err; i++) {
		struct ibv_qp *qp = b->qp[i];

		err = qp_reset(qp);
		if (!err)
			err = qp_to_init(qp);
		if (!err)
			err = qp_to_rtr(qp, b->qp[!i]->qp_num, &gid, port.active_mtu);
		if (!err)
			err = qp_to_rts(qp);
	}
	return err;
}

int bench_open(struct bench *b, const char *dev, int cqe, int max_wr)
{
	struct ibv_qp_init_attr ia = {
		.cap = { .max_send_wr = max_wr, .max_recv_wr = 1, .max_send_sge = 1,
			 .max_recv_sge = 1 },
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
	};
	int err;

	memset(b, 0, sizeof(*b));
	errno = 0;
	b->ctx = open_dev(dev);
	if (!b->ctx)
		return errno;
	b->pd = ibv_alloc_pd(b->ctx);
	if (!b->pd)
		goto fail;
	b->ch = ibv_create_comp_channel(b->ctx);
	if (!b->ch)
		goto fail;
	b->cq = ibv_create_cq(b->ctx, cqe, NULL, b->ch, 0);
	if (!b->cq)
		goto fail;
	ia.send_cq = ia.recv_cq = b->cq;
	for (int i = 0; i < 2; i++) {
		b->qp[i] = ibv_create_qp(b->pd, &ia);
		if (!b->qp[i])
			goto fail;
	}
	err = bench_reconnect(b);
	if (err) {
		errno = err;
		goto fail;
	}
	return 0;
fail:
	err = errno ? errno : EINVAL;
	bench_close(b);
	return err;
}

void bench_close(struct bench *b)
{
	for (int i = 0; i < 2; i++)
		if (b->qp[i])
			ibv_destroy_qp(b->qp[i]);
	if (b->cq)
		ibv_destroy_cq(b->cq);
	if (b->ch)
		ibv_destroy_comp_channel(b->ch);
	if (b->pd)
		ibv_dealloc_pd(b->pd);
	if (b->ctx)
		ibv_close_device(b->ctx);
	memset(b, 0, sizeof(*b));
}

int bench_check_odp(struct bench *b, const char *prog)
{
	const uint32_t need = IBV_ODP_SUPPORT_WRITE | IBV_ODP_SUPPORT_READ;
	struct ibv_device_attr_ex attr;

	if (ibv_query_device_ex(b->ctx, NULL, &attr)) {
		fprintf(stderr, "%s: ibv_query_device_ex: %s\n", prog, strerror(errno));
		return 1;
	}
	if ((attr.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
	    (attr.odp_caps.per_transport_caps.rc_odp_caps & need) == need)
		return 0;
	fprintf(stderr, "%s: %s: odp unsupported\n", prog, ibv_get_device_name(b->ctx->device));
	return BENCH_EXIT_UNSUPPORTED;
}

int bench_post(struct bench *b, enum ibv_wr_opcode op, void *local, uint32_t lkey, size_t len,
	       void *remote, uint32_t rkey, uint64_t wr_id)
{
	struct ibv_sge sge = { .addr = (uintptr_t)local, .length = (uint32_t)len, .lkey = lkey };
	struct ibv_send_wr wr = {
		.wr_id = wr_id, .sg_list = &sge, .num_sge = 1, .opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = (uintptr_t)remote, .rkey = rkey },
	}, *bad;

	return ibv_post_send(b->qp[0], &wr, &bad);
}

/*
 * Spin BENCH_SPIN_NS, then sleep on the completion channel: a WR the doorbell system call
 * executes has completed when it returns (spinning costs nothing), while a long one runs in
 * the device's work item and, on the one CPU of the instruction-clock guest, a spinning
 * poller would take half of the CPU from it and double its time.
 */
#define BENCH_SPIN_NS	20000ull

int bench_poll(struct bench *b, struct ibv_wc *wc, uint64_t timeout_ns)
{
	uint64_t t0 = now_ns(), deadline = t0 + timeout_ns;

	for (unsigned int spin = 0;; spin++) {
		int n = ibv_poll_cq(b->cq, 1, wc);
		uint64_t now;

		if (n)
			return n < 0 ? -1 : 1;
		if (spin & 63)
			continue;
		now = now_ns();
		if (now > deadline)
			return 0;
		if (now - t0 > BENCH_SPIN_NS && bench_wait_cq(b, 100) < 0)
			return -1;
	}
}

int bench_wait_cq(struct bench *b, int timeout_ms)
{
	struct pollfd pfd = { .fd = b->ch->fd, .events = POLLIN };
	struct ibv_cq *cq;
	void *cq_ctx;
	int n;

	if (ibv_req_notify_cq(b->cq, 0))
		return -1;
	n = poll(&pfd, 1, timeout_ms);
	if (n <= 0)
		return n;
	if (ibv_get_cq_event(b->ch, &cq, &cq_ctx))
		return -1;
	ibv_ack_cq_events(cq, 1);
	return 1;
}

int bench_rdma_sync(struct bench *b, enum ibv_wr_opcode op, void *local, uint32_t lkey,
		    size_t len, void *remote, uint32_t rkey)
{
	struct ibv_wc wc;
	int err = bench_post(b, op, local, lkey, len, remote, rkey, 0), n;

	if (err) {
		fprintf(stderr, "ibv_post_send: %s\n", strerror(err));
		return -1;
	}
	n = bench_poll(b, &wc, BENCH_POLL_TIMEOUT_NS);
	if (n <= 0) {
		fprintf(stderr, "ibv_poll_cq: %s\n", n ? "failed" : "no completion within 10 s");
		return -1;
	}
	if (wc.status != IBV_WC_SUCCESS) {
		fprintf(stderr, "completion: %s\n", ibv_wc_status_str(wc.status));
		return -1;
	}
	return 0;
}

void *bench_map(size_t size, size_t align)
{
	size_t len = size + align;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start, end;

	if (p == MAP_FAILED)
		return NULL;
	start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	end = start + size;
	if (start > (uintptr_t)p)
		munmap(p, start - (uintptr_t)p);
	munmap((void *)end, (uintptr_t)p + len - end);
	return (void *)start;
}

void bench_unmap(void *p, size_t size)
{
	if (p)
		munmap(p, size);
}

int bench_start(struct bench *b, const char *prog, const char *dev, int odp, int depth)
{
	int err = bench_open(b, dev, 2 * depth, depth);

	if (err) {
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, dev, strerror(err));
		return 1;
	}
	return odp ? bench_check_odp(b, prog) : 0;
}

int bench_buf_init(struct bench *b, struct bench_buf *m, size_t len, size_t align, int advice,
		   int fill, int access)
{
	m->len = len;
	m->buf = bench_map(len, align);
	if (!m->buf) {
		fprintf(stderr, "mmap(%zu): %s\n", len, strerror(errno));
		return -1;
	}
	if (advice >= 0 && madvise(m->buf, len, advice))
		fprintf(stderr, "madvise(%d) (continuing): %s\n", advice, strerror(errno));
	memset(m->buf, fill, len);
	if (access < 0)
		return 0;	/* a plain mapping */
	m->mr = ibv_reg_mr(b->pd, m->buf, len, access);
	if (!m->mr) {
		fprintf(stderr, "ibv_reg_mr(%zu%s): %s\n", len,
			access & IBV_ACCESS_ON_DEMAND ? ", odp" : "", strerror(errno));
		return -1;
	}
	return 0;
}

void bench_buf_fini(struct bench_buf *m)
{
	if (m->mr)
		ibv_dereg_mr(m->mr);
	bench_unmap(m->buf, m->len);
	memset(m, 0, sizeof(*m));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

uint64_t bench_percentile(uint64_t *v, size_t n, unsigned int p)
{
	size_t rank;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	rank = (n * p + 99) / 100;
	return v[rank ? rank - 1 : 0];
}

size_t bench_check_fill(const void *buf, size_t len, unsigned char c)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != c)
			return i;
	return len;
}

long long bench_hw_counter(const char *dev, const char *name)
{
	char path[256];
	long long v = -1;
	FILE *f;

	usleep(20000);	/* the core caches hw counters for 10 ms */
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/hw_counters/%s", dev, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}
