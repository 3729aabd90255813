"""Concurrent CreateTopics from many clients: every topic is created and usable (a race between
metadata changes once opened one partition log twice)."""

import threading
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def test_concurrent_creates_all_succeed(broker):
    prefix = f"conc-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i}" for i in range(24)]
    errors = []

    def create(chunk):
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for name, fut in admin.create_topics([NewTopic(n, 3, 1) for n in chunk]).items():
            try:
                fut.result(20)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append((name, e))

    threads = [threading.Thread(target=create, args=([n],)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    for n in names:
        assert n in md.topics and len(md.topics[n].partitions) == 3
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered = []
    for n in names:
        for part in range(3):
            p.produce(n, value=b"x", partition=part, on_delivery=lambda err, m: delivered.append(err))
    p.flush(30)
    assert len(delivered) == 72 and not any(delivered)
    assert "No such file" not in broker.log_tail(2000)
