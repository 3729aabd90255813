"""A real Rivulet cluster for the fault suites: one coordinator (rivulet-coordinator, or Apache
ZooKeeper 3.8 from Debian's libzookeeper-java) and three rivulet-broker processes in cluster mode,
racks zone-a/b/c, each on its own loopback address (127.0.0.x) with free ports and its own data
dir; or, for partition tests, each in its own network namespace (see netns.py).

Binaries come from $RIVULET_BIN_DIR (both), or $RIVULET_BROKER_BIN / $RIVULET_COORDINATOR_BIN,
else target/release of the repository."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "coordinator" / "tests" / "py"))

from servers import zk_classpath  # noqa: E402  (Apache ZooKeeper's classpath from the Debian package)

# Short timeouts so that failover happens within seconds (CLUSTER.md, "Test timing").
SESSION_TIMEOUT_MS = 4000
REPLICA_LAG_MS = 2000
REBALANCE_CHECK_S = 2
RACKS = ("zone-a", "zone-b", "zone-c")

# The message an old broker (before cluster mode) exits with; the suite fails on it with a
# clear message rather than a bare start-up timeout.
NOT_BUILT = "not available in this build yet"


class ClusterModeMissing(RuntimeError):
    pass


def bin_path(name: str) -> Path:
    env = {"rivulet-broker": "RIVULET_BROKER_BIN", "rivulet-coordinator": "RIVULET_COORDINATOR_BIN"}[name]
    if os.environ.get(env):
        return Path(os.environ[env])
    if os.environ.get("RIVULET_BIN_DIR"):
        return Path(os.environ["RIVULET_BIN_DIR"]) / name
    return REPO / "target" / "release" / name


_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, never one this process handed out before: the kernel can give
    the same ephemeral port to two bind(0) calls in a row once the first socket is closed, and a
    broker's listener and admin port picked that way collided in CI."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if (host, port) not in _HANDED_OUT:
            _HANDED_OUT.add((host, port))
            return port


def loopback_hosts(n: int) -> list[str]:
    """n distinct 127.0.0.x addresses (x random, so concurrent suites rarely share one; the
    ports are free-picked per address anyway)."""
    base = random.randint(20, 240)
    return [f"127.0.0.{base + i}" for i in range(n)]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls predicate() until it returns a truthy value (returned) or timeout (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # a client call failing mid-failover is "not yet", not an error
            last = f"{type(e).__name__}: {e}"
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {last!r})")


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def four_letter(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out.decode(errors="replace")


class Node:
    """One server process: optional network namespace, log file, signals."""

    name = "node"

    def __init__(self, workdir: Path, host: str, netns: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.netns = netns
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def spawn(self) -> None:
        argv = self.argv()
        if self.netns:
            # `ip netns exec` execs the command itself (no fork), so the pid is the server's.
            argv = ["ip", "netns", "exec", self.netns] + argv
        log = open(self.log_path, "ab")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start {' '.join(argv)}\n".encode())
        log.flush()
        env = {**os.environ, "RUST_BACKTRACE": "1"}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()

    def start(self, timeout: float = 30.0) -> "Node":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if NOT_BUILT in tail:
                    raise ClusterModeMissing(tail.strip().splitlines()[-1])
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up:\n{tail}")
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def term(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the exit (SIGKILL after `timeout`, reported as an error)."""
        if not self.alive():
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.log_tail()}")

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        if self.alive():
            self.resume()  # a SIGSTOPped process does not act on SIGTERM until continued
            try:
                self.term(10)
            except RuntimeError:
                pass

    def restart(self, timeout: float = 30.0) -> "Node":
        assert not self.alive(), f"{self.name} is still running"
        return self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {self.name} log)"


class Coordinator(Node):
    name = "coordinator"
    kind = "rivulet"

    def __init__(self, workdir: Path, host: str = "127.0.0.1", netns: str | None = None, port: int | None = None):
        super().__init__(workdir, host, netns)
        self.port = port or free_port(host)
        self.admin_port = (port + 1) if port else free_port(host)

    @property
    def connect(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [str(bin_path("rivulet-coordinator")), "--client-addr", self.connect,
                "--admin-addr", f"{self.host}:{self.admin_port}", "--data-dir", str(self.workdir / "data"),
                "--tick-time-ms", "200", "--max-session-timeout-ms", "30000", "--log-level", "info"]

    def ready(self) -> bool:
        try:
            return four_letter(self.host, self.port, "ruok", 1.0) == "imok"
        except OSError:
            return False


class ZooKeeper(Node):
    """Apache ZooKeeper 3.8 (Debian's libzookeeper-java) in place of rivulet-coordinator."""

    name = "zookeeper"
    kind = "zookeeper"

    def __init__(self, workdir: Path, host: str = "127.0.0.1", netns: str | None = None, port: int | None = None):
        super().__init__(workdir, host, netns)
        self.port = port or free_port(host)

    @property
    def connect(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self) -> list[str]:
        data = self.workdir / "zkdata"
        data.mkdir(exist_ok=True)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text(f"tickTime=200\ndataDir={data}\nclientPort={self.port}\nclientPortAddress={self.host}\n"
                       "admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n"
                       "maxSessionTimeout=30000\n")
        return ["java", "-Xmx256m", "-cp", zk_classpath(), "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)]

    def ready(self) -> bool:
        try:
            return four_letter(self.host, self.port, "ruok", 1.0) == "imok"
        except OSError:
            return False


class BrokerNode(Node):
    name = "broker"

    def __init__(self, workdir: Path, broker_id: int, rack: str, host: str, coordinator: str,
                 netns: str | None = None, port: int | None = None, admin_port: int | None = None, **flags):
        self.name = f"broker-{broker_id}"
        super().__init__(workdir, host, netns)
        self.broker_id = broker_id
        self.rack = rack
        self.coordinator = coordinator
        self.port = port or free_port(host)
        self.admin_port = admin_port or free_port(host)
        self.data_dir = self.workdir / "data"
        self.flags = {k.replace("_", "-"): str(v) for k, v in flags.items()}

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def argv(self) -> list[str]:
        args = {
            "broker-id": self.broker_id,
            "listen-addr": self.bootstrap,
            "advertised-addr": self.bootstrap,
            "admin-addr": f"{self.host}:{self.admin_port}",
            "data-dir": self.data_dir,
            "rack": self.rack,
            "coordinator": self.coordinator,
            "coordinator-session-timeout-ms": SESSION_TIMEOUT_MS,
            "replica-lag-time-max-ms": REPLICA_LAG_MS,
            "leader-imbalance-check-interval-seconds": REBALANCE_CHECK_S,
            "replica-fetch-backoff-ms": 200,
            "replica-high-watermark-checkpoint-interval-ms": 1000,
            "controlled-shutdown-timeout-ms": 15000,
            "default-replication-factor": 3,
            "offsets-topic-replication-factor": 3,
            "offsets-topic-num-partitions": 3,
            "group-initial-rebalance-delay-ms": 0,
            "log-level": "info",
            **self.flags,
        }
        argv = [str(bin_path("rivulet-broker"))]
        for k, v in args.items():
            argv += [f"--{k}", str(v)]
        return argv

    def ready(self) -> bool:
        return http_status(self.admin_url + "/readyz") == 200

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"


def raw_metadata(bootstrap: str, topic: str, timeout: float = 3.0) -> dict[int, tuple[int, list[int]]]:
    """Metadata v1 asked of one particular broker (confluent-kafka picks its own): partition ->
    (leader, isr), as that broker sees it. Raises OSError when the broker cannot be reached."""
    import struct

    name = topic.encode()
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    client = b"cluster-test"
    msg = struct.pack(">hhi", 3, 1, 1) + struct.pack(">h", len(client)) + client + body
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv(s, 4))[0]
        data = _recv(s, size)[4:]  # after the correlation id
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v

    def string():
        nonlocal off
        (ln,) = take(">h")
        s = data[off:off + max(ln, 0)].decode()
        off += max(ln, 0)
        return s

    (nb,) = take(">i")
    for _ in range(nb):
        take(">i")
        string()
        take(">i")
        string()  # rack
    take(">i")  # controller id
    out = {}
    (nt,) = take(">i")
    for _ in range(nt):
        take(">h")
        string()
        take(">b")  # is_internal
        (np_,) = take(">i")
        for _ in range(np_):
            _err, pid, leader = take(">hii")
            (nr,) = take(">i")
            take(f">{nr}i")
            (ni,) = take(">i")
            isr = list(take(f">{ni}i"))
            out[pid] = (leader, sorted(isr))
    return out


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf
