#!/usr/bin/env python3
"""Security benchmark for rivulet-broker (`make bench-security`). Prints figures, asserts nothing.

One broker process on loopback with four listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
TLS by a CA and certificate made here with the openssl CLI, users created at start
(--bootstrap-scram-users-file, SCRAM-SHA-512 4096 iterations):

1. Connection set-up, from client processes on the same machine (--workers, default 2) for
   --handshake-secs each:
   - TLS connections/s on the SSL listener: TCP connect + TLS handshake + one ApiVersions round
     trip (which also delivers TLS 1.3 session tickets), with full handshakes (TLS 1.3 and 1.2)
     and resumed ones (the previous connection's session offered again);
   - SCRAM-SHA-512 logins/s on SASL_SSL (connect + full TLS handshake + SaslHandshake +
     SaslAuthenticate x2, server signature checked) and on SASL_PLAINTEXT;
   - the broker's CPU time per connection. The clients are Python's ssl module (OpenSSL) and a
     SCRAM client written here; the client caches the PBKDF2 salted password (the server never
     runs PBKDF2 for SCRAM), so the figures are the broker's cost, not the client's.
2. Produce and consume throughput with rivulet-loadgen (librdkafka, the same client for every
   row), 1 partition, acks=1, over PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512), with the
   authorizer off and on (`--authorizer simple`, prefixed ALLOW ACLs Write/Read/Describe for the
   benchmark user and for User:ANONYMOUS on the PLAINTEXT/SSL listeners), 100 B and 1 KiB
   messages; median of --repeats runs interleaved across the modes; broker CPU-seconds per GB
   moved and peak RSS.

Usage:
  bench_security.py --broker target/release/rivulet-broker --loadgen target/release/rivulet-loadgen
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "loadgen" / "bench"))

from bench_broker import cpu_seconds, free_ports, loadavg, machine, proc_status_kib, start_ready  # noqa: E402

USERS = {"admin": "admin-secret", "bench": "bench-secret"}
LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


# ---- PKI ------------------------------------------------------------------------------------

def make_pki(d: Path) -> Path:
    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Rivulet bench CA",
         "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key",
         "-out", "broker.csr")
    (d / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    ossl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-out", "broker.pem", "-extfile", "broker.ext")
    (d / "users").write_text("".join(f"{u}={p}\n" for u, p in USERS.items()))
    return d


# ---- the broker -----------------------------------------------------------------------------

class SecureBroker:
    def __init__(self, binary: str, workdir: Path, pki: Path, authorizer: bool):
        self.data = Path(tempfile.mkdtemp(prefix="bench-sec-", dir=workdir))
        ports = free_ports(len(LISTENERS) + 1)
        self.ports = dict(zip(LISTENERS, ports))
        self.admin_port = ports[-1]
        self.pki = pki
        self.log = open(self.data / "broker.log", "wb")
        argv = [binary, "--listeners", ",".join(f"{n}://127.0.0.1:{p}" for n, p in self.ports.items()),
                "--inter-broker-listener-name", "PLAINTEXT",
                "--ssl-cert-file", str(pki / "broker.pem"), "--ssl-key-file", str(pki / "broker.key"),
                "--bootstrap-scram-users-file", str(pki / "users"),
                "--admin-addr", f"127.0.0.1:{self.admin_port}", "--data-dir", str(self.data / "data"),
                "--log-level", "warn"]
        if authorizer:
            argv += ["--authorizer", "simple", "--super-users", "User:admin"]
        self.proc = start_ready(argv, self.log, self.admin_port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def addr(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def client_props(self, listener: str, user: str = "bench") -> dict[str, str]:
        """librdkafka properties of a client on `listener` (as `user` on SASL listeners)."""
        props = {"bootstrap.servers": self.addr(listener), "security.protocol": listener}
        if listener.endswith("SSL"):
            props["ssl.ca.location"] = str(self.pki / "ca.pem")
        if listener.startswith("SASL"):
            props.update({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": USERS[user]})
        return props

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


# ---- Kafka framing and a SCRAM client (the handshake benchmark's own client) ------------------

def kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key: int, version: int, corr: int, body: bytes) -> bytes:
    msg = struct.pack(">hhi", api_key, version, corr) + kstr("bench-security") + body
    return struct.pack(">i", len(msg)) + msg


def recv_exact(s, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the broker")
        out += chunk
    return bytes(out)


def roundtrip(s, frame: bytes) -> bytes:
    """Sends one request, returns the response body after the correlation id."""
    s.sendall(frame)
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    return recv_exact(s, n)[4:]


API_VERSIONS_V0 = request(18, 0, 1, b"")
SALTED: dict[tuple[bytes, int], bytes] = {}


def scram_login(s, user: str, password: str) -> None:
    """SaslHandshake v1 + SaslAuthenticate v1 (client-first, client-final), SCRAM-SHA-512; raises
    unless the broker accepted the proof and proved it knows the credential."""
    body = roundtrip(s, request(17, 1, 2, kstr("SCRAM-SHA-512")))
    if struct.unpack(">h", body[:2])[0] != 0:
        raise RuntimeError(f"SaslHandshake error {struct.unpack('>h', body[:2])[0]}")

    def authenticate(corr: int, token: bytes) -> bytes:
        b = roundtrip(s, request(36, 1, corr, struct.pack(">i", len(token)) + token))
        err, mlen = struct.unpack(">hh", b[:4])
        off = 4 + max(mlen, 0)
        if err != 0:
            raise RuntimeError(f"SaslAuthenticate error {err}: {b[4:off].decode(errors='replace')}")
        (tlen,) = struct.unpack(">i", b[off:off + 4])
        return b[off + 4:off + 4 + tlen]

    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={cnonce}"
    server_first = authenticate(3, f"n,,{bare}".encode()).decode()
    f = dict(kv.split("=", 1) for kv in server_first.split(","))
    salt, iters = base64.b64decode(f["s"]), int(f["i"])
    salted = SALTED.get((salt, iters))
    if salted is None:
        salted = SALTED[(salt, iters)] = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iters)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha512).digest()
    stored = hashlib.sha512(client_key).digest()
    without_proof = f"c=biws,r={f['r']}"
    auth = f"{bare},{server_first},{without_proof}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, hmac.new(stored, auth, hashlib.sha512).digest()))
    final = authenticate(4, f"{without_proof},p={base64.b64encode(proof).decode()}".encode()).decode()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha512).digest()
    if final != "v=" + base64.b64encode(hmac.new(server_key, auth, hashlib.sha512).digest()).decode():
        raise RuntimeError("the broker's SCRAM signature does not verify")


def tls_context(ca: str, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def connect_worker(kind: str, port: int, ca: str, secs: float, out) -> None:
    """One client process: connections of `kind` back to back for `secs`; puts (count, resumed,
    elapsed, error)."""
    count = resumed = 0
    error = None
    v13 = ssl.TLSVersion.TLSv1_3
    ctx = None
    if kind.startswith("tls") or kind == "scram-sasl-ssl":
        ctx = tls_context(ca, ssl.TLSVersion.TLSv1_2 if "1.2" in kind else v13)
    reuse = kind.endswith("resumed")
    session = None
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < secs:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = raw
            try:
                if ctx is not None:
                    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session if reuse else None)
                    resumed += s.session_reused
                if kind.startswith("scram"):
                    scram_login(s, "bench", USERS["bench"])
                else:
                    roundtrip(s, API_VERSIONS_V0)
                    if reuse:
                        session = s.session
            finally:
                s.close()
            count += 1
    except Exception as e:  # reported, not raised: the parent prints what failed
        error = f"{type(e).__name__}: {e}"
    out.put((count, resumed, time.monotonic() - t0, error))


def measure_connections(b: SecureBroker, kind: str, listener: str, workers: int, secs: float) -> dict:
    q = mp.get_context("fork").Queue()
    ps = [mp.get_context("fork").Process(target=connect_worker,
                                         args=(kind, b.ports[listener], str(b.pki / "ca.pem"), secs, q))
          for _ in range(workers)]
    c0 = cpu_seconds(b.pid)
    for p in ps:
        p.start()
    res = [q.get(timeout=secs + 60) for _ in ps]
    for p in ps:
        p.join()
    cpu = cpu_seconds(b.pid) - c0
    count = sum(r[0] for r in res)
    elapsed = max(r[2] for r in res)
    errors = [r[3] for r in res if r[3]]
    return {"kind": kind, "listener": listener, "workers": workers, "connections": count,
            "resumed": sum(r[1] for r in res), "per_s": count / elapsed if elapsed else 0.0,
            "broker_cpu_ms_per_conn": 1000 * cpu / count if count else float("nan"), "errors": errors}


# ---- throughput -------------------------------------------------------------------------------

def write_props(path: Path, props: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items() if k != "bootstrap.servers"))
    return path


def loadgen(binary: str, bootstrap: str, props: Path, *args: str, timeout: float = 600) -> dict:
    r = subprocess.run([binary, "-b", bootstrap, "-F", str(props), *args], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        raise RuntimeError(f"rivulet-loadgen {' '.join(args)} failed ({r.returncode})")
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def admin_client(b: SecureBroker):
    """The super user's confluent-kafka AdminClient on SASL_SSL, one per broker."""
    if getattr(b, "_admin", None) is None:
        from confluent_kafka.admin import AdminClient
        p = b.client_props("SASL_SSL", "admin")
        p["sasl.mechanisms"] = p.pop("sasl.mechanism")
        b._admin = AdminClient(p)
    return b._admin


def grant(b: SecureBroker) -> int:
    """The ACLs of the authorizer-on rows: prefixed ALLOW on bench- topics and loadgen groups."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    acls = []
    for principal in ("User:bench", "User:ANONYMOUS"):
        for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE):
            acls.append(AclBinding(ResourceType.TOPIC, "bench-", ResourcePatternType.PREFIXED, principal, "*",
                                   op, AclPermissionType.ALLOW))
        acls.append(AclBinding(ResourceType.GROUP, "rivulet-loadgen", ResourcePatternType.PREFIXED, principal, "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
    for f in admin_client(b).create_acls(acls).values():
        f.result(timeout=30)
    return len(acls)


def create_topic(b: SecureBroker, topic: str) -> None:
    from confluent_kafka.admin import NewTopic
    admin_client(b).create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)


def delete_topic(b: SecureBroker, topic: str) -> None:
    try:
        admin_client(b).delete_topics([topic])[topic].result(timeout=30)
    except Exception as e:  # only disk space is at stake
        print(f"  (could not delete {topic}: {e})", file=sys.stderr)


def throughput_run(b: SecureBroker, a, listener: str, size: int, count: int, tag: str) -> dict:
    topic = f"bench-{listener.lower().replace('_', '-')}-{size}-{tag}"
    props = write_props(b.data / f"{listener}.properties", b.client_props(listener))
    create_topic(b, topic)
    try:
        c0 = cpu_seconds(b.pid)
        prod = loadgen(a.loadgen, b.addr(listener), props, "produce", "--topic", topic, "--messages", str(count),
                       "--size", str(size), "--acks", "1")
        c1 = cpu_seconds(b.pid)
        cons = loadgen(a.loadgen, b.addr(listener), props, "consume", "--topic", topic)
        c2 = cpu_seconds(b.pid)
    finally:
        delete_topic(b, topic)
    if cons["messages"] != prod["messages"]:
        raise RuntimeError(f"consumed {cons['messages']} of {prod['messages']} messages")
    return {"produce_mb_s": prod["mb_per_s"], "produce_msgs_s": prod["msgs_per_s"],
            "consume_mb_s": cons["mb_per_s"], "consume_msgs_s": cons["msgs_per_s"],
            "produce_cpu_s_per_gb": (c1 - c0) / (prod["bytes"] / 1e9),
            "consume_cpu_s_per_gb": (c2 - c1) / (cons["bytes"] / 1e9)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--mib-per-run", type=int, default=int(os.environ.get("BENCH_MIB_PER_RUN", "256")),
                    help="payload MiB per 1 KiB throughput run (100 B runs send half of it)")
    ap.add_argument("--repeats", type=int, default=5, help="throughput runs per row (the median is printed)")
    ap.add_argument("--handshake-secs", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2, help="client processes of the connection benchmark")
    ap.add_argument("--json-out", help="also write all results here")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    a = ap.parse_args()
    for exe in (a.broker, a.loadgen):
        if not os.access(exe, os.X_OK):
            print(f"{exe} is not an executable; run `make build` first", file=sys.stderr)
            return 2
    if shutil.which("openssl") is None:
        print("openssl is needed for the certificates (make deps)", file=sys.stderr)
        return 2

    results: dict = {"machine": machine(), "loadavg_start": loadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "connections": [], "throughput": [], "rss": {}}
    print(f"machine: {results['machine']}, load average {results['loadavg_start']}", file=sys.stderr)
    failures: list[str] = []
    pki = make_pki(Path(tempfile.mkdtemp(prefix="bench-sec-pki-", dir=a.workdir)))
    brokers: dict[str, SecureBroker] = {}
    try:
        brokers["off"] = SecureBroker(a.broker, Path(a.workdir), pki, authorizer=False)
        b = brokers["off"]
        time.sleep(0.5)
        results["rss"]["idle_kib"] = proc_status_kib(b.pid, "VmRSS")
        for kind, listener in [("tls1.3-full", "SSL"), ("tls1.3-resumed", "SSL"), ("tls1.2-full", "SSL"),
                               ("tls1.2-resumed", "SSL"), ("scram-sasl-ssl", "SASL_SSL"),
                               ("scram-sasl-plaintext", "SASL_PLAINTEXT"), ("plaintext", "PLAINTEXT")]:
            r = measure_connections(b, kind, listener, a.workers, a.handshake_secs)
            results["connections"].append(r)
            print(f"  {kind:<22} {r['per_s']:>8.0f}/s  resumed {r['resumed']}/{r['connections']}  "
                  f"broker {r['broker_cpu_ms_per_conn']:.3f} CPU-ms each", file=sys.stderr)
            failures += [f"{kind}: {e}" for e in r["errors"]]

        brokers["on"] = SecureBroker(a.broker, Path(a.workdir), pki, authorizer=True)
        results["acls"] = grant(brokers["on"])

        rows: dict[tuple, list[dict]] = {}
        for rep in range(a.repeats):
            for size in (100, 1024):
                count = a.mib_per_run * 2**20 // size // (2 if size == 100 else 1)
                for auth in ("off", "on"):
                    for listener in ("PLAINTEXT", "SSL", "SASL_SSL"):
                        key = (size, listener, auth)
                        try:
                            r = throughput_run(brokers[auth], a, listener, size, count, f"{auth}-{rep}")
                            r["messages"] = count
                            rows.setdefault(key, []).append(r)
                            print(f"  {size:>5} B {listener:<9} authorizer {auth:<3}: produce {r['produce_mb_s']:.1f} MB/s, "
                                  f"consume {r['consume_mb_s']:.1f} MB/s", file=sys.stderr)
                        except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                            failures.append(f"{size} B {listener} authorizer {auth}: {e}")
        for (size, listener, auth), runs in rows.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "messages"}
            results["throughput"].append({"size": size, "listener": listener, "authorizer": auth,
                                          "messages": runs[0]["messages"], "runs": len(runs), **med})
        results["rss"]["peak_kib"] = {k: proc_status_kib(v.pid, "VmHWM") for k, v in brokers.items()}
    finally:
        for v in brokers.values():
            v.stop()
        shutil.rmtree(pki, ignore_errors=True)
    results["loadavg_end"] = loadavg()
    results["failures"] = failures

    print()
    print(f"Security benchmark, {results['date']} ({results['machine']}, loopback)")
    print(f"connection set-up, {a.workers} client processes x {a.handshake_secs:g} s, each connection closed after:")
    print(f"  {'what':<46} {'per s':>8} {'resumed':>9} {'broker CPU-ms each':>19}")
    labels = {
        "plaintext": "PLAINTEXT connect + ApiVersions",
        "tls1.3-full": "SSL TLS 1.3 full handshake + ApiVersions",
        "tls1.3-resumed": "SSL TLS 1.3 resumed + ApiVersions",
        "tls1.2-full": "SSL TLS 1.2 full handshake + ApiVersions",
        "tls1.2-resumed": "SSL TLS 1.2 resumed + ApiVersions",
        "scram-sasl-ssl": "SASL_SSL SCRAM-SHA-512 login (full TLS 1.3)",
        "scram-sasl-plaintext": "SASL_PLAINTEXT SCRAM-SHA-512 login",
    }
    for r in results["connections"]:
        print(f"  {labels[r['kind']]:<46} {r['per_s']:>8.0f} {r['resumed']:>9} {r['broker_cpu_ms_per_conn']:>19.3f}")
    print()
    print(f"throughput, rivulet-loadgen (librdkafka), 1 partition, acks=1, median of {a.repeats} run(s); "
          f"authorizer on = --authorizer simple with {results.get('acls', 0)} prefixed ALLOW ACLs:")
    print(f"{'size':>6} {'listener':<9} {'authz':<5} {'messages':>9} | {'produce MB/s':>12} {'msgs/s':>10} {'cpu-s/GB':>8} | "
          f"{'consume MB/s':>12} {'msgs/s':>10} {'cpu-s/GB':>8}")
    for r in sorted(results["throughput"], key=lambda r: (r["size"], r["authorizer"], LISTENERS.index(r["listener"]))):
        print(f"{r['size']:>6} {r['listener']:<9} {r['authorizer']:<5} {r['messages']:>9} | "
              f"{r['produce_mb_s']:>12.1f} {r['produce_msgs_s']:>10.0f} {r['produce_cpu_s_per_gb']:>8.2f} | "
              f"{r['consume_mb_s']:>12.1f} {r['consume_msgs_s']:>10.0f} {r['consume_cpu_s_per_gb']:>8.2f}")
    print()
    peak = results["rss"].get("peak_kib", {})
    print(f"broker RSS: idle {results['rss'].get('idle_kib', 0) / 1024:.1f} MiB; peak (VmHWM) authorizer off "
          f"{peak.get('off', 0) / 1024:.1f} MiB (connection benchmark included), on {peak.get('on', 0) / 1024:.1f} MiB")
    print(f"load average (1/5/15 min): {results['loadavg_start']} before, {results['loadavg_end']} after")
    for f in failures:
        print(f"FAILED: {f}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(results, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
