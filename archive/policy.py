"""Who may do what to which material: the archive's one access decision.

:func:`decide` is the only place that weighs a user's role against an action and the
material's classification; every entry point (the command line, the Python API, the web
console to come) goes through :meth:`archive.service.Archive.require`, which logs and
audits each refusal. The rules, in short (docs/archive.md has the full table):

- a role has a clearance, the highest classification it may see: officer and archivist up
  to personal privacy (the officer only for material naming them), supervisor and auditor
  up to internal, the head of unit everything, the administrator nothing;
- archivists (the named staff of Art. 35) open, fill, classify and close case files, record
  a party's request and export an approved copy; the head of unit also manages cases and
  alone approves copies; the auditor reads, and alone with the head reads the audit log;
- archivists and the head place and release legal holds; the head of unit alone purges
  recordings whose retention ran out (destroying records is the head's decision);
- the supervisor and the head acknowledge a camera's alert from the web console's live
  page (the camera is told a person has seen it);
- the administrator manages users and the master key (a rotation re-wraps keys and
  decrypts no material), and never touches material.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("officer", "archivist", "supervisor", "head", "auditor", "administrator")
CLASSIFICATIONS = ("public", "internal", "business_secret", "personal_privacy", "state_secret")
_RANK = {name: i for i, name in enumerate(CLASSIFICATIONS)}
ACTIONS = (
    "view",  # read a case, its entries or a recording's reference
    "case_open",
    "case_change",  # attach, attach a document, add a note
    "case_close",
    "classify",  # change a case's classification (checked against old and new)
    "copy_request",  # record a party's request for a copy
    "approve",  # approve or refuse a copy request
    "export",  # make the approved copy
    "report",  # the deadline report (case numbers and dates only)
    "audit_read",
    "user_manage",
    "hold",  # place or release a legal hold (on a case, or a camera's time range)
    "purge",  # remove recordings whose retention ran out (archive.retention)
    "key_manage",  # rotate the master key (archive.sealing): re-wraps keys, reads nothing
    "acknowledge",  # acknowledge a camera's alert from the live page (archive.web.live)
)

CLEARANCE: dict[str, str | None] = {
    "officer": "personal_privacy",
    "archivist": "personal_privacy",
    "supervisor": "internal",
    "head": "state_secret",
    "auditor": "internal",
    "administrator": None,
}
"""The highest classification each role may see (None: no material at all)."""

MAY: dict[str, frozenset[str]] = {
    "officer": frozenset({"view"}),
    "archivist": frozenset(
        {"view", "case_open", "case_change", "case_close", "classify", "copy_request"}
        | {"export", "report", "hold"}
    ),
    "supervisor": frozenset({"view", "report", "acknowledge"}),
    "head": frozenset(
        {"view", "case_open", "case_change", "case_close", "classify", "copy_request"}
        | {"approve", "report", "audit_read", "hold", "purge", "acknowledge"}
    ),
    "auditor": frozenset({"view", "report", "audit_read"}),
    "administrator": frozenset({"user_manage", "key_manage"}),
}
"""The actions each role may take at all; material actions also need the clearance."""

MATERIAL_FREE = frozenset(
    {"report", "audit_read", "user_manage", "purge", "key_manage", "acknowledge"}
)
"""Actions on no particular material (the classification does not enter): a purge
removes only recordings in no case, which count as internal, below every clearance that
may purge."""

_NAMES = {
    "officer": "an officer",
    "archivist": "an archivist",
    "supervisor": "a supervisor",
    "head": "the head of unit",
    "auditor": "an auditor",
    "administrator": "an administrator",
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a user's name, role and (for an officer) badge number."""

    name: str
    role: str
    officer: str = ""


@dataclass(frozen=True)
class Material:
    """What is acted on: its classification, and the officers it names (their own)."""

    classification: str = "public"
    officers: frozenset[str] = field(default_factory=frozenset)
    label: str = ""  # for the refusal message: "case 2026-0001"
    approved: bool = False  # for an export: the head of unit approved this copy request


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # why not, in one sentence (empty when allowed)


def decide(actor: Actor, action: str, material: Material | None = None) -> Decision:
    """May ``actor`` take ``action`` on ``material``? The one access decision."""
    if actor.role not in ROLES:
        return Decision(False, f"{actor.name} has no known role ({actor.role!r})")
    if action not in ACTIONS:
        return Decision(False, f"{action!r} is not an action the archive knows")
    who = f"{actor.name} ({_NAMES[actor.role]})"
    if action not in MAY[actor.role]:
        return Decision(False, f"{who} may not {action.replace('_', ' ')}")
    if action in MATERIAL_FREE:
        return Decision(True, "")
    material = material or Material()
    if material.classification not in _RANK:
        return Decision(False, f"unknown classification {material.classification!r}")
    what = material.label or "this material"
    clearance = CLEARANCE[actor.role]
    if clearance is None or _RANK[material.classification] > _RANK[clearance]:
        top = "no material" if clearance is None else f"material up to {clearance}"
        return Decision(
            False,
            f"{who} may see {top}; {what} is classified {material.classification}",
        )
    if actor.role == "officer" and (not actor.officer or actor.officer not in material.officers):
        return Decision(
            False, f"{who} may see only their own recordings; {what} does not name them"
        )
    if action == "export" and not material.approved:
        return Decision(False, f"{what} has no copy request approved by the head of unit")
    return Decision(True, "")


def rank(classification: str) -> int:
    """Order of classifications (public 0 ... state_secret 4); ValueError if unknown."""
    try:
        return _RANK[classification]
    except KeyError:
        raise ValueError(
            f"unknown classification {classification!r}: use one of {', '.join(CLASSIFICATIONS)}"
        ) from None
