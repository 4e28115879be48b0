"""The camera board's I2S amplifier for tests: pyaudio's output streams, played in real
time (the announcement takes as long as on the device) into nowhere."""

from __future__ import annotations

import time

paInt16 = 8


class _Stream:
    def __init__(self, rate: int, channels: int, width: int) -> None:
        self.bytes_per_second = rate * channels * width

    def write(self, data: bytes) -> None:
        time.sleep(len(data) / self.bytes_per_second)

    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        pass


class PyAudio:
    def get_format_from_width(self, width: int) -> int:
        return width

    def open(self, format: int, channels: int, rate: int, output: bool = False, **kw) -> _Stream:
        if not output:
            raise OSError(-9996, "Invalid input device (the board's microphone is ALSA's)")
        return _Stream(rate, channels, format)

    def terminate(self) -> None:
        pass
