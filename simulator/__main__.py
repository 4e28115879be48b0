"""``bodycam-sim``: the hardware simulator's command line (``python -m simulator``).

``bodycam-sim shift --out DIR`` runs a scripted shift on the hardware twin and leaves the
camera's storage in ``DIR/device/`` (see :mod:`simulator.shift`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from evidence.cli import UsageError, run_command, setup_logging

PROG = "bodycam-sim"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="The body camera's hardware simulator.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser(
        "shift",
        help="run a simulated shift end to end",
        description="Run a scripted shift (presses, marks, holds, faults) on the simulated "
        "camera and leave its storage in DIR/device/, a summary in DIR/summary.json. "
        "Running again on the same DIR continues the same device (crash recovery first).",
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
        "--mqtt",
        metavar="HOST:PORT",
        help="send the camera's alerts and status to this broker (plain TCP; see docs/alerts.md)",
    )
    s.add_argument("--no-sign", action="store_true", help=argparse.SUPPRESS)  # benchmark only
    s.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    s.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(args.verbose)
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    return run_command(PROG, lambda: _shift(args))


def _shift(args: argparse.Namespace) -> int:
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
    mqtt = None
    if args.mqtt:
        from firmware.mqtt import MqttSettings

        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--mqtt must be HOST:PORT, not {args.mqtt!r}")
        # The simulator talks to a loopback test broker: plain TCP, said so explicitly.
        mqtt = MqttSettings(
            host=host, port=int(port), unit=scenario.shift.get("unit", "unit-1"), insecure=True
        )
    out: Path = args.out
    summary = run_shift(
        out,
        scenario,
        duration_s=seconds,
        speed=args.speed,
        seed=args.seed,
        sign=not args.no_sign,
        mqtt=mqtt,
    )
    if args.dock:
        from .clock import SimClock
        from .dockbay import dock_shift
        from .shift import resume_point

        # The dock phase goes on from where the shift's simulated clock stopped (same boot).
        utc, mono = resume_point(out / "device" / "journal.jsonl")
        clock = SimClock(utc, start_monotonic_ns=mono or 1000 * 10**9)
        summary["dock"] = dock_shift(
            out / "device",
            out / "device-key" / "device.key",
            out / "dock",
            out / "registry.json",
            clock,
        )
    path = write_summary(out, summary)
    print(
        f"shift: {summary['simulated_s'] / 3600:.2f} h simulated in {summary['wall_s']:.1f} s "
        f"({summary['speed']}x), {summary['recordings']} recordings, "
        f"{summary['segments']} segments ({summary['recorded_s']:.0f} s), "
        f"{summary['photos']} photos, {summary['markers']} markers"
    )
    stoppages = ", ".join(f"{k} x{v}" for k, v in sorted(summary["stoppages"].items())) or "none"
    print(
        f"stoppages: {stoppages}; battery_low: {summary['battery_low']}; "
        f"recovered: {summary['recovered']}"
    )
    print(f"storage: {out / 'device'}  summary: {path}")
    from evidence.registry import Registry
    from evidence.unitkey import show_fingerprint

    signed = Registry.load(out / "registry.json")
    print(
        f"trust: the simulated unit key {show_fingerprint(signed.fingerprint)} signed "
        f"{out / 'registry.json'}; {out / 'trust.toml'} names it (bodycam-verify --trust)"
    )
    if args.verbose:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
