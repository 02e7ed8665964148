"""service: coalition operations (coalition_operations: onboarding, allowances, the partner life cycle,
rights, settlements and the switches, sent directly or scheduled on the timelock)

See ``api/_tables.py`` for what the table holds.

Revision ID: s0003
Revises: s0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0003"
down_revision: str | None = "s0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coalition_operations",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("call_data", sa.LargeBinary(), nullable=True),
        sa.Column("tx_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("timelock_operation_id", sa.LargeBinary(length=32), nullable=True),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=True),
        sa.Column("schedule_tx_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("ready_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("failure", sa.String(length=40), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coalition_operations")),
    )
    op.create_index(
        op.f("ix_coalition_operations_partner_id"), "coalition_operations", ["partner_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_coalition_operations_partner_id"), table_name="coalition_operations")
    op.drop_table("coalition_operations")
