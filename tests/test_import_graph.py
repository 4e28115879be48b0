"""The import graph, read from the source (ast), against the layering of DESIGN.md:

- ``firmware`` runs on the camera and never imports the simulator, nor the dock;
- the simulator's twin (its hardware parts) imports nothing from ``firmware``: only the
  runner that wires a whole shift (recorder, twin, dock bay) sits above both;
- the supervisor and the dock do not import ``firmware``; the supervisor imports of the
  archive only its signed message format (``archive.signed``);
- ``alerting`` (judging MQTT alerts and statuses, shared by the supervisor and the archive's
  web console so that both show the same verdicts) stands on the shared layers and imports
  no daemon but the archive's signed message format (``archive.signed``);
- the archive builds on the dock store, ``evidence``, ``wire`` and ``daemonkit``, never on
  ``firmware`` or the simulator, and nothing below it imports it;
- the shared packages stand in layers, each on the ones below it only:
  ``daemonkit`` (config, systemd, CLI plumbing) imports nothing of the project;
  ``evidence`` (the format) only ``daemonkit``; ``wire`` (cable, MQTT topics and
  messages) only those two; ``hw`` (the pin map) nothing. None imports a daemon.

Every import counts, lazy ones inside functions too: a lazy import still runs on the
device the day its branch is taken.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "daemonkit",
    "evidence",
    "wire",
    "firmware",
    "simulator",
    "dock",
    "supervisor",
    "hw",
    "archive",
    "alerting",
)
DAEMONS = ("firmware", "simulator", "dock", "supervisor", "archive")
#: The simulator's runner: it wires the real recorder and dock to the twin, so it may
#: import them. Every other simulator module is the twin itself.
RUNNER = {"simulator.shift", "simulator.dockbay", "simulator.__main__"}

# (importer prefix, imported prefix, why forbidden)
RULES = [
    ("firmware", "simulator", "firmware runs on the camera: the simulator plugs in by name"),
    ("firmware", "dock", "firmware and dock never import each other"),
    ("dock", "firmware", "firmware and dock never import each other"),
    ("supervisor", "firmware", "the supervisor shares only the wire format with the camera"),
    ("archive", "simulator", "the archive builds on the dock store and evidence only"),
    ("twin", "firmware", "the twin is hardware: only the runner above it knows the firmware"),
    ("evidence", "archive", "evidence (and bodycam-verify) runs on any PC without the archive"),
    ("dock", "archive", "the archive builds on the dock store, not the other way round"),
    ("firmware", "archive", "the camera knows nothing of the archive"),
    ("supervisor", "archive", "the supervisor reads only the archive's signed alert format"),
    ("archive", "firmware", "the archive builds on the dock store and evidence, never on firmware"),
    ("archive", "supervisor", "the web console shares the supervisor's judging via alerting"),
    *(
        ("alerting", d, "alerting is shared by the consoles and depends on none of them")
        for d in DAEMONS
    ),
    ("evidence", "alerting", "evidence is shared by all and depends on none of them"),
    ("wire", "alerting", "the wire stands below the consoles that judge what it carries"),
    *(("evidence", d, "evidence is shared by all and depends on none of them") for d in DAEMONS),
    ("evidence", "wire", "the evidence format stands below the wire that carries it"),
    *(("wire", d, "the wire is shared by all and depends on none of them") for d in DAEMONS),
    *(
        ("daemonkit", p, "daemonkit is plumbing under everything: it imports nothing of ours")
        for p in PACKAGES
        if p != "daemonkit"
    ),
    *(("hw", p, "the pin map is shared by all") for p in PACKAGES if p != "hw"),
]

#: Narrow openings in a rule, by design: (importer prefix, imported prefix, why allowed).
ALLOWED = [
    (
        "supervisor",
        "archive.signed",
        "the archive's signed message format, which the supervisor verifies (no database)",
    ),
    (
        "alerting",
        "archive.signed",
        "the archive's signed message format, which the consoles verify (no database)",
    ),
]

#: Edges known to break a rule, each with the reason it is still there. An entry that no
#: longer matches anything fails the test, so this list only shrinks.
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of every module ``module``'s source imports (relative ones resolved)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            edges[name] = imports_of(path.read_text(), name, path.name == "__init__.py")
    return edges


def layer(module: str) -> str:
    top = module.split(".")[0]
    if top == "simulator" and module not in RUNNER:
        return "twin"
    return top


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(edges: dict[str, set[str]]) -> set[tuple[str, str, str]]:
    found = set()
    for importer, imported in edges.items():
        for rule_from, rule_to, why in RULES:
            if layer(importer) != rule_from:
                continue
            for name in imported:
                if any(within(importer, a) and within(name, b) for a, b, _ in ALLOWED):
                    continue
                if within(name, rule_to):
                    # one edge per imported module (``from firmware import x`` names both)
                    target = name if name.count(".") <= 1 else ".".join(name.split(".")[:2])
                    found.add((importer, target, why))
    return found


def test_no_forbidden_import_edge() -> None:
    edges = graph()
    assert "firmware.pi" in edges and "simulator.camera" in edges  # it read the tree
    found = violations(edges)
    unexplained = sorted(v for v in found if (v[0], v[1]) not in KNOWN)
    assert not unexplained, "\n".join(f"{a} imports {b}: {why}" for a, b, why in unexplained)
    stale = KNOWN - {(a, b) for a, b, _ in found}
    assert not stale, f"known exceptions that no longer exist (remove them): {sorted(stale)}"


@pytest.mark.parametrize(
    ("module", "source", "edge"),
    [
        ("firmware.pi", "def f():\n    from simulator.camera import SimCamera\n", "simulator"),
        ("firmware.pi", "import dock.store\n", "dock"),
        ("firmware.recorder", "from dock import session\n", "dock"),
        ("simulator.camera", "from firmware.hardware import Camera\n", "firmware"),
        ("simulator.audio", "import firmware.segment as s\n", "firmware"),
        ("dock.session", "from firmware import config\n", "firmware"),
        ("supervisor.judge", "from firmware.state import Machine\n", "firmware"),
        ("supervisor.judge", "from archive.db import open_database\n", "archive.db"),
        ("supervisor.watch", "import archive\n", "archive"),
        ("alerting.judge", "from archive.db import open_database\n", "archive.db"),
        ("alerting.watch", "from supervisor.console import describe\n", "supervisor"),
        ("archive.web.live", "from supervisor.console import describe\n", "supervisor"),
        ("evidence.verify", "from dock.store import Store\n", "dock"),
        ("evidence.layout", "from wire.cable import TORN_FILE\n", "wire"),
        ("wire.cable", "import firmware.alerts\n", "firmware"),
        ("daemonkit.cli", "from evidence.exc import EvidenceError\n", "evidence"),
        ("supervisor.watch", "from firmware.alerts import Ack\n", "firmware"),
        ("archive.cases", "from firmware.recorder import Recorder\n", "firmware"),
        ("archive.refs", "import simulator.shift\n", "simulator"),
        ("dock.store", "from archive.service import Archive\n", "archive"),
        ("evidence.verify", "from archive.audit import AuditLog\n", "archive"),
    ],
)
def test_the_check_finds_a_planted_edge(module: str, source: str, edge: str) -> None:
    """The check can fail: each forbidden kind of edge, planted in a module, is found."""
    found = violations({module: imports_of(source, module)})
    assert any(a == module and within(b, edge) for a, b, _ in found), found


def test_relative_imports_resolve_and_the_runner_may_wire_both() -> None:
    assert "firmware.segment" in imports_of("from .segment import aac_config\n", "firmware.pi")
    assert "evidence.osd" in imports_of("from ..osd import Overlay\n", "evidence.x.y")
    runner = {"simulator.shift": imports_of("from firmware.recorder import Recorder\n", "")}
    assert not violations(runner)


def test_what_the_supervisor_may_import_of_the_archive_stands_on_the_shared_layers() -> None:
    """The one opening (archive.signed) must not reach the archive's database or store."""
    edges = graph()
    for _, opening, _ in ALLOWED:
        reached = {n for n in edges[opening] if n.split(".")[0] in DAEMONS}
        assert not reached, f"{opening} imports {sorted(reached)}"
    # Importing it runs the package's __init__: that must stay free of imports too.
    assert not imports_of((ROOT / "archive" / "__init__.py").read_text(), "archive", True)
