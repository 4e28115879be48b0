"""The recordings index: the dock store's segments by officer and time.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("file", sa.String(160), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("start_utc", UTC, nullable=False),
        sa.Column("end_utc", UTC, nullable=False),
        sa.PrimaryKeyConstraint("device", "seq", name="pk_recordings"),
    )
    op.create_index("ix_recordings_officer_start_utc", "recordings", ["officer", "start_utc"])


def downgrade() -> None:
    op.drop_table("recordings")
