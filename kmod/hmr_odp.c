// SPDX-License-Identifier: GPL-2.0
/*
 * advise_mr: prefetch pages of MRs into their mirrors (PREFETCH, PREFETCH_WRITE,
 * PREFETCH_NO_FAULT). With IB_UVERBS_ADVISE_MR_FLAG_FLUSH it runs in the caller and returns
 * the first error; otherwise a work item on hmr_wq does it and errors are dropped, as the
 * verb allows. The work item holds a reference on every MR it names, so dereg waits for it
 * (the MR outlives it, and the device outlives its MRs); hmr_wq is flushed at module exit,
 * so no work item outlives the module either.
 */
#include <linux/hmm.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "hmr_dev.h"

struct hmr_prefetch {
	struct work_struct work;
	unsigned long hmm_flags;	/* 0 for NO_FAULT */
	u32 num_sge;
	struct {
		struct hmr_mr *mr;	/* referenced (hmr_mr_get) */
		u64 iova;
		u32 length;
	} sge[];
};

/* Prefetch every SGE and drop the MR references; returns the first error. Frees @pf. */
static int hmr_prefetch_run(struct hmr_prefetch *pf)
{
	int ret = 0, err;
	u32 i;

	for (i = 0; i < pf->num_sge; i++) {
		err = hmr_mr_prefetch(pf->sge[i].mr, pf->sge[i].iova, pf->sge[i].length,
				      pf->hmm_flags);
		if (!ret)
			ret = err;
		hmr_mr_put(pf->sge[i].mr);
	}
	kfree(pf);
	return ret;
}

static void hmr_prefetch_work(struct work_struct *work)
{
	hmr_prefetch_run(container_of(work, struct hmr_prefetch, work));
}

static unsigned long hmr_prefetch_flags(enum ib_uverbs_advise_mr_advice advice)
{
	switch (advice) {
	case IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH:
		return HMM_PFN_REQ_FAULT;
	case IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE:
		return HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
	default:
		return 0;
	}
}

int hmr_advise_mr(struct ib_pd *pd, enum ib_uverbs_advise_mr_advice advice, u32 flags,
		  struct ib_sge *sg_list, u32 num_sge, struct uverbs_attr_bundle *attrs)
{
	struct hmr_dev *hdev = to_hdev(pd->device);
	int access = advice == IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE ?
		     IB_ACCESS_LOCAL_WRITE : 0;
	struct hmr_prefetch *pf;
	struct hmr_mr *mr;
	u32 i;

	if (advice != IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH &&
	    advice != IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_WRITE &&
	    advice != IB_UVERBS_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT)
		return -EOPNOTSUPP;
	if (flags & ~IB_UVERBS_ADVISE_MR_FLAG_FLUSH)
		return -EOPNOTSUPP;

	pf = kzalloc(struct_size(pf, sge, num_sge), GFP_KERNEL);
	if (!pf)
		return -ENOMEM;
	pf->hmm_flags = hmr_prefetch_flags(advice);
	for (i = 0; i < num_sge; i++) {
		mr = hmr_mr_get(hdev, sg_list[i].lkey);
		if (mr && !hmr_mr_allows(mr, pd, sg_list[i].addr, sg_list[i].length, access)) {
			hmr_mr_put(mr);
			mr = NULL;
		}
		if (!mr)
			goto err_put;
		pf->sge[i].mr = mr;
		pf->sge[i].iova = sg_list[i].addr;
		pf->sge[i].length = sg_list[i].length;
		pf->num_sge = i + 1;
	}
	if (flags & IB_UVERBS_ADVISE_MR_FLAG_FLUSH)
		return hmr_prefetch_run(pf);
	INIT_WORK(&pf->work, hmr_prefetch_work);
	queue_work(hmr_wq, &pf->work);
	return 0;

err_put:
	while (pf->num_sge)
		hmr_mr_put(pf->sge[--pf->num_sge].mr);
	kfree(pf);
	return -EINVAL;
}
