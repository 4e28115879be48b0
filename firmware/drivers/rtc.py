"""The battery-backed clock: a DS3231 on I2C, read directly or through the kernel.

The Pi has no clock of its own; evidence needs trusted time. At boot the recorder restores
the system clock from the RTC (:meth:`RtcClock.restore`), and when the dock sets the time
both the system clock and the RTC are set (:meth:`RtcClock.set_time_ns`).

Who sets them: only ``bodycam-clock`` (:mod:`firmware.clockd`) holds ``CAP_SYS_TIME``; it
runs :class:`RtcClock`. The recorder's clock is :class:`BrokeredClock`: it reads the system
clock and the RTC itself, and asks the helper to set them.

Two ways to reach the chip:

- :class:`LinuxRtc`: ``/dev/rtc0`` when the ``i2c-rtc,ds3231`` overlay is loaded (what
  ``scripts/install-pi`` configures). The kernel driver then owns address 0x68, and it
  refuses to read a clock whose oscillator stopped (EINVAL).
- :class:`DS3231`: the registers over I2C (BCD), for a Pi without the overlay, bring-up
  and tests. It reads the oscillator-stop flag itself.

Both keep whole seconds: the DS3231 has no sub-second register. A write resets the chip's
countdown chain, so the time written is rounded to the nearest second (error <= 0.5 s until
the dock sets it again).
"""

from __future__ import annotations

import calendar
import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger(__name__)

ADDRESS = 0x68
REG_TIME = 0x00  # seconds, minutes, hours, weekday, date, month|century, year (BCD)
REG_CONTROL = 0x0E  # bit 7 EOSC (active low: 0 runs the oscillator on battery)
REG_STATUS = 0x0F  # bit 7 OSF: the oscillator stopped; the time is not trustworthy
REG_TEMP = 0x11  # MSB signed degrees, LSB bits 7:6 quarter degrees
OSF = 0x80
EOSC = 0x80
NS = 1_000_000_000
# The DS3231's leap-year rule is right for 2000..2099 only.
MIN_YEAR, MAX_YEAR = 2000, 2099


class RtcError(OSError):
    """The RTC cannot be trusted (oscillator stopped, time out of range) or not reached."""


def to_bcd(value: int) -> int:
    if not 0 <= value <= 99:
        raise ValueError(f"{value} does not fit two BCD digits")
    return (value // 10) << 4 | value % 10


def from_bcd(byte: int) -> int:
    hi, lo = byte >> 4, byte & 0x0F
    if hi > 9 or lo > 9:
        raise RtcError(f"register holds 0x{byte:02x}, not BCD")
    return hi * 10 + lo


def _whole_seconds(utc_ns: int) -> int:
    return (utc_ns + NS // 2) // NS


def _check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise RtcError(f"year {year} is outside what the RTC keeps ({MIN_YEAR}..{MAX_YEAR})")


class DS3231:
    """Time and temperature registers of a DS3231 (or DS3231M) over I2C."""

    def __init__(self, bus, address: int = ADDRESS) -> None:
        self.bus = bus
        self.address = address

    def oscillator_stopped(self) -> bool:
        return bool(self.bus.read_i2c_block_data(self.address, REG_STATUS, 1)[0] & OSF)

    def read_time_ns(self) -> int:
        """UTC nanoseconds (whole seconds); RtcError when the oscillator stopped."""
        if self.oscillator_stopped():
            raise RtcError("RTC oscillator stopped (battery flat or never set): time unknown")
        # One block read: the chip copies its counters to the read buffer on START, so the
        # seven registers are consistent with each other.
        regs = self.bus.read_i2c_block_data(self.address, REG_TIME, 7)
        second = from_bcd(regs[0] & 0x7F)
        minute = from_bcd(regs[1] & 0x7F)
        hour_reg = regs[2]
        if hour_reg & 0x40:  # 12-hour mode (not ours, but the chip may have been set so)
            hour = from_bcd(hour_reg & 0x1F) % 12 + (12 if hour_reg & 0x20 else 0)
        else:
            hour = from_bcd(hour_reg & 0x3F)
        day = from_bcd(regs[4] & 0x3F)
        month = from_bcd(regs[5] & 0x1F)
        year = 2000 + from_bcd(regs[6]) + (100 if regs[5] & 0x80 else 0)
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
            raise RtcError(f"RTC holds an impossible time: {list(map(hex, regs))}")
        return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * NS

    def set_time_ns(self, utc_ns: int) -> None:
        """Write the time (24-hour mode) and clear the oscillator-stop flag."""
        t = time.gmtime(_whole_seconds(utc_ns))
        _check_year(t.tm_year)
        regs = [
            to_bcd(t.tm_sec),
            to_bcd(t.tm_min),
            to_bcd(t.tm_hour),
            t.tm_wday + 1,  # 1..7, Monday = 1 (the chip only counts)
            to_bcd(t.tm_mday),
            to_bcd(t.tm_mon),
            to_bcd(t.tm_year - 2000),
        ]
        self.bus.write_i2c_block_data(self.address, REG_TIME, regs)
        control = self.bus.read_i2c_block_data(self.address, REG_CONTROL, 1)[0]
        if control & EOSC:  # keep the oscillator running on the backup battery
            self.bus.write_i2c_block_data(self.address, REG_CONTROL, [control & ~EOSC & 0xFF])
        status = self.bus.read_i2c_block_data(self.address, REG_STATUS, 1)[0]
        self.bus.write_i2c_block_data(self.address, REG_STATUS, [status & ~OSF & 0xFF])

    def temperature_c(self) -> float:
        """The chip's own temperature sensor (board temperature, 0.25 degree steps)."""
        msb, lsb = self.bus.read_i2c_block_data(self.address, REG_TEMP, 2)
        if msb & 0x80:
            msb -= 0x100
        return msb + (lsb >> 6) * 0.25


# struct rtc_time from <linux/rtc.h>: nine ints.
_RTC_TIME = struct.Struct("9i")
RTC_RD_TIME = 0x80000000 | (_RTC_TIME.size << 16) | (ord("p") << 8) | 0x09
RTC_SET_TIME = 0x40000000 | (_RTC_TIME.size << 16) | (ord("p") << 8) | 0x0A


class LinuxRtc:
    """``/dev/rtcN`` through the kernel's RTC ioctls (the overlay's driver owns the chip).

    ``ioctl`` is the seam tests replace; it has ``fcntl.ioctl``'s signature.
    """

    def __init__(
        self,
        path: str | os.PathLike = "/dev/rtc0",
        ioctl: Callable[[int, int, bytes], bytes] = fcntl.ioctl,
    ) -> None:
        self.path = Path(path)
        self._ioctl = ioctl

    def _call(self, request: int, arg: bytes, flags: int) -> bytes:
        try:
            fd = os.open(self.path, flags | os.O_CLOEXEC)
        except OSError as exc:
            raise RtcError(f"{self.path}: {exc.strerror}") from None
        try:
            return self._ioctl(fd, request, arg)
        except OSError as exc:
            # rtc-ds1307 answers EINVAL while the oscillator-stop flag is set.
            raise RtcError(
                f"{self.path}: cannot use the RTC ({exc.strerror}); oscillator stopped or never set"
            ) from None
        finally:
            os.close(fd)

    def read_time_ns(self) -> int:
        fields = _RTC_TIME.unpack(self._call(RTC_RD_TIME, bytes(_RTC_TIME.size), os.O_RDONLY))
        sec, minute, hour, mday, mon, year = fields[:6]
        return calendar.timegm((year + 1900, mon + 1, mday, hour, minute, sec, 0, 0, 0)) * NS

    def set_time_ns(self, utc_ns: int) -> None:
        t = time.gmtime(_whole_seconds(utc_ns))
        _check_year(t.tm_year)
        arg = _RTC_TIME.pack(
            t.tm_sec,
            t.tm_min,
            t.tm_hour,
            t.tm_mday,
            t.tm_mon - 1,
            t.tm_year - 1900,
            (t.tm_wday + 1) % 7,
            t.tm_yday - 1,
            0,
        )
        self._call(RTC_SET_TIME, arg, os.O_RDWR)


def _set_system_clock(utc_ns: int) -> None:
    time.clock_settime_ns(time.CLOCK_REALTIME, utc_ns)  # needs CAP_SYS_TIME


class RtcClock:
    """:class:`firmware.hardware.SettableClock` for the device: system clock + RTC.

    Reads come from the system clock (fast, nanoseconds); the RTC only survives power-off.
    ``set_system_clock`` is the seam for tests (default ``clock_settime``).
    """

    def __init__(
        self,
        rtc,
        set_system_clock: Callable[[int], None] = _set_system_clock,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.rtc = rtc
        self._set_system_clock = set_system_clock
        self._now_ns = now_ns

    def time_ns(self) -> int:
        return self._now_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wait_event(self, event: threading.Event, seconds: float | None) -> bool:
        """Real time: the event's own wait."""
        return event.wait(seconds)

    def set_time_ns(self, utc_ns: int) -> None:
        """Set the RTC, then the system clock: a time the RTC refuses (RtcError, OSError)
        changes neither, and when the system clock refuses (no CAP_SYS_TIME) the RTC is
        put back, so the two never disagree after a failed correction."""
        before = self._now_ns()
        self.rtc.set_time_ns(utc_ns)
        try:
            self._set_system_clock(utc_ns)
        except OSError:
            try:
                self.rtc.set_time_ns(before)
            except OSError as exc:
                _log.error("could not put the RTC back after the system clock refused: %s", exc)
            raise
        _log.info("clock set to %d ns (RTC and system)", utc_ns)

    def time_valid(self) -> bool:
        """Whether the RTC still keeps time; False when it lost it (oscillator stopped,
        battery flat) or cannot be read: the system clock then came from nowhere, and the
        dock may correct it by more than the usual bound (firmware/dock_link.py)."""
        try:
            self.rtc.read_time_ns()
        except OSError:  # RtcError, or the bus itself failing
            return False
        return True

    def restore(self, max_skew_s: float = 2.0) -> bool:
        """At boot: take the RTC's time when the system clock disagrees by more than
        ``max_skew_s`` (a Pi boots at its last shutdown time). Returns whether it set the
        clock; raises RtcError when the RTC cannot be trusted (the recorder then marks its
        times untrusted until the dock sets them)."""
        rtc_ns = self.rtc.read_time_ns()
        if abs(rtc_ns - self._now_ns()) <= max_skew_s * NS:
            return False
        self._set_system_clock(rtc_ns)
        _log.info("system clock restored from the RTC")
        return True


class BrokeredClock(RtcClock):
    """:class:`firmware.hardware.SettableClock` for a recorder without ``CAP_SYS_TIME``:
    reads the system clock and the RTC (``time_valid``) itself, and hands every setting,
    the dock's correction and the boot restore alike, to ``set_time`` (on the device
    :meth:`firmware.clockd.ClockClient.set_time_ns`, which asks bodycam-clock to set the
    RTC, then the system clock). A refusal is an OSError with the helper's reason."""

    def __init__(
        self,
        rtc,
        set_time: Callable[[int], None],
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(rtc, set_system_clock=set_time, now_ns=now_ns)

    def set_time_ns(self, utc_ns: int) -> None:
        """Ask for both clocks at once: the helper sets the RTC first, then the system
        clock, and a time it refuses changes neither."""
        self._set_system_clock(utc_ns)
        _log.info("clock set to %d ns (RTC and system, by the clock helper)", utc_ns)
