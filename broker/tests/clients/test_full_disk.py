"""A full disk: writes are refused with an error, nothing acknowledged is lost, reads keep
working, and writes resume once space is freed — without restarting the broker.

Needs root to mount a small tmpfs (CI and the dev machines run as root); skips otherwise."""

from __future__ import annotations

import os
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def produce(bootstrap: str, topic: str, n: int, tag: str):
    acked, failed = [], []

    def cb(err, msg):
        (failed if err else acked).append((err, msg))

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 4000,
        "enable.idempotence": False,
    })
    for i in range(n):
        p.produce(topic, value=f"{tag}-{i:06d}".encode() + b"x" * 1000, on_delivery=cb)
        p.poll(0)
    p.flush(30)
    return [(m.partition(), m.offset(), m.value()) for _, m in acked], [e for e, _ in failed]


def read_all(bootstrap: str, topic: str):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out = {}
    empty = 0
    while empty < 5:
        batch = c.consume(500, timeout=0.5)
        if not batch:
            empty += 1
            continue
        for m in batch:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(m.error())
            out[m.offset()] = m.value()
    c.close()
    return out


def test_full_disk_refuses_writes_and_loses_nothing(small_disk, tmp_path):
    b = Broker(small_disk / "data", tmp_path / "broker.log", log_flush_interval_messages=1,
               log_segment_bytes=1 << 20)
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("fill", 1, 1)])["fill"].result(10)

        acked, errors = produce(b.bootstrap, "fill", 5000, "a")
        assert errors, "3 MiB cannot hold 5 MB: some writes must fail"
        assert acked, "writes must succeed until the disk is full"
        assert b.alive() and b.http_status("/readyz") == 200

        stored = read_all(b.bootstrap, "fill")
        for part, off, value in acked:
            assert stored.get(off) == value, f"acknowledged offset {off} lost or changed"
        assert sorted(stored) == list(range(len(stored))), "offsets must stay contiguous"

        # Free space: grow the filesystem. Writes resume without a restart.
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
        acked2, errors2 = produce(b.bootstrap, "fill", 200, "b")
        assert not errors2, errors2[:3]
        stored = read_all(b.bootstrap, "fill")
        for part, off, value in acked + acked2:
            assert stored.get(off) == value
        assert "write segment" in b.log_tail(400) or "No space" in b.log_tail(400)
    finally:
        b.stop()
