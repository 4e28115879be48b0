"""wire.broker: the one place broker settings become a paho client.

TLS end to end (a real mosquitto with certificates and passwords) is in test_broker.py;
here: password file errors, credentials, protocol, and that ca_file really turns TLS on."""

from __future__ import annotations

import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from alerting.watch import BrokerSettings
from dock.alerts import MqttConfig
from evidence.exc import ConfigError
from firmware.mqtt import MQTT_DEFAULTS, MqttSettings
from wire.broker import ConnectionSettings, make_client, read_password


def password_file(tmp_path: Path, text: str = "s3cret\n", mode: int = 0o600) -> Path:
    path = tmp_path / "broker.pw"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
        ],
        cwd=d,
        check=True,
        capture_output=True,
    )
    return d / "ca.crt"


def test_missing_password_file_is_a_one_line_config_error(tmp_path):
    missing = tmp_path / "nope.pw"
    settings = ConnectionSettings(
        host="127.0.0.1", username="dock", password_file=str(missing), insecure=True
    )
    with pytest.raises(ConfigError) as info:
        make_client(settings, "c1")
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "not found" in message


def test_password_file_others_can_read_is_refused(tmp_path):
    path = password_file(tmp_path, mode=0o644)
    with pytest.raises(ConfigError, match="must be mode 0600") as info:
        read_password(path)
    assert "\n" not in str(info.value)


def test_unreadable_password_file_is_a_one_line_config_error(tmp_path):
    path = tmp_path / "a-directory.pw"  # root reads any file; a directory it cannot
    path.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="cannot read the broker password file") as info:
        read_password(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_credentials_protocol_and_session(tmp_path):
    path = password_file(tmp_path, "  s3cret \n")
    settings = ConnectionSettings(host="127.0.0.1", password_file=str(path), insecure=True)
    # No username and no default: no login at all, and the file is not even read.
    anon = make_client(
        ConnectionSettings(host="h", password_file=str(tmp_path / "x"), insecure=True), "c"
    )
    assert anon.username is None and anon.password is None
    camera = make_client(settings, "bodycam-cam-a", protocol=mqtt.MQTTv5, default_username="cam-a")
    assert (camera.username, camera.password) == ("cam-a", "s3cret")
    assert camera.protocol == mqtt.MQTTv5
    named = make_client(
        ConnectionSettings(host="h", username="supervisor", password_file=str(path), insecure=True),
        "c",
        clean_session=False,
    )
    assert (named.username, named.password) == ("supervisor", "s3cret")
    assert named.protocol == mqtt.MQTTv311


def test_ca_file_turns_tls_on(broker, ca_file):
    """The conftest broker speaks plain MQTT: a TLS client must fail its handshake there,
    and the same settings with ``insecure`` instead of ca_file must connect."""
    plain = ConnectionSettings(host=broker.host, port=broker.port, insecure=True)
    client = make_client(plain, "plain")
    assert client.connect(plain.host, plain.port, keepalive=plain.keepalive_s) == 0
    client.disconnect()

    tls = ConnectionSettings(host=broker.host, port=broker.port, ca_file=str(ca_file))
    client = make_client(tls, "tls")
    with pytest.raises(OSError):  # ssl.SSLError, or the broker dropping the ClientHello
        client.connect(tls.host, tls.port, keepalive=tls.keepalive_s)


def test_client_certificate_files_are_loaded(tmp_path, ca_file):
    settings = ConnectionSettings(
        host="h",
        ca_file=str(ca_file),
        cert_file=str(tmp_path / "missing.crt"),
        key_file=str(tmp_path / "missing.key"),
    )
    with pytest.raises((OSError, ssl.SSLError)):
        make_client(settings, "c")
    # The CA's own pair is a valid certificate chain: accepted.
    ok = ConnectionSettings(
        host="h",
        ca_file=str(ca_file),
        cert_file=str(ca_file),
        key_file=str(ca_file.with_name("ca.key")),
    )
    make_client(ok, "c")


def test_callers_keep_their_settings_and_defaults():
    """Each caller's settings are the shared ones plus its extras, keys unchanged."""
    camera = MqttSettings.from_config({**MQTT_DEFAULTS, "host": "b", "unit": "u1", "ca_file": "c"})
    assert isinstance(camera, ConnectionSettings)
    assert (camera.port, camera.keepalive_s, camera.inflight) == (8883, 30, 16)
    supervisor = BrokerSettings(ca_file="ca.crt")
    assert (supervisor.host, supervisor.port, supervisor.client_id) == ("localhost", 8883, "")
    dock = MqttConfig(host="b", insecure=True)
    assert isinstance(dock, ConnectionSettings) and dock.port == 8883
    with pytest.raises(ValueError, match="mqtt.unit is empty"):
        MqttSettings.from_config({**MQTT_DEFAULTS, "host": "b", "insecure": True})


def test_no_tls_without_insecure_is_a_one_line_error(tmp_path, ca_file):
    """The shipped configs leave ca_file empty: that must never mean plain TCP (it would
    send the password in clear text). Each caller's settings refuse it at construction,
    with one line naming both ways out."""
    for make in (
        lambda: ConnectionSettings(host="broker.example.org"),
        lambda: MqttSettings.from_config({**MQTT_DEFAULTS, "host": "b", "unit": "u1"}),
        lambda: BrokerSettings(),
        lambda: MqttConfig(host="b", unit="u1"),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        message = str(info.value)
        assert "\n" not in message and "TLS is required" in message
        assert "ca_file" in message and "insecure = true" in message
    with pytest.raises(ConfigError, match="choose TLS or plain TCP"):
        ConnectionSettings(host="h", ca_file=str(ca_file), insecure=True)
    with pytest.raises(ConfigError, match="true or false"):
        ConnectionSettings(host="h", insecure="yes")  # type: ignore[arg-type]
    # No host: nothing to connect to, nothing to refuse (the recorder's "no link").
    assert ConnectionSettings(host="").ca_file == ""


def test_shipped_configs_have_no_plain_tcp(tmp_path):
    """recorder.toml, dock.toml and supervisor.toml: insecure is false, and a host set
    without a ca_file is refused by the command with one line and exit status 2."""
    root = Path(__file__).resolve().parents[1]
    for name in ("firmware/recorder.toml", "dock/dock.toml", "supervisor/supervisor.toml"):
        mqtt_table = tomllib.loads((root / name).read_text())["mqtt"]
        assert mqtt_table["insecure"] is False, name
    # supervisor.toml is the supervisor's defaults (one source of defaults): its ca_file is
    # "" like the recorder's and the dock's, so a console without a CA is refused below
    # (a config saying `insecure = true` must not also inherit a CA path).
    conf = tmp_path / "supervisor.toml"
    conf.write_text('[mqtt]\nhost = "broker.example.org"\nca_file = ""\n')
    (tmp_path / "registry.json").write_text('{"format": "bodycam-registry-v1", "devices": {}}')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "status",
            "--config",
            str(conf),
            "--registry",
            str(tmp_path / "registry.json"),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "TLS is required" in result.stderr
