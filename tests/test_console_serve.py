"""``bodycam-archive serve``: the console under real uvicorn, on plain HTTP on loopback and
on TLS, and its one-line refusals of listening addresses it should not use."""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from corekit import DAY, PW, build_world, make_archive
from dockkit import START

from archive.__main__ import main
from simulator.clock import SimClock


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("serve")
    world = build_world(tmp)
    folder = tmp / "archive"
    make_archive(world, folder, "", SimClock(START + 2 * DAY)).close()
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "archive", "serve", str(folder)]
        + ["--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)  # polling a port that is not open yet; no event to wait on
    proc.kill()
    raise AssertionError("serve did not start listening")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return err


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "console.crt", tmp / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _log_in(base: str, **client_options) -> httpx.Response:
    with httpx.Client(base_url=base, follow_redirects=False, **client_options) as http:
        form = http.get("/login")
        assert form.status_code == 200 and "登录" in form.text
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        done = http.post(
            "/login", data={"name": "admin", "password": PW, "csrf": token, "next": "/"}
        )
        assert done.status_code == 303, done.text[:500]
        home = http.get("/")
        assert home.status_code == 200 and "admin" in home.text
        return done


def test_serve_on_loopback_http_and_on_tls(archive_dir: Path, tmp_path: Path) -> None:
    proc, port = _serve(archive_dir)
    try:
        done = _log_in(f"http://127.0.0.1:{port}")
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" not in cookie  # plain HTTP: not Secure
    finally:
        _stop(proc)
    cert, key = _self_signed(tmp_path)
    proc, port = _serve(archive_dir, "--cert", str(cert), "--key", str(key))
    try:
        done = _log_in(
            f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(cert))
        )
        assert "Secure" in done.headers["set-cookie"]
    finally:
        _stop(proc)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--listen", "0.0.0.0:8080"], "plain HTTP only on loopback"),
        (["--listen", "8080"], "use HOST:PORT"),
        (["--listen", "127.0.0.1:8080", "--cert", "x.crt"], "go together"),
        (["--listen", "127.0.0.1:8080", "--timezone", "Mars/Olympus"], "not a known time zone"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(
    archive_dir: Path, args: list[str], says: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["serve", str(archive_dir), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("\n") == 1


def test_serve_of_a_folder_that_is_no_archive(tmp_path: Path, capsys) -> None:
    assert main(["serve", str(tmp_path), "--listen", "127.0.0.1:8080"]) == 2
    assert "not an archive" in capsys.readouterr().err
