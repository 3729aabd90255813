"""Pods as local processes: one network namespace per pod (veth to the bridge), one mount and
UTS namespace per container in which the pod's volumes are bind-mounted at their mountPaths;
init containers in order, then the app containers with probes and restarts; graceful stop."""

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

from . import envexp, probes, runtime, volumes
from .api import ApiError, core
from .backoff import Backoff, should_restart
from .node import now_rfc3339

log = logging.getLogger("pods")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POLL = 0.2


def _sh(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def mount_script(mounts: list, hosts_file: str, hostname, workdir: str, resolv_file: str = "") -> str:
    """The shell run inside the container's fresh mount namespace before exec (pure).
    mounts: (source, target, read_only), parents before children."""
    lines = ["set -e"]
    if hostname:
        lines.append(f"hostname {shlex.quote(hostname)}")
    for src, dst, ro in sorted(mounts, key=lambda m: m[1].count("/")):
        q_src, q_dst = shlex.quote(src), shlex.quote(dst)
        if os.path.isdir(src):
            lines.append(f"mkdir -p {q_dst}")
        else:
            lines.append(f"mkdir -p {shlex.quote(os.path.dirname(dst) or '/')}; [ -e {q_dst} ] || : > {q_dst}")
        lines.append(f"mount --bind {q_src} {q_dst}")
        if ro:
            lines.append(f"mount -o remount,bind,ro {q_dst}")
    if hosts_file:
        lines.append(f"mount --bind {shlex.quote(hosts_file)} /etc/hosts")
    if resolv_file:
        lines.append(f"mount --bind {shlex.quote(resolv_file)} /etc/resolv.conf")
    lines.append(f"cd {shlex.quote(workdir or '/')}")
    lines.append('exec "$@"')
    return "\n".join(lines)


class ContainerRunner(threading.Thread):
    """Runs one container (start, probes, restarts); `stop(deadline)` ends it gracefully."""

    def __init__(self, pod_rt, spec: dict, init: bool):
        super().__init__(name=f"{pod_rt.key}/{spec['name']}", daemon=True)
        self.pod_rt = pod_rt
        self.spec = spec
        self.init = init
        self.state = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.proc = None
        self.env = {}
        self.exit_code = None
        self.finished = False
        self._halt = threading.Event()
        self.deadline = None
        self._killed_reason = None
        self.backoff = Backoff(pod_rt.agent.backoff_base)

    # -- control --------------------------------------------------------------------------------
    def stop(self, deadline: float):
        self.deadline = deadline
        self._halt.set()

    def restart_policy(self) -> str:
        pol = self.pod_rt.pod["spec"].get("restartPolicy", "Always")
        if self.init:
            return "Never" if pol == "Never" else "OnFailure"
        return pol

    def run(self):
        try:
            self._loop()
        except Exception as e:  # A runner must never die silently: report it on the pod.
            log.exception("container %s failed in the agent", self.name)
            self.state = {"terminated": {"exitCode": 128, "reason": "AgentError", "message": str(e)[:500],
                                         "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}}
            self.exit_code = 128
        finally:
            self.finished = True

    def _loop(self):
        while not self._halt.is_set():
            try:
                self.env = self.pod_rt.container_env(self.spec)
                command, args = envexp.expand_command(self.spec, self.env)
                argv = runtime.resolve_argv(self.spec, command, args, self.pod_rt.agent.bin_dir)
            except (envexp.EnvError, runtime.CommandError, ApiError) as e:
                self.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)[:500]}}
                self._halt.wait(2)
                continue
            started_at = time.time()
            self._start(argv)
            code = self._supervise(started_at)
            if code is None:
                return  # Stopped (pod deletion or agent exit); _terminate recorded the state.
            self.exit_code = code
            term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "startedAt": _ts(started_at), "finishedAt": now_rfc3339(),
                    "containerID": self._container_id()}
            if code > 128:
                term["signal"] = code - 128
            if self._killed_reason:
                term["message"] = self._killed_reason
            self.ready = self.started = False
            if not should_restart(self.restart_policy(), code):
                self.state = {"terminated": term}
                return
            delay = self.backoff.next_delay(time.time() - started_at)
            self.last_state = {"terminated": term}
            self.restart_count += 1
            msg = f"back-off {delay:g}s restarting failed container={self.spec['name']} pod={self.pod_rt.key}"
            self.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
            log.info("container %s exited %d; restart %d in %gs", self.name, code, self.restart_count, delay)
            if self._halt.wait(delay):
                return

    def _container_id(self) -> str:
        return f"rivulet://{self.pod_rt.uid[:8]}-{self.spec['name']}-{self.restart_count}"

    def _start(self, argv: list):
        rt = self.pod_rt
        mounts = rt.container_mounts(self.spec)
        host_net = rt.pod["spec"].get("hostNetwork", False)
        hostname = None if host_net else rt.hostname()
        script = mount_script(mounts, rt.agent.hosts_file, hostname, self.spec.get("workingDir") or "/",
                              "" if host_net else rt.agent.resolv_file)
        ns_cmd = ["unshare", "-m", "--propagation", "private"] + ([] if host_net else ["-u"])
        cmd = ns_cmd + ["--", "/bin/sh", "-c", script, "rivk8s-container"] + argv
        if not host_net:
            cmd = ["ip", "netns", "exec", rt.netns] + cmd
        env = dict(self.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOSTNAME", hostname or os.uname().nodename)
        os.makedirs(rt.log_dir, exist_ok=True)
        logf = open(os.path.join(rt.log_dir, f"{self.spec['name']}.log"), "ab")
        try:
            # Its own session: SIGTERM/SIGKILL go to the whole process group.
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        finally:
            logf.close()
        self._killed_reason = None
        self.state = {"running": {"startedAt": now_rfc3339()}}
        log.info("started container %s pid %d: %s", self.name, self.proc.pid, " ".join(argv))

    def _supervise(self, started_at: float):
        """Waits for the process, running probes; returns its exit code, or None when stopped."""
        spec = self.spec
        trackers = {k: probes.ProbeTracker(k, spec[f"{k}Probe"]) for k in ("startup", "liveness", "readiness")
                    if spec.get(f"{k}Probe") and not self.init}
        self.started = "startup" not in trackers
        self.ready = self.started and "readiness" not in trackers and not self.init
        while True:
            if self._halt.is_set():
                self._terminate()
                return None
            code = self.proc.poll()
            if code is not None:
                return code if code >= 0 else 128 - code
            now = time.time()
            for kind, tr in trackers.items():
                if kind != "startup" and not self.started:
                    continue
                if kind == "startup" and self.started:
                    continue
                if not tr.due(now, started_at):
                    continue
                ok, msg = probes.run_probe(tr.spec, self.pod_rt.pod_ip, spec, self.proc.pid, self.env)
                result = tr.observe(ok, time.time())
                if not ok:
                    log.info("%s probe of %s failed (%d/%d): %s", kind, self.name, tr.run, tr.failure_threshold, msg)
                if kind == "startup" and result:
                    self.started = True
                    self.ready = "readiness" not in trackers
                elif kind == "readiness":
                    self.ready = bool(result)
                if tr.failed():
                    self._killed_reason = f"Container {spec['name']} failed {kind} probe, will be restarted"
                    log.info(self._killed_reason + " (pod %s)", self.pod_rt.key)
                    self._kill_gracefully(time.time() + self.pod_rt.grace_seconds())
                    code = self.proc.wait()
                    return code if code >= 0 else 128 - code
            self._halt.wait(POLL)

    def _kill_gracefully(self, deadline: float):
        self._pre_stop(deadline)
        _signal_group(self.proc, signal.SIGTERM)
        while self.proc.poll() is None and time.time() < deadline:
            time.sleep(POLL)
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGKILL)
        self.proc.wait()
        # Stragglers in the group (children that ignored SIGTERM).
        _signal_group(self.proc, signal.SIGKILL)

    def _pre_stop(self, deadline: float):
        hook = ((self.spec.get("lifecycle") or {}).get("preStop")) or {}
        if not hook or self.proc.poll() is not None:
            return
        budget = max(0.0, deadline - time.time())
        try:
            if "exec" in hook:
                probes.exec_in(self.proc.pid, hook["exec"].get("command") or [], self.env, budget)
            elif "httpGet" in hook:
                probes.http_get(self.pod_rt.pod_ip, hook["httpGet"], self.spec, budget)
            elif "sleep" in hook:
                time.sleep(min(budget, float(hook["sleep"].get("seconds", 0))))
        except Exception as e:  # A failing hook does not stop the kill, as in the kubelet.
            log.info("preStop hook of %s failed: %s", self.name, e)

    def _terminate(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        started = self.state.get("running", {}).get("startedAt", now_rfc3339())
        self._kill_gracefully(self.deadline or time.time())
        code = self.proc.returncode
        code = code if code >= 0 else 128 - code
        self.exit_code = code
        self.ready = False
        self.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                     "startedAt": started, "finishedAt": now_rfc3339(),
                                     "containerID": self._container_id()}}

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        st = {"name": self.spec["name"], "image": self.spec.get("image", ""),
              "imageID": "rivulet-process://" + self.spec.get("image", ""),
              "ready": bool(self.ready), "started": bool(self.started and "running" in self.state),
              "restartCount": self.restart_count, "state": self.state, "lastState": self.last_state}
        if "running" in self.state or "terminated" in self.state:
            st["containerID"] = self._container_id()
        return st


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class PodRuntime(threading.Thread):
    def __init__(self, agent, node, pod: dict):
        meta = pod["metadata"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.node = node
        self.pod = pod
        self.uid = meta["uid"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.netns = f"rivk8s-{self.uid[:8]}"
        self.veth = f"rvh{self.uid[:8]}"
        self.pod_ip = None
        self.log_dir = os.path.join(agent.state_dir, node.spec.name, "pods", f"{meta['namespace']}_{meta['name']}")
        self.vol_root = os.path.join(agent.state_dir, node.spec.name, "volumes", self.uid)
        self.volumes = None
        self.init_runners = []
        self.runners = []
        self.init_done = False
        self.init_failed = False
        self.waiting_reason = ("ContainerCreating", "")
        self.start_time = now_rfc3339()
        self.stopping = threading.Event()
        self.stop_deadline = None
        self.finished = False
        self._last_status = None
        self._net_ready = False

    # -- API of the agent -------------------------------------------------------------------------
    def request_stop(self, grace: float):
        deadline = time.time() + max(0.0, grace)
        if self.stop_deadline is None or deadline < self.stop_deadline:
            self.stop_deadline = deadline
        self.stopping.set()

    def grace_seconds(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def hostname(self) -> str:
        return (self.pod["spec"].get("hostname") or self.pod["metadata"]["name"])[:63]

    # -- pieces ---------------------------------------------------------------------------------
    def _pod_view(self) -> dict:
        """The pod as the downward API sees it: with our IPs, which may not be in the API yet."""
        p = dict(self.pod)
        st = dict(p.get("status") or {})
        if self.pod_ip:
            st["podIP"] = self.pod_ip
            st["podIPs"] = [{"ip": self.pod_ip}]
        st["hostIP"] = self.node.spec.host_ip
        st["hostIPs"] = [{"ip": self.node.spec.host_ip}]
        p["status"] = st
        return p

    def container_env(self, spec: dict) -> dict:
        base = {
            "KUBERNETES_SERVICE_HOST": self.agent.apiserver_host,
            "KUBERNETES_SERVICE_PORT": str(self.agent.apiserver_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.apiserver_port),
            "KUBERNETES_PORT": f"tcp://{self.agent.apiserver_host}:{self.agent.apiserver_port}",
        }

        def get_object(kind, ns, name):
            return self.agent.api.get_or_none(core(ns, "configmaps" if kind == "configMap" else "secrets", name))

        return envexp.resolve_env(self._pod_view(), spec, get_object, self.node.spec.capacity, base)

    def container_mounts(self, spec: dict) -> list:
        out = []
        vols = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        for m in spec.get("volumeMounts") or []:
            src = self.volumes.paths[m["name"]]
            sub = m.get("subPath") or ""
            if sub:
                src = os.path.join(src, sub)
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            v = vols.get(m["name"], {})
            ro = bool(m.get("readOnly")) or any(k in v for k in volumes.FILE_BACKED)
            out.append((src, m["mountPath"], ro))
        return out

    def _setup_network(self):
        if self.pod["spec"].get("hostNetwork"):
            self.pod_ip = self.node.spec.host_ip
            return
        self.pod_ip = self.node.allocate_ip(self.uid)
        _sh("ip", "netns", "del", self.netns, check=False)
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _sh("ip", "link", "set", self.veth, "master", self.agent.bridge, "up")
        _sh("ip", "-n", self.netns, "addr", "add", f"{self.pod_ip}/16", "dev", "eth0")
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        _sh("ip", "-n", self.netns, "route", "add", "default", "via", self.agent.gateway)
        log.info("pod %s: netns %s, ip %s", self.key, self.netns, self.pod_ip)

    def _teardown(self):
        if not self.pod["spec"].get("hostNetwork"):
            # Kill anything still in the namespace (a child that left the process group).
            r = _sh("ip", "netns", "pids", self.netns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _sh("ip", "netns", "del", self.netns, check=False)
            _sh("ip", "link", "del", self.veth, check=False)
        self.node.release_ip(self.uid)
        shutil.rmtree(self.vol_root, ignore_errors=True)

    # -- status ---------------------------------------------------------------------------------
    def build_status(self) -> dict:
        spec = self.pod["spec"]
        app = [r.status() for r in self.runners] if self.runners else [
            _waiting_status(c, *self.waiting_reason) for c in spec.get("containers") or []]
        init = []
        for i, c in enumerate(spec.get("initContainers") or []):
            if i < len(self.init_runners):
                init.append(self.init_runners[i].status())
            else:
                init.append(_waiting_status(c, "PodInitializing", ""))
        states = []
        for r in self.runners:
            kind = next(iter(r.state))
            code = r.exit_code if r.exit_code is not None else 0
            if kind == "waiting" and r.last_state:
                code = r.last_state["terminated"]["exitCode"]
            states.append((kind, code, bool(r.last_state)))
        if not self.runners:
            states = [("waiting", 0, False)] * len(spec.get("containers") or [])
        phase = runtime.pod_phase(spec.get("restartPolicy", "Always"), self.init_done, self.init_failed, states)
        containers_ready = bool(self.runners) and all(r.ready for r in self.runners)
        ours = {
            "PodReadyToStartContainers": "True" if self._net_ready else "False",
            "Initialized": "True" if self.init_done else "False",
            "ContainersReady": "True" if containers_ready else "False",
            "Ready": "True" if containers_ready else "False",
        }
        st = {
            "phase": phase,
            "conditions": runtime.merge_conditions((self.pod.get("status") or {}).get("conditions"), ours, now_rfc3339()),
            "hostIP": self.node.spec.host_ip,
            "hostIPs": [{"ip": self.node.spec.host_ip}],
            "startTime": self.start_time,
            "containerStatuses": app,
        }
        if init:
            st["initContainerStatuses"] = init
        if self.pod_ip:
            st["podIP"] = self.pod_ip
            st["podIPs"] = [{"ip": self.pod_ip}]
        return st

    def publish(self):
        st = self.build_status()
        comparable = _strip_times(st)
        if comparable == self._last_status:
            return
        meta = self.pod["metadata"]
        try:
            # Strategic merge (as the kubelet): conditions merge by type, so another writer's
            # condition (DisruptionTarget, readiness gates) survives; metadata.uid is a precondition.
            out = self.agent.api.strategic_patch(core(meta["namespace"], "pods", meta["name"], "status"),
                                                 {"metadata": {"uid": self.uid}, "status": st})
            self.pod["status"] = out.get("status", st)
            self._last_status = comparable
        except ApiError as e:
            if e.status in (404, 409):
                return  # Gone or replaced: the agent's loop stops us.
            log.warning("pod %s: status update failed: %s", self.key, e)

    # -- lifecycle ------------------------------------------------------------------------------
    def run(self):
        try:
            self._run()
        except Exception:
            log.exception("pod %s: agent error", self.key)
            self.stopping.wait()
        finally:
            self._stop_all()
            try:
                self._teardown()
            except Exception:
                log.exception("pod %s: teardown", self.key)
            self.finished = True
            log.info("pod %s stopped", self.key)

    def _run(self):
        self.publish()
        self._setup_network()
        self._net_ready = True
        self.volumes = volumes.PodVolumes(self.agent.api, self._pod_view(), self.vol_root, self.agent.pv_dir,
                                          self.node.spec.capacity)
        while not self.stopping.is_set():
            try:
                self.volumes.pod = self._pod_view()
                self.volumes.sync()
                break
            except (volumes.VolumeError, envexp.EnvError, ApiError) as e:
                self.waiting_reason = ("ContainerCreating", str(e)[:500])
                self.publish()
                self.stopping.wait(1)
        if self.stopping.is_set():
            return
        for c in self.pod["spec"].get("initContainers") or []:
            r = ContainerRunner(self, c, init=True)
            self.init_runners.append(r)
            r.start()
            while not r.finished and not self.stopping.is_set():
                self.publish()
                self.stopping.wait(0.5)
            if self.stopping.is_set():
                return
            if r.exit_code != 0:
                self.init_failed = True
                self.publish()
                self.stopping.wait()
                return
        self.init_done = True
        self.runners = [ContainerRunner(self, c, init=False) for c in self.pod["spec"].get("containers") or []]
        for r in self.runners:
            r.start()
        next_sync = time.time() + 30
        while not self.stopping.is_set():
            self.publish()
            if time.time() >= next_sync:
                next_sync = time.time() + 30
                try:
                    self.volumes.pod = self._pod_view()
                    self.volumes.sync()  # Token refresh, ConfigMap/Secret updates.
                except Exception as e:
                    log.info("pod %s: volume refresh: %s", self.key, e)
            self.stopping.wait(0.5)

    def _stop_all(self):
        deadline = self.stop_deadline or time.time()
        for r in self.init_runners + self.runners:
            r.stop(deadline)
        for r in self.init_runners + self.runners:
            if r.is_alive():
                r.join()


def _waiting_status(c: dict, reason: str, message: str) -> dict:
    w = {"reason": reason}
    if message:
        w["message"] = message
    return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"waiting": w}, "lastState": {}}


def _strip_times(st: dict) -> dict:
    """Status without condition timestamps, to tell whether anything changed."""
    s = dict(st)
    s["conditions"] = [{k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
                       for c in st.get("conditions") or []]
    return s
