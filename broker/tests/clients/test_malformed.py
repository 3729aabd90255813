"""Bad input over raw sockets hurts no one else: while a real client keeps producing and
consuming, garbage, oversized and truncated frames, unknown APIs and corrupt batches are thrown at
the broker. Each bad connection is closed (or answered with an error), the broker keeps serving,
and the stored data reads back intact."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import rawkafka as raw
from kafka_helpers import assigned_consumer, consume_partitions, create_topic, producer, unique_topic, watermarks

CORRUPT_MESSAGE = 2
INVALID_RECORD = 87
UNSUPPORTED_VERSION = 35


class Bystander(threading.Thread):
    """A well-behaved client producing and consuming its own topic throughout the test."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.stop_flag = threading.Event()
        self.sent: list[bytes] = []
        self.acked = 0
        self.errors: list = []
        self.consumed: list[bytes] = []

    def run(self):
        p = producer(self.bootstrap, acks="all", linger_ms=1)
        c = assigned_consumer(self.bootstrap)
        c.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(("produce", err))
            else:
                self.acked += 1

        i = 0
        deadline = time.monotonic() + 120  # bounded even if the test forgets to stop us
        try:
            while not self.stop_flag.is_set() and time.monotonic() < deadline:
                v = f"bystander-{i}".encode()
                p.produce(self.topic, value=v, partition=0, on_delivery=on_delivery)
                self.sent.append(v)
                i += 1
                p.poll(0)
                for m in c.consume(num_messages=100, timeout=0.02):
                    if m.error():
                        self.errors.append(("consume", m.error()))
                    else:
                        self.consumed.append(m.value())
            if p.flush(20) != 0:
                self.errors.append(("produce", "undelivered after flush"))
            # Drain what is left to read.
            drain_deadline = time.monotonic() + 20
            while len(self.consumed) < len(self.sent) and time.monotonic() < drain_deadline:
                for m in c.consume(num_messages=1000, timeout=0.1):
                    if not m.error():
                        self.consumed.append(m.value())
        finally:
            c.close()


@pytest.fixture
def bystander(broker):
    topic = unique_topic("bystander")
    create_topic(broker.bootstrap, topic)
    t = Bystander(broker.bootstrap, topic)
    t.start()
    yield t
    t.stop_flag.set()
    t.join(60)


def assert_broker_healthy(broker):
    assert broker.alive(), f"broker died:\n{broker.log_tail()}"
    err, apis = raw.api_versions(broker.bootstrap)
    assert err == 0 and 18 in apis


def test_malformed_input_while_a_client_keeps_working(broker, bystander):
    bs = broker.bootstrap
    victim = unique_topic("victim")
    create_topic(broker.bootstrap, victim)
    # Data stored before the barrage, to check afterwards.
    p = producer(bs, acks="all")
    for i in range(500):
        p.produce(victim, value=f"stored-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    time.sleep(0.5)
    assert bystander.acked > 0, f"bystander made no progress before the barrage: {bystander.errors}"

    # 1. Pure garbage (a plausible small length, then noise that is no request header).
    with raw.connect(bs) as s:
        s.sendall(struct.pack(">i", 24) + b"\xff\xfe" + os.urandom(22))
        assert raw.closed_by_peer(s), "garbage frame: connection left open"
    with raw.connect(bs) as s:
        s.sendall(os.urandom(4096))
        # Whatever length the noise claims, the broker must not crash; it may wait for more bytes.
    assert_broker_healthy(broker)

    # 2. A frame claiming a huge (and a negative) length: closed without allocating it.
    for prefix in (struct.pack(">i", 0x7FFFFFF0), struct.pack(">i", -5)):
        with raw.connect(bs) as s:
            s.sendall(prefix + b"\x00\x12\x00\x00")
            assert raw.closed_by_peer(s), f"length {prefix.hex()}: connection left open"
    assert_broker_healthy(broker)

    # 3. A truncated request: the header promises 100 bytes, 10 arrive, then the client hangs up.
    for _ in range(20):
        with raw.connect(bs) as s:
            s.sendall(struct.pack(">i", 100) + struct.pack(">hhi", 3, 1, 99)[:10])
    assert_broker_healthy(broker)

    # 4. An unknown API key: closed, or answered with the request's correlation id — never a crash.
    with raw.connect(bs) as s:
        s.sendall(raw.request(32000, 0, 4242, b"\x00" * 8))
        try:
            corr, _ = raw.recv_response(s)
            assert corr == 4242
        except (ConnectionError, OSError):
            pass
    # An unsupported ApiVersions version: Kafka answers v0 with UNSUPPORTED_VERSION and its ranges.
    with raw.connect(bs) as s:
        s.sendall(raw.request(18, 99, 77, b"\x00"))
        corr, body = raw.recv_response(s)
        assert corr == 77
        err, apis = raw.parse_api_versions_v0(body)
        assert err == UNSUPPORTED_VERSION
        assert 18 in apis and 0 in apis
    assert_broker_healthy(broker)

    # 5. Hand-built Produce v3: a correct batch is accepted, a corrupt CRC is refused.
    with raw.connect(bs) as s:
        good = raw.record_batch([(b"raw-k", b"raw-good")])
        s.sendall(raw.request(0, 3, 1, raw.produce_v3_body(victim, 0, good)))
        corr, body = raw.recv_response(s)
        assert corr == 1
        [(_, _, err, base)] = raw.parse_produce_v3(body)
        assert (err, base) == (0, 500)

        bad = raw.corrupt_crc_region(raw.record_batch([(b"raw-k", b"raw-bad")]))
        s.sendall(raw.request(0, 3, 2, raw.produce_v3_body(victim, 0, bad)))
        corr, body = raw.recv_response(s)
        assert corr == 2
        [(_, _, err, _)] = raw.parse_produce_v3(body)
        assert err == CORRUPT_MESSAGE

        # A batch whose header claims two billion records (with a valid CRC): refused, not allocated.
        absurd = raw.record_batch([(b"k", b"absurd")], count_override=2_000_000_000)
        s.sendall(raw.request(0, 3, 3, raw.produce_v3_body(victim, 0, absurd)))
        corr, body = raw.recv_response(s)
        assert corr == 3
        [(_, _, err, _)] = raw.parse_produce_v3(body)
        assert err in (CORRUPT_MESSAGE, INVALID_RECORD), err

        # Magic 1 (a pre-0.11 message set) is refused.
        old = raw.record_batch([(b"k", b"old-magic")], magic=1)
        s.sendall(raw.request(0, 3, 4, raw.produce_v3_body(victim, 0, old)))
        try:
            corr, body = raw.recv_response(s)
            assert corr == 4
            [(_, _, err, _)] = raw.parse_produce_v3(body)
            assert err != 0
        except ConnectionError:
            pass  # closing the connection is an acceptable refusal too
    assert_broker_healthy(broker)

    # The bystander never noticed.
    bystander.stop_flag.set()
    bystander.join(60)
    assert not bystander.is_alive()
    assert not bystander.errors, bystander.errors[:5]
    assert bystander.acked == len(bystander.sent) > 0
    assert bystander.consumed == bystander.sent

    # Stored data is intact: the 500 records, the raw good one, and nothing of the refused ones.
    assert watermarks(bs, victim, 0) == (0, 501)
    msgs = consume_partitions(bs, victim, [0])[0]
    assert [m.value() for m in msgs] == [f"stored-{i}".encode() for i in range(500)] + [b"raw-good"]
    assert msgs[-1].key() == b"raw-k"
