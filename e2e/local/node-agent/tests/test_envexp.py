import base64

import pytest

from rivagent import envexp

POD = {
    "metadata": {"name": "b-0", "namespace": "kafka", "uid": "u1",
                 "labels": {"apps.kubernetes.io/pod-index": "0", "app": "x"}, "annotations": {"a": "1"}},
    "spec": {"nodeName": "rivulet-zone-a", "serviceAccountName": "sa"},
    "status": {"podIP": "10.88.1.2", "podIPs": [{"ip": "10.88.1.2"}], "hostIP": "10.88.0.1"},
}


@pytest.mark.parametrize("text,want", [
    ("$(A).svc", "x.svc"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("a$b", "a$b"),
    ("$(A", "$(A"),
    ("end$", "end$"),
    ("$(A)$(A)", "xx"),
    ("", ""),
])
def test_expand(text, want):
    assert envexp.expand(text, {"A": "x"}) == want


def test_field_refs():
    assert envexp.field_value(POD, "metadata.name") == "b-0"
    assert envexp.field_value(POD, "metadata.labels['apps.kubernetes.io/pod-index']") == "0"
    assert envexp.field_value(POD, "metadata.labels['nope']") == ""
    assert envexp.field_value(POD, "metadata.annotations['a']") == "1"
    assert envexp.field_value(POD, "status.podIP") == "10.88.1.2"
    assert envexp.field_value(POD, "spec.nodeName") == "rivulet-zone-a"
    assert envexp.field_value(POD, "metadata.labels") == 'app="x"\napps.kubernetes.io/pod-index="0"'
    with pytest.raises(envexp.EnvError):
        envexp.field_value(POD, "spec.bogus")


def _objects(kind, ns, name):
    assert ns == "kafka"
    if kind == "configMap" and name == "cfg":
        return {"data": {"LOG_RETENTION": "7d", "bad key": "skipped", "A": "from-cm"}}
    if kind == "secret" and name == "sec":
        return {"data": {"PASSWORD": base64.b64encode(b"hunter2").decode()}}
    return None


def test_resolve_env_order_expansion_and_refs():
    c = {
        "name": "broker",
        "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "250m"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"},
                    {"configMapRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "ADV", "value": "$(POD_NAME).h.kafka.svc:9092"},
            {"name": "A", "value": "literal wins over envFrom; host $(KUBERNETES_SERVICE_HOST)"},
            {"name": "LATER", "value": "$(DEFINED_AFTER)"},
            {"name": "DEFINED_AFTER", "value": "y"},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "none", "optional": True}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        ],
    }
    env = envexp.resolve_env(POD, c, _objects, {"cpu": "8", "memory": "32Gi"}, {"KUBERNETES_SERVICE_HOST": "10.88.0.1"})
    assert env["LOG_RETENTION"] == "7d"
    assert "bad key" not in env
    assert env["S_PASSWORD"] == "hunter2"
    assert env["ADV"] == "b-0.h.kafka.svc:9092"
    assert env["A"] == "literal wins over envFrom; host 10.88.0.1"
    assert env["LATER"] == "$(DEFINED_AFTER)"  # Only earlier variables expand.
    assert env["KEY"] == "hunter2"
    assert "OPT" not in env
    assert env["MEM_MI"] == "2048"
    assert env["CPU_LIMIT"] == "8"  # No limit: the node's allocatable.
    assert env["CPU_REQ_M"] == "250"


def test_missing_required_refs_fail():
    with pytest.raises(envexp.EnvError, match="not found"):
        envexp.resolve_env(POD, {"envFrom": [{"configMapRef": {"name": "absent"}}]}, _objects, {}, {})
    with pytest.raises(envexp.EnvError, match="no key"):
        envexp.resolve_env(POD, {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]},
                           _objects, {}, {})


def test_command_expansion():
    c = {"command": ["/usr/local/bin/rivulet-broker", "--id=$(ID)"], "args": ["$(UNSET)", "$$(ID)"]}
    assert envexp.expand_command(c, {"ID": "3"}) == (["/usr/local/bin/rivulet-broker", "--id=3"], ["$(UNSET)", "$(ID)"])
