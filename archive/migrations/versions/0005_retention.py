"""Retention: legal holds, and the recordings removed under retention.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("from_utc", UTC, nullable=True),
        sa.Column("to_utc", UTC, nullable=True),
        sa.Column("case_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed_utc", UTC, nullable=False),
        sa.Column("placed_by", sa.String(64), nullable=False),
        sa.Column("released_utc", UTC, nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
        sa.Column("release_reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_holds_case_id"),
    )
    op.create_index("ix_holds_device", "holds", ["device"])
    op.create_table(
        "removals",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("file", sa.String(160), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("end_utc", UTC, nullable=False),
        sa.Column("kept_until_utc", UTC, nullable=False),
        sa.Column("removed_utc", UTC, nullable=False),
        sa.Column("by_user", sa.String(64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger, nullable=False),
        sa.Column("dock_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device", "seq", name="pk_removals"),
    )


def downgrade() -> None:
    op.drop_table("removals")
    op.drop_index("ix_holds_device", "holds")
    op.drop_table("holds")
