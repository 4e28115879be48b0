"""The recorder's configuration: the commented ``recorder.toml`` in this package is the
defaults (so every key is documented in one place), overlaid by ``/etc/bodycam/recorder.toml``
or ``--config FILE``, then by flags (evidence.config.load_config rejects unknown keys)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from evidence.config import load_config
from evidence.exc import ConfigError

from .state import Settings

PACKAGE_DEFAULTS = Path(__file__).with_name("recorder.toml")
SYSTEM_CONFIG = Path("/etc/bodycam/recorder.toml")
ASSET_WAV = Path(__file__).with_name("assets") / "announcement.wav"
ANNOUNCEMENT_TEXT = "为保护您的合法权益，监督我们的执法行为，本次行政执法全程录音、录像。"


def defaults() -> dict[str, Any]:
    with PACKAGE_DEFAULTS.open("rb") as f:
        return tomllib.load(f)


def load(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then ``path`` (or /etc/bodycam/recorder.toml if it exists), then flags."""
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    config = load_config(defaults(), path, overrides)
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    rec, cam = config["recording"], config["camera"]
    if not 0 <= rec["pre_event_s"] <= 120:
        raise ConfigError(f"recording.pre_event_s must be 0-120, not {rec['pre_event_s']}")
    if not 1 <= rec["segment_max_s"] <= 3600:
        raise ConfigError("recording.segment_max_s must be 1-3600")
    if cam["fps"] <= 0 or cam["width"] <= 0 or cam["height"] <= 0:
        raise ConfigError("camera width, height and fps must be positive")
    if config["controls"]["stop_hold_s"] <= 0:
        raise ConfigError("controls.stop_hold_s must be positive (a stop is never accidental)")
    dock = config["dock"]
    if dock["timeout_s"] <= 0 or dock["poll_s"] <= 0:
        raise ConfigError("dock.timeout_s and dock.poll_s must be positive")
    step = dock["max_clock_step_s"]
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 86400:
        raise ConfigError("dock.max_clock_step_s must be a number of seconds, 0 < s <= 86400")
    if not all(isinstance(k, str) for k in dock["unit_keys"]):
        raise ConfigError("dock.unit_keys holds fingerprint strings")


def settings(config: dict[str, Any]) -> Settings:
    """The state machine's view of the configuration."""
    c, h = config["controls"], config["health"]
    return Settings(
        pre_event_s=int(config["recording"]["pre_event_s"]),
        start_hold_s=c["start_hold_s"],
        stop_hold_s=c["stop_hold_s"],
        weather_hold_s=c["weather_hold_s"],
        reminder_s=c["reminder_s"],
        frame_watchdog_s=h["frame_watchdog_s"],
        camera_retry_s=h["camera_retry_s"],
        min_free_bytes=int(h["min_free_mb"]) << 20,
        battery_low_percent=h["battery_low_percent"],
        battery_warn_minutes=h["battery_warn_minutes"],
        battery_critical_percent=h["battery_critical_percent"],
        battery_resume_percent=h["battery_resume_percent"],
        drain_percent_per_hour=h["drain_percent_per_hour"],
        overheat_c=h["overheat_c"],
        overheat_resume_c=h["overheat_resume_c"],
        microphone_stops_recording=h["microphone_stops_recording"],
    )


def announcement_wav(config: dict[str, Any]) -> Path:
    wav = config["announcement"]["wav"]
    return Path(wav) if wav else ASSET_WAV


def trusted_docks(config: dict[str, Any]) -> dict[str, str]:
    """Dock id -> public key hex of every dock in the unit-signed registry (``dock.registry``,
    signed by a unit key ``dock.unit_keys`` or /etc/bodycam/trust.toml names) that is not
    revoked: the only docks whose receipts make the camera wipe media. No registry
    configured = never wipe (any registered dock may copy, none delete)."""
    return {e.dock_id: e.public_key for e in dock_entries(config).values() if not e.revoked}


def dock_entries(config: dict[str, Any]) -> dict[str, Any]:
    """Dock id -> :class:`~evidence.registry.DockEntry` of every dock in that registry,
    revoked ones included, so that the camera refuses a revoked dock by name and checks
    each key's validity at the time of the docking (firmware/dock_link.py)."""
    from evidence.exc import EvidenceError
    from evidence.trust import load_trusted_registry, load_unit_keys

    dock = config["dock"]
    if not dock["registry"]:
        return {}
    keys = load_unit_keys(dock["unit_keys"])
    if not keys:
        raise ConfigError(
            "dock.registry is set but no unit key is named (dock.unit_keys or "
            "/etc/bodycam/trust.toml): the camera trusts only a signed registry"
        )
    try:
        registry = load_trusted_registry(dock["registry"], keys)
    except EvidenceError as exc:
        raise ConfigError(f"dock.registry: {exc}") from None
    return {e.dock_id: e for e in registry.docks()}
