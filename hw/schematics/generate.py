#!/usr/bin/env python3
"""Write ``bodycam.kicad_sch``, the KiCad 9 schematic of the camera unit, from the tables below.

Why a generator: the schematic is reviewed as a parts-and-nets table in this file (one line
per part, every pin named), diffs stay readable, and the nets of the GPIO pins are taken
from ``hw/pinmap.py`` itself, so the schematic cannot drift from the pin map. The
schematic test re-parses the written file independently; ``scripts/export-schematics``
runs this, then ``kicad-cli`` for ERC, PDF, SVG, netlist and the BOM.

Drawing style: every pin gets a short wire stub ending in a net label (or a no-connect
flag); symbols are boxes with pins left and right. Plain but unambiguous. UUIDs are
derived from names, so regenerating an unchanged design gives an identical file.

Usage: hw/schematics/generate.py [--output FILE] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from hw.pinmap import ALL_NETS  # noqa: E402

GRID = 2.54
NAMESPACE = uuid.UUID("7d0c3c5e-2a47-4b53-9f1e-6f1b0c9e5a10")
ROOT_UUID = str(uuid.uuid5(NAMESPACE, "root"))
PROJECT = "bodycam"
LIB = "bodycam"
NC = None  # a pin left unconnected on purpose (gets a no-connect flag)

# The Raspberry Pi 40-pin header: physical pin -> signal (BCM GPIO numbers).
HEADER = {
    1: "3V3",
    2: "5V",
    3: 2,
    4: "5V",
    5: 3,
    6: "GND",
    7: 4,
    8: 14,
    9: "GND",
    10: 15,
    11: 17,
    12: 18,
    13: 27,
    14: "GND",
    15: 22,
    16: 23,
    17: "3V3",
    18: 24,
    19: 10,
    20: "GND",
    21: 9,
    22: 25,
    23: 11,
    24: 8,
    25: "GND",
    26: 7,
    27: 0,
    28: 1,
    29: 5,
    30: "GND",
    31: 6,
    32: 12,
    33: 13,
    34: "GND",
    35: 19,
    36: 16,
    37: 26,
    38: 20,
    39: "GND",
    40: 21,
}


@dataclass
class Pin:
    number: str
    name: str
    type: str = "passive"  # KiCad electrical type


@dataclass
class SymbolDef:
    """A box symbol: ``left`` and ``right`` are pin columns top to bottom (None = gap)."""

    name: str
    prefix: str
    description: str
    left: list[Pin | None]
    right: list[Pin | None]
    width: float = 10.16
    power_flag: bool = False

    def __post_init__(self) -> None:
        # Wide enough for the pin names of both columns (about 1 mm per character).
        def longest(column):
            return max((len(p.name) for p in column if p and p.name != "~"), default=0)

        need = (longest(self.left) + longest(self.right)) * 1.05 + 4
        steps = -(-need // (2 * GRID))
        self.width = max(self.width, steps * 2 * GRID)

    @property
    def rows(self) -> int:
        return max(len(self.left), len(self.right), 1)

    def pins(self):
        """(pin, x, y, side) in library coordinates (y up), x at the pin's outer end."""
        if self.power_flag:  # one hidden pin at the symbol's origin
            yield self.right[0], 0.0, 0.0, "R"
            return
        top = (self.rows - 1) * GRID / 2
        for side, column in (("L", self.left), ("R", self.right)):
            x = -(self.width / 2 + GRID) if side == "L" else self.width / 2 + GRID
            for i, pin in enumerate(column):
                if pin is not None:
                    yield pin, x, round(top - i * GRID, 4), side


def P(number, name=None, type="passive"):
    return Pin(str(number), name or str(number), type)


def two_pin(name, prefix, description, a="1", b="2", names=("~", "~"), width=5.08):
    return SymbolDef(name, prefix, description, [P(a, names[0])], [P(b, names[1])], width)


def _pi_symbol() -> SymbolDef:
    def header_pin(n: int) -> Pin:
        sig = HEADER[n]
        if sig == "3V3":
            return P(n, "3V3", "power_out" if n == 1 else "passive")
        if sig == "5V":
            return P(n, "5V", "power_in")
        if sig == "GND":
            return P(n, "GND")
        return P(n, f"GPIO{sig}", "bidirectional")

    csi = [
        "GND",
        "CAM_D0_N",
        "CAM_D0_P",
        "GND",
        "CAM_D1_N",
        "CAM_D1_P",
        "GND",
        "CAM_C_N",
        "CAM_C_P",
        "GND",
        "CAM_D2_N",
        "CAM_D2_P",
        "GND",
        "CAM_D3_N",
        "CAM_D3_P",
        "GND",
        "CAM_IO0",
        "CAM_IO1",
        "GND",
        "CAM_SCL",
        "CAM_SDA",
        "CAM_3V3",
    ]
    usb = ["VBUS", "D-", "D+", "ID", "GND"]
    left = [header_pin(n) for n in range(1, 41, 2)] + [None]
    left += [P(f"CSI{i}", name) for i, name in enumerate(csi, 1)]
    right = [header_pin(n) for n in range(2, 41, 2)] + [None]
    right += [P(f"USB{i}", "USB_" + name) for i, name in enumerate(usb, 1)]
    return SymbolDef(
        "RPi_Zero_2W",
        "M",
        "Raspberry Pi Zero 2 W: 40-pin header (J8), 22-pin CSI camera connector, USB OTG data port",
        left,
        right,
        20.32,
    )


SYMBOLS = {
    s.name: s
    for s in [
        _pi_symbol(),
        SymbolDef(
            "Camera_Module_3",
            "J",
            "Raspberry Pi Camera Module 3, 15-pin CSI-2 FFC",
            [
                P(1, "GND"),
                P(2, "CAM_D0_N"),
                P(3, "CAM_D0_P"),
                P(4, "GND"),
                P(5, "CAM_D1_N"),
                P(6, "CAM_D1_P"),
                P(7, "GND"),
                P(8, "CAM_CK_N"),
            ],
            [
                P(9, "CAM_CK_P"),
                P(10, "GND"),
                P(11, "CAM_IO0"),
                P(12, "CAM_IO1"),
                P(13, "CAM_SCL"),
                P(14, "CAM_SDA"),
                P(15, "CAM_3V3", "power_in"),
            ],
            12.7,
        ),
        SymbolDef(
            "USB_C_USB2",
            "J",
            "USB-C receptacle, USB 2.0 (16 pins + shield)",
            [
                P("A4", "VBUS"),
                P("A9", "VBUS"),
                P("B4", "VBUS"),
                P("B9", "VBUS"),
                P("A5", "CC1"),
                P("B5", "CC2"),
                P("A8", "SBU1"),
                P("B8", "SBU2"),
            ],
            [
                P("A6", "D+"),
                P("B6", "D+"),
                P("A7", "D-"),
                P("B7", "D-"),
                P("A1", "GND"),
                P("A12", "GND"),
                P("B1", "GND"),
                P("B12", "GND"),
                P("S1", "SHIELD"),
            ],
            10.16,
        ),
        SymbolDef(
            "MCP73831",
            "U",
            "Single-cell Li-ion/LiPo linear charger, 500 mA",
            [P(4, "VDD", "power_in"), P(5, "PROG", "passive"), P(1, "STAT", "tri_state")],
            [P(3, "VBAT", "power_out"), P(2, "VSS", "power_in")],
            10.16,
        ),
        SymbolDef(
            "TPS61023",
            "U",
            "Synchronous boost converter 0.5-5.5 V in, 3.7 A valley limit",
            [P(3, "VIN", "power_in"), P(2, "EN", "input"), P(4, "GND", "power_in")],
            [P(6, "SW", "passive"), P(5, "VOUT", "power_out"), P(1, "FB", "input")],
            10.16,
        ),
        SymbolDef(
            "MAX17048",
            "U",
            "1-cell ModelGauge fuel gauge, I2C 0x36",
            [
                P(2, "CELL", "input"),
                P(3, "VDD", "power_in"),
                P(1, "CTG", "passive"),
                P(6, "QSTRT", "input"),
                P(4, "GND", "power_in"),
            ],
            [
                P(8, "SDA", "bidirectional"),
                P(7, "SCL", "input"),
                P(5, "~{ALRT}", "open_collector"),
                P(9, "EP", "passive"),
            ],
            12.7,
        ),
        SymbolDef(
            "DS3231SN",
            "U",
            "Extremely accurate I2C RTC with TCXO, I2C 0x68",
            [
                P(2, "VCC", "power_in"),
                P(14, "VBAT", "power_in"),
                P(4, "~{RST}", "open_collector"),
                P(1, "32KHZ", "open_collector"),
                P(13, "GND", "power_in"),
            ]
            + [P(n, "NC/GND", "passive") for n in range(5, 9)],
            [
                P(15, "SDA", "bidirectional"),
                P(16, "SCL", "input"),
                P(3, "~{INT}/SQW", "open_collector"),
            ]
            + [P(n, "NC/GND", "passive") for n in range(9, 13)],
            12.7,
        ),
        SymbolDef(
            "ICS-43434",
            "U",
            "I2S MEMS microphone, 24-bit, bottom port",
            [P(5, "VDD", "power_in"), P(2, "L/R", "input"), P(3, "GND", "power_in")],
            [P(4, "SCK", "input"), P(1, "WS", "input"), P(6, "SD", "tri_state")],
            10.16,
        ),
        SymbolDef(
            "MAX98357A",
            "U",
            "I2S class-D mono amplifier, 3.2 W",
            [
                P(7, "VDD", "power_in"),
                P(8, "VDD", "power_in"),
                P(16, "BCLK", "input"),
                P(14, "LRCLK", "input"),
                P(1, "DIN", "input"),
                P(4, "SD_MODE", "input"),
                P(2, "GAIN_SLOT", "input"),
            ],
            [
                P(9, "OUTP", "output"),
                P(10, "OUTN", "output"),
                P(3, "GND", "power_in"),
                P(11, "GND", "power_in"),
                P(15, "GND", "power_in"),
                P(17, "EP", "passive"),
                P(5, "NC", "no_connect"),
                P(6, "NC", "no_connect"),
                P(12, "NC", "no_connect"),
                P(13, "NC", "no_connect"),
            ],
            12.7,
        ),
        SymbolDef("Q_NPN_BEC", "Q", "NPN transistor", [P(1, "B")], [P(3, "C"), P(2, "E")], 5.08),
        SymbolDef("Q_PMOS_GSD", "Q", "P-channel MOSFET", [P(1, "G")], [P(3, "D"), P(2, "S")], 5.08),
        two_pin("R", "R", "Resistor"),
        two_pin("C", "C", "Capacitor"),
        two_pin("L", "L", "Inductor"),
        two_pin("LED", "D", "Light emitting diode", names=("A", "K")),
        two_pin("D", "D", "Diode", names=("A", "K")),
        two_pin("SW_Push", "SW", "Momentary push button"),
        SymbolDef(
            "SW_SPDT",
            "SW",
            "Slide switch, single pole double throw",
            [P(2, "COM")],
            [P(1, "A"), P(3, "B")],
            5.08,
        ),
        two_pin("Buzzer", "BZ", "Active buzzer (built-in oscillator)", names=("+", "-")),
        two_pin("Conn_2", "J", "2-pin connector"),
        two_pin("Battery_Cell", "BT", "Coin cell holder", names=("+", "-")),
        SymbolDef("Module", "W", "Off-board part (cable, battery, speaker)", [], [], 10.16),
        SymbolDef(
            "PWR_FLAG",
            "#FLG",
            "Marks a net as driven by a power source",
            [],
            [P(1, "pwr", "power_out")],
            2.54,
            power_flag=True,
        ),
    ]
}


@dataclass
class Part:
    ref: str
    symbol: str
    value: str
    mpn: str
    manufacturer: str
    nets: dict[str, str | None] = field(default_factory=dict)  # pin number -> net
    footprint: str = ""
    on_board: bool = True


def gpio_net(bcm: int) -> str | None:
    """The pin map's net on a BCM GPIO (None: unused, left unconnected)."""
    names = [net for net, n in ALL_NETS.items() if n == bcm]
    return names[0] if names else None


def _pi_nets() -> dict[str, str | None]:
    nets: dict[str, str | None] = {}
    for n, sig in HEADER.items():
        nets[str(n)] = {"3V3": "+3V3", "5V": "+5V", "GND": "GND"}.get(sig) or gpio_net(sig)
    csi = {
        1: "GND",
        2: "CSI_D0_N",
        3: "CSI_D0_P",
        4: "GND",
        5: "CSI_D1_N",
        6: "CSI_D1_P",
        7: "GND",
        8: "CSI_CK_N",
        9: "CSI_CK_P",
        10: "GND",
        13: "GND",
        16: "GND",
        17: "CAM_IO0",
        18: "CAM_IO1",
        19: "GND",
        20: "CAM_SCL",
        21: "CAM_SDA",
        22: "+3V3",
    }
    for i in range(1, 23):
        nets[f"CSI{i}"] = csi.get(i)  # lanes 2 and 3 do not exist on a Zero: NC
    nets.update({"USB1": NC, "USB2": "USB_DM", "USB3": "USB_DP", "USB4": NC, "USB5": "GND"})
    return nets


def yageo(value: str, code: str) -> tuple[str, str, str]:
    return value, f"RC0603FR-07{code}L", "Yageo"


R0603 = "Resistor_SMD:R_0603_1608Metric"
C0603 = "Capacitor_SMD:C_0603_1608Metric"
C0805 = "Capacitor_SMD:C_0805_2012Metric"


def R(ref, a, b, value, code):
    v, mpn, mfr = yageo(value, code)
    return Part(ref, "R", v, mpn, mfr, {"1": a, "2": b}, R0603)


def C(ref, a, b, value, mpn, footprint=C0603):
    return Part(ref, "C", value, mpn, "Samsung Electro-Mechanics", {"1": a, "2": b}, footprint)


PARTS: list[Part] = [
    Part(
        "M1",
        "RPi_Zero_2W",
        "Raspberry Pi Zero 2 W",
        "SC0510",
        "Raspberry Pi Ltd",
        _pi_nets(),
        "bodycam:RPi_Zero_2W_Socket",
    ),
    Part(
        "J1",
        "Camera_Module_3",
        "Camera Module 3",
        "SC0872",
        "Raspberry Pi Ltd",
        {
            "1": "GND",
            "2": "CSI_D0_N",
            "3": "CSI_D0_P",
            "4": "GND",
            "5": "CSI_D1_N",
            "6": "CSI_D1_P",
            "7": "GND",
            "8": "CSI_CK_N",
            "9": "CSI_CK_P",
            "10": "GND",
            "11": "CAM_IO0",
            "12": "CAM_IO1",
            "13": "CAM_SCL",
            "14": "CAM_SDA",
            "15": "+3V3",
        },
        on_board=False,
    ),
    Part("W1", "Module", "Camera cable 22-to-15 pin, 150 mm", "3157", "Adafruit", on_board=False),
    # Dock cable: USB-C, power in and USB 2.0 data to the Pi's OTG port (gadget serial).
    Part(
        "J2",
        "USB_C_USB2",
        "USB-C receptacle",
        "USB4105-GF-A",
        "GCT",
        {
            "A4": "VBUS",
            "A9": "VBUS",
            "B4": "VBUS",
            "B9": "VBUS",
            "A5": "USB_CC1",
            "B5": "USB_CC2",
            "A8": NC,
            "B8": NC,
            "A6": "USB_DP",
            "B6": "USB_DP",
            "A7": "USB_DM",
            "B7": "USB_DM",
            "A1": "GND",
            "A12": "GND",
            "B1": "GND",
            "B12": "GND",
            "S1": "GND",
        },
        "Connector_USB:USB_C_Receptacle_GCT_USB4105-xx-A_16P_TopMnt_Horizontal",
    ),
    R("R1", "USB_CC1", "GND", "5.1k", "5K1"),  # UFP (sink) advertisement on CC
    R("R2", "USB_CC2", "GND", "5.1k", "5K1"),
    # Charger and load sharing: VBUS feeds the system through D1 while the cell charges;
    # without VBUS, Q1 connects the cell to the system.
    Part(
        "U1",
        "MCP73831",
        "MCP73831-2 4.20 V",
        "MCP73831T-2ACI/OT",
        "Microchip",
        {"4": "VBUS", "5": "CHG_PROG", "1": NC, "3": "VBAT", "2": "GND"},
        "Package_TO_SOT_SMD:SOT-23-5",
    ),
    R("R3", "CHG_PROG", "GND", "2k", "2K"),  # 500 mA charge current
    C("C1", "VBUS", "GND", "4.7uF", "CL10A475KO8NNNC"),
    C("C2", "VBAT", "GND", "4.7uF", "CL10A475KO8NNNC"),
    Part(
        "D1",
        "D",
        "SS14 Schottky",
        "SS14-E3/61T",
        "Vishay",
        {"1": "VBUS", "2": "VSYS"},
        "Diode_SMD:D_SMA",
    ),
    Part(
        "Q1",
        "Q_PMOS_GSD",
        "DMG2305UX",
        "DMG2305UX-7",
        "Diodes Inc",
        {"1": "VBUS", "3": "VBAT", "2": "VSYS"},
        "Package_TO_SOT_SMD:SOT-23",
    ),
    R("R4", "VBUS", "GND", "100k", "100K"),  # pulls Q1's gate low when undocked
    Part(
        "J3",
        "Conn_2",
        "Battery JST-PH",
        "S2B-PH-K-S",
        "JST",
        {"1": "VBAT", "2": "GND"},
        "Connector_JST:JST_PH_S2B-PH-K_1x02_P2.00mm_Horizontal",
    ),
    Part("W2", "Module", "LiPo cell 3.7 V 2000 mAh, JST-PH", "2011", "Adafruit", on_board=False),
    # 5 V for the Pi, the amplifier and the buzzer.
    Part(
        "U2",
        "TPS61023",
        "TPS61023 5.0 V",
        "TPS61023DRLR",
        "Texas Instruments",
        {"3": "VSYS", "2": "BOOST_EN", "4": "GND", "6": "BOOST_SW", "5": "+5V", "1": "BOOST_FB"},
        "Package_TO_SOT_SMD:SOT-563",
    ),
    # The power switch: EN to VSYS (on) or to ground (off), never floating. Off cuts the
    # 5 V rail; the recorder's recovery signs the open segment at the next boot.
    Part(
        "SW4",
        "SW_SPDT",
        "POWER",
        "JS102011SAQN",
        "C&K",
        {"2": "BOOST_EN", "1": "VSYS", "3": "GND"},
        "Button_Switch_SMD:SW_SPDT_CK_JS102011SAQN",
    ),
    Part(
        "L1",
        "L",
        "1uH 5.4A",
        "XAL4020-102MEB",
        "Coilcraft",
        {"1": "VSYS", "2": "BOOST_SW"},
        "Inductor_SMD:L_Coilcraft_XAL4020-XXX",
    ),
    R("R5", "+5V", "BOOST_FB", "732k", "732K"),  # VOUT = 0.6 V * (1 + 732k/100k) = 4.99 V
    R("R6", "BOOST_FB", "GND", "100k", "100K"),
    C("C3", "VSYS", "GND", "10uF", "CL21A106KAYNNNE", C0805),
    C("C4", "+5V", "GND", "22uF", "CL21A226MAQNNNE", C0805),
    # Fuel gauge on I2C; ALRT pulls FUEL_ALERT low below the threshold.
    Part(
        "U3",
        "MAX17048",
        "MAX17048",
        "MAX17048G+T10",
        "Analog Devices",
        {
            "2": "VBAT",
            "3": "VBAT",
            "1": "GND",
            "6": "GND",
            "4": "GND",
            "8": "I2C_SDA",
            "7": "I2C_SCL",
            "5": "FUEL_ALERT",
            "9": "GND",
        },
        "Package_DFN_QFN:TDFN-8-1EP_2x2mm_P0.5mm_EP0.8x1.2mm",
    ),
    C("C5", "VBAT", "GND", "1uF", "CL10A105KB8NNNC"),
    R("R7", "FUEL_ALERT", "+3V3", "10k", "10K"),
    # Battery-backed RTC: the Pi has no clock of its own.
    Part(
        "U4",
        "DS3231SN",
        "DS3231SN",
        "DS3231SN#",
        "Analog Devices",
        {
            "2": "+3V3",
            "14": "RTC_VBAT",
            "4": NC,
            "1": NC,
            "13": "GND",
            "15": "I2C_SDA",
            "16": "I2C_SCL",
            "3": "RTC_INT",
            **{str(n): "GND" for n in range(5, 13)},
        },
        "Package_SO:SOIC-16W_7.5x10.3mm_P1.27mm",
    ),
    C("C6", "+3V3", "GND", "100nF", "CL10B104KB8NNNC"),
    R("R8", "RTC_INT", "+3V3", "10k", "10K"),
    Part(
        "BT1",
        "Battery_Cell",
        "CR2032 holder",
        "3034",
        "Keystone",
        {"1": "RTC_VBAT", "2": "GND"},
        "Battery:BatteryHolder_Keystone_3034_1x20mm",
    ),
    Part("W3", "Module", "CR2032 lithium coin cell", "CR-2032/BN", "Panasonic", on_board=False),
    # Audio: I2S microphone in, I2S amplifier out (the Art. 6 announcement).
    Part(
        "U5",
        "ICS-43434",
        "ICS-43434",
        "ICS-43434",
        "TDK InvenSense",
        {"5": "+3V3", "2": "GND", "3": "GND", "4": "I2S_BCLK", "1": "I2S_LRCLK", "6": "I2S_DIN"},
        "bodycam:InvenSense_LGA-6_3.5x2.65mm",
    ),
    C("C7", "+3V3", "GND", "100nF", "CL10B104KB8NNNC"),
    Part(
        "U6",
        "MAX98357A",
        "MAX98357A",
        "MAX98357AETE+T",
        "Analog Devices",
        {
            "7": "+5V",
            "8": "+5V",
            "16": "I2S_BCLK",
            "14": "I2S_LRCLK",
            "1": "I2S_DOUT",
            "4": "AMP_SD_MODE",
            "2": NC,
            "9": "SPK_P",
            "10": "SPK_N",
            "3": "GND",
            "11": "GND",
            "15": "GND",
            "17": "GND",
            "5": NC,
            "6": NC,
            "12": NC,
            "13": NC,
        },
        "Package_DFN_QFN:TQFN-16-1EP_3x3mm_P0.5mm_EP1.23x1.23mm",
    ),
    R("R9", "+5V", "AMP_SD_MODE", "1M", "1M"),  # with the internal 100k: (L+R)/2 mono
    C("C8", "+5V", "GND", "10uF", "CL21A106KAYNNNE", C0805),
    C("C9", "+5V", "GND", "100nF", "CL10B104KB8NNNC"),
    Part(
        "J4",
        "Conn_2",
        "Speaker JST-PH",
        "S2B-PH-K-S",
        "JST",
        {"1": "SPK_P", "2": "SPK_N"},
        "Connector_JST:JST_PH_S2B-PH-K_1x02_P2.00mm_Horizontal",
    ),
    Part("W4", "Module", "Speaker 8 ohm 1 W, 28 x 40 mm", "3968", "Adafruit", on_board=False),
    # Buttons: active low, the Pi's internal pull-ups.
    Part(
        "SW1",
        "SW_Push",
        "RECORD",
        "B3F-1000",
        "Omron",
        {"1": "BTN_RECORD", "2": "GND"},
        "Button_Switch_THT:SW_PUSH_6mm",
    ),
    Part(
        "SW2",
        "SW_Push",
        "MARK",
        "B3F-1000",
        "Omron",
        {"1": "BTN_MARK", "2": "GND"},
        "Button_Switch_THT:SW_PUSH_6mm",
    ),
    Part(
        "SW3",
        "SW_Push",
        "FUNCTION",
        "B3F-1000",
        "Omron",
        {"1": "BTN_FUNCTION", "2": "GND"},
        "Button_Switch_THT:SW_PUSH_6mm",
    ),
    # LEDs: GPIO high lights them (about 4 mA through 330 ohm).
    R("R10", "LED_RED", "LED_RED_A", "330", "330R"),
    Part(
        "D2",
        "LED",
        "red",
        "APT2012EC",
        "Kingbright",
        {"1": "LED_RED_A", "2": "GND"},
        "LED_SMD:LED_0805_2012Metric",
    ),
    R("R11", "LED_GREEN", "LED_GREEN_A", "330", "330R"),
    Part(
        "D3",
        "LED",
        "green",
        "APT2012CGCK",
        "Kingbright",
        {"1": "LED_GREEN_A", "2": "GND"},
        "LED_SMD:LED_0805_2012Metric",
    ),
    R("R12", "LED_AMBER", "LED_AMBER_A", "330", "330R"),
    Part(
        "D4",
        "LED",
        "amber 590 nm",
        "APT2012SYCK",
        "Kingbright",
        {"1": "LED_AMBER_A", "2": "GND"},
        "LED_SMD:LED_0805_2012Metric",
    ),
    # Buzzer on 5 V through an NPN low-side switch; R14 keeps it off while the Pi boots.
    R("R13", "BUZZER", "BUZ_B", "1k", "1K"),
    R("R14", "BUZ_B", "GND", "100k", "100K"),
    Part(
        "Q2",
        "Q_NPN_BEC",
        "MMBT3904",
        "MMBT3904LT1G",
        "onsemi",
        {"1": "BUZ_B", "3": "BUZ_K", "2": "GND"},
        "Package_TO_SOT_SMD:SOT-23",
    ),
    Part(
        "BZ1",
        "Buzzer",
        "5 V active buzzer",
        "AI-1223-TWT-5V-2-R",
        "PUI Audio",
        {"1": "+5V", "2": "BUZ_K"},
        "Buzzer_Beeper:Buzzer_12x9.5RM7.6",
    ),
    Part(
        "D5",
        "D",
        "1N4148W",
        "1N4148W-7-F",
        "Diodes Inc",
        {"1": "BUZ_K", "2": "+5V"},
        "Diode_SMD:D_SOD-123",
    ),
]


# --- S-expression writing --------------------------------------------------------------


def q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def num(x: float) -> str:
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def uid(*key) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(map(str, key))))


FONT = "(effects (font (size 1.27 1.27)))"
HIDDEN = "(effects (font (size 1.27 1.27)) (hide yes))"


def lib_symbol(sym: SymbolDef, prefix: str = f"{LIB}:") -> str:
    """The symbol definition, as embedded in lib_symbols (and in bodycam.kicad_sym)."""
    h = (sym.rows - 1) * GRID / 2 + GRID
    out = [f"(symbol {q(prefix + sym.name)}"]
    if sym.power_flag:
        out.append("(power)")
    if sym.power_flag or sym.name in ("R", "C", "L", "SW_Push", "Conn_2", "Module"):
        out.append("(pin_numbers (hide yes))")
    if sym.power_flag or all(p is None or p.name == "~" for p in sym.left + sym.right):
        out.append("(pin_names (offset 0) (hide yes))")
    else:
        out.append("(pin_names (offset 1.016))")
    out.append(f"(exclude_from_sim no) (in_bom {'no' if sym.power_flag else 'yes'}) (on_board yes)")
    ref_y = h + 1.27
    out.append(f'(property "Reference" {q(sym.prefix)} (at 0 {num(ref_y)} 0) {FONT})')
    out.append(f'(property "Value" {q(sym.name)} (at 0 {num(-h - 1.27)} 0) {FONT})')
    out.append(f'(property "Footprint" "" (at 0 0 0) {HIDDEN})')
    out.append(f'(property "Datasheet" "" (at 0 0 0) {HIDDEN})')
    out.append(f'(property "Description" {q(sym.description)} (at 0 0 0) {HIDDEN})')
    w = sym.width / 2
    body = f"(symbol {q(sym.name + '_0_1')} "
    if sym.power_flag:
        body += (
            "(polyline (pts (xy 0 0) (xy 0 1.27) (xy -1.016 1.905) (xy 0 2.54) "
            "(xy 1.016 1.905) (xy 0 1.27)) (stroke (width 0) (type default)) "
            "(fill (type none))))"
        )
    else:
        body += (
            f"(rectangle (start {num(-w)} {num(h - 1.27)}) (end {num(w)} {num(-h + 1.27)}) "
            "(stroke (width 0.254) (type default)) (fill (type background))))"
        )
    out.append(body)
    pins = []
    for pin, x, y, side in sym.pins():
        if sym.power_flag:
            x, y, angle, length = 0, 0, 90, 0
        else:
            angle, length = (0 if side == "L" else 180), GRID
        hide = " (hide yes)" if sym.power_flag else ""
        pins.append(
            f"(pin {pin.type} line (at {num(x)} {num(y)} {angle}) (length {num(length)}){hide} "
            f"(name {q(pin.name)} {FONT}) (number {q(pin.number)} {FONT}))"
        )
    out.append(f"(symbol {q(sym.name + '_1_1')} " + " ".join(pins) + ")")
    out.append("(embedded_fonts no))")
    return "\n    ".join(out)


@dataclass
class Sheet:
    items: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)

    def wire(self, x1, y1, x2, y2):
        self.items.append(
            f"(wire (pts (xy {num(x1)} {num(y1)}) (xy {num(x2)} {num(y2)})) "
            f"(stroke (width 0) (type default)) (uuid {q(uid('wire', x1, y1, x2, y2))}))"
        )

    def label(self, name, x, y, side):
        angle, justify = (180, "right") if side == "L" else (0, "left")
        self.items.append(
            f"(label {q(name)} (at {num(x)} {num(y)} {angle}) "
            f"(effects (font (size 1.27 1.27)) (justify {justify} bottom)) "
            f"(uuid {q(uid('label', name, x, y))}))"
        )

    def no_connect(self, x, y):
        self.items.append(f"(no_connect (at {num(x)} {num(y)}) (uuid {q(uid('nc', x, y))}))")

    def symbol(self, part: Part, sym: SymbolDef, x: float, y: float):
        h = (sym.rows - 1) * GRID / 2 + GRID
        hidden_ref = part.ref.startswith("#")
        fields = [
            ("Reference", part.ref, (x, y - h - 1.27), hidden_ref),
            ("Value", part.value, (x, y + h + 1.27), hidden_ref),
            ("Footprint", part.footprint, (x, y), True),
            ("Datasheet", "", (x, y), True),
            ("Description", sym.description, (x, y), True),
        ]
        if not sym.power_flag:
            fields += [
                ("Manufacturer", part.manufacturer, (x, y), True),
                ("MPN", part.mpn, (x, y), True),
            ]
        props = " ".join(
            f"(property {q(k)} {q(v)} (at {num(px)} {num(py)} 0) {HIDDEN if hide else FONT})"
            for k, v, (px, py), hide in fields
        )
        pins = " ".join(
            f"(pin {q(p.number)} (uuid {q(uid('pin', part.ref, p.number))}))"
            for p, *_ in sym.pins()
        )
        in_bom = "no" if sym.power_flag else "yes"
        on_board = "yes" if part.on_board else "no"
        self.items.append(
            f"(symbol (lib_id {q(LIB + ':' + sym.name)}) (at {num(x)} {num(y)} 0) (unit 1) "
            f"(exclude_from_sim no) (in_bom {in_bom}) (on_board {on_board}) (dnp no) "
            f"(uuid {q(uid('symbol', part.ref))}) {props} {pins} "
            f"(instances (project {q(PROJECT)} (path {q('/' + ROOT_UUID)} "
            f"(reference {q(part.ref)}) (unit 1)))))"
        )


def check_design(parts: list[Part]) -> dict[str, list[tuple[str, str]]]:
    """Every pin assigned, every net on at least two pins; returns net -> [(ref, pin)]."""
    nets: dict[str, list[tuple[str, str]]] = {}
    refs = set()
    for part in parts:
        if part.ref in refs:
            raise ValueError(f"{part.ref}: duplicate reference")
        refs.add(part.ref)
        sym = SYMBOLS[part.symbol]
        numbers = [p.number for p, *_ in sym.pins()]
        missing = set(numbers) - set(part.nets)
        extra = set(part.nets) - set(numbers)
        if missing or extra:
            raise ValueError(
                f"{part.ref}: pins missing {sorted(missing)} / unknown {sorted(extra)}"
            )
        for number, net in part.nets.items():
            if net is not None:
                nets.setdefault(net, []).append((part.ref, number))
    lonely = {n: p for n, p in nets.items() if len(p) < 2}
    if lonely:
        raise ValueError(f"nets on a single pin: {lonely}")
    for net in ALL_NETS:
        if net not in nets:
            raise ValueError(f"pin map net {net} is not in the schematic")
    return nets


def power_flags(parts: list[Part]) -> list[Part]:
    """A PWR_FLAG on each net that has power inputs but no power output (what ERC wants)."""
    types: dict[str, set[str]] = {}
    for part in parts:
        sym = SYMBOLS[part.symbol]
        for pin, *_ in sym.pins():
            net = part.nets.get(pin.number)
            if net:
                types.setdefault(net, set()).add(pin.type)
    flagged = sorted(n for n, t in types.items() if "power_in" in t and "power_out" not in t)
    return [
        Part(f"#FLG{i:02d}", "PWR_FLAG", "PWR_FLAG", "", "", {"1": net})
        for i, net in enumerate(flagged, 1)
    ]


def layout(parts: list[Part], paper: tuple[str, float, float]) -> list[tuple[Part, float, float]]:
    """The first part (the Pi) at the left; the others shelf-packed to its right."""

    def snap(v):
        return round(v / GRID) * GRID

    def size(part):
        sym = SYMBOLS[part.symbol]
        labels = [len(n or "") for n in part.nets.values()] or [0]
        side = max(labels) * 1.1 + 2 * GRID
        return sym.width + 2 * GRID + 2 * side + GRID, sym.rows * GRID + 3.5 * GRID

    placed = []
    width, height = size(parts[0])
    placed.append((parts[0], snap(15 + width / 2), snap(15 + height / 2)))
    x0 = y = 15.0
    x0 += width
    x, shelf = x0, 0.0
    for part in parts[1:]:
        width, height = size(part)
        if x + width > paper[1] - 10:
            x, y, shelf = x0, y + shelf, 0.0
        placed.append((part, snap(x + width / 2), snap(y + height / 2)))
        x += width
        shelf = max(shelf, height)
    if y + shelf > paper[2] - 40:  # keep clear of the title block
        raise ValueError(f"the parts do not fit on {paper[0]}")
    return placed


PAPER = ("A3", 420.0, 297.0)


def render(parts: list[Part] | None = None) -> str:
    parts = list(PARTS if parts is None else parts)
    check_design(parts)
    parts += power_flags(parts)
    sheet = Sheet()
    for part, cx, cy in layout(parts, PAPER):
        sym = SYMBOLS[part.symbol]
        sheet.symbol(part, sym, cx, cy)
        for pin, px, py, side in sym.pins():
            x, y = cx + px, cy - py  # library y points up, the sheet's y points down
            net = part.nets.get(pin.number)
            if net is None:
                sheet.no_connect(x, y)
                continue
            end = x - GRID if side == "L" else x + GRID
            sheet.wire(x, y, end, y)
            sheet.label(net, end, y, side)
    used = sorted({p.symbol for p in parts})
    libs = "\n    ".join(lib_symbol(SYMBOLS[name]) for name in used)
    body = "\n  ".join(sheet.items)
    return f"""(kicad_sch
  (version 20250114)
  (generator "bodycam_generate")
  (generator_version "9.0")
  (uuid {q(ROOT_UUID)})
  (paper {q(PAPER[0])})
  (title_block
    (title "Bodycam camera unit")
    (rev "1")
    (company "bodycam project")
    (comment 1 "Generated by hw/schematics/generate.py from its parts table and hw/pinmap.py")
    (comment 2 "Net labels at the Pi header are the pin map's nets")
  )
  (lib_symbols
    {libs}
  )
  {body}
  (sheet_instances (path "/" (page "1")))
  (embedded_fonts no)
)
"""


def render_library() -> str:
    """The same symbols as a library file, so KiCad finds them (sym-lib-table)."""
    syms = "\n  ".join(lib_symbol(SYMBOLS[name], prefix="") for name in sorted(SYMBOLS))
    return (
        f'(kicad_symbol_lib\n  (version 20241209)\n  (generator "bodycam_generate")\n'
        f'  (generator_version "9.0")\n  {syms}\n)\n'
    )


SYM_LIB_TABLE = f"""(sym_lib_table
  (version 7)
  (lib (name "{LIB}")(type "KiCad")(uri "${{KIPRJMOD}}/{PROJECT}.kicad_sym")(options "")(descr "The camera unit's symbols, written by generate.py"))
)
"""


def render_project() -> str:
    """The project file: it makes KiCad read sym-lib-table, and sets one ERC severity.

    ``footprint_link_issues`` is ignored because footprint libraries are not part of this
    repository (Debian's kicad package ships none, and the board is not laid out yet):
    the Footprint fields name the intended packages for the BOM and the layout to come.
    """
    project = {
        "erc": {"rule_severities": {"footprint_link_issues": "ignore"}},
        "libraries": {"pinned_footprint_libs": [], "pinned_symbol_libs": []},
        "meta": {"filename": f"{PROJECT}.kicad_pro", "version": 3},
        "sheets": [[ROOT_UUID, "Root"]],
        "text_variables": {},
    }
    return json.dumps(project, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / f"{PROJECT}.kicad_sch",
        help="the schematic to write; its .kicad_sym, .kicad_pro and "
        "sym-lib-table go beside it (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed files differ from what would be written",
    )
    args = parser.parse_args(argv)
    outputs = {
        args.output: render(),
        args.output.with_suffix(".kicad_sym"): render_library(),
        args.output.with_suffix(".kicad_pro"): render_project(),
        args.output.parent / "sym-lib-table": SYM_LIB_TABLE,
    }
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path}: out of date; run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
