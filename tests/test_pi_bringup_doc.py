"""docs/pi-bringup.md's wiring table says what hw/pinmap.py and the Pi header say."""

from __future__ import annotations

import re
from pathlib import Path

from test_hw_schematic import HEADER_PIN

from hw.pinmap import ALL_NETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "pi-bringup.md"


def wiring_rows() -> dict[str, tuple[int, int]]:
    """Net -> (BCM GPIO, header pin) from the table, splitting ``A / B`` rows."""
    rows: dict[str, tuple[int, int]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"[\d /]+", cells[1]):
            continue
        nets, gpios, pins = (c.split(" / ") for c in cells[:3])
        for net, gpio, pin in zip(nets, gpios, pins, strict=True):
            rows[net] = (int(gpio), int(pin))
    return rows


def test_every_net_is_wired_as_the_pin_map_says() -> None:
    rows = wiring_rows()
    assert set(rows) == set(ALL_NETS)
    for net, (gpio, pin) in rows.items():
        assert gpio == ALL_NETS[net], f"{net}: doc says GPIO{gpio}, pin map GPIO{ALL_NETS[net]}"
        assert pin == HEADER_PIN[gpio], f"{net}: GPIO{gpio} is header pin {HEADER_PIN[gpio]}"
