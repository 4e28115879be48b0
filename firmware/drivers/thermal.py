"""SoC temperature from the kernel's thermal zone (what the firmware throttles on)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


class SocThermal:
    """Reads ``thermal_zone0/temp`` (millidegrees Celsius as decimal text)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_ZONE) -> None:
        self.path = Path(path)

    def temperature_c(self) -> float:
        text = self.path.read_text().strip()
        try:
            return int(text) / 1000
        except ValueError:
            raise ValueError(f"{self.path}: not a temperature: {text!r}") from None
