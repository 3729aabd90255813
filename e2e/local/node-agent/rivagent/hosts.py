"""The cluster's hosts file (pure generation; in-place write because it is bind-mounted)."""

import os

BEGIN = "# --- rivulet-k8s: pods and Services (written by the node agent) ---"
END = "# --- end rivulet-k8s ---"
DOMAIN = "cluster.local"


def _names(short: str, ns: str) -> list:
    return [f"{short}.{ns}.svc.{DOMAIN}", f"{short}.{ns}.svc", f"{short}.{ns}", short]


def entries(pods: list, services: list, endpointslices: list) -> list:
    """(ip, [names]) lines for pods with hostname+subdomain and for Services with endpoints.

    A Service resolves to the pod IPs of its endpoints that are ready, or to all of them when
    the Service publishes not-ready addresses (the headless broker/coordinator Services do).
    Short names (without the namespace) are only written when unambiguous across namespaces.
    """
    lines = []  # (ip, namespace, short name)
    svc_by_key = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    for p in pods:
        meta, spec, status = p["metadata"], p.get("spec", {}), p.get("status", {})
        ip = status.get("podIP")
        sub = spec.get("subdomain")
        if not ip or not sub or meta.get("deletionTimestamp"):
            continue
        host = spec.get("hostname") or meta["name"]
        lines.append((ip, meta["namespace"], f"{host}.{sub}"))
    ips_of = {}
    for es in endpointslices:
        ns = es["metadata"]["namespace"]
        svc_name = (es["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        svc = svc_by_key.get((ns, svc_name))
        if svc is None:
            continue
        publish = (svc.get("spec") or {}).get("publishNotReadyAddresses", False)
        for ep in es.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready", False)
            if ready or publish:
                for ip in ep.get("addresses") or []:
                    ips_of.setdefault((ns, svc_name), set()).add(ip)
    for (ns, name), ips in sorted(ips_of.items()):
        lines.extend((ip, ns, name) for ip in sorted(ips))
    # A bare short name is only written when one namespace uses it.
    namespaces_of = {}
    for _, ns, short in lines:
        namespaces_of.setdefault(short, set()).add(ns)
    out = []
    for ip, ns, short in lines:
        names = _names(short, ns)
        if len(namespaces_of[short]) > 1:
            names = names[:-1]
        out.append((ip, names))
    return out


def render(base: str, lines: list) -> str:
    """The host's own lines (anything outside our block) followed by our block."""
    kept = []
    inside = False
    for line in base.splitlines():
        if line == BEGIN:
            inside = True
            continue
        if line == END:
            inside = False
            continue
        if not inside:
            kept.append(line)
    block = [BEGIN] + [f"{ip}\t{' '.join(names)}" for ip, names in lines] + [END]
    return "\n".join(kept + block) + "\n"


def write_in_place(path: str, text: str) -> bool:
    """Truncate and rewrite (never rename: bind mounts hold the inode). True when it changed."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.truncate(0)
        f.write(text)
    return True
