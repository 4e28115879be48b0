"""The recorder's configuration: the commented ``recorder.toml`` in this package is the
defaults (every key documented in one place), overlaid by ``/etc/bodycam/recorder.toml``
or ``--config FILE``, then by flags; :class:`RecorderConfig` declares each setting's
type and range (no defaults in code), and :func:`daemonkit.config.load` checks them."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemonkit import config as _config
from daemonkit.config import (
    Config,
    Section,
    at_least,
    at_most,
    between,
    more_than,
    port,
    setting,
)
from evidence.exc import ConfigError
from evidence.schedule import Schedule, ScheduleError, parse_schedule
from wire.net import parse_address

from .state import Settings

PACKAGE_DEFAULTS = Path(__file__).with_name("recorder.toml")
SYSTEM_CONFIG = Path("/etc/bodycam/recorder.toml")
ASSET_WAV = Path(__file__).with_name("assets") / "announcement.wav"
ANNOUNCEMENT_TEXT = "为保护您的合法权益，监督我们的执法行为，本次行政执法全程录音、录像。"


@dataclass(frozen=True)
class DeviceSection(Section):
    storage: str
    key: str


@dataclass(frozen=True)
class CameraSection(Section):
    width: int = setting(between(16, 8192))
    height: int = setting(between(16, 8192))
    fps: int = setting(between(1, 240))
    bitrate: int = setting(between(10_000, 100_000_000))
    keyframe_period_s: float = setting(more_than(0))
    audio: bool
    audio_sample_rate: int = setting(between(8000, 192_000))
    audio_channels: int = setting(between(1, 2))


@dataclass(frozen=True)
class RecordingSection(Section):
    pre_event_s: int = setting(between(0, 120))
    pre_event_audio: bool
    pre_event_max_mb: int = setting(at_least(1))
    segment_max_s: int = setting(between(1, 3600))
    flush_interval_s: float = setting(more_than(0))
    queue_frames: int = setting(at_least(1))
    queue_put_timeout_s: float = setting(more_than(0))


@dataclass(frozen=True)
class ControlsSection(Section):
    start_hold_s: float = setting(at_least(0))
    stop_hold_s: float = setting(more_than(0))  # a stop is never accidental
    weather_hold_s: float = setting(more_than(0))
    mark_hold_s: float = setting(more_than(0))
    bounce_s: float = setting(at_least(0))
    reminder_s: float = setting(more_than(0))


@dataclass(frozen=True)
class HealthSection(Section):
    poll_s: float = setting(at_least(0.05))  # 0 would spin a core
    frame_watchdog_s: float = setting(more_than(0))
    camera_retry_s: float = setting(more_than(0))
    writer_stall_s: float = setting(more_than(0))
    writer_restart_s: float = setting(more_than(0))
    writer_restarts: int = setting(at_least(0))
    min_free_mb: int = setting(at_least(0))
    battery_low_percent: float = setting(between(0, 100))
    battery_warn_minutes: float = setting(at_least(0))
    battery_critical_percent: float = setting(between(0, 100))
    battery_resume_percent: float = setting(between(0, 100))
    drain_percent_per_hour: float = setting(more_than(0))
    overheat_c: float = setting(between(0, 150))
    overheat_resume_c: float = setting(between(0, 150))
    microphone_stops_recording: bool


@dataclass(frozen=True)
class AnnouncementSection(Section):
    wav: str


@dataclass(frozen=True)
class ScheduleSection(Section):
    fixed: bool
    days: list[int]
    hours: list[str]
    utc_offset: str

    def schedule(self) -> Schedule:
        return parse_schedule(
            {"days": self.days, "hours": self.hours, "utc_offset": self.utc_offset}
        )


@dataclass(frozen=True)
class MqttSection(Section):
    host: str
    port: int = setting(port())
    unit: str
    ca_file: str
    insecure: bool
    cert_file: str
    key_file: str
    username: str
    password_file: str
    keepalive_s: int = setting(between(5, 3600))
    status_interval_s: float = setting(more_than(0))
    reconnect_max_s: float = setting(more_than(0))
    inflight: int = setting(between(1, 1000))


@dataclass(frozen=True)
class DockSection(Section):
    port: str
    registry: str
    unit_keys: list[str]
    timeout_s: float = setting(more_than(0))
    poll_s: float = setting(at_least(0.05))
    max_clock_step_s: float = setting(more_than(0), at_most(86400))
    network: str
    network_retry_s: float = setting(more_than(0))
    network_retry_max_s: float = setting(more_than(0))
    network_refused_retry_s: float = setting(more_than(0))
    network_idle_s: float = setting(more_than(0))
    network_clock_tolerance_s: float = setting(at_least(0))


@dataclass(frozen=True)
class RecorderConfig(Config):
    device: DeviceSection
    camera: CameraSection
    recording: RecordingSection
    controls: ControlsSection
    health: HealthSection
    announcement: AnnouncementSection
    schedule: ScheduleSection
    mqtt: MqttSection
    dock: DockSection

    def checks(self) -> Iterable[tuple[str, str]]:
        h = self.health
        if h.battery_critical_percent >= h.battery_resume_percent:
            yield (
                "health.battery_resume_percent",
                f"({h.battery_resume_percent:g}) must be above battery_critical_percent "
                f"({h.battery_critical_percent:g}), or recording would stop and resume at once",
            )
        if h.battery_critical_percent >= h.battery_low_percent:
            yield (
                "health.battery_low_percent",
                f"({h.battery_low_percent:g}) must be above battery_critical_percent "
                f"({h.battery_critical_percent:g}): the warning comes before the stop",
            )
        if h.overheat_resume_c >= h.overheat_c:
            yield (
                "health.overheat_resume_c",
                f"({h.overheat_resume_c:g}) must be below overheat_c ({h.overheat_c:g})",
            )
        try:
            self.schedule.schedule()
        except ScheduleError as exc:
            yield (f"schedule.{exc.key}" if exc.key else "schedule", exc.problem)
        d = self.dock
        if d.network:
            try:
                parse_address(d.network)
            except ValueError as exc:
                yield ("dock.network", str(exc))
            if not d.registry:
                yield (
                    "dock.network",
                    "needs dock.registry: the camera pins the dock's TLS key from it",
                )
        if d.network_retry_s > d.network_retry_max_s:
            yield (
                "dock.network_retry_s",
                f"({d.network_retry_s:g}) must not be more than network_retry_max_s "
                f"({d.network_retry_max_s:g})",
            )
        if self.recording.flush_interval_s > self.recording.segment_max_s:
            yield (
                "recording.flush_interval_s",
                f"({self.recording.flush_interval_s:g}) must not be longer than "
                f"recording.segment_max_s ({self.recording.segment_max_s})",
            )


def defaults() -> dict[str, Any]:
    """The packaged defaults as plain tables (for tools that overlay them themselves)."""
    with PACKAGE_DEFAULTS.open("rb") as f:
        return tomllib.load(f)


def load(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> RecorderConfig:
    """Defaults, then ``path`` (or /etc/bodycam/recorder.toml if it exists), then flags."""
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    return _config.load(RecorderConfig, PACKAGE_DEFAULTS, path, overrides)


def validate(config: Mapping[str, Any]) -> RecorderConfig:
    """Check a whole config given as tables (e.g. the simulator's, built with
    :func:`daemonkit.config.load_config`) as :func:`load` checks a file."""
    return _config.check(RecorderConfig, PACKAGE_DEFAULTS, config)


def settings(config: Mapping[str, Any]) -> Settings:
    """The state machine's view of the configuration."""
    c, h = config["controls"], config["health"]
    return Settings(
        pre_event_s=int(config["recording"]["pre_event_s"]),
        start_hold_s=c["start_hold_s"],
        stop_hold_s=c["stop_hold_s"],
        weather_hold_s=c["weather_hold_s"],
        mark_hold_s=c["mark_hold_s"],
        reminder_s=c["reminder_s"],
        frame_watchdog_s=h["frame_watchdog_s"],
        camera_retry_s=h["camera_retry_s"],
        writer_stall_s=h["writer_stall_s"],
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


def announcement_wav(config: Mapping[str, Any]) -> Path:
    wav = config["announcement"]["wav"]
    return Path(wav) if wav else ASSET_WAV


def trusted_docks(config: Mapping[str, Any]) -> dict[str, str]:
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
