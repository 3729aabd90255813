"""KIP-467 per-record errors: a batch with keyless records on a compacted topic is refused with
INVALID_RECORD and `record_errors` naming every keyless record, as Kafka's LogValidator answers.
The raw Produce v8 response is checked field by field against Kafka's wording, then
confluent-kafka (librdkafka) shows what a client does with it: with two or more listed, exactly
those messages fail with INVALID_RECORD and the others of the batch with
_INVALID_DIFFERENT_RECORD; nothing of the batch is stored."""

from __future__ import annotations

import time

import rawkafka as raw
from confluent_kafka import KafkaError
from kafka_helpers import create_topic, producer, unique_topic, watermarks

INVALID_RECORD = 87


def kafka_summary(topic: str, indexes: list[int]) -> tuple[str, str]:
    """Kafka's per-record message and its processRecordErrors summary for keyless records."""
    msg = f"Compacted topic cannot accept message without key in topic partition {topic}-0"
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{msg}')" for i in indexes[:3])
    return msg, (
        f"One or more records have been rejected due to {len(indexes)} record errors in total, "
        f"and only showing the first three errors at most: [{shown}]"
    )


def test_raw_produce_v8_lists_every_keyless_record(broker):
    topic = unique_topic("recerr-raw")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    keyless = [3, 17, 18, 40, 99]
    recs = [(None if i in keyless else f"k{i}".encode(), f"v{i}".encode()) for i in range(100)]
    batch = raw.record_batch(recs)
    msg, summary = kafka_summary(topic, keyless)
    with raw.connect(broker.bootstrap) as s:
        [r] = raw.parse_produce_v8(raw.produce(s, 1, 8, topic, 0, batch))
        assert r["error_code"] == INVALID_RECORD
        assert r["base_offset"] == -1
        assert r["record_errors"] == [(i, msg) for i in keyless]
        assert r["error_message"] == summary
        # Before v8 there are no record errors on the wire; the code is the same.
        [(_, _, err, base)] = raw.parse_produce_v3(raw.produce(s, 2, 7, topic, 0, batch))
        assert (err, base) == (INVALID_RECORD, -1)
        # A batch with keys everywhere goes through.
        [ok] = raw.parse_produce_v8(raw.produce(s, 3, 8, topic, 0, raw.record_batch([(b"k", b"v")])))
        assert (ok["error_code"], ok["base_offset"], ok["record_errors"], ok["error_message"]) == (0, 0, [], None)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 1)


def produce_one_batch(topic: str, bootstrap: str, keys: list[bytes | None], codec: str) -> list:
    """Sends every message in one batch (a long linger, flushed at once) and returns each
    message's delivery error (None when delivered), in send order."""
    p = producer(bootstrap, linger_ms=5000, batch_num_messages=10_000, compression_type=codec)
    errors: list = [None] * len(keys)
    delivered: list = [False] * len(keys)

    def cb(i):
        def done(err, _msg):
            errors[i] = err
            delivered[i] = True

        return done

    for i, k in enumerate(keys):
        p.produce(topic, key=k, value=f"v{i}".encode(), partition=0, on_delivery=cb(i))
    assert p.flush(30) == 0
    assert all(delivered)
    return errors


def test_librdkafka_fails_exactly_the_listed_messages(broker):
    topic = unique_topic("recerr-rdk")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    # 10 of 100 messages without a key, in a compressed batch (the broker inflates it to look).
    keyless = {0, 9, 10, 11, 42, 55, 77, 90, 98, 99}
    keys = [None if i in keyless else f"k{i}".encode() for i in range(100)]
    errors = produce_one_batch(topic, broker.bootstrap, keys, "lz4")
    by_code: dict[int, set[int]] = {}
    for i, e in enumerate(errors):
        assert e is not None, f"message {i} was delivered from a refused batch"
        by_code.setdefault(e.code(), set()).add(i)
    assert by_code == {
        KafkaError.INVALID_RECORD: keyless,
        KafkaError._INVALID_DIFFERENT_RECORD: set(range(100)) - keyless,
    }
    # (confluent-kafka reports the code's own text, not librdkafka's per-message errstr, so the
    # broker's messages are checked on the raw response above.)
    assert all(not errors[i].retriable() for i in range(100))
    # One keyless record: librdkafka marks the others _INVALID_DIFFERENT_RECORD too, but then
    # (rd_kafka_dr_msgq0 -> interceptors_on_acknowledgement_queue with the partition error when
    # record_errors has fewer than two entries) overwrites every message's error with the
    # partition's INVALID_RECORD. That is the client's doing; the response is Kafka's either way.
    keys = [f"k{i}".encode() for i in range(20)]
    keys[7] = None
    errors = produce_one_batch(topic, broker.bootstrap, keys, "none")
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD] * 20
    with raw.connect(broker.bootstrap) as s:
        batch = raw.record_batch([(k, b"v") for k in keys])
        [r] = raw.parse_produce_v8(raw.produce(s, 1, 8, topic, 0, batch))
        assert (r["error_code"], [i for i, _ in r["record_errors"]]) == (INVALID_RECORD, [7])
    # Nothing of either batch was stored; keyed messages then go through.
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    errors = produce_one_batch(topic, broker.bootstrap, [b"a", b"b"], "none")
    assert errors == [None, None]
    deadline = time.monotonic() + 10
    while watermarks(broker.bootstrap, topic, 0) != (0, 2):
        assert time.monotonic() < deadline
        time.sleep(0.1)
