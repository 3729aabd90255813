"""The Helm chart rendered and linted with Helm's own SDK, every rendered manifest and CRD
validated against the Kubernetes schemas, and the examples checked against the CRD schemas."""

import copy
import glob
import json
import os

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CHART = os.path.join(ROOT, "charts", "rivulet-operator")
KUBE_VERSION = "1.33.0"

CUSTOM_VALUES = {
    "image": {"repository": "registry.example/rivulet-operator", "tag": "1.2.3", "pullPolicy": "Always"},
    "replicaCount": 2,
    "logLevel": "debug",
    "logFormat": "text",
    "watchNamespaces": ["kafka", "streaming"],
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
}


def render(values):
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name="rivulet", namespace="rivulet-system", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return out, docs


def kinds(docs):
    return sorted(d["kind"] for _, d in docs)


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_lint_clean(values):
    report = helm.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSION)
    assert report["errors"] == [], report
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert bad == [], bad


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_rendered_manifests_are_valid_kubernetes(values):
    _, docs = render(values)
    assert docs
    for path, doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_default_values_render_cluster_wide_rbac():
    out, docs = render(None)
    assert kinds(docs) == sorted(
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    )
    dep = next(d for _, d in docs if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "rivulet-operator:0.1.0"
    assert "--leader-election" in c["args"]
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "kubectl apply -f examples/kafkacluster.yaml" in out["rivulet-operator/templates/NOTES.txt"]


def test_custom_values_render_namespaced_rbac():
    _, docs = render(CUSTOM_VALUES)
    roles = [d for _, d in docs if d["kind"] == "Role" and "leader" not in d["metadata"]["name"]]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["kafka", "streaming"]
    # Only the StorageClass read is cluster-wide (a Role can't grant cluster-scoped kinds).
    cluster_roles = [d for _, d in docs if d["kind"] == "ClusterRole"]
    assert [r["metadata"]["name"] for r in cluster_roles] == ["rivulet-rivulet-operator-storageclasses"]
    assert [(g, r) for rule in cluster_roles[0]["rules"] for g in rule["apiGroups"] for r in rule["resources"]] == [
        ("storage.k8s.io", "storageclasses")
    ]
    dep = next(d for _, d in docs if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/rivulet-operator:1.2.3"
    assert "--namespaces=kafka,streaming" in c["args"]
    assert "--log-level=debug" in c["args"]
    assert dep["spec"]["replicas"] == 2


def granted(rules):
    out = set()
    for rule in rules:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    out.add((g, r, v))
    return out


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["default", "custom"])
def test_rbac_grants_every_verb_the_operator_uses(values):
    """operator-rbac.json is derived from the operator's own API calls (operator/tests/rbac.rs);
    every namespace the operator manages must grant all of them (issue 11: applying an object
    that doesn't exist yet is authorized as create)."""
    with open(os.path.join(os.path.dirname(__file__), "operator-rbac.json")) as f:
        used = json.load(f)
    _, docs = render(values)
    cluster = set()
    for _, d in docs:
        if d["kind"] == "ClusterRole":
            cluster |= granted(d["rules"])
    namespaces = (values or {}).get("watchNamespaces") or [None]
    for ns in namespaces:
        grants = set(cluster)
        for _, d in docs:
            if d["kind"] == "Role" and d["metadata"].get("namespace") == ns and "leader" not in d["metadata"]["name"]:
                grants |= granted(d["rules"])
        missing = [
            (u["apiGroup"], u["resource"], v)
            for u in used
            for v in u["verbs"]
            if (u["apiGroup"], u["resource"], v) not in grants
        ]
        assert missing == [], f"namespace {ns}: not granted {missing}"
    # The regression itself: create on every kind the operator applies.
    for kind in ["statefulsets", "services", "configmaps", "poddisruptionbudgets"]:
        assert any(u["resource"] == kind and "create" in u["verbs"] for u in used), kind


def test_rbac_is_least_privilege():
    _, docs = render(None)
    role = next(d for _, d in docs if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        # Secrets: the cluster CA, broker certificates and user credentials, read and written
        # by name only (never listed or watched, never deleted: they go with their owners).
        if "secrets" in rule["resources"]:
            assert rule["resources"] == ["secrets"], rule
            assert sorted(rule["verbs"]) == ["create", "get", "patch"], rule
        assert "nodes" not in rule["resources"], rule


def test_bad_values_are_refused_by_the_schema():
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmError):
        chart.render({"logLevel": "loud"}, name="rivulet", namespace="x")


def crd_schemas():
    schemas = {}
    for path in glob.glob(os.path.join(ROOT, "crds", "*.yaml")):
        with open(path) as f:
            crd = yaml.safe_load(f)
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schemas[crd["spec"]["names"]["kind"]] = schema
    return schemas


def test_chart_crds_are_valid_and_same_as_crds_dir():
    chart = helm.Chart.load(CHART)
    crds = chart.crds
    assert len(crds) == 3
    for entry in crds:
        name = os.path.basename(entry["name"])
        with open(os.path.join(ROOT, "crds", name)) as f:
            assert yaml.safe_load(entry["data"]) == yaml.safe_load(f)
    assert set(crd_schemas()) == {"KafkaCluster", "KafkaTopic", "KafkaUser"}


def validate_example(doc, schemas):
    schema = copy.deepcopy(schemas[doc["kind"]])
    jsonschema.validate(doc, schema)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))))
def test_examples_match_the_crd_schemas(path):
    schemas = crd_schemas()
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            validate_example(doc, schemas)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "bad", "*.yaml"))))
def test_bad_examples_are_rejected(path):
    schemas = crd_schemas()
    with open(path) as f:
        doc = yaml.safe_load(f)
    with pytest.raises(jsonschema.ValidationError):
        validate_example(doc, schemas)
