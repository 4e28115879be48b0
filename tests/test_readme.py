"""The README's two set-up commands stay true: CI runs the very test command it shows."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    scripts/bootstrap")]


def test_readme_has_exactly_two_setup_commands():
    commands = _commands()
    assert len(commands) == 2, commands
    assert "bodycam-sim shift" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci.splitlines()


def test_every_console_script_is_declared_once():
    setup = (ROOT / "setup.cfg").read_text()
    for name in (
        "bodycam-recorder",
        "bodycam-dock",
        "bodycam-sim",
        "bodycam-verify",
        "bodycam-supervisor",
        "bodycam-unit",
    ):
        assert setup.count(f"{name} =") == 1, name
