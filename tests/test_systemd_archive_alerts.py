"""bodycam-archive-alerts.service and .timer: `systemd-analyze verify` prints nothing, the
hardening of the other units, a command line the archive's own parser accepts, and an
hourly timer that catches up after the machine was off."""

from __future__ import annotations

import re
import shlex

import pytest
from test_systemd_units import INSTALLED_BIN, needs_analyze, security, staged, unit_config, verify

SERVICE = "bodycam-archive-alerts.service"
TIMER = "bodycam-archive-alerts.timer"


@needs_analyze
def test_systemd_analyze_verify_prints_nothing(tmp_path):
    directory = staged(tmp_path, [SERVICE, TIMER])
    assert verify([directory / SERVICE, directory / TIMER]) == []


@needs_analyze
def test_exposure_is_as_low_as_the_docks(tmp_path):
    out = security(tmp_path, SERVICE)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out)
    assert m and float(m.group(1)) <= 1.2, out


def test_the_service_is_a_hardened_oneshot_of_the_bodycam_user():
    service = unit_config(SERVICE)["Service"]
    assert service["Type"] == "oneshot" and int(service["TimeoutStartSec"]) > 0
    assert (service["User"], service["Group"], service["StateDirectory"]) == ("bodycam",) * 3
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "PrivateMounts": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }.items():
        assert service[key] == value, key
    assert re.fullmatch(r"[0-9]+M", service["MemoryMax"]) and 0 < int(service["TasksMax"]) <= 128
    # the broker password reaches this service alone, never as a readable file of its user
    assert service["LoadCredential"] == "mqtt.passwd:/etc/bodycam/archive-mqtt.passwd"


def test_the_command_line_parses_with_the_archives_own_parser():
    from archive.__main__ import build_parser

    line = unit_config(SERVICE)["Service"]["ExecStart"]
    assert line.startswith(INSTALLED_BIN + "bodycam-archive ")
    line = line.replace("${BODYCAM_ARCHIVE_MQTT}", "broker.example:8883")
    line = line.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/" + SERVICE)
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert (args.command, args.once, args.insecure) == ("alerts", True, False)
    assert args.dir == "/var/lib/bodycam/archive" and args.ca_file == "/etc/bodycam/broker-ca.crt"
    assert args.password_file == f"/run/credentials/{SERVICE}/mqtt.passwd"
    assert unit_config(SERVICE)["Service"]["EnvironmentFile"] == "/etc/bodycam/archive-alerts.env"


@pytest.mark.parametrize(
    "key, value", [("OnCalendar", "hourly"), ("Persistent", "yes"), ("Unit", SERVICE)]
)
def test_the_timer_runs_it_hourly_and_catches_up(key, value):
    timer = unit_config(TIMER)
    assert timer["Timer"][key] == value
    assert timer["Install"]["WantedBy"] == "timers.target"
