// SPDX-License-Identifier: GPL-2.0
/*
 * hmr: a software RDMA device whose memory regions are mirrored, never pinned.
 *
 * Module entry and device lifecycle. Devices come from `rdma link add NAME type hmr netdev IF`
 * and go with `rdma link delete NAME`, with IF's unregistration, or at module unload. hmr keeps
 * its own list of devices: its driver id is RDMA_DRIVER_UNKNOWN, which it shares with other
 * out-of-tree drivers, so ib_unregister_driver() and ib_device_get_by_netdev() must not be used.
 *
 * Lifetime: a device is on hmr_devices from newlink until the core calls dealloc_driver
 * (during the unregistration, whoever started it). Unregistration may be started by netlink
 * (dellink), by the netdev notifier (queued, it runs under RTNL) and by module exit, in any
 * order: the core serialises them and the later ones find the device already gone.
 */
#include <linux/etherdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <net/addrconf.h>
#include <rdma/ib_verbs.h>
#include <rdma/ib_cache.h>
#include <rdma/rdma_netlink.h>

#include "hmr_dev.h"
#include "hmr_wire.h"

/* Prefetch work items (hmr_odp.c); destroyed, hence drained, at module exit. */
struct workqueue_struct *hmr_wq;

/* Protects hmr_devices and every hmr_dev.list / hmr_dev.registered. */
static DEFINE_MUTEX(hmr_devices_lock);
static LIST_HEAD(hmr_devices);

static struct hmr_dev *hmr_find_by_netdev_locked(struct net_device *ndev)
{
	struct hmr_dev *hdev;

	lockdep_assert_held(&hmr_devices_lock);
	list_for_each_entry(hdev, &hmr_devices, list)
		if (hdev->ndev == ndev)
			return hdev;
	return NULL;
}

/* Called by the core while it unregisters the device, before it frees the memory. */
void hmr_dealloc_driver(struct ib_device *ibdev)
{
	struct hmr_dev *hdev = to_hdev(ibdev);

	mutex_lock(&hmr_devices_lock);
	list_del_init(&hdev->list);
	mutex_unlock(&hmr_devices_lock);
	if (hdev->wire)
		hmr_net_put(hdev->ndev);
	/* The core destroyed every object before it deallocates the device. */
	WARN_ON(!xa_empty(&hdev->qps) || !xa_empty(&hdev->mrs) || !xa_empty(&hdev->srqs) ||
		!list_empty(&hdev->mcast) || !list_empty(&hdev->mms));
	mutex_destroy(&hdev->mcast_lock);
	xa_destroy(&hdev->qps);
	xa_destroy(&hdev->mrs);
	xa_destroy(&hdev->srqs);
}

/* Put a new device on the list, unless IF already has one: one hmr device per netdev. */
static int hmr_list_add(struct hmr_dev *hdev)
{
	int ret = 0;

	mutex_lock(&hmr_devices_lock);
	if (hmr_find_by_netdev_locked(hdev->ndev))
		ret = -EEXIST;
	else
		list_add_tail(&hdev->list, &hmr_devices);
	mutex_unlock(&hmr_devices_lock);
	return ret;
}

static void hmr_set_registered(struct hmr_dev *hdev)
{
	mutex_lock(&hmr_devices_lock);
	hdev->registered = true;
	mutex_unlock(&hmr_devices_lock);
}

static void hmr_init_ibdev(struct hmr_dev *hdev, struct net_device *ndev)
{
	struct ib_device *ibdev = &hdev->ibdev;

	hdev->ndev = ndev;
	INIT_LIST_HEAD(&hdev->list);
	xa_init_flags(&hdev->qps, XA_FLAGS_ALLOC);
	xa_init_flags(&hdev->mrs, XA_FLAGS_ALLOC);
	xa_init_flags(&hdev->srqs, XA_FLAGS_ALLOC);
	spin_lock_init(&hdev->mms_lock);
	INIT_LIST_HEAD(&hdev->mms);
	mutex_init(&hdev->mcast_lock);
	INIT_LIST_HEAD(&hdev->mcast);
	strscpy(ibdev->node_desc, "hmr", sizeof(ibdev->node_desc));
	addrconf_addr_eui48((unsigned char *)&ibdev->node_guid, ndev->dev_addr);
	ibdev->node_type = RDMA_NODE_IB_CA;
	ibdev->phys_port_cnt = 1;
	ibdev->num_comp_vectors = 1;
	ibdev->local_dma_lkey = 0;
	ibdev->uverbs_cmd_mask |= BIT_ULL(IB_USER_VERBS_CMD_POST_SEND) |
				  BIT_ULL(IB_USER_VERBS_CMD_POST_RECV) |
				  BIT_ULL(IB_USER_VERBS_CMD_POLL_CQ) |
				  BIT_ULL(IB_USER_VERBS_CMD_REQ_NOTIFY_CQ);
	ib_set_device_ops(ibdev, &hmr_dev_ops);
}

static int hmr_newlink(const char *ibdev_name, struct net_device *ndev)
{
	struct hmr_dev *hdev;
	int ret;

	hdev = ib_alloc_device(hmr_dev, ibdev);
	if (!hdev)
		return -ENOMEM;
	hmr_init_ibdev(hdev, ndev);

	ret = ib_device_set_netdev(&hdev->ibdev, ndev, HMR_PORT);
	if (ret)
		goto err_dealloc;
	ret = hmr_list_add(hdev);
	if (ret)
		goto err_dealloc;
	ret = hmr_net_get(ndev);
	if (ret)
		goto err_dealloc;
	hdev->wire = !(ndev->flags & IFF_LOOPBACK);
	/*
	 * Not under hmr_devices_lock: registration takes RTNL, which the netdev notifier holds
	 * when it takes hmr_devices_lock.
	 */
	ret = ib_register_device(&hdev->ibdev, ibdev_name, NULL);
	if (ret)
		goto err_dealloc;
	hmr_set_registered(hdev);
	return 0;

err_dealloc:
	/* Also takes it off the list: the core calls dealloc_driver. */
	ib_dealloc_device(&hdev->ibdev);
	return ret;
}

/* The registered hmr device whose port has @gid (RoCEv2), or NULL. */
static struct hmr_dev *hmr_find_by_gid_locked(const union ib_gid *gid)
{
	const struct ib_gid_attr *attr;
	struct hmr_dev *hdev;

	lockdep_assert_held(&hmr_devices_lock);
	list_for_each_entry(hdev, &hmr_devices, list) {
		if (!hdev->registered)
			continue;
		attr = rdma_find_gid_by_port(&hdev->ibdev, gid, IB_GID_TYPE_ROCE_UDP_ENCAP,
					     HMR_PORT, NULL);
		if (IS_ERR(attr))
			continue;
		rdma_put_gid_attr(attr);
		return hdev;
	}
	return NULL;
}

/*
 * The QP @qpn on the hmr device whose port has @gid, with a reference (hmr_qp_put()), or
 * NULL. The loopback transport's address resolution.
 */
struct hmr_qp *hmr_qp_get_by_gid(const union ib_gid *gid, u32 qpn)
{
	struct hmr_qp *qp = NULL;
	struct hmr_dev *hdev;

	mutex_lock(&hmr_devices_lock);
	hdev = hmr_find_by_gid_locked(gid);
	if (hdev)
		qp = hmr_qp_get(hdev, qpn);
	mutex_unlock(&hmr_devices_lock);
	return qp;
}

/* @gid is a GID of an hmr device of this kernel: its QPs are reached directly. */
bool hmr_gid_is_local(const union ib_gid *gid)
{
	bool found;

	mutex_lock(&hmr_devices_lock);
	found = hmr_find_by_gid_locked(gid);
	mutex_unlock(&hmr_devices_lock);
	return found;
}

/* The registered hmr device on the netdev @ifindex, referenced (ib_device_put), or NULL. */
struct hmr_dev *hmr_dev_get_by_ifindex(int ifindex)
{
	struct hmr_dev *hdev, *found = NULL;

	mutex_lock(&hmr_devices_lock);
	list_for_each_entry(hdev, &hmr_devices, list) {
		if (hdev->registered && hdev->ndev->ifindex == ifindex &&
		    ib_device_try_get(&hdev->ibdev)) {
			found = hdev;
			break;
		}
	}
	mutex_unlock(&hmr_devices_lock);
	return found;
}

static struct rdma_link_ops hmr_link_ops = {
	.type = "hmr",
	.newlink = hmr_newlink,
};

static void hmr_port_event(struct hmr_dev *hdev, enum ib_event_type type)
{
	struct ib_event ev = {
		.device = &hdev->ibdev,
		.element.port_num = HMR_PORT,
		.event = type,
	};

	ib_dispatch_event(&ev);
}

/* Runs under RTNL. */
static int hmr_netdev_event(struct notifier_block *nb, unsigned long event, void *arg)
{
	struct net_device *ndev = netdev_notifier_info_to_dev(arg);
	struct hmr_dev *hdev;

	mutex_lock(&hmr_devices_lock);
	hdev = hmr_find_by_netdev_locked(ndev);
	if (!hdev || !hdev->registered)
		goto out_unlock;

	switch (event) {
	case NETDEV_UNREGISTER:
		/* The core's work item unregisters it; module exit waits for that. */
		hdev->registered = false;
		ib_unregister_device_queued(&hdev->ibdev);
		break;
	case NETDEV_UP:
	case NETDEV_DOWN:
	case NETDEV_CHANGE:
		hmr_port_event(hdev, hmr_port_state(hdev) == IB_PORT_ACTIVE ?
				     IB_EVENT_PORT_ACTIVE : IB_EVENT_PORT_ERR);
		break;
	default:
		break;
	}
out_unlock:
	mutex_unlock(&hmr_devices_lock);
	return NOTIFY_DONE;
}

static struct notifier_block hmr_netdev_nb = {
	.notifier_call = hmr_netdev_event,
};

/*
 * Take the first device off the list's head with a reference on it, or NULL when the list
 * is empty. The reference keeps the memory valid after dealloc_driver took it off the list.
 */
static struct hmr_dev *hmr_first_device_get(void)
{
	struct hmr_dev *hdev;

	mutex_lock(&hmr_devices_lock);
	hdev = list_first_entry_or_null(&hmr_devices, struct hmr_dev, list);
	if (hdev)
		get_device(&hdev->ibdev.dev);
	mutex_unlock(&hmr_devices_lock);
	return hdev;
}

static void hmr_unregister_all(void)
{
	struct hmr_dev *hdev;

	/*
	 * ib_unregister_device() returns once the device is unregistered, by this call or a
	 * concurrent one (dellink, a queued netdev unregistration): either way dealloc_driver
	 * has taken it off the list, so the loop ends.
	 */
	while ((hdev = hmr_first_device_get())) {
		ib_unregister_device(&hdev->ibdev);
		put_device(&hdev->ibdev.dev);
	}
}

static int __init hmr_init(void)
{
	int ret;

	hmr_wq = alloc_workqueue("hmr", WQ_UNBOUND, 0);
	if (!hmr_wq)
		return -ENOMEM;
	ret = hmr_net_init();
	if (ret)
		goto err_wq;
	ret = register_netdevice_notifier(&hmr_netdev_nb);
	if (ret)
		goto err_net;
	rdma_link_register(&hmr_link_ops);
	return 0;

err_net:
	hmr_net_exit();
err_wq:
	destroy_workqueue(hmr_wq);
	return ret;
}

static void __exit hmr_exit(void)
{
	/* No new devices once this returns: it waits for running newlink calls. */
	rdma_link_unregister(&hmr_link_ops);
	unregister_netdevice_notifier(&hmr_netdev_nb);
	hmr_unregister_all();
	hmr_net_exit();		/* no socket is left: nothing more is queued */
	destroy_workqueue(hmr_wq);	/* every MR is gone, so is every prefetch */
	/* libhmr frees mirror tables from RCU callbacks, which are this module's code. */
	rcu_barrier();
}

module_init(hmr_init);
module_exit(hmr_exit);
MODULE_DESCRIPTION("hmr: RDMA device with mirrored (unpinned) memory regions");
MODULE_LICENSE("GPL");
MODULE_ALIAS_RDMA_LINK("hmr");
