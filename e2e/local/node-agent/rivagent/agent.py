"""The agent: three nodes in one process. Main loop (1 s): pods of our nodes -> PodRuntimes,
deletions, the hosts file, storage. A second thread renews node leases and heartbeats."""

import logging
import os
import signal
import subprocess
import threading
import time

from . import hosts, storage
from .api import ApiError, Client, core
from .node import NodeRegistrar, NodeSpec, ephemeral_storage
from .pods import PodRuntime

log = logging.getLogger("agent")
HEARTBEAT_SECONDS = 10


class NodeRuntime:
    """One node's pod-IP allocator (10.88.<i>.2 - .254).

    Like CNI's host-local IPAM, it goes on from the last address it gave out rather than taking
    the lowest free one: a restarted pod that got its predecessor's address at once would be
    unreachable until every neighbour's ARP entry for the old veth went stale (seconds), which
    on this bed stalled clients for ~10 s during rolling restarts."""

    def __init__(self, spec: NodeSpec):
        self.spec = spec
        self._by_uid = {}
        self._last = 1
        self._lock = threading.Lock()

    def allocate_ip(self, uid: str) -> str:
        with self._lock:
            if uid in self._by_uid:
                return self._by_uid[uid]
            host = next_free_host(self._last, {int(ip.rsplit(".", 1)[1]) for ip in self._by_uid.values()})
            if host is None:
                raise RuntimeError(f"node {self.spec.name}: no free pod IP in {self.spec.pod_cidr}")
            self._last = host
            ip = f"{self.spec.subnet_prefix}.{host}"
            self._by_uid[uid] = ip
            return ip

    def release_ip(self, uid: str):
        with self._lock:
            self._by_uid.pop(uid, None)


def next_free_host(last: int, used: set, first: int = 2, end: int = 254):
    """The first host number after `last` (wrapping from `end` to `first`) not in `used`."""
    span = end - first + 1
    for i in range(1, span + 1):
        host = first + (last - first + i) % span
        if host not in used:
            return host
    return None


class Agent:
    def __init__(self, args):
        self.api = Client(args.kubeconfig)
        self.state_dir = os.path.abspath(args.state_dir)
        self.bin_dir = os.path.abspath(args.bin_dir)
        self.bridge = args.bridge
        self.gateway = args.apiserver_host
        self.apiserver_host = args.apiserver_host
        self.apiserver_port = args.apiserver_port
        self.hosts_file = os.path.abspath(args.hosts_file) if args.hosts_file else None
        self.pv_dir = os.path.abspath(args.volumes_dir or os.path.join(os.path.dirname(self.state_dir), "volumes"))
        self.backoff_base = args.restart_backoff
        self.resolv_file = os.path.join(self.state_dir, "resolv.conf")
        storage_cap = ephemeral_storage(self.state_dir if os.path.isdir(self.state_dir) else "/")
        specs = [NodeSpec(i + 1, z, args.apiserver_host, args.node_cpu, args.node_memory, args.node_pods, storage_cap)
                 for i, z in enumerate(args.zones.split(","))]
        self.nodes = {s.name: NodeRuntime(s) for s in specs}
        version = self.api.get("/version").get("gitVersion", "v0.0.0")
        self.registrar = NodeRegistrar(self.api, specs, version)
        self.storage = storage.StorageDriver(self.api, self.pv_dir, set(self.nodes))
        self.pods = {}  # uid -> PodRuntime
        self.stop = threading.Event()
        self._host_base = None

    # -- start / stop ---------------------------------------------------------------------------
    def clean_stale(self):
        """Network namespaces left by an agent that died: kill their processes, delete them."""
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            ns = line.split()[0] if line.split() else ""
            if ns.startswith("rivk8s-"):
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                log.info("removed stale netns %s", ns)

    def run(self):
        os.makedirs(self.state_dir, exist_ok=True)
        with open(os.path.join(self.state_dir, "agent.pid"), "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        self.clean_stale()
        # Pods resolve names from the hosts file only. Without this, a lookup that misses it (a
        # reverse lookup, as Python's http.server does on start) waits for the host's DNS
        # servers, which a pod's network namespace cannot reach; with no nameserver glibc asks
        # 127.0.0.1:53 in the pod's namespace and fails at once.
        with open(self.resolv_file, "w", encoding="utf-8") as f:
            f.write("# rivulet local bed: pod names come from /etc/hosts (.k8s/hosts); no DNS server\n"
                    "options timeout:1 attempts:1\n")
        self.registrar.register()
        threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True).start()
        log.info("nodes registered: %s", ", ".join(self.nodes))
        while not self.stop.is_set():
            t0 = time.time()
            for step in (self.sync_pods, self.storage.reconcile, self.sync_hosts):
                try:
                    step()
                except Exception:
                    log.exception("%s failed", getattr(step, "__name__", step))
            self.stop.wait(max(0.1, 1.0 - (time.time() - t0)))
        self.shutdown()

    def shutdown(self):
        log.info("stopping: %d pod(s)", len(self.pods))
        for rt in self.pods.values():
            rt.request_stop(min(rt.grace_seconds(), 5.0))
        for rt in self.pods.values():
            rt.join(timeout=15)
        for name in os.listdir(self.pv_dir) if os.path.isdir(self.pv_dir) else []:
            storage.unmount(os.path.join(self.pv_dir, name))
        for n in self.nodes.values():
            try:
                self.registrar.heartbeat(n.spec, ready=False)
            except Exception as e:
                log.info("could not mark %s not ready: %s", n.spec.name, e)

    def _heartbeats(self):
        while not self.stop.is_set():
            for n in self.nodes.values():
                try:
                    self.registrar.renew_lease(n.spec)
                    self.registrar.heartbeat(n.spec)
                except Exception as e:
                    log.warning("heartbeat of %s failed: %s", n.spec.name, e)
            self.stop.wait(HEARTBEAT_SECONDS)

    # -- pods -----------------------------------------------------------------------------------
    def sync_pods(self):
        pods = self.api.items(core("", "pods"))
        self._pods_seen = pods
        listed = set()
        for pod in pods:
            node = self.nodes.get((pod.get("spec") or {}).get("nodeName"))
            if node is None:
                continue
            meta = pod["metadata"]
            uid = meta["uid"]
            listed.add(uid)
            rt = self.pods.get(uid)
            deleting = bool(meta.get("deletionTimestamp"))
            if rt is None:
                if deleting:
                    self._delete_pod(pod)
                elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue  # Finished before this agent started: nothing to run.
                else:
                    rt = PodRuntime(self, node, pod)
                    self.pods[uid] = rt
                    log.info("pod %s/%s bound to %s: starting", meta["namespace"], meta["name"], node.spec.name)
                    rt.start()
                continue
            rt.pod["metadata"] = meta
            rt.pod["spec"] = pod["spec"]
            if deleting:
                grace = meta.get("deletionGracePeriodSeconds")
                rt.request_stop(float(grace if grace is not None else rt.grace_seconds()))
                if rt.finished:
                    self._delete_pod(pod)
                    del self.pods[uid]
        for uid in list(self.pods):
            if uid not in listed:
                rt = self.pods[uid]
                rt.request_stop(2.0)  # Force-deleted from the API: stop quickly.
                if rt.finished:
                    del self.pods[uid]

    def _delete_pod(self, pod: dict):
        meta = pod["metadata"]
        try:
            self.api.delete(core(meta["namespace"], "pods", meta["name"]),
                            {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                             "preconditions": {"uid": meta["uid"]}})
            log.info("pod %s/%s deleted", meta["namespace"], meta["name"])
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    # -- hosts ----------------------------------------------------------------------------------
    def sync_hosts(self):
        if not self.hosts_file:
            return
        if self._host_base is None:
            try:
                with open(self.hosts_file, encoding="utf-8") as f:
                    self._host_base = f.read()
            except FileNotFoundError:
                with open("/etc/hosts", encoding="utf-8") as f:
                    self._host_base = f.read()
        services = self.api.items(core("", "services"))
        slices = self.api.items("/apis/discovery.k8s.io/v1/endpointslices")
        lines = hosts.entries(getattr(self, "_pods_seen", []), services, slices)
        if hosts.write_in_place(self.hosts_file, hosts.render(self._host_base, lines)):
            log.info("hosts file: %d entries", len(lines))


def install_signals(agent: Agent):
    def handler(signum, _frame):
        log.info("signal %d: stopping", signum)
        agent.stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
