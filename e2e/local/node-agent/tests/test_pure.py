import os

import pytest

from rivagent import backoff, hosts, node, pods, probes, quantity, runtime, storage, volumes


def test_quantities():
    assert quantity.to_bytes("1Gi") == 2**30
    assert quantity.to_bytes("1G") == 10**9
    assert quantity.to_bytes("1.5Mi") == 1572864
    assert quantity.to_bytes("1e3") == 1000
    assert quantity.format_bytes(3 * 2**30) == "3Gi"
    assert quantity.format_bytes(1536 * 2**20) == "1536Mi"
    assert quantity.divide_ceil("250m", "1") == 1
    assert quantity.divide_ceil("1Gi", "1Mi") == 1024
    with pytest.raises(quantity.QuantityError):
        quantity.parse("12 bananas")


def test_backoff_doubles_caps_and_resets():
    b = backoff.Backoff()
    assert [b.next_delay(1) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.next_delay(601) == 10
    assert backoff.should_restart("Always", 0)
    assert backoff.should_restart("OnFailure", 1) and not backoff.should_restart("OnFailure", 0)
    assert not backoff.should_restart("Never", 137)


def test_probe_thresholds():
    t = probes.ProbeTracker("readiness", {"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2,
                                          "successThreshold": 2})
    assert t.reported is False
    assert not t.due(104.9, 100) and t.due(105, 100)
    assert t.observe(True, 105) is False  # 1 of 2 successes
    assert not t.due(106, 100) and t.due(107, 100)
    assert t.observe(True, 107) is True
    assert t.observe(False, 109) is True  # 1 of 2 failures keeps the last report
    assert t.observe(True, 111) is True
    assert t.observe(False, 113) is True
    assert t.observe(False, 115) is False
    live = probes.ProbeTracker("liveness", {"failureThreshold": 3})
    assert live.reported is True
    for _ in range(2):
        live.observe(False, 0)
    assert not live.failed()
    live.observe(False, 0)
    assert live.failed()
    assert probes.ProbeTracker("startup", {}).reported is None


def test_probe_port_resolution():
    c = {"ports": [{"name": "admin", "containerPort": 8080}]}
    assert probes.resolve_port("admin", c) == 8080
    assert probes.resolve_port(9092, c) == 9092
    with pytest.raises(ValueError):
        probes.resolve_port("kafka", c)


def test_real_probes_against_a_local_server():
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        assert probes.http_get("127.0.0.1", {"path": "/ok", "port": port}, {}, 2)[0]
        ok, msg = probes.http_get("127.0.0.1", {"path": "/bad", "port": port}, {}, 2)
        assert not ok and "503" in msg
        assert probes.tcp_socket("127.0.0.1", {"port": port}, {}, 2)[0]
    finally:
        srv.shutdown()
        srv.server_close()
    assert not probes.tcp_socket("127.0.0.1", {"port": port}, {}, 1)[0]


def test_hosts_entries_and_render():
    pods_ = [
        {"metadata": {"name": "k-0", "namespace": "a"}, "spec": {"hostname": "k-0", "subdomain": "k-headless"},
         "status": {"podIP": "10.88.1.2"}},
        {"metadata": {"name": "k-1", "namespace": "a", "deletionTimestamp": "x"},
         "spec": {"hostname": "k-1", "subdomain": "k-headless"}, "status": {"podIP": "10.88.2.2"}},
        {"metadata": {"name": "lonely", "namespace": "a"}, "spec": {}, "status": {"podIP": "10.88.3.9"}},
    ]
    svcs = [{"metadata": {"name": "boot", "namespace": "a"}, "spec": {}},
            {"metadata": {"name": "k-headless", "namespace": "a"}, "spec": {"publishNotReadyAddresses": True}},
            {"metadata": {"name": "boot", "namespace": "b"}, "spec": {}}]
    slices = [
        {"metadata": {"namespace": "a", "labels": {"kubernetes.io/service-name": "boot"}},
         "endpoints": [{"addresses": ["10.88.1.2"], "conditions": {"ready": True}},
                       {"addresses": ["10.88.2.2"], "conditions": {"ready": False}}]},
        {"metadata": {"namespace": "a", "labels": {"kubernetes.io/service-name": "k-headless"}},
         "endpoints": [{"addresses": ["10.88.2.2"], "conditions": {"ready": False}}]},
        {"metadata": {"namespace": "b", "labels": {"kubernetes.io/service-name": "boot"}},
         "endpoints": [{"addresses": ["10.88.3.3"], "conditions": {"ready": True}}]},
    ]
    lines = hosts.entries(pods_, svcs, slices)
    assert ("10.88.1.2", ["k-0.k-headless.a.svc.cluster.local", "k-0.k-headless.a.svc", "k-0.k-headless.a",
                          "k-0.k-headless"]) in lines
    assert not any("k-1" in " ".join(n) for _, n in lines)  # Terminating pods drop out.
    # 'boot' exists in two namespaces: no bare short name; the not-ready endpoint is left out.
    assert ("10.88.1.2", ["boot.a.svc.cluster.local", "boot.a.svc", "boot.a"]) in lines
    assert not any(ip == "10.88.2.2" and n[0].startswith("boot.") for ip, n in lines)
    assert ("10.88.2.2", ["k-headless.a.svc.cluster.local", "k-headless.a.svc", "k-headless.a", "k-headless"]) in lines
    base = "127.0.0.1 localhost\n"
    text = hosts.render(base, lines)
    assert text.startswith(base) and hosts.BEGIN in text
    again = hosts.render(text, lines[:1])  # Re-rendering replaces our block, keeps the host's lines.
    assert again.count(hosts.BEGIN) == 1 and again.startswith(base) and "boot.a" not in again


def test_hosts_write_is_in_place(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("old\n")
    inode = os.stat(p).st_ino
    assert hosts.write_in_place(str(p), "new\n")
    assert not hosts.write_in_place(str(p), "new\n")
    assert p.read_text() == "new\n" and os.stat(p).st_ino == inode


def test_pod_phase():
    assert runtime.pod_phase("Always", False, False, []) == "Pending"
    assert runtime.pod_phase("Always", True, False, [("waiting", 0, False)]) == "Pending"
    assert runtime.pod_phase("Always", True, False, [("running", 0, False)]) == "Running"
    assert runtime.pod_phase("Always", True, False, [("waiting", 1, True)]) == "Running"  # crash loop
    assert runtime.pod_phase("Never", True, False, [("terminated", 0, False)]) == "Succeeded"
    assert runtime.pod_phase("Never", True, False, [("terminated", 3, False), ("terminated", 0, False)]) == "Failed"
    assert runtime.pod_phase("OnFailure", True, False, [("waiting", 3, True)]) == "Running"
    assert runtime.pod_phase("Always", True, True, []) == "Failed"


def test_merge_conditions_keeps_transition_times():
    existing = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "t0"}]
    out = runtime.merge_conditions(existing, {"Ready": "False", "Initialized": "True"}, "t1")
    assert out[0]["lastTransitionTime"] == "t0" and out[1]["lastTransitionTime"] == "t0"
    assert out[2] == {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t1"}
    out = runtime.merge_conditions(existing, {"Ready": "True"}, "t2")
    assert out[1]["status"] == "True" and out[1]["lastTransitionTime"] == "t2"


def test_argv_resolution():
    assert runtime.resolve_argv({}, ["/usr/local/bin/rivulet-coordinator", "-x"], ["--a"], "/b") == \
        ["/b/rivulet-coordinator", "-x", "--a"]
    assert runtime.resolve_argv({"image": "reg.io/x/rivulet-operator:1.2"}, [], ["--log-level=info"], "/b") == \
        ["/b/rivulet-operator", "--log-level=info"]
    assert runtime.resolve_argv({}, ["/bin/sh", "-c", "exit 3"], [], "/b") == ["/bin/sh", "-c", "exit 3"]
    with pytest.raises(runtime.CommandError):
        runtime.resolve_argv({"image": "busybox"}, [], [], "/b")


def test_mount_script_orders_parents_first_and_quotes():
    s = pods.mount_script([("/tmp", "/a/b c", True), ("/tmp", "/a", False)], "/h", "k-0", "/work")
    lines = s.splitlines()
    assert lines.index("mount --bind /tmp /a") < lines.index("mount --bind /tmp '/a/b c'")
    assert "mount -o remount,bind,ro '/a/b c'" in lines
    assert "mount --bind /h /etc/hosts" in lines and lines[-1] == 'exec "$@"'


def test_volume_files():
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"c": "Aw=="}}
    assert volumes.key_files("configMap", "cm", cm, None, False, 0o644) == \
        {"a": (b"1", 0o644), "b": (b"2", 0o644), "c": (b"\x03", 0o644)}
    assert volumes.key_files("configMap", "cm", cm, [{"key": "a", "path": "dir/x", "mode": 0o400}], False, 0o644) == \
        {"dir/x": (b"1", 0o400)}
    assert volumes.key_files("secret", "s", None, None, True, 0o644) == {}
    with pytest.raises(volumes.VolumeError):
        volumes.key_files("secret", "s", None, None, False, 0o644)
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"containers": []}, "status": {}}
    vol = {"name": "kube-api-access", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    calls = []

    def token_for(aud, exp):
        calls.append((aud, exp))
        return "tok"

    files = volumes.source_files(pod, vol, lambda k, ns, n: {"data": {"ca.crt": "CA"}}, token_for, {})
    assert files == {"token": (b"tok", 0o644), "ca.crt": (b"CA", 0o644), "namespace": (b"ns", 0o644)}
    assert calls == [("", 3607)]


def test_write_files_replaces_and_prunes(tmp_path):
    root = str(tmp_path / "v")
    volumes.write_files(root, {"a": (b"1", 0o644), "d/b": (b"2", 0o600)})
    assert open(os.path.join(root, "d/b"), "rb").read() == b"2"
    assert os.stat(os.path.join(root, "d/b")).st_mode & 0o777 == 0o600
    volumes.write_files(root, {"a": (b"3", 0o644)})
    assert open(os.path.join(root, "a"), "rb").read() == b"3"
    assert not os.path.exists(os.path.join(root, "d/b"))
    with pytest.raises(volumes.VolumeError):
        volumes.write_files(root, {"../escape": (b"", 0o644)})


def test_storage_decisions():
    classes = {"rivulet-local": {"metadata": {"name": "rivulet-local"}, "provisioner": storage.PROVISIONER},
               "other": {"metadata": {"name": "other"}, "provisioner": "x"}}
    pvc = {"metadata": {"name": "data-b-0", "namespace": "k", "uid": "abc",
                        "annotations": {storage.SELECTED_NODE: "rivulet-zone-b"}},
           "spec": {"storageClassName": "rivulet-local", "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}},
           "status": {"phase": "Pending"}}
    nodes = {"rivulet-zone-a", "rivulet-zone-b"}
    assert storage.wants_provisioning(pvc, classes, nodes) == "rivulet-zone-b"
    assert storage.wants_provisioning(dict(pvc, spec=dict(pvc["spec"], storageClassName="other")), classes, nodes) is None
    assert storage.wants_provisioning(pvc, classes, {"rivulet-zone-a"}) is None
    pv = storage.pv_for(pvc, classes["rivulet-local"], "rivulet-zone-b")
    assert pv["metadata"]["name"] == "pvc-abc"
    assert pv["spec"]["claimRef"]["uid"] == "abc" and pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["rivulet-zone-b"]
    assert storage.pv_node(pv) == "rivulet-zone-b" and storage.is_ours(pv)
    bound = dict(pvc, status={"phase": "Bound", "capacity": {"storage": "1Gi"}})
    assert storage.resize_target(bound, pv) is None
    grown = dict(bound, spec=dict(pvc["spec"], resources={"requests": {"storage": "2Gi"}}))
    assert storage.resize_target(grown, pv) == 2 * 2**30
    theirs = dict(grown, metadata=dict(pvc["metadata"], annotations={storage.RESIZER_ANNOTATION: "other.csi"}))
    assert storage.resize_target(theirs, pv) is None
    shrunk = dict(grown, spec=dict(pvc["spec"], resources={"requests": {"storage": "512Mi"}}))
    assert storage.resize_target(shrunk, pv) is None
    assert storage.pvc_status_current(bound, pv)
    pv2 = dict(pv, spec=dict(pv["spec"], capacity={"storage": "2Gi"}))
    assert not storage.pvc_status_current(bound, pv2)


def test_offline_resize_decisions():
    assert storage.resize_mode({"parameters": {"resize": "offline"}}) == "offline"
    assert storage.resize_mode({"parameters": {"resize": "Online"}}) == "online"
    assert storage.resize_mode({"metadata": {"name": "x"}}) == "online"
    assert storage.resize_mode(None) == "online"
    with pytest.raises(ValueError, match="not online or offline"):
        storage.resize_mode({"parameters": {"resize": "later"}})
    pv = {"spec": {"capacity": {"storage": "96Mi"}}}
    assert storage.offline_grow_due(pv, 64 * 2**20) == 96 * 2**20
    assert storage.offline_grow_due(pv, 96 * 2**20) is None
    assert storage.offline_grow_due({"spec": {}}, 0) is None


def test_node_status_keeps_transition_times():
    spec = node.NodeSpec(2, "zone-b", "10.88.0.1", "8", "32Gi", "110", "1000")
    assert spec.name == "rivulet-zone-b" and spec.pod_cidr == "10.88.2.0/24"
    assert spec.labels()["topology.kubernetes.io/zone"] == "zone-b"
    st = spec.status("v1.37.2")
    ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True"
    old = [dict(ready, lastTransitionTime="then")]
    merged = node.status_patch(old, st["conditions"])
    assert [c for c in merged if c["type"] == "Ready"][0]["lastTransitionTime"] == "then"


def test_pod_ips_are_not_reused_at_once():
    from rivagent.agent import next_free_host

    # Goes on after the last address given out (host-local IPAM), skipping used ones, wrapping.
    assert next_free_host(1, set()) == 2
    assert next_free_host(3, {2}) == 4
    assert next_free_host(3, {4, 5}) == 6
    assert next_free_host(254, set()) == 2
    assert next_free_host(253, {254, 2}) == 3
    assert next_free_host(5, set(range(2, 255))) is None
    assert next_free_host(5, set(range(2, 255)) - {5}) == 5
