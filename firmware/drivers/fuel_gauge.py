"""MAX17048 single-cell fuel gauge (ModelGauge, no sense resistor) at I2C address 0x36.

Registers are 16 bits, most significant byte first (hence block transfers rather than
SMBus word reads, which are little-endian).
"""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)

ADDRESS = 0x36
REG_VCELL = 0x02  # 78.125 uV per LSB
REG_SOC = 0x04  # high byte: percent; low byte: 1/256 percent
REG_MODE = 0x06
REG_VERSION = 0x08  # 0x001x for the MAX17048/9
REG_CONFIG = 0x0C  # low 5 bits ATHD: alert at (32 - ATHD) percent; bit 5 ALRT
REG_CRATE = 0x16  # signed, 0.208 %/h per LSB
REG_STATUS = 0x1A  # bit 0 (of the high byte) RI: reset indicator
REG_CMD = 0xFE  # write 0x5400 for a power-on reset


class MAX17048:
    def __init__(self, bus, address: int = ADDRESS) -> None:
        self.bus = bus
        self.address = address

    def _read(self, register: int) -> int:
        hi, lo = self.bus.read_i2c_block_data(self.address, register, 2)
        return (hi << 8) | lo

    def _write(self, register: int, value: int) -> None:
        self.bus.write_i2c_block_data(self.address, register, [(value >> 8) & 0xFF, value & 0xFF])

    def version(self) -> int:
        return self._read(REG_VERSION)

    def check(self) -> None:
        """Raise OSError unless a MAX17048/9 answers (VERSION 0x001x)."""
        version = self.version()
        if version & 0xFFF0 != 0x0010:
            raise OSError(f"no MAX17048 at I2C 0x{self.address:02x} (version 0x{version:04x})")

    def percent(self) -> float:
        """State of charge, clamped to 0..100 (the gauge reports up to ~255 % uncalibrated)."""
        raw = self._read(REG_SOC)
        return max(0.0, min(100.0, raw / 256))

    def voltage(self) -> float:
        """Cell voltage in volts."""
        return self._read(REG_VCELL) * 78.125e-6

    def charge_rate(self) -> float:
        """Percent per hour: negative while discharging."""
        raw = self._read(REG_CRATE)
        if raw & 0x8000:
            raw -= 0x10000
        return raw * 0.208

    def minutes_left(self) -> int | None:
        """Minutes to empty at the present drain; None while charging or idle."""
        rate = self.charge_rate()
        if rate >= -0.1:
            return None
        return int(self.percent() / -rate * 60)

    def set_alert_threshold(self, percent: int) -> None:
        """Pull FUEL_ALERT low below ``percent`` (1..32), and clear a pending alert."""
        if not 1 <= percent <= 32:
            raise ValueError(f"alert threshold {percent} % is outside 1..32 %")
        config = self._read(REG_CONFIG)
        config = (config & ~0x3F) | (32 - percent)  # ATHD, with ALRT (bit 5) cleared
        self._write(REG_CONFIG, config)

    def alert_threshold(self) -> int:
        return 32 - (self._read(REG_CONFIG) & 0x1F)

    def alert_pending(self) -> bool:
        return bool(self._read(REG_CONFIG) & 0x20)
