"""``bodycam-archive serve``'s options for live status, and the feed they ask for.

Apart from :mod:`archive.web.live` so that building the command line's parser imports
neither FastAPI nor paho: ``serve`` calls :func:`add_arguments` and, once the archive is
open, :func:`feed_from_args`.
"""

from __future__ import annotations

from typing import Any

from ..exc import ArchiveError

STATE_NAME = "live-state.json"  # in the archive's folder: what this console has shown


def add_arguments(parser: Any) -> None:
    """``serve``'s options for live status (none given: the page says it is off)."""
    parser.add_argument(
        "--mqtt", default="", metavar="HOST:PORT", help="live status: the unit's broker"
    )
    parser.add_argument("--mqtt-ca-file", default="", help="the broker's CA (TLS)")
    parser.add_argument(
        "--mqtt-insecure", action="store_true", help="plain TCP to the broker: loopback tests only"
    )
    parser.add_argument(
        "--mqtt-username",
        default="",
        help="this console's broker user (a supervisor credential of its own: "
        "scripts/issue-broker-credential NAME --role supervisor)",
    )
    parser.add_argument("--mqtt-password-file", default="", help="its password file (0600)")
    parser.add_argument(
        "--unit-key",
        action="append",
        default=[],
        metavar="FINGERPRINT",
        help="live status: trust the registry signed by this unit key (bodycam-unit fingerprint)",
    )
    parser.add_argument(
        "--console-key",
        default="",
        help="this console's key: its receipts stop a camera resending an alert shown here",
    )


def feed_from_args(args: Any, archive: Any):
    """The feed ``serve``'s options ask for, or None without ``--mqtt``; a one-line
    :class:`ArchiveError` for a wrong option."""
    from alerting.watch import BrokerSettings
    from evidence.exc import EvidenceError
    from evidence.identity import DeviceIdentity
    from evidence.registry import Registry
    from evidence.trust import load_trusted_registry, load_unit_keys

    from ..service import REGISTRY_NAME
    from .live import LiveFeed

    if not args.mqtt:
        return None
    host, sep, port = args.mqtt.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ArchiveError(f"--mqtt {args.mqtt!r}: use HOST:PORT")
    if not args.unit_key:
        raise ArchiveError("--mqtt needs --unit-key FINGERPRINT: whose registry to trust")
    try:
        keys = load_unit_keys(args.unit_key, default_file=None)
        path = archive.folder / REGISTRY_NAME

        def load() -> Registry:
            archive.refresh_registry()
            return load_trusted_registry(path, keys)

        registry = load()
        console = DeviceIdentity.load(args.console_key) if args.console_key else None
    except (EvidenceError, OSError) as exc:
        raise ArchiveError(str(exc)) from None
    settings = BrokerSettings(
        host=host,
        port=int(port),
        ca_file=args.mqtt_ca_file,
        insecure=args.mqtt_insecure,
        username=args.mqtt_username,
        password_file=args.mqtt_password_file,
    )
    return LiveFeed(
        settings,
        registry,
        client_id=f"bodycam-console-{archive.identity.device_id}",
        state_path=archive.folder / STATE_NAME,
        console=console,
        refresh=load,
    )
