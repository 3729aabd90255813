"""kafka-python (pure Python, infers the broker's version from ApiVersions) round trips."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from kafka_helpers import assert_stored_as_sent, consume_partitions, stored_batch_codecs, unique_topic


def read_all(bootstrap: str, topic: str, partitions: list[int], expected: int, timeout: float = 30.0):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500, max_records=5000).values():
                out.extend(batch)
        return out
    finally:
        c.close()


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_round_trip(broker, compression):
    topic = unique_topic("kpy")
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        a.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
        # kafka-python read ApiVersions and settled on a broker version with record headers.
        assert a._manager.broker_version >= (0, 11), a._manager.broker_version
    finally:
        a.close()

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=compression, linger_ms=5)
    sent = []
    futures = []
    for i in range(3000):
        part = i % 3
        key = f"key-{i}".encode()
        value = None if i % 250 == 3 else (f"value-{i}-" * (i % 9)).encode()
        headers = [("n", str(i).encode()), ("n", b"again")] if i % 10 == 0 else []
        futures.append(p.send(topic, key=key, value=value, partition=part, headers=headers))
        sent.append((part, key, value, headers))
    p.flush(timeout=30)
    metas = [f.get(timeout=10) for f in futures]
    p.close()
    for part in range(3):
        offs = [m.offset for m in metas if m.partition == part]
        assert offs == list(range(1000)), f"partition {part} offsets"

    got = read_all(broker.bootstrap, topic, [0, 1, 2], len(sent))
    assert len(got) == len(sent)
    for part in range(3):
        want = [(k, v, h) for (q, k, v, h) in sent if q == part]
        have = [(r.key, r.value, list(r.headers)) for r in got if r.partition == part]
        assert [r.offset for r in got if r.partition == part] == list(range(1000))
        assert have == want, f"partition {part} differs"

    # Stored as kafka-python compressed it, and readable by librdkafka too.
    codecs = sum((stored_batch_codecs(broker.data_dir, topic, part) for part in range(3)), Counter())
    assert_stored_as_sent(codecs, compression or "none")
    other = consume_partitions(broker.bootstrap, topic, range(3))
    for part in range(3):
        want = [(k, v) for (q, k, v, _) in sent if q == part]
        assert [(m.key(), m.value()) for m in other[part]] == want


def test_kafka_python_admin_and_log_dirs(broker):
    topic = unique_topic("kpy-adm")
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "600000"}}})
        assert topic in a.list_topics()
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
        for i in range(100):
            p.send(topic, value=b"x" * 1000, partition=i % 2)
        p.flush(timeout=30)
        p.close()

        [per_broker] = a.describe_log_dirs(topic_partitions=[topic])
        assert per_broker["broker"] == 0
        [log_dir] = per_broker["log_dirs"]
        assert log_dir["error_code"] == 0
        [t] = [t for t in log_dir["topics"] if t["name"] == topic]
        sizes = {pt["partition_index"]: pt["partition_size"] for pt in t["partitions"]}
        assert set(sizes) == {0, 1}
        assert all(s >= 50 * 1000 for s in sizes.values()), sizes
        # kafka-python negotiates DescribeLogDirs v4, which carries the filesystem's size and free space.
        fs = os.statvfs(broker.data_dir)
        total, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
        assert abs(log_dir["total_bytes"] - total) <= total * 0.01, (log_dir["total_bytes"], total)
        assert abs(log_dir["usable_bytes"] - free) <= total * 0.01, (log_dir["usable_bytes"], free)

        a.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in a.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic not in a.list_topics()
    finally:
        a.close()
