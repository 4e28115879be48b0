"""Helpers every command's ``main`` uses: one-line errors, DEBUG=1 tracebacks, logging setup."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from .errors import UserError
from .logs import LOG_FORMAT_ENV, formatter_for


class UsageError(UserError):
    """A user mistake on the command line or in input files: one line, exit 2."""


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run ``body``; turn user-facing errors into ``prog: error: ...`` and exit 2.

    Set ``DEBUG=1`` to see the traceback instead.
    """
    try:
        return body()
    except KeyboardInterrupt:
        return 130
    except (UserError, OSError, ValueError) as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def setup_logging(verbose: bool = False) -> None:
    """Handlers are configured only here, in a command's main (never in library code).

    ``BODYCAM_LOG_FORMAT=json`` makes every command log one JSON object per line (see
    :mod:`daemonkit.logs`); ``text`` (the default) writes lines for people. Another value
    is a one-line error and exit status 2."""
    try:
        formatter = formatter_for(os.environ.get(LOG_FORMAT_ENV, ""))
    except ValueError as exc:
        print(f"{_prog()}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def _prog() -> str:
    """The command's name for an error before its parser runs (``python -m pkg``: pkg)."""
    path = sys.argv[0] if sys.argv and sys.argv[0] else "bodycam"
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if name == "__main__.py" else name
