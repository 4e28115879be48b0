"""daemonkit.systemd against a real AF_UNIX datagram socket, as systemd binds it."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from daemonkit import systemd


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound datagram socket under tmp_path, exported as NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_watchdog_status_stopping_reach_the_socket(notify_socket):
    assert systemd.ready()
    assert _recv(notify_socket) == "READY=1"
    assert systemd.watchdog_ping()
    assert _recv(notify_socket) == "WATCHDOG=1"
    assert systemd.status("recording\nsegment 3")
    assert _recv(notify_socket) == "STATUS=recording segment 3"
    assert systemd.stopping("shutting down")
    assert _recv(notify_socket) == "STOPPING=1\nSTATUS=shutting down"


def test_ready_with_status_text(notify_socket):
    assert systemd.ready("serving 2 bays")
    assert _recv(notify_socket) == "READY=1\nSTATUS=serving 2 bays"


def test_abstract_namespace_socket(monkeypatch):
    name = "bodycam-test-" + uuid.uuid4().hex
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1")
        assert _recv(sock) == "READY=1"
    finally:
        sock.close()


def test_no_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.watchdog_ping() is False
    assert systemd.stopping() is False


def test_socket_gone_does_not_raise(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing.sock"))
    assert systemd.watchdog_ping() is False
    assert "sd_notify" in caplog.text


def test_relative_notify_socket_is_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "relative.sock")
    assert systemd.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env, expected):
    assert systemd.watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2500000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 2.5
