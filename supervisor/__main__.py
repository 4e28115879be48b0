"""``bodycam-supervisor``: watch stoppage alerts, list device status, acknowledge alerts."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from evidence.cli import UsageError, run_command, setup_logging
from evidence.registry import Registry

from .config import SYSTEM_CONFIG, SupervisorConfig
from .config import load as load_supervisor_config
from .console import format_json, format_line, format_status_rows
from .judge import AlertJudge, SeenState, Verdict
from .watch import BrokerSettings, Watcher, collect_status, send_ack

_log = logging.getLogger(__name__)

PROG = "bodycam-supervisor"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="TOML", help=f"config file (default: {SYSTEM_CONFIG} if it exists)"
    )
    common.add_argument("--registry", metavar="JSON", help="the unit's device registry")
    common.add_argument(
        "--state", metavar="JSON", help="where the watch remembers what it has shown"
    )
    common.add_argument("--host", help="broker host")
    common.add_argument("--port", type=int, help="broker port")
    common.add_argument("--ca-file", help="CA certificate of the broker (enables TLS)")
    common.add_argument("--username", help="broker user name")
    common.add_argument("--password-file", help="file holding the broker password (mode 0600)")
    common.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser = argparse.ArgumentParser(
        prog=PROG, description="Receive and verify body-camera stoppage alerts over MQTT."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="show alerts as they arrive, verified",
        description="Show each alert once, newest last: time, device, officer, reason, how "
        "long ago. Alerts that fail verification start with '!!' and say why.",
    )
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument(
        "--count", type=int, metavar="N", help="exit after N alerts have been shown (for scripts)"
    )
    watch.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="exit after S seconds (status 1 if --count was not reached)",
    )
    status = sub.add_parser(
        "status", parents=[common], help="list devices with their last status and journal head"
    )
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    status.add_argument(
        "--wait",
        type=float,
        default=1.0,
        metavar="S",
        help="how long to collect retained statuses (default 1 s)",
    )
    ack = sub.add_parser(
        "ack", parents=[common], help="acknowledge an alert; the camera buzzes to show it"
    )
    ack.add_argument("device", help="device id")
    ack.add_argument("seq", type=int, help="the alert's journal seq (shown as #N by watch)")
    ack.add_argument("--by", help="who acknowledges (default: config 'name' or login)")
    ack.add_argument("--unit", help="the device's unit (default: from the registry)")
    return parser


def load(args: argparse.Namespace) -> SupervisorConfig:
    """supervisor/supervisor.toml, then --config or /etc/bodycam/supervisor.toml, then flags."""
    return load_supervisor_config(
        args.config,
        {
            "registry": args.registry,
            "state": args.state,
            "mqtt.host": args.host,
            "mqtt.port": args.port,
            "mqtt.ca_file": args.ca_file,
            "mqtt.username": args.username,
            "mqtt.password_file": args.password_file,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    return run_command(PROG, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    config = load(args)
    settings = BrokerSettings(**config["mqtt"])
    registry = Registry.load(config["registry"])
    if args.command == "ack":
        return _ack(args, config, settings, registry)
    state_path = Path(config["state"] or _default_state())
    if args.command == "watch":
        try:
            state_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot keep the watch's state in {state_path.parent}: "
                f"{exc.strerror} (use --state)"
            ) from None
        if not os.access(state_path.parent, os.W_OK):
            raise UsageError(f"cannot write the watch's state in {state_path.parent} (use --state)")
    state = SeenState(state_path)
    judge = AlertJudge(registry, state)
    if args.command == "status":
        rows = collect_status(settings, judge, registry, wait_s=args.wait)
        if args.json:
            import json

            for row in rows:
                print(json.dumps(row, sort_keys=True), flush=True)
        else:
            for line in format_status_rows(rows):
                print(line, flush=True)
        return 0
    return _watch(args, config, settings, judge)


def _watch(
    args: argparse.Namespace, config: SupervisorConfig, settings: BrokerSettings, judge: AlertJudge
) -> int:
    stop = threading.Event()
    shown = [0]
    fmt = format_json if args.json else format_line

    def emit(verdict: Verdict) -> None:  # paho's thread
        sys.stdout.write(fmt(verdict, time.time_ns()) + "\n")
        sys.stdout.flush()
        shown[0] += 1
        if args.count is not None and shown[0] >= args.count:
            stop.set()

    name = config["name"] or _login()
    watcher = Watcher(settings, judge, emit, client_id=f"bodycam-supervisor-{name}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        if threading.current_thread() is threading.main_thread():
            signal.signal(sig, lambda *_: stop.set())
    watcher.start()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while not stop.wait(0.5):
            watcher.save()
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        watcher.stop()
    if args.count is not None and shown[0] < args.count:
        print(f"{PROG}: only {shown[0]} of {args.count} alerts arrived", file=sys.stderr)
        return 1
    return 0


def _ack(
    args: argparse.Namespace, config: SupervisorConfig, settings: BrokerSettings, registry: Registry
) -> int:
    entry = registry.get(args.device)
    unit = args.unit or (entry.unit if entry else "")
    if entry is None:
        raise UsageError(f"device {args.device!r} is not in the registry")
    if not unit:
        raise UsageError(f"the registry gives no unit for {args.device!r}; pass --unit")
    if args.seq < 0:
        raise UsageError("seq must be >= 0")
    by = args.by or config["name"] or _login()
    send_ack(settings, unit, args.device, args.seq, by)
    print(f"acknowledged alert #{args.seq} of {args.device} as {by}")
    return 0


def _default_state() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bodycam" / "supervisor.json"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


if __name__ == "__main__":
    sys.exit(main())
