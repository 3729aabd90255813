"""Probes: the threshold logic (pure, after the kubelet's prober worker) and the three handlers
(httpGet, tcpSocket, exec)."""

import http.client
import socket
import ssl
import subprocess


class ProbeTracker:
    """One probe of one container instance. `reported` is what the kubelet would report:
    readiness starts False, liveness True, startup None (unknown)."""

    def __init__(self, kind: str, spec: dict):
        self.kind = kind
        self.spec = spec
        self.initial_delay = float(spec.get("initialDelaySeconds", 0))
        self.period = float(spec.get("periodSeconds", 10) or 10)
        self.timeout = float(spec.get("timeoutSeconds", 1) or 1)
        self.success_threshold = int(spec.get("successThreshold", 1) or 1)
        self.failure_threshold = int(spec.get("failureThreshold", 3) or 3)
        self.reported = {"readiness": False, "liveness": True, "startup": None}[kind]
        self.last = None
        self.run = 0
        self.next_at = None

    def due(self, now: float, started_at: float) -> bool:
        """Whether to probe now; the first probe comes after initialDelaySeconds."""
        if self.next_at is None:
            self.next_at = started_at + self.initial_delay
        return now >= self.next_at

    def observe(self, ok: bool, now: float):
        """Record one probe result; returns the (possibly unchanged) reported result."""
        self.next_at = now + self.period
        if ok == self.last:
            self.run += 1
        else:
            self.last, self.run = ok, 1
        if ok and self.run >= self.success_threshold:
            self.reported = True
        elif not ok and self.run >= self.failure_threshold:
            self.reported = False
        return self.reported

    def failed(self) -> bool:
        """Liveness and startup: the failure threshold was reached (the container is killed)."""
        return self.reported is False and self.kind in ("liveness", "startup")


def resolve_port(port, container: dict) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def http_get(host: str, spec: dict, container: dict, timeout: float) -> tuple:
    """(ok, message): a status in [200, 400) is success, as the kubelet's HTTP prober."""
    port = resolve_port(spec.get("port"), container)
    host = spec.get("host") or host
    path = spec.get("path") or "/"
    headers = {h["name"]: h.get("value", "") for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/rivulet-node-agent")
    if spec.get("scheme", "HTTP").upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # The kubelet does not verify probe certificates either.
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read(10240)
        return 200 <= resp.status < 400, f"HTTP probe failed with statuscode: {resp.status}"
    except (OSError, http.client.HTTPException) as e:
        return False, f"Get http://{host}:{port}{path}: {e}"
    finally:
        conn.close()


def tcp_socket(host: str, spec: dict, container: dict, timeout: float) -> tuple:
    port = resolve_port(spec.get("port"), container)
    host = spec.get("host") or host
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"dial tcp {host}:{port}: {e}"


def exec_in(pid: int, argv: list, env: dict, timeout: float) -> tuple:
    """Runs argv in the namespaces (net, mount, uts) of the container process `pid`."""
    cmd = ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--"] + list(argv)
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    except OSError as e:
        return False, str(e)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")[-1024:]
    return r.returncode == 0, out


def run_probe(spec: dict, pod_ip: str, container: dict, pid: int, env: dict) -> tuple:
    timeout = float(spec.get("timeoutSeconds", 1) or 1)
    if "httpGet" in spec:
        return http_get(pod_ip, spec["httpGet"], container, timeout)
    if "tcpSocket" in spec:
        return tcp_socket(pod_ip, spec["tcpSocket"], container, timeout)
    if "exec" in spec:
        return exec_in(pid, spec["exec"].get("command") or [], env, timeout)
    return False, "unsupported probe handler (grpc is not implemented by the node agent)"
