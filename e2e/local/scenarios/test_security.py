"""Authenticated clients on the local Kubernetes bed (issue 14), written against the bed interface
(docs/e2e.md), run under `.k8s/exec` so the cluster's Service and pod names resolve:

    . .k8s/env && .k8s/exec .venv/bin/python -m pytest e2e/local/scenarios/test_security.py -q

The second test (`-k replication_and_coordinator`) checks the internal listener and the
coordinator ACLs (docs/security.md).

A three-zone cluster with one SASL_SSL listener (SCRAM-SHA-512, certificate from the operator's
cluster CA). A KafkaUser gets its Secret, and confluent-kafka — trusting the CA from the
`<cluster>-cluster-ca-cert` Secret, verifying broker host names — produces to its topic with the
generated password; a wrong password and a deleted user are refused. The cluster also has
`spec.authorization` and the user is denied on a topic its ACLs don't name (SECURITY_ACLS=0 leaves
the authorizer off, to tell an authentication failure from an authorization one).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer

CLUSTER = "sec"
PORT = 9093
ACLS = os.environ.get("SECURITY_ACLS", "1") == "1"


def kubectl(*args, input=None, check=True) -> str:
    r = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def get(kind, name, ns, check=True) -> dict | None:
    out = kubectl("get", kind, name, "-n", ns, "-o", "json", check=check)
    return json.loads(out) if out else None


def apply(ns, manifest):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def wait_for(what, fn, timeout=300.0, every=2.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def ready(kind, name, ns, timeout=600):
    def check():
        o = get(kind, name, ns, check=False) or {}
        conds = {c["type"]: c for c in o.get("status", {}).get("conditions", [])}
        return conds.get("Ready", {}).get("status") == "True" and o
    return wait_for(f"{kind} {name} Ready", check, timeout=timeout)


def secret_value(ns, name, key) -> str:
    s = get("secret", name, ns)
    return base64.b64decode(s["data"][key]).decode()


@pytest.fixture
def ns():
    name = f"sec-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def produce(bootstrap, ca_file, user, password, topic, timeout=30.0):
    """Produces one record; returns None on success, else the error text."""
    errors = []
    p = Producer({
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": ca_file,
        "message.timeout.ms": int(timeout * 1000),
        "error_cb": lambda e: errors.append(str(e)),
    })
    result = {}
    p.produce(topic, b"hello", callback=lambda err, msg: result.setdefault("err", err))
    deadline = time.time() + timeout + 5
    while "err" not in result and time.time() < deadline:
        p.poll(0.5)
        if errors and any("Authentication" in e or "SASL" in e for e in errors):
            break
    p.flush(1)
    if "err" in result and result["err"] is None:
        return None
    return str(result.get("err")) + " " + "; ".join(errors)


def test_kafkauser_gets_its_secret_and_produces_over_sasl_ssl(ns, tmp_path):
    spec = {
        "zones": ["zone-a", "zone-b", "zone-c"],
        "brokersPerZone": 1,
        "brokerType": "kafka.t3.small",
        "storage": {"size": "64Mi", "storageClassName": "rivulet-local"},
        "listeners": [{"name": "tls", "port": PORT, "tls": True, "authentication": "scram-sha-512"}],
    }
    if ACLS:
        spec["authorization"] = {"type": "simple", "superUsers": ["admin"]}
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": CLUSTER}, "spec": spec})
    kc = ready("kafkacluster", CLUSTER, ns)
    bootstrap = f"{CLUSTER}-bootstrap.{ns}.svc:{PORT}"
    assert kc["status"]["bootstrapAddress"] == bootstrap
    assert kc["status"]["listeners"] == [{"name": "tls", "securityProtocol": "SASL_SSL", "bootstrapAddress": bootstrap}]

    # The CA for clients, without its key; the brokers' certificate Secret.
    ca_secret = get("secret", f"{CLUSTER}-cluster-ca-cert", ns)
    assert set(ca_secret["data"]) == {"ca.crt"}
    assert set(get("secret", f"{CLUSTER}-broker-tls", ns)["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(secret_value(ns, f"{CLUSTER}-cluster-ca-cert", "ca.crt"))

    for t in ["mine", "theirs"]:
        apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": t},
                   "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 3}})
    for t in ["mine", "theirs"]:
        ready("kafkatopic", t, ns, timeout=180)

    user = {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "app"},
            "spec": {"clusterRef": {"name": CLUSTER}, "authentication": {"type": "scram-sha-512"}}}
    if ACLS:
        user["spec"]["authorization"] = {"acls": [
            {"resource": {"type": "topic", "name": "mine"}, "operations": ["Describe", "Write"]},
            {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]},
        ]}
    apply(ns, user)
    ku = ready("kafkauser", "app", ns, timeout=180)
    assert ku["status"]["principal"] == "User:app"
    password = secret_value(ns, "app", "password")
    assert len(password) == 32 and secret_value(ns, "app", "username") == "app"

    # The credential works over TLS with host-name verification against the cluster CA.
    err = wait_for("a produce as app", lambda: produce(bootstrap, str(ca_file), "app", password, "mine", 20) is None or None,
                   timeout=120, every=5)
    assert err
    assert produce(bootstrap, str(ca_file), "app", "wrong-password", "mine", 10) is not None
    if ACLS:
        denied = produce(bootstrap, str(ca_file), "app", password, "theirs", 15)
        assert denied is not None and "AUTHORIZATION" in denied.upper(), denied

    # Deleting the user removes its credential from the cluster (finalizer) and its Secret.
    kubectl("delete", "kafkauser", "app", "-n", ns, "--wait=true", "--timeout=120s")
    wait_for("app's Secret gone", lambda: get("secret", "app", ns, check=False) is None, timeout=120)
    assert produce(bootstrap, str(ca_file), "app", password, "mine", 10) is not None


def test_replication_and_coordinator_are_authenticated(ns, tmp_path):
    """Issue 14, operator side: the internal listener authenticates (brokers as
    User:rivulet-broker, the operator as User:rivulet-operator, SCRAM-SHA-512 over TLS), the
    internal passwords come from a generated Secret mounted into the brokers (never in the pod
    spec), replication works through it (acks=all on a 3-replica topic with
    min.insync.replicas=2), and the coordinator's znodes carry digest ACLs: an unauthenticated
    ZooKeeper client (kazoo) can read the broker registrations but neither write /brokers nor read
    /config/users."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    spec = {
        "zones": ["zone-a", "zone-b", "zone-c"],
        "brokersPerZone": 1,
        "brokerType": "kafka.t3.small",
        "storage": {"size": "64Mi", "storageClassName": "rivulet-local"},
        "listeners": [{"name": "tls", "port": PORT, "tls": True, "authentication": "scram-sha-512"}],
        "authorization": {"type": "simple", "superUsers": ["admin"]},
    }
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": CLUSTER}, "spec": spec})
    kc = ready("kafkacluster", CLUSTER, ns)
    bootstrap = kc["status"]["bootstrapAddress"]

    # The internal credentials: generated, not owned by the cluster (they outlive it with the
    # volumes), mounted as files; no password anywhere in the broker pods' spec.
    creds = get("secret", f"{CLUSTER}-internal-credentials", ns)
    assert set(creds["data"]) == {"broker-password", "operator-password", "coordinator-password", "bootstrap-users"}
    assert not creds["metadata"].get("ownerReferences")
    passwords = {k: base64.b64decode(v).decode() for k, v in creds["data"].items()}
    pods = json.loads(kubectl("get", "pods", "-n", ns, "-l", f"rivulet.dev/cluster={CLUSTER},app.kubernetes.io/component=broker", "-o", "json"))["items"]
    assert len(pods) == 3
    for pod in pods:
        text = json.dumps(pod["spec"])
        for k in ("broker-password", "operator-password", "coordinator-password"):
            assert passwords[k] not in text, f"{k} in the spec of {pod['metadata']['name']}"
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["RIVULET_LISTENER_SECURITY_PROTOCOL_MAP"].startswith("REPLICATION:SASL_SSL,")
        assert env["RIVULET_INTER_BROKER_SASL_USERNAME"] == "rivulet-broker"
        assert env["RIVULET_ZOOKEEPER_SET_ACL"] == "true"
        assert "User:rivulet-broker" in env["RIVULET_SUPER_USERS"].split(";")
        assert "User:rivulet-operator" in env["RIVULET_SUPER_USERS"].split(";")

    # The operator's admin connection works over the authenticated listener (the topic and the
    # user are made through it).
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": "replicated"},
               "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 3, "replicationFactor": 3,
                        "config": {"min.insync.replicas": "2"}}})
    ready("kafkatopic", "replicated", ns, timeout=180)
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "writer"},
               "spec": {"clusterRef": {"name": CLUSTER}, "authentication": {"type": "scram-sha-512"},
                        "authorization": {"acls": [
                            {"resource": {"type": "topic", "name": "replicated"}, "operations": ["Describe", "Write"]},
                            {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}]}}})
    ready("kafkauser", "writer", ns, timeout=180)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(secret_value(ns, f"{CLUSTER}-cluster-ca-cert", "ca.crt"))
    password = secret_value(ns, "writer", "password")

    # Replication through the authenticated listener: confluent-kafka's default acks=all on a
    # 3-replica partition is acknowledged only once both followers fetched it; 30 records spread
    # over the three partitions, each led by a different broker.
    p = Producer({
        "bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "writer", "sasl.password": password, "ssl.ca.location": str(ca_file),
        "acks": "all", "message.timeout.ms": 60000,
    })
    results = []

    def send_all():
        results.clear()
        for i in range(30):
            p.produce("replicated", f"v{i}".encode(), partition=i % 3, callback=lambda err, msg: results.append(err))
        p.flush(90)
        return len(results) == 30 and all(e is None for e in results) or None

    assert wait_for("acks=all produce to every partition", send_all, timeout=240, every=10), results

    # The coordinator: an unauthenticated client may look but not touch.
    zk = KazooClient(hosts=f"{CLUSTER}-coordinator.{ns}.svc:2181", timeout=15)
    zk.start(timeout=30)
    try:
        ids = zk.get_children("/brokers/ids")
        assert len(ids) == 3, ids
        with pytest.raises(NoAuthError):
            zk.create("/brokers/ids/4242", b"{}")
        with pytest.raises(NoAuthError):
            zk.set(f"/brokers/ids/{ids[0]}", b"{}")
        users = "/config/users/rivulet-broker"
        with pytest.raises(NoAuthError):
            zk.get(users)
        with pytest.raises(NoAuthError):
            zk.get("/config/users/writer")
    finally:
        zk.stop()
        zk.close()
    # With the digest credential (the brokers' user) the credential is readable: the refusals
    # above are the ACLs, not a missing node.
    zk = KazooClient(hosts=f"{CLUSTER}-coordinator.{ns}.svc:2181", timeout=15,
                     auth_data=[("digest", f"rivulet-broker:{passwords['coordinator-password']}")])
    zk.start(timeout=30)
    try:
        zk.get(users)
    finally:
        zk.stop()
        zk.close()


def produce_mtls(bootstrap, files, topic, timeout=20.0):
    """Produces one record over SSL with a client certificate; None on success, else the error."""
    errors = []
    p = Producer({
        "bootstrap.servers": bootstrap, "security.protocol": "SSL",
        "ssl.ca.location": files["ca.crt"], "ssl.certificate.location": files["user.crt"],
        "ssl.key.location": files["user.key"], "message.timeout.ms": int(timeout * 1000),
        "error_cb": lambda e: errors.append(str(e)),
    })
    result = {}
    p.produce(topic, b"hello", callback=lambda err, msg: result.setdefault("err", err))
    deadline = time.time() + timeout + 5
    while "err" not in result and time.time() < deadline:
        p.poll(0.5)
    p.flush(1)
    if "err" in result and result["err"] is None:
        return None
    return str(result.get("err")) + " " + "; ".join(errors)


def test_a_tls_kafkauser_produces_with_its_certificate_and_follows_its_acls(ns, tmp_path):
    """A KafkaUser with `authentication: tls` gets a client certificate (CN=<user>, from the
    cluster CA) in its Secret and produces over a mutual-TLS listener as User:CN=<user>, only where
    its ACLs allow; an ACL added to the KafkaUser reaches the brokers; once the KafkaUser is
    deleted its ACLs are gone (the certificate still passes the TLS handshake — there is no
    revocation — so a refused produce here can only come from the authorizer)."""
    mtls_port = 9094
    spec = {
        "zones": ["zone-a", "zone-b", "zone-c"],
        "brokersPerZone": 1,
        "brokerType": "kafka.t3.small",
        "storage": {"size": "64Mi", "storageClassName": "rivulet-local"},
        "listeners": [{"name": "tls", "port": PORT, "tls": True, "authentication": "scram-sha-512"},
                      {"name": "mtls", "port": mtls_port, "tls": True, "authentication": "tls"}],
        "authorization": {"type": "simple", "superUsers": ["admin"]},
    }
    apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": CLUSTER}, "spec": spec})
    kc = ready("kafkacluster", CLUSTER, ns)
    listeners = {l["name"]: l for l in kc["status"]["listeners"]}
    assert listeners["mtls"]["securityProtocol"] == "SSL", listeners
    bootstrap = listeners["mtls"]["bootstrapAddress"]
    assert bootstrap == f"{CLUSTER}-bootstrap.{ns}.svc:{mtls_port}"

    for t in ["mine", "theirs"]:
        apply(ns, {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": t},
                   "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 3}})
    for t in ["mine", "theirs"]:
        ready("kafkatopic", t, ns, timeout=180)

    acls = [{"resource": {"type": "topic", "name": "mine"}, "operations": ["Describe", "Write"]},
            {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}]
    user = {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "audit"},
            "spec": {"clusterRef": {"name": CLUSTER}, "authentication": {"type": "tls"},
                     "authorization": {"acls": acls}}}
    apply(ns, user)
    ku = ready("kafkauser", "audit", ns, timeout=180)
    assert ku["status"]["principal"] == "User:CN=audit", ku["status"]
    secret = get("secret", "audit", ns)
    assert set(secret["data"]) == {"user.crt", "user.key", "ca.crt"}, set(secret["data"])
    files = {}
    for k in ("user.crt", "user.key", "ca.crt"):
        (tmp_path / k).write_text(secret_value(ns, "audit", k))
        files[k] = str(tmp_path / k)

    assert wait_for("a produce as CN=audit", lambda: produce_mtls(bootstrap, files, "mine") is None or None,
                    timeout=120, every=5)
    denied = produce_mtls(bootstrap, files, "theirs", 15)
    assert denied is not None and "AUTHORIZATION" in denied.upper(), denied

    # An ACL added to the KafkaUser reaches every broker through the operator.
    user["spec"]["authorization"]["acls"] = acls + [
        {"resource": {"type": "topic", "name": "theirs"}, "operations": ["Describe", "Write"]}]
    apply(ns, user)
    assert wait_for("a produce to theirs after the ACL change",
                    lambda: produce_mtls(bootstrap, files, "theirs", 10) is None or None, timeout=120, every=5)

    # Deleting the user removes its ACLs: the same certificate is still accepted by TLS but
    # may no longer write.
    kubectl("delete", "kafkauser", "audit", "-n", ns, "--wait=true", "--timeout=120s")
    wait_for("audit's Secret gone", lambda: get("secret", "audit", ns, check=False) is None, timeout=120)
    refused = wait_for("audit refused after deletion",
                       lambda: (e := produce_mtls(bootstrap, files, "mine", 10)) is not None and e, timeout=60, every=5)
    assert "AUTHORIZATION" in refused.upper(), refused
