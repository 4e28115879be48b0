"""``bodycam-unit``: the head of unit's key and the registry it signs.

The unit key is the one trust anchor of the system: it signs the registry of camera keys
(with their officer and unit) and dock keys, their validity and their revocations.
Verifiers, docks, cameras and the supervisor trust a registry only when it is signed by a
unit key whose fingerprint they were given, so print the fingerprint here and hand it over
out of band (on paper, read aloud).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from daemonkit.cli import UsageError, run_command, setup_logging

from .clock import SystemClock, format_utc, parse_utc
from .registry import ArchiveEntry, ConsoleEntry, DeviceEntry, DockEntry, Registry
from .trust import write_trust_file
from .unitkey import PassphraseNeeded, UnitKey, show_fingerprint

PROG = "bodycam-unit"
PASSPHRASE_ENV = "BODYCAM_UNIT_PASSPHRASE"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The head of unit's key, and the registry of cameras and "
        "docks it signs. Every change signs a new edition of the registry file.",
        epilog=f"A sealed key's passphrase comes from --passphrase-file, ${PASSPHRASE_ENV}, "
        "or a prompt on a terminal.",
    )
    p.add_argument(
        "--key",
        default=os.environ.get("BODYCAM_UNIT_KEY", "unit.key"),
        help="the unit key file (default $BODYCAM_UNIT_KEY or ./unit.key)",
    )
    p.add_argument(
        "--registry",
        default="registry.json",
        help="the registry file to sign (default ./registry.json)",
    )
    p.add_argument(
        "--passphrase-file", metavar="FILE", help="read the key's passphrase from FILE (first line)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("init", help="make the unit key and the registry's first edition")
    s.add_argument("--unit", required=True, help="the unit's id, e.g. unit-1")
    s.add_argument(
        "--no-passphrase",
        action="store_true",
        help="keep the key unsealed (mode 0600 only); the default seals it",
    )
    s.add_argument(
        "--trust-file",
        metavar="FILE",
        help="also write a trust file naming this key (for /etc/bodycam/trust.toml)",
    )
    sub.add_parser(
        "fingerprint",
        help="print the unit key's fingerprint (from --key, or from "
        "the registry's signature when there is no key file)",
    )
    s = sub.add_parser("add-device", help="register a camera's key")
    s.add_argument("device")
    s.add_argument("--public-key", required=True, help="64 hex digits (provision-device prints it)")
    s.add_argument("--officer", default="", help="the officer who carries it")
    s.add_argument("--device-unit", default="", help="its unit (default: the key's unit)")
    s.add_argument("--valid-from", default="", metavar="UTC")
    s.add_argument("--valid-until", default="", metavar="UTC")
    s.add_argument("--replace", action="store_true", help="replace a registered key")
    s = sub.add_parser("add-dock", help="register a docking station's key")
    s.add_argument("dock")
    s.add_argument(
        "--public-key", required=True, help="64 hex digits (bodycam-dock init prints it)"
    )
    s.add_argument("--valid-from", default="", metavar="UTC")
    s.add_argument("--valid-until", default="", metavar="UTC")
    s.add_argument("--replace", action="store_true", help="replace a registered key")
    s = sub.add_parser(
        "add-console",
        help="register a supervisor console's key (cameras then honour its alert receipts)",
    )
    s.add_argument("console")
    s.add_argument(
        "--public-key", required=True, help="64 hex digits (bodycam-supervisor setup prints it)"
    )
    s.add_argument("--replace", action="store_true", help="replace a registered key")
    s = sub.add_parser(
        "add-archive",
        help="register an archive's key (bodycam-verify then trusts its signed audit log)",
    )
    s.add_argument("archive")
    s.add_argument(
        "--public-key", required=True, help="64 hex digits (bodycam-archive init prints it)"
    )
    s.add_argument("--replace", action="store_true", help="replace a registered key")
    s = sub.add_parser("revoke", help="revoke a camera's, a dock's or a console's key")
    s.add_argument("id", help="the device or dock id")
    s.add_argument("--reason", required=True, help="why (lost, stolen, retired, ...)")
    s.add_argument("--at", metavar="UTC", help="from when (default: now)")
    sub.add_parser("show", help="check the registry's signature and list it")
    return p


def _passphrase(args: argparse.Namespace, confirm: bool = False) -> bytes | None:
    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_bytes().splitlines()[0]
        except (OSError, IndexError):
            raise UsageError(f"{args.passphrase_file}: cannot read a passphrase") from None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    if sys.stdin.isatty():
        first = getpass.getpass("unit key passphrase: ").encode()
        if confirm and getpass.getpass("again: ").encode() != first:
            raise UsageError("the passphrases differ")
        return first or None
    return None


def _utc(text: str, flag: str) -> str:
    if not text:
        return ""
    try:
        return format_utc(parse_utc(text))
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is not a UTC stamp (YYYY-MM-DDTHH:MM:SS.ffffffZ)"
        ) from None


def _load_key(args: argparse.Namespace) -> UnitKey:
    try:
        return UnitKey.load(args.key)
    except PassphraseNeeded:
        return UnitKey.load(args.key, _passphrase(args))


def _edit(args: argparse.Namespace) -> tuple[UnitKey, Registry]:
    key = _load_key(args)
    registry = Registry.load(args.registry)
    if registry.signature is None or registry.signature.unit_key != key.public_key_hex:
        raise UsageError(f"{args.registry} is not signed by this unit key: not editing it")
    return key, registry


def _sign(args: argparse.Namespace, key: UnitKey, registry: Registry) -> None:
    registry.save_signed(args.registry, key, format_utc(SystemClock().time_ns()))
    print(
        f"{args.registry}: edition {registry.signature.serial}, {len(registry)} camera(s), "
        f"{len(registry.docks())} dock(s), signed by {show_fingerprint(key.fingerprint)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        setup_logging(args.verbose)
        now = format_utc(SystemClock().time_ns())
        if args.command == "init":
            if Path(args.registry).exists():
                raise UsageError(f"{args.registry} exists already; not replacing it")
            passphrase = None if args.no_passphrase else _passphrase(args, confirm=True)
            if not args.no_passphrase and not passphrase:
                raise UsageError(
                    "give a passphrase (--passphrase-file, "
                    f"${PASSPHRASE_ENV}, a terminal) or --no-passphrase"
                )
            key = UnitKey.create(args.key, args.unit, passphrase)
            registry = Registry()
            _sign(args, key, registry)
            if args.trust_file:
                write_trust_file(args.trust_file, [key.fingerprint])
            print(f"unit key {args.key} for {args.unit}; fingerprint (compare out of band):")
            print(f"  {show_fingerprint(key.fingerprint)}")
            return 0
        if args.command == "fingerprint":
            if Path(args.key).exists():
                fp = UnitKey.load_public(args.key)
            else:
                registry = Registry.load(args.registry)
                if registry.fingerprint is None:
                    raise UsageError(f"{args.registry} is not signed")
                fp = registry.fingerprint
            print(show_fingerprint(fp))
            return 0
        if args.command == "show":
            registry = Registry.load(args.registry)
            sig = registry.signature
            if sig is None:
                print(f"{args.registry}: NOT SIGNED (an unsigned v1 registry)")
            else:
                print(
                    f"{args.registry}: edition {sig.serial} of unit {sig.unit}, issued "
                    f"{sig.issued_utc}, signature valid, unit key "
                    f"{show_fingerprint(sig.fingerprint)}"
                )
            for e in registry:
                print(
                    f"camera {e.device_id} {e.public_key} officer={e.officer or '-'} "
                    f"unit={e.unit or '-'}"
                    + (f" REVOKED {e.revoked_utc}: {e.revoked_reason}" if e.revoked else "")
                )
            for d in registry.docks():
                print(
                    f"dock {d.dock_id} {d.public_key}"
                    + (f" REVOKED {d.revoked_utc}: {d.revoked_reason}" if d.revoked else "")
                )
            for c in registry.consoles():
                print(
                    f"console {c.console_id} {c.public_key}"
                    + (f" REVOKED {c.revoked_utc}: {c.revoked_reason}" if c.revoked else "")
                )
            for a in registry.archives():
                print(
                    f"archive {a.archive_id} {a.public_key}"
                    + (f" REVOKED {a.revoked_utc}: {a.revoked_reason}" if a.revoked else "")
                )
            return 0
        key, registry = _edit(args)
        if args.command == "add-device":
            registry.add(
                DeviceEntry(
                    args.device,
                    args.public_key.lower(),
                    args.officer,
                    args.device_unit or key.unit,
                    _utc(args.valid_from, "--valid-from"),
                    _utc(args.valid_until, "--valid-until"),
                ),
                replace=args.replace,
            )
        elif args.command == "add-dock":
            registry.add_dock(
                DockEntry(
                    args.dock,
                    args.public_key.lower(),
                    key.unit,
                    _utc(args.valid_from, "--valid-from"),
                    _utc(args.valid_until, "--valid-until"),
                ),
                replace=args.replace,
            )
        elif args.command == "add-console":
            registry.add_console(
                ConsoleEntry(args.console, args.public_key.lower(), key.unit),
                replace=args.replace,
            )
        elif args.command == "add-archive":
            registry.add_archive(
                ArchiveEntry(args.archive, args.public_key.lower(), key.unit),
                replace=args.replace,
            )
        else:
            registry.revoke(args.id, _utc(args.at, "--at") or now, args.reason)
        _sign(args, key, registry)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
