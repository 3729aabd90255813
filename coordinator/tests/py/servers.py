"""Start/stop the servers under test: rivulet-coordinator and Apache ZooKeeper 3.8
(from Debian's libzookeeper-java), on free loopback ports."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
JAVA_DIR = Path("/usr/share/java")
ZK_DEPS = ["zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar", "commons-cli.jar",
           "commons-io.jar", "metrics-core.jar", "snappy-java.jar", "netty-all.jar"]


_HANDED_OUT = set()


def free_port():
    """A free loopback port never handed out before in this process (two bind(0) calls in a row
    can return the same port once the first socket is closed)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def four_letter(port, word, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()


def wait_ruok(port, proc, deadline_s=30.0):
    end = time.time() + deadline_s
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            if four_letter(port, "ruok", 1.0) == "imok":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {deadline_s}s")


def zk_classpath():
    out = subprocess.run(["dpkg", "-L", "libzookeeper-java"], capture_output=True, text=True,
                         check=True).stdout.split()
    main = next(p for p in out if p.endswith("/usr/share/java/zookeeper.jar"))
    return ":".join([main] + [str(JAVA_DIR / d) for d in ZK_DEPS])


def coordinator_bin():
    b = os.environ.get("RIVULET_COORDINATOR_BIN")
    if b:
        return b
    for cand in [REPO / "target/release/rivulet-coordinator",
                 Path(os.environ.get("CARGO_TARGET_DIR", "/nonexistent")) / "release/rivulet-coordinator"]:
        if cand.exists():
            return str(cand)
    raise RuntimeError("rivulet-coordinator binary not found; set RIVULET_COORDINATOR_BIN")


class Server:
    name = "?"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.log = None

    @property
    def hosts(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log:
            self.log.close()
            self.log = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Rivulet(Server):
    name = "rivulet"

    def __init__(self, workdir, tick_ms=200, extra=(), env=None):
        super().__init__(workdir)
        self.admin_port = free_port()
        self.data_dir = self.workdir / "data"
        self.tick_ms = tick_ms
        self.extra = list(extra)
        self.env = env

    def start(self):
        self.log = open(self.workdir / "rivulet.log", "ab")
        cmd = [coordinator_bin(), "--client-addr", self.hosts,
               "--admin-addr", f"127.0.0.1:{self.admin_port}",
               "--data-dir", str(self.data_dir), "--tick-time-ms", str(self.tick_ms),
               "--container-check-interval-ms", "500", "--max-session-timeout-ms", "30000",
               "--log-level", "info"] + self.extra
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(self.env or {})})
        wait_ruok(self.port, self.proc)
        return self


class ApacheZK(Server):
    name = "zookeeper"

    def __init__(self, workdir, tick_ms=200):
        super().__init__(workdir)
        self.tick_ms = tick_ms

    def start(self):
        data = self.workdir / "zkdata"
        data.mkdir(exist_ok=True)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text(f"tickTime={self.tick_ms}\ndataDir={data}\nclientPort={self.port}\n"
                       "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                       "4lw.commands.whitelist=*\nmaxClientCnxns=0\nmaxSessionTimeout=30000\n")
        self.log = open(self.workdir / "zookeeper.log", "ab")
        cmd = ["java", "-Xmx512m", "-cp", zk_classpath(),
               "-Dzookeeper.extendedTypesEnabled=true",
               "-Dznode.container.checkIntervalMs=500",
               "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ruok(self.port, self.proc, 60.0)
        return self
