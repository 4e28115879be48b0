"""The supervisor console's configuration: the commented ``supervisor.toml`` in this
package is the defaults, overlaid by ``/etc/bodycam/supervisor.toml`` or ``--config``,
then by flags. :class:`SupervisorConfig` declares each setting's type and range (no
defaults in code); :func:`daemonkit.config.load` checks them (file, key and line)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemonkit import config as _config
from daemonkit.config import Config, Section, matches, port, setting

PACKAGE_DEFAULTS = Path(__file__).with_name("supervisor.toml")
SYSTEM_CONFIG = Path("/etc/bodycam/supervisor.toml")


@dataclass(frozen=True)
class MqttSection(Section):
    host: str = setting(matches(r".+", "a host name or address"))
    port: int = setting(port())
    ca_file: str
    insecure: bool
    cert_file: str
    key_file: str
    username: str
    password_file: str
    client_id: str


@dataclass(frozen=True)
class SupervisorConfig(Config):
    registry: str = setting(matches(r".+", "the registry's path"))
    unit_keys: list[str]
    console_key: str
    state: str
    name: str
    mqtt: MqttSection


def load(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> SupervisorConfig:
    """The packaged defaults, then ``path`` (the command finds it: ``--config``, else
    /etc/bodycam/supervisor.toml, else the user's), then flags."""
    return _config.load(SupervisorConfig, PACKAGE_DEFAULTS, path, overrides)
