"""The ACL authorizer (issue 14): CreateAcls/DescribeAcls/DeleteAcls through confluent-kafka's
AdminClient and kafka-python, and enforcement with Kafka's semantics against real clients over
SASL_PLAINTEXT with SCRAM-SHA-512: a user without ACLs is denied and nothing is written, DENY
overrides ALLOW, prefixed ACLs, Metadata leaves out what the user may not Describe, groups need
Read, the ACL APIs need Alter/Describe on the cluster, super users pass.

Users are created on a first start without the authorizer (as Kafka's kafka-configs would in
ZooKeeper), then the broker restarts with `--authorizer simple --super-users User:admin`."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)

from harness import Broker, free_port

USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture(scope="module")
def authz(tmp_path_factory):
    d = tmp_path_factory.mktemp("acl-broker")
    b = Broker(d / "data", d / "broker.log", num_partitions=1)
    sasl_port = free_port()
    b.flags.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "inter-broker-listener-name": "PLAINTEXT",
        "connection-failed-authentication-delay-ms": "10",
        "log-level": "info,rivulet_broker::security=debug",
    })
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    ups = [UserScramCredentialUpsertion(u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), pw.encode())
           for u, pw in USERS.items()]
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=20)
    # Without an authorizer the ACL APIs answer SECURITY_DISABLED, as Kafka's do.
    probe = acl(ResourceType.TOPIC, "t", "alice", AclOperation.READ)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([probe])[probe].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
    b.stop()
    b.flags.update({"authorizer": "simple", "super-users": "User:admin"})
    b.start()
    b.sasl_addr = f"127.0.0.1:{sasl_port}"
    yield b
    b.stop()


def conf(b, user: str) -> dict:
    return {
        "bootstrap.servers": b.sasl_addr,
        "security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": USERS[user],
    }


def any_filter() -> AclBindingFilter:
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def acl(rt, name, who, op, perm=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL, host="*"):
    return AclBinding(rt, name, pattern, f"User:{who}", host, op, perm)


def create_acls(b, bindings):
    admin = AdminClient(conf(b, "admin"))
    for f in admin.create_acls(bindings).values():
        f.result(timeout=20)


def new_topic(b, prefix="acl") -> str:
    t = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf(b, "admin"))
    admin.create_topics([NewTopic(t, 1, 1)])[t].result(timeout=20)
    return t


def produce(b, user, topic, n=3) -> list:
    errors = []
    p = Producer({**conf(b, user), "message.timeout.ms": 5000, "enable.idempotence": False,
                  "allow.auto.create.topics": False})
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda e, m: errors.append(e))
    p.flush(10)
    return errors


def end_offset(b, topic) -> int:
    c = Consumer({**conf(b, "admin"), "group.id": "probe"})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    return hi


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def test_user_without_acls_is_denied_and_nothing_is_written(authz):
    topic = new_topic(authz)
    errors = produce(authz, "bob", topic)
    assert errors and all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errors), errors
    assert end_offset(authz, topic) == 0
    # The super user writes.
    assert produce(authz, "admin", topic) == [None, None, None]
    assert end_offset(authz, topic) == 3


def test_acls_are_created_described_and_deleted(authz):
    topic = new_topic(authz)
    admin = AdminClient(conf(authz, "admin"))
    bindings = [acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE),
                acl(ResourceType.TOPIC, topic[:6], "alice", AclOperation.READ, pattern=ResourcePatternType.PREFIXED)]
    create_acls(authz, bindings)
    # MATCH finds the literal and the prefixed ACL that apply to the topic.
    flt = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.MATCH, "User:alice", None,
                           AclOperation.ANY, AclPermissionType.ANY)
    got = admin.describe_acls(flt).result(timeout=20)
    assert sorted((a.name, a.resource_pattern_type, a.operation) for a in got) == sorted(
        (x.name, x.resource_pattern_type, x.operation) for x in bindings)
    # ANY with a name matches that exact name only.
    exact = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert [a.name for a in admin.describe_acls(exact).result(timeout=20)] == [topic]
    deleted = admin.delete_acls([flt])[flt].result(timeout=20)
    assert len(deleted) == 2
    assert admin.describe_acls(flt).result(timeout=20) == []


def test_allow_then_deny_overrides(authz):
    topic = new_topic(authz)
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE)])
    assert produce(authz, "alice", topic, n=2) == [None, None]
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.ALL, perm=AclPermissionType.DENY)])
    errors = produce(authz, "alice", topic, n=2)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2
    assert end_offset(authz, topic) == 2


def test_prefixed_acl_and_metadata_filtering(authz):
    prefix = f"team{uuid.uuid4().hex[:4]}-"
    mine, other = new_topic(authz, prefix + "a"), new_topic(authz, "elsewhere")
    create_acls(authz, [acl(ResourceType.TOPIC, prefix, "bob", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)])
    assert produce(authz, "bob", mine, n=1) == [None]
    assert [e.code() for e in produce(authz, "bob", other, n=1)] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    listed = AdminClient(conf(authz, "bob")).list_topics(timeout=20).topics
    assert mine in listed and other not in listed
    # Asked for by name, an undescribable topic is TOPIC_AUTHORIZATION_FAILED.
    md = AdminClient(conf(authz, "bob")).list_topics(topic=other, timeout=20)
    assert md.topics[other].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_consuming_needs_read_on_topic_and_group(authz):
    topic = new_topic(authz)
    assert produce(authz, "admin", topic, n=2) == [None, None]
    group = f"g-{topic}"
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.READ)])

    def consume():
        c = Consumer({**conf(authz, "alice"), "group.id": group, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        got, errs, deadline = [], [], time.monotonic() + 8
        while len(got) < 2 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errs.append(m.error().code())
                break
            got.append(m.value())
        c.close()
        return got, errs

    got, errs = consume()
    assert not got and KafkaError.GROUP_AUTHORIZATION_FAILED in errs, (got, errs)
    create_acls(authz, [acl(ResourceType.GROUP, group, "alice", AclOperation.READ)])
    got, errs = consume()
    assert got == [b"m0", b"m1"], (got, errs)


def test_acl_apis_need_cluster_permissions(authz):
    alice = AdminClient(conf(authz, "alice"))
    # DescribeAcls answers CLUSTER_AUTHORIZATION_FAILED (librdkafka reports it as no ACLs):
    # nothing is disclosed although ACLs exist.
    create_acls(authz, [acl(ResourceType.TOPIC, "visible-to-admin", "bob", AclOperation.READ)])
    assert AdminClient(conf(authz, "admin")).describe_acls(any_filter()).result(timeout=20)
    assert alice.describe_acls(any_filter()).result(timeout=20) == []
    b = acl(ResourceType.TOPIC, "x", "alice", AclOperation.ALL)
    with pytest.raises(KafkaException) as e:
        alice.create_acls([b])[b].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # Invalid creations are refused one by one.
    bad = AclBinding(ResourceType.BROKER, "other-cluster", ResourcePatternType.LITERAL, "User:x", "*",
                     AclOperation.ALTER, AclPermissionType.ALLOW)
    admin = AdminClient(conf(authz, "admin"))
    with pytest.raises(KafkaException) as e:
        admin.create_acls([bad])[bad].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST


def test_create_topic_needs_create(authz):
    name = f"made-{uuid.uuid4().hex[:6]}"
    bob = AdminClient(conf(authz, "bob"))
    with pytest.raises(KafkaException) as e:
        bob.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(authz, [acl(ResourceType.TOPIC, name, "bob", AclOperation.CREATE)])
    bob.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=20)


def test_host_matching(authz):
    topic = new_topic(authz)
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE, host="10.9.9.9")])
    assert [e.code() for e in produce(authz, "alice", topic, n=1)] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE, host="127.0.0.1")])
    assert produce(authz, "alice", topic, n=1) == [None]


def test_acls_survive_a_restart(authz):
    topic = new_topic(authz)
    create_acls(authz, [acl(ResourceType.TOPIC, topic, "alice", AclOperation.WRITE)])
    authz.stop()
    authz.start()
    assert produce(authz, "alice", topic, n=1) == [None]
    stored = (authz.data_dir / "acls.json").read_text()
    assert f"LITERAL:Topic:{topic}" in stored and '"permissionType": "Allow"' in stored


def test_kafka_python_acl_admin(authz):
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLFilter, ACLOperation, ACLPermissionType, ResourcePattern, ResourcePatternFilter
    from kafka.admin import ResourceType as KRT, ACLResourcePatternType as KPT
    admin = KafkaAdminClient(bootstrap_servers=authz.sasl_addr, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="admin",
                             sasl_plain_password=USERS["admin"])
    name = f"kp-{uuid.uuid4().hex[:6]}"
    a = ACL(principal="User:bob", host="*", operation=ACLOperation.READ, permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(KRT.TOPIC, name, KPT.LITERAL))
    res = admin.create_acls([a])
    assert res["succeeded"] and not res["failed"], res
    f = ACLFilter(principal="User:bob", host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                  resource_pattern=ResourcePatternFilter(KRT.TOPIC, name, KPT.LITERAL))
    found, err = admin.describe_acls(f)
    assert [x.resource_pattern.resource_name for x in found] == [name], (found, err)
    deleted = admin.delete_acls([f])
    assert len(deleted[0][1]) == 1
    admin.close()
