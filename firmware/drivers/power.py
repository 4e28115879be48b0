"""The device's :class:`firmware.hardware.Power`: fuel gauge, SoC temperature, free space."""

from __future__ import annotations

import os

from .fuel_gauge import MAX17048
from .thermal import SocThermal


class BoardPower:
    """Battery from the MAX17048, temperature from the SoC, free bytes from statvfs."""

    def __init__(self, gauge: MAX17048, thermal: SocThermal) -> None:
        self.gauge = gauge
        self.thermal = thermal

    def battery_percent(self) -> float:
        return self.gauge.percent()

    def minutes_left(self) -> int | None:
        """Minutes to empty at the present drain (for ``battery_low`` records)."""
        return self.gauge.minutes_left()

    def temperature_c(self) -> float:
        return self.thermal.temperature_c()

    def free_bytes(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
