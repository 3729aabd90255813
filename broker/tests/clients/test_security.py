"""Authenticated clients (issue 14): named listeners, TLS, mutual TLS, SASL PLAIN and
SCRAM-SHA-256/512 with real clients (confluent-kafka, kafka-python, kcat), and the refusals.

Certificates are generated per test session with the openssl CLI: a CA, a broker certificate for
127.0.0.1/localhost and a client certificate `CN=alice,OU=eng,O=Example`."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from harness import free_port

ADMIN_PW = "admin-secret"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str = "ca"):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=Rivulet test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_cert(d: Path, name: str, subj: str, ca: str = "ca", san: str | None = None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.pem", "-extfile", str(ext), cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d)
    make_cert(d, "broker", "/CN=broker", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "alice", "/O=Example/OU=eng/CN=alice")
    make_ca(d, "other")
    make_cert(d, "mallory", "/CN=mallory", ca="other")
    return d


class SecureBroker:
    def __init__(self, broker, pki: Path, ports: dict[str, int]):
        self.b = broker
        self.pki = pki
        self.ports = ports

    def addr(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"


@pytest.fixture(scope="module")
def secure(tmp_path_factory, pki):
    from harness import Broker
    d = tmp_path_factory.mktemp("secure-broker")
    b = Broker(d / "data", d / "broker.log", num_partitions=1)
    ports = {"PLAINTEXT": b.port, "SASL_SSL": free_port(), "SSL": free_port(), "SASL_PLAINTEXT": free_port(),
             "TLS_ONLY": free_port()}
    listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
    b.flags.update({
        "listeners": listeners,
        "listener-security-protocol-map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,"
                                          "SASL_PLAINTEXT:SASL_PLAINTEXT,TLS_ONLY:SSL",
        # ssl.client.auth=required broker-wide, but not on TLS_ONLY (Kafka's
        # listener.name.tls_only.ssl.client.auth=none).
        "listener-ssl-client-auth": "TLS_ONLY:none",
        "inter-broker-listener-name": "PLAINTEXT",
        "ssl-cert-file": str(pki / "broker.pem"),
        "ssl-key-file": str(pki / "broker.key"),
        "ssl-ca-file": str(pki / "ca.pem"),
        "ssl-client-auth": "required",
        "ssl-reload-interval-ms": "200",
        "connection-failed-authentication-delay-ms": "50",
        "log-level": "info,rivulet_broker=debug",
    })
    b.start()
    s = SecureBroker(b, pki, ports)
    admin = AdminClient({"bootstrap.servers": s.addr("PLAINTEXT")})
    ups = []
    for user, pw in [("admin", ADMIN_PW), ("alice", "alice-pw"), ("bob", "bob-pw")]:
        ups.append(UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), pw.encode()))
    ups.append(UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"carol-pw"))
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=20)
    yield s
    b.stop()


def sasl_conf(s: SecureBroker, mech: str, user: str, pw: str, listener="SASL_SSL") -> dict:
    c = {
        "bootstrap.servers": s.addr(listener),
        "security.protocol": listener.lower(),
        "sasl.mechanisms": mech,
        "sasl.username": user,
        "sasl.password": pw,
    }
    if listener == "SASL_SSL":
        c["ssl.ca.location"] = str(s.pki / "ca.pem")
    return c


def round_trip(conf: dict, n: int = 20) -> list[bytes]:
    topic = f"sec-{uuid.uuid4().hex[:10]}"
    errors = []
    p = Producer({**conf, "acks": "all", "enable.idempotence": True, "message.timeout.ms": 20000})
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [f"m{i}".encode() for i in range(n)]
    return got


def auth_error(conf: dict) -> str:
    """What a producer that cannot authenticate reports."""
    seen = []
    p = Producer({**conf, "error_cb": lambda e: seen.append(e), "message.timeout.ms": 5000})
    p.produce("never-written", b"x")
    p.flush(8)
    return " ".join(str(e) for e in seen)


def metric(s: SecureBroker, name: str) -> float:
    _, text = s.b.http_get("/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_credentials_are_described_not_revealed(secure):
    admin = AdminClient({"bootstrap.servers": secure.addr("PLAINTEXT")})
    desc = {u: f.result(timeout=20) for u, f in admin.describe_user_scram_credentials(["alice", "carol"]).items()}
    assert [(i.mechanism, i.iterations) for i in desc["alice"].scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_512, 4096)]
    assert [(i.mechanism, i.iterations) for i in desc["carol"].scram_credential_infos] == [(ScramMechanism.SCRAM_SHA_256, 8192)]
    stored = (secure.b.data_dir / "scram-credentials.json").read_text()
    assert "salt=" in stored and "stored_key=" in stored and "alice-pw" not in stored
    assert "alice-pw" not in secure.b.log_path.read_text()


@pytest.mark.parametrize("mech,user,pw", [
    ("SCRAM-SHA-512", "alice", "alice-pw"),
    ("SCRAM-SHA-256", "carol", "carol-pw"),
    ("PLAIN", "bob", "bob-pw"),
])
def test_confluent_round_trip_over_sasl_ssl(secure, mech, user, pw):
    round_trip(sasl_conf(secure, mech, user, pw))


def test_sasl_plaintext_listener(secure):
    round_trip(sasl_conf(secure, "SCRAM-SHA-512", "alice", "alice-pw", listener="SASL_PLAINTEXT"), n=5)


def test_metadata_advertises_the_listener_asked(secure):
    for listener, conf in [
        ("SASL_SSL", sasl_conf(secure, "SCRAM-SHA-512", "alice", "alice-pw")),
        ("PLAINTEXT", {"bootstrap.servers": secure.addr("PLAINTEXT")}),
    ]:
        md = AdminClient(conf).list_topics(timeout=20)
        assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", secure.ports[listener])], listener


@pytest.mark.parametrize("user,pw", [("alice", "wrong"), ("nobody", "whatever")])
def test_wrong_password_and_unknown_user_are_refused(secure, user, pw):
    before = metric(secure, "rivulet_failed_authentication")
    for mech in ["SCRAM-SHA-512", "PLAIN"]:
        err = auth_error(sasl_conf(secure, mech, user, pw))
        assert "Authentication failed" in err or "SASL authentication error" in err, err
    assert metric(secure, "rivulet_failed_authentication") >= before + 2
    assert pw not in secure.b.log_path.read_text()


def test_no_authentication_on_a_sasl_listener_is_refused(secure):
    # A Metadata request straight away, without SaslHandshake: the broker closes the connection.
    with socket.create_connection(("127.0.0.1", secure.ports["SASL_PLAINTEXT"]), timeout=5) as s:
        body = struct.pack(">hhih", 3, 1, 7, 1) + b"t" + struct.pack(">i", -1)
        s.sendall(struct.pack(">i", len(body)) + body)
        assert s.recv(100) == b""
    err = auth_error({"bootstrap.servers": secure.addr("SASL_PLAINTEXT")})
    assert err  # librdkafka sees the connection drop


def test_kafka_python_scram_and_plain(secure):
    ctx = ssl.create_default_context(cafile=str(secure.pki / "ca.pem"))
    for mech, user, pw in [("SCRAM-SHA-512", "alice", "alice-pw"), ("SCRAM-SHA-256", "carol", "carol-pw"), ("PLAIN", "bob", "bob-pw")]:
        kafka_python_round_trip(dict(bootstrap_servers=secure.addr("SASL_SSL"), security_protocol="SASL_SSL",
                                     ssl_context=ctx, sasl_mechanism=mech, sasl_plain_username=user,
                                     sasl_plain_password=pw))


def kafka_python_round_trip(conf: dict) -> str:
    """Five records produced and read back by kafka-python with `conf`; returns the topic."""
    from kafka import KafkaConsumer, KafkaProducer
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    p = KafkaProducer(**conf)
    for i in range(5):
        p.send(topic, f"v{i}".encode()).get(timeout=20)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **conf)
    assert [m.value for m in c][:5] == [f"v{i}".encode() for i in range(5)]
    c.close()
    return topic


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_scram_sha_512_over_sasl_ssl(secure):
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    common = ["-b", secure.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
              "-X", "sasl.username=alice", "-X", "sasl.password=alice-pw", "-X", f"ssl.ca.location={secure.pki / 'ca.pem'}"]
    # Debian 12's kcat links librdkafka 2.0.2, whose SCRAM client repeats its nonce in the final
    # message; Kafka accepts that, and so must we.
    put = subprocess.run(["kcat", *common, "-P", "-t", topic], input=b"one\ntwo\n", capture_output=True, timeout=30)
    assert put.returncode == 0, put.stderr.decode()[-2000:]
    out = subprocess.run(["kcat", *common, "-C", "-t", topic, "-e", "-o", "beginning"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.split() == [b"one", b"two"]
    bad = subprocess.run(["kcat", *common[:-4], "-X", "sasl.password=nope", "-X", f"ssl.ca.location={secure.pki / 'ca.pem'}", "-L"],
                         capture_output=True, timeout=30)
    assert bad.returncode != 0


def test_mutual_tls_principal_is_the_certificate_subject(secure):
    conf = {"bootstrap.servers": secure.addr("SSL"), "security.protocol": "ssl",
            "ssl.ca.location": str(secure.pki / "ca.pem"),
            "ssl.certificate.location": str(secure.pki / "alice.pem"), "ssl.key.location": str(secure.pki / "alice.key")}
    round_trip(conf, n=5)
    assert "principal=User:CN=alice,OU=eng,O=Example" in secure.b.log_path.read_text()
    # No client certificate, or one from another CA: the handshake fails.
    for extra in [{}, {"ssl.certificate.location": str(secure.pki / "mallory.pem"), "ssl.key.location": str(secure.pki / "mallory.key")}]:
        c = {"bootstrap.servers": secure.addr("SSL"), "security.protocol": "ssl", "ssl.ca.location": str(secure.pki / "ca.pem"), **extra}
        assert auth_error(c)


def test_client_certificates_are_asked_for_per_listener(secure):
    """--ssl-client-auth required covers the SSL listener; --listener-ssl-client-auth TLS_ONLY:none
    lets a client without a certificate in on the other SSL listener, encrypted, as
    User:ANONYMOUS; the SSL listener still refuses it."""
    no_cert = {"security.protocol": "ssl", "ssl.ca.location": str(secure.pki / "ca.pem")}
    round_trip({"bootstrap.servers": secure.addr("TLS_ONLY"), **no_cert}, n=3)
    assert auth_error({"bootstrap.servers": secure.addr("SSL"), **no_cert})


def test_a_client_auth_override_for_an_unknown_listener_is_refused_at_start(tmp_path):
    from harness import Broker
    b = Broker(tmp_path / "data", tmp_path / "broker.log")
    b.flags.update({"listeners": f"PLAINTEXT://127.0.0.1:{b.port}", "listener-ssl-client-auth": "PLAINTEXT:required"})
    r = subprocess.run(b.argv(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "PLAINTEXT is not an SSL or SASL_SSL listener" in r.stderr + r.stdout, r.stderr


def mtls_files(s: SecureBroker, who: str = "alice") -> dict[str, str]:
    return {"ca": str(s.pki / "ca.pem"), "cert": str(s.pki / f"{who}.pem"), "key": str(s.pki / f"{who}.key")}


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_over_mutual_tls(secure):
    f = mtls_files(secure)
    topic = f"kcat-mtls-{uuid.uuid4().hex[:8]}"
    common = ["-b", secure.addr("SSL"), "-X", "security.protocol=ssl", "-X", f"ssl.ca.location={f['ca']}"]
    cert = ["-X", f"ssl.certificate.location={f['cert']}", "-X", f"ssl.key.location={f['key']}"]
    put = subprocess.run(["kcat", *common, *cert, "-P", "-t", topic], input=b"one\ntwo\n", capture_output=True, timeout=30)
    assert put.returncode == 0, put.stderr.decode()[-2000:]
    out = subprocess.run(["kcat", *common, *cert, "-C", "-t", topic, "-e", "-o", "beginning"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.split() == [b"one", b"two"]
    # Without a certificate, or with one from another CA, nothing gets through.
    for extra in [[], ["-X", f"ssl.certificate.location={secure.pki / 'mallory.pem'}",
                       "-X", f"ssl.key.location={secure.pki / 'mallory.key'}"]]:
        bad = subprocess.run(["kcat", *common, *extra, "-L", "-m", "5"], capture_output=True, timeout=30)
        assert bad.returncode != 0, extra


def test_kafka_python_over_mutual_tls(secure):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    f = mtls_files(secure)
    topic = kafka_python_round_trip(dict(bootstrap_servers=secure.addr("SSL"), security_protocol="SSL",
                                         ssl_cafile=f["ca"], ssl_certfile=f["cert"], ssl_keyfile=f["key"]))
    # Without a client certificate the handshake fails: nothing is written.
    with pytest.raises(KafkaError) as refused:
        anon = KafkaProducer(bootstrap_servers=secure.addr("SSL"), security_protocol="SSL", ssl_cafile=f["ca"],
                             bootstrap_timeout_ms=5000, max_block_ms=5000)
        anon.send(f"{topic}-anon", b"x").get(timeout=10)
    print(f"kafka-python without a certificate: {refused.value!r}")


@pytest.mark.parametrize("who,ok", [("alice", True), ("mallory", False)])
def test_kafkajs_over_mutual_tls(secure, who, ok):
    f = mtls_files(secure, who)
    run_kafkajs({"BOOTSTRAP": secure.addr("SSL"), "MECHANISM": "tls", "CERT": f["cert"], "KEY": f["key"],
                 "CA": f["ca"]}, ok)


def served_subject(s: SecureBroker) -> str:
    ctx = ssl.create_default_context(cafile=str(s.pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", s.ports["SASL_SSL"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]


def test_certificate_is_reloaded_when_the_files_change(secure):
    d = secure.pki
    assert served_subject(secure) == "broker"
    make_cert(d, "broker2", "/CN=broker-renewed", san="IP:127.0.0.1")
    # Key first, then certificate: between the two the pair does not match and the old one stays.
    shutil.copy(d / "broker2.key", d / "broker.key")
    shutil.copy(d / "broker2.pem", d / "broker.pem")
    deadline = time.monotonic() + 10
    while served_subject(secure) != "broker-renewed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served_subject(secure) == "broker-renewed"
    round_trip(sasl_conf(secure, "SCRAM-SHA-512", "alice", "alice-pw"), n=3)


def test_deleted_credential_stops_working(secure):
    admin = AdminClient({"bootstrap.servers": secure.addr("PLAINTEXT")})
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"dave-pw")])["dave"].result(timeout=20)
    round_trip(sasl_conf(secure, "SCRAM-SHA-512", "dave", "dave-pw"), n=2)
    admin.alter_user_scram_credentials([UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_512)])["dave"].result(timeout=20)
    assert auth_error(sasl_conf(secure, "SCRAM-SHA-512", "dave", "dave-pw"))


KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"


@pytest.mark.parametrize("mech,user,pw,ok", [
    ("scram-sha-512", "alice", "alice-pw", True),
    ("plain", "bob", "bob-pw", True),
    ("scram-sha-512", "alice", "wrong", False),
])
def test_kafkajs_over_sasl_ssl(secure, mech, user, pw, ok):
    r = run_kafkajs({"BOOTSTRAP": secure.addr("SASL_SSL"), "MECHANISM": mech, "USERNAME": user, "PASSWORD": pw,
                     "CA": str(secure.pki / "ca.pem")}, ok)
    if not ok:
        assert "SASL" in r.stderr.decode() or "Authentication" in r.stderr.decode(), r.stderr.decode()[-2000:]


def run_kafkajs(env: dict[str, str], ok: bool) -> subprocess.CompletedProcess:
    """kafkajs/secure.mjs with `env` on a topic of its own; checks it round-tripped when `ok`,
    else that it failed."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs not installed: run `make deps-broker`"
    env = {**env, "TOPIC": f"kjs-{uuid.uuid4().hex[:8]}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([node, "secure.mjs"], cwd=KAFKAJS_DIR, env=env, capture_output=True, timeout=90)
    if ok:
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        import json
        assert json.loads(r.stdout)["received"] == [f"v{i}" for i in range(10)]
    else:
        assert r.returncode != 0
    return r


# --- malformed SASL on the wire ----------------------------------------------------------------

SASL_AUTHENTICATION_FAILED = 58


def raw_request(api_key: int, version: int, corr: int, body: bytes) -> bytes:
    head = struct.pack(">hhih", api_key, version, corr, 4) + b"wire"
    if version >= 2 and api_key == 36:  # SaslAuthenticate v2 is flexible: empty tagged fields
        head += b"\x00"
    return struct.pack(">i", len(head) + len(body)) + head + body


def read_frame(s: socket.socket) -> bytes | None:
    """One response frame, or None when the broker closed the connection."""
    def exact(n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                return None
            out += chunk
        return out
    size = exact(4)
    return None if size is None else exact(struct.unpack(">i", size)[0])


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def sasl_handshake(s: socket.socket, mech: str, version: int = 1) -> None:
    s.sendall(raw_request(17, version, 1, struct.pack(">h", len(mech)) + mech.encode()))
    resp = read_frame(s)
    assert resp is not None and struct.unpack(">h", resp[4:6])[0] == 0, resp


def sasl_authenticate(s: socket.socket, token: bytes, corr: int = 2) -> tuple[int, str | None, bytes]:
    """SaslAuthenticate v1: (error code, error message, auth bytes)."""
    s.sendall(raw_request(36, 1, corr, struct.pack(">i", len(token)) + token))
    resp = read_frame(s)
    assert resp is not None, "closed without an answer"
    (corr_back, err, mlen) = struct.unpack(">ihh", resp[:8])
    assert corr_back == corr
    msg = resp[8:8 + mlen].decode() if mlen >= 0 else None
    off = 8 + max(mlen, 0)
    (tlen,) = struct.unpack(">i", resp[off:off + 4])
    return err, msg, resp[off + 4:off + 4 + tlen]


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_malformed_sasl_authenticate_fails_cleanly(secure, listener):
    """Malformed SASL tokens from a raw client: each gets SASL_AUTHENTICATION_FAILED with a
    message and a closed connection; a frame that does not decode is closed without an answer;
    a v0 raw token is closed. Meanwhile an authenticated producer keeps working, the failures are
    counted, and logins still work afterwards."""
    conf = sasl_conf(secure, "SCRAM-SHA-512", "alice", "alice-pw", listener=listener)
    topic = f"wire-{uuid.uuid4().hex[:8]}"
    delivered = []
    keeper = Producer({**conf, "acks": "all", "message.timeout.ms": 20000})
    keeper.produce(topic, b"before", on_delivery=lambda e, m: delivered.append(e))
    assert keeper.flush(30) == 0 and delivered == [None]
    before = metric(secure, "rivulet_failed_authentication")

    def connect():
        raw = socket.create_connection(("127.0.0.1", secure.ports[listener]), timeout=5)
        if listener == "SASL_SSL":
            ctx = ssl.create_default_context(cafile=str(secure.pki / "ca.pem"))
            return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        return raw

    cases = [
        ("PLAIN", b"no separators at all"),
        ("PLAIN", b"\x00alice"),
        ("PLAIN", b"\x00\xff\xfe\x00pw"),
        ("SCRAM-SHA-512", b"\xff\x00 not utf-8"),
        ("SCRAM-SHA-512", b"n,,r=no-user"),
        ("SCRAM-SHA-512", b"p=tls-unique,,n=alice,r=abc"),
        ("SCRAM-SHA-512", b"n,,n=al=ZZice,r=abc"),
        ("SCRAM-SHA-256", b""),
    ]
    failures = 0
    for mech, token in cases:
        with connect() as s:
            sasl_handshake(s, mech)
            err, msg, _ = sasl_authenticate(s, token)
            assert err == SASL_AUTHENTICATION_FAILED, (mech, token, err, msg)
            assert msg and ("Invalid SASL/PLAIN message" in msg or "malformed SCRAM message" in msg
                            or "Authentication failed" in msg), (mech, token, msg)
            assert closed(s), (mech, token)
            failures += 1

    # A valid client-first, then a malformed client-final.
    for final in [b"c=biws,r=abc", b"c=biws,r=abc,p=!!not-base64!!", b"\x00" * 40]:
        with connect() as s:
            sasl_handshake(s, "SCRAM-SHA-512")
            err, _, server_first = sasl_authenticate(s, b"n,,n=alice,r=abc")
            assert err == 0 and server_first.startswith(b"r=abc")
            err, msg, _ = sasl_authenticate(s, final, corr=3)
            assert err == SASL_AUTHENTICATION_FAILED and "Authentication failed" in msg, (final, msg)
            assert closed(s)
            failures += 1

    # SaslAuthenticate whose auth_bytes claim 1000 bytes of which 3 arrive: not a request at all,
    # so the broker closes the connection without an answer.
    with connect() as s:
        sasl_handshake(s, "SCRAM-SHA-512")
        s.sendall(raw_request(36, 1, 2, struct.pack(">i", 1000) + b"n,,"))
        assert read_frame(s) is None

    # After a v0 handshake the next frame is a bare token: garbage closes the connection.
    with connect() as s:
        sasl_handshake(s, "SCRAM-SHA-512", version=0)
        s.sendall(struct.pack(">i", 7) + b"garbage")
        assert read_frame(s) is None
        failures += 1

    assert metric(secure, "rivulet_failed_authentication") >= before + failures
    # Nothing else broke: the producer authenticated before keeps producing on its connection,
    # a new client logs in and reads both messages, and the broker is still up.
    keeper.produce(topic, b"after", on_delivery=lambda e, m: delivered.append(e))
    assert keeper.flush(30) == 0 and delivered == [None, None]
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"before", b"after"]
    assert secure.b.alive()
    assert "panicked" not in secure.b.log_path.read_text()


def test_clients_reauthenticate_when_the_session_expires(tmp_path):
    """KIP-368: with connections.max.reauth.ms the broker gives each SASL session a lifetime
    (SaslAuthenticate v1+ session_lifetime_ms); librdkafka (≥ 2.2) re-authenticates on the same
    connection before it ends, so a producer sending for several lifetimes loses nothing and is
    never disconnected."""
    from harness import Broker
    (tmp_path / "users").write_text("alice=alice-pw\n")
    b = Broker(tmp_path / "data", tmp_path / "broker.log")
    sasl = free_port()
    b.flags.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "bootstrap-scram-users-file": str(tmp_path / "users"),
        "connections-max-reauth-ms": "1500",
        "log-level": "info,rivulet_broker=debug",
    })
    b.start()
    try:
        errors, delivered = [], []
        p = Producer({"bootstrap.servers": f"127.0.0.1:{sasl}", "security.protocol": "sasl_plaintext",
                      "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "alice-pw",
                      "error_cb": lambda e: errors.append(str(e)), "message.timeout.ms": 10000})
        deadline = time.monotonic() + 6
        i = 0
        while time.monotonic() < deadline:
            p.produce("reauth", f"m{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
            i += 1
            p.poll(0.1)
        assert p.flush(15) == 0
        assert delivered == [None] * i, [e for e in delivered if e][:3]
        assert errors == [], errors
        log = b.log_path.read_text()
        assert log.count("re-authentication started") >= 2, "the client re-authenticated on its connection"
        assert "session expired" not in log.lower()
    finally:
        b.stop()


def test_a_failed_login_is_answered_only_after_the_delay(tmp_path):
    """connection.failed.authentication.delay.ms: a wrong password gets its
    SASL_AUTHENTICATION_FAILED answer no sooner than the delay (so guessing is slowed down per
    connection) and is counted; the right password is answered without it."""
    from harness import Broker
    (tmp_path / "users").write_text("alice=alice-pw\n")
    b = Broker(tmp_path / "data", tmp_path / "broker.log")
    sasl = free_port()
    b.flags.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "bootstrap-scram-users-file": str(tmp_path / "users"),
        "connection-failed-authentication-delay-ms": "700",
    })
    b.start()
    try:
        def login(pw: str) -> tuple[int, float]:
            with socket.create_connection(("127.0.0.1", sasl), timeout=10) as s:
                sasl_handshake(s, "PLAIN")
                t0 = time.monotonic()
                err, _, _ = sasl_authenticate(s, b"\x00alice\x00" + pw.encode())
                return err, time.monotonic() - t0
        err, took = login("wrong")
        assert err == SASL_AUTHENTICATION_FAILED
        assert took >= 0.69, f"answered after {took:.3f} s, before the 0.7 s delay"
        err, took_ok = login("alice-pw")
        assert err == 0
        assert took_ok < took, (took_ok, took)
        _, text = b.http_get("/metrics")
        assert any(line.startswith("rivulet_failed_authentication") and not line.endswith(" 0")
                   for line in text.splitlines()), "the failure is counted"
    finally:
        b.stop()
