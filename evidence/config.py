"""TOML configuration shared by every command: defaults, overlaid by a file, then by flags.

Unknown keys and wrong types are errors, never silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .exc import ConfigError


def load_config(
    defaults: dict[str, Any],
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return ``defaults`` overlaid by the TOML file at ``path`` and by ``overrides``.

    ``defaults`` may nest one level of tables. ``overrides`` uses dotted keys
    (``"mqtt.host"``) and skips None values, so argparse results can be passed as they are.
    """
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        _merge(config, data, defaults, str(path))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, key = dotted.split(".")
        data: dict[str, Any] = {key: value}
        for table in reversed(tables):
            data = {table: data}
        _merge(config, data, defaults, "command line")
    return config


def _merge(config: dict, data: dict, defaults: dict, where: str, prefix: str = "") -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise ConfigError(f"{where}: unknown setting {name!r}")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name!r} must be a table")
            _merge(config[key], value, default, where, f"{name}.")
            continue
        if default is not None and not _same_type(default, value):
            raise ConfigError(
                f"{where}: {name!r} must be {type(default).__name__}, not {type(value).__name__}"
            )
        config[key] = value


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float) and isinstance(value, int):
        return True
    return isinstance(value, type(default))
