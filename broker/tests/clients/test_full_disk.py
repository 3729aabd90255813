"""A full disk, on a real size-limited filesystem (tmpfs): Produce is answered with
KAFKA_STORAGE_ERROR and no segment is damaged; nothing acknowledged is lost; reads keep
working; once the filesystem grows, writes resume by themselves without a restart and
DescribeLogDirs reports the new total and usable bytes at once; a broker killed with
SIGKILL while the disk is full starts again on that full disk and has lost nothing.

Apache Kafka marks a log directory offline on the first IOException (ENOSPC included)
and serves nothing from it until the broker restarts; this broker treats a failed write
as failing that request only and retries on the next one.

Needs root to mount a tmpfs (CI and the dev machines run as root); skips otherwise."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import rawkafka
from harness import Broker

MiB = 1 << 20
KAFKA_STORAGE_ERROR = 56


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def grow(mnt, size_mib: int):
    subprocess.run(["mount", "-o", f"remount,size={size_mib}m", str(mnt)], check=True)


def produce(bootstrap: str, topic: str, n: int, tag: str, retries: int = 0, stop: threading.Event | None = None):
    """Produces n 1 KiB values (acks=all). With retries=0 a storage error reaches the
    delivery report as it came from the broker. Returns (acked, error codes)."""
    acked, failed = [], []

    def cb(err, msg):
        if err:
            failed.append(err.code())
        else:
            acked.append((msg.offset(), msg.value()))

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "retries": retries,
        "message.timeout.ms": 4000,
        "enable.idempotence": False,
    })
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        while True:
            try:
                p.produce(topic, value=f"{tag}-{i:06d}".encode() + b"x" * 1000, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(30)
    return acked, failed


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


def check_nothing_lost(bootstrap: str, acked):
    stored = read_all(bootstrap, "fill")
    for off, value in acked:
        assert stored.get(off) == value, f"acknowledged offset {off} lost or changed"
    assert sorted(stored) == list(range(len(stored))), "offsets must stay contiguous"
    return stored


def log_dir(bootstrap: str):
    [(err, _dir, total, usable)] = rawkafka.describe_log_dirs_v4(bootstrap)
    assert err == 0
    return total, usable


def test_full_disk_refuses_writes_loses_nothing_and_resumes_when_grown(small_disk, tmp_path):
    b = Broker(small_disk / "data", tmp_path / "broker.log", log_flush_interval_messages=1,
               log_segment_bytes=1 << 20)
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("fill", 1, 1)])["fill"].result(10)
        total, usable = log_dir(b.bootstrap)
        assert total == 8 * MiB and 0 < usable <= total

        # 1. Fill 8 MiB with 12 MB: the overflow is refused with a storage error.
        acked, errors = produce(b.bootstrap, "fill", 12000, "a")
        assert acked, "writes must succeed until the disk is full"
        assert errors, "8 MiB cannot hold 12 MB: some writes must fail"
        assert set(errors) == {KafkaError.KAFKA_STORAGE_ERROR}, set(errors)
        # The Produce response itself: a batch larger than the space left.
        left = log_dir(b.bootstrap)[1]
        assert left < 900 * 1024, left
        with rawkafka.connect(b.bootstrap) as s:
            err, _ = rawkafka.produce_v3(s, 1, "fill", 0, rawkafka.record_batch([(None, b"y" * 950 * 1024)]))
        assert err == KAFKA_STORAGE_ERROR
        assert b.alive() and b.http_status("/readyz") == 200
        check_nothing_lost(b.bootstrap, acked)

        # 2. Grow the filesystem: DescribeLogDirs sees it at once, writes resume, no restart.
        pid = b.pid()
        grow(small_disk, 32)
        total, usable = log_dir(b.bootstrap)
        assert total == 32 * MiB and usable > 16 * MiB, (total, usable)
        acked2, errors2 = produce(b.bootstrap, "fill", 200, "b", retries=2)
        assert not errors2, errors2[:3]
        assert b.pid() == pid and b.alive()
        check_nothing_lost(b.bootstrap, acked + acked2)

        # 3. Fill it again and SIGKILL the broker while the disk is full and writes keep coming.
        stop = threading.Event()
        result = {}
        t = threading.Thread(target=lambda: result.update(zip(("acked", "errors"),
                                                            produce(b.bootstrap, "fill", 60000, "c", stop=stop))))
        t.start()
        deadline = time.monotonic() + 60
        while log_dir(b.bootstrap)[1] >= 256 * 1024 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # refused writes under way
        b.kill9()
        stop.set()
        t.join(60)
        acked3 = result["acked"]
        assert acked3 and result["errors"]

        # Restart on the still-full filesystem: recovery must cope, nothing acknowledged lost.
        b.restart()
        stored = check_nothing_lost(b.bootstrap, acked + acked2 + acked3)
        assert len(stored) >= len(acked) + len(acked2) + len(acked3)
        grow(small_disk, 48)
        acked4, errors4 = produce(b.bootstrap, "fill", 200, "d", retries=2)
        assert not errors4, errors4[:3]
        check_nothing_lost(b.bootstrap, acked + acked2 + acked3 + acked4)
        assert "No space left on device" in b.log_path.read_text(errors="replace")
    finally:
        b.stop()
