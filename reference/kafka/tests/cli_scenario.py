"""Kafka's command-line tools, run through their main classes (as bin/kafka-*.sh do) against one
cluster: the same steps against Rivulet and against Apache Kafka, each step's output normalized
(names, ids, numbers) so the two can be compared line by line."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from reference import run_tool

TOPICS = "org.apache.kafka.tools.TopicCommand"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONFIGS = "org.apache.kafka.tools.ConfigCommand"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand"
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"


@dataclass
class Step:
    name: str
    argv: list[str]
    rc: int
    out: str
    err: str
    norm: list[str] = field(default_factory=list)


def normalize(text: str, names: dict[str, str]) -> list[str]:
    for real, placeholder in names.items():
        text = text.replace(real, placeholder)
    text = re.sub(r"TopicId: \S+", "TopicId: <id>", text)
    text = re.sub(r"(consumer|rdkafka|perf-producer|console-consumer)-[\w-]+", r"\1-<id>", text)
    text = re.sub(r"/[\w/.-]*/(data|kafka-\d|broker-\d)[\w/.-]*", "<dir>", text)
    text = re.sub(r"\b\d+\b", "N", text)
    text = re.sub(r"N(,N)+", "N,N", text)
    # Column alignment depends on value widths.
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln]


class Scenario:
    def __init__(self, cluster):
        self.cluster = cluster
        self.bs = cluster.bootstrap.split(",")[0]
        tag = uuid.uuid4().hex[:6]
        self.topic = f"cli-{tag}"
        self.group = f"cli-group-{tag}"
        self.names = {self.topic: "<topic>", self.group: "<group>"}
        self.steps: dict[str, Step] = {}

    def run(self, name: str, main: str, args: list[str], ok: bool = True) -> Step:
        p = run_tool(main, args)
        s = Step(name, [main, *args], p.returncode, p.stdout, p.stderr)
        s.norm = normalize(p.stdout, self.names)
        self.steps[name] = s
        if ok and p.returncode != 0:
            raise AssertionError(f"{name}: exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr[-3000:]}")
        return s

    def all(self, tmp) -> dict[str, Step]:
        bs, t, g = self.bs, self.topic, self.group
        n = len(self.cluster.brokers)
        self.run("topics-create", TOPICS, ["--bootstrap-server", bs, "--create", "--topic", t, "--partitions", "3",
                                           "--replication-factor", str(min(3, n)), "--config", "retention.ms=3600000"])
        time.sleep(1)
        self.run("topics-list", TOPICS, ["--bootstrap-server", bs, "--list", "--topic", t])
        self.run("topics-describe", TOPICS, ["--bootstrap-server", bs, "--describe", "--topic", t])
        self.run("topics-alter", TOPICS, ["--bootstrap-server", bs, "--alter", "--topic", t, "--partitions", "4"])
        self.run("topics-describe-4", TOPICS, ["--bootstrap-server", bs, "--describe", "--topic", t])
        self.run("topics-create-again", TOPICS, ["--bootstrap-server", bs, "--create", "--topic", t, "--partitions", "1"],
                 ok=False)

        # Data and a committed group offset, through Kafka's own perf producer and the Java consumer
        # group tool's reset (no consumer process needed).
        self.run("produce", PRODUCER_PERF, ["--topic", t, "--num-records", "400", "--record-size", "100",
                                            "--throughput", "-1", "--producer-props", f"bootstrap.servers={bs}",
                                            "acks=all"])
        self.run("groups-reset-dry", GROUPS, ["--bootstrap-server", bs, "--reset-offsets", "--group", g, "--topic", t,
                                              "--to-offset", "50", "--dry-run"])
        self.run("groups-reset", GROUPS, ["--bootstrap-server", bs, "--reset-offsets", "--group", g, "--topic", t,
                                          "--to-earliest", "--execute"])
        self.run("groups-list", GROUPS, ["--bootstrap-server", bs, "--list"])
        self.run("groups-describe", GROUPS, ["--bootstrap-server", bs, "--describe", "--group", g])
        self.run("groups-describe-state", GROUPS, ["--bootstrap-server", bs, "--describe", "--group", g, "--state"])
        self.run("groups-delete", GROUPS, ["--bootstrap-server", bs, "--delete", "--group", g])

        self.run("configs-describe", CONFIGS, ["--bootstrap-server", bs, "--describe", "--entity-type", "topics",
                                               "--entity-name", t])
        self.run("configs-alter", CONFIGS, ["--bootstrap-server", bs, "--alter", "--entity-type", "topics",
                                            "--entity-name", t, "--add-config", "retention.ms=7200000,segment.bytes=1048576"])
        time.sleep(1)
        self.run("configs-describe-2", CONFIGS, ["--bootstrap-server", bs, "--describe", "--entity-type", "topics",
                                                 "--entity-name", t])
        self.run("configs-delete", CONFIGS, ["--bootstrap-server", bs, "--alter", "--entity-type", "topics",
                                             "--entity-name", t, "--delete-config", "segment.bytes"])
        time.sleep(1)
        self.run("configs-describe-3", CONFIGS, ["--bootstrap-server", bs, "--describe", "--entity-type", "topics",
                                                 "--entity-name", t])
        self.run("configs-broker", CONFIGS, ["--bootstrap-server", bs, "--describe", "--entity-type", "brokers",
                                             "--entity-name", "0"])

        self.run("log-dirs", LOG_DIRS, ["--bootstrap-server", bs, "--describe", "--topic-list", t,
                                        "--broker-list", ",".join(str(i) for i in range(n))])

        # Reassignment: move partition 0 onto the replicas in reverse order, minus one broker.
        move = {"version": 1, "partitions": [{"topic": t, "partition": 0, "replicas": [2, 1],
                                              "log_dirs": ["any", "any"]}]}
        plan = tmp / f"reassign-{t}.json"
        plan.write_text(json.dumps(move))
        topics_json = tmp / f"topics-{t}.json"
        topics_json.write_text(json.dumps({"version": 1, "topics": [{"topic": t}]}))
        self.run("reassign-generate", REASSIGN, ["--bootstrap-server", bs, "--generate", "--topics-to-move-json-file",
                                                 str(topics_json), "--broker-list", "0,1,2"])
        self.run("reassign-execute", REASSIGN, ["--bootstrap-server", bs, "--execute", "--reassignment-json-file",
                                                str(plan)])
        deadline = time.monotonic() + 60
        while True:
            v = self.run("reassign-verify", REASSIGN, ["--bootstrap-server", bs, "--verify", "--reassignment-json-file",
                                                       str(plan)], ok=False)
            if "is completed" in v.out and "still in progress" not in v.out:
                break
            assert time.monotonic() < deadline, f"reassignment did not complete:\n{v.out}\n{v.err[-2000:]}"
            time.sleep(1)
        self.run("reassign-list", REASSIGN, ["--bootstrap-server", bs, "--list"])
        self.run("topics-describe-moved", TOPICS, ["--bootstrap-server", bs, "--describe", "--topic", t])

        self.run("topics-delete", TOPICS, ["--bootstrap-server", bs, "--delete", "--topic", t])
        return self.steps
