#!/usr/bin/env python3
"""Rivulet's node agent for the local Kubernetes bed: three zone nodes that run their pods as
local processes (see README.md beside this file)."""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rivagent.agent import Agent, install_signals  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--state-dir", required=True, help="per-node pod logs and volumes; agent.pid")
    p.add_argument("--bin-dir", required=True, help="rivulet-broker, rivulet-coordinator, rivulet-operator")
    p.add_argument("--zones", default="zone-a,zone-b,zone-c")
    p.add_argument("--bridge", default="rivk8s0")
    p.add_argument("--apiserver-host", default="10.88.0.1", help="also the pods' default gateway and node IP")
    p.add_argument("--apiserver-port", type=int, default=6443)
    p.add_argument("--ca", help="cluster CA (the kubeconfig's is used; kept for the interface)")
    p.add_argument("--hosts-file", help="the cluster's hosts file, rewritten in place")
    p.add_argument("--volumes-dir", help="PV tmpfs mounts (default: <state-dir>/../volumes)")
    p.add_argument("--node-cpu", default="8", help="declared (not enforced) cpu of each node")
    p.add_argument("--node-memory", default="32Gi", help="declared (not enforced) memory of each node")
    p.add_argument("--node-pods", default="110")
    p.add_argument("--restart-backoff", type=float, default=10.0, help="first restart back-off, seconds")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    if os.geteuid() != 0:
        logging.error("the node agent needs root (network namespaces, mounts)")
        return 1
    agent = Agent(args)
    install_signals(agent)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
