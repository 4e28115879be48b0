"""The archive's tables, written once for SQLite and PostgreSQL (SQLAlchemy Core).

The schema is made only by the Alembic migrations (``archive/migrations``); this module is
what the code and the migrations both read, so the two cannot drift (a test compares the
migrated database with this metadata). Times are the journals' fixed-width UTC stamps
(``evidence.clock.format_utc``), so they sort as text on both backends. Media never enters
the database: a recording is a reference into the dock store by device, seq and SHA-256.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

UTC = sa.String(27)  # 2026-11-27T04:57:58.123456Z

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
"""The archive's id and the audit log's head (``audit_head``: ``SEQ:HASH``)."""

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("officer", sa.String(64), nullable=False, default=""),  # badge, as the registry
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, PHC string
    sa.Column("totp_secret", sa.String(64), nullable=True),  # base32; None: no second factor
    sa.Column("totp_last_step", sa.BigInteger, nullable=False, default=0),  # no code twice
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_utc", UTC, nullable=False),
)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(32), nullable=False, unique=True),
    sa.Column("kind_of_act", sa.String(128), nullable=False),
    sa.Column("procedure", sa.String(64), nullable=False),
    sa.Column("classification", sa.String(24), nullable=False),
    sa.Column("parties", sa.Text, nullable=False),  # canonical JSON list of names
    sa.Column("officers", sa.Text, nullable=False),  # canonical JSON list of badges
    sa.Column("status", sa.String(8), nullable=False),  # open | closed
    sa.Column("act_end_utc", UTC, nullable=True),  # the end of the act, if given at opening
    sa.Column("opened_utc", UTC, nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),
    sa.Column("closed_utc", UTC, nullable=True),
    sa.Column("closed_by", sa.String(64), nullable=True),
    sa.Column("alerted_days", sa.Integer, nullable=False, default=0),  # 25 or 30: sent
)

entries = sa.Table(
    "case_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # recording | document | note
    sa.Column("utc", UTC, nullable=False),
    sa.Column("by_user", sa.String(64), nullable=False),
    sa.Column("after_close", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),  # required after closing
    # a recording: a reference into the dock store, never a copy
    sa.Column("device", sa.String(64), nullable=True, index=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("file", sa.String(160), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("start_utc", UTC, nullable=True),
    sa.Column("end_utc", UTC, nullable=True),
    sa.Column("act", sa.String(96), nullable=True),  # DEVICE:START_SEQ when attached by act
    # a document: hashed into the archive (documents/<sha256>)
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("encrypted", sa.Boolean, nullable=False, default=False),
    sa.Column("stored", sa.String(80), nullable=True),  # documents/<stored> if encrypted
    sa.Column("wrapped_key", sa.Text, nullable=True),  # its data key, wrapped (archive.vault)
    sa.UniqueConstraint("case_id", "device", "seq"),  # a recording once per case
)

copies = sa.Table(
    "copy_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("requester", sa.String(128), nullable=False),  # the party, as they signed
    sa.Column("kind", sa.String(8), nullable=False),  # bundle | party
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("requested_utc", UTC, nullable=False),
    sa.Column("recorded_by", sa.String(64), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending approved refused exported
    sa.Column("decided_utc", UTC, nullable=True),
    sa.Column("decided_by", sa.String(64), nullable=True),
    sa.Column("decision_reason", sa.Text, nullable=False, default=""),
    sa.Column("omit", sa.Text, nullable=False, default="{}"),  # {"DEVICE:SEQ": reason}
    sa.Column("exported_utc", UTC, nullable=True),
    sa.Column("exported_by", sa.String(64), nullable=True),
    sa.Column("output_sha256", sa.String(64), nullable=True),  # manifest or MP4
)
"""A party's request for a copy (Art. 36): recorded, then the head approves (naming what
is withheld and why) or refuses; only an approved request can be exported, once."""

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("unit", sa.String(64), nullable=False),
    sa.Column("officer", sa.String(64), nullable=False),
    sa.Column("file", sa.String(160), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("start_utc", UTC, nullable=False),
    sa.Column("end_utc", UTC, nullable=False),
    sa.Index("ix_recordings_officer_start_utc", "officer", "start_utc"),
)
"""The dock store's segments, indexed for listing (``bodycam-archive sync``): derived data,
rebuilt from the store's signed journals at will; the media stay in the store."""

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),  # range | case
    sa.Column("device", sa.String(64), nullable=True, index=True),  # a range's camera
    sa.Column("from_utc", UTC, nullable=True),
    sa.Column("to_utc", UTC, nullable=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("placed_utc", UTC, nullable=False),
    sa.Column("placed_by", sa.String(64), nullable=False),
    sa.Column("released_utc", UTC, nullable=True),  # None: the hold stands
    sa.Column("released_by", sa.String(64), nullable=True),
    sa.Column("release_reason", sa.Text, nullable=False, default=""),
)
"""Legal holds (``bodycam-archive hold``): a camera's recordings over a time range, or a
case's, kept whatever their retention until the hold is released (both audited)."""

removals = sa.Table(
    "removals",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("file", sa.String(160), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("end_utc", UTC, nullable=False),
    sa.Column("kept_until_utc", UTC, nullable=False),
    sa.Column("removed_utc", UTC, nullable=False),
    sa.Column("by_user", sa.String(64), nullable=False),
    sa.Column("audit_seq", sa.BigInteger, nullable=False),  # the decision's audit entry
    sa.Column("dock_seq", sa.BigInteger, nullable=False),  # the dock journal's `removed`
)
"""Recordings removed from the store under retention (``bodycam-archive retention
purge``): what was decided, by whom, and where the audit log and dock journal say so."""

device_events = sa.Table(
    "device_events",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("unit", sa.String(64), nullable=False),
    sa.Column("officer", sa.String(64), nullable=False),
    sa.Column("utc", UTC, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON of the record's body
    sa.Index("ix_device_events_officer_utc", "officer", "utc"),
)
"""What else the cameras journaled of an officer's day (recordings started and stopped,
key moments, stoppages and resumptions, photos, dockings, announcements), indexed by
``bodycam-archive sync`` beside the segments for the console's timeline: derived data."""

recording_checks = sa.Table(
    "recording_checks",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("signature", sa.String(12), nullable=False),  # ok | bad | no_key | key_invalid
    sa.Column("chain", sa.String(12), nullable=False),  # ok | broken
    sa.Column("stored", sa.String(12), nullable=False),  # ok | differs | absent | sealed | removed
    sa.Column("dock", sa.String(64), nullable=False),  # the dock that recorded storing it
    sa.Column("checked_utc", UTC, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # why, for what is not ok
    sa.Column("media", sa.String(12), nullable=True),  # ok | changed | missing | sealed
    sa.Column("media_checked_utc", UTC, nullable=True),
    sa.Column("media_checked_by", sa.String(64), nullable=True),
)
"""What the archive checked of each indexed segment (the console's verification badge):
at ``sync``, the camera's Ed25519 signature of its segment record under the registry's
key for the camera, the record's link to the one before it (the chain), and that a dock's
journal records storing the file with the signed size and SHA-256; when a user asks, the
file re-hashed against that SHA-256 (``media``)."""
