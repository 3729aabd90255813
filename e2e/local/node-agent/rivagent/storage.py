"""The tmpfs storage of provisioner `rivulet.dev/tmpfs`: external provisioner, external resizer and the
kubelet's online expansion, for PVs whose backing is one size-limited tmpfs each.

PVs are CSI volumes of driver tmpfs.rivulet.dev (a CSIDriver object with attachRequired: false
exists), so kube-controller-manager treats them as it treats any CSI driver's: its expand
controller finds no in-tree expandable plugin for them, records the event ExternalExpanding
("waiting for an external controller to expand this PVC") and leaves the resize to the driver's
external resizer, which is this module. (The volume.kubernetes.io/storage-resizer annotation is
only set by kube-controller-manager for CSI-migrated in-tree volumes.)"""

import logging
import os
import subprocess

from . import quantity
from .api import ApiError, core

log = logging.getLogger("storage")

# The StorageClasses' provisioner (the bed's interface) and the PVs' CSI driver name: a CSI
# driver (and its CSIDriver object) must be named like a DNS subdomain, without '/'.
PROVISIONER = "rivulet.dev/tmpfs"
DRIVER = "tmpfs.rivulet.dev"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
RESIZER_ANNOTATION = "volume.kubernetes.io/storage-resizer"
# StorageClass parameter `resize: offline`: the volume's filesystem grows only when the pod using
# it starts again (the claim shows FileSystemResizePending until then), as with a block volume
# whose filesystem can't grow while mounted. Default `online`: the tmpfs grows live.
RESIZE_PARAMETER = "resize"


# Decisions (pure) -----------------------------------------------------------------------------
def wants_provisioning(pvc: dict, classes: dict, our_nodes: set):
    """The node name when this claim waits for us to provision it, else None."""
    meta, spec = pvc["metadata"], pvc.get("spec") or {}
    if spec.get("volumeName") or (pvc.get("status") or {}).get("phase") not in (None, "Pending"):
        return None
    if meta.get("deletionTimestamp"):
        return None
    sc = classes.get(spec.get("storageClassName") or "")
    if sc is None or sc.get("provisioner") != PROVISIONER:
        return None
    node = (meta.get("annotations") or {}).get(SELECTED_NODE)
    return node if node in our_nodes else None


def pv_for(pvc: dict, sc: dict, node: str) -> dict:
    """The PV provisioned for a claim: capacity = request, pre-bound, pinned to the node."""
    meta, spec = pvc["metadata"], pvc["spec"]
    name = f"pvc-{meta['uid']}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"]},
            "csi": {"driver": DRIVER, "volumeHandle": name, "fsType": "tmpfs",
                    "volumeAttributes": {"node": node}},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }


def pv_node(pv: dict):
    try:
        return pv["spec"]["csi"]["volumeAttributes"]["node"]
    except (KeyError, TypeError):
        return None


def is_ours(pv: dict) -> bool:
    return ((pv.get("spec") or {}).get("csi") or {}).get("driver") == DRIVER


def resize_target(pvc: dict, pv: dict):
    """Bytes the volume must grow to, or None. Only bound claims of our PVs, as the CSI
    external-resizer decides (the PV's CSI driver is ours; a storage-resizer annotation naming
    someone else, which kube-controller-manager sets for migrated in-tree volumes, is theirs);
    shrinking is not a resize (the API server refuses a smaller request anyway)."""
    if not is_ours(pv) or (pvc.get("status") or {}).get("phase") != "Bound":
        return None
    if (pvc["metadata"].get("annotations") or {}).get(RESIZER_ANNOTATION, DRIVER) != DRIVER:
        return None
    try:
        want = quantity.to_bytes(pvc["spec"]["resources"]["requests"]["storage"])
        have = quantity.to_bytes(pv["spec"]["capacity"]["storage"])
    except (KeyError, quantity.QuantityError):
        return None
    return want if want > have else None


def resize_mode(sc) -> str:
    """`offline` when the class asks for offline filesystem resizes, else `online`."""
    value = (((sc or {}).get("parameters") or {}).get(RESIZE_PARAMETER) or "online").strip().lower()
    if value not in ("online", "offline"):
        raise ValueError(f"StorageClass parameter {RESIZE_PARAMETER}: {value!r} is not online or offline")
    return value


def offline_grow_due(pv: dict, mounted_bytes: int):
    """Bytes to grow an offline-resized tmpfs to when its pod starts (PV capacity above the
    mounted size), else None."""
    try:
        want = quantity.to_bytes(pv["spec"]["capacity"]["storage"])
    except (KeyError, TypeError, quantity.QuantityError):
        return None
    return want if want > mounted_bytes else None


def pvc_status_current(pvc: dict, pv: dict):
    """The claim's status.capacity lags the PV's (the kubelet's expansion step did not finish)."""
    try:
        cap = quantity.to_bytes(pvc["status"]["capacity"]["storage"])
        pv_cap = quantity.to_bytes(pv["spec"]["capacity"]["storage"])
    except (KeyError, TypeError, quantity.QuantityError):
        return True
    return cap >= pv_cap


# tmpfs ------------------------------------------------------------------------------------------
def mount_tmpfs(path: str, size: int):
    os.makedirs(path, exist_ok=True)
    if os.path.ismount(path):
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", f"rivk8s-{os.path.basename(path)}", path],
                   check=True, capture_output=True)


def grow_tmpfs(path: str, size: int):
    subprocess.run(["mount", "-o", f"remount,size={size}", path], check=True, capture_output=True)


def tmpfs_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def grow_pending_on_start(api, pv_dir: str, pvc: dict, pv_name: str):
    """Called when a pod's claim is set up: an offline resize finishes now (the filesystem grows
    while no pod uses it, and the claim reports the new capacity)."""
    pv = api.get_or_none(core("", "persistentvolumes", pv_name))
    path = os.path.join(pv_dir, pv_name)
    if pv is None or not is_ours(pv) or not os.path.ismount(path):
        return
    target = offline_grow_due(pv, tmpfs_bytes(path))
    if target is None:
        return
    grow_tmpfs(path, target)
    ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    api.merge_patch(core(ns, "persistentvolumeclaims", name, "status"), {"status": {
        "capacity": {"storage": pv["spec"]["capacity"]["storage"]},
        "conditions": None,
        "allocatedResourceStatuses": None,
    }})
    log.info("offline resize of %s (claim %s/%s) finished on pod start: %d bytes", pv_name, ns, name, target)


def unmount(path: str):
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)
    try:
        os.rmdir(path)
    except OSError:
        pass


class StorageDriver:
    def __init__(self, api, pv_dir: str, our_nodes: set):
        self.api = api
        self.pv_dir = pv_dir
        self.our_nodes = our_nodes
        os.makedirs(pv_dir, exist_ok=True)

    def reconcile(self):
        classes = {sc["metadata"]["name"]: sc for sc in self.api.items("/apis/storage.k8s.io/v1/storageclasses")}
        pvcs = self.api.items(core("", "persistentvolumeclaims"))
        pvs = {pv["metadata"]["name"]: pv for pv in self.api.items(core("", "persistentvolumes"))}
        provisioned = set()
        for pvc in pvcs:
            node = wants_provisioning(pvc, classes, self.our_nodes)
            if node:
                provisioned.add(self._provision(pvc, classes[pvc["spec"]["storageClassName"]], node, pvs))
        for name in os.listdir(self.pv_dir):
            if name not in pvs and name not in provisioned:
                # Its PV was deleted by someone else (kubectl delete pv): the tmpfs goes too.
                unmount(os.path.join(self.pv_dir, name))
                log.info("unmounted %s: its PV is gone", name)
        for pv in pvs.values():
            if not is_ours(pv) or pv_node(pv) not in self.our_nodes:
                continue
            path = os.path.join(self.pv_dir, pv["metadata"]["name"])
            phase = (pv.get("status") or {}).get("phase")
            if phase in ("Released", "Failed") and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                self._delete(pv, path)
                continue
            if not os.path.ismount(path):
                # An agent restart or a down.sh that left the API objects: the data is gone, the
                # volume is there again (empty) so its pod can start.
                mount_tmpfs(path, quantity.to_bytes(pv["spec"]["capacity"]["storage"]))
        by_key = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in pvcs}
        for pv in pvs.values():
            ref = pv["spec"].get("claimRef") or {}
            pvc = by_key.get((ref.get("namespace"), ref.get("name")))
            if pvc is None or pv_node(pv) not in self.our_nodes or pvc["metadata"]["uid"] != ref.get("uid"):
                continue
            try:
                offline = resize_mode(classes.get(pv["spec"].get("storageClassName") or "")) == "offline"
            except ValueError as e:
                log.warning("%s: %s", pv["metadata"]["name"], e)
                continue
            target = resize_target(pvc, pv)
            if target is not None:
                self._resize(pvc, pv, target, offline)
            elif offline:
                continue  # finishes when the pod starts again (grow_pending_on_start)
            elif is_ours(pv) and not pvc_status_current(pvc, pv):
                self._finish_node_expansion(pvc, pv)

    def _provision(self, pvc, sc, node, pvs):
        body = pv_for(pvc, sc, node)
        name = body["metadata"]["name"]
        size = quantity.to_bytes(body["spec"]["capacity"]["storage"])
        mount_tmpfs(os.path.join(self.pv_dir, name), size)
        if name in pvs:
            return name
        try:
            self.api.create(core("", "persistentvolumes"), body)
        except ApiError as e:
            if e.status != 409:
                raise
        log.info("provisioned %s for %s/%s on %s (%d bytes)", name, pvc["metadata"]["namespace"],
                 pvc["metadata"]["name"], node, size)
        return name

    def _delete(self, pv, path):
        name = pv["metadata"]["name"]
        unmount(path)
        try:
            self.api.delete(core("", "persistentvolumes", name))
        except ApiError as e:
            if e.status != 404:
                raise
        log.info("deleted released volume %s", name)

    def _resize(self, pvc, pv, target: int, offline: bool = False):
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        pv_name = pv["metadata"]["name"]
        requested = pvc["spec"]["resources"]["requests"]["storage"]
        log.info("resizing %s (claim %s/%s) to %d bytes", pv_name, ns, name, target)
        pvc_status = core(ns, "persistentvolumeclaims", name, "status")
        # external-resizer, controller step: Resizing, allocatedResources = the new size.
        self.api.merge_patch(pvc_status, {"status": {
            "conditions": [_condition("Resizing")],
            "allocatedResources": {"storage": requested},
            "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"},
        }})
        if not offline:
            grow_tmpfs(os.path.join(self.pv_dir, pv_name), target)
        self.api.merge_patch(core("", "persistentvolumes", pv_name), {"spec": {"capacity": {"storage": requested}}})
        self.api.merge_patch(pvc_status, {"status": {
            "conditions": [_condition("FileSystemResizePending")],
            "allocatedResourceStatuses": {"storage": "NodeResizePending"},
        }})
        if offline:
            log.info("claim %s/%s waits for its pod to restart (offline resize)", ns, name)
            return
        pv = dict(pv, spec=dict(pv["spec"], capacity={"storage": requested}))
        self._finish_node_expansion(pvc, pv)

    def _finish_node_expansion(self, pvc, pv):
        """The kubelet's online expansion: a tmpfs is already live at the new size, so report it."""
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        self.api.merge_patch(core(ns, "persistentvolumeclaims", name, "status"), {"status": {
            "capacity": {"storage": pv["spec"]["capacity"]["storage"]},
            "conditions": None,
            "allocatedResourceStatuses": None,
        }})
        log.info("claim %s/%s now has %s", ns, name, pv["spec"]["capacity"]["storage"])


def _condition(typ: str) -> dict:
    from .node import now_rfc3339

    return {"type": typ, "status": "True", "lastTransitionTime": now_rfc3339()}
