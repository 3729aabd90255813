"""The operator on a real control plane: one ordered story, as a user would live it.

helm install → a three-zone KafkaCluster and a KafkaTopic become Ready → the scheduler put one
broker in each zone and each broker's rack is its zone → kcat and confluent-kafka produce (acks=all)
and consume through the bootstrap Service name → a broker pod is deleted under an idempotent
acks=all load and the checker finds every acknowledged message → brokersPerZone 1→2 → the API
server refuses every file in examples/bad with a message naming the field → kubectl explain shows
the field docs → the operator's metrics and Events are visible → helm upgrade rolls the operator,
the cluster stays Ready → deleting the resources cleans up and helm uninstall removes the operator
but keeps the CRDs (Helm never deletes crds/)."""

from __future__ import annotations

import glob
import re
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from conftest import CHART, OPERATOR_NS, RELEASE
from kube import NS, REPO, CommandError, condition, events, helm, is_ready, kubectl, kubectl_json, run, wait_for

CLUSTER = "e2e"
TOPIC = "e2e-orders"
BOOTSTRAP = f"{CLUSTER}-bootstrap.{NS}.svc:9092"
ZONES = ["zone-a", "zone-b", "zone-c"]

CLUSTER_YAML = f"""
apiVersion: rivulet.dev/v1alpha1
kind: KafkaCluster
metadata: {{name: {CLUSTER}, namespace: {NS}}}
spec:
  zones: [{", ".join(ZONES)}]
  brokersPerZone: 1
  brokerType: kafka.t3.small
  storage:
    size: 256Mi
  config:
    default.replication.factor: "3"
"""

TOPIC_YAML = f"""
apiVersion: rivulet.dev/v1alpha1
kind: KafkaTopic
metadata: {{name: {TOPIC}, namespace: {NS}}}
spec:
  clusterRef: {{name: {CLUSTER}}}
  partitions: 3
  replicationFactor: 3
"""


def broker_pods() -> list[dict]:
    return kubectl_json("get", "pods", "-n", NS, "-l", f"app.kubernetes.io/instance={CLUSTER},app.kubernetes.io/component=broker")["items"]


def pod_ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []) or [])


def brokers_by_id() -> dict[int, dict]:
    return {int(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]): p for p in broker_pods()}


def cluster_nodes() -> dict[int, str | None]:
    """Broker id → rack, from DescribeCluster through the bootstrap Service name."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    desc = admin.describe_cluster(request_timeout=15).result(timeout=20)
    return {n.id: n.rack for n in desc.nodes}


def test_operator_runs_as_a_pod_under_the_charts_rbac(operator):
    pods = kubectl_json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=rivulet-operator")["items"]
    assert len(pods) == 1 and pod_ready(pods[0]), pods
    sa = pods[0]["spec"]["serviceAccountName"]
    # The operator's own identity may do what it needs, and no more than the chart grants.
    who = f"system:serviceaccount:{OPERATOR_NS}:{sa}"
    for verb, res, *sub in [("create", "statefulsets.apps"), ("patch", "statefulsets.apps"), ("create", "services"),
                            ("create", "configmaps"), ("create", "poddisruptionbudgets.policy"),
                            ("patch", "persistentvolumeclaims"), ("patch", "kafkaclusters.rivulet.dev", "status"),
                            ("create", "events.events.k8s.io")]:
        extra = ["--subresource", sub[0]] if sub else []
        out = kubectl("auth", "can-i", verb, res, *extra, "--as", who, "-n", NS, check=False).strip()
        assert out == "yes", f"{who} cannot {verb} {res}: {out}"
    assert kubectl("auth", "can-i", "delete", "nodes", "--as", who, check=False).strip() == "no"


def test_three_zone_cluster_becomes_ready(namespace):
    kubectl("apply", "-f", "-", input=CLUSTER_YAML)
    wait_for("KafkaCluster Ready", lambda: is_ready("kafkacluster", CLUSTER), timeout=600, interval=3)
    kc = kubectl_json("get", "kafkacluster", CLUSTER, "-n", NS)
    assert kc["status"]["bootstrapAddress"] == BOOTSTRAP


def test_scheduler_puts_one_broker_per_zone_and_rack_is_the_zone():
    pods = brokers_by_id()
    assert len(pods) == 3, sorted(pods)
    node_zone = {n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/zone"]
                 for n in kubectl_json("get", "nodes")["items"]}
    zones_of = {}
    for bid, p in pods.items():
        zone = node_zone[p["spec"]["nodeName"]]
        assert zone == p["metadata"]["labels"]["rivulet.dev/zone"], (bid, zone, p["metadata"]["labels"])
        zones_of[bid] = zone
    assert sorted(zones_of.values()) == ZONES
    racks = wait_for("three brokers in DescribeCluster", lambda: (lambda r: r if len(r) == 3 else None)(cluster_nodes()))
    assert racks == zones_of, (racks, zones_of)


def test_topic_becomes_ready():
    kubectl("apply", "-f", "-", input=TOPIC_YAML)
    wait_for("KafkaTopic Ready", lambda: is_ready("kafkatopic", TOPIC), timeout=180)
    md = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(TOPIC, timeout=15).topics[TOPIC]
    assert len(md.partitions) == 3
    assert all(len(p.replicas) == 3 for p in md.partitions.values())


def test_kcat_produces_and_consumes_through_the_bootstrap_service():
    key = uuid.uuid4().hex[:8]
    lines = "".join(f"{key}-{i}:value-{i}\n" for i in range(20))
    run(["kcat", "-P", "-b", BOOTSTRAP, "-t", TOPIC, "-K:", "-X", "acks=all"], input=lines, timeout=60)
    out = run(["kcat", "-C", "-b", BOOTSTRAP, "-t", TOPIC, "-o", "beginning", "-e", "-f", "%k=%s\n"], timeout=60).stdout
    got = {line for line in out.splitlines() if line.startswith(key)}
    assert got == {f"{key}-{i}=value-{i}" for i in range(20)}


def test_confluent_kafka_produces_acks_all_and_consumes():
    tag = uuid.uuid4().hex
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True})
    errors = []
    for i in range(100):
        p.produce(TOPIC, key=f"{tag}-{i}", value=f"v{i}", on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and errors == []
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"e2e-{tag}", "auto.offset.reset": "earliest"})
    c.subscribe([TOPIC])
    seen, deadline = set(), time.monotonic() + 60
    while len(seen) < 100 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error() and m.key().decode().startswith(tag):
            seen.add(m.key().decode())
    c.close()
    assert len(seen) == 100


def test_deleting_a_broker_pod_under_load_loses_nothing():
    from checker import Load, verify

    topic = f"e2e-chk-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    from confluent_kafka.admin import NewTopic
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result(30)
    load = Load(BOOTSTRAP, topic, 3, rate=200).start()
    load.wait_acks(300, 60, "before the pod is deleted")
    victim = brokers_by_id()[min(brokers_by_id())]["metadata"]["name"]
    uid = kubectl_json("get", "pod", victim, "-n", NS)["metadata"]["uid"]
    kubectl("delete", "pod", victim, "-n", NS, "--wait=true", "--timeout=180s")
    # The StatefulSet controller brings the same broker back as a new pod on the same zone's node.
    wait_for("the broker pod back and Ready", lambda: (lambda p: p and p["metadata"]["uid"] != uid and pod_ready(p))(
        next((p for p in broker_pods() if p["metadata"]["name"] == victim), None)), timeout=300)
    load.wait_acks(300, 120, "after the broker came back")
    load.stop()
    print(verify(load, BOOTSTRAP, strict=False))


def test_scale_out_brokers_per_zone_one_to_two():
    kubectl("patch", "kafkacluster", CLUSTER, "-n", NS, "--type", "merge", "-p", '{"spec":{"brokersPerZone":2}}')
    wait_for("six Ready broker pods", lambda: (lambda ps: len(ps) == 6 and all(pod_ready(p) for p in ps))(broker_pods()), timeout=600)
    wait_for("KafkaCluster Ready after scale-out", lambda: is_ready("kafkacluster", CLUSTER), timeout=300)
    per_zone: dict[str, int] = {}
    for p in broker_pods():
        per_zone[p["metadata"]["labels"]["rivulet.dev/zone"]] = per_zone.get(p["metadata"]["labels"]["rivulet.dev/zone"], 0) + 1
    assert per_zone == {z: 2 for z in ZONES}
    wait_for("six brokers registered", lambda: len(cluster_nodes()) == 6, timeout=120)


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "examples" / "bad" / "*.yaml"))), ids=lambda p: p.rsplit("/", 1)[1])
def test_api_server_refuses_every_bad_example(namespace, path):
    text = open(path).read()
    m = re.search(r"^# refused-field: (\S+)", text, re.M)
    assert m, f"{path}: every bad example names the field the API server must refuse (# refused-field: ...)"
    field = m.group(1)
    p = run(["kubectl", "apply", "--dry-run=server", "-n", NS, "-f", path], check=False)
    assert p.returncode != 0, f"the API server accepted {path}: {p.stdout}"
    assert field in p.stderr, f"refusal of {path} does not name {field}: {p.stderr}"


def test_kubectl_explain_shows_the_field_docs():
    out = kubectl("explain", "kafkacluster.spec")
    for f in ["zones", "brokersPerZone", "brokerType", "storage"]:
        assert re.search(rf"^\s+{f}\b", out, re.M), f"{f} missing from kubectl explain:\n{out}"
    storage = kubectl("explain", "kafkacluster.spec.storage")
    assert "DESCRIPTION" in storage and len(storage.split("DESCRIPTION", 1)[1].strip()) > 20, storage
    assert "partitions" in kubectl("explain", "kafkatopic.spec")


def test_operator_metrics_and_events_are_visible():
    pod = kubectl_json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=rivulet-operator")["items"][0]
    ip = pod["status"]["podIP"]
    body = urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10).read().decode()
    assert "rivulet_operator_reconciliations_total" in body
    evs = events(NS, CLUSTER)
    assert evs, "no Events about the KafkaCluster"
    assert any(e.get("reportingComponent", "") or e.get("source", {}).get("component") for e in evs)


def test_helm_upgrade_rolls_the_operator_and_the_cluster_stays_ready():
    old = {p["metadata"]["uid"] for p in kubectl_json("get", "pods", "-n", OPERATOR_NS)["items"]}
    helm("upgrade", RELEASE, CHART, "-n", OPERATOR_NS, "--set", "logLevel=debug", "--wait", "--timeout", "5m")
    pods = kubectl_json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=rivulet-operator")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert live and all(p["metadata"]["uid"] not in old for p in live)
    assert "--log-level=debug" in live[0]["spec"]["containers"][0]["args"]
    wait_for("KafkaCluster Ready after helm upgrade", lambda: is_ready("kafkacluster", CLUSTER), timeout=120)


def test_delete_and_helm_uninstall_clean_up_as_documented():
    kubectl("delete", "kafkatopic", TOPIC, "-n", NS, "--wait=true", "--timeout=120s")
    kubectl("delete", "kafkacluster", CLUSTER, "-n", NS, "--wait=true", "--timeout=300s")
    wait_for("broker and coordinator StatefulSets gone", lambda: not kubectl_json(
        "get", "statefulsets", "-n", NS, "-l", f"app.kubernetes.io/instance={CLUSTER}")["items"], timeout=300)
    # PVCs are kept (persistentVolumeClaimRetentionPolicy: Retain), as docs/operator.md says.
    assert kubectl_json("get", "pvc", "-n", NS)["items"]
    helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")
    assert not kubectl_json("get", "deployments", "-n", OPERATOR_NS)["items"]
    crds = kubectl("get", "crd", "-o", "name")
    assert "kafkaclusters.rivulet.dev" in crds and "kafkatopics.rivulet.dev" in crds
    # Leave no volumes behind for the next run.
    kubectl("delete", "pvc", "--all", "-n", NS, "--wait=true", "--timeout=120s", check=False)
