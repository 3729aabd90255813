"""The idempotent producer's guarantees, checked on the wire with hand-built batches: a retried
batch is not written twice, a gap in sequence numbers is refused, and the log holds each record
exactly once. (The client suites run librdkafka's idempotent producer; this pins down the broker's
side of the contract.)"""

from __future__ import annotations

import rawkafka as raw
from kafka_helpers import consume_partitions, create_topic, unique_topic, watermarks

NONE = 0
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46


def batch(pid: int, epoch: int, seq: int, values: list[bytes]) -> bytes:
    return raw.record_batch([(None, v) for v in values], producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_duplicates_and_sequence_gaps(broker):
    topic = unique_topic("idem")
    create_topic(broker.bootstrap, topic)
    with raw.connect(broker.bootstrap) as s:
        err, pid, epoch = raw.init_producer_id_v0(s, 1)
        assert err == NONE and pid >= 0 and epoch >= 0

        first = batch(pid, epoch, 0, [b"a0", b"a1", b"a2"])
        assert raw.produce_v3(s, 2, topic, 0, first) == (NONE, 0)

        # The same batch again, as a client retries after a lost response: acknowledged with the
        # original offset (or DUPLICATE_SEQUENCE_NUMBER, which clients also treat as success), not
        # appended a second time.
        err, base = raw.produce_v3(s, 3, topic, 0, first)
        assert err in (NONE, DUPLICATE_SEQUENCE_NUMBER), err
        if err == NONE:
            assert base == 0
        assert watermarks(broker.bootstrap, topic, 0) == (0, 3)

        # Sequence 5 when 3 is next: a gap, refused.
        err, _ = raw.produce_v3(s, 4, topic, 0, batch(pid, epoch, 5, [b"gap"]))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert watermarks(broker.bootstrap, topic, 0) == (0, 3)

        # The right next sequence goes on.
        assert raw.produce_v3(s, 5, topic, 0, batch(pid, epoch, 3, [b"b3", b"b4"])) == (NONE, 3)

        # A second producer id has its own sequence space.
        err, pid2, epoch2 = raw.init_producer_id_v0(s, 6)
        assert err == NONE and pid2 != pid
        assert raw.produce_v3(s, 7, topic, 0, batch(pid2, epoch2, 0, [b"c0"])) == (NONE, 5)

    got = consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.value() for m in got] == [b"a0", b"a1", b"a2", b"b3", b"b4", b"c0"]
