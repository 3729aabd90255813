"""A confluent-kafka group member run as a child process by groups_helpers.ChildMember: consumes
TOPIC in GROUP, commits each message synchronously, and prints one JSON line per event
(assignment, message, error) on stdout. It runs until killed."""

import json
import os
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException


def emit(**ev):
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def main():
    conf = {
        "bootstrap.servers": os.environ["BOOTSTRAP"],
        "group.id": os.environ["GROUP"],
        "client.id": os.environ["NAME"],
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        **json.loads(os.environ.get("CONF", "{}")),
    }
    c = Consumer(conf)

    def on_assign(consumer, parts):
        emit(ev="assign", parts=sorted(p.partition for p in parts))

    def on_revoke(consumer, parts):
        emit(ev="assign", parts=[])

    c.subscribe([os.environ["TOPIC"]], on_assign=on_assign, on_revoke=on_revoke)
    while True:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                emit(ev="error", error=str(m.error()))
            continue
        # Commit before reporting: what the parent has seen is committed.
        try:
            c.commit(message=m, asynchronous=False)
        except KafkaException as e:
            emit(ev="error", error=f"commit of {m.partition()}@{m.offset()} failed: {e}")
            continue
        emit(ev="msg", p=m.partition(), o=m.offset(), v=m.value().decode())


if __name__ == "__main__":
    main()
