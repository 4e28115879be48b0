"""The console as a person meets it: ``bodycam-archive serve`` as a real subprocess over
the store a simulated shift left, and Debian's Chromium (headless, through Selenium and
Debian's chromedriver) logging in and clicking.

- :func:`build_world` runs a real shift (``simulator shift --dock``), makes an archive
  over its dock store that can seal (``dock_config``: the dock's own key), adds a user
  of every role, indexes the recordings, and files the last act in a case classified
  ``personal_privacy`` (so its segments are sealed at rest).
- :class:`Console` starts and stops the server on a free loopback port.
- :class:`Browser` is a fresh headless Chromium (its own profile folder) with sound
  allowed to autoplay; :meth:`Browser.shot` saves a screenshot of the page into the
  artifact folder (``$BODYCAM_ARTIFACTS``, else ``tests/artifacts/``).
- :func:`http_login` logs in with httpx, for checks of status codes and bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from archivekit import Shift, copy_shift, run_shift  # noqa: F401 (copy_shift: for tests)
from dockkit import store_trust

from archive.service import Archive

PW = "correct horse battery staple"
PEOPLE = {
    "admin": "administrator",
    "wang": "archivist",
    "zhao": "head",
    "li": "officer",
    "sun": "supervisor",
    "qian": "auditor",
}
CHROMIUM = Path(os.environ.get("BODYCAM_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("BODYCAM_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",  # the player starts with sound
    "--window-size=1280,1500",
)


def artifacts() -> Path:
    """Where screenshots go (kept after the run, for a person to look at)."""
    folder = Path(os.environ.get("BODYCAM_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def need_chromium() -> None:
    """Skip, saying so, where Debian's chromium and chromium-driver are not installed
    (``scripts/bootstrap`` installs them, so CI runs these tests)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not installed (apt-get install {package})")


@dataclass(frozen=True)
class World:
    shift: Shift
    archive: Path  # the archive's folder
    case: str  # the personal_privacy case holding act ``sealed_act`` (sealed at rest)
    sealed_act: int | None  # its index in the shift's acts
    officer: str  # the camera's officer (user li's badge)

    @property
    def device(self) -> str:
        return self.shift.device


def dock_toml(shift: Shift) -> Path:
    """The dock's dock.toml as the archive names it (``dock_config``): store, key, trust."""
    fp = sorted(store_trust(shift.root))[0]
    path = shift.root / "dock.toml"
    path.write_text(
        f'[dock]\nstore = "{shift.store}"\nkey = "{shift.root / "dock-key" / "dock.key"}"\n'
        f'unit_keys = ["{fp}"]\n'
    )
    return path


def build_world(
    tmp: Path, duration: str = "10m", *, sealed_act: int | None = 1, database: str = ""
) -> World:
    """A shift recorded and docked into ``tmp/shift``, and an archive over it."""
    return build_archive(
        run_shift(tmp / "shift", duration=duration),
        tmp / "archive",
        sealed_act=sealed_act,
        database=database,
    )


def build_archive(
    shift: Shift, folder: Path, *, sealed_act: int | None = 1, database: str = ""
) -> World:
    """An archive over the shift's store (that can seal: ``dock_config``), a user of every
    role, the recordings indexed, act ``sealed_act`` in a ``personal_privacy`` case."""
    registry = shift.store / "registry.json"
    officer = re.search(r'"officer": ?"([^"]+)"', registry.read_text()).group(1)
    Archive.create(folder, shift.store, "archive-1", "admin", PW, database=database).close()
    with open(folder / "archive.toml", "a") as f:
        f.write(f'dock_config = "{dock_toml(shift)}"\n')
    number = ""
    with Archive.open(folder) as arch:
        admin = arch.login("admin", PW)
        for name, role in PEOPLE.items():
            if role != "administrator":
                badge = officer if role == "officer" else ""
                arch.add_user(admin, name, role, PW, officer=badge)
        arch.sync_recordings()
        if sealed_act is not None:
            wang = arch.login("wang", PW)
            number = arch.open_case(
                wang, "seizure", "seizure", ["Zhang San"], [officer], "personal_privacy"
            )
            arch.attach_act(wang, number, shift.device, acts(shift)[sealed_act].start_seq)
    return World(shift, folder, number, sealed_act, officer)


def copy_world(world: World, into: Path) -> World:
    """A test's own copy of the store and archive (for tests that damage files)."""
    shutil.copytree(world.shift.root, into / "shift", symlinks=True)
    shutil.copytree(world.archive, into / "archive", symlinks=True)
    old, new = str(world.shift.root), str(into / "shift")
    for name in ("archive.toml",):
        cfg = into / "archive" / name
        cfg.write_text(cfg.read_text().replace(old, new))
    dock = into / "shift" / "dock.toml"
    dock.write_text(dock.read_text().replace(old, new))
    s = world.shift
    shift = Shift(
        into / "shift",
        into / "shift" / "dock",
        s.device,
        into / "shift" / s.folder.relative_to(s.root),
        s.records,
    )
    return World(shift, into / "archive", world.case, world.sealed_act, world.officer)


def acts(shift: Shift) -> list:
    """The shift's acts as the compliance report and the player find them."""
    from dock.compliance import acts_of
    from evidence.procedures import load_procedures

    return acts_of(shift.records, load_procedures(), now_ns=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """``bodycam-archive serve ARCHIVE --listen 127.0.0.1:PORT``, a real process."""

    def __init__(self, archive: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="console-", suffix=".log")[1])
        self._log = open(self.log, "wb")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archive", "serve", str(archive)]
            + ["--listen", f"127.0.0.1:{self.port}", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("serve did not start listening") from None
                time.sleep(0.05)  # a port that is not open yet: nothing to wait on but it

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def http_login(base: str, name: str, password: str = PW) -> Iterator[httpx.Client]:
    """An httpx client logged in as ``name`` (the login form's own CSRF token)."""
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        done = client.post(
            "/login", data={"name": name, "password": password, "csrf": token, "next": "/"}
        )
        assert done.status_code in (302, 303), done.text[-500:]
        yield client


class Browser:
    """A fresh headless Chromium driven by chromedriver (Selenium)."""

    def __init__(self, base: str, *, name: str = "chromium") -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        need_chromium()
        self.base = base
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.driver.set_script_timeout(120)

    def get(self, path: str) -> None:
        self.driver.get(self.base + path)

    def login(self, name: str, password: str = PW) -> None:
        from selenium.webdriver.common.by import By

        self.get("/login")
        self.driver.find_element(By.NAME, "name").send_keys(name)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        self.wait_js("return !location.pathname.startsWith('/login')", what="the login")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_js(self, condition: str, timeout: float = 60, what: str = "the page") -> Any:
        """Wait until the JS expression ``condition`` (a statement that returns) is truthy."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda d: d.execute_script(condition)
            )
        except TimeoutException:
            raise AssertionError(
                f"{what}: not so after {timeout} s: {condition}\n{self.console_log()}"
            ) from None

    def wait_event(self, target: str, event: str, action: str = "", timeout: float = 60) -> Any:
        """Run ``action`` and wait for ``event`` on the JS object ``target`` (an event, not
        a sleep); returns what the page says at that moment."""
        script = (
            "var done = arguments[arguments.length - 1];"
            f"var el = {target};"
            f"var timer = setTimeout(function () {{ done({{timeout: true}}); }}, {timeout * 1000});"
            f"el.addEventListener('{event}', function () {{ clearTimeout(timer);"
            " done({timeout: false, t: el.currentTime}); }, {once: true});"
            f"{action}"
        )
        got = self.driver.execute_async_script(script)
        assert not got["timeout"], f"no {event} within {timeout} s\n{self.console_log()}"
        return got

    def console_log(self) -> str:
        try:
            return "\n".join(e["message"][:400] for e in self.driver.get_log("browser")[-20:])
        except Exception:  # the log is for the failure message only
            return ""

    def shot(self, name: str) -> Path:
        path = artifacts() / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
