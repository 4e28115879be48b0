"""The dock's configuration: the commented ``dock.toml`` in this package is the defaults,
overlaid by ``/etc/bodycam/dock.toml`` or ``--config``, then by flags. :class:`DockConfig`
declares each setting's type and range (no defaults in code); :func:`load` checks them
with :func:`daemonkit.config.load` (file, key and line in every error)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemonkit import config as _config
from daemonkit.config import Config, Section, at_least, matches, more_than, port, setting
from wire.net import parse_address

PACKAGE_DEFAULTS = Path(__file__).with_name("dock.toml")
DOCK_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # as evidence.identity.DEVICE_ID_PATTERN


@dataclass(frozen=True)
class DockSection(Section):
    id: str = setting(matches(DOCK_ID, "letters, digits, '.', '_', '-' (at most 64)"))
    unit: str
    store: str = setting(matches(r".+", "a folder"))
    unit_keys: list[str]
    key: str = setting(matches(r".+", "a file"))
    bays: list[str] = setting(matches(r"/.+", "absolute serial port paths, e.g. /dev/ttyACM0"))
    timeout_s: float = setting(more_than(0))
    warn_free_gb: float = setting(at_least(0))
    listen: str
    listen_connections: int = setting(at_least(1))


@dataclass(frozen=True)
class MqttSection(Section):
    host: str
    port: int = setting(port())
    ca_file: str
    insecure: bool
    username: str
    password_file: str


@dataclass(frozen=True)
class DeadlinesSection(Section):
    warn_h: float = setting(more_than(0))
    limit_h: float = setting(more_than(0))
    check_s: float = setting(at_least(1))


@dataclass(frozen=True)
class DockConfig(Config):
    dock: DockSection
    mqtt: MqttSection
    deadlines: DeadlinesSection

    def checks(self) -> Iterable[tuple[str, str]]:
        d = self.deadlines
        if d.warn_h > d.limit_h:
            yield (
                "deadlines.warn_h",
                f"({d.warn_h:g}) must not be more than deadlines.limit_h ({d.limit_h:g}): "
                "the warning comes before the violation",
            )
        twice = sorted({b for b in self.dock.bays if self.dock.bays.count(b) > 1})
        if twice:
            yield ("dock.bays", f"must be distinct serial ports: {', '.join(twice)} named twice")
        if self.dock.listen:
            try:
                parse_address(self.dock.listen)
            except ValueError as exc:
                yield ("dock.listen", str(exc))


def load(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> DockConfig:
    """The packaged defaults, then ``path``, then ``overrides`` (dotted keys)."""
    return _config.load(DockConfig, PACKAGE_DEFAULTS, path, overrides)
