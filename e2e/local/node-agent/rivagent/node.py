"""Node registration, the node Lease (renewed every 10 s) and Ready-condition heartbeats."""

import datetime
import logging
import os
import platform

from .api import ApiError, core

log = logging.getLogger("node")
LEASE_SECONDS = 40


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """MicroTime, as Lease.spec.renewTime wants it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeSpec:
    """One emulated node: its name, zone, pod subnet and declared resources."""

    def __init__(self, index: int, zone: str, host_ip: str, cpu: str, memory: str, pods: str, storage: str):
        self.index = index
        self.zone = zone
        self.name = f"rivulet-{zone}"
        self.subnet_prefix = f"10.88.{index}"
        self.pod_cidr = f"{self.subnet_prefix}.0/24"
        self.host_ip = host_ip
        self.capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": storage}

    def labels(self) -> dict:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64" if platform.machine() in ("x86_64", "AMD64") else platform.machine(),
            "topology.kubernetes.io/zone": self.zone,
            "topology.kubernetes.io/region": "rivulet-local",
            "rivulet.dev/node-agent": "true",
        }

    def status(self, kubelet_version: str, ready: bool = True) -> dict:
        t = now_rfc3339()

        def cond(typ, status, reason, msg):
            return {"type": typ, "status": status, "reason": reason, "message": msg,
                    "lastHeartbeatTime": t, "lastTransitionTime": t}

        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "addresses": [{"type": "InternalIP", "address": self.host_ip},
                          {"type": "Hostname", "address": self.name}],
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "sufficient PIDs"),
                cond("Ready", "True" if ready else "False",
                     "KubeletReady" if ready else "KubeletNotReady",
                     "rivulet node agent is posting ready status" if ready else "node agent stopping"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": _machine_id(), "systemUUID": _machine_id(), "bootID": _boot_id(),
                "kernelVersion": platform.release(), "osImage": "rivulet node agent (processes)",
                "containerRuntimeVersion": "rivulet-process://1", "kubeletVersion": kubelet_version,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": self.labels()["kubernetes.io/arch"],
            },
        }


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine_id() -> str:
    return _read("/etc/machine-id") or "rivulet"


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id") or "rivulet"


def status_patch(old: list, new: list) -> list:
    """Keep lastTransitionTime of conditions whose status did not change (pure)."""
    before = {c["type"]: c for c in old or []}
    out = []
    for c in new:
        prev = before.get(c["type"])
        if prev and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            c = dict(c, lastTransitionTime=prev["lastTransitionTime"])
        out.append(c)
    return out


class NodeRegistrar:
    def __init__(self, api, nodes: list, kubelet_version: str):
        self.api = api
        self.nodes = nodes
        self.kubelet_version = kubelet_version

    def register(self):
        for n in self.nodes:
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": n.name, "labels": n.labels()},
                    "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]}}
            try:
                self.api.create(core("", "nodes"), body)
                log.info("registered node", extra={"node": n.name, "zone": n.zone})
            except ApiError as e:
                if e.status != 409:
                    raise
                # Already registered (an earlier agent run): make the labels ours again.
                self.api.strategic_patch(core("", "nodes", n.name), {"metadata": {"labels": n.labels()}})
            self.heartbeat(n)
            self.renew_lease(n)

    def heartbeat(self, n, ready: bool = True):
        cur = self.api.get(core("", "nodes", n.name))
        st = n.status(self.kubelet_version, ready)
        st["conditions"] = status_patch((cur.get("status") or {}).get("conditions"), st["conditions"])
        self.api.strategic_patch(core("", "nodes", n.name, "status"), {"status": st})

    def renew_lease(self, n):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n.name}"
        spec = {"holderIdentity": n.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            node = self.api.get(core("", "nodes", n.name))
            owner = {"apiVersion": "v1", "kind": "Node", "name": n.name, "uid": node["metadata"]["uid"]}
            self.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                             "metadata": {"name": n.name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                             "spec": spec})


def ephemeral_storage(path: str) -> str:
    st = os.statvfs(path)
    return str(st.f_blocks * st.f_frsize)
