"""Log compaction end to end with confluent-kafka (and a kafka-python reader): a
cleanup.policy=compact topic keeps the latest value of every key at its original offset,
tombstones go after delete.retention.ms, the log shrinks, and keyless records are refused."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from harness import wait_until
from kafka import KafkaConsumer
from kafka import TopicPartition as KPTopicPartition
from kafka_helpers import admin, assigned_consumer, consume_partitions, create_topic, produce_all, producer, unique_topic

KEYS = 100
ROUNDS = 25
DELETED = 10  # keys k0..k9 get a tombstone


def log_bytes(data_dir: Path, topic: str) -> int:
    return sum(f.stat().st_size for f in (Path(data_dir) / f"{topic}-0").glob("*.log"))


def read_all(bootstrap: str, topic: str) -> list:
    msgs = consume_partitions(bootstrap, topic, [0], timeout=60)[0]
    return [(m.offset(), m.key(), m.value()) for m in msgs]


def test_compacted_topic_keeps_latest_value_per_key(broker_factory):
    b = broker_factory(log_cleaner_backoff_ms=200)
    topic = unique_topic("compact")
    create_topic(
        b.bootstrap,
        topic,
        config={
            "cleanup.policy": "compact",
            "segment.bytes": "16384",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "1500",
            # Nothing is cleanable until the "before" size is taken (lowered below): otherwise
            # the cleaner may already run while the records go in, and "before" is too small.
            "min.compaction.lag.ms": "3600000",
        },
    )
    # Small gzip batches: the cleaner must inflate, filter and re-encode them.
    p = producer(b.bootstrap, batch_size=4096, linger_ms=2, compression_type="gzip")
    records = []
    for r in range(ROUNDS):
        for k in range(KEYS):
            value = f"v-{k}-{r}-".encode() + uuid.uuid4().hex.encode()
            records.append((topic, 0, f"k{k}".encode(), value, None))
    records += [(topic, 0, f"k{k}".encode(), None, None) for k in range(DELETED)]
    # Distinct keys last (incompressible, 2+ segments' worth), so the active segment (never
    # cleaned) holds no duplicates and no tombstones.
    records += [(topic, 0, f"filler-{i}".encode(), os.urandom(80), None) for i in range(300)]
    delivered = produce_all(p, records)

    expected: dict[bytes, tuple[int, bytes | None]] = {}
    for (_, _, key, value, _), (_, offset) in zip(records, delivered):
        expected[key] = (offset, value)
    live = {k: v for k, v in expected.items() if v[1] is not None}
    before = log_bytes(b.data_dir, topic)
    end = delivered[-1][1] + 1
    lag = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    a = admin(b.bootstrap)
    a.incremental_alter_configs([lag])[lag].result(10)

    def cleaned():
        seen = read_all(b.bootstrap, topic)
        keys = [k for _, k, _ in seen]
        tombstones = [k for _, k, v in seen if v is None]
        return len(keys) == len(set(keys)) and not tombstones and seen

    # Duplicates go first; tombstones after delete.retention.ms and the next pass.
    seen = wait_until(cleaned, timeout=60, interval=0.5, what="the cleaner to leave one record per key")
    got = {k: (o, v) for o, k, v in seen}
    assert got == live, "a consumer from the beginning must see exactly the latest value of every live key at its offset"
    # kafka-python too steps over the gaps (it must go on from a batch's last offset).
    kp = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        tp = KPTopicPartition(topic, 0)
        kp.assign([tp])
        kp.seek_to_beginning(tp)
        kp_seen = {}
        deadline = time.monotonic() + 30
        while kp.position(tp) < end and time.monotonic() < deadline:
            for batch in kp.poll(timeout_ms=500).values():
                kp_seen.update((m.key, (m.offset, m.value)) for m in batch)
    finally:
        kp.close()
    assert kp_seen == live
    after = log_bytes(b.data_dir, topic)
    # Mostly the distinct filler records remain (about 30 KB of random bytes).
    assert after < before / 2, f"log did not shrink enough: {before} -> {after} bytes"

    # Offsets are unchanged: log start and end stay, gaps are where records were removed.
    c = assigned_consumer(b.bootstrap)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()
    assert (low, high) == (0, end)

    # A keyless record is refused (its whole batch, as in Kafka, so it goes alone) ...
    errors = []
    p.produce(topic, key=None, value=b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    # ... and keyed writes after compaction go on at the log end.
    assert produce_all(p, [(topic, 0, b"k50", b"new", None)]) == [(0, end)]
    final = {k: v for _, k, v in read_all(b.bootstrap, topic)}
    assert final[b"k50"] == b"new" and None not in final


def test_keyless_records_pass_on_delete_topics_and_offsets_topic_is_compacted(broker_factory):
    b = broker_factory()
    topic = unique_topic("plain")
    create_topic(b.bootstrap, topic)
    p = producer(b.bootstrap)
    produce_all(p, [(topic, 0, None, b"no key is fine here", None)])
    # Committing through a group creates __consumer_offsets, compacted as in Kafka.
    c = assigned_consumer(b.bootstrap, group_id="compaction-" + uuid.uuid4().hex[:6])
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        c.close()
    a = admin(b.bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets")
    entries = a.describe_configs([res])[res].result(timeout=20)
    assert entries["cleanup.policy"].value == "compact"
