"""The node agent against a real control plane (run by `make test-node-agent-bed`, which brings
the bed up and down): nodes, a zone-spread StatefulSet with tmpfs PVs, restarts, live volume
growth, the API server refusing growth in the fixed class, service-account tokens, deletion."""

import json
import os
import subprocess
import time
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
STATE = os.path.join(REPO, ".k8s")
NS = "agent-bed"
MI = 2**20


def kubectl(*args, stdin=None, check=True):
    r = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r


def get(kind, name="", ns=NS):
    args = ["get", kind] + ([name] if name else []) + (["-n", ns] if ns else []) + ["-o", "json"]
    return json.loads(kubectl(*args).stdout)


def wait_for(what, fn, timeout=120, every=1.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, KeyError, IndexError, ValueError) as e:
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def apply(doc: dict):
    kubectl("apply", "-f", "-", stdin=json.dumps(doc))


@pytest.fixture(scope="module", autouse=True)
def namespace():
    assert os.environ.get("KUBECONFIG"), "source .k8s/env first"
    kubectl("create", "namespace", NS, check=False)
    yield
    kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_three_ready_zone_nodes_with_leases():
    nodes = get("nodes", ns="")["items"]
    zones = {n["metadata"]["labels"].get("topology.kubernetes.io/zone"): n for n in nodes}
    assert set(zones) >= {"zone-a", "zone-b", "zone-c"}
    for z, n in zones.items():
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "True", (z, ready)
        assert n["status"]["allocatable"]["pods"] == "110"

    def untainted():
        # The node lifecycle controller lifts the not-ready taint once it sees the Ready heartbeats.
        return all(not any(t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints") or [])
                   for n in get("nodes", ns="")["items"])

    wait_for("the not-ready taints to go", untainted, timeout=60)
    lease = get("lease", "rivulet-zone-a", ns="kube-node-lease")
    first = lease["spec"]["renewTime"]
    wait_for("a lease renewal", lambda: get("lease", "rivulet-zone-a", ns="kube-node-lease")["spec"]["renewTime"] != first,
             timeout=30)


WEB = {
    "apiVersion": "apps/v1", "kind": "StatefulSet",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {
        "replicas": 3, "serviceName": "web", "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "web"}}}]}},
                "containers": [{
                    "name": "web", "image": "python:3",
                    "command": ["/bin/sh", "-c"],
                    "args": ["echo \"$POD_NAME $ZONE_HINT\" > /data/whoami; "
                             "trap 'echo term > /data/terminated; exit 0' TERM; "
                             "/usr/bin/python3 -m http.server 8080 --directory /data & wait"],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "ZONE_HINT", "value": "on-$(POD_NAME)"}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/whoami", "port": "http"}, "periodSeconds": 2},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
            },
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}],
    },
}


def web_pods():
    items = json.loads(kubectl("get", "pods", "-n", NS, "-l", "app=web", "-o", "json").stdout)["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def all_ready(pods, n):
    return len(pods) == n and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []) for p in pods)


def http(ip, path, timeout=5):
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=timeout) as r:
        return r.read().decode()


def test_statefulset_spreads_over_zones_with_tmpfs_volumes():
    apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
           "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}})
    apply(WEB)
    pods = wait_for("3 ready web pods", lambda: (lambda ps: ps if all_ready(ps, 3) else None)(web_pods()), timeout=180)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert nodes == {"rivulet-zone-a", "rivulet-zone-b", "rivulet-zone-c"}
    for p in pods:
        name, ip = p["metadata"]["name"], p["status"]["podIP"]
        assert http(ip, "/whoami").strip() == f"{name} on-{name}"  # env, $(VAR), volume, pod IP, netns
        pvc = get("pvc", f"data-{name}")
        assert pvc["status"]["phase"] == "Bound"
        pv = get("pv", pvc["spec"]["volumeName"], ns="")
        assert pv["spec"]["csi"]["driver"] == "tmpfs.rivulet.dev"
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == [p["spec"]["nodeName"]]
        st = os.statvfs(os.path.join(STATE, "volumes", pv["metadata"]["name"]))
        assert st.f_blocks * st.f_frsize == 16 * MI
    # Names: the pod's stable DNS name and the Service name, through .k8s/exec.
    out = subprocess.run([os.path.join(STATE, "exec"), "getent", "hosts", f"web-1.web.{NS}.svc.cluster.local"],
                         capture_output=True, text=True, timeout=30).stdout
    assert pods[1]["status"]["podIP"] in out
    # The agent rewrites the hosts file on its own loop: wait until every ready pod is listed.
    ips = {p["status"]["podIP"] for p in pods}
    wait_for("the Service name resolving to every pod", lambda: (lambda out: out if ips <= set(out.split()) else None)(
        subprocess.run([os.path.join(STATE, "exec"), "getent", "ahosts", f"web.{NS}.svc"], capture_output=True,
                       text=True, timeout=30).stdout), timeout=60)


def test_pvc_growth_is_live_and_fixed_class_is_refused():
    pod = get("pod", "web-0")
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    pv_name = get("pvc", "data-web-0")["spec"]["volumeName"]
    vol = os.path.join(STATE, "volumes", pv_name)
    big = os.path.join(vol, "big")
    with pytest.raises(OSError) as e:
        with open(big, "wb") as f:
            f.write(b"\0" * (20 * MI))
    assert e.value.errno == 28  # ENOSPC: a 16Mi claim really holds 16Mi.
    os.unlink(big)
    kubectl("patch", "pvc", "data-web-0", "-n", NS, "-p", '{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}')
    pvc = wait_for("the claim's new capacity",
                   lambda: (lambda c: c if c["status"].get("capacity", {}).get("storage") == "32Mi" else None)(
                       get("pvc", "data-web-0")), timeout=60)
    assert not [c for c in pvc["status"].get("conditions") or [] if c["type"] in ("Resizing", "FileSystemResizePending")]
    # kube-controller-manager's expand controller left it to an external resizer, as for any CSI driver.
    events = json.loads(kubectl("get", "events", "-n", NS, "--field-selector",
                                "involvedObject.name=data-web-0,reason=ExternalExpanding", "-o", "json").stdout)
    assert any("waiting for an external controller" in e["message"] for e in events["items"]), events
    assert get("pv", pv_name, ns="")["spec"]["capacity"]["storage"] == "32Mi"
    st = os.statvfs(vol)
    assert st.f_blocks * st.f_frsize == 32 * MI
    with open(big, "wb") as f:
        f.write(b"x" * (20 * MI))
    assert len(http(get("pod", "web-0")["status"]["podIP"], "/big", timeout=20)) == 20 * MI  # The pod sees it.
    os.unlink(big)
    assert get("pod", "web-0")["status"]["containerStatuses"][0]["restartCount"] == restarts

    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "fixed", "namespace": NS},
           "spec": {"storageClassName": "rivulet-local-fixed", "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "8Mi"}}}})
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fixed-user", "namespace": NS},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "x", "command": ["/bin/sleep", "3600"],
                                    "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                    "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "fixed"}}]}})
    wait_for("the fixed claim bound", lambda: get("pvc", "fixed")["status"].get("phase") == "Bound", timeout=90)
    r = kubectl("patch", "pvc", "fixed", "-n", NS, "-p", '{"spec":{"resources":{"requests":{"storage":"16Mi"}}}}',
                check=False)
    assert r.returncode != 0
    refusal = "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
    assert refusal in r.stderr


def test_exited_process_is_restarted_with_counts():
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher", "namespace": NS},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "x", "command": ["/bin/sh", "-c", "sleep 1; exit 3"]}]}})

    def restarted():
        cs = get("pod", "crasher")["status"]["containerStatuses"][0]
        return cs if cs["restartCount"] >= 1 and cs["lastState"].get("terminated") else None

    cs = wait_for("a restart", restarted, timeout=60)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    log = os.path.join(STATE, "nodes", get("pod", "crasher")["spec"]["nodeName"], "pods", f"{NS}_crasher", "c.log")
    assert os.path.exists(log)


def test_service_account_token_reaches_the_api_server():
    script = ("import json,os,ssl,urllib.request as u\n"
              "d='/var/run/secrets/kubernetes.io/serviceaccount/'\n"
              "t=open(d+'token').read(); ns=open(d+'namespace').read()\n"
              "c=ssl.create_default_context(cafile=d+'ca.crt')\n"
              "h=os.environ['KUBERNETES_SERVICE_HOST']; p=os.environ['KUBERNETES_SERVICE_PORT']\n"
              "r=u.Request(f'https://{h}:{p}/apis/authentication.k8s.io/v1/selfsubjectreviews', method='POST',"
              " data=b'{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}',"
              " headers={'Authorization':'Bearer '+t,'Content-Type':'application/json'})\n"
              "print(json.load(u.urlopen(r,context=c))['status']['userInfo']['username'], ns)\n")
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa-check", "namespace": NS},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "x", "command": ["/usr/bin/python3", "-c", script]}]}})
    pod = wait_for("sa-check to finish", lambda: (lambda p: p if p["status"].get("phase") in ("Succeeded", "Failed")
                                                  else None)(get("pod", "sa-check")), timeout=60)
    log = open(os.path.join(STATE, "nodes", pod["spec"]["nodeName"], "pods", f"{NS}_sa-check", "c.log")).read()
    assert pod["status"]["phase"] == "Succeeded", log
    assert f"system:serviceaccount:{NS}:default {NS}" in log


def test_deletion_sends_sigterm_and_removes_the_pod():
    pod = get("pod", "web-2")
    uid = pod["metadata"]["uid"]
    vol = os.path.join(STATE, "volumes", get("pvc", "data-web-2")["spec"]["volumeName"])
    kubectl("delete", "pod", "web-2", "-n", NS, "--wait=true", "--timeout=60s")
    assert open(os.path.join(vol, "terminated")).read().strip() == "term"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"rivk8s-{uid[:8]}" not in netns
    # The StatefulSet controller brings web-2 back on the same volume (its node via the PV).
    new = wait_for("web-2 again", lambda: (lambda p: p if p["metadata"]["uid"] != uid and all_ready([p], 1) else None)(
        get("pod", "web-2")), timeout=120)
    assert new["spec"]["nodeName"] == pod["spec"]["nodeName"]


def test_init_container_then_liveness_restart():
    apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": NS},
           "spec": {"terminationGracePeriodSeconds": 2,
                    "initContainers": [{"name": "init", "image": "x", "command": ["/bin/sh", "-c", "echo $(MSG) > /w/init"],
                                        "env": [{"name": "MSG", "value": "from-init"}],
                                        "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
                    "containers": [{"name": "c", "image": "x",
                                    "command": ["/bin/sh", "-c", "cat /w/init >> /w/seen; exec sleep 3600"],
                                    "livenessProbe": {"exec": {"command": ["/bin/sh", "-c", "test ! -e /w/die"]},
                                                      "periodSeconds": 1, "failureThreshold": 2},
                                    "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
                    "volumes": [{"name": "w", "emptyDir": {}}]}})
    pod = wait_for("probed running", lambda: (lambda p: p if p["status"].get("phase") == "Running" and all_ready([p], 1)
                                              else None)(get("pod", "probed")), timeout=60)
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    w = os.path.join(STATE, "nodes", pod["spec"]["nodeName"], "volumes", pod["metadata"]["uid"], "w")
    assert open(os.path.join(w, "seen")).read() == "from-init\n"
    open(os.path.join(w, "die"), "w").close()
    cs = wait_for("a liveness restart", lambda: (lambda c: c if c["restartCount"] >= 1 else None)(
        get("pod", "probed")["status"]["containerStatuses"][0]), timeout=30)
    assert "liveness" in cs["lastState"]["terminated"].get("message", "")
    os.unlink(os.path.join(w, "die"))
    wait_for("the restarted container", lambda: open(os.path.join(w, "seen")).read() == "from-init\nfrom-init\n",
             timeout=40)
