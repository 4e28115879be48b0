"""Helpers every command's ``main`` uses: one-line errors, DEBUG=1 tracebacks, logging setup."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from .exc import EvidenceError


class UsageError(Exception):
    """A user mistake on the command line or in input files: one line, exit 2."""


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run ``body``; turn user-facing errors into ``prog: error: ...`` and exit 2.

    Set ``DEBUG=1`` to see the traceback instead.
    """
    try:
        return body()
    except KeyboardInterrupt:
        return 130
    except (UsageError, EvidenceError, OSError, ValueError) as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def setup_logging(verbose: bool = False) -> None:
    """Handlers are configured only here, in a command's main (never in library code)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
