"""``bodycam-supervisor``: set up a console, watch stoppage alerts (and receipt each one
shown), list device status, acknowledge alerts."""

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

from alerting.judge import RECENT, AlertJudge, SeenState, Verdict
from alerting.watch import BrokerSettings, StatusEvent, Watcher, collect_status, send_ack
from daemonkit.cli import UsageError, run_command, setup_logging
from evidence.exc import EvidenceError
from evidence.identity import DeviceIdentity, check_device_id
from evidence.registry import Registry
from evidence.storage import atomic_write_bytes
from evidence.trust import load_trusted_registry, load_unit_keys
from evidence.unitkey import show_fingerprint

from .config import SYSTEM_CONFIG, SupervisorConfig
from .config import load as load_supervisor_config
from .console import (
    format_duration,
    format_json,
    format_line,
    format_status_line,
    format_status_rows,
)

_log = logging.getLogger(__name__)

PROG = "bodycam-supervisor"
SETUP_MARK = "# written by bodycam-supervisor setup"
SKEW_NOTE_S = 120.0  # a device clock this far ahead of ours is said once, not per line


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
    common.add_argument("--ca-file", help="CA certificate of the broker (TLS is required)")
    common.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        help="plain TCP, password in clear text (loopback test brokers only)",
    )
    common.add_argument("--username", help="broker user name")
    common.add_argument("--password-file", help="file holding the broker password (mode 0600)")
    common.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Receive and verify alerts over MQTT: body cameras' stoppages, docks' "
        "24-hour rule, the archive's case files at day 25 and day 30.",
        epilog="First time on this machine: bodycam-supervisor setup --registry FILE "
        "--unit-key FINGERPRINT (see docs/alerts.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    setup = sub.add_parser(
        "setup",
        help="set this console up: trust a unit's registry, make the console's key",
        description="Check that FILE (the unit's registry.json, from the head of unit's "
        "bodycam-unit, or a simulated shift's) is signed by the unit key FINGERPRINT, make "
        "this console's signing key (its receipts tell cameras an alert was shown), and "
        "write a config naming both, so that 'bodycam-supervisor watch' needs no flags. "
        "Prints the bodycam-unit command that registers the console.",
    )
    setup.add_argument("--registry", required=True, metavar="FILE", help="the unit's registry")
    setup.add_argument(
        "--unit-key",
        required=True,
        action="append",
        metavar="FINGERPRINT",
        help="fingerprint of the unit key that signs it (bodycam-unit fingerprint); repeatable",
    )
    setup.add_argument(
        "--config",
        metavar="TOML",
        help=f"the config to write (default: {_user_config_text()})",
    )
    setup.add_argument("--name", help="this console's name (default: the login name)")
    setup.add_argument(
        "--console-key",
        metavar="FILE",
        help="where to keep the console's key (default: console.key beside the config)",
    )
    setup.add_argument("--host", help="broker host (default localhost)")
    setup.add_argument("--port", type=int, help="broker port (default 8883)")
    setup.add_argument("--ca-file", help="CA certificate of the broker (TLS is required)")
    setup.add_argument(
        "--insecure",
        action="store_true",
        help="plain TCP, password in clear text (loopback test brokers only)",
    )
    setup.add_argument("--username", help="broker user name")
    setup.add_argument("--password-file", help="file holding the broker password (mode 0600)")
    setup.add_argument("-v", "--verbose", action="store_true", help="log more")
    watch = sub.add_parser(
        "watch",
        parents=[common],
        help="show alerts as they arrive, verified, and receipt each one shown",
        description="Show each alert once, newest last (cameras', docks' and archives'): "
        "time, device, officer, reason, how long ago (by the device's own clock). Alerts that fail verification start with "
        "'!!' and say why. Status lines (recording started, shift ended, dock finished) "
        "start with '--'. With a console key (bodycam-supervisor setup) each alert shown is "
        "receipted to its camera, which resends until a registered console has shown it.",
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
    watch.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="give up (status 2) if the broker cannot be reached at start within S "
        "seconds (default 10); once connected, the watch reconnects by itself",
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
    ack.add_argument(
        "--force",
        action="store_true",
        help="send even if this console has not shown that alert (shown on another console)",
    )
    return parser


def _config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bodycam"


def _user_config_text() -> str:
    return "$XDG_CONFIG_HOME/bodycam/supervisor.toml (~/.config/bodycam/supervisor.toml)"


def config_path(args: argparse.Namespace) -> Path | None:
    """--config, else /etc/bodycam/supervisor.toml, else the user's (setup writes it)."""
    if args.config:
        return Path(args.config)
    for path in (SYSTEM_CONFIG, _config_home() / "supervisor.toml"):
        if path.exists():
            return path
    return None


def load(args: argparse.Namespace) -> SupervisorConfig:
    """supervisor/supervisor.toml, then the file config_path finds, then flags."""
    return load_supervisor_config(
        config_path(args),
        {
            "registry": args.registry,
            "state": args.state,
            "mqtt.host": args.host,
            "mqtt.port": args.port,
            "mqtt.ca_file": args.ca_file,
            "mqtt.insecure": args.insecure,
            "mqtt.username": args.username,
            "mqtt.password_file": args.password_file,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("paho").setLevel(logging.CRITICAL)  # its retries, with -v only
    return run_command(PROG, lambda: _run(args))


NO_REGISTRY = (
    "no registry at {path}: set this console up first with "
    "'bodycam-supervisor setup --registry FILE --unit-key FINGERPRINT' (FILE: the unit's "
    "registry.json from the head of unit, or a simulated shift's; FINGERPRINT: "
    "'bodycam-unit fingerprint'), or pass --registry"
)


def load_registry(config: SupervisorConfig) -> Registry:
    """The configured registry; signed by a named unit key when ``unit_keys`` is set."""
    path = Path(config["registry"])
    if not os.path.lexists(path):
        raise UsageError(NO_REGISTRY.format(path=path))
    keys = load_unit_keys(config["unit_keys"], default_file=None)
    return load_trusted_registry(path, keys) if keys else Registry.load(path)


def console_key_path(config: SupervisorConfig) -> Path:
    return Path(config["console_key"] or _config_home() / "console.key")


def _run(args: argparse.Namespace) -> int:
    if args.command == "setup":
        return _setup(args)
    config = load(args)
    registry = load_registry(config)  # "run setup" comes before any broker setting
    settings = BrokerSettings(**config["mqtt"])
    state_path = Path(config["state"] or _default_state())
    if args.command == "ack":
        return _ack(args, config, settings, registry, state_path)
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


def _load_console(config: SupervisorConfig, registry: Registry, say) -> DeviceIdentity | None:
    """This console's key, if setup made one; say what cameras will make of its receipts."""
    path = console_key_path(config)
    if not path.exists():
        if registry.consoles():
            say(
                "no console key: cameras will resend each alert until a registered console "
                "has shown it (run bodycam-supervisor setup)"
            )
        return None
    key = DeviceIdentity.load(path)
    entry = next((c for c in registry.consoles() if c.console_id == key.device_id), None)
    if entry is None or entry.public_key != key.public_key_hex:
        say(
            f"console {key.device_id} is not in the registry's consoles, so cameras ignore "
            "its receipts; the head of unit registers it with: bodycam-unit add-console "
            f"{key.device_id} --public-key {key.public_key_hex}"
        )
    return key


def _watch(
    args: argparse.Namespace, config: SupervisorConfig, settings: BrokerSettings, judge: AlertJudge
) -> int:
    stop = threading.Event()
    shown = [0]
    fmt = format_json if args.json else format_line
    noted: set[str] = set()
    # stdout carries the alerts; in --json mode it carries nothing else.
    info_stream = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        info_stream.write(text + "\n")
        info_stream.flush()

    def emit(verdict: Verdict) -> None:  # paho's thread
        wall = time.time_ns()
        now = watcher.clocks.now_ns(verdict.device, wall) if verdict.genuine else wall
        skew = (now - wall) / 1e9
        if verdict.genuine and skew > SKEW_NOTE_S and verdict.device not in noted:
            noted.add(verdict.device)
            say(
                f"-- {verdict.device}: its clock reads {format_duration(skew)} ahead of this "
                "console's (a simulated shift runs faster than real time, or the clock is "
                "off); ages are by its own clock"
            )
        sys.stdout.write(fmt(verdict, now) + "\n")
        sys.stdout.flush()
        shown[0] += 1
        if args.count is not None and shown[0] >= args.count:
            stop.set()

    def on_status(event: StatusEvent) -> None:  # paho's thread
        say(format_status_line(event))

    name = config["name"] or _login()
    console = _load_console(config, judge.registry, say)
    registry_file = RegistryFile(config, judge, say)
    watcher = Watcher(
        settings,
        judge,
        emit,
        client_id=f"bodycam-supervisor-{name}",
        console=console,
        on_status=on_status,
        refresh=registry_file.check,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        if threading.current_thread() is threading.main_thread():
            signal.signal(sig, lambda *_: stop.set())
    watcher.start()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        where = f"{settings.host}:{settings.port}"
        give_up = time.monotonic() + max(args.connect_timeout, 0.1)
        while not watcher.subscribed.wait(0.05):
            if watcher.connect_failed.is_set() or time.monotonic() >= give_up:
                why = watcher.connect_error or "no answer"
                raise OSError(f"cannot reach the broker at {where} ({why})")
            if stop.is_set():
                return 130
        say(f"connected to {where}, waiting for alerts")
        while not stop.wait(0.5):
            watcher.save()
            with watcher.lock:
                registry_file.check()
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        watcher.stop()
    if args.count is not None and shown[0] < args.count:
        print(f"{PROG}: only {shown[0]} of {args.count} alerts arrived", file=sys.stderr)
        return 1
    return 0


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RegistryFile:
    """The watch's registry file: a new edition (a device added, a key revoked) takes
    effect at once. :meth:`check` runs under the watcher's lock, from the main loop every
    half second and from paho's thread when a camera the registry lacks speaks."""

    def __init__(self, config: SupervisorConfig, judge: AlertJudge, say) -> None:
        self.config = config
        self.judge = judge
        self.say = say
        self.path = Path(config["registry"])
        self.seen = _stat(self.path)

    def check(self) -> None:
        now = _stat(self.path)
        if now == self.seen or now is None:
            return
        self.seen = now
        try:
            registry = load_registry(self.config)
        except (UsageError, EvidenceError, ValueError, OSError) as exc:
            self.say(f"-- the registry changed but cannot be used, keeping the previous one: {exc}")
            return
        self.judge.registry = registry
        _log.info(
            "registry reloaded: %d camera(s), %d dock(s)", len(registry), len(registry.docks())
        )


def _ack(
    args: argparse.Namespace,
    config: SupervisorConfig,
    settings: BrokerSettings,
    registry: Registry,
    state_path: Path,
) -> int:
    entry = registry.get(args.device)
    unit = args.unit or (entry.unit if entry else "")
    if entry is None:
        raise UsageError(f"device {args.device!r} is not in the registry")
    if not unit:
        raise UsageError(f"the registry gives no unit for {args.device!r}; pass --unit")
    if args.seq < 0:
        raise UsageError("seq must be >= 0")
    state = SeenState(state_path)
    seen = state.devices.get(args.device)
    if not args.force and not state.was_shown(args.device, args.seq):
        newest = f" (the newest shown is #{seen.max_seq})" if seen and seen.max_seq >= 0 else ""
        raise UsageError(
            f"no alert #{args.seq} of {args.device} has been shown on this console"
            f"{newest}; not acknowledging (the last {RECENT} shown per camera are known; "
            "--force sends it anyway)"
        )
    by = args.by or config["name"] or _login()
    send_ack(settings, unit, args.device, args.seq, by)
    print(f"acknowledged alert #{args.seq} of {args.device} as {by}")
    return 0


def _setup(args: argparse.Namespace) -> int:
    """Trust a unit's registry, make the console key, write the config: see --help."""
    registry_path = Path(args.registry).absolute()
    if not registry_path.exists():
        raise UsageError(
            f"{registry_path}: no such registry (the head of unit makes it with "
            "'bodycam-unit init' and hands it over; a simulated shift writes one in its folder)"
        )
    keys = load_unit_keys(args.unit_key, default_file=None)
    registry = load_trusted_registry(registry_path, keys)
    target = Path(args.config) if args.config else _config_home() / "supervisor.toml"
    if target.exists() and SETUP_MARK not in target.read_text(errors="replace"):
        raise UsageError(f"{target} exists and was not written by setup; not replacing it")
    name = args.name or _login()
    console_id = f"console-{name}"
    try:
        check_device_id(console_id)
    except ValueError:
        raise UsageError(f"--name {name!r}: letters, digits, '.', '_', '-' only") from None
    key_path = (
        Path(args.console_key).absolute()
        if args.console_key
        else target.parent.absolute() / "console.key"
    )
    made = not key_path.exists()
    key = DeviceIdentity.create(key_path, console_id) if made else DeviceIdentity.load(key_path)
    mqtt = {
        "host": args.host or "localhost",
        "port": args.port or 8883,
        "ca_file": args.ca_file or "",
        "insecure": bool(args.insecure),
        "username": args.username or "",
        "password_file": str(Path(args.password_file).absolute()) if args.password_file else "",
    }
    BrokerSettings(**mqtt)  # TLS or an explicit insecure: refused now, not at the first watch
    lines = [
        SETUP_MARK + f" for console {key.device_id}; edit freely, rerun setup to renew.",
        f"registry = {_toml(str(registry_path))}",
        "unit_keys = [" + ", ".join(_toml(show_fingerprint(k)) for k in sorted(keys)) + "]",
        f"console_key = {_toml(str(key_path))}",
        f"name = {_toml(name)}",
        "",
        "[mqtt]",
        *(f"{k} = {_toml_value(v)}" for k, v in mqtt.items()),
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, ("\n".join(lines) + "\n").encode(), mode=0o600)
    sig = registry.signature
    assert sig is not None  # load_trusted_registry refuses an unsigned one
    print(
        f"registry {registry_path}: edition {sig.serial} of unit {sig.unit}, "
        f"{len(registry)} camera(s), {len(registry.docks())} dock(s), signed by unit key "
        f"{show_fingerprint(sig.fingerprint)}"
    )
    print(f"console key {key_path}: {'made' if made else 'kept'}, console {key.device_id}")
    print(f"wrote {target}")
    registered = any(
        c.console_id == key.device_id and c.public_key == key.public_key_hex
        for c in registry.consoles()
    )
    if registered:
        print("this console is registered: cameras honour its receipts")
    else:
        print(
            "next: the head of unit registers this console, so cameras stop resending what it "
            "has shown:"
        )
        print(f"  bodycam-unit add-console {key.device_id} --public-key {key.public_key_hex}")
    print("then run: bodycam-supervisor watch")
    return 0


def _toml_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else _toml(value)


def _toml(text: str) -> str:
    import json

    return json.dumps(text)  # a JSON string is a TOML basic string


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
