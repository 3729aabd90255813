"""Pod volumes as files: configMap, secret, downwardAPI and projected (with service-account
tokens from the TokenRequest API) are computed as {relative path: (bytes, mode)} (pure) and
written into a per-pod directory; emptyDir is a directory; a PVC is its PV's tmpfs."""

import base64
import os
import time

from . import envexp, storage
from .api import ApiError, core

DEFAULT_MODE = 0o644
# The kubelet refreshes a projected token when 80 % of its lifetime has passed.
REFRESH_FRACTION = 0.8


class VolumeError(Exception):
    """A volume that cannot be set up yet (missing object, unbound claim)."""


def _key_bytes(kind: str, obj: dict) -> dict:
    out = {}
    if kind == "configMap":
        for k, v in (obj.get("data") or {}).items():
            out[k] = v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v)
    return out


def key_files(kind: str, name: str, obj, items, optional: bool, default_mode: int) -> dict:
    """Files of a configMap or secret source: every key, or just `items` (key -> path, mode)."""
    if obj is None:
        if optional:
            return {}
        raise VolumeError(f"{kind} {name!r} not found")
    data = _key_bytes(kind, obj)
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    files = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"{kind} {name!r} has no key {it['key']!r}")
        files[it["path"]] = (data[it["key"]], it.get("mode", default_mode))
    return files


def downward_files(pod: dict, items: list, default_mode: int, node_allocatable: dict) -> dict:
    files = {}
    containers = {c["name"]: c for c in pod["spec"].get("containers") or []}
    for it in items or []:
        mode = it.get("mode", default_mode)
        if "fieldRef" in it:
            value = envexp.field_value(pod, it["fieldRef"]["fieldPath"])
        else:
            ref = it["resourceFieldRef"]
            value = envexp.resource_value(containers.get(ref.get("containerName"), {}), ref, node_allocatable)
        files[it["path"]] = (value.encode(), mode)
    return files


def source_files(pod: dict, vol: dict, get_object, token_for, node_allocatable: dict) -> dict:
    """Files of one file-backed volume. get_object(kind, ns, name) -> dict|None;
    token_for(audience, expiration_seconds) -> token text."""
    ns = pod["metadata"]["namespace"]
    if "configMap" in vol:
        src = vol["configMap"]
        name = src.get("name", "")
        return key_files("configMap", name, get_object("configMap", ns, name), src.get("items"),
                         src.get("optional", False), src.get("defaultMode", DEFAULT_MODE))
    if "secret" in vol:
        src = vol["secret"]
        name = src.get("secretName", "")
        return key_files("secret", name, get_object("secret", ns, name), src.get("items"),
                         src.get("optional", False), src.get("defaultMode", DEFAULT_MODE))
    if "downwardAPI" in vol:
        src = vol["downwardAPI"]
        return downward_files(pod, src.get("items"), src.get("defaultMode", DEFAULT_MODE), node_allocatable)
    if "projected" in vol:
        proj = vol["projected"]
        mode = proj.get("defaultMode", DEFAULT_MODE)
        files = {}
        for s in proj.get("sources") or []:
            if "configMap" in s:
                c = s["configMap"]
                files.update(key_files("configMap", c.get("name", ""), get_object("configMap", ns, c.get("name", "")),
                                       c.get("items"), c.get("optional", False), mode))
            elif "secret" in s:
                c = s["secret"]
                files.update(key_files("secret", c.get("name", ""), get_object("secret", ns, c.get("name", "")),
                                       c.get("items"), c.get("optional", False), mode))
            elif "downwardAPI" in s:
                files.update(downward_files(pod, s["downwardAPI"].get("items"), mode, node_allocatable))
            elif "serviceAccountToken" in s:
                t = s["serviceAccountToken"]
                token = token_for(t.get("audience", ""), int(t.get("expirationSeconds", 3600)))
                files[t["path"]] = (token.encode(), mode)
            else:
                raise VolumeError(f"unsupported projected source {sorted(s)}")
        return files
    raise VolumeError(f"unsupported volume type in {sorted(vol)}")


FILE_BACKED = ("configMap", "secret", "downwardAPI", "projected")


def write_files(root: str, files: dict):
    """Make `root` hold exactly `files` (atomic per file: write then rename inside root)."""
    os.makedirs(root, exist_ok=True)
    wanted = set()
    for rel, (data, mode) in files.items():
        rel = os.path.normpath(rel)
        if rel.startswith("..") or os.path.isabs(rel):
            raise VolumeError(f"path {rel!r} leaves the volume")
        wanted.add(rel)
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "rb") as f:
                same = f.read() == data
            if same and (os.stat(path).st_mode & 0o7777) == mode:
                continue
        except OSError:
            pass
        tmp = path + ".rivk8s-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    for dirpath, _, names in os.walk(root):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if rel not in wanted:
                os.unlink(os.path.join(dirpath, n))


class PodVolumes:
    """The host directories of one pod's volumes, kept up to date (tokens refreshed,
    ConfigMap/Secret changes written) by calling sync() now and then."""

    def __init__(self, api, pod: dict, root: str, pv_dir: str, node_allocatable: dict):
        self.api = api
        self.pod = pod
        self.root = root
        self.pv_dir = pv_dir
        self.node_allocatable = node_allocatable
        self.paths = {}
        self._tokens = {}  # (audience, expiration) -> (token, refresh_at)

    def _get_object(self, kind, ns, name):
        return self.api.get_or_none(core(ns, "configmaps" if kind == "configMap" else "secrets", name))

    def _token_for(self, audience: str, expiration: int) -> str:
        key = (audience, expiration)
        cached = self._tokens.get(key)
        if cached and time.time() < cached[1]:
            return cached[0]
        meta, spec = self.pod["metadata"], self.pod["spec"]
        sa = spec.get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}
        if audience:
            body["spec"]["audiences"] = [audience]
        try:
            resp = self.api.create(core(meta["namespace"], "serviceaccounts", sa, "token"), body)
        except ApiError as e:
            raise VolumeError(f"token for serviceaccount {sa!r}: {e}") from e
        token = resp["status"]["token"]
        self._tokens[key] = (token, time.time() + REFRESH_FRACTION * expiration)
        return token

    def sync(self):
        """Sets up (or refreshes) every volume; raises VolumeError while one cannot be."""
        ns = self.pod["metadata"]["namespace"]
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            if "emptyDir" in vol:
                path = os.path.join(self.root, name)
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o777)
            elif "persistentVolumeClaim" in vol:
                if name in self.paths:
                    continue
                claim = vol["persistentVolumeClaim"]["claimName"]
                pvc = self.api.get_or_none(core(ns, "persistentvolumeclaims", claim))
                if pvc is None:
                    raise VolumeError(f"persistentvolumeclaim {claim!r} not found")
                pv = (pvc.get("spec") or {}).get("volumeName")
                if not pv or (pvc.get("status") or {}).get("phase") != "Bound":
                    raise VolumeError(f"persistentvolumeclaim {claim!r} is not bound")
                path = os.path.join(self.pv_dir, pv)
                if not os.path.ismount(path):
                    raise VolumeError(f"volume {pv!r} is not mounted on this node yet")
                storage.grow_pending_on_start(self.api, self.pv_dir, pvc, pv)
            elif "hostPath" in vol:
                path = vol["hostPath"]["path"]
                if vol["hostPath"].get("type") in ("DirectoryOrCreate",):
                    os.makedirs(path, exist_ok=True)
            elif any(k in vol for k in FILE_BACKED):
                path = os.path.join(self.root, name)
                files = source_files(self.pod, vol, self._get_object, self._token_for, self.node_allocatable)
                write_files(path, files)
            else:
                raise VolumeError(f"volume {name!r}: unsupported type {sorted(k for k in vol if k != 'name')}")
            self.paths[name] = path
