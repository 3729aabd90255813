"""ZooKeeper's own Java CLI (org.apache.zookeeper.ZooKeeperMain from Debian's
libzookeeper-java) runs a script of commands against rivulet-coordinator."""
import subprocess
from pathlib import Path

import pytest

from servers import JAVA_DIR, Rivulet, zk_classpath

SCRIPT = Path(__file__).parent / "data" / "zkcli-script.txt"


@pytest.fixture
def rivulet(tmp_path):
    srv = Rivulet(tmp_path).start()
    yield srv
    srv.stop()


def test_cli_script(rivulet):
    cp = zk_classpath().replace(str(JAVA_DIR / "slf4j-simple.jar"), str(JAVA_DIR / "slf4j-nop.jar"))
    out = subprocess.run(["java", "-cp", cp, "org.apache.zookeeper.ZooKeeperMain",
                          "-server", rivulet.hosts],
                         stdin=SCRIPT.open(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=120)
    text = out.stdout
    assert out.returncode == 0, text
    expected = [
        "Created /cli\n",
        "Created /cli/seq-0000000000\n",
        "Created /cli/eph\n",
        "Created /cli/cont\n",
        "Created /cli/ttl\n",
        "[cont, eph, seq-0000000000, ttl]\n",
        "numChildren = 4\n",
        "version No is not valid : /cli\n",
        "dataVersion = 1\n",
        "[/cli/eph]\n",
        "Created /cli/secret\n",
        "'digest,'u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ=\n: cdrwa\n",
        "Sync is OK\n",
        "Node not empty: /cli\n",
        "type:NodeDeleted path:/cli\n",
        "[zookeeper]\n",
        "digest: u\n",
    ]
    pos = 0
    for e in expected:
        i = text.find(e, pos)
        assert i >= 0, f"missing {e!r} after offset {pos} in CLI output:\n{text}"
        pos = i + len(e)
    assert "Exception" not in text, text
