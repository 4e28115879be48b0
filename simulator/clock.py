"""The simulator's clock: simulated UTC and monotonic time that can outrun real time.

A :class:`SimClock` is the one time source of a simulated unit (journal stamps, camera
timestamps, battery drain, fault schedule, the dock setting the RTC). It has two modes:

``SimClock(speed=None)`` -- *as fast as possible* (the default).
    Time stands still until someone advances it. The running camera is the *driver*: it
    advances the clock by one frame period per frame (``advance_to``), so a shift runs as
    fast as frames can be encoded. When no driver is registered, a thread that calls
    :meth:`sleep` / :meth:`sleep_until` advances the clock itself to its deadline (the
    earliest pending deadline first, stopping at each ``at()`` timer on the way), like a
    discrete-event simulation: e.g. after the camera has stopped, the dock phase still
    sees time pass.
``SimClock(speed=N)`` -- *paced*: simulated time runs N times faster than real time
    (``speed=1`` is real time). ``advance`` still jumps ahead instantly.

Public API (all methods thread-safe):

- ``time_ns()`` simulated UTC, ``monotonic_ns()`` simulated monotonic (both ns);
  ``time()`` / ``monotonic()`` in float seconds.
- ``set_time_ns(utc_ns)`` moves UTC only (what the dock does to the RTC); monotonic
  time and every waiter are unaffected.
- ``advance(ns)`` / ``advance_to(mono_ns)`` move simulated time forward and wake waiters.
- ``sleep(seconds)`` / ``sleep_until(mono_ns)`` block until simulated time gets there.
- ``wait_until(mono_ns, timeout=None)`` -> bool: like ``sleep_until`` but gives up after
  ``timeout`` *real* seconds, or when ``cancel`` (a threading.Event) is set.
- ``wait_event(event, seconds)`` -> bool: wait for ``event`` for at most ``seconds`` of
  *simulated* time (returns ``event.is_set()``): the simulated ``Event.wait(timeout)``.
- ``waiters`` / ``wait_for_waiters(n, timeout)``: how many threads wait on the clock.
- ``driving()``: context manager that registers the caller as a driver (the camera uses it).
- ``at(mono_ns, callback)``: run ``callback()`` once simulated time reaches ``mono_ns``
  (called from the thread that advances the clock, or a waiter; a fast clock stands still while
  it runs, which a simulator may use to let the recorder handle an event at its instant).
- ``start_monotonic_ns``: simulated monotonic time zero (when the clock was made).
- ``elapsed_s()``: simulated seconds since the clock was made;
  ``real_speed()``: simulated seconds per real second so far.

Threads: waiters block on one Condition; advancing notifies it. Paced mode waits on the
Condition with a computed real timeout; a ``cancel`` Event is checked every 50 ms.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator

NS = 1_000_000_000


class SimClock:
    """Simulated UTC + monotonic time; see the module docstring for the two modes."""

    def __init__(
        self,
        start_utc_ns: int | None = None,
        *,
        speed: float | None = None,
        start_monotonic_ns: int = 1_000 * NS,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None (as fast as possible), not {speed}")
        self.speed = speed
        self._cond = threading.Condition(threading.Lock())
        self._start_mono = start_monotonic_ns
        # Simulated monotonic time = _mono_base + (real elapsed since _real_base) * speed.
        self._mono_base = start_monotonic_ns
        self._real_base = time.monotonic_ns()
        self._real_start = self._real_base
        utc = time.time_ns() if start_utc_ns is None else start_utc_ns
        self._utc_offset = utc - start_monotonic_ns
        self._drivers = 0
        self._deadlines: list[int] = []  # heap of pending sleepers' deadlines (no-driver mode)
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # -- reading ---------------------------------------------------------------------

    def _mono_locked(self) -> int:
        if self.speed is None:
            return self._mono_base
        return self._mono_base + int((time.monotonic_ns() - self._real_base) * self.speed)

    def monotonic_ns(self) -> int:
        with self._cond:
            return self._mono_locked()

    def time_ns(self) -> int:
        with self._cond:
            return self._mono_locked() + self._utc_offset

    def monotonic(self) -> float:
        return self.monotonic_ns() / NS

    def time(self) -> float:
        return self.time_ns() / NS

    def utc_offset_ns(self) -> int:
        """UTC minus monotonic: converts a monotonic instant to UTC without a race."""
        with self._cond:
            return self._utc_offset

    @property
    def start_monotonic_ns(self) -> int:
        """Simulated monotonic time when the clock was made (simulation time zero)."""
        return self._start_mono

    def elapsed_s(self) -> float:
        """Simulated seconds since this clock was made."""
        return (self.monotonic_ns() - self._start_mono) / NS

    def real_speed(self) -> float:
        """Simulated seconds per real second since this clock was made."""
        real = (time.monotonic_ns() - self._real_start) / NS
        return self.elapsed_s() / real if real > 0 else 0.0

    # -- setting ---------------------------------------------------------------------

    def time_valid(self) -> bool:
        """The twin's RTC never loses its time (its faults are scripted elsewhere)."""
        return True

    def set_time_ns(self, utc_ns: int) -> None:
        """Set UTC (the RTC); monotonic time and waiters are unaffected."""
        with self._cond:
            self._utc_offset = utc_ns - self._mono_locked()

    def advance(self, ns: int) -> int:
        """Move simulated time forward by ``ns``; returns the new monotonic time."""
        if ns < 0:
            raise ValueError("time only moves forward")
        with self._cond:
            target = self._mono_locked() + ns
        return self.advance_to(target)

    def advance_to(self, mono_ns: int) -> int:
        """Move simulated monotonic time forward to ``mono_ns`` (no-op if already past)."""
        with self._cond:
            now = self._mono_locked()
            if mono_ns > now:
                self._rebase_locked(mono_ns)
                self._cond.notify_all()
            due = self._pop_due_locked()
            now = self._mono_locked()
        for callback in due:
            callback()
        return now

    def _rebase_locked(self, mono_ns: int) -> None:
        self._mono_base = mono_ns
        self._real_base = time.monotonic_ns()

    def _pop_due_locked(self) -> list[Callable[[], None]]:
        now = self._mono_locked()
        due = []
        while self._timers and self._timers[0][0] <= now:
            due.append(heapq.heappop(self._timers)[2])
        return due

    def at(self, mono_ns: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once simulated time reaches ``mono_ns``.

        It runs in whichever thread advances the clock past ``mono_ns`` (in paced mode, in
        the next thread that advances it or waits on it), so it must be quick."""
        with self._cond:
            heapq.heappush(self._timers, (mono_ns, next(self._seq), callback))
            self._cond.notify_all()
        self._run_due()

    def _run_due(self) -> None:
        with self._cond:
            due = self._pop_due_locked()
        for callback in due:
            callback()

    @contextlib.contextmanager
    def driving(self) -> Iterator[None]:
        """Register the caller as a driver of time while the block runs.

        While at least one driver is registered, sleepers wait for the drivers instead of
        advancing the clock themselves (as-fast-as-possible mode)."""
        with self._cond:
            self._drivers += 1
        try:
            yield
        finally:
            with self._cond:
                self._drivers -= 1
                self._cond.notify_all()

    @property
    def drivers(self) -> int:
        with self._cond:
            return self._drivers

    @property
    def waiters(self) -> int:
        """How many threads are waiting for simulated time right now."""
        with self._cond:
            return len(self._deadlines)

    def wait_for_waiters(self, count: int, timeout: float = 5.0) -> bool:
        """Block (real time) until at least ``count`` threads wait on this clock."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._deadlines) >= count, timeout)

    # -- waiting ---------------------------------------------------------------------

    def wait_until(
        self,
        mono_ns: int,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Block until simulated monotonic time reaches ``mono_ns``.

        Returns True when it did, False after ``timeout`` real seconds or once ``cancel``
        is set (cancel is noticed within 50 ms real time). Without drivers in
        as-fast-as-possible mode, the earliest waiter advances the clock itself, stopping
        at each ``at()`` timer on the way to run it. Due timers run in this thread."""
        real_deadline = None if timeout is None else time.monotonic() + timeout
        registered = False
        try:
            while True:
                with self._cond:
                    now = self._mono_locked()
                    due = self._pop_due_locked()
                    if not due:
                        if now >= mono_ns:
                            return True
                        if cancel is not None and cancel.is_set():
                            return False
                        if not registered:
                            heapq.heappush(self._deadlines, mono_ns)
                            registered = True
                            self._cond.notify_all()
                        # The next thing that happens: this deadline or an earlier timer.
                        step = mono_ns
                        if self._timers and self._timers[0][0] < step:
                            step = self._timers[0][0]
                        wait = 0.05 if cancel is not None else None
                        if self.speed is None:
                            if self._drivers == 0 and self._deadlines[0] >= mono_ns:
                                # No driver: the earliest sleeper moves time on to the next
                                # event (a timer, or its own deadline), like an event queue.
                                self._rebase_locked(step)
                                self._cond.notify_all()
                                continue
                        else:
                            real_left = (step - now) / self.speed / NS
                            wait = real_left if wait is None else min(wait, real_left)
                        if real_deadline is not None:
                            left = real_deadline - time.monotonic()
                            if left <= 0:
                                return False
                            wait = left if wait is None else min(wait, left)
                        self._cond.wait(wait)
                        continue
                for callback in due:  # outside the lock: callbacks may use the clock
                    callback()
        finally:
            if registered:
                with self._cond:
                    self._deadlines.remove(mono_ns)
                    heapq.heapify(self._deadlines)
                    self._cond.notify_all()

    def sleep_until(self, mono_ns: int) -> None:
        """Block until simulated monotonic time reaches ``mono_ns``."""
        self.wait_until(mono_ns)

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` of simulated time."""
        self.wait_until(self.monotonic_ns() + int(seconds * NS))

    def wait_event(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait for ``event``, at most ``seconds`` of simulated time; returns event.is_set().

        ``seconds=None`` waits for the event only (real time, like Event.wait())."""
        if seconds is None:
            return event.wait()
        self.wait_until(self.monotonic_ns() + int(seconds * NS), cancel=event)
        return event.is_set()

    def __repr__(self) -> str:
        mode = "as-fast-as-possible" if self.speed is None else f"speed={self.speed:g}"
        return f"<SimClock {mode} t={self.elapsed_s():.3f}s drivers={self.drivers}>"
