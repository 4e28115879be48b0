"""One typed loader for every daemon's TOML configuration.

Each daemon declares its settings as one frozen dataclass per ``[section]`` (a
:class:`Section`) under one root (a :class:`Config`), with types and ranges but **no
default values**: the defaults are the daemon's packaged, commented TOML file, the one
place where every setting is documented. :func:`load` reads that file, overlays the
operator's file (``/etc/bodycam/*.toml`` or ``--config``), then the command-line flags,
and checks every value for its type, its range and against the others. An unknown key, a
wrong type, a value out of range are one-line :class:`~evidence.exc.ConfigError`\\ s that
name the file, the key and the line: ``/etc/bodycam/dock.toml:12: dock.bays must be a
list of strings, not [1]``.

A key that the packaged file has and the dataclass does not declare (yet) still works: it
is typed by its default and read as ``cfg.section["key"]``, so a new setting is one line
in the TOML. Sections also read as mappings (``cfg["dock"]["store"]``, ``**cfg["mqtt"]``)
for code written before the loader was typed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

__all__ = [
    "Config",
    "Section",
    "at_least",
    "at_most",
    "between",
    "load",
    "load_config",
    "matches",
    "more_than",
    "port",
    "setting",
]


# -- declaring settings ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A range or form a value must have: ``ok(value)``, else "<key> <says>"."""

    ok: Callable[[Any], bool]
    says: str


def setting(*rules: Rule) -> Any:
    """A declared setting with rules and no default (the default is in the TOML file)."""
    return dataclasses.field(metadata={"rules": rules})


def more_than(n: float) -> Rule:
    return Rule(lambda v: v > n, f"must be more than {n:g}")


def at_least(n: float) -> Rule:
    return Rule(lambda v: v >= n, f"must be at least {n:g}")


def at_most(n: float) -> Rule:
    return Rule(lambda v: v <= n, f"must be at most {n:g}")


def between(lo: float, hi: float) -> Rule:
    return Rule(lambda v: lo <= v <= hi, f"must be between {lo:g} and {hi:g}")


def port() -> Rule:
    return between(1, 65535)


def matches(pattern: str, what: str) -> Rule:
    """Every string (or every string of a list) matches ``pattern`` in full."""
    rx = re.compile(pattern)

    def ok(v: Any) -> bool:
        return all(rx.fullmatch(s) for s in (v if isinstance(v, list) else [v]))

    return Rule(ok, f"must be {what}")


class Section(Mapping[str, Any]):
    """Base of a section dataclass: attributes (``cfg.dock.store``), or a read-only mapping
    (``cfg["dock"]["store"]``) that also holds the keys the TOML has beyond the fields."""

    _extra: ClassVar[Mapping[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:  # only for names that are not fields
        extra = self.__dict__.get("_extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key in self._names():
            return getattr(self, key)
        if key in self._extra:
            return self._extra[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._names()
        yield from self._extra

    def __len__(self) -> int:
        return len(self._names()) + len(self._extra)

    def as_dict(self) -> dict[str, Any]:
        """A plain, mutable copy (sections as nested dicts)."""
        return {k: v.as_dict() if isinstance(v, Section) else v for k, v in self.items()}


class Config(Section):
    """Base of a daemon's root dataclass: top-level settings and one field per section.
    Override :meth:`checks` for what one value cannot say alone."""

    def checks(self) -> Iterable[tuple[str, str]]:
        """``(dotted key, problem)`` for each value that disagrees with another."""
        return ()


C = TypeVar("C", bound=Config)


# -- types -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Type:
    says: str  # "a string"
    ok: Callable[[Any], bool]


def _scalar(tp: Any) -> _Type | None:
    if tp is bool:
        return _Type("true or false", lambda v: isinstance(v, bool))
    if tp is int:
        return _Type("an integer", lambda v: type(v) is int)
    if tp is float:
        return _Type(
            "a number",
            lambda v: type(v) in (int, float) and math.isfinite(v),
        )
    if tp is str:
        return _Type("a string", lambda v: isinstance(v, str))
    return None


_PLURAL = {
    "true or false": "true or false values",
    "an integer": "integers",
    "a number": "numbers",
    "a string": "strings",
}


def _type_of(tp: Any) -> _Type:
    scalar = _scalar(tp)
    if scalar is not None:
        return scalar
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        item = _scalar(item_tp) if item_tp is not Any else _Type("anything", lambda v: True)
        if item is None:
            raise TypeError(f"unsupported setting type {tp!r}")
        return _Type(
            f"a list of {_PLURAL.get(item.says, item.says)}",
            lambda v: isinstance(v, list) and all(item.ok(x) for x in v),
        )
    raise TypeError(f"unsupported setting type {tp!r}")


def _type_of_value(value: Any) -> _Type:
    """The type of a key the dataclass does not declare: its packaged default's."""
    if isinstance(value, list):
        kinds = {type(v) for v in value}
        item = kinds.pop() if len(kinds) == 1 else Any
        return _type_of(list[item])  # type: ignore[valid-type]
    if isinstance(value, float):
        return _type_of(float)
    return _type_of(type(value))


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# -- reading files with line numbers ---------------------------------------------------------
_TABLE = re.compile(r"\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key -> line number, for the plain TOML a config file is (tables and
    ``key = value`` lines); a key not found here is reported without a line."""
    lines: dict[str, int] = {}
    table = ""
    depth = 0  # inside a multi-line array
    for n, line in enumerate(text.splitlines(), 1):
        if depth:
            depth += line.count("[") - line.count("]")
            continue
        if m := _TABLE.match(line):
            table = ".".join(p.strip().strip("\"'") for p in m.group(1).split("."))
            lines.setdefault(table, n)
            continue
        if m := _KEY.match(line):
            key = ".".join(p.strip() for p in m.group(1).split("."))
            lines.setdefault(f"{table}.{key}" if table else key, n)
            rest = line[m.end() :]
            depth = max(rest.count("[") - rest.count("]"), 0)
    return lines


def _read(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return data, _key_lines(text)


# -- loading ---------------------------------------------------------------------------------
@dataclass
class _Source:
    name: str  # a file's path, or "command line"
    lines: dict[str, int]

    def where(self, dotted: str) -> str:
        line = self.lines.get(dotted)
        return f"{self.name}:{line}" if line else self.name


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 60 else text[:57] + "..."


class _Loader:
    """Merges the sources into one tree, remembering which source set each key."""

    def __init__(self, schema: type[Config]) -> None:
        self.schema = schema
        self.values: dict[str, Any] = {}
        self.types: dict[str, _Type] = {}  # dotted key -> type
        self.tables: dict[str, type[Section] | None] = {"": schema}  # declared, or None
        self.origin: dict[str, str] = {}

    def defaults(self, data: dict[str, Any], source: _Source) -> None:
        """The packaged file: every declared setting must be in it; others are typed
        by their value."""
        self._defaults(self.schema, data, source, "", self.values)

    def _defaults(
        self, cls: type[Section] | None, data: dict, source: _Source, prefix: str, out: dict
    ) -> None:
        hints = _hints(cls) if cls is not None else {}
        for name in hints:
            if name.startswith("_"):
                continue
            if name not in data:
                raise ConfigError(
                    f"{source.name}: {prefix}{name} has no default "
                    "(the packaged file must set every setting)"
                )
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            tp = hints.get(key)
            if isinstance(value, dict) and (tp is None or _is_section(tp)):
                self.tables[dotted] = tp
                out[key] = {}
                self._defaults(tp, value, source, f"{dotted}.", out[key])
                continue
            kind = _type_of(tp) if tp is not None else _type_of_value(value)
            if not kind.ok(value):
                raise ConfigError(
                    f"{source.where(dotted)}: {dotted} must be {kind.says}, not {_show(value)}"
                )
            self.types[dotted] = kind
            self.origin[dotted] = source.where(dotted)
            out[key] = value

    def overlay(self, data: dict[str, Any], source: _Source, prefix: str = "") -> None:
        node = self._node(prefix)
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            if dotted in self.tables:
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{source.where(dotted)}: [{dotted}] must be a table, not {_show(value)}"
                    )
                self.overlay(value, source, f"{dotted}.")
                continue
            kind = self.types.get(dotted)
            if kind is None:
                raise ConfigError(f"{source.where(dotted)}: {self._unknown(prefix, key)}")
            if not kind.ok(value):
                raise ConfigError(
                    f"{source.where(dotted)}: {dotted} must be {kind.says}, not {_show(value)}"
                )
            node[key] = value
            self.origin[dotted] = source.where(dotted)

    def _node(self, prefix: str) -> dict[str, Any]:
        node = self.values
        for part in prefix.rstrip(".").split(".") if prefix else []:
            node = node[part]
        return node

    def _unknown(self, prefix: str, key: str) -> str:
        known = sorted(k for k in self._node(prefix))
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
        return f"unknown setting {prefix + key!r} (not a setting in {where}{hint})"

    def build(self) -> Config:
        config = self._build(self.schema, self.values, "")
        assert isinstance(config, Config)
        for dotted, problem in config.checks():
            raise ConfigError(f"{self.origin.get(dotted, 'config')}: {dotted} {problem}")
        return config

    def _build(self, cls: type[Section] | None, values: dict[str, Any], prefix: str) -> Any:
        if cls is None:  # a table the schema does not declare: a generic section
            fields_ = [(k, Any) for k in values]
            cls = dataclasses.make_dataclass(
                "Extra_" + prefix.replace(".", "_").strip("_"),
                fields_,
                bases=(Section,),
                frozen=True,
            )
        hints = _hints(cls)
        declared = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in values.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and dotted in self.tables:
                value = self._build(self.tables[dotted], value, f"{dotted}.")
            elif key in declared:
                for rule in declared[key].metadata.get("rules", ()):
                    if not rule.ok(value):
                        raise ConfigError(
                            f"{self.origin.get(dotted, 'config')}: {dotted} {rule.says}, "
                            f"not {_show(value)}"
                        )
            if key in hints and key in declared:
                kwargs[key] = value
            else:
                extra[key] = value
        instance = cls(**kwargs)
        if extra:
            object.__setattr__(instance, "_extra", extra)
        return instance


def load(
    schema: type[C],
    packaged: str | os.PathLike,
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> C:
    """``schema`` filled from the packaged TOML, overlaid by the file at ``path`` and by
    ``overrides`` (dotted keys, ``"mqtt.host"``; None values are skipped, so argparse
    results can be passed as they are), every value checked."""
    loader = _Loader(schema)
    data, lines = _read(Path(packaged))
    loader.defaults(data, _Source(str(packaged), lines))
    if path is not None:
        data, lines = _read(Path(path))
        loader.overlay(data, _Source(str(path), lines))
    flags = _Source("command line", {})
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        tree: dict[str, Any] = {key: value}
        for table in reversed(tables):
            tree = {table: tree}
        loader.overlay(tree, flags)
    return loader.build()  # type: ignore[return-value]


def check(schema: type[C], packaged: str | os.PathLike, values: Mapping[str, Any]) -> C:
    """``values`` (a whole config as nested mappings, e.g. made with :func:`load_config`)
    checked as :func:`load` checks a file; the typed config."""
    tree = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    loader = _Loader(schema)
    data, lines = _read(Path(packaged))
    loader.defaults(data, _Source(str(packaged), lines))
    loader.overlay(tree, _Source("config", {}))
    return loader.build()  # type: ignore[return-value]


def load_config(
    defaults: dict[str, Any],
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Untyped: ``defaults`` overlaid by the TOML file at ``path`` and by ``overrides``,
    each key checked against the type of its default (for tools without a schema, such
    as ``bodycam-verify``). Daemons use :func:`load`."""
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    if path is not None:
        data, lines = _read(Path(path))
        _merge(config, data, defaults, _Source(str(path), lines))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        data = {key: value}
        for table in reversed(tables):
            data = {table: data}
        _merge(config, data, defaults, _Source("command line", {}))
    return config


def _merge(config: dict, data: dict, defaults: dict, source: _Source, prefix: str = "") -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise ConfigError(f"{source.where(name)}: unknown setting {name!r}")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source.where(name)}: {name!r} must be a table")
            _merge(config[key], value, default, source, f"{name}.")
            continue
        if default is not None:
            kind = _type_of_value(default)
            if not kind.ok(value):
                raise ConfigError(
                    f"{source.where(name)}: {name} must be {kind.says}, not {_show(value)}"
                )
        config[key] = value
