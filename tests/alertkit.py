"""What a supervisor :class:`~alerting.watch.Watcher` shows, collected for tests."""

from __future__ import annotations

import threading


class Shown:
    """The verdicts a watch shows, in order; :meth:`wait_for` waits on a Condition for a
    count (an upper bound for a loaded machine, never a sleep)."""

    def __init__(self) -> None:
        self.verdicts: list = []
        self.cond = threading.Condition()

    def __call__(self, verdict) -> None:
        with self.cond:
            self.verdicts.append(verdict)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.verdicts) >= n, timeout), (
                f"only {len(self.verdicts)} of {n} alerts shown: {self.verdicts}"
            )
            return list(self.verdicts)
