"""Thin helpers around the real kubectl and helm CLIs of the local bed (.k8s/env puts them first
on PATH). Everything goes through the CLIs on purpose: the suite checks what a user would see."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
NS = os.environ.get("E2E_NAMESPACE", "e2e")


class CommandError(RuntimeError):
    def __init__(self, argv: list[str], rc: int, out: str, err: str):
        super().__init__(f"{' '.join(argv)} exited {rc}\nstdout: {out[-2000:]}\nstderr: {err[-4000:]}")
        self.rc, self.out, self.err = rc, out, err


def run(argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and p.returncode != 0:
        raise CommandError(argv, p.returncode, p.stdout, p.stderr)
    return p


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 300) -> str:
    return run(["kubectl", *args], input=input, check=check, timeout=timeout).stdout


def kubectl_json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json"))


def helm(*args: str, timeout: float = 600) -> str:
    return run(["helm", *args], timeout=timeout).stdout


def wait_for(what: str, pred, timeout: float = 300, interval: float = 2.0):
    """Polls `pred` until it returns a truthy value; raises with the last value (or error) seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
            last = got
        except Exception as e:  # the API server may be busy; keep the last reason for the message
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def condition(obj: dict, ctype: str) -> dict | None:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            return c
    return None


def is_ready(kind: str, name: str, ns: str = NS) -> bool:
    obj = kubectl_json("get", kind, name, "-n", ns)
    c = condition(obj, "Ready")
    gen_ok = obj.get("status", {}).get("observedGeneration", obj["metadata"].get("generation")) == obj["metadata"].get("generation")
    return bool(c and c.get("status") == "True" and gen_ok)


def events(ns: str, involved: str | None = None) -> list[dict]:
    items = kubectl_json("get", "events", "-n", ns)["items"]
    if involved:
        items = [e for e in items if e.get("involvedObject", {}).get("name") == involved]
    return items
