"""The rules' procedures and the key moments each recording must show, read from data.

``procedures.toml`` (packaged next to this module) lists them; the camera walks an act's
moments in order as the officer marks them, and the compliance report checks what is on
the record against them. A broken file is one :class:`ProcedureError` naming the file and
line, raised when the file is read (at start), never mid-shift.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from .exc import EvidenceError

OTHER = "other"
"""The moment a long press of the mark button records, in every procedure."""

ARTICLES = range(1, 41)
"""The rules have 40 articles; a moment citing another is a typo."""

_ID = re.compile(r"[a-z][a-z0-9_]{0,47}")
_PROCEDURE_KEYS = {"article", "zh", "en", "announce", "moments"}
_MOMENT_KEYS = {"id", "article", "zh", "en", "required"}


class ProcedureError(EvidenceError, ValueError):
    """The procedures file is unreadable or breaks its own rules."""


@dataclass(frozen=True)
class Moment:
    """One key moment of a procedure, as the rules word it."""

    id: str
    article: int
    zh: str
    en: str
    required: bool = True


OTHER_MOMENT = Moment(OTHER, 0, "其他需要音像记录的情况", "other matters to record")


@dataclass(frozen=True)
class Procedure:
    """A procedure of the rules: its key moments in the order they happen."""

    id: str
    article: int
    zh: str
    en: str
    announce: bool
    moments: tuple[Moment, ...]

    def moment(self, moment_id: str) -> Moment:
        """The moment called ``moment_id`` (``other`` included); KeyError if none."""
        if moment_id == OTHER:
            return OTHER_MOMENT
        for m in self.moments:
            if m.id == moment_id:
                return m
        raise KeyError(f"procedure {self.id} has no moment {moment_id!r}")

    def next_moment(self, marked: Sequence[str]) -> Moment | None:
        """The moment a short mark records after ``marked`` (ids so far, ``other`` ignored):
        the first one in order after the last marked, or None when all are past."""
        position = -1
        for moment_id in marked:
            for i, m in enumerate(self.moments):
                if m.id == moment_id:
                    position = max(position, i)
        following = self.moments[position + 1 :]
        return following[0] if following else None

    def missing(self, marked: Sequence[str]) -> list[Moment]:
        """Required moments not in ``marked``, in the procedure's order."""
        seen = set(marked)
        return [m for m in self.moments if m.required and m.id not in seen]


class Procedures(Mapping[str, Procedure]):
    """Every procedure by id, in the file's order."""

    def __init__(self, procedures: Sequence[Procedure], source: str) -> None:
        self._by_id = {p.id: p for p in procedures}
        self.source = source

    def __getitem__(self, procedure_id: str) -> Procedure:
        return self._by_id[procedure_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


PACKAGED = files(__package__) / "procedures.toml"


def load_procedures(path: str | Path | None = None) -> Procedures:
    """Read and check the procedures file (the packaged one unless ``path`` is given)."""
    if path is None:
        return parse_procedures(PACKAGED.read_text(encoding="utf-8"), "evidence/procedures.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProcedureError(f"{path}: cannot read the procedures file: {exc}") from None
    return parse_procedures(text, str(path))


def parse_procedures(text: str, source: str = "procedures.toml") -> Procedures:
    """Check ``text`` (the TOML of a procedures file) and build the procedures."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProcedureError(f"{source}: not valid TOML: {exc}") from None
    lines = _Lines(text, source)
    if not data:
        raise ProcedureError(f"{source}: no procedures in the file")
    return Procedures([_procedure(pid, body, lines) for pid, body in data.items()], source)


def _procedure(pid: str, body: Any, lines: _Lines) -> Procedure:
    where = lines.table(pid)
    if not _ID.fullmatch(pid):
        raise ProcedureError(f"{where}: procedure id {pid!r} must be lower case, digits and _")
    if not isinstance(body, dict):
        raise ProcedureError(f"{where}: {pid} must be a table ([{pid}])")
    _known_keys(body, _PROCEDURE_KEYS, f"procedure {pid}", where)
    article = _article(body.get("article"), f"{pid}.article", where)
    zh, en = (_text(body.get(k), f"{pid}.{k}", where) for k in ("zh", "en"))
    announce = body.get("announce", True)
    if not isinstance(announce, bool):
        raise ProcedureError(f"{where}: {pid}.announce must be true or false")
    raw = body.get("moments")
    if not isinstance(raw, list) or not raw:
        raise ProcedureError(f"{where}: {pid}.moments must list at least one moment")
    moments: list[Moment] = []
    for n, entry in enumerate(raw):
        moment = _moment(pid, n, entry, lines)
        if moment.id == OTHER or any(m.id == moment.id for m in moments):
            reason = "is reserved" if moment.id == OTHER else "appears twice"
            raise ProcedureError(f"{lines.moment(pid, n)}: {pid}: moment {moment.id!r} {reason}")
        moments.append(moment)
    return Procedure(pid, article, zh, en, announce, tuple(moments))


def _moment(pid: str, n: int, entry: Any, lines: _Lines) -> Moment:
    where = lines.moment(pid, n)
    if not isinstance(entry, dict):
        raise ProcedureError(f"{where}: {pid}.moments[{n}] must be an inline table {{ id = ... }}")
    _known_keys(entry, _MOMENT_KEYS, f"{pid}.moments[{n}]", where)
    mid = entry.get("id")
    if not isinstance(mid, str) or not _ID.fullmatch(mid):
        raise ProcedureError(
            f"{where}: {pid}.moments[{n}].id must be lower case, digits and _, not {mid!r}"
        )
    required = entry.get("required", True)
    if not isinstance(required, bool):
        raise ProcedureError(f"{where}: {pid}.{mid}.required must be true or false")
    return Moment(
        mid,
        _article(entry.get("article"), f"{pid}.{mid}.article", where),
        _text(entry.get("zh"), f"{pid}.{mid}.zh", where),
        _text(entry.get("en"), f"{pid}.{mid}.en", where),
        required,
    )


def _known_keys(body: dict[str, Any], known: set[str], what: str, where: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ProcedureError(
            f"{where}: {what}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _article(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in ARTICLES:
        raise ProcedureError(f"{where}: {key} must be an article number 1-40, not {value!r}")
    return value


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProcedureError(f"{where}: {key} must be a non-empty string")
    return value


class _Lines:
    """``file:line`` of a procedure's table header and of each of its moments' lines (one
    inline table a line, as the packaged file is written), for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self._tables: dict[str, int] = {}
        self._moments: dict[str, list[int]] = {}
        table = None
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if m := re.fullmatch(r"\[\s*([^\[\]\s]+)\s*\]\s*(#.*)?", stripped):
                table = m.group(1).strip('"')
                self._tables.setdefault(table, number)
            elif table is not None and stripped.startswith("{"):
                self._moments.setdefault(table, []).append(number)

    def table(self, pid: str) -> str:
        number = self._tables.get(pid)
        return f"{self.source}:{number}" if number else self.source

    def moment(self, pid: str, n: int) -> str:
        numbers = self._moments.get(pid, [])
        return f"{self.source}:{numbers[n]}" if n < len(numbers) else self.table(pid)
