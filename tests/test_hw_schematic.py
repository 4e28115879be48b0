"""The schematic against the pin map, parsed from the .kicad_sch itself (no KiCad needed).

The parser here is independent of hw/schematics/generate.py: it reads the S-expressions,
places each symbol's library pins (rotation, mirror, KiCad's y axis), joins wires, labels,
pins and wire crossings into nets, and checks that every pin-map net reaches exactly its
GPIO on the Pi header. Its nets are compared with the netlist KiCad itself exported, and
tests that need kicad-cli (ERC, fresh exports) are skipped where KiCad is not installed.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.pinmap import ALL_NETS

ROOT = Path(__file__).resolve().parent.parent
SCH_DIR = ROOT / "hw" / "schematics"
SCH = SCH_DIR / "bodycam.kicad_sch"
NETLIST = SCH_DIR / "bodycam.net"
BOM = ROOT / "hw" / "bom.csv"
PI_REF = "M1"

# The Raspberry Pi 40-pin header (physical pin of each BCM GPIO), from the Pi's documentation.
HEADER_PIN = {
    2: 3,
    3: 5,
    4: 7,
    14: 8,
    15: 10,
    17: 11,
    18: 12,
    27: 13,
    22: 15,
    23: 16,
    24: 18,
    10: 19,
    9: 21,
    25: 22,
    11: 23,
    8: 24,
    7: 26,
    0: 27,
    1: 28,
    5: 29,
    6: 31,
    12: 32,
    13: 33,
    19: 35,
    16: 36,
    26: 37,
    20: 38,
    21: 40,
}


def _kicad_major() -> int | None:
    if shutil.which("kicad-cli") is None:
        return None
    out = subprocess.run(["kicad-cli", "version"], capture_output=True, text=True, timeout=60)
    m = re.match(r"(\d+)\.", out.stdout.strip())
    return int(m.group(1)) if m else None


needs_kicad = pytest.mark.skipif(
    _kicad_major() != 9, reason="kicad-cli of KiCad 9 is not installed"
)


# --- S-expressions -----------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


class Str(str):
    """A quoted string (so "yes" and yes stay distinguishable)."""


def parse_sexpr(text: str):
    stack: list[list] = [[]]
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip():
                raise ValueError(f"bad S-expression at byte {pos}")
            break
        pos = m.end()
        if m.group(1):
            stack.append([])
        elif m.group(2):
            if len(stack) == 1:
                raise ValueError(f"unbalanced ')' at byte {m.start(2)}")
            done = stack.pop()
            stack[-1].append(done)
        elif m.group(3) is not None:
            stack[-1].append(Str(re.sub(r"\\(.)", r"\1", m.group(3))))
        else:
            stack[-1].append(m.group(4))
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError("unbalanced S-expression")
    return stack[0][0]


def children(node, head):
    return [c for c in node[1:] if isinstance(c, list) and c and c[0] == head]


def child(node, head):
    found = children(node, head)
    return found[0] if found else None


def _dump(node) -> str:
    if isinstance(node, list):
        return "(" + " ".join(_dump(n) for n in node) + ")"
    if isinstance(node, Str):
        return '"' + node.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return node


_atoms = st.from_regex(r"[A-Za-z0-9_.+\-:#~{}/]{1,12}", fullmatch=True)
_strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(Str)
_trees = st.recursive(
    st.one_of(_atoms, _strings), lambda kids: st.lists(kids, max_size=5), max_leaves=30
)


@given(st.lists(_trees, max_size=5).map(lambda kids: ["kicad_sch", *kids]))
def test_sexpr_parser_round_trips(tree):
    parsed = parse_sexpr(_dump(tree))
    assert parsed == tree
    assert _dump(parsed) == _dump(tree)


def test_sexpr_parser_rejects_unbalanced():
    for text in ("(a (b)", "(a))", '(a "open)'):
        with pytest.raises(ValueError):
            parse_sexpr(text)


# --- schematic model ---------------------------------------------------------------------


def key(x: float, y: float) -> tuple[int, int]:
    return round(x * 100), round(y * 100)


class Schematic:
    """Pins, wires and labels of one sheet, and the nets they make."""

    def __init__(self, text: str) -> None:
        tree = parse_sexpr(text)
        if tree[0] != "kicad_sch":
            raise ValueError("not a KiCad schematic")
        self.lib = {}
        for sym in children(child(tree, "lib_symbols"), "symbol"):
            pins = []
            for unit in children(sym, "symbol"):
                for pin in children(unit, "pin"):
                    x, y, *_ = map(float, child(pin, "at")[1:])
                    pins.append(
                        {
                            "type": pin[1],
                            "number": child(pin, "number")[1],
                            "name": child(pin, "name")[1],
                            "x": x,
                            "y": y,
                        }
                    )
            power = child(sym, "power") is not None
            self.lib[sym[1]] = {"pins": pins, "power": power}
        self.parts: dict[str, dict] = {}
        self.pins: list[dict] = []  # each: ref, number, name, type, pos
        self.power_nets: list[tuple[str, tuple[int, int]]] = []
        for sym in children(tree, "symbol"):
            lib_id = child(sym, "lib_id")[1]
            at = child(sym, "at")
            sx, sy = float(at[1]), float(at[2])
            rot = int(float(at[3])) if len(at) > 3 else 0
            mirror = child(sym, "mirror")
            props = {p[1]: p[2] for p in children(sym, "property")}
            ref = props["Reference"]
            on_board = child(sym, "on_board")
            self.parts[ref] = {
                "lib_id": lib_id,
                "props": props,
                "on_board": on_board is None or on_board[1] == "yes",
            }
            for pin in self.lib[lib_id]["pins"]:
                px, py = pin["x"], pin["y"]
                if mirror is not None and mirror[1] == "x":
                    py = -py
                if mirror is not None and mirror[1] == "y":
                    px = -px
                py = -py  # library y points up; sheet y points down
                for _ in range(rot // 90 % 4):  # counter-clockwise on screen
                    px, py = py, -px
                pos = key(sx + px, sy + py)
                self.pins.append({"ref": ref, **pin, "pos": pos})
                if self.lib[lib_id]["power"] and pin["type"] == "power_in":
                    self.power_nets.append((props["Value"], pos))
        self.wires = []
        for wire in children(tree, "wire"):
            (_, x1, y1), (_, x2, y2) = child(wire, "pts")[1:3]
            self.wires.append((key(float(x1), float(y1)), key(float(x2), float(y2))))
        self.labels = []
        for kind in ("label", "global_label", "hierarchical_label"):
            for label in children(tree, kind):
                at = child(label, "at")
                self.labels.append((label[1], key(float(at[1]), float(at[2]))))
        self.no_connects = {
            key(float(n[1][1]), float(n[1][2])) for n in children(tree, "no_connect")
        }
        self._nets()

    def _nets(self) -> None:
        parent: dict = {}

        def find(a):
            parent.setdefault(a, a)
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        def union(a, b):
            parent[find(a)] = find(b)

        points = {p["pos"] for p in self.pins} | {pos for _, pos in self.labels}
        for a, b in self.wires:
            union(a, b)
            points |= {a, b}
        for a, b in self.wires:  # anything touching a wire's run joins it
            for p in points:
                if _on_segment(p, a, b):
                    union(p, a)
        by_name = defaultdict(list)
        for name, pos in self.labels + self.power_nets:
            by_name[name].append(pos)
        for positions in by_name.values():
            for pos in positions[1:]:
                union(pos, positions[0])
        self.net_of_pin = {}
        members = defaultdict(set)
        for pin in self.pins:
            root = find(pin["pos"])
            self.net_of_pin[(pin["ref"], pin["number"])] = root
            members[root].add((pin["ref"], pin["number"]))
        self.members = members
        self.names = defaultdict(set)
        for name, pos in self.labels + self.power_nets:
            self.names[find(pos)].add(name)

    def pin(self, ref: str, name: str) -> dict:
        found = [p for p in self.pins if p["ref"] == ref and p["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{ref} has {len(found)} pins named {name}")
        return found[0]

    def net_named(self, name: str):
        roots = [root for root, names in self.names.items() if name in names]
        return roots[0] if len(roots) == 1 else None


def _on_segment(p, a, b) -> bool:
    (px, py), (ax, ay), (bx, by) = p, a, b
    if (bx - ax) * (py - ay) != (by - ay) * (px - ax):
        return False
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


def pinmap_problems(sch: Schematic) -> list[str]:
    """What a reviewer checks: each pin-map net is on its GPIO of the Pi, and only there."""
    problems = []
    gpio_pins = {
        p["name"]: p for p in sch.pins if p["ref"] == PI_REF and p["name"].startswith("GPIO")
    }
    for net, bcm in ALL_NETS.items():
        pin = gpio_pins.get(f"GPIO{bcm}")
        if pin is None:
            problems.append(f"{net}: the Pi symbol has no GPIO{bcm} pin")
            continue
        if pin["number"] != str(HEADER_PIN[bcm]):
            problems.append(
                f"{net}: GPIO{bcm} is pin {pin['number']}, not header pin {HEADER_PIN[bcm]}"
            )
        root = sch.net_named(net)
        if root is None:
            problems.append(f"{net}: no such net in the schematic")
            continue
        on_pi = sorted(
            p["name"] for p in gpio_pins.values() if sch.net_of_pin[(PI_REF, p["number"])] == root
        )
        if on_pi != [f"GPIO{bcm}"]:
            problems.append(f"{net}: wired to {on_pi or 'no GPIO'}, the pin map says GPIO{bcm}")
        if not any(ref != PI_REF for ref, _ in sch.members[root]):
            problems.append(f"{net}: reaches nothing but the Pi")
    return problems


@pytest.fixture(scope="module")
def schematic() -> Schematic:
    return Schematic(SCH.read_text())


def test_every_pin_map_net_reaches_its_gpio(schematic):
    assert pinmap_problems(schematic) == []


@pytest.mark.parametrize(
    ("net", "ref", "pin_name"),
    [
        ("BTN_RECORD", "SW1", "~"),
        ("BTN_MARK", "SW2", "~"),
        ("BTN_FUNCTION", "SW3", "~"),
        ("I2C_SDA", "U3", "SDA"),
        ("I2C_SDA", "U4", "SDA"),
        ("I2C_SCL", "U3", "SCL"),
        ("I2C_SCL", "U4", "SCL"),
        ("FUEL_ALERT", "U3", "~{ALRT}"),
        ("RTC_INT", "U4", "~{INT}/SQW"),
        ("I2S_BCLK", "U5", "SCK"),
        ("I2S_BCLK", "U6", "BCLK"),
        ("I2S_LRCLK", "U5", "WS"),
        ("I2S_LRCLK", "U6", "LRCLK"),
        ("I2S_DIN", "U5", "SD"),
        ("I2S_DOUT", "U6", "DIN"),
    ],
)
def test_nets_reach_the_right_chip_pins(schematic, net, ref, pin_name):
    candidates = [p for p in schematic.pins if p["ref"] == ref and p["name"] == pin_name]
    assert any(
        schematic.net_of_pin[(ref, p["number"])] == schematic.net_named(net) for p in candidates
    ), f"{net} does not reach {ref} {pin_name}"


def test_leds_buzzer_and_dock_usb(schematic):
    def same(a, b):
        return schematic.net_of_pin[a] == schematic.net_of_pin[b]

    gnd = schematic.net_named("GND")
    for led, resistor, net in (
        ("D2", "R10", "LED_RED"),
        ("D3", "R11", "LED_GREEN"),
        ("D4", "R12", "LED_AMBER"),
    ):
        assert schematic.parts[resistor]["props"]["Value"] == "330"
        assert schematic.net_of_pin[(resistor, "1")] == schematic.net_named(net)
        assert same((resistor, "2"), (led, schematic.pin(led, "A")["number"]))
        assert schematic.net_of_pin[(led, schematic.pin(led, "K")["number"])] == gnd
    # The buzzer pin drives the transistor's base through R13; the buzzer is on its collector.
    assert schematic.net_of_pin[("R13", "1")] == schematic.net_named("BUZZER")
    assert same(("R13", "2"), ("Q2", schematic.pin("Q2", "B")["number"]))
    assert same(("BZ1", "2"), ("Q2", schematic.pin("Q2", "C")["number"]))
    # The dock cable's data lines reach the Pi's USB OTG port; its VBUS feeds the charger.
    assert same(("J2", "A6"), (PI_REF, schematic.pin(PI_REF, "USB_D+")["number"]))
    assert same(("J2", "A7"), (PI_REF, schematic.pin(PI_REF, "USB_D-")["number"]))
    assert same(("J2", "A4"), ("U1", schematic.pin("U1", "VDD")["number"]))
    # The camera module's lanes reach the Pi's CSI connector.
    assert same(("J1", "2"), (PI_REF, schematic.pin(PI_REF, "CAM_D0_N")["number"]))
    assert same(("J1", "9"), (PI_REF, schematic.pin(PI_REF, "CAM_C_P")["number"]))


def _mutate_label(text: str, name: str, new_name: str) -> str:
    """Rename the label ``name`` that sits on the Pi's side of the sheet (the first one)."""
    pattern = f'(label "{name}" '
    assert pattern in text
    return text.replace(pattern, f'(label "{new_name}" ', 1)


def test_swapped_labels_fail(schematic):
    text = SCH.read_text()
    # Swap the Pi-side labels of two buttons: each net now lands on the other's GPIO.
    text = _mutate_label(text, "BTN_RECORD", "TMP")
    text = _mutate_label(text, "BTN_MARK", "BTN_RECORD")
    text = _mutate_label(text, "TMP", "BTN_MARK")
    problems = pinmap_problems(Schematic(text))
    assert "BTN_RECORD: wired to ['GPIO27'], the pin map says GPIO17" in problems
    assert "BTN_MARK: wired to ['GPIO17'], the pin map says GPIO27" in problems


def test_label_moved_to_another_pin_fails():
    text = SCH.read_text()
    sch = Schematic(text)
    pin = sch.pin(PI_REF, "GPIO23")  # unused: a no-connect flag at its end
    x, y = pin["pos"][0] / 100, pin["pos"][1] / 100
    # Move the Pi-side RTC_INT label (GPIO24, header 18) onto GPIO23's pin end (header 16).
    m = re.search(r'\(label "RTC_INT" \(at ([\d.]+) ([\d.]+) (\d+)\)', text)
    moved = text[: m.start(1)] + f"{x:g} {y:g}" + text[m.end(2) :]
    problems = pinmap_problems(Schematic(moved))
    assert problems == ["RTC_INT: wired to ['GPIO23'], the pin map says GPIO24"]


def test_missing_net_fails():
    text = SCH.read_text()
    text = text.replace('(label "FUEL_ALERT" ', '(label "FUEL_ALRT" ')
    problems = pinmap_problems(Schematic(text))
    assert "FUEL_ALERT: no such net in the schematic" in problems


def test_parser_agrees_with_kicads_netlist(schematic):
    """The committed netlist (exported by kicad-cli) has the same nets as this parser finds."""
    tree = parse_sexpr(NETLIST.read_text())
    kicad = {}
    for net in children(child(tree, "nets"), "net"):
        name = child(net, "name")[1].lstrip("/")
        kicad[name] = {(child(n, "ref")[1], child(n, "pin")[1]) for n in children(net, "node")}
    on_board = {
        ref for ref, part in schematic.parts.items() if part["on_board"] and not ref.startswith("#")
    }
    ours = {}
    for root, members in schematic.members.items():
        members = {m for m in members if m[0] in on_board}
        if not members:
            continue
        names = sorted(schematic.names[root])
        name = names[0] if names else None
        ours[name] = members
    # KiCad names unlabelled single-pin nets "unconnected-(...)"; we compare labelled nets.
    kicad_named = {k: v for k, v in kicad.items() if not k.startswith("unconnected-")}
    assert set(kicad_named) == {n for n in ours if n}
    for name, members in kicad_named.items():
        assert members == ours[name], name


def test_generator_output_is_committed():
    """The committed schematic is what generate.py writes from the pin map: no drift."""
    result = subprocess.run(
        [sys.executable, str(SCH_DIR / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_bom_has_orderable_part_numbers(schematic):
    with BOM.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"part", "value", "quantity", "part_number"} <= set(rows[0])
    assert all(row["part_number"].strip() and row["part"].strip() for row in rows)
    in_bom = [r for r in schematic.parts if not r.startswith("#")]
    assert sum(int(row["quantity"]) for row in rows) == len(in_bom)
    numbers = {row["part_number"] for row in rows}
    for mpn in (
        "SC0510",
        "SC0872",
        "DS3231SN#",
        "MAX17048G+T10",
        "MAX98357AETE+T",
        "ICS-43434",
        "MCP73831T-2ACI/OT",
        "USB4105-GF-A",
        "MMBT3904LT1G",
    ):
        assert mpn in numbers


def test_exports_are_committed():
    for name in ("bodycam.pdf", "bodycam.svg"):
        path = SCH_DIR / name
        assert path.stat().st_size > 10_000
    assert (SCH_DIR / "bodycam.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (SCH_DIR / "bodycam.svg").read_bytes()[:2000]


@needs_kicad
def test_erc_passes_with_no_warnings(tmp_path):
    work = tmp_path / "schematics"
    shutil.copytree(SCH_DIR, work)
    report = tmp_path / "erc.rpt"
    result = subprocess.run(
        [
            "kicad-cli",
            "sch",
            "erc",
            "--exit-code-violations",
            "-o",
            str(report),
            str(work / "bodycam.kicad_sch"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = report.read_text()
    assert result.returncode == 0, text
    assert "ERC messages: 0  Errors 0  Warnings 0" in text


@needs_kicad
def test_erc_catches_a_dangling_label(tmp_path):
    work = tmp_path / "schematics"
    shutil.copytree(SCH_DIR, work)
    sch = work / "bodycam.kicad_sch"
    text = sch.read_text()
    # Drop the Pi-side BTN_MARK label: the button's label and the GPIO's stub now dangle.
    start = text.index('(label "BTN_MARK" ')
    sch.write_text(text[:start] + text[text.index("\n", start) + 1 :])
    result = subprocess.run(
        [
            "kicad-cli",
            "sch",
            "erc",
            "--exit-code-violations",
            "-o",
            str(tmp_path / "erc.rpt"),
            str(sch),
        ],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode != 0


@needs_kicad
def test_committed_netlist_and_bom_are_fresh(tmp_path):
    """scripts/export-schematics was run after the last change (netlist and BOM match)."""
    work = tmp_path / "hw" / "schematics"
    shutil.copytree(SCH_DIR, work)
    subprocess.run(
        [
            "kicad-cli",
            "sch",
            "export",
            "netlist",
            "--format",
            "kicadsexpr",
            "-o",
            str(work / "fresh.net"),
            str(work / "bodycam.kicad_sch"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = parse_sexpr((work / "fresh.net").read_text())
    committed = parse_sexpr(NETLIST.read_text())
    assert child(fresh, "nets") == child(committed, "nets")
    assert child(fresh, "components") == child(committed, "components")
    subprocess.run(
        [
            "kicad-cli",
            "sch",
            "export",
            "bom",
            "-o",
            str(tmp_path / "bom.csv"),
            "--fields",
            "Description,Value,${QUANTITY},Manufacturer,MPN,Reference,Footprint",
            "--labels",
            "part,value,quantity,manufacturer,part_number,references,footprint",
            "--group-by",
            "MPN,Value",
            "--sort-field",
            "Reference",
            "--ref-range-delimiter",
            "",
            str(work / "bodycam.kicad_sch"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "bom.csv").read_text() == BOM.read_text()
