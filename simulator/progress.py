"""What ``bodycam-sim shift`` shows while it runs: a progress bar on a terminal, log lines
elsewhere.

An 8-hour shift takes under a minute; without a bar a person sees either ~160
``segment ... signed`` lines or, with ``-q``, nothing at all. On a terminal the bar shows
simulated time and what the journal holds so far (recordings, segments, stoppages), and
log lines at WARNING (or everything with ``-v``) scroll above it. Not on a terminal (a log
file, CI) there is no bar and the per-event lines stay as they were.

The counts come from the journal itself (read-only, whole lines only), so the bar shows
what is kept, the same records the final summary counts.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from evidence.exc import EvidenceError
from evidence.record import Record

REFRESH_S = 0.1  # real seconds between two updates of the bar


def hms(seconds: float) -> str:
    """``H:MM:SS`` of a (simulated) duration."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class JournalTally:
    """Counts the records appended to a journal since it was made: recordings, segments
    (and their seconds) and stoppages. Reads only complete lines; never writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._offset = path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        self._partial = b""
        self.recordings = 0
        self.segments = 0
        self.stoppages = 0

    def poll(self) -> None:
        """Read what the recorder appended since the last poll."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                kind = Record.from_bytes(line).kind
            except (EvidenceError, ValueError):
                continue  # a torn line is the verifier's business, not the bar's
            if kind == "recording_started":
                self.recordings += 1
            elif kind == "segment":
                self.segments += 1
            elif kind == "stoppage":
                self.stoppages += 1

    def counts(self) -> str:
        return (
            f"{self.recordings} recording{'s' if self.recordings != 1 else ''}, "
            f"{self.segments} segment{'s' if self.segments != 1 else ''}, "
            f"{self.stoppages} stoppage{'s' if self.stoppages != 1 else ''}"
        )


class _ConsoleHandler(logging.Handler):
    """Log lines printed through the bar's console, so they scroll above the bar."""

    def __init__(self, console: Any, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never break the shift
            self.handleError(record)


class ShiftBar:
    """The terminal display of one shift: ``with ShiftBar(...) as bar: bar.tick(s)``.

    ``tick`` is called by the thread running the shift (each simulated second); it updates
    at most every :data:`REFRESH_S` real seconds. While the bar is up, the root logger's
    handlers print through it at ``level``; they are put back on exit."""

    def __init__(
        self, duration_s: float, journal: Path, *, level: int = logging.WARNING, stream=None
    ) -> None:
        from rich.console import Console

        self.duration_s = duration_s
        self.tally = JournalTally(journal)
        self.level = level
        self.console = Console(file=stream, stderr=stream is None)
        self._last = 0.0
        self._progress: Any = None
        self._task: Any = None
        self._saved: tuple[list[logging.Handler], int] | None = None

    def __enter__(self) -> ShiftBar:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("simulated {task.fields[sim]} / {task.fields[end]}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(
            "shift",
            total=self.duration_s,
            sim=hms(0),
            end=hms(self.duration_s),
            counts=self.tally.counts(),
        )
        root = logging.getLogger()
        formatter = root.handlers[0].formatter if root.handlers else None
        self._saved = (list(root.handlers), root.level)
        for handler in root.handlers:
            root.removeHandler(handler)
        root.addHandler(_ConsoleHandler(self.console, formatter))
        root.setLevel(self.level)
        self._progress.start()
        self._progress.refresh()  # the first snapshot, at simulated 0:00:00
        return self

    def tick(self, elapsed_s: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REFRESH_S:
            return
        self._last = now
        self.tally.poll()
        self._progress.update(
            self._task,
            completed=min(elapsed_s, self.duration_s),
            sim=hms(elapsed_s),
            counts=self.tally.counts(),
        )

    def phase(self, description: str) -> None:
        """Name what happens now (e.g. "docking") in the bar."""
        self._progress.update(self._task, description=description)
        self._progress.refresh()

    def __exit__(self, *exc: object) -> None:
        self.tally.poll()
        self._progress.update(self._task, counts=self.tally.counts())
        self._progress.refresh()
        self._progress.stop()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        if self._saved is not None:
            handlers, level = self._saved
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)


def on_terminal(stream: Any) -> bool:
    """A bar only where a person watches: a terminal that is not ``TERM=dumb``."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False
