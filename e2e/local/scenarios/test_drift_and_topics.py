"""Drift of owned objects and the KafkaTopic edge cases on the local Kubernetes bed (issue 13),
written against the bed interface (docs/e2e.md): `.k8s/env` sourced, run under `.k8s/exec` so
the cluster's Service names resolve, the chart installed by conftest.py:

    . .k8s/env && .k8s/exec .venv/bin/python -m pytest e2e/local/scenarios/test_drift_and_topics.py -q

One three-zone cluster (one broker per zone) in its own namespace serves every test here; the
namespace is deleted at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

CLUSTER = "drift"


def kubectl(*args, input=None, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r


def get(kind, name, ns) -> dict:
    return json.loads(kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def wait_for(what, fn, timeout=300.0, every=2.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def apply(ns, manifest):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))


def conditions(obj) -> dict:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def events(ns, reason) -> list:
    out = json.loads(kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json").stdout)
    return [e for e in out["items"] if e.get("reason") == reason]


def cluster_ready(ns):
    return conditions(get("kafkacluster", CLUSTER, ns)).get("Ready", {}).get("status") == "True"


@pytest.fixture(scope="module")
def ns():
    name = f"drift-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    apply(name, {
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": CLUSTER},
        "spec": {"zones": ["zone-a", "zone-b", "zone-c"], "brokersPerZone": 1,
                 "brokerType": "kafka.t3.small",
                 "storage": {"size": "64Mi", "storageClassName": "rivulet-local"},
                 "config": {"default.replication.factor": "3", "min.insync.replicas": "2",
                            "offsets.topic.replication.factor": "3",
                            "unclean.leader.election.enable": "false"}},
    })
    wait_for("cluster Ready", lambda: cluster_ready(name), timeout=600)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def bootstrap(ns) -> str:
    return get("kafkacluster", CLUSTER, ns)["status"]["bootstrapAddress"]


def drift_events(ns, obj) -> list:
    return [e.get("note", "") for e in events(ns, "DriftReverted")
            if (e.get("related") or {}).get("name") == obj]


def test_config_keys_reach_the_brokers_and_the_coordinator_has_a_budget(ns):
    cm = get("configmap", f"{CLUSTER}-broker-config", ns)
    assert cm["data"]["RIVULET_MIN_INSYNC_REPLICAS"] == "2"
    assert cm["data"]["RIVULET_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert cm["data"]["RIVULET_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    pdb = get("pdb", f"{CLUSTER}-coordinator", ns)
    assert pdb["spec"]["maxUnavailable"] == 0
    # The API server's view of the budget: the single coordinator may not be evicted.
    wait_for("coordinator PDB observed", lambda: get("pdb", f"{CLUSTER}-coordinator", ns)
             .get("status", {}).get("currentHealthy") == 1)
    assert get("pdb", f"{CLUSTER}-coordinator", ns)["status"]["disruptionsAllowed"] == 0
    # A settled cluster on a real API server (defaults added, quantities canonical) has no drift.
    assert events(ns, "DriftReverted") == []


def test_kubectl_scale_of_a_broker_statefulset_is_reverted_with_an_event(ns):
    sts = f"{CLUSTER}-broker-z0"
    annotation = get("sts", sts, ns)["metadata"]["annotations"]["rivulet.dev/applied-hash"]
    kubectl("scale", "sts", sts, "-n", ns, "--replicas=0")
    wait_for("replicas reverted", lambda: get("sts", sts, ns)["spec"]["replicas"] == 1, timeout=120)
    notes = wait_for("DriftReverted event", lambda: drift_events(ns, sts), timeout=60)
    assert any("spec.replicas" in n for n in notes), notes
    # The hash annotation never changed: only the field comparison saw the edit.
    assert get("sts", sts, ns)["metadata"]["annotations"]["rivulet.dev/applied-hash"] == annotation
    wait_for("cluster Ready again", lambda: cluster_ready(ns), timeout=300)


def test_label_and_env_edits_are_reverted_and_others_fields_kept(ns):
    z1, z2 = f"{CLUSTER}-broker-z1", f"{CLUSTER}-broker-z2"
    kubectl("label", "sts", z1, "-n", ns, "rivulet.dev/zone=elsewhere", "team=payments", "--overwrite")
    wait_for("label reverted", lambda: get("sts", z1, ns)["metadata"]["labels"]["rivulet.dev/zone"] == "zone-b",
             timeout=120)
    notes = wait_for("DriftReverted event (label)", lambda: drift_events(ns, z1), timeout=60)
    assert any("metadata.labels.rivulet.dev/zone" in n for n in notes), notes
    # A label the operator doesn't set is someone else's: kept.
    assert get("sts", z1, ns)["metadata"]["labels"]["team"] == "payments"

    kubectl("set", "env", f"sts/{z2}", "-n", ns, "-c", "broker", "RIVULET_LOG_FORMAT=text")

    def env_value():
        c = get("sts", z2, ns)["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in c["env"]}["RIVULET_LOG_FORMAT"]
    wait_for("env reverted", lambda: env_value() == "json", timeout=120)
    notes = wait_for("DriftReverted event (env)", lambda: drift_events(ns, z2), timeout=60)
    assert any("env[RIVULET_LOG_FORMAT].value" in n for n in notes), notes
    wait_for("cluster Ready again", lambda: cluster_ready(ns), timeout=300)


def test_a_key_added_to_the_broker_config_map_is_removed(ns):
    cm = f"{CLUSTER}-broker-config"
    kubectl("patch", "configmap", cm, "-n", ns, "--type=merge", "-p",
            json.dumps({"data": {"RIVULET_NUM_PARTITIONS": "7", "RIVULET_LOG_LEVEL": "debug"}}))
    wait_for("extra key removed", lambda: "RIVULET_NUM_PARTITIONS" not in get("configmap", cm, ns)["data"],
             timeout=120)
    assert get("configmap", cm, ns)["data"]["RIVULET_LOG_LEVEL"] == "info"
    notes = wait_for("DriftReverted event (ConfigMap)", lambda: drift_events(ns, cm), timeout=60)
    assert any("data.RIVULET_NUM_PARTITIONS" in n for n in notes), notes


def topic(name, spec) -> dict:
    return {"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaTopic", "metadata": {"name": name}, "spec": spec}


def topic_ready(ns, name):
    return conditions(get("kafkatopic", name, ns)).get("Ready", {}).get("status") == "True"


def test_topic_identity_edits_are_refused_by_the_api_server(ns):
    apply(ns, topic("ident", {"clusterRef": {"name": CLUSTER}, "partitions": 1, "replicationFactor": 3}))
    apply(ns, topic("ident-named", {"clusterRef": {"name": CLUSTER}, "topicName": "ident-x", "partitions": 1,
                                    "replicationFactor": 3}))
    for name, patch, message in [
        ("ident", {"spec": {"topicName": "ident"}}, "topicName can't be added or removed"),
        ("ident-named", {"spec": {"topicName": None}}, "topicName can't be added or removed"),
        ("ident-named", {"spec": {"topicName": "ident-y"}}, "topicName is immutable"),
        ("ident", {"spec": {"clusterRef": {"name": "other"}}}, "clusterRef is immutable"),
    ]:
        r = kubectl("patch", "kafkatopic", name, "-n", ns, "--type=merge", "-p", json.dumps(patch), check=False)
        assert r.returncode != 0 and message in r.stderr, (name, patch, r.stderr)
    wait_for("ident Ready", lambda: topic_ready(ns, "ident"))


def test_second_claimant_is_refused_with_a_condition_and_an_event(ns):
    apply(ns, topic("claim-a", {"clusterRef": {"name": CLUSTER}, "topicName": "claimed", "partitions": 2,
                                "replicationFactor": 3}))
    wait_for("claim-a Ready", lambda: topic_ready(ns, "claim-a"))
    apply(ns, topic("claim-b", {"clusterRef": {"name": CLUSTER}, "topicName": "claimed", "partitions": 4,
                                "replicationFactor": 3}))

    def refused():
        c = conditions(get("kafkatopic", "claim-b", ns)).get("Ready", {})
        return c.get("reason") == "TopicClaimed" and c
    c = wait_for("claim-b refused", refused)
    assert "managed by KafkaTopic claim-a" in c["message"], c
    assert any(e.get("regarding", {}).get("name") == "claim-b" for e in events(ns, "TopicClaimed"))
    md = AdminClient({"bootstrap.servers": bootstrap(ns)}).list_topics("claimed", timeout=15).topics["claimed"]
    assert len(md.partitions) == 2, "the refused resource changed nothing"
    # Deleting the refused one leaves the topic alone.
    kubectl("delete", "kafkatopic", "claim-b", "-n", ns, "--wait=true", "--timeout=60s")
    time.sleep(2)
    md = AdminClient({"bootstrap.servers": bootstrap(ns)}).list_topics("claimed", timeout=15).topics
    assert "claimed" in md and md["claimed"].error is None


def test_adopting_a_topic_keeps_the_config_the_spec_does_not_name(ns):
    admin = AdminClient({"bootstrap.servers": bootstrap(ns)})
    fs = admin.create_topics([NewTopic("legacy", num_partitions=2, replication_factor=3,
                                       config={"segment.ms": "3600000", "retention.ms": "86400000"})])
    fs["legacy"].result(timeout=30)
    apply(ns, topic("legacy", {"clusterRef": {"name": CLUSTER}, "partitions": 2, "replicationFactor": 3,
                               "config": {"retention.ms": "7200000"}}))
    wait_for("legacy Ready", lambda: topic_ready(ns, "legacy"))
    st = get("kafkatopic", "legacy", ns)["status"]
    assert st["adopted"] is True and st["managedConfig"] == ["retention.ms"], st

    def configs():
        res = ConfigResource(ConfigResource.Type.TOPIC, "legacy")
        entries = admin.describe_configs([res])[res].result(timeout=15)
        return {k: v.value for k, v in entries.items()}
    wait_for("retention.ms set", lambda: configs()["retention.ms"] == "7200000")
    assert configs()["segment.ms"] == "3600000"


def test_reverts_do_not_loop(ns):
    """Each edit was reverted once: no object keeps drifting against the real API server."""
    time.sleep(20)
    seen = {}
    for e in events(ns, "DriftReverted"):
        name = (e.get("related") or {}).get("name")
        count = 1 + ((e.get("series") or {}).get("count") or 0)
        seen[name] = seen.get(name, 0) + count
    assert set(seen) <= {f"{CLUSTER}-broker-z0", f"{CLUSTER}-broker-z1", f"{CLUSTER}-broker-z2",
                         f"{CLUSTER}-broker-config"}, seen
    assert all(n <= 3 for n in seen.values()), seen
    assert cluster_ready(ns)
