"""The Java Kafka client (kafka-clients, the version pinned in ../pom.xml) against Rivulet's
3-broker cluster, and the same cases against Apache Kafka's (so that the suite itself is checked
against the reference: a case that fails there is a wrong test). ClientSuite.java runs every case
in one JVM; each case is one pytest test here, so a failure names the case and shows the Java
stack trace.

The acls case needs the authorizer and a SASL login, which the shared plaintext clusters do not
have (there it skips): test_java_client_acls_over_sasl_ssl runs it against its own 3-broker
Rivulet cluster with SASL_SSL listeners (SCRAM-SHA-512, also the inter-broker listener),
`--authorizer simple` and the super user admin, the suite logging in as admin."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

import kafka_ref

CASES = ["describe_cluster", "idempotent_producer", "compression_gzip", "compression_snappy", "compression_lz4",
         "compression_zstd", "group_cooperative_sticky", "admin_topics", "admin_configs", "create_partitions",
         "describe_log_dirs", "reassignment", "offsets_for_times", "delete_records", "acls"]


def run_suite(cluster, extra: list[str] = (), cases: list[str] = CASES) -> dict[str, tuple[str, str]]:
    argv = kafka_ref.java_argv("ClientSuite", [cluster.bootstrap, str(len(cluster.brokers)), *extra, *cases],
                               heap=["-Xmx512m"], with_suite=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=540)
    out = p.stdout
    print(out[-20000:])
    print(p.stderr[-5000:])
    found: dict[str, tuple[str, str]] = {}
    # Each case's own output runs from its status line to the next one.
    marks = list(re.finditer(r"^(PASS|FAIL|SKIP) (\w+)(.*)$", out, re.M))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(out)
        found[m.group(2)] = (m.group(1), out[m.start():end])
    assert re.search(r"^\d+ passed, \d+ failed, \d+ skipped$", out, re.M), f"ClientSuite did not finish:\n{out[-3000:]}\n{p.stderr[-3000:]}"
    assert set(found) == set(cases), f"cases run {sorted(found)} differ from {sorted(cases)}"
    return found


@pytest.fixture(scope="module")
def on_rivulet(rivulet):
    return run_suite(rivulet)


@pytest.fixture(scope="module")
def on_kafka(kafka):
    return run_suite(kafka)


@pytest.mark.parametrize("case", CASES)
def test_java_client_rivulet(on_rivulet, case):
    check(on_rivulet, case)


@pytest.mark.parametrize("case", CASES)
def test_java_client_kafka(on_kafka, case):
    check(on_kafka, case)


def check(results, case):
    status, text = results[case]
    if status == "SKIP":
        pytest.skip(text.strip())
    assert status == "PASS", text


# --- the acls case over SASL_SSL with the authorizer on ----------------------------------------

ADMIN_PW = "admin-" + uuid.uuid4().hex[:12]
BROKER_PW = "broker-" + uuid.uuid4().hex[:12]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def secure_rivulet(tmp_path_factory):
    """Three Rivulet brokers (rivulet-coordinator) with SASL_SSL listeners, SCRAM-SHA-512 users
    admin (super user) and broker (replication), the simple authorizer, and a PLAINTEXT listener
    for the harness' own readiness questions only (User:ANONYMOUS is a super user there, as in
    broker/tests/cluster/test_security.py); the Java client uses only SASL_SSL."""
    from cluster import Cluster
    from harness import free_port
    d = tmp_path_factory.mktemp("rivulet-secure")
    c = Cluster(d / "cluster", coordinator="rivulet")
    hosts = sorted({b.host for b in c.brokers})
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Rivulet Java suite CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=broker", "-keyout", "broker.key", "-out", "broker.csr",
            cwd=d)
    (d / "broker.ext").write_text("subjectAltName=" + ",".join(f"IP:{h}" for h in hosts) + "\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "broker.pem", "-extfile", "broker.ext", cwd=d)
    # A client certificate for the mutual-TLS listener (PKCS#8 key + chain in one PEM keystore).
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=java-client", "-keyout", "client.key",
            "-out", "client.csr", cwd=d)
    # v3 with extensions: webpki (rustls) refuses v1 certificates.
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "client.pem", "-extfile", "client.ext", cwd=d)
    (d / "client-keystore.pem").write_text((d / "client.key").read_text() + (d / "client.pem").read_text())
    (d / "users").write_text(f"admin={ADMIN_PW}\n")
    (d / "broker-pw").write_text(BROKER_PW + "\n")
    for b in c.brokers:
        b.sasl_port = free_port(b.host)
        b.ssl_port = free_port(b.host)
        b.flags.update({
            "listeners": f"PLAINTEXT://{b.host}:{b.port},SASL_SSL://{b.host}:{b.sasl_port},SSL://{b.host}:{b.ssl_port}",
            "listener-ssl-client-auth": "SSL:required",
            "inter-broker-listener-name": "SASL_SSL",
            "ssl-cert-file": str(d / "broker.pem"),
            "ssl-key-file": str(d / "broker.key"),
            "ssl-ca-file": str(d / "ca.pem"),
            "inter-broker-sasl-username": "broker",
            "inter-broker-sasl-password-file": str(d / "broker-pw"),
            "bootstrap-scram-users-file": str(d / "users"),
            "authorizer": "simple",
            "super-users": "User:admin;User:broker;User:ANONYMOUS;User:CN=java-client",
            "connection-failed-authentication-delay-ms": "10",
        })
    # The Java suite's own view: the SASL_SSL listeners, logged in as the super user admin.
    props = d / "client.properties"
    props.write_text("\n".join([
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        f'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        f'username="admin" password="{ADMIN_PW}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={d / 'ca.pem'}",
    ]) + "\n")
    mtls = d / "client-mtls.properties"
    mtls.write_text("\n".join([
        "security.protocol=SSL",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={d / 'ca.pem'}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={d / 'client-keystore.pem'}",
    ]) + "\n")
    anon = d / "client-nocert.properties"
    anon.write_text("\n".join(["security.protocol=SSL", "ssl.truststore.type=PEM",
                                f"ssl.truststore.location={d / 'ca.pem'}"]) + "\n")
    try:
        c.start()
        c.sasl_bootstrap = ",".join(f"{b.host}:{b.sasl_port}" for b in c.brokers)
        c.ssl_bootstrap = ",".join(f"{b.host}:{b.ssl_port}" for b in c.brokers)
        c.client_properties = props
        c.mtls_properties = mtls
        c.nocert_properties = anon
        yield c
    finally:
        c.stop()


def test_java_client_acls_over_sasl_ssl(secure_rivulet):
    class View:  # the suite's bootstrap is the SASL_SSL listeners
        bootstrap = secure_rivulet.sasl_bootstrap
        brokers = secure_rivulet.brokers
    results = run_suite(View, extra=[f"--client-config={secure_rivulet.client_properties}"], cases=["acls"])
    status, text = results["acls"]
    assert status == "PASS", text  # a SKIP here is a failure: this cluster has what the case needs


def test_java_client_over_mutual_tls(secure_rivulet):
    """The Java client with a PEM keystore on an SSL listener that requires client certificates
    (--listener-ssl-client-auth SSL:required): principal User:CN=java-client, a super user here;
    the idempotent producer and the admin topic calls work. Without a certificate the same cases
    fail (the handshake is refused)."""
    class View:
        bootstrap = secure_rivulet.ssl_bootstrap
        brokers = secure_rivulet.brokers
    cases = ["idempotent_producer", "admin_topics"]
    results = run_suite(View, extra=[f"--client-config={secure_rivulet.mtls_properties}"], cases=cases)
    for case in cases:
        status, text = results[case]
        assert status == "PASS", text
    refused = run_suite(View, extra=[f"--client-config={secure_rivulet.nocert_properties}"], cases=["describe_cluster"])
    assert refused["describe_cluster"][0] == "FAIL", refused["describe_cluster"][1]
