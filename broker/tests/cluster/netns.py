"""Network namespaces for partition tests: a hub namespace holding a bridge, and one namespace
per node (coordinator, brokers, the test client) joined to the bridge by a veth pair, on a private
/24 that exists only inside these namespaces (the host's own network is not touched).

Cuts, with iproute2 only:
- isolate(node): the node's bridge port goes down — it reaches nobody and nobody reaches it.
- cut(node, peers): blackhole routes in the node's namespace towards `peers` — a partial
  partition (e.g. a leader that still hears clients but neither the coordinator nor brokers).

The test process itself enters the client namespace (setns on its main thread), so the
confluent-kafka clients and HTTP probes it creates afterwards live there too."""

from __future__ import annotations

import ctypes
import os
import subprocess
import uuid

CLONE_NEWNET = 0x40000000
SUBNET = "10.251.77"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def unavailable_reason() -> str | None:
    """None if namespaces work here, else why not (the partition tests skip with it)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"rvprobe{uuid.uuid4().hex[:6]}"
    try:
        r = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "iproute2 (`ip`) is not installed"
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


class Net:
    def __init__(self, nodes: list[str]):
        self.tag = uuid.uuid4().hex[:5]
        self.hub = f"rv{self.tag}-hub"
        self.ns = {n: f"rv{self.tag}-{n}" for n in nodes}
        self.addr = {n: f"{SUBNET}.{i + 1}" for i, n in enumerate(nodes)}
        self.port = {n: f"v{self.tag}{i}" for i, n in enumerate(nodes)}  # bridge-side veth names
        self._orig_fd: int | None = None
        self._created: list[str] = []

    def create(self) -> "Net":
        ip("netns", "add", self.hub)
        self._created.append(self.hub)
        ip("-n", self.hub, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for n, ns in self.ns.items():
            ip("netns", "add", ns)
            self._created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            # Both ends are created directly in their namespaces.
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", self.port[n], "netns", self.hub)
            ip("-n", ns, "addr", "add", f"{self.addr[n]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", self.hub, "link", "set", self.port[n], "master", "br0")
            ip("-n", self.hub, "link", "set", self.port[n], "up")
        return self

    def enter(self, node: str) -> None:
        """Moves this thread (the test's main thread) into `node`'s namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        self._orig_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.ns[node]}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the client namespace failed")
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._orig_fd is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(self._orig_fd, CLONE_NEWNET)
            os.close(self._orig_fd)
            self._orig_fd = None

    def isolate(self, node: str) -> None:
        ip("-n", self.hub, "link", "set", self.port[node], "down")

    def heal_isolation(self, node: str) -> None:
        ip("-n", self.hub, "link", "set", self.port[node], "up")

    def cut(self, node: str, peers: list[str]) -> None:
        for p in peers:
            ip("-n", self.ns[node], "route", "add", "blackhole", f"{self.addr[p]}/32")

    def heal_cut(self, node: str, peers: list[str]) -> None:
        for p in peers:
            ip("-n", self.ns[node], "route", "del", "blackhole", f"{self.addr[p]}/32", check=False)

    def destroy(self) -> None:
        self.leave()
        for ns in reversed(self._created):
            ip("netns", "del", ns, check=False)
        self._created.clear()
