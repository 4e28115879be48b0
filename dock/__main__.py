"""``bodycam-dock``: the docking station (``python -m dock``).

Subcommands: ``init`` (make the dock key and store), ``serve`` (the daemon: bays given by
``--port``/``dock.bays`` as threads, the network bay on ``--listen``/``dock.listen``,
deadline alerts over MQTT), ``bay PORT`` (one bay in
the foreground: what udev/systemd starts per plugged camera), ``status`` (per-bay progress),
``report deadlines|compliance``, ``registry list|import``, ``reconcile``, ``remove``
(retention), ``relabel`` (a marked key moment read as another, journaled), ``check
announcements`` (the announcement in the recorded audio, :mod:`dock.audiocheck`).

systemd: ``serve`` and ``bay`` are ``Type=notify``; SIGTERM/SIGINT only set the stop Event.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from daemonkit import systemd
from daemonkit.cli import UsageError, run_command, setup_logging
from evidence.clock import SystemClock, format_utc, parse_utc
from evidence.identity import DeviceIdentity
from evidence.registry import Registry

from .config import DockConfig
from .config import load as load_dock_config

PROG = "bodycam-dock"
DEFAULT_CONFIG = "/etc/bodycam/dock.toml"
_log = logging.getLogger("dock")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The docking station: offload cameras over the dock cable, "
        "verify and store their evidence, report and alert on the 24-hour rule. Config: "
        f"dock/dock.toml (defaults, every key documented), overlaid by {DEFAULT_CONFIG} "
        "if present or --config, then by flags.",
    )

    def common(parser: argparse.ArgumentParser, default: Any) -> None:
        # Accepted before or after the subcommand (the systemd units put --config last).
        parser.add_argument(
            "--config",
            default=default,
            help=f"TOML file overlaying the defaults (default {DEFAULT_CONFIG} if it exists)",
        )
        parser.add_argument("--store", default=default, help="the dock store (dock.store)")
        parser.add_argument("--key", default=default, help="the dock's key file (dock.key)")
        parser.add_argument(
            "--unit-key",
            action="append",
            default=default,
            metavar="FINGERPRINT",
            help="a unit key whose signed registry this dock trusts (dock.unit_keys; repeatable)",
        )
        parser.add_argument(
            "-v", "--verbose", action="store_true", default=default or False, help="debug logging"
        )

    common(p, None)
    shared = argparse.ArgumentParser(add_help=False)
    common(shared, argparse.SUPPRESS)

    def with_common(**kw: Any) -> argparse.ArgumentParser:
        return argparse.ArgumentParser(parents=[shared], **kw)

    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=with_common
    )
    s = sub.add_parser("init", help="make the dock's key and an empty store")
    s.add_argument("--dock-id", help="this dock's id (dock.id)")
    s = sub.add_parser("serve", help="run the dock daemon (bays as threads, MQTT alerts)")
    s.add_argument(
        "--port",
        action="append",
        metavar="TTY",
        help="a serial port to serve as a bay (repeatable; dock.bays)",
    )
    s.add_argument("--mqtt", metavar="HOST:PORT", help="broker for deadline alerts (mqtt.host)")
    s.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve cameras over TLS TCP on this address, e.g. 0.0.0.0:7443 (dock.listen)",
    )
    s = sub.add_parser("bay", help="serve one bay in the foreground (udev starts one per camera)")
    s.add_argument("port", metavar="TTY", help="the camera's serial port, e.g. /dev/ttyACM0")
    s = sub.add_parser(
        "status", help="show each bay's state and offload progress, the store's free space"
    )
    s.add_argument("--watch", action="store_true", help="refresh twice a second until Ctrl-C")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s = sub.add_parser(
        "report",
        help="reports over the store (exit 1 when it lists a problem)",
        description="Reports over the store. Exit status: 0 nothing to report, 1 the report "
        "lists problems (a recording not stored on time or not yet, an undocked device, a "
        "flag), 2 could not report.",
    )
    s.add_argument(
        "what",
        choices=("deadlines", "compliance"),
        help="deadlines: the 24-hour rule per officer; compliance: per act, the key moments, "
        "announcement, stoppages, journal gaps and storage on the record, and what is missing",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--now", metavar="UTC", help="judge as of this UTC time (default: now)")
    s.add_argument("--officer", metavar="ID", help="compliance: only this officer's acts")
    s.add_argument(
        "--from", dest="day_from", metavar="DAY", help="compliance: acts from YYYY-MM-DD"
    )
    s.add_argument("--to", dest="day_to", metavar="DAY", help="compliance: acts up to YYYY-MM-DD")
    s.add_argument(
        "--format",
        choices=("text", "json", "html"),
        help="compliance: text (default), json, or one printable HTML page (zh-CN, English)",
    )
    s = sub.add_parser(
        "check",
        help="is each announcement heard in the recorded audio (for stores docked before "
        "docking did it; exit 1 when one is not)",
    )
    s.add_argument("what", choices=("announcements",), help="announcements: decode and search")
    s.add_argument("--device", metavar="ID", help="only this device")
    s.add_argument("--again", action="store_true", help="also those checked already")
    s.add_argument("--wav", metavar="FILE", help="the WAV played (default: the shipped one)")
    s = sub.add_parser("registry", help="the unit-signed registry of cameras and docks")
    rs = s.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=with_common)
    rs.add_parser("list", help="list registered cameras and docks, and who signed the list")
    im = rs.add_parser(
        "import", help="install a newer registry signed by the unit key (made with bodycam-unit)"
    )
    im.add_argument("file")
    sub.add_parser(
        "reconcile", help="make the index and the dock journal agree with the store after a crash"
    )
    rm = sub.add_parser(
        "remove",
        help="remove a stored media file under the retention rule "
        "(journaled in the dock journal first)",
        description="Remove one stored media file under retention, journaled first. Refused "
        "(exit 2, nothing journaled) before 183 days after the recording ended, and in a store "
        "an archive keeps (it decides, with cases and legal holds: bodycam-archive retention "
        "purge).",
    )
    rm.add_argument("device", help="device id")
    rm.add_argument("file", help="the file, as media/YYYYMMDD/<name>.ts|jpg")
    rm.add_argument("--reason", required=True, help="why (the retention decision)")
    rl = sub.add_parser(
        "relabel",
        help="read a marked key moment as another moment of its procedure "
        "(journaled in the dock journal; the camera's record is kept as marked)",
    )
    rl.add_argument("device", help="device id")
    rl.add_argument("seq", type=int, help="the marker record's sequence number (in the report)")
    rl.add_argument("moment", help="the moment it records, as procedures.toml names it, or other")
    rl.add_argument("--by", required=True, help="who decides (name or badge number)")
    rl.add_argument("--why", required=True, help="on what grounds (what the footage shows)")
    return p


def config_for(args: argparse.Namespace) -> DockConfig:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    overrides: dict[str, Any] = {
        "dock.store": args.store,
        "dock.key": args.key,
        "dock.unit_keys": getattr(args, "unit_key", None),
    }
    if getattr(args, "dock_id", None):
        overrides["dock.id"] = args.dock_id
    if getattr(args, "port", None) and args.command == "serve":
        overrides["dock.bays"] = args.port
    if getattr(args, "listen", None) is not None and args.command == "serve":
        overrides["dock.listen"] = args.listen
    if getattr(args, "mqtt", None):
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--mqtt must be HOST:PORT, not {args.mqtt!r}")
        overrides.update({"mqtt.host": host, "mqtt.port": int(port)})
    return load_dock_config(path, overrides)


STORE_MARKS = ("index.sqlite", "registry.json", "_docks")  # what `init` and docking make


def store_root(cfg: dict[str, Any]) -> Path:
    """The configured store folder, which ``init`` must have made. A folder that holds
    none of a store's files is refused, never initialised (``--store /tmp`` is a typo)."""
    root = Path(cfg["dock"]["store"])
    if not root.is_dir():
        raise UsageError(f"{root}: no dock store (run `{PROG} init` first)")
    if not any((root / mark).exists() for mark in STORE_MARKS):
        raise UsageError(
            f"{root}: not a dock store (it has no {', '.join(STORE_MARKS)}); "
            f"give the store's folder, or make one with `{PROG} init`"
        )
    return root


def say_repairs(store: Any, out: Any = None) -> None:
    """One line per index repair this command made (the log has them too)."""
    for repair in store.index.repairs:
        if repair.kept_as or repair.devices or repair.flags:
            print(f"{PROG}: {repair.line()}", file=out or sys.stderr)


def unit_keys(cfg: dict[str, Any]) -> frozenset[str]:
    """Fingerprints of the unit keys this dock trusts (dock.unit_keys, trust.toml)."""
    from evidence.exc import ConfigError
    from evidence.trust import load_unit_keys

    try:
        return load_unit_keys(cfg["dock"]["unit_keys"])
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def open_store(cfg: dict[str, Any], *, keeper: bool = False, say: bool = True):
    """The store; ``keeper``: as the dock that writes it (its key keeps the dock journal,
    and the registry must be signed by a unit key the config names). ``say``: print a line
    for each index repair (daemons only log it)."""
    from .store import Store

    root = store_root(cfg)
    if not keeper:
        store = Store(root, unit_keys=unit_keys(cfg))
    else:
        keys = unit_keys(cfg)
        if not keys:
            raise UsageError(
                "no unit key named: set dock.unit_keys to the fingerprint "
                "`bodycam-unit fingerprint` prints (or list it in "
                "/etc/bodycam/trust.toml); the dock trusts only a registry it signs"
            )
        store = Store(root, identity=load_identity(cfg), unit_keys=keys)
    if say:
        say_repairs(store)
    return store


def load_identity(cfg: dict[str, Any]) -> DeviceIdentity:
    from .credential import load_dock_identity  # the systemd credential, else dock.key

    return load_dock_identity(cfg["dock"]["key"])


# -- commands ---------------------------------------------------------------------------


def cmd_init(cfg: dict[str, Any]) -> int:
    from .credential import init_identity  # never a second key beside an encrypted one
    from .store import Store

    key = Path(cfg["dock"]["key"])
    identity = init_identity(key, cfg["dock"]["id"])
    store = Store(cfg["dock"]["store"])
    store.close()
    print(f"dock {identity.device_id}: key {key}, public key {identity.public_key_hex}")
    print(f"store: {cfg['dock']['store']}")
    print(
        f"next: the head of unit registers it (bodycam-unit add-dock {identity.device_id} "
        f"--public-key {identity.public_key_hex}), then `{PROG} registry import FILE`"
    )
    return 0


def _run_daemon(
    cfg: dict[str, Any], ports: list[str], alerts: bool = True, listen: str = ""
) -> int:
    from .alerts import DeadlineWatcher, MqttConfig
    from .bay import Bay

    store = open_store(cfg, keeper=True, say=False)  # a repair is logged
    identity = load_identity(cfg)
    store.registry()  # refuse at start, not at the first docking, if it is not signed
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    mqtt_config = None
    if cfg["mqtt"]["host"] and alerts:  # checked before any bay starts (TLS or insecure)
        m, d = cfg["mqtt"], cfg["deadlines"]
        mqtt_config = MqttConfig(
            host=m["host"],
            port=m["port"],
            unit=cfg["dock"]["unit"],
            ca_file=m["ca_file"],
            insecure=m["insecure"],
            username=m["username"],
            password_file=m["password_file"],
            warn_h=d["warn_h"],
            limit_h=d["limit_h"],
            check_s=d["check_s"],
        )
    for action in store.reconcile():
        _log.warning("reconciled: %s", action)
    bays = [Bay(p, store, identity, stop, cfg["dock"]["timeout_s"]) for p in ports]
    net = None
    if listen:
        from wire.net import parse_address

        from .netbay import NetListener

        try:
            net = NetListener(
                parse_address(listen),
                store,
                identity,
                stop,
                cfg["dock"]["timeout_s"],
                max_connections=cfg["dock"]["listen_connections"],
            )
        except OSError as exc:  # the address is taken, or not this host's
            raise UsageError(f"dock.listen {listen}: cannot listen: {exc}") from None
    for bay in bays:
        bay.start()
    if net is not None:
        net.start()
    watcher = None
    if mqtt_config is not None:
        watcher = DeadlineWatcher(store, identity, mqtt_config)
        watcher.start()
    _log.info(
        "dock %s serving %d bay(s)%s%s",
        identity.device_id,
        len(bays),
        f", network on {net.name}" if net else "",
        ", deadline alerts on" if watcher else "",
    )
    systemd.ready(f"{len(bays)} bay(s)" + (f", network {net.name}" if net else ""))
    interval = (systemd.watchdog_interval() or 10.0) / 2  # ping at half the timeout
    while not stop.wait(interval):
        systemd.watchdog_ping()
    systemd.stopping()
    for bay in bays:
        bay.join(cfg["dock"]["timeout_s"] + 5)
    if net is not None:
        net.join(cfg["dock"]["timeout_s"] + 5)
    if watcher:
        watcher.stop()
    store.close()
    return 0


def _bar(done: int, total: int, width: int = 24) -> str:
    frac = 0.0 if total <= 0 else min(done / total, 1.0)
    filled = int(frac * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {frac * 100:3.0f}%"


ACTIVE_STATES = ("handshake", "records", "offloading")
OUTCOMES = ("stored", "refused", "flagged", "interrupted")
STATUS_HEADER = f"{'BAY':<10} {'STATE':<12} {'DEVICE':<12} PROGRESS / LAST DOCKING"


def render_status(rows: list[dict[str, Any]]) -> str:
    """One line per bay under a header. A bay whose session ended is waiting for the
    next camera: the outcome (``refused`` and its reason, say) is shown as its last
    docking, not as a state it stays in until restarted."""
    if not rows:
        return "no bays have reported (is the dock running?)"
    lines = [STATUS_HEADER]
    for r in rows:
        state = r.get("state", "?")
        device = r.get("device") or "-"
        if state in OUTCOMES:
            state, device = "waiting", "-"
        line = f"{r.get('bay', '?'):<10} {state:<12} {device:<12}"
        if state in ACTIVE_STATES:
            line += (
                f" {_bar(r.get('done', 0), r.get('total', 0))} "
                f"{r.get('done', 0) / 1e6:7.1f}/{r.get('total', 0) / 1e6:.1f} MB "
                f"{r.get('rate', 0) / 1e6:6.1f} MB/s"
            )
        elif r.get("last"):
            last = r["last"]
            line += (
                f" last: {last.get('device') or '?'} {last.get('outcome')} "
                f"({last.get('media', 0)} files, {last.get('bytes', 0) / 1e6:.1f} MB)"
            )
            if last.get("reason"):
                line += f": {last['reason'][:100]}"
        lines.append(line)
    return "\n".join(lines)


def cmd_status(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    from .bay import read_status
    from .journal import describe_head, read_head_status

    root = store_root(cfg)
    index_line = check_index(root)
    while True:
        rows = read_status(root)
        heads = read_head_status(root)
        space = store_space(root, cfg["dock"]["warn_free_gb"])
        if args.json:
            print(
                json.dumps(
                    {
                        "bays": rows,
                        "dock_heads": [m.to_dict() for m in heads],
                        "stores": [space],
                        "index": index_line,
                    },
                    indent=2,
                )
            )
            return 0
        text = render_status(rows)
        for message in heads:
            text += "\n" + describe_head(message)
        text += "\n" + render_space(space)
        if index_line:
            text += "\n" + index_line
        if not args.watch:
            print(text)
            return 0
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[J")
        print(text, flush=True)
        time.sleep(0.5)  # a display refresh, not a synchronisation


def check_index(root: Path) -> str | None:
    """Open the index once (which checks it and rebuilds it if damaged) and say what the
    last repair did; never a traceback, even for an index this user cannot open."""
    from .exc import DockError
    from .index import Index, read_repair
    from .store import INDEX_NAME

    try:
        Index(root / INDEX_NAME).close()
    except DockError as exc:
        return f"index: {exc}"
    repair = read_repair(root)
    return f"index: at {repair.utc} the {repair.line()}" if repair else None


def store_space(root: Path, warn_free_gb: float) -> dict[str, Any]:
    st = os.statvfs(root)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return {
        "store": str(root),
        "free_bytes": free,
        "total_bytes": total,
        "warn_free_gb": warn_free_gb,
        "low": free < warn_free_gb * 1e9,
    }


def render_space(space: dict[str, Any]) -> str:
    free, total = space["free_bytes"] / 1e9, space["total_bytes"] / 1e9
    pct = 100 * space["free_bytes"] / space["total_bytes"] if space["total_bytes"] else 0.0
    line = f"store {space['store']}: {free:.1f} GB free of {total:.1f} GB ({pct:.0f}%)"
    if space["low"]:
        line += (
            f"\nWARNING: store {space['store']} has less than {space['warn_free_gb']:g} GB "
            "free (dock.warn_free_gb): make room before it fills, or bays refuse to store"
        )
    return line


def _hours(p: dict[str, Any]) -> str:
    """A problem's age, with the camera clock's correction instead of negative hours."""
    if not p.get("clock_ahead_h"):
        return f"{p['hours']} h"
    if p.get("clock_corrected"):
        return f"{p['hours']} h, corrected: the camera's clock ran {p['clock_ahead_h']} h ahead"
    return f"{p['hours']} h: the camera's clock ran at least {p['clock_ahead_h']} h ahead"


def render_report(data: dict[str, Any]) -> str:
    lines = []
    for officer, s in data["officers"].items():
        lines.append(
            f"officer {officer}: {s['on_time']} on time, {s['late']} late, "
            f"{s['missing']} missing, {s['overdue']} overdue"
        )
        for p in s["problems"]:
            lines.append(
                f"  {p['status']:<8} {p['device']} seq {p['seq']} {p['file']} closed "
                f"{p['closed_utc']} stored {p['stored_utc'] or '-'} ({_hours(p)})"
            )
        for u in s["undocked"]:
            lines.append(
                f"  undocked {u['device']}: head seq {u['head_seq']} (stored "
                f"{u['stored_seq']}) since {u['since_utc']}, {u['hours']} h "
                f"[{u['level']}]"
            )
    for f in data.get("flags", []):
        lines.append(f"flag {f['kind']} {f['device']} at {f['utc']}: {f['detail']}")
    return "\n".join(lines) or "nothing docked yet"


def cmd_report(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    from . import deadlines

    try:
        now = parse_utc(args.now) if args.now else SystemClock().time_ns()
    except ValueError as exc:
        raise UsageError(f"--now: {exc}") from None
    if args.what == "compliance":
        return cmd_compliance(cfg, args, now)
    store = open_store(cfg)
    media = store.index.query("SELECT * FROM media ORDER BY device, seq")
    heads = {r["device"]: r["seq"] for r in store.index.query("SELECT * FROM heads")}
    pending = deadlines.pending_devices(store.index.query("SELECT * FROM status_heads"), heads)
    offsets = {
        r["device"]: r["clock_offset_ns"]
        for r in store.index.query(
            "SELECT device, clock_offset_ns FROM dockings WHERE clock_offset_ns IS NOT NULL"
            " AND device IS NOT NULL ORDER BY id"
        )
    }
    officers = {e.device_id: e.officer for e in store.registry()}
    d = cfg["deadlines"]
    data = deadlines.report(
        media, pending, officers, now, offsets, warn_h=d["warn_h"], limit_h=d["limit_h"]
    )
    data["now_utc"] = format_utc(now)
    data["flags"] = store.index.query("SELECT utc, device, kind, detail FROM flags ORDER BY id")
    store.close()
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else render_report(data))
    return 1 if report_lists_problems(data) else 0


def cmd_compliance(cfg: dict[str, Any], args: argparse.Namespace, now: int) -> int:
    """Exit 1 when any act has a finding."""
    from evidence.procedures import load_procedures

    from . import compliance
    from .compliance_report import check_day, render_html, render_text, store_acts

    try:
        day_from = check_day(args.day_from, "--from")
        day_to = check_day(args.day_to, "--to")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    procedures = load_procedures()
    store = open_store(cfg)
    try:
        acts = store_acts(
            store,
            procedures,
            now,
            cfg["deadlines"]["limit_h"],
            officer=args.officer,
            day_from=day_from,
            day_to=day_to,
        )
    finally:
        store.close()
    data = compliance.report(acts)
    data["now_utc"] = format_utc(now)
    how = "json" if args.json else args.format or "text"
    if how == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif how == "html":
        print(render_html(data))
    else:
        print(render_text(data))
    return 1 if any(a.findings for a in acts) else 0


def report_lists_problems(data: dict[str, Any]) -> bool:
    """Exit 1 when the report lists anything beyond the counts: a recording not stored on
    time (or not yet), an undocked device, a flag."""
    return bool(data.get("flags")) or any(
        s["problems"] or s["undocked"] for s in data["officers"].values()
    )


def cmd_check(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    """Journal an ``announcement_audio`` answer for each announcement not checked yet."""
    from .audiocheck import check_store

    if args.wav and not Path(args.wav).is_file():
        raise UsageError(f"--wav: {args.wav}: no such file")
    store = open_store(cfg, keeper=True)
    try:
        bodies = check_store(store, device=args.device, again=args.again, wav=args.wav)
    finally:
        store.close()
    print(f"{len(bodies)} announcement(s) checked")
    return 1 if any(b["verdict"] != "heard" for b in bodies) else 0


def cmd_registry(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    from evidence.registry import MAX_REGISTRY_BYTES
    from evidence.safefile import read_regular
    from evidence.unitkey import show_fingerprint

    store = open_store(cfg)
    try:
        if args.action == "import":
            if not store.unit_keys:
                raise UsageError(
                    "no unit key named (dock.unit_keys): cannot tell whether "
                    f"{args.file} is the unit's registry"
                )
            data = read_regular(args.file, MAX_REGISTRY_BYTES)
            registry = Registry.from_bytes(data, args.file)
            store.install_registry(registry, data)
            sig = registry.signature
            print(
                f"registry edition {sig.serial} of unit {sig.unit} installed: "
                f"{len(registry)} camera(s), {len(registry.docks())} dock(s)"
            )
            return 0
        registry = store.registry()
    finally:
        store.close()
    sig = registry.signature
    if sig is None:
        print("registry: not signed (no unit key vouches for it)")
    else:
        print(
            f"registry edition {sig.serial} of unit {sig.unit}, issued {sig.issued_utc}, "
            f"signed by unit key {show_fingerprint(sig.fingerprint)}"
        )
    for e in registry:
        state = f" REVOKED {e.revoked_utc}" if e.revoked else ""
        print(
            f"camera {e.device_id:<16} {e.public_key}  officer={e.officer or '-'} "
            f"unit={e.unit or '-'}{state}"
        )
    for d in registry.docks():
        state = f" REVOKED {d.revoked_utc}" if d.revoked else ""
        print(f"dock   {d.dock_id:<16} {d.public_key}  unit={d.unit or '-'}{state}")
    return 0


ARCHIVE_MARK = ".status/archive.json"  # written by `bodycam-archive init` into its store


def cmd_remove(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    """Remove one file under retention. Refused (exit 2, nothing journaled) in a store an
    archive keeps (the archive alone sees cases and legal holds: `bodycam-archive retention
    purge` decides there), and before 183 days after the recording ended (the store's own
    check, :meth:`dock.store.Store.remove_media`)."""
    if not args.reason.strip():
        raise UsageError("--reason: say why; it goes on the record")
    root = store_root(cfg)
    mark = root / ARCHIVE_MARK
    if mark.exists():
        try:
            kept_by = json.loads(mark.read_text(encoding="utf-8")).get("archive_id", "?")
        except (OSError, ValueError, AttributeError):
            kept_by = "?"
        raise UsageError(
            f"refused: archive {kept_by} keeps this store ({mark}); cases and legal holds are "
            "decided there: remove under retention with `bodycam-archive retention purge`"
        )
    reader = open_store(cfg)  # asked first, read-only: a refusal journals nothing
    try:
        keeper = reader.kept_by_archive(load_identity(cfg).public_key_hex)
        if keeper is not None:
            raise UsageError(
                f"refused: archive {keeper.body['archive']} keeps this store (dock journal "
                f"{keeper.device} seq {keeper.seq}); cases and legal holds are decided there: "
                "remove under retention with `bodycam-archive retention purge`"
            )
        refusal = reader.removal_refusal(args.device, args.file, SystemClock().time_ns())
    finally:
        reader.close()
    if refusal is not None:
        raise UsageError(str(refusal))
    store = open_store(cfg, keeper=True)
    try:
        made = store.remove_media(args.device, args.file, "retention", args.reason.strip())
    finally:
        store.close()
    print(f"removed {args.device} {args.file} under retention (dock journal seq {made.seq})")
    return 0


def cmd_relabel(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    from evidence.procedures import load_procedures

    from .compliance import relabel_problem
    from .exc import DockError

    for flag, text in (("--by", args.by), ("--why", args.why)):
        if not text.strip():
            raise UsageError(f"{flag}: say who decides and why; it goes on the record")
    store = open_store(cfg, keeper=True)
    try:
        try:
            record = store.device_record(args.device, args.seq)
        except DockError as exc:
            raise UsageError(str(exc)) from None
        earlier = [
            r
            for r in store.relabels().get((args.device, args.seq), [])
            if r.record_hash == record.hash
        ]
        current = earlier[-1].moment if earlier else None
        problem = relabel_problem(record, args.moment, load_procedures(), current)
        if problem is not None:
            raise UsageError(f"{args.device} seq {args.seq}: {problem}")
        was = current or str(record.body.get("moment"))
        made = store.relabel(
            record,
            str(record.body["procedure"]),
            was,
            args.moment,
            args.by.strip(),
            args.why.strip(),
        )
    finally:
        store.close()
    print(
        f"relabelled {args.device} seq {args.seq}: {was} -> {args.moment} "
        f"(dock journal seq {made.seq}; the camera's record is kept as marked)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        setup_logging(args.verbose)
        cfg = config_for(args)
        if args.command == "init":
            return cmd_init(cfg)
        if args.command == "serve":
            return _run_daemon(cfg, list(cfg["dock"]["bays"]), listen=cfg["dock"]["listen"])
        if args.command == "bay":
            return _run_daemon(cfg, [args.port], alerts=False)  # `serve` alerts
        if args.command == "status":
            return cmd_status(cfg, args)
        if args.command == "report":
            return cmd_report(cfg, args)
        if args.command == "registry":
            return cmd_registry(cfg, args)
        if args.command == "check":
            return cmd_check(cfg, args)
        if args.command == "remove":
            return cmd_remove(cfg, args)
        if args.command == "relabel":
            return cmd_relabel(cfg, args)
        store = open_store(cfg, keeper=True, say=False)
        actions = [r.line() for r in store.index.repairs if r.kept_as or r.devices or r.flags]
        for action in actions + store.reconcile() or ["nothing to do"]:
            print(action)
        store.close()
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    raise SystemExit(main())
