"""Runs the issue-10 client expectations (KIP-467 record errors as raw Produce v8 and as
librdkafka reports them, KIP-430 authorized operations, topic compression.type recompression)
against a running Apache Kafka and a fresh rivulet-broker, and prints SAME/DIFF per check.
Not part of `make test` (it needs a Kafka broker; start one in KRaft mode from the Maven jars):

    RIVULET_BROKER_BIN=target/release/rivulet-broker .venv/bin/python \
        broker/tests/clients/compare_with_kafka.py --kafka 127.0.0.1:9092 --kafka-log-dir /path/to/log.dirs
"""
import argparse
import json
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from pathlib import Path
import rawkafka as raw
from harness import Broker
from kafka_helpers import create_topic, producer, unique_topic, admin, stored_batch_codecs, consume_partitions
from confluent_kafka import TopicCollection, Consumer
from test_record_errors import produce_one_batch

def run(bootstrap, data_dir):
    out = {}
    t = unique_topic("cmp"); create_topic(bootstrap, t, config={"cleanup.policy": "compact"})
    keyless = [3, 17, 18, 40, 99]
    batch = raw.record_batch([(None if i in keyless else f"k{i}".encode(), b"v") for i in range(100)])
    with raw.connect(bootstrap) as s:
        [r] = raw.parse_produce_v8(raw.produce(s, 1, 8, t, 0, batch))
    r["error_message"] = r["error_message"].replace(t, "TOPIC")
    r["record_errors"] = [(i, m.replace(t, "TOPIC")) for i, m in r["record_errors"]]
    r.pop("topic")
    out["raw_v8"] = r
    kl = {0, 9, 10, 11, 42, 55, 77, 90, 98, 99}
    errs = produce_one_batch(t, bootstrap, [None if i in kl else b"k%d" % i for i in range(100)], "lz4")
    codes = {}
    for i, e in enumerate(errs): codes.setdefault(str(e.code()), []).append(i)
    out["rdk_10_of_100"] = {k: (v if len(v) < 20 else f"{len(v)} msgs") for k, v in codes.items()}
    keys = [b"k%d" % i for i in range(20)]; keys[7] = None
    out["rdk_1_of_20"] = sorted({e.code() for e in produce_one_batch(t, bootstrap, keys, "none")})
    a = admin(bootstrap)
    out["cluster_ops"] = sorted(o.name for o in a.describe_cluster(include_authorized_operations=True).result(15).authorized_operations)
    out["topic_ops"] = sorted(o.name for o in a.describe_topics(TopicCollection([t]), include_authorized_operations=True)[t].result(15).authorized_operations)
    g = "cmp-" + uuid.uuid4().hex[:6]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": g}); c.subscribe([t])
    dl = time.time() + 30
    while not c.assignment() and time.time() < dl: c.poll(0.2)
    [gd] = [f.result(15) for f in a.describe_consumer_groups([g], include_authorized_operations=True).values()]
    out["group_ops"] = sorted(o.name for o in gd.authorized_operations)
    c.close()
    rc = {}
    for target in ["uncompressed", "gzip", "snappy", "lz4", "zstd"]:
        tt = unique_topic("cmpz"); create_topic(bootstrap, tt, config={"compression.type": target})
        p = producer(bootstrap, linger_ms=5, compression_type="gzip" if target != "gzip" else "none")
        for i in range(200): p.produce(tt, key=b"k%d" % i, value=(b"value %d " % i) * 20, headers=[("d", b"1"), ("d", b"2")], timestamp=1_700_000_000_000 + i)
        p.flush(30)
        time.sleep(0.5)
        got = consume_partitions(bootstrap, tt, [0])[0]
        ok = [(m.key(), m.headers(), m.timestamp()[1]) for m in got] == [(b"k%d" % i, [("d", b"1"), ("d", b"2")], 1_700_000_000_000 + i) for i in range(200)]
        rc[target] = (dict(stored_batch_codecs(data_dir, tt, 0)), ok)
    out["recompress_stored_codecs_and_roundtrip"] = rc
    return out

ap = argparse.ArgumentParser()
ap.add_argument("--kafka", required=True, help="bootstrap address of the Apache Kafka broker")
ap.add_argument("--kafka-log-dir", required=True, help="its log.dirs (to read which codec batches are stored in)")
args = ap.parse_args()
kafka = run(args.kafka, Path(args.kafka_log_dir))
d = Path(tempfile.mkdtemp()); b = Broker(d/"data", d/"log", num_partitions=1); b.start()
try:
    riv = run(b.bootstrap, b.data_dir)
finally:
    b.stop()
for k in kafka:
    same = json.dumps(kafka[k], sort_keys=True, default=str) == json.dumps(riv[k], sort_keys=True, default=str)
    print(("SAME " if same else "DIFF ") + k)
    print("  kafka  :", json.dumps(kafka[k], sort_keys=True, default=str)[:600])
    if not same: print("  rivulet:", json.dumps(riv[k], sort_keys=True, default=str)[:600])
