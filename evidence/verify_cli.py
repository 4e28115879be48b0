"""``bodycam-verify``: check a device's storage folder or a dock store, list every problem.

Exit status: 0 intact, 1 problems found (each listed), 2 could not check (one-line reason).
The checking itself is :mod:`evidence.verify`; this module only parses flags and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .cli import UsageError, run_command, setup_logging
from .config import load_config
from .verify import CannotCheck, Report, parse_expect_head, verify_path

_log = logging.getLogger(__name__)

PROG = "bodycam-verify"
DEFAULTS = {"registry": "", "json": False}
KIND_NAMES = {"device": "device folder", "dock_store": "dock store"}

EPILOG = """\
Exit status: 0 intact, 1 problems found, 2 could not check.

Trust: --registry FILE, else PATH/registry.json if present, else the key in a device
folder's identity.json (a self-declared key, reported as a note). Problem codes and the
journal format are described in docs/journal-format.md.

Config (TOML, every key optional): registry = "FILE", json = true|false.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check a camera's storage folder or a dock store: signatures, chain,\n"
        "sequence, time, media hashes and the journal's tail.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH",
                        help="a device storage folder (journal.jsonl at its root) or a dock "
                        "store (index.sqlite, <unit>/<device>/ folders)")
    parser.add_argument("--json", action="store_true", default=None,
                        help="print one machine-readable JSON object instead of text")
    parser.add_argument("--registry", metavar="FILE",
                        help="the device registry to trust (default: PATH/registry.json)")
    parser.add_argument("--expect-head", metavar="[DEVICE:]SEQ:HASH", action="append",
                        default=[],
                        help="the head the device signed (dock handshake or MQTT status); "
                        "a journal that ends before it is reported as tail_cut. Repeat "
                        "with DEVICE: for a store holding several devices")
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
    """One line per problem, the notes, then one summary line."""
    lines = [str(p) for p in report.problems]
    lines += [f"note: {n}" for d in report.devices for n in d.notes]
    records = sum(d.records for d in report.devices)
    files = sum(d.media_files for d in report.devices)
    size = sum(d.media_bytes for d in report.devices)
    n = len(report.devices)
    what = (f"{KIND_NAMES.get(report.kind, report.kind)}, {n} device{'s' if n != 1 else ''}, "
            f"{records} records, {files} media files ({_human_size(size)})")
    if report.intact:
        lines.append(f"{report.path}: INTACT: {what}")
    else:
        bad = sum(1 for d in report.devices if d.problems)
        count = len(report.problems)
        lines.append(f"{report.path}: {count} PROBLEM{'S' if count != 1 else ''} "
                     f"in {bad} of {n} device{'s' if n != 1 else ''}: {what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        setup_logging(args.verbose)
        config = load_config(DEFAULTS, args.config,
                             {"registry": args.registry, "json": args.json})
        heads = []
        for text in args.expect_head:
            try:
                heads.append(parse_expect_head(text))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        try:
            report = verify_path(args.path, registry_path=config["registry"] or None,
                                 expect_heads=heads)
        except CannotCheck as exc:
            if config["json"]:
                print(json.dumps({"path": args.path, "exit": 2, "error": str(exc)}))
            raise
        _log.debug("checked %s: %d problems", args.path, len(report.problems))
        if config["json"]:
            print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
        else:
            print(render_text(report))
        return 0 if report.intact else 1

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
