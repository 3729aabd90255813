"""Durability: kill -9 under acknowledged writes loses nothing; sessions and their
ephemerals survive a quick restart; a corrupted log tail is truncated; snapshots
plus log replay restore the tree."""
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from servers import Rivulet


def kz(srv, timeout=10.0):
    c = KazooClient(hosts=srv.hosts, timeout=timeout)
    c.start(timeout=15)
    return c


def test_kill9_under_acknowledged_creates(tmp_path):
    srv = Rivulet(tmp_path).start()
    setup = kz(srv)
    setup.create("/d")
    setup.stop()
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def writer(w):
        c = KazooClient(hosts=srv.hosts, timeout=10.0, connection_retry={"max_tries": 0})
        c.start(timeout=15)
        i = 0
        while not stop.is_set():
            path = f"/d/w{w}-{i}"
            try:
                # Bounded: a request cut off by the kill must not block the writer.
                c.create_async(path, b"x" * 100).get(timeout=10)
            except Exception:
                break  # the server is gone: stop, this create was not acknowledged
            with lock:
                acked.append(path)
            i += 1
        try:
            c.stop()
            c.close()
        except Exception:
            pass

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 50, "too few acknowledged creates to mean anything"
    srv.start()
    c = kz(srv)
    present = set(c.get_children("/d"))
    missing = [p for p in acked if p.rsplit("/", 1)[1] not in present]
    c.stop()
    srv.stop()
    assert not missing, f"{len(missing)} acknowledged nodes lost, e.g. {missing[:5]}"


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_session_and_ephemeral_survive_quick_restart(tmp_path, how):
    srv = Rivulet(tmp_path).start()
    owner = kz(srv, timeout=10.0)
    sid = owner.client_id[0]
    owner.create("/member", b"me", ephemeral=True)
    states = []
    owner.add_listener(states.append)
    srv.stop() if how == "sigterm" else srv.kill9()
    srv.start()  # same port and data dir
    end = time.time() + 20
    while time.time() < end and not (states and states[-1] == KazooState.CONNECTED):
        time.sleep(0.05)
    assert states and states[-1] == KazooState.CONNECTED, states
    assert owner.client_id[0] == sid
    other = kz(srv)
    stat = other.exists("/member")
    assert stat is not None and stat.ephemeralOwner == sid
    owner.stop()
    owner.close()
    end = time.time() + 10
    while other.exists("/member") is not None and time.time() < end:
        time.sleep(0.05)
    assert other.exists("/member") is None
    other.stop()
    srv.stop()


def test_corrupted_log_tail_is_truncated(tmp_path):
    srv = Rivulet(tmp_path).start()
    c = kz(srv)
    for i in range(20):
        c.create(f"/n{i}", str(i).encode())
    c.stop()
    srv.stop()
    logs = sorted(srv.data_dir.glob("log.*"))
    size = logs[-1].stat().st_size
    with open(logs[-1], "ab") as f:
        f.write(b"\x00\x00\x00\x40garbage-that-is-not-a-record")
    srv.start()
    c = kz(srv)
    assert all(c.get(f"/n{i}")[0] == str(i).encode() for i in range(20))
    c.create("/after", b"ok")
    c.stop()
    srv.stop()
    assert logs[-1].stat().st_size > size  # truncated, then appended to again
    log = (tmp_path / "rivulet.log").read_text()
    assert "truncating torn log tail" in log
    srv.start()
    c = kz(srv)
    assert c.get("/after")[0] == b"ok"
    c.stop()
    srv.stop()


def test_snapshots_and_replay(tmp_path):
    srv = Rivulet(tmp_path, extra=["--snapshot-every-txns", "50"]).start()
    c = kz(srv)
    c.create("/s")
    for i in range(230):
        c.create(f"/s/{i}", b"v")
    c.set("/s/7", b"changed")
    c.delete("/s/8")
    c.stop()
    srv.kill9()
    snaps = sorted(srv.data_dir.glob("snapshot.*"))
    assert 1 <= len(snaps) <= 3, snaps  # old ones are purged
    srv.start()
    c = kz(srv)
    kids = c.get_children("/s")
    assert len(kids) == 229 and "8" not in kids
    assert c.get("/s/7")[0] == b"changed"
    c.stop()
    srv.stop()
