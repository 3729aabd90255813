"""Security in cluster mode, against both coordinators: SCRAM credentials written through one
broker into /config/users with a /config/changes notification and seen by every broker within
seconds (login, password change, deletion); replication over a SASL_SSL inter-broker listener as
a broker principal; ACL changes reaching every broker; znodes written with ACLs
(zookeeper.set.acl) so that an arbitrary ZooKeeper client (kazoo) cannot rewrite cluster
metadata or read credentials."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion)

from harness import free_port


def sasl_cluster(cluster_factory, coordinator):
    c = cluster_factory(coordinator=coordinator, start=False)
    for b in c.brokers:
        b.sasl_port = free_port(b.host)
        b.flags["listeners"] = f"PLAINTEXT://{b.host}:{b.port},SASL_PLAINTEXT://{b.host}:{b.sasl_port}"
        b.flags["inter-broker-listener-name"] = "PLAINTEXT"
        b.flags["connection-failed-authentication-delay-ms"] = "10"
    return c.start()


def can_log_in(broker, user: str, pw: str, mech: str = "SCRAM-SHA-512") -> bool:
    """A Metadata request over SASL to this broker alone (its own listener as bootstrap)."""
    errors = []
    p = Producer({"bootstrap.servers": f"{broker.host}:{broker.sasl_port}", "security.protocol": "sasl_plaintext",
                  "sasl.mechanisms": mech, "sasl.username": user, "sasl.password": pw,
                  "error_cb": lambda e: errors.append(e)})
    try:
        p.list_topics(timeout=4)
        return True
    except KafkaException:
        return False


def wait_all(brokers, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    pending = list(brokers)
    while pending and time.monotonic() < deadline:
        pending = [b for b in pending if not pred(b)]
        if pending:
            time.sleep(0.3)
    return [b.broker_id for b in pending]


def upsert(admin, user, pw):
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), pw.encode())])[user].result(timeout=20)


@pytest.mark.parametrize("coordinator", ["rivulet", "zookeeper"])
def test_credential_changes_reach_every_broker(cluster_factory, coordinator):
    c = sasl_cluster(cluster_factory, coordinator)
    # Altered through broker 0 only.
    admin = AdminClient({"bootstrap.servers": c.brokers[0].bootstrap})
    user = f"u{uuid.uuid4().hex[:6]}"
    upsert(admin, user, "first")
    assert wait_all(c.brokers, lambda b: can_log_in(b, user, "first")) == []
    assert wait_all(c.brokers, lambda b: can_log_in(b, user, "first", mech="PLAIN")) == []
    upsert(admin, user, "second")
    assert wait_all(c.brokers, lambda b: not can_log_in(b, user, "first")) == []
    assert all(can_log_in(b, user, "second") for b in c.brokers)
    admin.alter_user_scram_credentials([UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)])[user].result(timeout=20)
    assert wait_all(c.brokers, lambda b: not can_log_in(b, user, "second")) == []
    # Each broker describes the same credentials.
    other = AdminClient({"bootstrap.servers": c.brokers[2].bootstrap})
    upsert(admin, user, "third")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            d = other.describe_user_scram_credentials([user])[user].result(timeout=10)
            if d.scram_credential_infos:
                break
        except KafkaException:
            time.sleep(0.3)
    assert [i.iterations for i in d.scram_credential_infos] == [4096]


# --- inter-broker SASL_SSL, ACLs across brokers, znode ACLs (zookeeper.set.acl) ---------------

DIGEST = "rivulet:coord-secret"
PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "broker": "broker-pw"}


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(d: Path, hosts: list[str]) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Rivulet cluster test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=broker", "-keyout", "broker.key",
             "-out", "broker.csr", cwd=d)
    (d / "broker.ext").write_text("subjectAltName=" + ",".join(f"IP:{h}" for h in hosts) + "\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "broker.pem", "-extfile", "broker.ext", cwd=d)
    return d


def secure_cluster(cluster_factory, tmp_path, coordinator, **flags):
    c = cluster_factory(coordinator=coordinator, start=False)
    pki = _pki(tmp_path, sorted({b.host for b in c.brokers}))
    (tmp_path / "users").write_text("".join(f"{u}={p}\n" for u, p in PASSWORDS.items() if u != "broker"))
    (tmp_path / "broker-pw").write_text(PASSWORDS["broker"] + "\n")
    (tmp_path / "digest-pw").write_text(DIGEST.split(":")[1] + "\n")
    for b in c.brokers:
        b.sasl_port = free_port(b.host)
        # PLAINTEXT stays for the harness' own questions (User:ANONYMOUS is a super user here);
        # replication goes over SASL_SSL as User:broker.
        b.flags.update({
            "listeners": f"PLAINTEXT://{b.host}:{b.port},SASL_SSL://{b.host}:{b.sasl_port}",
            "inter-broker-listener-name": "SASL_SSL",
            "ssl-cert-file": str(pki / "broker.pem"),
            "ssl-key-file": str(pki / "broker.key"),
            "ssl-ca-file": str(pki / "ca.pem"),
            "inter-broker-sasl-username": "broker",
            "inter-broker-sasl-password-file": str(tmp_path / "broker-pw"),
            "bootstrap-scram-users-file": str(tmp_path / "users"),
            "authorizer": "simple",
            "super-users": "User:broker;User:admin;User:ANONYMOUS",
            "zookeeper-set-acl": "true",
            "coordinator-digest-username": DIGEST.split(":")[0],
            "coordinator-digest-password-file": str(tmp_path / "digest-pw"),
            "connection-failed-authentication-delay-ms": "10",
            **flags,
        })
    c.start()
    c.ca = str(pki / "ca.pem")
    return c


def ssl_conf(c, broker, user):
    return {"bootstrap.servers": f"{broker.host}:{broker.sasl_port}", "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": PASSWORDS[user],
            "ssl.ca.location": c.ca}


@pytest.mark.parametrize("coordinator", ["rivulet", "zookeeper"])
def test_sasl_ssl_inter_broker_replication_acls_and_znode_acls(cluster_factory, tmp_path, coordinator):
    c = secure_cluster(cluster_factory, tmp_path, coordinator)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(ssl_conf(c, c.brokers[0], "admin"))
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "3"})])[topic].result(timeout=30)
    c.wait_full_isr(topic)
    # acks=all with min.insync.replicas=3: acknowledged only once both followers fetched it over
    # SASL_SSL as User:broker.
    errors = []
    p = Producer({**ssl_conf(c, c.brokers[1], "admin"), "acks": "all", "message.timeout.ms": 20000})
    for i in range(30):
        p.produce(topic, f"m{i}".encode(), partition=i % 3, on_delivery=lambda e, m: errors.append(e))
    assert p.flush(30) == 0
    assert errors == [None] * 30
    for part in range(3):
        assert c.watermarks(topic, part)[1] == 10
        assert sorted(c.isr(topic, part)) == [0, 1, 2]

    # An ACL created through broker 0 takes effect on every broker: alice sees the topic in
    # Metadata (Describe implied by Write) through each broker's own listener.
    def alice_sees(b) -> bool:
        md = AdminClient(ssl_conf(c, b, "alice")).list_topics(timeout=5)
        return topic in md.topics
    assert not any(alice_sees(b) for b in c.brokers)
    grant = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    admin.create_acls([grant])[grant].result(timeout=20)
    assert wait_all(c.brokers, alice_sees) == []
    flt = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    other = AdminClient(ssl_conf(c, c.brokers[2], "admin"))
    assert len(other.delete_acls([flt])[flt].result(timeout=20)) == 1
    assert wait_all(c.brokers, lambda b: not alice_sees(b)) == []

    # Znode ACLs: an arbitrary ZooKeeper client reads cluster metadata but cannot rewrite it,
    # and cannot read credentials or ACLs; the brokers' digest user can.
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError
    host = c.coord.connect
    anon = KazooClient(hosts=host)
    anon.start(timeout=10)
    try:
        assert anon.get("/brokers/ids/0")[0]
        data, _ = anon.get(f"/brokers/topics/{topic}")
        with pytest.raises(NoAuthError):
            anon.set(f"/brokers/topics/{topic}", b"{}")
        with pytest.raises(NoAuthError):
            anon.delete(f"/brokers/topics/{topic}", recursive=False)
        with pytest.raises(NoAuthError):
            anon.create(f"/brokers/topics/{topic}-evil", b"{}")
        with pytest.raises(NoAuthError):
            anon.get("/config/users/alice")
    finally:
        anon.stop()
    broker = KazooClient(hosts=host, auth_data=[("digest", DIGEST)])
    broker.start(timeout=10)
    try:
        creds, _ = broker.get("/config/users/alice")
        assert b"SCRAM-SHA-512" in creds and b"alice-pw" not in creds
    finally:
        broker.stop()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_text(text)
    tmp.replace(path)


def _serves_a_leaf_of(broker, ca_file: str) -> bool:
    """Whether the broker's SASL_SSL listener presents a certificate that `ca_file` alone trusts."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    try:
        with socket.create_connection((broker.host, broker.sasl_port), timeout=3) as s:
            with ctx.wrap_socket(s):
                return True
    except (ssl.SSLError, OSError):
        return False


def test_cluster_ca_renewal_reaches_listeners_and_replication_without_restarts(cluster_factory, tmp_path):
    """The renewal the operator runs (docs/security.md, ca_rotation.rs), done by hand on the files
    the brokers read: (1) the new CA joins the trusted bundle, (2) the broker certificate is
    reissued by the new CA, (3) the old CA leaves the bundle. No broker is restarted for it.
    After (2), a topic created then replicates with acks=all and min.insync.replicas=3: every
    follower opens new SASL_SSL connections to leaders that present the new CA's certificate,
    which only works if the running brokers' replica fetchers reloaded the bundle that
    trusts it. After (3), a restarted broker (trusting only the new CA) rejoins every ISR."""
    c = secure_cluster(cluster_factory, tmp_path, "rivulet", **{"ssl-reload-interval-ms": "200"})
    pki = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Rivulet renewed CA",
             "-keyout", "ca2.key", "-out", "ca2.pem", cwd=pki)
    old_ca, new_ca = (pki / "ca.pem").read_text(), (pki / "ca2.pem").read_text()
    assert all(_serves_a_leaf_of(b, str(pki / "ca.pem")) for b in c.brokers)
    assert not any(_serves_a_leaf_of(b, str(pki / "ca2.pem")) for b in c.brokers)

    # (1) trust both, (2) reissue the broker certificate (same key) from the new CA.
    _write_atomically(pki / "ca.pem", old_ca + new_ca)
    time.sleep(1.5)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca2.pem", "-CAkey", "ca2.key", "-CAcreateserial",
             "-days", "2", "-out", "broker2.pem", "-extfile", "broker.ext", cwd=pki)
    _write_atomically(pki / "broker.pem", (pki / "broker2.pem").read_text())
    assert wait_all(c.brokers, lambda b: _serves_a_leaf_of(b, str(pki / "ca2.pem"))) == [], \
        "every listener serves the new CA's certificate without a restart"

    topic = f"renew-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "3"})])[topic].result(timeout=30)
    c.wait_full_isr(topic)

    def produce_all(n: int) -> list:
        errors = []
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "message.timeout.ms": 20000})
        for i in range(n):
            p.produce(topic, f"m{i}".encode(), partition=i % 3, on_delivery=lambda e, m: errors.append(e))
        assert p.flush(30) == 0
        return errors

    assert produce_all(30) == [None] * 30

    # (3) drop the old CA; a restarted broker trusts the new one only and catches up.
    _write_atomically(pki / "ca.pem", new_ca)
    time.sleep(1.5)
    c.brokers[0].term()
    c.brokers[0].restart()
    c.wait_full_isr(topic, timeout=60)
    assert produce_all(30) == [None] * 30
    for part in range(3):
        assert c.watermarks(topic, part)[1] == 20
