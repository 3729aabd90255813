"""KIP-430 authorized operations through confluent-kafka's AdminClient: asked for, the broker
answers with every operation that applies to the resource (Kafka with no authorizer); not asked
for, the field stays "omitted". (kafkajs 2.2's admin client cannot ask for them.)"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicCollection
from confluent_kafka.admin import AclOperation
from kafka.admin import KafkaAdminClient

from kafka_helpers import admin, create_topic, unique_topic

TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
             AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
               AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}


def test_describe_cluster_and_topics(broker):
    a = admin(broker.bootstrap)
    d = a.describe_cluster(include_authorized_operations=True, request_timeout=10).result(timeout=15)
    assert set(d.authorized_operations) == CLUSTER_OPS
    d = a.describe_cluster(request_timeout=10).result(timeout=15)
    assert d.authorized_operations is None

    topic = unique_topic("authz")
    create_topic(broker.bootstrap, topic, partitions=2)
    fs = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True, request_timeout=10)
    t = fs[topic].result(timeout=15)
    assert set(t.authorized_operations) == TOPIC_OPS
    assert len(t.partitions) == 2
    t = a.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result(timeout=15)
    assert t.authorized_operations is None


def test_describe_consumer_groups(broker):
    topic = unique_topic("authz-grp")
    create_topic(broker.bootstrap, topic)
    group = "authz-" + uuid.uuid4().hex[:8]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "session.timeout.ms": 10000})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while not c.assignment():
            assert time.monotonic() < deadline, "consumer never got an assignment"
            c.poll(0.2)
        a = admin(broker.bootstrap)
        [g] = [f.result(timeout=15) for f in a.describe_consumer_groups([group], include_authorized_operations=True, request_timeout=10).values()]
        assert g.group_id == group and len(g.members) == 1
        assert set(g.authorized_operations) == GROUP_OPS
        [g] = [f.result(timeout=15) for f in a.describe_consumer_groups([group], request_timeout=10).values()]
        assert g.authorized_operations is None

        # kafka-python always asks, and decodes the bitfield into Kafka's operation names.
        kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            desc = kp.describe_groups([group])[group]
            assert desc["error"] is None, desc
            assert set(desc["authorized_operations"]) == {"READ", "DESCRIBE", "DELETE"}, desc
        finally:
            kp.close()
    finally:
        c.close()


def test_metadata_versions_8_to_12(broker):
    """Metadata through kafka-python at pinned versions: the topic's operations from v8, the
    cluster's only in v8-10 (v11 moved them to DescribeCluster), "omitted" when not asked."""
    from kafka.protocol.metadata import MetadataRequest

    topic = unique_topic("authz-md")
    create_topic(broker.bootstrap, topic)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    # kafka-python decodes the bitfield into the set of operation codes; INT32_MIN into None.
    topic_bits = {op.value for op in TOPIC_OPS}
    cluster_bits = {op.value for op in CLUSTER_OPS}
    omitted = None
    try:
        for version in (8, 9, 10, 11, 12):
            for asked in (True, False):
                req = MetadataRequest(
                    topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                    allow_auto_topic_creation=False,
                    include_cluster_authorized_operations=asked and version <= 10,
                    include_topic_authorized_operations=asked,
                    min_version=version,
                    max_version=version,
                )

                async def send(r=req):
                    return await kp._manager.send(r)

                resp = kp._manager.run(send)
                [t] = resp.topics
                assert t.authorized_operations == (topic_bits if asked else omitted), (version, asked)
                if version <= 10:
                    assert resp.authorized_operations == (cluster_bits if asked else omitted), (version, asked)
    finally:
        kp.close()
