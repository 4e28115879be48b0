"""``bodycam-verify``: check a device's storage folder or a dock store, list every problem.

Exit status: 0 intact, 1 problems found (each listed), 2 could not check (one-line reason).
The checking itself is :mod:`evidence.verify`; this module only parses flags and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from daemonkit.cli import UsageError, run_command, setup_logging
from daemonkit.config import load_config

from .exc import ConfigError
from .trust import TRUST_FILE, load_unit_keys
from .unitkey import parse_fingerprint
from .verify import CannotCheck, Report, parse_expect_head, verify_path

_log = logging.getLogger(__name__)

PROG = "bodycam-verify"
DEFAULTS = {"registry": "", "json": False, "unit_keys": [], "trust": ""}
KIND_NAMES = {
    "device": "device folder",
    "dock_store": "dock store",
    "bundle": "court bundle",
    "audit_log": "archive audit log",
}

EPILOG = f"""\
Exit status: 0 intact, 1 problems found (or no trusted key), 2 could not check.

Trust comes only from what you name: --registry FILE (trusted as given), or a registry
signed by a unit key whose fingerprint you name (--unit-key FP, or unit_keys in
{TRUST_FILE} or --trust FILE); that registry may lie in the checked store. Keys found
inside the evidence (an unsigned or unnamed registry.json, identity.json) are used to
check it, but the verdict says UNTRUSTED and the exit status is 1. Problem codes, the
journal format and the store rules are in docs/journal-format.md.

Config (TOML, every key optional): registry = "FILE", json = true|false,
unit_keys = ["FP", ...], trust = "FILE".
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check a camera's storage folder, a dock store or a court bundle: signatures, chain,\n"
        "sequence, time, media hashes and the journal's tail.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a device storage folder (journal.jsonl at its root), a dock "
        "store (index.sqlite, <unit>/<device>/ folders) or a court bundle (manifest.json)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=None,
        help="print one machine-readable JSON object instead of text",
    )
    parser.add_argument(
        "--registry",
        metavar="FILE",
        help="a registry to trust as given (default: PATH/registry.json, "
        "trusted only if signed by a named unit key)",
    )
    parser.add_argument(
        "--unit-key",
        metavar="FINGERPRINT",
        action="append",
        default=[],
        help="trust registries signed by the unit key with this SHA-256 "
        "fingerprint (64 hex digits, spaces allowed; repeatable)",
    )
    parser.add_argument(
        "--trust",
        metavar="FILE",
        help=f"a trust file naming unit keys (default {TRUST_FILE} if present)",
    )
    parser.add_argument(
        "--expect-head",
        metavar="[DEVICE:]SEQ:HASH",
        action="append",
        default=[],
        help="the head the device signed (dock handshake or MQTT status); "
        "a journal that ends before it is reported as tail_cut. Repeat "
        "with DEVICE: for a store holding several devices",
    )
    parser.add_argument(
        "--archive-key",
        metavar="FINGERPRINT",
        action="append",
        default=[],
        help="for a court bundle: its manifest must be signed by the archive key with "
        "this SHA-256 fingerprint (repeatable)",
    )
    parser.add_argument("--config", metavar="FILE", help="a TOML config file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def render_text(report: Report) -> str:
    """One line per problem, the notes, the trust, then one verdict line."""
    lines = [str(p) for p in report.problems]
    lines += [f"note: {n}" for d in report.devices for n in d.notes]
    lines.append(f"trust: {report.trust}")
    cameras = [d for d in report.devices if d.role == "device"]
    records = sum(d.records for d in cameras)
    files = sum(d.media_files for d in cameras)
    size = sum(d.media_bytes for d in cameras)
    n = len(cameras)
    docks = sum(1 for d in report.devices if d.role == "dock")
    what = (
        f"{KIND_NAMES.get(report.kind, report.kind)}, {n} "
        + ("range" if report.kind == "bundle" else "device")
        + f"{'s' if n != 1 else ''}, "
        + (f"{docks} dock journal{'s' if docks != 1 else ''}, " if docks else "")
        + f"{records} records, {files} media files ({_human_size(size)})"
    )
    if report.kind == "audit_log":
        entries = sum(d.records for d in report.devices)
        what = f"archive audit log of {report.devices[0].device}, {entries} entries"
    count = len(report.problems)
    if count:
        bad = sum(1 for d in report.devices if d.problems)
        total = len(report.devices)
        lines.append(
            f"{report.path}: {count} PROBLEM{'S' if count != 1 else ''} "
            f"in {bad} of {total} folder{'s' if total != 1 else ''}: {what}"
        )
    elif not report.trusted:
        lines.append(
            f"{report.path}: UNTRUSTED: no problem found, but checked only against "
            f"keys found inside the checked path: {what}"
        )
    else:
        lines.append(f"{report.path}: INTACT: {what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        setup_logging(args.verbose)
        config = load_config(
            DEFAULTS,
            args.config,
            {"registry": args.registry, "json": args.json, "trust": args.trust},
        )
        try:
            unit_keys = load_unit_keys(
                [*config["unit_keys"], *args.unit_key], config["trust"] or None
            )
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        try:
            archive_keys = frozenset(parse_fingerprint(fp) for fp in args.archive_key)
        except ValueError as exc:
            raise UsageError(f"--archive-key: {exc}") from None
        heads = []
        for text in args.expect_head:
            try:
                heads.append(parse_expect_head(text))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        try:
            report = verify_path(
                args.path,
                registry_path=config["registry"] or None,
                unit_keys=unit_keys,
                expect_heads=heads,
                archive_keys=archive_keys,
            )
        except CannotCheck as exc:
            if config["json"]:
                print(json.dumps({"path": args.path, "exit": 2, "error": str(exc)}))
            raise
        _log.debug("checked %s: %d problems", args.path, len(report.problems))
        if config["json"]:
            print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
        else:
            print(render_text(report))
        return report.exit_status

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
