"""``bodycam-archive``: case files, users, the deadline report and the audit log.

Every command but ``init`` acts as a user: ``--user NAME`` (or ``BODYCAM_ARCHIVE_USER``),
the password from ``BODYCAM_ARCHIVE_PASSWORD`` or asked on the terminal, and the TOTP
code (``--totp`` or ``BODYCAM_ARCHIVE_TOTP``) for a user who has a second factor. Exit
status: 0 done, 1 the report found overdue cases, 2 bad input (one line), 3 refused (the
access policy said no, or the login failed; audited).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from typing import Any

from daemonkit.cli import UsageError, run_command, setup_logging
from evidence.clock import parse_utc

from .exc import LoginFailed, Refused
from .web import live_options

_log = logging.getLogger(__name__)

PROG = "bodycam-archive"
DIR_ENV = "BODYCAM_ARCHIVE_DIR"
USER_ENV = "BODYCAM_ARCHIVE_USER"
PASSWORD_ENV = "BODYCAM_ARCHIVE_PASSWORD"
TOTP_ENV = "BODYCAM_ARCHIVE_TOTP"
NEW_PASSWORD_ENV = "BODYCAM_ARCHIVE_NEW_PASSWORD"

EPILOG = """\
Exit status: 0 done, 1 overdue cases in the report (or a purge that left a recording),
2 bad input, 3 refused or login failed.
Docs: docs/archive.md (roles, classifications, the audit log, the 30-day rule, retention).
"""


def build_parser() -> argparse.ArgumentParser:
    from .policy import CLASSIFICATIONS, ROLES
    from .service import DEFAULT_DIR

    p = argparse.ArgumentParser(
        prog=PROG,
        description="The unit's evidence archive: case files over the dock store, users and\n"
        "roles, the 30-day rule, and a signed audit log.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument(
        "--dir",
        default=os.environ.get(DIR_ENV, DEFAULT_DIR),
        help=f"the archive's folder (default ${DIR_ENV} or {DEFAULT_DIR})",
    )
    p.add_argument(
        "--user", default=os.environ.get(USER_ENV, ""), help=f"who acts (default ${USER_ENV})"
    )
    p.add_argument(
        "--totp",
        default=os.environ.get(TOTP_ENV, ""),
        help="the second-factor code, if the user has one",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser(
        "init", help="make a new archive beside a dock store, with its first administrator"
    )
    s.add_argument("--store", required=True, help="the dock store the archive refers to")
    s.add_argument(
        "--id", required=True, dest="archive_id", help="the archive's id (signs the audit log)"
    )
    s.add_argument("--admin", required=True, help="the first administrator's user name")
    s.add_argument(
        "--database", default="", help="a postgresql:// URL (default: SQLite in the folder)"
    )

    users = sub.add_parser("user", help="users and roles (administrators)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = users.add_parser(
        "add",
        help="add a user; the password is read like yours (BODYCAM_ARCHIVE_NEW_PASSWORD, or asked)",
    )
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=ROLES)
    s.add_argument(
        "--officer", default="", help="an officer's badge number, as the registry names it"
    )
    s.add_argument(
        "--second-factor", action="store_true", help="give the user a TOTP secret (printed once)"
    )
    users.add_parser("list", help="list users")
    s = users.add_parser(
        "passwd",
        help="change your password, or (administrators) anyone's; the new one from "
        "BODYCAM_ARCHIVE_NEW_PASSWORD or asked",
    )
    s.add_argument("name")
    s = users.add_parser("deactivate", help="stop a user from logging in")
    s.add_argument("name")

    cases = sub.add_parser("case", help="case files").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = cases.add_parser("open", help="open a case file")
    s.add_argument("--kind", required=True, help="kind of act, e.g. 'traffic stop'")
    s.add_argument("--procedure", required=True, help="the procedure (as procedures.toml names it)")
    s.add_argument("--party", action="append", default=[], help="a party (repeatable)")
    s.add_argument("--officer", action="append", default=[], help="an officer's badge (repeatable)")
    s.add_argument("--classification", required=True, choices=CLASSIFICATIONS)
    s.add_argument(
        "--act-end", default="", help="when the act ended (UTC), if no recording says it"
    )
    s = cases.add_parser("attach", help="attach recordings by device and time range, or by act")
    s.add_argument("number")
    s.add_argument("--device", required=True)
    s.add_argument("--from", dest="from_utc", default="", help="start of the range (UTC)")
    s.add_argument("--to", dest="to_utc", default="", help="end of the range (UTC)")
    s.add_argument(
        "--act",
        type=int,
        default=None,
        help="the act's first record's seq (bodycam-dock report compliance)",
    )
    s.add_argument("--reason", default="", help="why (required once the case is closed)")
    s = cases.add_parser(
        "attach-doc", help="hash a written document into the archive and attach it"
    )
    s.add_argument("number")
    s.add_argument("file")
    s.add_argument("--title", default="")
    s.add_argument("--reason", default="", help="why (required once the case is closed)")
    s = cases.add_parser("get-doc", help="write a case's document to a new file (audited)")
    s.add_argument("number")
    s.add_argument("sha256")
    s.add_argument("--out", required=True, help="the new file")
    s = cases.add_parser("close", help="close a case (it is immutable from then on)")
    s.add_argument("number")
    s = cases.add_parser("classify", help="change a case's classification")
    s.add_argument("number")
    s.add_argument("--to", dest="classification", required=True, choices=CLASSIFICATIONS)
    s.add_argument("--reason", required=True, help="why (kept in the audit log)")
    s = cases.add_parser("show", help="a case and its entries")
    s.add_argument("number")
    s = cases.add_parser("list", help="the cases you may see")
    s.add_argument("--status", choices=("open", "closed"), default=None)

    cp = sub.add_parser("copy", help="copies for the parties (Art. 36)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = cp.add_parser("request", help="record a party's request for a copy of a case")
    s.add_argument("number")
    s.add_argument("--requester", required=True, help="the party, as they signed the request")
    s.add_argument(
        "--kind",
        choices=("bundle", "party"),
        default="bundle",
        help="bundle: the court bundle of originals; party: a watermarked MP4 per act",
    )
    s.add_argument("--purpose", default="", help="what the party wants it for")
    s = cp.add_parser("approve", help="approve a request (the head of unit)")
    s.add_argument("request", type=int)
    s.add_argument(
        "--omit",
        action="append",
        default=[],
        metavar="DEVICE:SEQ=REASON",
        help="withhold a confidential recording, listed with the reason (repeatable)",
    )
    s.add_argument("--reason", default="")
    s = cp.add_parser("refuse", help="refuse a request, saying why (the head of unit)")
    s.add_argument("request", type=int)
    s.add_argument("--reason", required=True)
    s = cp.add_parser("export", help="make an approved copy into a new folder (an archivist)")
    s.add_argument("request", type=int)
    s.add_argument(
        "--out",
        required=True,
        help="the new folder (party copies: the requester's name, as the request records it, "
        "is burned in with a CJK font; BODYCAM_WATERMARK_FONT names another font file)",
    )
    s = cp.add_parser("list", help="copy requests of the cases you may see")
    s.add_argument("--case", default=None)

    reports = sub.add_parser("report", help="reports").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = reports.add_parser("cases", help="open, due-soon and overdue cases (the 30-day rule)")
    s.add_argument("--now", default="", help="the report's time (UTC; default: now)")

    sub.add_parser("sync", help="index the dock store's new recordings (for listing them)")
    s = sub.add_parser("recordings", help="an officer's recordings in a time range")
    s.add_argument("--officer", required=True, help="the badge number, as the registry names it")
    s.add_argument("--from", dest="from_utc", required=True, help="UTC (YYYY-MM-DD or a stamp)")
    s.add_argument("--to", dest="to_utc", required=True, help="UTC, not included")
    s = sub.add_parser(
        "alerts", help="send the supervisor the 25- and 30-day alerts over MQTT (a daemon)"
    )
    s.add_argument("--mqtt", required=True, metavar="HOST:PORT", help="the broker")
    s.add_argument(
        "--ca-file", default="", help="the broker's CA (TLS); required unless --insecure"
    )
    s.add_argument("--insecure", action="store_true", help="plain TCP: loopback test brokers only")
    s.add_argument("--username", default="", help="broker user name (default: the archive's id)")
    s.add_argument(
        "--password-file",
        default="",
        help="file holding the broker password, one line, mode 0600 "
        "(scripts/issue-broker-credential --role archive)",
    )
    s.add_argument("--unit", default="", help="the unit in the topic (default: the registry's)")
    s.add_argument("--check-s", type=float, default=3600.0, help="seconds between checks")
    s.add_argument("--once", action="store_true", help="check once and exit")
    s.add_argument("--now", default="", help="the time to check at (UTC; with --once)")

    audit = sub.add_parser("audit", help="the signed audit log").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = audit.add_parser("show", help="the audit log's entries (auditors and the head of unit)")
    s.add_argument("--last", type=int, default=50, help="how many of the newest entries")
    audit.add_parser("head", help="the audit log's head, for bodycam-verify --expect-head")
    _sealing_parsers(sub)
    _retention_parsers(sub)
    _serve_parser(sub)
    return p


def _serve_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="the web console (FastAPI over uvicorn; docs/console.md)")
    s.add_argument(
        "archive",
        nargs="?",
        default="",
        metavar="ARCHIVE",
        help="the archive's folder (default --dir)",
    )
    s.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where to listen, e.g. 127.0.0.1:8443"
    )
    s.add_argument("--cert", default="", help="TLS certificate (PEM), with --key")
    s.add_argument("--key", default="", help="TLS private key (PEM), with --cert")
    s.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on an address other than loopback (cookies then not Secure)",
    )
    s.add_argument(
        "--session-minutes", type=int, default=30, help="log out after this long unused (30)"
    )
    s.add_argument(
        "--timezone", default="", help="show times in this IANA zone (default: this machine's)"
    )
    s.add_argument(
        "--trust",
        default="",
        metavar="FILE",
        help="a trust file naming unit keys, for the audit log's check (with --unit-key)",
    )
    live_options.add_arguments(s)  # live status: --mqtt ... (archive.web.live)


def _serve(args: argparse.Namespace) -> int:
    """Run the console until SIGTERM or Ctrl-C (one process: sessions live in memory)."""
    import ipaddress
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    import uvicorn

    from .service import Archive
    from .web.app import create_app

    host, sep, port = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {args.listen!r}: use HOST:PORT")
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    for path in (args.cert, args.key):
        if path and not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not args.cert and not loopback and not args.insecure_http:
        raise UsageError(
            f"--listen {args.listen}: plain HTTP only on loopback; give --cert and --key "
            "(or --insecure-http behind a TLS proxy)"
        )
    if args.session_minutes < 1:
        raise UsageError("--session-minutes: at least 1")
    if args.timezone:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--timezone {args.timezone!r}: not a known time zone") from None
    from evidence.trust import load_unit_keys

    unit_keys = load_unit_keys(args.unit_key, args.trust or None)
    with Archive.open(args.archive or args.dir) as archive:
        app = create_app(
            archive,
            secure_cookies=bool(args.cert),
            session_minutes=args.session_minutes,
            timezone=args.timezone or None,
            unit_keys=unit_keys,
        )
        app.state.live = feed = live_options.feed_from_args(args, archive)
        scheme = "https" if args.cert else "http"
        _log.info(
            "console of archive %s on %s://%s", archive.identity.device_id, scheme, args.listen
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=int(port),
            ssl_certfile=args.cert or None,
            ssl_keyfile=args.key or None,
            log_config=None,
            server_header=False,
            proxy_headers=False,
        )
        server = _console_server_class()(config)
        if feed is not None:
            feed.start()
        try:
            server.run()
        finally:
            if feed is not None:
                feed.stop()
        if server.stopped_by:
            _log.info("console stopped (%s)", server.stopped_by)
    return 0


def _console_server_class():
    import contextlib

    import uvicorn

    class ConsoleServer(uvicorn.Server):
        """uvicorn's server, ending with exit 0 on SIGTERM or Ctrl-C once it has shut down
        (uvicorn re-raises the signal after a graceful stop, which would kill us with it)."""

        stopped_by = ""

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    captured = getattr(self, "_captured_signals", [])
                    self.stopped_by = ", ".join(signal_name(s) for s in captured)
                    captured.clear()

    return ConsoleServer


def signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _sealing_parsers(sub: Any) -> None:
    """``seal`` and ``key rotate`` (archive.sealing)."""
    s = sub.add_parser(
        "seal",
        help="encrypt at rest the recordings of cases above internal still in clear, and "
        "finish seals cut short (archivists, the head)",
        description="Each recording of a case classified above internal is kept only "
        "encrypted in the dock store: its sealed file and wrapped key beside it, a signed "
        "'sealed' record in the dock journal (the dock's key: dock_config in archive.toml), "
        "then the clear file removed. Attaching and classifying seal at once; this finishes "
        "what a crash or a missing dock key left. Docs: docs/archive.md, 'Encryption at rest'.",
    )
    s.add_argument("--case", default=None, help="only this case")
    s.add_argument(
        "--dock-config",
        default=None,
        help="the dock's dock.toml (its key and trust; default dock_config in archive.toml)",
    )
    keys = sub.add_parser("key", help="the master key (administrators)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    keys.add_parser(
        "rotate",
        help="re-wrap every data key (documents, sealed media) under a new master key; "
        "resumable: run it again after a crash",
        description="Makes key/master.next (or uses the credential bodycam-archive-master-next), "
        "re-wraps each key atomically, then puts the new key in place of the old (with the "
        "systemd credential, re-encrypt key/master.next with systemd-creds and install it: "
        "docs/archive.md, 'Encryption at rest').",
    )


def _sealing(archive, session, args: argparse.Namespace) -> int:
    if args.command == "seal":
        result = archive.seal_pending(session, args.case, dock_config=args.dock_config)
        lines = [
            f"sealed {r['device']} seq {r['seq']} {r['file']} -> {r['sealed_file']} "
            f"(dock {r['dock']} seq {r['dock_seq']}{', finished' if r['resumed'] else ''})"
            for r in result["sealed"]
        ]
        lines.append(f"{len(result['sealed'])} sealed now, {result['already']} already sealed")
        _out(args, result, "\n".join(lines))
        return 0
    result = archive.rotate_master_key(session)
    text = (
        f"master key rotated: {result['documents']} document keys and {result['media']} "
        "media keys re-wrapped"
    )
    if result["credential"]:
        text += (
            f"; now install the new key: systemd-creds encrypt --name=bodycam-archive-master "
            f"{archive.folder}/key/master.next /etc/credstore.encrypted/bodycam-archive-master, "
            "then remove key/master.next"
        )
    _out(args, result, text)
    return 0


def _retention_parsers(sub: Any) -> None:
    """``hold add|release|list`` and ``retention due|purge`` (archive.retention)."""
    holds = sub.add_parser(
        "hold",
        help="legal holds: recordings kept whatever their retention (archivists, the head)",
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    s = holds.add_parser(
        "add",
        help="hold a case's recordings (--case), or a camera's over a time range "
        "(--device --from --to); prints the hold's id",
    )
    s.add_argument("--case", default=None, help="the case's number")
    s.add_argument("--device", default=None, help="the camera (with --from and --to)")
    s.add_argument("--from", dest="from_utc", default="", help="start of the range (UTC)")
    s.add_argument("--to", dest="to_utc", default="", help="end of the range (UTC, not included)")
    s.add_argument("--reason", required=True, help="why (the order, the complaint...)")
    s = holds.add_parser("release", help="end a hold, saying why")
    s.add_argument("hold", type=int, help="the hold's id (hold list)")
    s.add_argument("--reason", required=True, help="why it ends")
    s = holds.add_parser("list", help="the standing holds")
    s.add_argument("--all", action="store_true", help="released holds too")
    ret = sub.add_parser(
        "retention",
        help="retention by category: what may leave the store, and removing it",
        description="Recordings are kept at least 183 days (six months) after they end, "
        "longer for a unit's category in archive.toml, and permanently in a case or under a "
        "legal hold. Docs: docs/archive.md, 'Retention and legal hold'.",
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("due", "recordings whose retention ran out, in no case and under no hold, with why"),
        (
            "purge",
            "remove them through the dock store (the head of unit): each decision audited, "
            "each removal journaled by the dock with its authority; exit 1 if one was refused",
        ),
    ):
        s = ret.add_parser(name, help=text)
        s.add_argument("--device", default=None, help="only this camera")
        s.add_argument("--before", default=None, help="only recordings that ended before (UTC)")
        if name == "due":
            s.add_argument("--now", default="", help="judge as of this time (UTC; default now)")
        else:
            s.add_argument(
                "--dry-run", action="store_true", help="say what would go; remove nothing"
            )
            s.add_argument(
                "--dock-config",
                default=None,
                help="the dock's dock.toml (its key and trust; default dock_config in archive.toml)",
            )


def _retention(archive, session, args: argparse.Namespace) -> int:
    if args.command == "hold":
        if args.action == "add":
            hold = archive.place_hold(
                session,
                args.reason,
                case=args.case,
                device=args.device,
                from_utc=args.from_utc,
                to_utc=args.to_utc,
            )
            _out(args, {"hold": hold}, f"hold {hold} placed")
        elif args.action == "release":
            archive.release_hold(session, args.hold, args.reason)
            _out(args, {"released": args.hold}, f"hold {args.hold} released")
        else:
            rows = archive.list_holds(session, released=args.all)
            _out(
                args,
                rows,
                "\n".join(
                    f"{r['id']:>4} "
                    + (
                        f"case {r['case']}"
                        if r["kind"] == "case"
                        else f"{r['device']} {r['from_utc']}..{r['to_utc']}"
                    )
                    + f"  by {r['placed_by']} {r['placed_utc']}: {r['reason']}"
                    + (
                        f"  [released {r['released_utc']} by {r['released_by']}: {r['release_reason']}]"
                        if r["released_utc"]
                        else ""
                    )
                    for r in rows
                )
                or "no holds",
            )
        return 0
    if args.action == "due":
        from .cases import _utc

        now = parse_utc(_utc(args.now, "--now")) if args.now else None
        rows = archive.retention_due(session, now_ns=now, device=args.device, before=args.before)
        _out(args, rows, "\n".join(_due_line(r) for r in rows) or "nothing is due")
        return 0
    result = archive.retention_purge(
        session,
        device=args.device,
        before=args.before,
        dry_run=args.dry_run,
        dock_config=args.dock_config,
    )
    lines = [f"would remove {_due_line(r)}" for r in result["would_remove"]]
    lines += [
        f"removed {_due_line(r)} (audit seq {r['audit_seq']}, dock {r['dock']} seq {r['dock_seq']})"
        for r in result["removed"]
    ]
    lines += [
        f"NOT removed {r['device']} seq {r['seq']} {r['file']}: {r['reason']}"
        for r in result["refused"]
    ]
    lines += [
        f"recorded {r['device']} seq {r['seq']} {r['file']}: the dock removed it (dock "
        f"{r['dock']} seq {r['dock_seq']}) before this archive recorded it (audit seq "
        f"{r['audit_seq']})"
        + (f"; but {', '.join(r['kept_by'])} keeps it!" if r["kept_by"] else "")
        for r in result["reconciled"]
    ]
    _out(args, result, "\n".join(lines) or "nothing is due")
    return 1 if result["refused"] or any(r["kept_by"] for r in result["reconciled"]) else 0


def _due_line(r: dict[str, Any]) -> str:
    return f"{r['device']} seq {r['seq']} {r['file']}: {r['why']}"


def _password(prompt: str, env: str = PASSWORD_ENV) -> str:
    if os.environ.get(env):
        return os.environ[env]
    if not sys.stdin.isatty():
        raise UsageError(f"no password: set {env} or run on a terminal")
    return getpass.getpass(prompt)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)


def _case_text(case: dict[str, Any]) -> str:
    lines = [
        f"case {case['number']} ({case['status']}): {case['kind_of_act']}, procedure {case['procedure']}, "
        f"classified {case['classification']}",
        f"  parties: {', '.join(case['parties']) or '-'}; officers: {', '.join(case['officers']) or '-'}",
        f"  opened {case['opened_utc']} by {case['opened_by']}"
        + (f"; closed {case['closed_utc']} by {case['closed_by']}" if case["closed_utc"] else ""),
        f"  deadline (30 days after the act): {case['deadline_utc'] or 'no act end known'}",
    ]
    for e in case["entries"]:
        late = f" [after closing: {e['reason']}]" if e.get("after_close") else ""
        if e["kind"] == "recording":
            lines.append(
                f"  recording {e['device']} seq {e['seq']} {e['file']} {e['start_utc']}..{e['end_utc']} "
                f"sha256 {e['sha256'][:16]}...{' sealed' if e.get('sealed') else ''}{late}"
            )
        else:
            lines.append(
                f"  document {e['title']!r} {e['size']} bytes sha256 {e['sha256'][:16]}...{late}"
            )
    return "\n".join(lines)


def _report_text(data: dict[str, Any]) -> str:
    lines = [
        f"cases at {data['now_utc']} (30-day rule; due soon from day {data['limit_days'] - data['soon_days']}):"
    ]
    for c in data["cases"]:
        left = "" if c["days_left"] is None else f", {c['days_left']} days left"
        lines.append(f"  {c['number']}  {c['state']:<11} deadline {c['deadline_utc'] or '-'}{left}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(data["counts"].items())) or "no cases"
    lines.append(counts)
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from .service import Archive

    if args.command == "init":
        admin_pw = _password(f"password for {args.admin}: ")
        archive = Archive.create(
            args.dir, args.store, args.archive_id, args.admin, admin_pw, database=args.database
        )
        key = archive.identity.public_key_hex
        archive.close()
        print(f"archive {args.archive_id} made in {args.dir}")
        print(f"its key: {key}")
        print(f"register it: bodycam-unit add-archive {args.archive_id} --public-key {key}")
        return 0
    if args.command == "alerts":
        return _alerts(args)
    if args.command == "serve":
        return _serve(args)
    if not args.user:
        raise UsageError(f"who acts? give --user NAME (or set {USER_ENV})")
    with Archive.open(args.dir) as archive:
        session = archive.login(
            args.user, _password(f"password for {args.user}: "), args.totp or None
        )
        return _dispatch(archive, session, args)


def _dispatch(archive, session, args: argparse.Namespace) -> int:
    if args.command == "user":
        if args.action == "add":
            secret = archive.add_user(
                session,
                args.name,
                args.role,
                _password(f"new password for {args.name}: ", NEW_PASSWORD_ENV),
                officer=args.officer,
                totp=args.second_factor,
            )
            print(f"user {args.name} added ({args.role})")
            if secret:
                from .users import totp_uri

                print(f"second factor (shown once): {totp_uri(secret, args.name)}")
        elif args.action == "list":
            rows = archive.list_users(session)
            _out(
                args,
                rows,
                "\n".join(
                    f"{r['name']:<20} {r['role']:<13} {r['officer'] or '-':<10} "
                    f"{'2fa' if r['second_factor'] else '   '} {'active' if r['active'] else 'inactive'}"
                    for r in rows
                ),
            )
        elif args.action == "passwd":
            new = _password(f"new password for {args.name}: ", NEW_PASSWORD_ENV)
            archive.set_password(session, args.name, new)
            print(f"user {args.name}: password changed")
        else:
            archive.set_active(session, args.name, False)
            print(f"user {args.name} deactivated")
        return 0
    if args.command == "case":
        return _case(archive, session, args)
    if args.command in ("hold", "retention"):
        return _retention(archive, session, args)
    if args.command == "copy":
        return _copy(archive, session, args)
    if args.command in ("seal", "key"):
        return _sealing(archive, session, args)
    if args.command == "sync":
        archive.require(session, "case_change")
        added = archive.sync_recordings()
        _out(args, {"added": added}, f"{added} recordings indexed")
        return 0
    if args.command == "recordings":
        refs = archive.list_recordings(session, args.officer, args.from_utc, args.to_utc)
        _out(
            args,
            [r.to_dict() for r in refs],
            "\n".join(
                f"{r.start_utc} {r.end_utc} {r.device} seq {r.seq} {r.file} {r.size} bytes"
                + (
                    f" (removed {r.removed.removed_utc} by {r.removed.by_user},"
                    f" {r.removed.category})"
                    if r.removed
                    else ""
                )
                for r in refs
            )
            or "no recordings",
        )
        return 0
    if args.command == "report":
        now = archive.clock.time_ns()
        if args.now:
            from .cases import _utc

            now = parse_utc(_utc(args.now, "--now"))
        data = archive.deadline_report(session, now)
        _out(args, data, _report_text(data))
        return 1 if data["counts"].get("overdue") else 0
    # audit
    archive.require(session, "audit_read")
    if args.action == "head":
        seq_hash = archive.audit_head()  # the database's account, not the log's own
        head = f"{archive.identity.device_id}:{seq_hash[0]}:{seq_hash[1]}" if seq_hash else ""
        archive.audit_now("view", session, "audit log", {"what": "head"})
        _out(args, {"head": head}, head)
        return 0
    records = archive.audit.records()[-max(args.last, 0) :] if args.last else []
    archive.audit_now("view", session, "audit log", {"what": "entries", "shown": len(records)})
    rows = [{"seq": r.seq, "utc": r.utc, "kind": r.kind, **r.body} for r in records]
    _out(
        args,
        rows,
        "\n".join(
            f"{r['seq']:>6} {r['utc']} {r['kind']:<14} {r['user']} ({r['role']}) {r['target']} "
            f"{json.dumps(r['detail'], ensure_ascii=False)}"
            for r in rows
        ),
    )
    return 0


def _case(archive, session, args: argparse.Namespace) -> int:
    if args.action == "open":
        number = archive.open_case(
            session,
            args.kind,
            args.procedure,
            args.party,
            args.officer,
            args.classification,
            args.act_end or None,
        )
        _out(args, {"number": number}, f"case {number} opened")
    elif args.action == "attach":
        if args.act is not None and (args.from_utc or args.to_utc):
            raise UsageError("attach by --act SEQ or by --from/--to, not both")
        if args.act is not None:
            refs = archive.attach_act(session, args.number, args.device, args.act, args.reason)
        elif args.from_utc and args.to_utc:
            refs = archive.attach_range(
                session, args.number, args.device, args.from_utc, args.to_utc, args.reason
            )
        else:
            raise UsageError("say what to attach: --act SEQ, or --from UTC --to UTC")
        _out(
            args,
            [r.to_dict() for r in refs],
            f"case {args.number}: {len(refs)} recordings attached",
        )
    elif args.action == "attach-doc":
        digest = archive.attach_document(session, args.number, args.file, args.title, args.reason)
        _out(args, {"sha256": digest}, f"case {args.number}: document attached, sha256 {digest}")
    elif args.action == "get-doc":
        size = archive.read_document(session, args.number, args.sha256, args.out)
        _out(args, {"out": args.out, "size": size}, f"{args.out}: {size} bytes, hash checked")
    elif args.action == "close":
        archive.close_case(session, args.number)
        _out(args, {"closed": args.number}, f"case {args.number} closed")
    elif args.action == "classify":
        archive.classify(session, args.number, args.classification, args.reason)
        _out(
            args,
            {"classification": args.classification},
            f"case {args.number} is now {args.classification}",
        )
    elif args.action == "show":
        case = archive.show_case(session, args.number)
        _out(args, case, _case_text(case))
    else:
        rows = archive.list_cases(session, args.status)
        _out(
            args,
            rows,
            "\n".join(
                f"{r['number']}  {r['status']:<6} {r['classification']:<16} {r['kind_of_act']}"
                for r in rows
            )
            or "no cases",
        )
    return 0


def _alerts(args: argparse.Namespace) -> int:
    """The alert daemon: no user logs in; it acts as the archive itself (audited)."""
    import signal
    import threading

    from evidence.registry import Registry
    from wire.broker import ConnectionSettings

    from .alerts import CaseAlerter
    from .cases import _utc
    from .service import REGISTRY_NAME, Archive

    host, sep, port = args.mqtt.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--mqtt {args.mqtt!r}: use HOST:PORT")
    settings = ConnectionSettings(
        host,
        int(port),
        ca_file=args.ca_file,
        insecure=args.insecure,
        username=args.username,
        password_file=args.password_file,
    )
    now = parse_utc(_utc(args.now, "--now")) if args.now else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Archive.open(args.dir) as archive:
        unit = args.unit
        if not unit:
            reg = archive.folder / REGISTRY_NAME
            signed = Registry.load(reg).signature if reg.exists() else None
            unit = signed.unit if signed else "unassigned"
        alerter = CaseAlerter(archive, settings, unit)
        alerter.start()
        try:
            if not alerter.connected.wait(10):
                raise UsageError(f"cannot reach the broker at {args.mqtt}")
            while True:
                sent = alerter.check(now)
                _log.info("alerts: %d sent", len(sent))
                if args.once:
                    print(f"{len(sent)} alerts sent")
                    return 0
                if stop.wait(args.check_s):
                    return 0
        finally:
            alerter.stop()


def _copy(archive, session, args: argparse.Namespace) -> int:
    if args.action == "request":
        rid = archive.request_copy(session, args.number, args.requester, args.kind, args.purpose)
        _out(args, {"request": rid}, f"copy request {rid} recorded (pending the head's decision)")
    elif args.action in ("approve", "refuse"):
        omit = {}
        for item in getattr(args, "omit", []):
            ref, sep, why = item.partition("=")
            if not sep:
                raise UsageError(f"--omit {item!r}: use DEVICE:SEQ=REASON")
            omit[ref] = why
        archive.decide_copy(session, args.request, args.action == "approve", args.reason, omit)
        done = "approved" if args.action == "approve" else "refused"
        _out(
            args, {"request": args.request, "decision": done}, f"copy request {args.request} {done}"
        )
    elif args.action == "export":
        result = archive.export_copy(session, args.request, args.out)
        _out(
            args,
            result,
            f"copy request {args.request} exported to {result['path']} (sha256 {result['sha256']})",
        )
    else:
        rows = archive.list_copies(session, args.case)
        _out(
            args,
            rows,
            "\n".join(
                f"{r['id']:>4} case {r['number']} {r['kind']:<6} {r['status']:<9} {r['requester']}"
                for r in rows
            )
            or "no copy requests",
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("alembic").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:  # the one-line error says it; the audit log keeps it
        for name in ("archive.service", "archive.sealing"):  # refusals: the error line says it
            logging.getLogger(name).setLevel(logging.ERROR)

    def body() -> int:
        try:
            return _run(args)
        except (Refused, LoginFailed) as exc:
            if os.environ.get("DEBUG") == "1":
                raise
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 3

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
