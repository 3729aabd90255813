"""Runs a scenario (YAML data) through kazoo against one server and returns a
normalised transcript. The same scenario against Apache ZooKeeper and against
rivulet-coordinator must give equal transcripts."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from kazoo.client import KazooClient
from kazoo.protocol.serialization import Create, Create2, SetData
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import ACL, OPEN_ACL_UNSAFE, Id, make_digest_acl

import zkext

EVENT_NAMES = {1: "created", 2: "deleted", 3: "changed", 4: "child"}
CONTAINER = -(1 << 63)


def reconnect_retry():
    """kazoo's default reconnect backoff doubles without bound (0.1 s x 2^n, each step
    also scaled by a random +-40% jitter that compounds), so while a slow JVM restarts
    Apache ZooKeeper a client's next attempt can land more than its session timeout after
    the server came back; ZooKeeper then rightly expires the session and its ephemerals,
    and the transcript depends on luck. Capping the delay keeps reconnects within ~0.7 s
    of the server being ready, as any deployment that wants to keep its sessions does."""
    return KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=0.5)


def load(path):
    return yaml.safe_load(Path(path).read_text())


def _acls(spec):
    out = []
    for a in spec or []:
        if "digest" in a:
            user, pw = a["digest"].split(":", 1)
            out.append(make_digest_acl(user, pw, **{p: True for p in a.get("perms", ["all"])}))
        else:
            out.append(ACL(a["perms"], Id(a["scheme"], a["id"])))
    return out or None


def _value(step):
    """The step's value as bytes; `value: null` in the scenario is ZooKeeper's null
    data (length -1 on the wire), which kazoo's high-level API refuses to send."""
    if "value" in step and step["value"] is None:
        return None
    return step.get("value", "").encode()


def _flags(mode):
    return (1 if mode.startswith("ephemeral") else 0) | (2 if mode.endswith("sequential") else 0)


class Run:
    def __init__(self, server):
        self.server = server
        self.clients = {}
        self.spawned = {}
        self.transcript = []

    # ---- recording -------------------------------------------------------
    def norm(self, v):
        if isinstance(v, ZnodeStat):
            return {"stat": dict(v._asdict())}
        if isinstance(v, Exception):
            return {"error": type(v).__name__}
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, ACL):
            return [v.perms, v.id.scheme, v.id.id]
        if isinstance(v, tuple) and hasattr(v, "_asdict") and not isinstance(v, ZnodeStat):
            return {k: self.norm(x) for k, x in v._asdict().items()}
        if isinstance(v, (list, tuple)):
            return [self.norm(x) for x in v]
        return v

    def record(self, i, step, result):
        self.transcript.append({"step": i, "op": step["op"], "result": self.norm(result)})

    # ---- ops ---------------------------------------------------------------
    def client(self, step):
        return self.clients[step.get("c", "a")]

    def op_connect(self, s):
        kw = {"timeout": s.get("timeout", 4.0), "connection_retry": reconnect_retry()}
        # The same server listed twice: kazoo waits session_timeout / len(hosts) for a
        # connect reply. Apache ZooKeeper 3.8 binds its port before loading its database,
        # and a connection accepted in that window is neither answered nor closed (its
        # close() hits a NullPointerException on the not-yet-loaded database). With one
        # entry, a client reconnecting into that window after a restart waits a whole
        # session timeout and finds its session expired; with two, it gives up after half
        # and retries the next (same) entry while the session is still alive.
        c = KazooClient(hosts=[self.server.hosts] * 2, **kw)
        c.start(timeout=15)
        zkext.tap_events(c)
        for cred in s.get("auth", []):
            c.add_auth("digest", cred)
        self.clients[s["c"]] = c
        return "connected"

    def op_close(self, s):
        c = self.clients.pop(s["c"])
        c.stop()
        c.close()
        return "closed"

    def op_create(self, s):
        c = self.client(s)
        value = _value(s)
        acl = _acls(s.get("acl"))
        mode = s.get("mode", "persistent")
        if mode in ("container", "ttl", "ttl_sequential"):
            acl = acl or c.default_acl or OPEN_ACL_UNSAFE
            if mode == "container":
                req = zkext.CreateContainer(s["path"], value, acl, 4)
            else:
                flags = 5 if mode == "ttl" else 6
                req = zkext.CreateTTL(s["path"], value, acl, flags, s.get("ttl", 1000))
            return zkext.call(c, req)
        if value is None:
            acl = acl or c.default_acl or OPEN_ACL_UNSAFE
            kind = Create2 if s.get("include_data", True) else Create
            return zkext.call(c, kind(s["path"], None, acl, _flags(mode)))
        res = c.create(s["path"], value, acl=acl, ephemeral=mode.startswith("ephemeral"),
                       sequence=mode.endswith("sequential"), include_data=s.get("include_data", True))
        return res

    def op_get(self, s):
        return self.client(s).get(s["path"], watch=(lambda e: None) if s.get("watch") else None)

    def op_set(self, s):
        value = _value(s)
        if value is None:
            return zkext.call(self.client(s), SetData(s["path"], None, s.get("version", -1)))
        return self.client(s).set(s["path"], value, version=s.get("version", -1))

    def op_delete(self, s):
        return self.client(s).delete(s["path"], version=s.get("version", -1))

    def op_exists(self, s):
        return self.client(s).exists(s["path"], watch=(lambda e: None) if s.get("watch") else None)

    def op_children(self, s):
        r = self.client(s).get_children(s["path"], watch=(lambda e: None) if s.get("watch") else None,
                                        include_data=s.get("include_data", False))
        if isinstance(r, tuple):
            return (sorted(r[0]), r[1])
        return sorted(r)

    def op_get_acls(self, s):
        return self.client(s).get_acls(s["path"])

    def op_set_acls(self, s):
        return self.client(s).set_acls(s["path"], _acls(s["acl"]), version=s.get("version", -1))

    def op_add_auth(self, s):
        self.client(s).add_auth("digest", s["cred"])
        return "ok"

    def op_sync(self, s):
        return self.client(s).sync(s["path"])

    def op_multi(self, s):
        t = self.client(s).transaction()
        for o in s["ops"]:
            kind = o["kind"]
            if kind == "create":
                mode = o.get("mode", "persistent")
                if _value(o) is None:  # kazoo's transaction refuses None: add the raw request
                    t._add(Create(o["path"], None, OPEN_ACL_UNSAFE, _flags(mode)))
                    continue
                t.create(o["path"], _value(o), ephemeral=mode.startswith("ephemeral"),
                         sequence=mode.endswith("sequential"))
            elif kind == "delete":
                t.delete(o["path"], version=o.get("version", -1))
            elif kind == "set":
                if _value(o) is None:
                    t._add(SetData(o["path"], None, o.get("version", -1)))
                    continue
                t.set_data(o["path"], _value(o), version=o.get("version", -1))
            elif kind == "check":
                t.check(o["path"], o["version"])
        return t.commit()

    def op_multi_read(self, s):
        return zkext.call(self.client(s), zkext.MultiRead([tuple(x) for x in s["ops"]]))

    def op_add_watch(self, s):
        mode = {"persistent": 0, "recursive": 1}[s["mode"]]
        return zkext.call(self.client(s), zkext.AddWatch(s["path"], mode))

    def op_remove_watches(self, s):
        return zkext.call(self.client(s), zkext.RemoveWatches(s["path"], s["kind"]))

    def op_check_watches(self, s):
        return zkext.call(self.client(s), zkext.CheckWatches(s["path"], s["kind"]))

    def op_ephemerals(self, s):
        return zkext.call(self.client(s), zkext.GetEphemerals(s.get("prefix", "/")))

    def op_all_children_number(self, s):
        return zkext.call(self.client(s), zkext.GetAllChildrenNumber(s["path"]))

    def op_events(self, s):
        """Waits for at least `count` notifications (bounded), lets stragglers arrive,
        then records and clears this client's notifications."""
        c = self.client(s)
        end = time.time() + s.get("timeout", 10)
        with c.raw_cond:
            while len(c.raw_events) < s.get("count", 0) and time.time() < end:
                c.raw_cond.wait(0.05)
        time.sleep(s.get("settle", 0.3))
        with c.raw_cond:
            evs = [[EVENT_NAMES.get(t, t), p] for t, p in c.raw_events]
            c.raw_events.clear()
        return evs

    def op_spawn_ephemeral(self, s):
        """A client in another process that owns an ephemeral node; kill_spawned
        ends that process with SIGKILL so its session can only expire."""
        code = ("import sys,time\nfrom kazoo.client import KazooClient\n"
                f"c=KazooClient(hosts='{self.server.hosts}',timeout={s.get('timeout', 1.0)})\n"
                "c.start(timeout=15)\n"
                f"c.create('{s['path']}', b'', ephemeral=True)\n"
                "print('ready',flush=True)\ntime.sleep(120)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().strip()
        self.spawned[s["name"]] = p
        return line

    def op_kill_spawned(self, s):
        p = self.spawned.pop(s["name"])
        p.kill()
        p.wait(5)
        return "killed"

    def op_wait_gone(self, s):
        c = self.client(s)
        end = time.time() + s.get("timeout", 15)
        while time.time() < end:
            if c.exists(s["path"]) is None:
                return "gone"
            time.sleep(0.1)
        return "still-there"

    def op_restart(self, s):
        """Restarts the server (graceful stop, same port and data) and waits until every
        client has seen its connection drop and has connected again. Records per client
        whether it got its old session back (ephemerals kept) or a new one (expired)."""
        dropped = {}
        listeners = {}
        sessions = {}
        for name, c in self.clients.items():
            ev = dropped[name] = threading.Event()

            def on_state(state, ev=ev):
                if state != KazooState.CONNECTED:
                    ev.set()

            # Wait for the drop itself: right after stop() a client may not have
            # noticed yet and still report connected=True.
            c.add_listener(on_state)
            listeners[name] = on_state
            sessions[name] = c.client_id[0]
        self.server.stop()
        self.server.start()
        end = time.time() + 20
        out = {}
        for name, c in sorted(self.clients.items()):
            while not (dropped[name].is_set() and c.connected) and time.time() < end:
                time.sleep(0.05)
            c.remove_listener(listeners[name])
            cid = c.client_id if dropped[name].is_set() else None  # None while not connected
            if cid is None:
                out[name] = "not-reconnected"
            elif cid[0] == sessions[name]:
                out[name] = "same-session"
            else:
                out[name] = "new-session"
        return out

    def op_sleep(self, s):
        time.sleep(s["seconds"])
        return None

    # ---- driver ------------------------------------------------------------
    def run(self, scenario):
        try:
            for i, step in enumerate(scenario["steps"]):
                fn = getattr(self, "op_" + step["op"])
                try:
                    result = fn(step)
                except Exception as e:  # the error class is part of the transcript
                    result = e
                self.record(i, step, result)
        finally:
            for p in self.spawned.values():
                p.kill()
                p.wait(5)
            for c in self.clients.values():
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass
        return normalise(self.transcript, {n: c for n, c in []})


def normalise(transcript, _sessions):
    """Replaces values that legitimately differ between servers: absolute zxids
    become their rank among the zxids seen, times become whether mtime >= ctime,
    session ids in ephemeralOwner become 'session'."""
    zxids = set()

    def walk(v, fn):
        if isinstance(v, dict):
            if "stat" in v and isinstance(v["stat"], dict):
                fn(v["stat"])
            for x in v.values():
                walk(x, fn)
        elif isinstance(v, list):
            for x in v:
                walk(x, fn)

    def collect(st):
        for k in ("czxid", "mzxid", "pzxid"):
            if st[k]:
                zxids.add(st[k])

    for t in transcript:
        walk(t, collect)
    rank = {z: i + 1 for i, z in enumerate(sorted(zxids))}

    def fix(st):
        if "ctime" not in st:
            return
        for k in ("czxid", "mzxid", "pzxid"):
            st[k] = f"z{rank[st[k]]}" if st[k] else 0
        st["mtime>=ctime"] = st.pop("mtime") >= st.pop("ctime")
        o = st["ephemeralOwner"]
        if o == CONTAINER:
            st["ephemeralOwner"] = "container"
        elif o < 0 and (o >> 56) & 0xff == 0xff:
            st["ephemeralOwner"] = f"ttl:{o & 0xffffffffff}"
        elif o:
            st["ephemeralOwner"] = "session"

    for t in transcript:
        walk(t, fix)
    return transcript
