"""SCRAM credentials in cluster mode: written through one broker into /config/users with a
/config/changes notification, and seen by every broker within seconds (login, password change,
deletion), against both coordinators."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

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
