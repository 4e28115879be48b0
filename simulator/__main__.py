"""``bodycam-sim``: the hardware simulator's command line (``python -m simulator``).

``bodycam-sim shift --out DIR`` runs a scripted shift on the hardware twin and leaves the
camera's storage in ``DIR/device/`` (see :mod:`simulator.shift`); ``bodycam-sim dock --out
DIR`` docks that camera into ``DIR/dock/``. On a terminal the shift shows a progress bar
(:mod:`simulator.progress`); elsewhere it logs one line per event. Ctrl-C ends the shift
early, says what was kept and how to go on, and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from daemonkit.cli import UsageError, run_command, setup_logging

PROG = "bodycam-sim"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="The body camera's hardware simulator.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser(
        "shift",
        help="run a simulated shift end to end",
        description="Run a scripted shift (presses, marks, holds, faults) on the simulated "
        "camera and leave its storage in DIR/device/, a summary in DIR/summary.json. "
        "A new DIR is a new camera (cam- and 6 hex digits); running again on the same DIR "
        "continues the same device (crash recovery first). On a terminal a progress bar "
        "shows simulated time, recordings, segments and stoppages; elsewhere each event is "
        "a log line (BODYCAM_LOG_FORMAT=json for JSON lines). Ctrl-C ends the shift early: "
        "it says what was kept and how to go on, and exits 130.",
    )
    s.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    s.add_argument(
        "--duration",
        metavar="D",
        help="simulated length, e.g. 8h, 90m, 45s (default: the scenario's, else 8h)",
    )
    s.add_argument(
        "--speed",
        type=float,
        metavar="N",
        help="simulated seconds per real second (1 = real time; "
        "default: as fast as the machine allows)",
    )
    s.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="TOML scenario (default: a built-in working day)",
    )
    s.add_argument(
        "--seed", type=int, metavar="N", help="jitter event times by up to +-2 s, reproducibly"
    )
    s.add_argument(
        "--dock",
        action="store_true",
        help="dock the camera after the shift (offload into DIR/dock/)",
    )
    s.add_argument(
        "--network",
        action="store_true",
        help="a fixed camera, or a body camera on the station's Wi-Fi: dock each closed "
        "segment over loopback TLS into DIR/dock/ while recording (scenario: "
        "[shift] network = true; see docs/simulator.md)",
    )
    _mqtt_flag(s)
    s.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on a terminal (log lines instead, as when not on a terminal)",
    )
    s.add_argument("--no-sign", action="store_true", help=argparse.SUPPRESS)  # benchmark only
    _log_flags(s)
    d = sub.add_parser(
        "dock",
        help="dock the camera of an earlier shift",
        description="Dock the simulated camera of DIR (left by `bodycam-sim shift --out DIR`): "
        "offload DIR/device/ into the dock store DIR/dock/ over a simulated USB cable. "
        "This is what `shift --dock` does after the shift, on its own: for a shift that "
        "was interrupted, or docked before.",
    )
    d.add_argument("--out", required=True, type=Path, metavar="DIR", help="the shift's folder")
    _mqtt_flag(d)
    _log_flags(d)
    return p


def _mqtt_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="send the camera's alerts and status to this broker (plain TCP; see docs/alerts.md)",
    )


def _mqtt_settings(address: str | None, unit: str) -> Any:
    """The camera's link settings for ``--mqtt HOST:PORT``, or None without it."""
    if not address:
        return None
    from firmware.mqtt import MqttSettings

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--mqtt must be HOST:PORT, not {address!r}")
    # The simulator talks to a loopback test broker: plain TCP, said so explicitly.
    return MqttSettings(host=host, port=int(port), unit=unit, insecure=True)


def _log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at debug level, with every LED and buzzer change",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(args.verbose)
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    if args.command == "dock":
        return run_command(PROG, lambda: _dock_only(args))
    return run_command(PROG, lambda: _shift(args))


def _say(text: str) -> None:
    """A line for the person at the terminal (stderr: stdout keeps the summary)."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _shift(args: argparse.Namespace) -> int:
    from .progress import ShiftBar, hms, on_terminal
    from .scenario import default_scenario, load_scenario, parse_duration
    from .shift import run_shift, write_summary

    scenario = load_scenario(args.scenario) if args.scenario else None
    duration = args.duration or (scenario.shift.get("duration") if scenario else None) or "8h"
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if seconds <= 0:
        raise UsageError("--duration must be positive")
    if args.speed is not None and args.speed <= 0:
        raise UsageError("--speed must be positive")
    if scenario is None:
        scenario = default_scenario(seconds)
    mqtt = _mqtt_settings(args.mqtt, scenario.shift.get("unit", "unit-1"))
    out: Path = args.out
    bar = None
    if not args.no_progress and on_terminal(sys.stderr):
        bar = ShiftBar(
            seconds,
            out / "device" / "journal.jsonl",
            level=logging.DEBUG if args.verbose else logging.WARNING,
        )
    try:
        with bar if bar is not None else contextlib.nullcontext():
            summary = run_shift(
                out,
                scenario,
                duration_s=seconds,
                speed=args.speed,
                seed=args.seed,
                sign=not args.no_sign,
                mqtt=mqtt,
                docks_after=args.dock,
                progress=bar.tick if bar is not None else None,
                network=args.network or bool(scenario.shift.get("network", False)),
            )
            if bar is not None:
                bar.tick(summary["simulated_s"], force=True)
            if args.dock and not summary["interrupted"]:
                if bar is not None:
                    bar.phase("docking")
                try:
                    after = parse_duration(scenario.shift.get("dock_after", 0))
                    summary["dock"] = _dock(out, mqtt, after)
                except KeyboardInterrupt:
                    summary["dock"] = {"outcome": "interrupted"}
    except KeyboardInterrupt:  # while the recorder started, or a second Ctrl-C as it closed
        _say(
            f"interrupted while the recorder started or stopped: what it left unsigned in "
            f"{out / 'device'} is recovered and signed first by `{PROG} shift --out {out}`"
        )
        return 130
    path = write_summary(out, summary)
    if summary["interrupted"]:
        _say(
            f"interrupted at {hms(summary['simulated_s'])} of {hms(seconds)} simulated: "
            f"kept {_n(summary['recordings'], 'recording')}, "
            f"{_n(summary['segments'], 'segment')} ({summary['recorded_s']:.0f} s), "
            f"signed, in {out / 'device'} "
            f"(summary: {path})"
        )
        _continue_hint(out)
        return 130
    _print_summary(out, summary, path, docked=args.dock)
    if summary.get("dock", {}).get("outcome") == "interrupted":
        _say(f"interrupted while docking: the camera keeps every file in {out / 'device'}")
        _continue_hint(out)
        return 130
    if args.verbose:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    for error in summary["errors"]:  # the shift did not go as its scenario says
        _say(f"error: {error}")
    return 1 if summary["errors"] else 0


def _dock(out: Path, mqtt: Any = None, after_s: float = 0.0) -> dict[str, Any]:
    from .clock import SimClock
    from .dockbay import dock_shift
    from .shift import resume_point

    # The dock phase goes on from where the shift's simulated clock stopped (same boot),
    # ``after_s`` later (the scenario's dock_after: a camera docked late).
    utc, mono = resume_point(out / "device" / "journal.jsonl", not_before=0)
    utc = (utc or time.time_ns()) + int(after_s * 10**9)
    clock = SimClock(utc, start_monotonic_ns=(mono or 1000 * 10**9) + int(after_s * 10**9))
    return dock_shift(
        out / "device",
        out / "device-key" / "device.key",
        out / "dock",
        out / "registry.json",
        clock,
        mqtt,
    )


def _dock_only(args: argparse.Namespace) -> int:
    out: Path = args.out
    for needed in (out / "device" / "journal.jsonl", out / "device-key" / "device.key"):
        if not needed.exists():
            raise UsageError(
                f"{out} holds no simulated camera (no {needed.relative_to(out)}): "
                f"run `{PROG} shift --out {out}` first"
            )
    mqtt = _mqtt_settings(args.mqtt, _unit_of(out))
    try:
        result = _dock(out, mqtt)
    except KeyboardInterrupt:
        _say(f"interrupted while docking: the camera keeps every file in {out / 'device'}")
        _say(f"to dock it again: {PROG} dock --out {out}")
        return 130
    print(_dock_line(result))
    print(f"next: {_verify_command(out, docked=True)}")
    return 0 if result.get("outcome") == "stored" else 1


def _unit_of(out: Path) -> str:
    """The unit of DIR's simulated camera, as its registry gives it (unit-1 otherwise)."""
    from evidence.identity import DeviceIdentity
    from evidence.registry import Registry

    try:
        device = DeviceIdentity.load(out / "device-key" / "device.key").device_id
        entry = Registry.load(out / "registry.json").get(device)
    except (OSError, ValueError):
        return "unit-1"
    return entry.unit if entry is not None and entry.unit else "unit-1"


def _dock_line(dock: dict[str, Any] | None) -> str:
    """The dock phase in one line."""
    if dock is None:
        return "dock: not docked (add --dock, or run `bodycam-sim dock --out DIR`)"
    outcome = dock.get("outcome", "no result")
    if outcome != "stored":
        why = dock.get("reason") or dock.get("camera_error") or ""
        return f"dock: {outcome.upper()}" + (f": {why}" if why else "")
    size = dock.get("bytes", 0) / 1e6
    line = (
        f"dock: stored {dock.get('media', 0)} files ({size:.1f} MB) and "
        f"{dock.get('records', 0)} records in {dock.get('store')} "
        f"in {dock.get('seconds', 0):.1f} s; the camera wiped {dock.get('wiped', 0)} files"
    )
    offset = dock.get("clock_offset_ns")
    if offset:
        line += f", its clock corrected by {abs(offset) / 1e9:.1f} s"
    return line


def _network_line(net: dict[str, Any]) -> str:
    """What the network carried, in one line."""
    line = (
        f"network: {net['segments_stored']} segments stored over TLS at {net['address']} in "
        f"{net['stored_sessions']} sessions ({net['failed_tries']} failed tries)"
    )
    real = net.get("close_to_stored_s")
    if real:
        line += f"; close to stored p50 {real['p50']:.2f} s, p99 {real['p99']:.2f} s"
    if net.get("segments_left_for_the_cable"):
        line += f"; {net['segments_left_for_the_cable']} left for the cable (--dock)"
    return line


def _print_summary(out: Path, summary: dict[str, Any], path: Path, *, docked: bool) -> None:
    print(
        f"shift: {summary['simulated_s'] / 3600:.2f} h simulated in {summary['wall_s']:.1f} s "
        f"({summary['speed']}x), camera {summary['device']}: {summary['recordings']} "
        f"recordings, {summary['segments']} segments ({summary['recorded_s']:.0f} s), "
        f"{summary['photos']} photos, {summary['markers']} markers"
    )
    stoppages = ", ".join(f"{k} x{v}" for k, v in sorted(summary["stoppages"].items())) or "none"
    print(
        f"stoppages: {stoppages}; battery_low: {summary['battery_low']}; "
        f"recovered: {summary['recovered']}"
    )
    if summary.get("network"):
        print(_network_line(summary["network"]))
    if summary.get("network") and not docked:
        print(f"dock store: {out / 'dock'} (what the network carried)")
    else:
        print(_dock_line(summary.get("dock")))
    print(f"storage: {out / 'device'}  summary: {path}")
    from evidence.registry import Registry
    from evidence.unitkey import show_fingerprint

    signed = Registry.load(out / "registry.json")
    print(
        f"trust: the simulated unit key {show_fingerprint(signed.fingerprint)} signed "
        f"{out / 'registry.json'}; {out / 'trust.toml'} names it (bodycam-verify --trust)"
    )
    stored = bool(docked and summary.get("dock")) or bool(summary.get("network"))
    print(f"next: {_verify_command(out, docked=stored)}")


def _continue_hint(out: Path) -> None:
    _say(
        f"to go on: `{PROG} shift --out {out}` continues the same camera; "
        f"`{PROG} dock --out {out}` docks what was kept; "
        f"`{_verify_command(out, docked=False)}` checks it"
    )


def _verify_command(out: Path, *, docked: bool) -> str:
    """How to check what a shift left: the dock store holds its registry, a camera's
    storage does not (the registry lies beside it, signed by the simulated unit key)."""
    if docked:
        return f"bodycam-verify --trust {out / 'trust.toml'} {out / 'dock'}"
    return (
        f"bodycam-verify --trust {out / 'trust.toml'} --registry {out / 'registry.json'} "
        f"{out / 'device'}"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


if __name__ == "__main__":
    raise SystemExit(main())
