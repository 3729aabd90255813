"""Conformance: every scenario in scenarios/ runs through kazoo against Apache
ZooKeeper 3.8 and against rivulet-coordinator; the normalised transcripts must be
equal."""
import difflib
import json
from pathlib import Path

import pytest

import runner
from servers import ApacheZK, Rivulet

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_transcripts_agree(scenario, tmp_path):
    sc = runner.load(scenario)
    transcripts = {}
    for cls in (ApacheZK, Rivulet):
        # A scenario may pass flags to rivulet-coordinator (e.g. frequent snapshots, so
        # that a restart reloads state from a snapshot and not only from the log).
        kw = {"extra": sc.get("rivulet_args", [])} if cls is Rivulet else {}
        srv = cls(tmp_path / cls.name, **kw).start()
        try:
            transcripts[cls.name] = runner.Run(srv).run(sc)
        finally:
            srv.stop()
    want = [json.dumps(t, sort_keys=True) for t in transcripts["zookeeper"]]
    got = [json.dumps(t, sort_keys=True) for t in transcripts["rivulet"]]
    (tmp_path / "zookeeper.json").write_text("\n".join(want))
    (tmp_path / "rivulet.json").write_text("\n".join(got))
    if want != got:
        diff = "\n".join(difflib.unified_diff(want, got, "zookeeper", "rivulet", lineterm="", n=1))
        pytest.fail(f"transcripts differ for {scenario.stem}:\n{diff}")
