"""The carrier board's parts, each read through the driver the recorder uses.

Marked ``hardware``: they run on a camera (``pytest -m hardware`` on the Pi, see
docs/pi-bringup.md) and are skipped everywhere else. Each test is one bring-up check, so a
failure names the part to look at: the RTC, the fuel gauge, the SoC sensor, the I2S
microphone's ALSA PCM, the camera module, the buttons.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from pikit import on_a_pi

from hw.pinmap import GPIO, I2C_ADDRESSES

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not on_a_pi(), reason="needs the camera board"),
]
NS = 1_000_000_000
BUILT = time.mktime((2026, 1, 1, 0, 0, 0, 0, 0, 0))  # no RTC this side of it is sane


def test_rtc_keeps_a_time_close_to_the_system_clock() -> None:
    from firmware.drivers import LinuxRtc

    rtc_ns = LinuxRtc("/dev/rtc0").read_time_ns()
    assert rtc_ns / NS > BUILT, "RTC reads a time before 2026: coin cell flat or never set"
    assert abs(rtc_ns - time.time_ns()) < 5 * NS, "RTC and system clock disagree by > 5 s"


def test_fuel_gauge_answers_with_a_plausible_cell() -> None:
    from firmware.drivers import MAX17048, open_i2c_bus

    gauge = MAX17048(open_i2c_bus(1), I2C_ADDRESSES["FUEL_GAUGE"])
    gauge.check()
    assert 3.0 <= gauge.voltage() <= 4.35, f"cell at {gauge.voltage():.2f} V"
    assert 0.0 <= gauge.percent() <= 100.0


def test_soc_temperature_is_read() -> None:
    from firmware.drivers.thermal import SocThermal

    assert 0.0 < SocThermal().temperature_c() < 85.0


def test_microphone_pcm_records_sound() -> None:
    arecord = shutil.which("arecord")
    assert arecord, "alsa-utils missing (scripts/install-pi installs it)"
    proc = subprocess.run(
        [arecord, "-q", "-D", "bodycam_mic", "-f", "S16_LE", "-r", "16000", "-c", "1"]
        + ["-d", "1", "-t", "raw", "-"],
        capture_output=True,
        timeout=10,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace").strip()
    samples = proc.stdout
    assert len(samples) >= 16000 * 2 * 9 // 10, "less than 0.9 s of audio in 1 s"
    assert any(samples[i] for i in range(0, len(samples), 97)), "microphone gives only zeros"


def test_camera_module_is_detected() -> None:
    from picamera2 import Picamera2

    cameras = Picamera2.global_camera_info()
    assert cameras, "libcamera sees no camera: check the CSI cable and camera_auto_detect=1"


@pytest.mark.parametrize("net", ["BTN_RECORD", "BTN_MARK", "BTN_FUNCTION"])
def test_button_reads_released(net: str) -> None:
    from gpiozero import Button

    with Button(GPIO[net]) as button:
        assert not button.is_pressed, f"{net} (GPIO{GPIO[net]}) reads pressed: shorted?"
