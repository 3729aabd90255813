"""Topic compression.type other than `producer`: the leader stores every batch in the topic's
codec (recompressing, or decompressing for `uncompressed`), as Kafka does, and every client
family reads back exactly what was sent — keys, values, duplicate header keys, timestamps and
offsets — from what was recompressed: confluent-kafka and kcat (librdkafka), kafka-python, and
kafkajs (gzip and uncompressed topics: the codecs kafkajs has without plugins)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from kafka_helpers import CODEC_IDS, admin, consume_partitions, create_topic, producer, stored_batch_codecs, unique_topic
from test_kafka_python import read_all as kafka_python_read_all

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"
TARGETS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
SOURCES = ["none", "gzip", "snappy", "lz4", "zstd"]
T0 = 1_700_000_000_000


def sample(tag: str, n: int) -> list[tuple]:
    """(key, value, headers, timestamp): compressible values, a null now and then, duplicate
    header keys, timestamps not in send order."""
    out = []
    for i in range(n):
        value = None if i % 37 == 5 else (f"{tag} record {i} " * (1 + i % 6)).encode()
        headers = [("dup", b"one"), ("dup", b"two"), ("i", str(i).encode())] if i % 3 == 0 else []
        out.append((f"{tag}-k{i}".encode(), value, headers, T0 + (i * 7919) % 5000))
    return out


def send(bootstrap: str, topic: str, recs: list[tuple], **conf) -> None:
    p = producer(bootstrap, linger_ms=5, acks="all", **conf)
    errors = []
    for key, value, headers, ts in recs:
        p.produce(topic, key=key, value=value, headers=headers, timestamp=ts, partition=0,
                  on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert not errors, errors[:3]


def only_codec(data_dir: Path, topic: str, codec: int) -> Counter:
    codecs = stored_batch_codecs(data_dir, topic, 0)
    assert set(codecs) == {codec}, f"stored batches by codec id: {dict(codecs)}, want only {codec}"
    return codecs


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_producer_codec_is_stored_in_the_topic_codec_and_reads_back(broker, target):
    topic = unique_topic(f"recomp-{target}")
    create_topic(broker.bootstrap, topic, config={"compression.type": target})
    want = []
    for src in SOURCES:
        recs = sample(src, 150)
        # One idempotent producer: producer id, epoch and sequences survive the rebuild.
        send(broker.bootstrap, topic, recs, compression_type=src, enable_idempotence=(src == "zstd"))
        want += recs
    codecs = only_codec(broker.data_dir, topic, TARGETS[target])
    print(f"{target}: {sum(codecs.values())} batches stored, all codec {TARGETS[target]}")

    # confluent-kafka (librdkafka).
    got = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.offset() for m in got] == list(range(len(want)))
    assert [(m.key(), m.value(), m.headers() or [], m.timestamp()) for m in got] == [
        (k, v, h, (TIMESTAMP_CREATE_TIME, ts)) for k, v, h, ts in want
    ]

    # kafka-python.
    kp = kafka_python_read_all(broker.bootstrap, topic, [0], len(want))
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in kp] == [
        (i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(want)
    ]

    # kcat (Debian's librdkafka 2.0.2).
    if KCAT:
        r = subprocess.run([KCAT, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J", "-q"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        msgs = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
        assert [(m["offset"], m["key"], m["payload"], m["ts"]) for m in msgs] == [
            (i, k.decode(), None if v is None else v.decode(), ts) for i, (k, v, _, ts) in enumerate(want)
        ]
        assert [m.get("headers", []) for m in msgs] == [
            [x for hk, hv in h for x in (hk, hv.decode())] for _, _, h, _ in want
        ]


def test_log_append_time_and_config_changes(broker):
    topic = unique_topic("recomp-lat")
    create_topic(broker.bootstrap, topic, config={"compression.type": "zstd", "message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    send(broker.bootstrap, topic, sample("lat", 50), compression_type="gzip")
    only_codec(broker.data_dir, topic, 4)
    got = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert all(m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME and m.timestamp()[1] >= before for m in got)
    assert [m.key() for m in got] == [k for k, _, _, _ in sample("lat", 50)]

    # IncrementalAlterConfigs: back to producer (the opaque path), then to snappy.
    a = admin(broker.bootstrap)
    plain = unique_topic("recomp-alter")
    create_topic(broker.bootstrap, plain)
    send(broker.bootstrap, plain, sample("p1", 40), compression_type="lz4")

    def alter(value: str) -> None:
        res = ConfigResource("topic", plain, incremental_configs=[ConfigEntry("compression.type", value, incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([res])[res].result(timeout=15)

    alter("snappy")
    send(broker.bootstrap, plain, sample("p2", 40), compression_type="lz4")
    alter("producer")
    send(broker.bootstrap, plain, sample("p3", 40), compression_type="zstd")
    codecs = stored_batch_codecs(broker.data_dir, plain, 0)
    assert set(codecs) == {3, 2, 4}, dict(codecs)
    got = consume_partitions(broker.bootstrap, plain, [0])[0]
    want = sample("p1", 40) + sample("p2", 40) + sample("p3", 40)
    assert [(m.key(), m.value(), m.headers() or []) for m in got] == [(k, v, h) for k, v, h, _ in want]
    # A name Kafka does not know is still refused.
    res = ConfigResource("topic", plain, incremental_configs=[ConfigEntry("compression.type", "brotli", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="compression.type"):
        a.incremental_alter_configs([res])[res].result(timeout=15)


def b64(v: bytes | None) -> str | None:
    return None if v is None else base64.b64encode(v).decode()


@pytest.mark.parametrize("target,kafkajs_codec,other_codec", [("gzip", "none", "lz4"), ("uncompressed", "gzip", "zstd")])
def test_kafkajs_reads_what_was_recompressed(broker, target, kafkajs_codec, other_codec):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "kafkajs not installed: run `make deps-broker`"
    topic = unique_topic(f"recomp-kjs-{target}")
    create_topic(broker.bootstrap, topic, config={"compression.type": target})
    theirs = sample(other_codec, 60)
    send(broker.bootstrap, topic, theirs, compression_type=other_codec)
    r = subprocess.run(
        [node, "consume.mjs"],
        cwd=KAFKAJS_DIR,
        env={"PATH": "/usr/bin:/bin", "KAFKAJS_NO_PARTITIONER_WARNING": "1", "BOOTSTRAP": broker.bootstrap,
             "TOPIC": topic, "COUNT": "100", "PRODUCE": "40", "PRODUCE_CODEC": kafkajs_codec},
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, f"kafkajs failed ({r.returncode}):\n{r.stderr.decode(errors='replace')[-4000:]}"
    consumed = json.loads(r.stdout.decode().strip().splitlines()[-1])["consumed"]
    only_codec(broker.data_dir, topic, TARGETS[target])
    # What confluent-kafka reads is the reference; kafkajs must read the same.
    ref = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert len(ref) == 100
    assert [(m.key(), m.value()) for m in ref[:60]] == [(k, v) for k, v, _, _ in theirs]
    assert [(c["offset"], c["key"], c["value"], c["timestamp"]) for c in consumed] == [
        (str(m.offset()), b64(m.key()), b64(m.value()), str(m.timestamp()[1])) for m in ref
    ]
    assert [sorted(c["headers"]) for c in consumed] == [sorted([k, b64(v)] for k, v in (m.headers() or [])) for m in ref]
    # kafkajs's own messages kept their timestamps through the rebuild.
    assert [int(c["timestamp"]) for c in consumed[60:]] == [T0 + i * 3 for i in range(40)]
