"""Durability: acknowledged data survives kill -9; a torn tail is truncated on recovery; metadata
and configs survive restarts; retention deletes old segments and moves the log start."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, OffsetSpec

from harness import wait_until
from kafka_helpers import admin, consume_partitions, create_topic, produce_all, producer, unique_topic, watermarks


def segment_files(broker, topic: str, partition: int = 0):
    d = broker.data_dir / f"{topic}-{partition}"
    assert d.is_dir(), f"no partition directory {d}: {sorted(p.name for p in broker.data_dir.iterdir())}"
    return sorted(d.glob("*.log"))


def test_acked_messages_survive_kill9(broker_factory):
    b = broker_factory(log_flush_interval_messages=1)
    topic = unique_topic("kill9")
    create_topic(b.bootstrap, topic, partitions=2, config={"flush.messages": "1"})
    p = producer(b.bootstrap, acks="all", enable_idempotence=True, linger_ms=1, message_timeout_ms=4000)
    acked: dict[tuple[int, int], bytes] = {}
    failed = 0

    def on_delivery(err, msg):
        nonlocal failed
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            failed += 1

    i = 0
    killed_at = None
    deadline = time.monotonic() + 60
    # Produce continuously; kill the broker mid-stream once a few thousand writes are acknowledged.
    while time.monotonic() < deadline:
        try:
            p.produce(topic, value=f"durable-{i}".encode(), partition=i % 2, on_delivery=on_delivery)
            i += 1
        except BufferError:
            pass
        p.poll(0)
        if killed_at is None and len(acked) >= 3000:
            b.kill9()
            killed_at = time.monotonic()
        if killed_at is not None and time.monotonic() - killed_at > 0.5:
            break
    assert killed_at is not None, f"only {len(acked)} acknowledged before the deadline"
    p.flush(15)  # the rest fail with timeouts: the broker is gone
    acked_before_restart = dict(acked)
    assert len(acked_before_restart) >= 3000

    b.restart()
    got = consume_partitions(b.bootstrap, topic, [0, 1], timeout=60)
    for part in (0, 1):
        offs = [m.offset() for m in got[part]]
        assert offs == list(range(len(offs))), f"partition {part}: offsets not contiguous from 0"
    stored = {(part, m.offset()): m.value() for part in (0, 1) for m in got[part]}
    lost = [k for k, v in acked_before_restart.items() if stored.get(k) != v]
    assert not lost, f"{len(lost)} acknowledged messages lost or changed, e.g. {lost[:5]}"

    # And the log keeps going after recovery.
    hw = watermarks(b.bootstrap, topic, 0)[1]
    [(part, off)] = produce_all(producer(b.bootstrap, acks="all"), [(topic, 0, None, b"after-restart", None)])
    assert (part, off) == (0, hw)


def traced(pid: int) -> bool:
    """True once every thread of `pid` has a tracer attached."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    for t in tasks:
        for line in (t / "status").read_text().splitlines():
            if line.startswith("TracerPid:") and line.split()[1] == "0":
                return False
    return bool(tasks)


def fsyncs_while_producing(b, topic: str, n: int, out: Path) -> int:
    """Counts fsync/fdatasync calls of the broker (strace) while n messages are produced, one
    acks=all request each."""
    st = subprocess.Popen(
        ["strace", "-f", "-qq", "-p", str(b.pid()), "-e", "trace=fsync,fdatasync", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not traced(b.pid()):
            if st.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"strace cannot attach here: {st.stderr.read().decode(errors='replace')[:300]}")
            time.sleep(0.05)
        produce_one_batch_each(b, topic, [f"sync-{i}".encode() for i in range(n)])
    finally:
        st.send_signal(signal.SIGINT)  # detaches from the broker, which keeps running
        st.wait(10)
    return sum(1 for line in out.read_text().splitlines() if "fsync(" in line or "fdatasync(" in line)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (make deps-broker installs it)")
def test_flush_messages_1_fsyncs_every_acknowledged_write(broker_factory, tmp_path):
    """kill -9 keeps the page cache, so it cannot show that flush.messages=1 makes writes durable
    against power loss; counting the broker's fsyncs can: one per acknowledged append at least."""
    b = broker_factory()
    plain, synced = unique_topic("noflush"), unique_topic("flush1")
    create_topic(b.bootstrap, plain)
    create_topic(b.bootstrap, synced, config={"flush.messages": "1"})
    n = 40
    baseline = fsyncs_while_producing(b, plain, n, tmp_path / "plain.strace")
    with_policy = fsyncs_while_producing(b, synced, n, tmp_path / "synced.strace")
    assert with_policy - baseline >= n, f"{with_policy} fsyncs with flush.messages=1, {baseline} without, for {n} appends"
    assert watermarks(b.bootstrap, synced, 0) == (0, n)


def test_topics_and_configs_survive_restart(broker_factory):
    b = broker_factory()
    topic = unique_topic("persist")
    create_topic(b.bootstrap, topic, partitions=3, config={"retention.ms": "123456789", "segment.bytes": "2000000"})
    produce_all(producer(b.bootstrap), [(topic, q, None, f"v{q}".encode(), None) for q in range(3)])
    assert b.stop() == 0, f"broker exit code on SIGTERM:\n{b.log_tail()}"
    b.restart()
    a = admin(b.bootstrap)
    md = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1, 2]
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = a.describe_configs([res])[res].result(timeout=15)
    assert entries["retention.ms"].value == "123456789"
    assert entries["segment.bytes"].value == "2000000"
    got = consume_partitions(b.bootstrap, topic, range(3))
    assert {q: [m.value() for m in got[q]] for q in range(3)} == {q: [f"v{q}".encode()] for q in range(3)}


def tear_tail(kind: str, segment: bytes, next_offset: int) -> bytes:
    """Bytes appended to the active segment to imitate a write cut short by a crash."""
    if kind == "garbage":
        return os.urandom(777)
    if kind == "half_batch":
        # The first half of a real batch, re-based to look like the next one.
        (length,) = struct.unpack(">i", segment[8:12])
        batch = segment[: 12 + length]
        return struct.pack(">q", next_offset) + batch[8 : len(batch) // 2]
    if kind == "huge_length":
        return struct.pack(">qi", next_offset, 0x7FFFFF00) + b"\x00" * 40
    if kind == "zeros":
        # What a crash can leave after a file grew but before its data reached the disk.
        return b"\x00" * 4096
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["garbage", "half_batch", "huge_length", "zeros"])
def test_torn_tail_is_truncated_on_recovery(broker_factory, kind):
    b = broker_factory()
    topic = unique_topic(f"torn-{kind}")
    create_topic(b.bootstrap, topic)
    values = [f"before-crash-{i}".encode() * 3 for i in range(1000)]
    produce_all(producer(b.bootstrap, acks="all", linger_ms=5), [(topic, 0, None, v, None) for v in values])
    b.kill9()

    active = segment_files(b, topic)[-1]
    data = active.read_bytes()
    intact_size = len(data)
    with open(active, "ab") as f:
        f.write(tear_tail(kind, data, 1000))
        f.flush()
        os.fsync(f.fileno())

    b.restart()
    assert watermarks(b.bootstrap, topic, 0) == (0, 1000)
    assert active.stat().st_size == intact_size, "torn tail not truncated from the segment file"
    got = consume_partitions(b.bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == values

    # New writes land right after the intact data and read back.
    [(_, off)] = produce_all(producer(b.bootstrap, acks="all"), [(topic, 0, None, b"after-recovery", None)])
    assert off == 1000
    got = consume_partitions(b.bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == values + [b"after-recovery"]


def log_bytes(b, topic: str) -> int:
    return sum(f.stat().st_size for f in segment_files(b, topic))


def earliest_offset(b, topic: str) -> int:
    tp = TopicPartition(topic, 0)
    a = admin(b.bootstrap)
    return a.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=10)[tp].result(timeout=15).offset


def produce_one_batch_each(b, topic: str, values: list[bytes]) -> None:
    p = producer(b.bootstrap, acks="all", linger_ms=0)
    for v in values:
        p.produce(topic, value=v, partition=0)
        assert p.flush(10) == 0


def set_topic_config(b, topic: str, **configs: str) -> None:
    a = admin(b.bootstrap)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()
        ],
    )
    a.incremental_alter_configs([res])[res].result(timeout=15)


def test_retention_by_bytes_deletes_old_segments(broker_factory):
    b = broker_factory(log_retention_check_interval_ms=200)
    topic = unique_topic("ret-bytes")
    seg, keep = 16_384, 65_536
    # Unlimited at first, so that the "before" state is not raced by the cleaner; then the limit
    # is set at runtime, which also checks that a config change reaches the cleaner.
    create_topic(b.bootstrap, topic, config={"segment.bytes": str(seg), "retention.bytes": "-1"})
    values = [f"{i:06d}".encode() + b"r" * 994 for i in range(300)]
    produce_one_batch_each(b, topic, values)
    segments_written = len(segment_files(b, topic))
    assert segments_written > 10
    time.sleep(0.5)  # a few cleaner passes: nothing may go while retention is unlimited
    assert earliest_offset(b, topic) == 0
    set_topic_config(b, topic, retention_bytes=str(keep))

    low = wait_until(lambda: earliest_offset(b, topic), 20, what="retention.bytes to delete segments")
    # Kafka's rule: delete whole oldest segments while the log minus that segment stays >= retention.bytes.
    wait_until(lambda: log_bytes(b, topic) <= keep + seg, 10, what="log size to come under retention.bytes")
    assert len(segment_files(b, topic)) < segments_written
    low, high = watermarks(b.bootstrap, topic, 0)
    assert high == 300
    assert 0 < low < 300
    assert earliest_offset(b, topic) == low
    got = consume_partitions(b.bootstrap, topic, [0])[0]
    assert [m.offset() for m in got] == list(range(low, 300))
    assert [m.value() for m in got] == values[low:]


def test_retention_by_time_deletes_old_segments(broker_factory):
    b = broker_factory(log_retention_check_interval_ms=200)
    topic = unique_topic("ret-ms")
    create_topic(b.bootstrap, topic, config={"segment.bytes": "16384", "retention.ms": "-1"})
    values = [f"{i:06d}".encode() + b"t" * 994 for i in range(100)]
    produce_one_batch_each(b, topic, values)
    assert len(segment_files(b, topic)) > 2
    time.sleep(0.5)
    assert earliest_offset(b, topic) == 0
    set_topic_config(b, topic, retention_ms="1000")

    low = wait_until(lambda: earliest_offset(b, topic), 20, what="retention.ms to delete segments")
    # Every closed segment is past retention.ms. Kafka deletes the active one too once it is past
    # retention (rolling a new, empty one first), so the log may keep one segment of data or none.
    wait_until(lambda: len(segment_files(b, topic)) == 1, 10, what="a single segment to remain")
    low, high = watermarks(b.bootstrap, topic, 0)
    assert high == 100 and 0 < low <= 100
    assert earliest_offset(b, topic) == low
    got = consume_partitions(b.bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == values[low:]
    [(_, off)] = produce_all(producer(b.bootstrap), [(topic, 0, None, b"later", None)])
    assert off == 100
