"""Four-letter words, the admin HTTP port, configuration errors and SIGTERM."""
import os
import socket
import struct
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from kazoo.client import KazooClient

from servers import Rivulet, coordinator_bin, four_letter


@pytest.fixture
def srv(tmp_path):
    s = Rivulet(tmp_path).start()
    yield s
    s.stop()


def http(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_four_letter_words(srv):
    c = KazooClient(hosts=srv.hosts)
    c.start(timeout=15)
    c.create("/e", ephemeral=True)
    c.get("/e", watch=lambda e: None)
    assert four_letter(srv.port, "ruok") == "imok"
    srvr = four_letter(srv.port, "srvr")
    for key in ("Zookeeper version:", "Latency min/avg/max:", "Mode: standalone", "Node count: 5",
                "Connections: 1"):
        assert key in srvr, srvr
    assert "Clients:" in four_letter(srv.port, "stat")
    mntr = dict(line.split("\t", 1) for line in four_letter(srv.port, "mntr").splitlines())
    assert mntr["zk_server_state"] == "standalone"
    assert mntr["zk_znode_count"] == "5"
    assert mntr["zk_ephemerals_count"] == "1"
    assert mntr["zk_watch_count"] == "1"
    assert int(mntr["zk_packets_received"]) >= 3
    assert f"clientPort={srv.port}" in four_letter(srv.port, "conf")
    assert f"sid=0x{c.client_id[0]:x}" in four_letter(srv.port, "cons")
    assert "zookeeper.version=" in four_letter(srv.port, "envi")
    # kazoo's own 4lw helper works too
    assert c.command(b"ruok") == "imok"
    c.stop()
    c.close()


def test_admin_port(srv):
    assert http(srv.admin_port, "/healthz")[0] == 200
    assert http(srv.admin_port, "/readyz") == (200, "ready\n")
    c = KazooClient(hosts=srv.hosts)
    c.start(timeout=15)
    c.create("/m")
    c.stop()
    status, body = http(srv.admin_port, "/metrics")
    assert status == 200
    assert 'rivulet_coordinator_requests_total{op="create"} 1' in body, body
    assert "rivulet_coordinator_znodes 5" in body
    assert "rivulet_coordinator_fsync_latency_seconds_count" in body
    assert http(srv.admin_port, "/nope")[0] == 404
    # The four-letter words over HTTP (the README's probe: curl, no netcat needed).
    assert http(srv.admin_port, "/commands/ruok") == (200, "imok\n")
    status, body = http(srv.admin_port, "/commands/mntr")
    assert status == 200 and "zk_znode_count\t5" in body, body
    status, body = http(srv.admin_port, "/commands/nope")
    assert status == 404 and "ruok" in body


@pytest.mark.parametrize("args,env,needle", [
    (["--tick-time-ms", "0"], {}, "--tick-time-ms"),
    (["--min-session-timeout-ms", "9000", "--max-session-timeout-ms", "1000"], {}, "session timeouts"),
    (["--jute-max-buffer", "12"], {}, "--jute-max-buffer"),
    ([], {"RIVULET_COORDINATOR_TICK_TIME_MS": "soon"}, "invalid value"),
    (["--client-addr", "not-an-address"], {}, "binding client port"),
    (["--log-level", "[[["], {}, "--log-level"),
])
def test_bad_config_exits_nonzero(tmp_path, args, env, needle):
    p = subprocess.run([coordinator_bin(), "--data-dir", str(tmp_path / "d"),
                        "--admin-addr", "127.0.0.1:0"] + args,
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert needle in p.stderr, p.stderr


def test_env_vars_configure(tmp_path):
    s = Rivulet(tmp_path, env={"RIVULET_COORDINATOR_MIN_SESSION_TIMEOUT_MS": "5000"})
    s.start()
    try:
        # Ask for 1 s; the env var raises the negotiated timeout to 5 s.
        req = struct.pack("!iqiq", 0, 0, 1000, 0) + struct.pack("!i", 16) + b"\0" * 16 + b"\0"
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(struct.pack("!i", len(req)) + req)
            body = b""
            while len(body) < 4 + 4 + 4 + 8:
                body += sock.recv(64)
        assert struct.unpack_from("!i", body, 8)[0] == 5000
    finally:
        s.stop()


def test_sigterm_is_graceful(srv):
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(10) == 0
