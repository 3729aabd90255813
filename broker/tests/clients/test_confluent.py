"""confluent-kafka (librdkafka 2.x) against the broker: bulk round trips per compression codec with
the idempotent producer, ListOffsets by timestamp, the admin APIs, size limits, headers."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

import rawkafka as raw
from harness import wait_until
from kafka_helpers import (
    admin,
    assert_stored_as_sent,
    assigned_consumer,
    consume_partitions,
    create_topic,
    produce_all,
    producer,
    stored_batch_codecs,
    unique_topic,
    watermarks,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
FIND_COORDINATOR = 10


def codec_records(topic: str, codec: str, n: int, partitions: int):
    """Deterministic records: mostly compressible text with a random tail, some headers with a
    repeated key, some null values."""
    rnd = random.Random(f"{codec}-{n}")
    recs = []
    for i in range(n):
        value = (f"message {i} via {codec}; " * (1 + i % 5)).encode() + rnd.randbytes(i % 24)
        if i % 1001 == 7:
            value = None
        headers = None
        if i % 97 == 0:
            headers = [("seq", str(i).encode()), ("dup", b"a"), ("dup", b"b")]
        recs.append((topic, i % partitions, f"k{i}".encode(), value, headers))
    return recs


@pytest.mark.parametrize("codec", CODECS)
def test_100k_messages_6_partitions_per_codec(broker, codec):
    n, parts = 100_000, 6
    topic = unique_topic(f"bulk-{codec}")
    create_topic(broker.bootstrap, topic, partitions=parts)
    recs = codec_records(topic, codec, n, parts)
    p = producer(
        broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type=codec,
        linger_ms=20,
    )
    delivered = produce_all(p, recs, timeout=90)

    got = consume_partitions(broker.bootstrap, topic, range(parts), timeout=90)
    for part in range(parts):
        want = [r for r in recs if r[1] == part]
        msgs = got[part]
        assert len(msgs) == len(want), f"partition {part}: {len(msgs)} messages, want {len(want)}"
        assert [m.offset() for m in msgs] == list(range(len(want))), f"partition {part}: offsets not 0..n-1 in order"
        for m, (_, _, key, value, headers) in zip(msgs, want):
            assert (m.key(), m.value()) == (key, value), f"partition {part} offset {m.offset()}"
            assert m.headers() == headers, f"partition {part} offset {m.offset()}"
    # Each message sits at the offset its delivery report announced.
    for (part, off), (_, _, key, _, _) in zip(delivered, recs):
        assert got[part][off].key() == key

    # Batches are stored as the producer compressed them, not recompressed or inflated.
    codecs = Counter()
    for q in range(parts):
        codecs += stored_batch_codecs(broker.data_dir, topic, q)
    if codec == "lz4" and FIND_COORDINATOR not in raw.api_versions(broker.bootstrap)[1] and set(codecs) == {0}:
        pytest.xfail(
            "round trip verified, but librdkafka enables LZ4 only when the broker advertises FindCoordinator "
            "(consumer groups, a later issue), so it sent these batches uncompressed"
        )
    assert_stored_as_sent(codecs, codec)


def test_auto_create_on_produce(broker):
    topic = unique_topic("auto")
    p = producer(broker.bootstrap)
    produce_all(p, [(topic, None, b"k", b"v", None)])
    assert consume_partitions(broker.bootstrap, topic, [0])[0][0].value() == b"v"


def test_list_offsets_by_timestamp(broker):
    topic = unique_topic("ts")
    create_topic(broker.bootstrap, topic, partitions=1)
    t0 = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap, linger_ms=50)
    # Ten batches of ten records, timestamps one second apart: lookups land inside batches too.
    for b in range(10):
        for i in range(b * 10, b * 10 + 10):
            p.produce(topic, key=str(i).encode(), value=b"x", partition=0, timestamp=t0 + i * 1000)
        assert p.flush(30) == 0

    c = assigned_consumer(broker.bootstrap)
    try:
        def lookup(ts):
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(t0 - 1) == 0
        assert lookup(t0) == 0
        assert lookup(t0 + 50_000) == 50
        assert lookup(t0 + 55_000) == 55
        assert lookup(t0 + 55_500) == 56
        assert lookup(t0 + 99_000) == 99
        assert lookup(t0 + 99_001) == OFFSET_END  # no record that late: -1
    finally:
        c.close()

    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    specs = {
        "earliest": (OffsetSpec.earliest(), 0),
        "latest": (OffsetSpec.latest(), 100),
        "max_timestamp": (OffsetSpec.max_timestamp(), 99),
        "for_timestamp": (OffsetSpec.for_timestamp(t0 + 42_000), 42),
    }
    for name, (spec, want) in specs.items():
        info = a.list_offsets({tp: spec}, request_timeout=10)[tp].result(timeout=15)
        assert info.offset == want, f"{name}: offset {info.offset}, want {want}"
        if name == "max_timestamp":
            assert info.timestamp == t0 + 99_000


def test_log_append_time_topic(broker):
    topic = unique_topic("lat")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 86_400_000
    before = int(time.time() * 1000)
    produce_all(producer(broker.bootstrap), [(topic, 0, b"k", b"v", None)])
    after = int(time.time() * 1000)
    [m] = consume_partitions(broker.bootstrap, topic, [0])[0]
    ts_type, ts = m.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000
    assert ts != old


def source(entry) -> int:
    """ConfigEntry.source as an int, whether the client gives the enum or its value."""
    return getattr(entry.source, "value", entry.source)


DYNAMIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def describe(a, resource) -> dict:
    return a.describe_configs([resource])[resource].result(timeout=15)


def test_admin_create_describe_alter_delete_topics(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("adm")
    cfg = {"retention.ms": "3600000", "segment.bytes": "1048576", "max.message.bytes": "200000"}
    a.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1, config=cfg)])[topic].result(timeout=15)

    md = a.list_topics(topic, timeout=10).topics[topic]
    assert md.error is None
    assert sorted(md.partitions) == [0, 1, 2, 3]

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = describe(a, res)
    for k, v in cfg.items():
        assert entries[k].value == v, k
        assert source(entries[k]) == DYNAMIC, k
    assert entries["cleanup.policy"].value == "delete"
    assert source(entries["cleanup.policy"]) != DYNAMIC
    assert "message.timestamp.type" in entries

    # Incremental: set one, delete another (it falls back to the broker default).
    a.incremental_alter_configs(
        [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
                    ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
                ],
            )
        ]
    )[res].result(timeout=15)
    entries = describe(a, res)
    assert entries["retention.ms"].value == "7200000"
    assert entries["segment.bytes"].value == "1048576"
    assert source(entries["max.message.bytes"]) != DYNAMIC

    # Legacy AlterConfigs replaces the whole set: retention.ms goes back to its default.
    a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.bytes": "123456789"})])[
        res
    ].result(timeout=15)
    entries = describe(a, res)
    assert entries["retention.bytes"].value == "123456789"
    assert source(entries["retention.ms"]) != DYNAMIC
    assert source(entries["segment.bytes"]) != DYNAMIC

    # Bad value: refused with INVALID_CONFIG, config unchanged.
    with pytest.raises(KafkaException) as ei:
        a.incremental_alter_configs(
            [
                ConfigResource(
                    ConfigResource.Type.TOPIC,
                    topic,
                    incremental_configs=[ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)],
                )
            ]
        )[res].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert describe(a, res)["retention.bytes"].value == "123456789"

    # Creating it again: TOPIC_ALREADY_EXISTS.
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Configs survive a delete+list round; then delete it and it is gone.
    a.delete_topics([topic], operation_timeout=10)[topic].result(timeout=15)
    wait_until(lambda: topic not in a.list_topics(timeout=10).topics, 10, what=f"{topic} to disappear")
    with pytest.raises(KafkaException) as ei:
        a.delete_topics([topic], operation_timeout=10)[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_create_with_bad_config_is_refused(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("badcfg")
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "forever"})])[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic(topic, 1, 3)])[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic not in a.list_topics(timeout=10).topics


def test_broker_configs_describe(broker):
    a = admin(broker.bootstrap)
    entries = describe(a, ConfigResource(ConfigResource.Type.BROKER, "0"))
    assert "log.retention.ms" in entries
    assert "log.segment.bytes" in entries


def test_create_topics_validate_only(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("vo")
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], validate_only=True)[topic].result(timeout=15)
    assert topic not in a.list_topics(timeout=10).topics
    # A validate-only request with an invalid config is refused, and nothing is created either.
    with pytest.raises(KafkaException) as ei:
        a.create_topics(
            [NewTopic(topic, 3, 1, config={"cleanup.policy": "bogus"})], validate_only=True
        )[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    # The name is still free for real.
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=15)
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 3


def test_create_partitions(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("cp")
    create_topic(broker.bootstrap, topic, partitions=2)
    a.create_partitions([NewPartitions(topic, 5)], validate_only=True)[topic].result(timeout=15)
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=15)
    wait_until(lambda: len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 5, 10, what="5 partitions")
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=15)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    recs = [(topic, q, f"k{q}".encode(), f"v{q}".encode(), None) for q in range(5)]
    produce_all(producer(broker.bootstrap), recs)
    got = consume_partitions(broker.bootstrap, topic, range(5))
    for q in range(5):
        assert [(m.key(), m.value()) for m in got[q]] == [(f"k{q}".encode(), f"v{q}".encode())]


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    d = a.describe_cluster(request_timeout=10).result(timeout=15)
    assert [n.id for n in d.nodes] == [0]
    assert (d.nodes[0].host, d.nodes[0].port) == ("127.0.0.1", broker.port)
    assert d.controller.id == 0
    assert d.cluster_id


def test_delete_records(broker):
    topic = unique_topic("delrec")
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), [(topic, 0, None, f"v{i}".encode(), None) for i in range(100)])
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0, 40)
    res = a.delete_records([tp], request_timeout=10)[tp].result(timeout=15)
    assert res.low_watermark == 40
    assert watermarks(broker.bootstrap, topic, 0) == (40, 100)
    msgs = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.offset() for m in msgs] == list(range(40, 100))
    assert msgs[0].value() == b"v40"


def test_message_over_the_limit_is_refused_cleanly(broker):
    topic = unique_topic("big")
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "10000"})
    # The client would refuse locally at its own message.max.bytes: raise that so the broker decides.
    p = producer(broker.bootstrap, message_max_bytes=2_000_000, linger_ms=0, compression_type="none")
    errors = []
    p.produce(topic, value=b"z" * 50_000, partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]
    # Same producer, same connection: a small message still goes through, and only it is stored.
    produce_all(p, [(topic, 0, b"k", b"small", None)])
    assert watermarks(broker.bootstrap, topic, 0) == (0, 1)
    [m] = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert m.value() == b"small"


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_duplicate_header_keys_come_back_exactly(broker, codec):
    topic = unique_topic("hdr")
    create_topic(broker.bootstrap, topic)
    headers = [
        ("h", b"1"),
        ("h", b"2"),
        ("x", None),
        ("h", b""),
        ("\u00fc", b"\x00\xff\x00"),
        ("h", b"1"),
    ]
    p = producer(broker.bootstrap, compression_type=codec, linger_ms=10)
    produce_all(p, [(topic, 0, b"k", b"v", headers), (topic, 0, b"k2", b"v2", list(reversed(headers)))])
    got = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.headers() for m in got] == [headers, list(reversed(headers))]
    assert got[0].timestamp()[0] == TIMESTAMP_CREATE_TIME


def test_fetch_returns_as_soon_as_data_arrives(broker):
    """A consumer parked in a long-poll Fetch (fetch.wait.max.ms=5000) must be woken by the
    produce, not by its timeout. Timing is observed, not benchmarked: the bound is 2.5 s, half
    the wait, so only a fetch that sleeps out its max wait fails."""
    topic = unique_topic("wake")
    create_topic(broker.bootstrap, topic)
    c = assigned_consumer(broker.bootstrap, fetch_wait_max_ms=5000)
    p = producer(broker.bootstrap, linger_ms=0)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        c.consume(num_messages=1, timeout=1.5)  # let the first Fetch park at the end of the log
        worst = 0.0
        for i in range(3):
            sent = time.monotonic()
            p.produce(topic, value=f"wake-{i}".encode(), partition=0)
            p.flush(10)
            deadline = sent + 10
            msgs = []
            while not msgs and time.monotonic() < deadline:
                msgs = [m for m in c.consume(num_messages=1, timeout=0.05) if not m.error()]
            assert msgs and msgs[0].value() == f"wake-{i}".encode()
            worst = max(worst, time.monotonic() - sent)
            time.sleep(0.3)
        assert worst < 2.5, f"a parked Fetch took {worst:.2f} s to return new data"
    finally:
        c.close()
