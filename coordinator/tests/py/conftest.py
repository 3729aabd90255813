import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

TEST_LIMIT_S = 240


@pytest.fixture(autouse=True)
def _bounded_test():
    """No test may hang the suite: a blocking client call that never returns fails
    the test after TEST_LIMIT_S (pytest's faulthandler dumps the stacks first)."""
    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_LIMIT_S}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
