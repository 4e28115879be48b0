"""Who is acting: a logged-in user, or the archive itself."""

from __future__ import annotations

from dataclasses import dataclass

from .policy import Actor


@dataclass(frozen=True)
class Session:
    """A logged-in user (what :meth:`archive.service.Archive.login` returns)."""

    actor: Actor

    @property
    def name(self) -> str:
        return self.actor.name

    @property
    def role(self) -> str:
        return self.actor.role


SYSTEM = Session(Actor("system", "system"))
"""The archive itself (init, deadline alerts): audited under this name, allowed nothing."""
