"""``bodycam-recorder``: the recorder daemon (``python -m firmware``).

The hardware backend is picked here, at the edge, and nowhere else: ``--camera`` or
``BODYCAM_CAMERA=pi|sim`` (default ``pi``), a name looked up in the ``bodycam.hardware``
entry points (:func:`firmware.hardware.load_backend`), so this package imports no
simulator code. A device never falls back to the simulator: if picamera2 is missing the
daemon says so and exits 2. ``pi`` (:mod:`firmware.pi`) restores the system clock from the
RTC as it starts. ``sim`` runs the simulator's hardware twin (camera, power, speaker,
microphone, a SimClock at ``--speed``; gpiozero's pin factory from
``GPIOZERO_PIN_FACTORY``, e.g. ``mock``) for development. Both burn the device id and the
officer (from the unit-signed registry, ``dock.registry``) into every frame.

systemd: ``Type=notify``; the main loop sends READY=1, WATCHDOG=1 and STOPPING=1 through
:mod:`daemonkit.systemd`. SIGTERM and SIGINT only wake the main loop, which then stops
recording cleanly (the last segment is closed and signed) before exiting.

The dock cable: with ``dock.port`` set (default ``/dev/ttyGS0``, the USB gadget's serial
port), a dock thread (:mod:`firmware.docking`) serves docks on it; ``--dock-port`` overrides.
With ``dock.network`` (``--dock-network``) the network uploader (:mod:`firmware.netdock`)
offloads each closed segment to the station's dock over TLS; one session runs at a time.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from daemonkit.cli import UsageError, run_command, setup_logging
from evidence.identity import DeviceIdentity

from . import config as cfg
from .hardware import BackendOptions, load_backend

PROG = "bodycam-recorder"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The body camera's recorder daemon: record button, pre-event buffer, "
        "signed MPEG-TS segments, stoppage detection. Config: firmware/recorder.toml "
        "(every key documented), overlaid by /etc/bodycam/recorder.toml or --config, "
        "then by these flags.",
    )
    p.add_argument("--config", help="TOML file overlaying the defaults")
    p.add_argument("--storage", help="storage root (device.storage)")
    p.add_argument("--key", help="device key file (device.key)")
    p.add_argument(
        "--camera",
        choices=("pi", "sim"),
        help="hardware backend (default: $BODYCAM_CAMERA, else pi)",
    )
    p.add_argument("--pre-event", type=int, metavar="S", help="pre-event seconds (0-120)")
    p.add_argument("--segment-max", type=int, metavar="S", help="longest segment, seconds")
    p.add_argument(
        "--speed",
        type=float,
        metavar="N",
        help="sim backend: simulated seconds per real second (default 1)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="sim backend: press the record button once the recorder is ready",
    )
    p.add_argument(
        "--dock-port", metavar="PATH", help="dock cable serial port (dock.port; '' = none)"
    )
    p.add_argument(
        "--dock-network",
        metavar="HOST:PORT",
        help="the station dock's TLS address for network docking (dock.network; '' = off)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    return cfg.load(
        args.config,
        {
            "device.storage": args.storage,
            "device.key": args.key,
            "recording.pre_event_s": args.pre_event,
            "recording.segment_max_s": args.segment_max,
            "dock.port": args.dock_port,
            "dock.network": args.dock_network,
        },
    )


def backend_name(args: argparse.Namespace) -> str:
    name = args.camera or os.environ.get("BODYCAM_CAMERA") or "pi"
    if name not in ("pi", "sim"):
        raise UsageError(f"BODYCAM_CAMERA must be 'pi' or 'sim', not {name!r}")
    return name


def officer_of(config: dict[str, Any], device_id: str) -> str:
    """The officer the unit-signed registry gives this camera ('' without a registry),
    burned into every frame with the device id."""
    if not config["dock"]["registry"]:
        return ""
    from evidence.exc import EvidenceError
    from evidence.trust import load_trusted_registry, load_unit_keys

    try:
        registry = load_trusted_registry(
            config["dock"]["registry"], load_unit_keys(config["dock"]["unit_keys"])
        )
    except EvidenceError:
        return ""  # cfg.trusted_docks has already refused a registry that is not trusted
    entry = registry.get(device_id)
    return entry.officer if entry is not None else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(PROG, lambda: _run_checked(args))


def _run_checked(args: argparse.Namespace) -> int:
    from gpiozero.exc import BadPinFactory

    try:
        return _run(args)
    except BadPinFactory as exc:  # no silent fallback: say which factory to choose
        raise UsageError(
            f"no GPIO pin factory ({exc}); on a PC set GPIOZERO_PIN_FACTORY=mock"
        ) from None


def _run(args: argparse.Namespace) -> int:
    from .recorder import Recorder

    config = load_config(args)
    mqtt_settings = None
    if config["mqtt"]["host"]:  # checked before anything starts: TLS, or insecure said so
        from .mqtt import MqttSettings

        mqtt_settings = MqttSettings.from_config(config["mqtt"])
    trusted = cfg.dock_entries(config)
    identity = DeviceIdentity.load(config["device"]["key"])
    backend = backend_name(args)
    if backend == "pi" and (args.speed is not None or args.record):
        raise UsageError("--speed and --record only apply to the sim backend")
    options = BackendOptions(
        device_id=identity.device_id,
        officer_id=officer_of(config, identity.device_id),
        speed=args.speed or 1.0,
    )
    hw = load_backend(backend)(config, options)
    recorder = Recorder(
        config,
        identity=identity,
        clock=hw.clock,
        camera=hw.camera,
        indicators=hw.indicators,
        power=hw.power,
        speaker=hw.speaker,
        microphone=hw.microphone,
        pin_factory=hw.pin_factory,
    )

    def wake(signum: int, frame: Any) -> None:  # only wakes the main loop
        recorder.request_stop()

    signal.signal(signal.SIGTERM, wake)
    signal.signal(signal.SIGINT, wake)
    recorder.start()
    dock = config["dock"]
    from .docking import SessionGate

    gate = SessionGate()  # one dock session at a time: the cable's or the network's
    if dock["port"]:  # the recorder stops it before closing the journal
        from .docking import DockWorker

        worker = DockWorker(
            recorder,
            dock["port"],
            trusted,
            timeout=dock["timeout_s"],
            poll_s=dock["poll_s"],
            max_clock_step_s=dock["max_clock_step_s"],
            gate=gate,
        )
        recorder.services.append(worker)
        worker.start()
    if dock["network"]:
        from .netdock import uploader_for

        uploader = uploader_for(recorder, dock, trusted, gate)
        recorder.services.append(uploader)
        uploader.start()
    link = None
    if mqtt_settings is not None:  # stoppage alerts and status to the unit's broker
        from .mqtt import link_for_recorder

        link = link_for_recorder(recorder, mqtt_settings)
        link.start()
    if args.record:
        recorder.button("record", True)
        recorder.button("record", False)
    try:
        recorder.run()
    finally:
        if link is not None:
            link.wait_idle(5)
            link.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
