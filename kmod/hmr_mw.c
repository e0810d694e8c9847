// SPDX-License-Identifier: GPL-2.0
/*
 * Memory windows: remote keys to part of an MR, with rights of their own (IBA 10.6.7).
 *
 * A window shares the MRs' key space (hdev->mrs, its entry tagged HMR_KEY_MW), so an R_Key
 * names either. It is bound by a BIND_MW WQE, executed by the requester in SQ order (type 1
 * through ibv_bind_mw, which the provider turns into that WQE; type 2 by the WR itself), and a
 * type 2 window is invalidated by LOCAL_INV or by a SEND_WITH_INV its QP receives. A remote
 * request whose R_Key names a window is checked against the window (range, rights, PD, and
 * for type 2 the QP that bound it) and then goes to the window's MR like any other: the DMA
 * engine still reads and writes only MR mirrors, and nothing is pinned.
 *
 * The binding is written and read under the xarray's lock: a lookup copies what it needs and
 * holds nothing, so deallocation only has to erase the entry. A window holds no reference to
 * its MR (named by key and number, looked up at each access: deregistering the MR fails the
 * window's later accesses) or to its QP (destroy_qp unbinds the windows it bound).
 */
#include <linux/xarray.h>

#include "hmr_dev.h"
#include "hmr_transport.h"

#define HMR_MW_ACCESS		(IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_WRITE | \
				 IB_ACCESS_REMOTE_ATOMIC)

int hmr_alloc_mw(struct ib_mw *ibmw, struct ib_udata *udata)
{
	struct hmr_dev *hdev = to_hdev(ibmw->device);
	struct hmr_mw *mw = to_hmw(ibmw);
	u32 index;
	int ret;

	if (ibmw->type != IB_MW_TYPE_1 && ibmw->type != IB_MW_TYPE_2)
		return -EINVAL;
	mw->key = get_random_u8();	/* the index is not known yet: nothing can find it */
	ret = xa_alloc_cyclic(&hdev->mrs, &index, xa_tag_pointer(mw, HMR_KEY_MW),
			      HMR_KEY_INDEX_LIMIT, &hdev->next_mr, GFP_KERNEL);
	if (ret < 0)
		return ret;
	xa_lock(&hdev->mrs);
	mw->key |= index << 8;
	xa_unlock(&hdev->mrs);
	ibmw->rkey = mw->key;
	return 0;
}

/* Accesses copy the binding under the xarray's lock: once erased, nothing uses the window. */
int hmr_dealloc_mw(struct ib_mw *ibmw)
{
	struct hmr_mw *mw = to_hmw(ibmw);

	xa_erase(&to_hdev(ibmw->device)->mrs, mw->key >> 8);
	return 0;
}

/* The window @key's index names. Caller holds hdev->mrs' lock. */
static struct hmr_mw *hmr_mw_find(struct hmr_dev *hdev, u32 key)
{
	void *entry = xa_load(&hdev->mrs, key >> 8);

	return xa_pointer_tag(entry) == HMR_KEY_MW ? xa_untag_pointer(entry) : NULL;
}

/*
 * What a bind asks of the MR (IBA C10-72..75): the QP's PD, IB_ACCESS_MW_BIND, the window
 * inside it, and local write for a window that lets the peer write. Fills @gen.
 */
static bool hmr_mw_mr_ok(struct hmr_qp *qp, const struct hmr_send_wqe *wqe, u64 *gen)
{
	struct hmr_mr *mr = hmr_mr_get(to_hdev(qp->ibqp.device), wqe->mr_lkey);
	int need = IB_ACCESS_MW_BIND;
	bool ok;

	if (!mr)
		return false;
	if (wqe->swap & (IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC))
		need |= IB_ACCESS_LOCAL_WRITE;
	ok = !mr->kernel && hmr_mr_allows(mr, qp->ibqp.pd, wqe->remote_addr, wqe->compare_add, need);
	*gen = mr->gen;
	hmr_mr_put(mr);
	return ok;
}

/*
 * Bind the window a BIND_MW WQE names (struct hmr_send_wqe's comment). A type 1 window may be
 * bound again (its old key dies) or unbound by a length of 0; a type 2 window must be free and
 * is tied to @qp. Returns an ib_wc_status. Caller holds qp->lock.
 */
int hmr_mw_bind(struct hmr_qp *qp, const struct hmr_send_wqe *wqe)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	bool bind = wqe->compare_add != 0;
	int ret = IB_WC_MW_BIND_ERR;
	struct hmr_mw *mw;
	u64 gen = 0;

	if (hmr_qp_is_ud(qp))
		return IB_WC_LOC_QP_OP_ERR;
	/* Local write means nothing to a window (rdma-core's tests ask it): ignored. */
	if ((wqe->rkey ^ wqe->imm_data) >> 8 ||
	    (wqe->swap & ~(u64)(HMR_MW_ACCESS | IB_ACCESS_LOCAL_WRITE)))
		return IB_WC_MW_BIND_ERR;	/* another window's key; zero based; unknown right */
	if (bind && !hmr_mw_mr_ok(qp, wqe, &gen))
		return IB_WC_MW_BIND_ERR;
	xa_lock(&hdev->mrs);
	mw = hmr_mw_find(hdev, wqe->rkey);
	if (!mw || mw->ibmw.pd != qp->ibqp.pd)
		goto out_unlock;
	if (mw->ibmw.type == IB_MW_TYPE_2 && (mw->bound || !bind))
		goto out_unlock;	/* o10-37.2.30: a type 2 window is bound from free only */
	mw->key = wqe->rkey;
	mw->bound = bind;
	mw->qp = mw->ibmw.type == IB_MW_TYPE_2 ? qp : NULL;
	mw->mr_key = wqe->mr_lkey;
	mw->mr_gen = gen;
	mw->addr = wqe->remote_addr;
	mw->length = wqe->compare_add;
	mw->access = wqe->swap & HMR_MW_ACCESS;
	ret = IB_WC_SUCCESS;
out_unlock:
	xa_unlock(&hdev->mrs);
	return ret;
}

/*
 * Invalidate the type 2 window @key names, bound by @qp: LOCAL_INV posted on @qp, or a
 * SEND_WITH_INV @qp received. Returns 0 or -EINVAL (no such bound window of @qp: a type 1
 * window, an MR, another QP's).
 */
int hmr_mw_invalidate(struct hmr_qp *qp, u32 key)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	struct hmr_mw *mw;
	int ret = -EINVAL;

	xa_lock(&hdev->mrs);
	mw = hmr_mw_find(hdev, key);
	if (mw && mw->ibmw.type == IB_MW_TYPE_2 && mw->bound && mw->key == key && mw->qp == qp) {
		mw->bound = false;
		mw->qp = NULL;
		ret = 0;
	}
	xa_unlock(&hdev->mrs);
	return ret;
}

/* May a request on @qp (PD @pd) reach [addr, addr + len) with @access through @mw? */
static bool hmr_mw_allows(const struct hmr_mw *mw, struct hmr_qp *qp, struct ib_pd *pd,
			  u32 key, u64 addr, u64 len, int access)
{
	u64 end;

	if (!mw->bound || mw->key != key || mw->ibmw.pd != pd || (mw->access & access) != access)
		return false;
	if (mw->ibmw.type == IB_MW_TYPE_2 && mw->qp != qp)
		return false;	/* type 2B: only through the QP that bound it */
	if (check_add_overflow(addr, len, &end))
		return false;
	return addr >= mw->addr && end <= mw->addr + mw->length;
}

/*
 * Resolve the remote buffer @sge (an R_Key, as a one-entry SGL) through the window its key
 * names, for a request on @qp checked against @pd: then its MR, referenced in @sgl as
 * hmr_sgl_resolve() leaves it. Returns -ENOENT if the key names no window (an MR's, or
 * nothing), -EACCES if the window refuses, else 0. Called only once the key failed as an
 * MR's, so an MR's R_Key costs one lookup as before windows.
 */
int hmr_mw_resolve(struct hmr_qp *qp, struct ib_pd *pd, const struct hmr_sge *sge, int access,
		   struct hmr_sgl *sgl)
{
	struct hmr_dev *hdev = to_hdev(pd->device);
	struct hmr_mw *mw;
	struct hmr_mr *mr;
	u32 mr_key = 0;
	u64 gen = 0;
	int ret;

	xa_lock(&hdev->mrs);
	mw = hmr_mw_find(hdev, sge->lkey);
	ret = mw ? -EACCES : -ENOENT;
	if (mw && hmr_mw_allows(mw, qp, pd, sge->lkey, sge->addr, sge->length, access)) {
		mr_key = mw->mr_key;
		gen = mw->mr_gen;
		ret = 0;
	}
	xa_unlock(&hdev->mrs);
	if (ret)
		return ret;
	mr = hmr_mr_get(hdev, mr_key);
	if (!mr)
		return -EACCES;
	/* The MR's own remote rights do not matter; it may still have lost local write. */
	if (mr->gen != gen || !hmr_mr_allows(mr, pd, sge->addr, sge->length,
					     access & ~IB_ACCESS_REMOTE_READ ?
					     IB_ACCESS_LOCAL_WRITE : 0)) {
		hmr_mr_put(mr);
		return -EACCES;
	}
	memset(sgl, 0, sizeof(*sgl));
	sgl->num = 1;
	sgl->sge[0] = *sge;
	sgl->mr[0] = mr;
	sgl->len = sge->length;
	return 0;
}

/* @qp is being destroyed: the type 2 windows it bound become free. */
void hmr_mw_qp_destroy(struct hmr_qp *qp)
{
	struct hmr_dev *hdev = to_hdev(qp->ibqp.device);
	XA_STATE(xas, &hdev->mrs, 0);
	struct hmr_mw *mw;
	void *entry;

	if (!qp->ibqp.pd || hmr_qp_is_ud(qp))
		return;	/* no window was bound on it */
	xas_lock(&xas);
	xas_for_each(&xas, entry, ULONG_MAX) {
		if (xa_pointer_tag(entry) != HMR_KEY_MW)
			continue;
		mw = xa_untag_pointer(entry);
		if (mw->qp == qp) {
			mw->bound = false;
			mw->qp = NULL;
		}
	}
	xas_unlock(&xas);
}
