"""A small Kubernetes API client over HTTPS (standard library), authenticated by the
kubeconfig's client certificate. One persistent connection per thread."""

import base64
import http.client
import json
import logging
import os
import ssl
import tempfile
import threading
import urllib.parse

import yaml

log = logging.getLogger("api")


class ApiError(Exception):
    def __init__(self, status: int, body, method: str, path: str):
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: {status} {msg}")


def _material(entry: dict, key: str, tmpdir: str, name: str):
    """A kubeconfig credential as a file path (inline *-data written to a private file)."""
    if entry.get(key + "-data"):
        path = os.path.join(tmpdir, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(entry[key + "-data"]))
        os.chmod(path, 0o600)
        return path
    return entry.get(key)


class Client:
    def __init__(self, kubeconfig: str):
        with open(kubeconfig, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        url = urllib.parse.urlparse(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        self._tmp = tempfile.mkdtemp(prefix="rivk8s-agent-")
        self.ssl = ssl.create_default_context(cafile=_material(cluster, "certificate-authority", self._tmp, "ca.crt"))
        cert = _material(user, "client-certificate", self._tmp, "client.crt")
        key = _material(user, "client-key", self._tmp, "client.key")
        if cert and key:
            self.ssl.load_cert_chain(cert, key)
        self.token = user.get("token")
        self._local = threading.local()

    def _conn(self, fresh=False):
        c = getattr(self._local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=30)
            self._local.conn = c
        return c

    def request(self, method: str, path: str, body=None, content_type="application/json", params=None):
        if params:
            path = path + "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the server closed: retry once on a fresh one.
                if attempt:
                    raise
        try:
            out = json.loads(raw) if raw else {}
        except ValueError:
            out = raw.decode("utf-8", "replace")
        if resp.status >= 400:
            raise ApiError(resp.status, out, method, path)
        return out

    # Conveniences -------------------------------------------------------------------------
    def get(self, path, params=None):
        return self.request("GET", path, params=params)

    def get_or_none(self, path):
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path, body):
        return self.request("POST", path, body)

    def merge_patch(self, path, body):
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def strategic_patch(self, path, body):
        return self.request("PATCH", path, body, "application/strategic-merge-patch+json")

    def delete(self, path, body=None):
        return self.request("DELETE", path, body)

    def items(self, path, params=None):
        return self.get(path, params).get("items") or []


def core(ns: str, resource: str, name: str = "", sub: str = "") -> str:
    """/api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]] (ns empty: cluster-scoped)."""
    p = "/api/v1" + (f"/namespaces/{ns}" if ns else "") + f"/{resource}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p
