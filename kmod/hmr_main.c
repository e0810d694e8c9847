// SPDX-License-Identifier: GPL-2.0
/*
 * hmr: a software RDMA device whose memory regions are mirrored, never pinned.
 * Module entry: registers the "hmr" rdma link type (rdma link add NAME type hmr netdev IF).
 */
#include <linux/module.h>
#include <rdma/ib_verbs.h>
#include <rdma/rdma_netlink.h>

static int hmr_newlink(const char *ibdev_name, struct net_device *ndev)
{
	return -EOPNOTSUPP;
}

static struct rdma_link_ops hmr_link_ops = {
	.type = "hmr",
	.newlink = hmr_newlink,
};

static int __init hmr_init(void)
{
	rdma_link_register(&hmr_link_ops);
	return 0;
}

static void __exit hmr_exit(void)
{
	rdma_link_unregister(&hmr_link_ops);
}

module_init(hmr_init);
module_exit(hmr_exit);
MODULE_DESCRIPTION("hmr: RDMA device with mirrored (unpinned) memory regions");
MODULE_LICENSE("GPL");
MODULE_ALIAS_RDMA_LINK("hmr");
