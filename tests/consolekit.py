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
- :class:`Firefox` is the same for Debian's Firefox ESR, with no geckodriver (Debian has
  none): Firefox's own remote protocol, Marionette, spoken over its loopback socket by
  :class:`Marionette` (length-prefixed JSON, a few commands). :func:`open_browser` takes
  ``"chromium"`` or ``"firefox"``, so a test can be parametrised over :data:`BROWSERS`.
- :func:`http_login` logs in with httpx, for checks of status codes and bytes.
"""

from __future__ import annotations

import base64
import contextlib
import json
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
FIREFOX = Path(os.environ.get("BODYCAM_FIREFOX", "/usr/bin/firefox-esr"))
BROWSERS = ("chromium", "firefox")
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


def need_firefox() -> None:
    """Skip, saying so, where Debian's firefox-esr is not installed (``scripts/bootstrap``
    installs it, so CI runs these tests)."""
    if not os.access(FIREFOX, os.X_OK):
        pytest.skip(f"{FIREFOX} not installed (apt-get install firefox-esr)")


def need_browser(kind: str) -> None:
    {"chromium": need_chromium, "firefox": need_firefox}[kind]()


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
    from archive.retention import STORE_MARK

    mark = into / "shift" / world.shift.store.relative_to(world.shift.root) / STORE_MARK
    if mark.is_file():  # the store says which archive folder keeps it: the copy's
        was, now = str(world.archive.resolve()), str((into / "archive").resolve())
        mark.write_text(mark.read_text().replace(f'"{was}"', f'"{now}"'))
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


def _wait_event_script(target: str, event: str, action: str, timeout: float) -> str:
    """An async script: run ``action``, answer once ``event`` fires on ``target``."""
    return (
        "var done = arguments[arguments.length - 1];"
        f"var el = {target};"
        f"var timer = setTimeout(function () {{ done({{timeout: true}}); }}, {timeout * 1000});"
        f"el.addEventListener('{event}', function () {{ clearTimeout(timer);"
        " done({timeout: false, t: el.currentTime}); }, {once: true});"
        f"{action}"
    )


class Browser:
    """A fresh headless Chromium driven by chromedriver (Selenium)."""

    def __init__(self, base: str, *, name: str = "chromium") -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        need_chromium()
        self.name = name
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
        self.get("/login")
        self.type("form.login [name=name]", name)
        self.type("form.login [name=password]", password)
        self.click("form.login button[type=submit]")
        self.wait_js("return !location.pathname.startsWith('/login')", what="the login")

    def type(self, css: str, text: str) -> None:
        """Type ``text`` into the element that CSS ``css`` matches, as a person's keys."""
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).send_keys(text)

    def click(self, css: str) -> None:
        """Click the element that CSS ``css`` matches, as a person's mouse."""
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def js_async(self, script: str, *args: Any) -> Any:
        """Run ``script``; its answer is what it passes to ``arguments[arguments.length - 1]``."""
        return self.driver.execute_async_script(script, *args)

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
        got = self.driver.execute_async_script(_wait_event_script(target, event, action, timeout))
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


FIREFOX_PREFS = {
    "media.autoplay.default": 0,  # allowed, with sound: the player starts by itself
    "media.autoplay.blocking_policy": 0,
    "media.autoplay.block-webaudio": False,
    "media.cubeb.force_mock_context": True,  # no sound device here: a mock one that runs
    "media.ffmpeg.enabled": True,  # H.264 and AAC through the system's libavcodec
    "media.mediasource.enabled": True,
    "devtools.console.stdout.content": True,  # the page's console into the log file
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage_override.mstone": "ignore",
    "app.update.disabledForTesting": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/remote-settings",  # offline: no one
    "extensions.update.enabled": False,
    "marionette.port": 0,  # any free port, written to the profile's MarionetteActivePort
}
"""Prefs of a test profile: offline (nothing fetched at start) and sound allowed."""

W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class MarionetteError(AssertionError):
    """A command Firefox answered with an error (its WebDriver error and message)."""


class Marionette:
    """A client of Firefox's Marionette protocol over its loopback socket: each message is
    ``LENGTH:JSON``; a command is ``[0, id, name, params]``, its answer ``[1, id, error,
    result]``. The commands are WebDriver's (``WebDriver:Navigate``, ...), as geckodriver
    would send them. One command at a time (the caller's thread)."""

    def __init__(self, port: int, timeout: float = 180) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buf = b""
        self._id = 0
        hello = self._receive()
        if hello.get("marionetteProtocol") != 3:
            raise MarionetteError(f"not Marionette protocol 3: {hello}")

    def _receive(self) -> Any:
        while b":" not in self._buf:
            self._read()
        length, _, rest = self._buf.partition(b":")
        self._buf = rest
        while len(self._buf) < int(length):
            self._read()
        message, self._buf = self._buf[: int(length)], self._buf[int(length) :]
        return json.loads(message)

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise MarionetteError("Firefox closed the Marionette connection")
        self._buf += chunk

    def command(self, name: str, **params: Any) -> Any:
        self._id += 1
        data = json.dumps([0, self._id, name, params]).encode()
        self.sock.sendall(b"%d:%s" % (len(data), data))
        while True:
            kind, msg_id, error, result = self._receive()
            if kind == 1 and msg_id == self._id:
                break
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result.get("value") if isinstance(result, dict) else result

    def close(self) -> None:
        self.sock.close()


class Firefox:
    """A fresh headless Firefox ESR (its own profile folder, :data:`FIREFOX_PREFS`) driven
    through Marionette: the interface of :class:`Browser` (``get``, ``login``, ``type``,
    ``click``, ``js``, ``wait_js``, ``wait_event``, ``shot``)."""

    def __init__(self, base: str, *, name: str = "firefox") -> None:
        need_firefox()
        self.name = name
        self.base = base
        self.profile = Path(tempfile.mkdtemp(prefix="firefox-profile-"))
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({k!r}, {json.dumps(v)});\n" for k, v in FIREFOX_PREFS.items())
        )
        self.log = self.profile.parent / f"{self.profile.name}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [str(FIREFOX), "--headless", "--marionette", "--no-remote"]
            + ["-profile", str(self.profile)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"},
        )
        self.mn: Marionette | None = None
        try:
            self.mn = Marionette(self._port())
            self.mn.command("WebDriver:NewSession", capabilities={"acceptInsecureCerts": False})
            self.mn.command("WebDriver:SetTimeouts", script=120_000, pageLoad=120_000)
            self.mn.command("WebDriver:SetWindowRect", width=1280, height=1500)
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        """The port Marionette listens on, once it does (it writes it into the profile)."""
        written = self.profile / "MarionetteActivePort"
        deadline = time.monotonic() + 120
        while not (written.exists() and written.read_text().strip()):
            if self.proc.poll() is not None:
                raise AssertionError(f"firefox exited {self.proc.returncode}: {self.console_log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"firefox did not start Marionette: {self.console_log()}")
            time.sleep(0.05)  # a file not written yet: nothing to wait on but it
        return int(written.read_text())

    def get(self, path: str) -> None:
        self.mn.command("WebDriver:Navigate", url=self.base + path)

    def login(self, name: str, password: str = PW) -> None:
        Browser.login(self, name, password)  # type: ignore[arg-type] (the same steps)

    def _element(self, css: str) -> str:
        return self.mn.command("WebDriver:FindElement", using="css selector", value=css)[
            W3C_ELEMENT
        ]

    def type(self, css: str, text: str) -> None:
        self.mn.command("WebDriver:ElementSendKeys", id=self._element(css), text=text)

    def click(self, css: str) -> None:
        self.mn.command("WebDriver:ElementClick", id=self._element(css))

    def js(self, script: str, *args: Any) -> Any:
        return self.mn.command("WebDriver:ExecuteScript", script=script, args=list(args))

    def js_async(self, script: str, *args: Any) -> Any:
        """Run ``script``; its answer is what it passes to ``arguments[arguments.length - 1]``."""
        return self.mn.command("WebDriver:ExecuteAsyncScript", script=script, args=list(args))

    def wait_js(self, condition: str, timeout: float = 60, what: str = "the page") -> Any:
        """Wait until the JS expression ``condition`` (a statement that returns) is truthy
        (polled in the page by the page's own timer)."""
        script = (
            "var done = arguments[arguments.length - 1], until = Date.now() + arguments[0];"
            f"function check() {{ var got = (function () {{ {condition} }})();"
            " if (got) done({ok: true, got: got});"
            " else if (Date.now() > until) done({ok: false});"
            " else setTimeout(check, 50); }"
            "check();"
        )
        got = self.mn.command("WebDriver:ExecuteAsyncScript", script=script, args=[timeout * 1000])
        if not got["ok"]:
            raise AssertionError(
                f"{what}: not so after {timeout} s: {condition}\n{self.console_log()}"
            )
        return got["got"]

    def wait_event(self, target: str, event: str, action: str = "", timeout: float = 60) -> Any:
        """As :meth:`Browser.wait_event`."""
        script = _wait_event_script(target, event, action, timeout)
        got = self.mn.command("WebDriver:ExecuteAsyncScript", script=script, args=[])
        assert not got["timeout"], f"no {event} within {timeout} s\n{self.console_log()}"
        return got

    def console_log(self) -> str:
        """The tail of Firefox's output (the page's console is in it)."""
        try:
            self._log.flush()
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def shot(self, name: str) -> Path:
        path = artifacts() / f"{name}.png"
        path.write_bytes(base64.b64decode(self.mn.command("WebDriver:TakeScreenshot", full=False)))
        return path

    def close(self) -> None:
        try:
            if self.mn is not None:
                with contextlib.suppress(OSError, MarionetteError):
                    self.mn.command("Marionette:Quit")
                self.mn.close()
        finally:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> Firefox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_browser(kind: str, base: str) -> Browser | Firefox:
    """A fresh headless ``"chromium"`` or ``"firefox"`` (one of :data:`BROWSERS`)."""
    return {"chromium": Browser, "firefox": Firefox}[kind](base)
