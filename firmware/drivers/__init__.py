"""Drivers for the parts the schematic adds to the Pi: RTC, fuel gauge, temperature.

Each driver talks to a small bus object (the hardware seam), so tests drive it with a
register map instead of a chip:

- I2C: anything with smbus2's ``read_i2c_block_data(addr, reg, n)`` and
  ``write_i2c_block_data(addr, reg, data)``; :func:`open_i2c_bus` opens the real one.
- the kernel's RTC device (``/dev/rtc0``) when the ``i2c-rtc`` overlay owns the DS3231;
- sysfs files for the SoC temperature.

They implement :class:`firmware.hardware.Power` and :class:`firmware.hardware.SettableClock`
through :class:`BoardPower` and :class:`RtcClock`. smbus2 is imported only when a real
bus is opened, so this package imports on any PC.
"""

from __future__ import annotations

from typing import Protocol

from .fuel_gauge import MAX17048
from .power import BoardPower
from .rtc import DS3231, BrokeredClock, LinuxRtc, RtcClock, RtcError
from .thermal import SocThermal


class I2CBus(Protocol):
    """The part of ``smbus2.SMBus`` the drivers use (register-addressed block transfers)."""

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None: ...


def open_i2c_bus(number: int = 1) -> I2CBus:
    """The Pi's I2C bus (``/dev/i2c-1`` on the header pins 3 and 5) through smbus2."""
    try:
        from smbus2 import SMBus
    except ImportError as exc:  # a PC without the [pi] extra
        raise ImportError("smbus2 is needed for the I2C drivers: pip install '.[pi]'") from exc
    return SMBus(number)


def device_clock(rtc_path: str = "/dev/rtc0", socket_path: str | None = None) -> RtcClock:
    """The recorder's :class:`~firmware.hardware.SettableClock`: the system clock, with the
    DS3231 behind the kernel's ``/dev/rtc0`` (the ``i2c-rtc,ds3231`` overlay) kept in step
    when the dock sets the time, which the clock helper bodycam-clock does (on
    ``socket_path``, default ``$BODYCAM_CLOCK_SOCKET`` or /run/bodycam-clock.sock): the
    recorder itself may not set the clock."""
    from ..clockd import ClockClient

    return BrokeredClock(LinuxRtc(rtc_path), ClockClient(socket_path).set_time_ns)


def device_power(bus: I2CBus | None = None, thermal_path: str | None = None) -> BoardPower:
    """The camera's :class:`~firmware.hardware.Power`: MAX17048 on I2C bus 1, SoC zone 0.

    Checks that the fuel gauge answers, so a missing chip fails at start, not mid-shift."""
    gauge = MAX17048(open_i2c_bus(1) if bus is None else bus)
    gauge.check()
    thermal = SocThermal() if thermal_path is None else SocThermal(thermal_path)
    return BoardPower(gauge, thermal)


__all__ = [
    "DS3231",
    "BrokeredClock",
    "MAX17048",
    "BoardPower",
    "I2CBus",
    "LinuxRtc",
    "RtcClock",
    "RtcError",
    "SocThermal",
    "device_clock",
    "device_power",
    "open_i2c_bus",
]
