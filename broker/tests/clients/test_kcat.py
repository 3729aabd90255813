"""kcat (Debian's, linked to librdkafka 2.0.2, which chokes on unexpected tagged fields): metadata
listing, produce and consume of keys, values, headers and null values."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kafka_helpers import consume_partitions, create_topic, produce_all, producer, unique_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (make deps-broker installs it)")


def kcat(*args: str, stdin: bytes | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    r = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r


def test_kcat_metadata_listing(broker):
    topic = unique_topic("kcat-md")
    create_topic(broker.bootstrap, topic, partitions=3)
    md = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", "-t", topic).stdout)
    assert [b["id"] for b in md["brokers"]] == [0]
    assert md["brokers"][0]["name"] == broker.bootstrap
    [t] = md["topics"]
    assert t["topic"] == topic
    assert "error" not in t, t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == 0
        assert [r["id"] for r in p["replicas"]] == [0]
        assert [r["id"] for r in p["isrs"]] == [0]

    # The plain-text listing of all topics names it too.
    listing = kcat("-b", broker.bootstrap, "-L").stdout.decode()
    assert f'topic "{topic}" with 3 partitions' in listing
    assert f"broker 0 at {broker.bootstrap}" in listing


def test_kcat_produce_consume_keys_values_headers_nulls(broker):
    topic = unique_topic("kcat-rt")
    create_topic(broker.bootstrap, topic, partitions=1)
    lines = [b"k1:v1", b"k2:", b"k3:hello world", b":keyless", b"k5:\xc3\xa9t\xc3\xa9 \xf0\x9f\x8c\x8a"]
    kcat(
        "-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K", ":", "-Z",
        "-H", "trace=abc", "-H", "dup=1", "-H", "dup=2",
        stdin=b"\n".join(lines) + b"\n",
    )
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J", "-q").stdout
    msgs = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [m["offset"] for m in msgs] == [0, 1, 2, 3, 4]
    # -Z: empty values and keys travel as NULL.
    assert [(m["key"], m["payload"]) for m in msgs] == [
        ("k1", "v1"),
        ("k2", None),
        ("k3", "hello world"),
        (None, "keyless"),
        ("k5", "été 🌊"),
    ]
    for m in msgs:
        assert m["headers"] == ["trace", "abc", "dup", "1", "dup", "2"], m

    # The same bytes through librdkafka's high-level consumer: nulls are None, not b"".
    got = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [(m.key(), m.value()) for m in got] == [
        (b"k1", b"v1"),
        (b"k2", None),
        (b"k3", b"hello world"),
        (None, b"keyless"),
        (b"k5", "été 🌊".encode()),
    ]
    assert got[0].headers() == [("trace", b"abc"), ("dup", b"1"), ("dup", b"2")]


def test_kcat_consume_what_confluent_kafka_produced(broker):
    """Debian's kcat reads a multi-partition topic written by a newer librdkafka (Produce v9+,
    flexible versions) — the older client must still decode every Fetch response."""
    topic = unique_topic("kcat-cross")
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, linger_ms=5)
    recs = [(topic, i % 2, f"key-{i}".encode(), f"value-{i}".encode() * (i % 7), None) for i in range(200)]
    produce_all(p, recs)
    for part in (0, 1):
        out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", str(part), "-o", "beginning", "-e", "-J", "-q").stdout
        msgs = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        # Every seventh value is empty (not null): kcat shows it as "".
        want = [(f"key-{i}", f"value-{i}" * (i % 7)) for i in range(part, 200, 2)]
        got = [(m["key"], m["payload"]) for m in msgs]
        assert got == want
        assert [m["offset"] for m in msgs] == list(range(100))
