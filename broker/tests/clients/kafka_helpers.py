"""confluent-kafka helpers: topic creation, assigned consumers (no consumer groups needed) and
reading partitions back to their high watermark with a time bound."""

from __future__ import annotations

import struct
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    a = admin(bootstrap)  # kept referenced: a collected client fails its pending futures
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    fs[name].result(timeout=20)


def producer(bootstrap: str, **conf) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, **{k.replace("_", "."): v for k, v in conf.items()}})


def assigned_consumer(bootstrap: str, **conf) -> Consumer:
    """librdkafka needs a group.id for assign(); nothing is committed, so the broker needs no
    group coordinator."""
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": "assign-only-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = assigned_consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def produce_all(p: Producer, records, timeout: float = 60.0) -> list:
    """Produces (topic, partition, key, value, headers) tuples; returns the delivered messages'
    (partition, offset) in send order. Raises on any delivery error."""
    results: list = [None] * len(records)
    errors: list = []

    def cb(i):
        def done(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = (msg.partition(), msg.offset())

        return done

    for i, (topic, partition, key, value, headers) in enumerate(records):
        while True:
            try:
                kw = {"key": key, "value": value, "on_delivery": cb(i)}
                if partition is not None:
                    kw["partition"] = partition
                if headers is not None:
                    kw["headers"] = headers
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages still undelivered after {timeout} s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"
    return results


def consume_partitions(
    bootstrap: str,
    topic: str,
    partitions,
    timeout: float = 60.0,
    start=OFFSET_BEGINNING,
    **conf,
) -> dict[int, list]:
    """Reads each partition from `start` until its current high watermark; returns
    {partition: [Message, ...]} in the order received."""
    partitions = list(partitions)
    marks = {p: watermarks(bootstrap, topic, p) for p in partitions}
    highs = {p: hi for p, (_, hi) in marks.items()}
    out: dict[int, list] = {p: [] for p in partitions}
    c = assigned_consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        deadline = time.monotonic() + timeout

        def done():
            # Next offset wanted per partition: after the last one read, else the low watermark.
            return all((out[p][-1].offset() + 1 if out[p] else marks[p][0]) >= highs[p] for p in partitions)

        while not done():
            if time.monotonic() > deadline:
                got = {p: (out[p][-1].offset() if out[p] else None) for p in partitions}
                raise AssertionError(f"timed out reading {topic}: last offsets {got}, high watermarks {highs}")
            for m in c.consume(num_messages=10000, timeout=0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error on {topic}: {m.error()}")
                out[m.partition()].append(m)
    finally:
        c.close()
    return out


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_batch_codecs(data_dir: Path, topic: str, partition: int) -> Counter:
    """Walks the partition's segment files (Kafka's on-disk format: v2 record batches back to
    back) and counts batches by the compression codec in their attributes."""
    codecs: Counter = Counter()
    for seg in sorted((Path(data_dir) / f"{topic}-{partition}").glob("*.log")):
        data = seg.read_bytes()
        off = 0
        while off + 23 <= len(data):
            (length,) = struct.unpack(">i", data[off + 8 : off + 12])
            (attrs,) = struct.unpack(">h", data[off + 21 : off + 23])
            codecs[attrs & 0x7] += 1
            off += 12 + length
    return codecs


def assert_stored_as_sent(codecs: Counter, codec: str) -> None:
    """The broker keeps batches as the producer compressed them. Clients send a batch
    uncompressed when compressing would not shrink it (librdkafka and kafka-python both do), so a
    few plain batches may sit among the compressed ones; no other codec may appear."""
    want = CODEC_IDS[codec]
    assert want in codecs, f"{codec}: no stored batch uses it; stored batches by codec id: {dict(codecs)}"
    assert set(codecs) <= {want, 0}, f"{codec}: stored batches by codec id: {dict(codecs)}"
