"""RTC, fuel gauge and temperature drivers, driven through a register-map I2C bus.

The fake bus is the hardware seam: it behaves like the chips' register files (auto-
incrementing block transfers), so what the tests check is the drivers' register traffic
and encoding (BCD, byte order, sign), not the bus.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.clock import parse_utc
from firmware.drivers import (
    DS3231,
    MAX17048,
    BoardPower,
    LinuxRtc,
    RtcClock,
    RtcError,
    SocThermal,
    device_clock,
    device_power,
    open_i2c_bus,
)
from firmware.drivers import rtc as rtc_mod
from firmware.drivers.rtc import from_bcd, to_bcd
from hw.pinmap import I2C_ADDRESSES

NS = 1_000_000_000


class RegisterBus:
    """An I2C bus with one register file per address, like smbus2.SMBus on real chips."""

    def __init__(self, chips: dict[int, dict[int, int]]) -> None:
        self.chips = chips
        self.writes: list[tuple[int, int, list[int]]] = []

    def _chip(self, addr: int) -> dict[int, int]:
        if addr not in self.chips:
            raise OSError(121, "Remote I/O error")  # what a missing chip gives (ENXIO/EREMOTEIO)
        return self.chips[addr]

    def read_i2c_block_data(self, i2c_addr, register, length):
        chip = self._chip(i2c_addr)
        return [chip.get(register + i, 0) for i in range(length)]

    def write_i2c_block_data(self, i2c_addr, register, data):
        chip = self._chip(i2c_addr)
        self.writes.append((i2c_addr, register, list(data)))
        for i, byte in enumerate(data):
            assert 0 <= byte <= 0xFF
            chip[register + i] = byte


def ds3231_registers(**extra):
    regs = {r: 0 for r in range(0x13)}
    regs[0x0E] = 0x1C  # power-on control: INTCN, RS2, RS1
    regs[0x0F] = 0x88  # power-on status: OSF set, EN32kHz
    regs.update(extra)
    return regs


def test_addresses_match_the_pin_map():
    assert rtc_mod.ADDRESS == I2C_ADDRESSES["RTC"]
    from firmware.drivers import fuel_gauge

    assert fuel_gauge.ADDRESS == I2C_ADDRESSES["FUEL_GAUGE"]


@given(st.integers(0, 99))
def test_bcd_round_trip(value):
    byte = to_bcd(value)
    assert byte == int(f"{value:02d}", 16)
    assert from_bcd(byte) == value


def test_bcd_rejects_non_bcd():
    with pytest.raises(RtcError):
        from_bcd(0x1A)
    with pytest.raises(ValueError):
        to_bcd(100)


def test_rtc_set_writes_bcd_registers_and_clears_osf():
    bus = RegisterBus({0x68: ds3231_registers()})
    rtc = DS3231(bus)
    assert rtc.oscillator_stopped()
    rtc.set_time_ns(parse_utc("2026-11-27T23:59:58.400000Z"))
    # One block write of the seven time registers, starting at 0x00.
    assert bus.writes[0] == (0x68, 0x00, [0x58, 0x59, 0x23, 5, 0x27, 0x11, 0x26])
    assert not rtc.oscillator_stopped()
    assert bus.chips[0x68][0x0F] == 0x08  # EN32kHz kept, OSF cleared
    assert rtc.read_time_ns() == parse_utc("2026-11-27T23:59:58.000000Z")


def test_rtc_rounds_to_the_nearest_second():
    bus = RegisterBus({0x68: ds3231_registers()})
    DS3231(bus).set_time_ns(parse_utc("2026-01-01T00:00:09.600000Z"))
    assert DS3231(bus).read_time_ns() == parse_utc("2026-01-01T00:00:10.000000Z")


def test_rtc_refuses_to_read_a_stopped_oscillator():
    bus = RegisterBus({0x68: ds3231_registers()})
    with pytest.raises(RtcError, match="oscillator stopped"):
        DS3231(bus).read_time_ns()


def test_rtc_enables_the_battery_oscillator():
    bus = RegisterBus({0x68: ds3231_registers()})
    bus.chips[0x68][0x0E] = 0x9C  # EOSC set: the clock would stop on battery
    DS3231(bus).set_time_ns(parse_utc("2030-06-01T12:00:00.000000Z"))
    assert bus.chips[0x68][0x0E] == 0x1C


def test_rtc_reads_12_hour_mode_and_century():
    regs = ds3231_registers()
    regs[0x0F] = 0
    regs.update({0: 0x05, 1: 0x30, 2: 0x40 | 0x20 | 0x11, 4: 0x01, 5: 0x80 | 0x02, 6: 0x00})
    bus = RegisterBus({0x68: regs})
    # 11 PM, 1 February, year 00 with the century bit: 2100.
    assert DS3231(bus).read_time_ns() == calendar.timegm((2100, 2, 1, 23, 30, 5)) * NS


def test_rtc_rejects_an_impossible_time():
    regs = ds3231_registers()
    regs[0x0F] = 0
    regs.update({4: 0x00, 5: 0x13})
    with pytest.raises(RtcError, match="impossible"):
        DS3231(RegisterBus({0x68: regs})).read_time_ns()


def test_rtc_rejects_years_it_cannot_keep():
    bus = RegisterBus({0x68: ds3231_registers()})
    with pytest.raises(RtcError, match="outside"):
        DS3231(bus).set_time_ns(parse_utc("1999-12-31T23:59:59.000000Z"))
    assert bus.writes == []


@given(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31, 23, 59, 58))
)
def test_rtc_round_trip(when):
    ns = calendar.timegm(when.timetuple()) * NS
    bus = RegisterBus({0x68: ds3231_registers()})
    rtc = DS3231(bus)
    rtc.set_time_ns(ns)
    assert rtc.read_time_ns() == ns
    assert all(from_bcd(b & 0x7F) >= 0 for b in bus.writes[0][2][:3])


@pytest.mark.parametrize(
    ("msb", "lsb", "celsius"),
    [
        (0x19, 0x40, 25.25),
        (0x00, 0xC0, 0.75),
        (0xF6, 0x00, -10.0),
        (0xFF, 0x40, -0.75),
    ],
)
def test_rtc_temperature(msb, lsb, celsius):
    regs = ds3231_registers()
    regs[0x11], regs[0x12] = msb, lsb
    assert DS3231(RegisterBus({0x68: regs})).temperature_c() == celsius


def test_missing_chip_raises_oserror():
    with pytest.raises(OSError):
        DS3231(RegisterBus({})).read_time_ns()


# --- MAX17048 ---------------------------------------------------------------------------


def gauge_registers(soc=(0x4B, 0x80), vcell=(0xD0, 0x00), crate=(0xFF, 0xE0), config=(0x97, 0x1C)):
    regs = {0x08: 0x00, 0x09: 0x12, 0x0C: config[0], 0x0D: config[1]}
    regs[0x02], regs[0x03] = vcell
    regs[0x04], regs[0x05] = soc
    regs[0x16], regs[0x17] = crate
    return regs


def test_gauge_reads_soc_voltage_and_rate():
    gauge = MAX17048(RegisterBus({0x36: gauge_registers()}))
    gauge.check()
    assert gauge.percent() == 75.5
    assert gauge.voltage() == pytest.approx(0xD000 * 78.125e-6)  # 4.16 V
    assert gauge.charge_rate() == pytest.approx(-32 * 0.208)  # discharging
    assert gauge.minutes_left() == int(75.5 / (32 * 0.208) * 60)


def test_gauge_clamps_and_charging_has_no_minutes_left():
    gauge = MAX17048(RegisterBus({0x36: gauge_registers(soc=(0xFF, 0x00), crate=(0x00, 0x40))}))
    assert gauge.percent() == 100.0
    assert gauge.minutes_left() is None


def test_gauge_alert_threshold_sets_athd():
    bus = RegisterBus({0x36: gauge_registers(config=(0x97, 0x3C))})  # ALRT pending, 4 %
    gauge = MAX17048(bus)
    assert gauge.alert_pending()
    assert gauge.alert_threshold() == 4
    gauge.set_alert_threshold(15)
    assert bus.writes[-1] == (0x36, 0x0C, [0x97, 32 - 15])  # RCOMP kept, ALRT cleared
    assert gauge.alert_threshold() == 15
    assert not gauge.alert_pending()
    with pytest.raises(ValueError):
        gauge.set_alert_threshold(40)


def test_gauge_check_refuses_another_chip():
    regs = gauge_registers()
    regs[0x09] = 0x00
    regs[0x08] = 0xAB
    with pytest.raises(OSError, match="no MAX17048"):
        MAX17048(RegisterBus({0x36: regs})).check()


# --- temperature, power, clock --------------------------------------------------------


def test_soc_thermal(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert SocThermal(zone).temperature_c() == 48.312
    zone.write_text("n/a\n")
    with pytest.raises(ValueError, match="not a temperature"):
        SocThermal(zone).temperature_c()


def test_board_power_implements_power(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("71000\n")
    power = BoardPower(MAX17048(RegisterBus({0x36: gauge_registers()})), SocThermal(zone))
    assert power.battery_percent() == 75.5
    assert power.temperature_c() == 71.0
    st_ = os.statvfs(tmp_path)
    assert abs(power.free_bytes(str(tmp_path)) - st_.f_bavail * st_.f_frsize) < 64 * 1024 * 1024
    assert power.minutes_left() > 0


class SystemClock:
    def __init__(self, now):
        self.now = now

    def set(self, ns):
        self.now = ns


def test_rtc_clock_sets_system_and_rtc():
    bus = RegisterBus({0x68: ds3231_registers()})
    system = SystemClock(parse_utc("2026-01-01T00:00:00.000000Z"))
    clock = RtcClock(DS3231(bus), set_system_clock=system.set, now_ns=lambda: system.now)
    target = parse_utc("2026-11-27T05:00:00.250000Z")
    clock.set_time_ns(target)
    assert clock.time_ns() == target
    assert DS3231(bus).read_time_ns() == parse_utc("2026-11-27T05:00:00.000000Z")
    assert clock.monotonic_ns() > 0


def test_rtc_clock_restore_at_boot():
    bus = RegisterBus({0x68: ds3231_registers()})
    rtc = DS3231(bus)
    rtc.set_time_ns(parse_utc("2026-11-27T05:00:00.000000Z"))
    system = SystemClock(parse_utc("2026-11-20T18:00:00.000000Z"))  # last shutdown time
    clock = RtcClock(rtc, set_system_clock=system.set, now_ns=lambda: system.now)
    assert clock.restore() is True
    assert system.now == parse_utc("2026-11-27T05:00:00.000000Z")
    assert clock.restore() is False  # already right: not touched again


def test_rtc_clock_restore_refuses_a_stopped_rtc():
    system = SystemClock(5)
    clock = RtcClock(
        DS3231(RegisterBus({0x68: ds3231_registers()})),
        set_system_clock=system.set,
        now_ns=lambda: system.now,
    )
    with pytest.raises(RtcError):
        clock.restore()
    assert system.now == 5


class KernelRtc:
    """The /dev/rtc0 ioctls of the kernel's rtc-ds1307 driver (the seam LinuxRtc calls)."""

    def __init__(self):
        self.tm = None

    def __call__(self, fd, request, arg):
        assert fd >= 0
        if request == rtc_mod.RTC_SET_TIME:
            self.tm = struct.unpack("9i", arg)
            return arg
        if request == rtc_mod.RTC_RD_TIME:
            if self.tm is None:
                raise OSError(22, "Invalid argument")
            return struct.pack("9i", *self.tm)
        raise OSError(25, "Inappropriate ioctl for device")


def test_linux_rtc_ioctls(tmp_path):
    dev = tmp_path / "rtc0"
    dev.write_bytes(b"")
    kernel = KernelRtc()
    rtc = LinuxRtc(dev, ioctl=kernel)
    with pytest.raises(RtcError, match="oscillator stopped"):
        rtc.read_time_ns()
    rtc.set_time_ns(parse_utc("2026-11-27T05:06:07.000000Z"))
    # struct rtc_time: month 0-based, year since 1900, Friday = 5
    assert kernel.tm[:7] == (7, 6, 5, 27, 10, 126, 5)
    assert rtc.read_time_ns() == parse_utc("2026-11-27T05:06:07.000000Z")


def test_linux_rtc_missing_device(tmp_path):
    with pytest.raises(RtcError, match="rtc9"):
        LinuxRtc(tmp_path / "rtc9").read_time_ns()


def test_ioctl_numbers_match_linux_rtc_h():
    assert rtc_mod.RTC_RD_TIME == 0x80247009
    assert rtc_mod.RTC_SET_TIME == 0x4024700A


def test_open_i2c_bus_without_smbus2_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "smbus2", None)
    with pytest.raises(ImportError, match="smbus2"):
        open_i2c_bus(1)


def test_device_power_checks_the_gauge(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("40000\n")
    power = device_power(RegisterBus({0x36: gauge_registers()}), str(zone))
    assert (power.battery_percent(), power.temperature_c()) == (75.5, 40.0)
    with pytest.raises(OSError):
        device_power(RegisterBus({}), str(zone))  # no chip at 0x36: fail at start


def test_device_clock_uses_the_kernel_rtc(tmp_path):
    clock = device_clock(str(tmp_path / "rtc0"))
    assert isinstance(clock.rtc, LinuxRtc)
    with pytest.raises(RtcError):
        clock.restore()  # no such device: an error, never a silent wrong time
