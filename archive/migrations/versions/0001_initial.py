"""The initial schema: meta, users, cases, case entries.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_utc", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("kind_of_act", sa.String(128), nullable=False),
        sa.Column("procedure", sa.String(64), nullable=False),
        sa.Column("classification", sa.String(24), nullable=False),
        sa.Column("parties", sa.Text, nullable=False),
        sa.Column("officers", sa.Text, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("act_end_utc", UTC, nullable=True),
        sa.Column("opened_utc", UTC, nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("closed_utc", UTC, nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("alerted_days", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.UniqueConstraint("number", name="uq_cases_number"),
    )
    op.create_table(
        "case_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("utc", UTC, nullable=False),
        sa.Column("by_user", sa.String(64), nullable=False),
        sa.Column("after_close", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("file", sa.String(160), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("start_utc", UTC, nullable=True),
        sa.Column("end_utc", UTC, nullable=True),
        sa.Column("act", sa.String(96), nullable=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("encrypted", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_entries"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_entries_case_id"),
        sa.UniqueConstraint("case_id", "device", "seq", name="uq_case_entries_case_id_device_seq"),
    )
    op.create_index("ix_case_entries_case_id", "case_entries", ["case_id"])
    op.create_index("ix_case_entries_device", "case_entries", ["device"])


def downgrade() -> None:
    op.drop_table("case_entries")
    op.drop_table("cases")
    op.drop_table("users")
    op.drop_table("meta")
