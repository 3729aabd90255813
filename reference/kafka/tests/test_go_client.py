"""franz-go (kgo + kadm, pinned in ../go/go.mod) against Rivulet's 3-broker cluster, and the same
tests against Apache Kafka's (a test that fails there is a wrong test). `go test` runs in the
module ../go with its modules from GOMODCACHE (install.sh downloads them)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent.parent / "go"
TESTS = {"TestIdempotentProducer", "TestCompression", "TestGroupCooperativeSticky", "TestAdminTopics",
         "TestAdminConfigs", "TestCreatePartitions", "TestDescribeLogDirs", "TestReassignment",
         "TestOffsetsForTimes", "TestDeleteRecords", "TestACLs"}


def run_go(cluster) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": cluster.bootstrap, "KAFKA_BROKERS": str(len(cluster.brokers)),
           "GOFLAGS": "-mod=readonly"}
    p = subprocess.run(["go", "test", "-count=1", "-v", "-timeout", "420s", "./..."], cwd=GO_DIR, env=env,
                       capture_output=True, text=True, timeout=480)
    out = p.stdout + p.stderr
    print(out[-20000:])
    results = dict((m.group(2), m.group(1)) for m in re.finditer(r"^--- (PASS|FAIL|SKIP): (\w+) ", out, re.M))
    failed = sorted(t for t, s in results.items() if s == "FAIL")
    assert p.returncode == 0 and not failed, f"go test failed ({failed}):\n{out[-8000:]}"
    assert set(results) == TESTS, f"go tests run {sorted(results)} differ from {sorted(TESTS)}"
    skipped = sorted(t for t, s in results.items() if s == "SKIP")
    assert skipped == ["TestACLs"], f"unexpected skips {skipped}:\n{out[-4000:]}"


def test_go_client_rivulet(rivulet):
    run_go(rivulet)


def test_go_client_kafka(kafka):
    run_go(kafka)
