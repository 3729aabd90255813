"""A real rivulet-broker process for the client suites: free loopback ports, its own data dir,
readiness by /readyz, SIGTERM / kill -9 / restart on the same data dir, and its log for reports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BROKER_BIN = Path(os.environ.get("RIVULET_BROKER_BIN", REPO / "target" / "release" / "rivulet-broker"))


_HANDED_OUT = set()


def free_port() -> int:
    """A free loopback port never handed out before in this process (two bind(0) calls in a row
    can return the same port once the first socket is closed)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Broker:
    """One broker process. Flags are given without the leading dashes: {"log-segment-bytes": 4096}."""

    def __init__(self, data_dir: Path, log_path: Path, **flags):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.admin_port = free_port()
        self.flags = {k.replace("_", "-"): str(v) for k, v in flags.items()}
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def argv(self) -> list[str]:
        args = {
            "listen-addr": self.bootstrap,
            "advertised-addr": self.bootstrap,
            "admin-addr": f"127.0.0.1:{self.admin_port}",
            "data-dir": str(self.data_dir),
            "broker-id": "0",
            "log-level": "info",
            **self.flags,
        }
        argv = [str(BROKER_BIN)]
        for k, v in args.items():
            argv += [f"--{k}", v]
        return argv

    def start(self, timeout: float = 30.0) -> "Broker":
        if not BROKER_BIN.is_file():
            raise RuntimeError(f"broker binary {BROKER_BIN} missing: build it (make build) or set RIVULET_BROKER_BIN")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {' '.join(self.argv())}\n".encode())
        log.flush()
        # RUST_BACKTRACE so that a panic, should one happen, is diagnosable from the log.
        env = {**os.environ, "RUST_BACKTRACE": "1"}
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            if self.http_status("/readyz") == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"broker not ready within {timeout} s:\n{self.log_tail()}")

    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def http_status(self, path: str) -> int | None:
        try:
            return self.http_get(path, timeout=1.0)[0]
        except OSError:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(f"broker ignored SIGTERM for {timeout} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, timeout: float = 30.0) -> "Broker":
        """Start again on the same data dir and ports (after stop() or kill9())."""
        assert not self.alive()
        return self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def pid(self) -> int:
        return self.proc.pid


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls predicate() until it returns a truthy value (returned) or timeout (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value {last!r})")
