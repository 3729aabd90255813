"""Container restart back-off (pure), after the kubelet's: 10 s doubling to 5 min; a container
that ran for 10 min without exiting starts again from the base."""

BASE_SECONDS = 10.0
MAX_SECONDS = 300.0
RESET_AFTER_SECONDS = 600.0


class Backoff:
    def __init__(self, base: float = BASE_SECONDS, cap: float = MAX_SECONDS, reset_after: float = RESET_AFTER_SECONDS):
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.current = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next start of a container that exited after running `ran_for` s."""
        if ran_for >= self.reset_after or self.current == 0.0:
            self.current = self.base
        else:
            self.current = min(self.current * 2, self.cap)
        return self.current


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """Whether an exited app container is started again under the pod's restartPolicy."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False
