"""The README's command table agrees with what each command's ``--help`` says.

Both sides are parsed, not matched as strings: the table into commands, subcommand paths
and options (with whether each takes a value); each console script's argparse help into
the same. The test fails when the README names a subcommand or an option that does not
exist, leaves out a console script or a subcommand, shows an option with the wrong shape
(a flag where the command wants a value), or shows some of a command's options but not
all of them (``-h``, ``-v``, ``-q`` and ``--config`` excepted: the README says every
command has them).
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERIC = {"-h", "--help", "-v", "--verbose", "-q", "--quiet", "--config"}
SUBWORD = re.compile(r"\A[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*\Z")


# -- the console scripts and their --help ------------------------------------------------


def console_scripts() -> dict[str, str]:
    """``{name: "module:function"}`` from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


def help_text(entry: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``<command> <argv> --help`` prints (argparse exits 0 after printing it)."""
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped option lines
    module, func = entry.split(":")
    main = getattr(importlib.import_module(module), func)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0, (entry, argv)
    return out.getvalue()


@dataclass
class Help:
    """One parser's help: its subcommands (None for a leaf), or the choices of a
    positional (``report {deadlines}``: leaf words), and its options."""

    subcommands: list[str] | None
    choices: list[str]
    options: dict[str, bool]  # option -> takes a value


def parse_help(text: str) -> Help:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    subcommands: list[str] | None = None
    choices: list[str] = []
    positional = sections.get("positional arguments", [])
    for i, line in enumerate(positional):
        if not re.match(r"  \S", line):
            continue
        nested = []
        for below in positional[i + 1 :]:
            if re.match(r"    \S", below):
                nested.append(below.split()[0])
            elif re.match(r"  \S", below):
                break
        token = line.split()[0]
        if nested:
            subcommands = nested
        elif token.startswith("{"):
            choices += token.strip("{}").split(",")
    options: dict[str, bool] = {}
    for line in sections.get("options", []):
        if not re.match(r"  -", line):
            continue
        spec = re.split(r"\s{2,}", line.strip())[0]
        for part in spec.split(", "):
            name, *value = part.split()
            options[name] = bool(value)
    return Help(subcommands, choices, options)


@dataclass
class Leaf:
    """A command a user can run: ``("bodycam-dock", "registry", "list")`` and its options."""

    path: tuple[str, ...]
    options: dict[str, bool] = field(default_factory=dict)


def leaves_from_help(
    prog: str, entry: str, monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Leaf]:
    parsed = parse_help(help_text(entry, list(path), monkeypatch))
    if parsed.subcommands:
        found: dict[tuple[str, ...], Leaf] = {}
        for sub in parsed.subcommands:
            found.update(leaves_from_help(prog, entry, monkeypatch, (*path, sub)))
        return found
    words = [(*path, c) for c in parsed.choices] or [path]
    return {(prog, *w): Leaf((prog, *w), parsed.options) for w in words}


# -- the README's table ------------------------------------------------------------------


def readme_rows() -> list[str]:
    """The first cell of each row of the table under ``## Commands``, unescaped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 2 or set(cells[0]) <= {"-"} or cells[0] == "command":
            continue
        assert cells[1], f"README row without a description: {line}"
        assert cells[0].startswith("`") and cells[0].endswith("`"), line
        rows.append(cells[0].strip("`").replace("\\|", "|"))
    return rows


def leaves_from_readme(row: str) -> dict[tuple[str, ...], Leaf]:
    """``prog a / b c --opt V [--flag]`` -> one Leaf per subcommand path, with the options
    written after it (``x|y`` in a subcommand word is two paths; UPPER words are
    positional placeholders; an option takes a value when a non-option token follows)."""
    prog, _, rest = row.partition(" ")
    found: dict[tuple[str, ...], Leaf] = {}
    for group in rest.split(" / ") if rest else [""]:
        tokens = group.replace("[", "").replace("]", "").split()
        words: list[str] = []
        options: dict[str, bool] = {}
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.startswith("-"):
                takes = i + 1 < len(tokens) and not tokens[i + 1].startswith("-")
                options[token] = takes
                i += 2 if takes else 1
                continue
            assert not options, f"{row!r}: {token!r} after the options"
            if SUBWORD.match(token):
                words.append(token)
            i += 1
        paths = [()]
        for word in words:
            paths = [(*p, alt) for p in paths for alt in word.split("|")]
        for p in paths:
            found[(prog, *p)] = Leaf((prog, *p), options)
    return found


# -- the tests ---------------------------------------------------------------------------


def test_readme_parser_reads_what_it_should() -> None:
    """The two parsers themselves, on a known row and a known help text."""
    row = "bodycam-x a / b c|d --out DIR [--dock] [--head [DEV:]SEQ:HASH] / e PATH [--json]"
    leaves = leaves_from_readme(row)
    assert {k: v.options for k, v in leaves.items()} == {
        ("bodycam-x", "a"): {},
        ("bodycam-x", "b", "c"): {"--out": True, "--dock": False, "--head": True},
        ("bodycam-x", "b", "d"): {"--out": True, "--dock": False, "--head": True},
        ("bodycam-x", "e"): {"--json": False},
    }
    parsed = parse_help(
        "usage: x\n\npositional arguments:\n  COMMAND\n    init   make it\n    go     run\n"
        "\noptions:\n  -h, --help   show\n  --store STORE  the store\n  -v, --verbose  more\n"
    )
    assert parsed.subcommands == ["init", "go"]
    assert parsed.options == {"-h": False, "--help": False, "--store": True, "-v": False,
                              "--verbose": False}  # fmt: skip


def test_every_console_script_has_a_row_and_no_row_names_another() -> None:
    progs = {row.split()[0] for row in readme_rows()}
    assert progs == set(console_scripts())


def test_readme_table_agrees_with_each_commands_help(monkeypatch: pytest.MonkeyPatch) -> None:
    documented: dict[tuple[str, ...], Leaf] = {}
    for row in readme_rows():
        for path, leaf in leaves_from_readme(row).items():
            assert path not in documented, f"{' '.join(path)} is in two rows"
            documented[path] = leaf
    actual: dict[tuple[str, ...], Leaf] = {}
    for prog, entry in console_scripts().items():
        actual.update(leaves_from_help(prog, entry, monkeypatch))

    def names(paths) -> list[str]:
        return sorted(" ".join(p) for p in paths)

    assert names(set(actual) - set(documented)) == [], "commands missing from the README"
    assert names(set(documented) - set(actual)) == [], "README commands that do not exist"
    problems = []
    for path, leaf in documented.items():
        real = actual[path].options
        for option, takes in leaf.options.items():
            if option not in real:
                problems.append(f"{' '.join(path)}: no option {option}")
            elif real[option] != takes:
                shape = "takes a value" if real[option] else "is a flag"
                problems.append(f"{' '.join(path)}: {option} {shape}")
        # A row that shows options shows all of them; so does a command without subcommands.
        if leaf.options or len(path) == 1:
            missing = sorted(set(real) - set(leaf.options) - GENERIC)
            if missing:
                problems.append(f"{' '.join(path)}: the README leaves out {', '.join(missing)}")
    assert problems == []


def test_bootstrap_names_every_console_script() -> None:
    """Its closing line tells a new user which commands they now have."""
    lines = [
        line
        for line in (ROOT / "scripts" / "bootstrap").read_text().splitlines()
        if line.strip().startswith("echo")
    ]
    assert set(re.findall(r"bodycam-[a-z]+", lines[-1])) == set(console_scripts())
