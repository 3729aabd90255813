"""Container environment (pure): envFrom, env with $(VAR) expansion, valueFrom; command/args
expansion. Follows the kubelet's makeEnvironmentVariables and k8s.io/kubernetes' expansion package."""

import base64
import re

from . import quantity

_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
# A C_IDENTIFIER-ish name (the API server allows more; envFrom skips what is not a valid name).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class EnvError(Exception):
    """A reference the container cannot start without (reported as CreateContainerConfigError)."""


def expand(text: str, env: dict) -> str:
    """$(VAR) -> env[VAR] when defined, else left as written; $$ -> $; any other $ stays."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env[name] if name in env else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def field_value(pod: dict, path: str) -> str:
    """A downward-API fieldRef of the pod (env and downwardAPI volumes)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    m = _FIELD_KEY.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path == "metadata.labels":
        return _key_value_lines(meta.get("labels") or {})
    if path == "metadata.annotations":
        return _key_value_lines(meta.get("annotations") or {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(a.get("ip", "") for a in status.get("hostIPs") or []),
        "status.podIPs": ",".join(a.get("ip", "") for a in status.get("podIPs") or []),
    }
    if path not in simple:
        raise EnvError(f"unsupported fieldRef {path!r}")
    return simple[path]


def _key_value_lines(d: dict) -> str:
    return "\n".join(f'{k}="{d[k]}"' for k in sorted(d))


def resource_value(container: dict, ref: dict, node_allocatable: dict) -> str:
    """A resourceFieldRef: the container's limit (node allocatable when unset) or request."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise EnvError(f"unsupported resourceFieldRef {resource!r}")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        # The API server defaults requests to limits; with neither, the kubelet reports 0.
        value = (resources.get("limits") or {}).get(name, "0")
    if value is None:
        value = node_allocatable.get(name, "0")
    try:
        return str(quantity.divide_ceil(value, ref.get("divisor")))
    except quantity.QuantityError as e:
        raise EnvError(str(e)) from e


def _decode(kind: str, obj: dict) -> dict:
    """Key -> text of a ConfigMap (data + binaryData) or a Secret (base64 data + stringData)."""
    out = {}
    if kind == "configMap":
        out.update(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", "replace")
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", "replace")
    return out


def resolve_env(pod: dict, container: dict, get_object, node_allocatable: dict, base_env: dict) -> dict:
    """The container's environment as the kubelet builds it.

    get_object(kind, namespace, name) returns the ConfigMap ('configMap') or Secret ('secret')
    as a dict, or None when it does not exist. base_env holds the service variables
    (KUBERNETES_SERVICE_HOST, ...), which env values may reference and env entries override.
    """
    ns = pod["metadata"]["namespace"]
    env = dict(base_env)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configMap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(key)
            if ref is None:
                continue
            obj = get_object(kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"{kind} {ref.get('name')!r} not found")
            for k, v in _decode(kind, obj).items():
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(container, vf["resourceFieldRef"], node_allocatable)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind, ref = ("configMap", vf["configMapKeyRef"]) if "configMapKeyRef" in vf else ("secret", vf["secretKeyRef"])
            obj = get_object(kind, ns, ref.get("name", ""))
            data = _decode(kind, obj) if obj is not None else None
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                what = "not found" if data is None else f"has no key {ref.get('key')!r}"
                raise EnvError(f"{kind} {ref.get('name')!r} {what}")
            env[name] = data[ref["key"]]
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(vf)}")
    return env


def expand_command(container: dict, env: dict) -> tuple:
    """(command, args) with $(VAR) expanded against the container's environment."""
    return (
        [expand(c, env) for c in container.get("command") or []],
        [expand(a, env) for a in container.get("args") or []],
    )
