"""The simulated power and storage sensors: battery, SoC temperature, free storage.

:class:`SimPower` implements ``firmware.hardware.Power`` on top of a
:class:`simulator.clock.SimClock`::

    power = SimPower(clock, battery_percent=100, drain_percent_per_hour=11)
    power.battery_percent()      # drains linearly with *simulated* time, floor 0
    power.set_battery(20)        # set the level now; it keeps draining from there
    power.set_drain(0)           # e.g. while docked (charging is set_battery + drain 0)
    power.temperature_c()        # 45.0 unless set_temperature(c)
    power.free_bytes(path)       # statvfs(path) free bytes minus ``storage_reserve``,
    power.set_free_bytes(n)      # ...or exactly n once set (None: back to statvfs)
    power.set_storage_full(True) # fault: free_bytes() returns 0 until cleared

All methods are thread-safe (a lock around a few numbers), cheap, and never block: the
recorder may poll them from its main loop at every tick. The battery is computed from the
clock when asked, so no thread is needed to drain it.
"""

from __future__ import annotations

import logging
import os
import threading

from simulator.clock import NS, SimClock

_log = logging.getLogger(__name__)

HOUR_NS = 3600 * NS


class SimPower:
    """Battery, temperature and free storage with settable values and faults."""

    def __init__(
        self,
        clock: SimClock,
        *,
        battery_percent: float = 100.0,
        drain_percent_per_hour: float = 11.0,
        temperature_c: float = 45.0,
        storage_reserve: int = 0,
    ) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._level = self._check_percent(battery_percent)
        self._level_at = clock.monotonic_ns()
        self._drain = float(drain_percent_per_hour)
        self._temperature = float(temperature_c)
        self.storage_reserve = storage_reserve
        self._free: int | None = None
        self._full = False

    @staticmethod
    def _check_percent(percent: float) -> float:
        if not 0 <= percent <= 100:
            raise ValueError(f"battery percent must be 0..100, not {percent}")
        return float(percent)

    # -- battery -----------------------------------------------------------------------

    def _level_locked(self, now: int) -> float:
        drained = self._drain * (now - self._level_at) / HOUR_NS
        return min(100.0, max(0.0, self._level - drained))

    def battery_percent(self) -> float:
        now = self.clock.monotonic_ns()
        with self._lock:
            return self._level_locked(now)

    def set_battery(self, percent: float) -> None:
        """Set the charge level now; it drains from there at the current rate."""
        level = self._check_percent(percent)
        now = self.clock.monotonic_ns()
        with self._lock:
            self._level, self._level_at = level, now
        _log.info("battery set to %.1f%%", level)

    @property
    def drain_percent_per_hour(self) -> float:
        return self._drain

    def set_drain(self, percent_per_hour: float) -> None:
        """Change the drain rate from now on (negative: charging)."""
        now = self.clock.monotonic_ns()
        with self._lock:
            self._level, self._level_at = self._level_locked(now), now
            self._drain = float(percent_per_hour)

    def minutes_left(self) -> float | None:
        """Minutes until empty at the current drain rate (None when not draining)."""
        with self._lock:
            drain = self._drain
        return self.battery_percent() / drain * 60 if drain > 0 else None

    # -- temperature ---------------------------------------------------------------------

    def temperature_c(self) -> float:
        with self._lock:
            return self._temperature

    def set_temperature(self, celsius: float) -> None:
        with self._lock:
            self._temperature = float(celsius)
        _log.info("temperature set to %.1f C", celsius)

    # -- storage -----------------------------------------------------------------------

    def free_bytes(self, path: str | os.PathLike) -> int:
        """Free bytes for the recorder at ``path``: 0 when full, the set value, or statvfs."""
        with self._lock:
            if self._full:
                return 0
            if self._free is not None:
                return self._free
        st = os.statvfs(path)
        return max(0, st.f_bavail * st.f_frsize - self.storage_reserve)

    def set_free_bytes(self, free: int | None) -> None:
        """Report exactly ``free`` bytes from now on (None: the real file system again)."""
        if free is not None and free < 0:
            raise ValueError("free bytes cannot be negative")
        with self._lock:
            self._free = free

    @property
    def storage_full(self) -> bool:
        with self._lock:
            return self._full

    def set_storage_full(self, full: bool = True) -> None:
        """Fault: the card is full (free_bytes() returns 0) until cleared."""
        with self._lock:
            self._full = bool(full)
        _log.info("storage %s", "full" if full else "no longer full")
