"""The console's timeline: the cameras' other records of a day, and what was checked of
each segment (its verification badge).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "device_events",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("utc", UTC, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("device", "seq", name="pk_device_events"),
    )
    op.create_index("ix_device_events_officer_utc", "device_events", ["officer", "utc"])
    op.create_table(
        "recording_checks",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(12), nullable=False),
        sa.Column("chain", sa.String(12), nullable=False),
        sa.Column("stored", sa.String(12), nullable=False),
        sa.Column("dock", sa.String(64), nullable=False),
        sa.Column("checked_utc", UTC, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("media", sa.String(12), nullable=True),
        sa.Column("media_checked_utc", UTC, nullable=True),
        sa.Column("media_checked_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("device", "seq", name="pk_recording_checks"),
    )


def downgrade() -> None:
    op.drop_table("recording_checks")
    op.drop_index("ix_device_events_officer_utc", "device_events")
    op.drop_table("device_events")
