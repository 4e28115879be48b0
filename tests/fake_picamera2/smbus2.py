"""The camera board's I2C bus 1 for tests: a MAX17048 fuel gauge at 0x36 (registers
big-endian, as the chip sends them), state of charge from ``FAKE_BOARD_BATTERY`` (%)."""

from __future__ import annotations

import os


class SMBus:
    def __init__(self, bus: int = 1) -> None:
        if bus != 1:
            raise FileNotFoundError(f"/dev/i2c-{bus}")
        percent = float(os.environ.get("FAKE_BOARD_BATTERY", "80"))
        self.registers = {
            0x02: int(3.9 / 78.125e-6),  # VCELL
            0x04: int(percent * 256),  # SOC
            0x08: 0x0012,  # VERSION
            0x0C: 0x971C,  # CONFIG
            0x16: (-int(11 / 0.208)) & 0xFFFF,  # CRATE: discharging at 11 %/h
        }

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        if address != 0x36:
            raise OSError(121, "Remote I/O error")
        value = self.registers.get(register, 0)
        return [(value >> 8) & 0xFF, value & 0xFF][:length]

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        if address != 0x36:
            raise OSError(121, "Remote I/O error")
        self.registers[register] = (data[0] << 8) | data[1]

    def close(self) -> None:
        pass
