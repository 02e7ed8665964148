"""returns, refunds and migrations: typed columns for the ledger's new entries, links, new counters

Ledger entries gain the fields of ``IssuanceReversed`` / ``PointsReversed`` (``return_ref``, ``requested``,
``recovered``), ``RedemptionRefunded`` / ``PointsRefunded`` (``refund_ref``, ``restored``),
``AccountMigrated`` (``recovery``), the batch item's and reversal's ``item_ref``, and ``original_seq`` (the
issue or redemption a reversal or refund undoes part of); ``counterparty`` is indexed where it is set (a
wallet's incoming transfers and migrations; the issues of a backfill add no key). Partners, partner
periods, the ledger state and the supply history gain the reversed and refunded counters, 0 for the rows
already there.

A mirror filled before this revision (by the interim decoder that left these fields out) lacks them in
its entries: drop it and index again from the deployment block; its derived figures would otherwise miss
every reversal and refund.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import indexer._schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Counters added to tables that may already hold rows: (table, column, type).
_COUNTERS: tuple[tuple[str, str, type[sa.types.TypeEngine[int]]], ...] = (
    ("ledger_state", "total_reversed", indexer._schema.Uint),
    ("ledger_state", "total_refunded", indexer._schema.Uint),
    ("partners", "reversed", indexer._schema.BigUint),
    ("partners", "refunded", indexer._schema.BigUint),
    ("partners", "reversed_value", indexer._schema.BigUint),
    ("partners", "refunded_value", indexer._schema.BigUint),
    ("partner_periods", "reversed", indexer._schema.Uint),
    ("partner_periods", "refunded", indexer._schema.Uint),
    ("supply_history", "total_reversed", indexer._schema.Uint),
    ("supply_history", "total_refunded", indexer._schema.Uint),
)


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("item_ref", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("return_ref", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("refund_ref", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("requested", indexer._schema.Uint(), nullable=True))
        batch_op.add_column(sa.Column("recovered", indexer._schema.Uint(), nullable=True))
        batch_op.add_column(sa.Column("restored", indexer._schema.Uint(), nullable=True))
        batch_op.add_column(sa.Column("recovery", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("original_seq", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_ledger_entries_counterparty",
            ["counterparty"],
            unique=False,
            sqlite_where=sa.text("counterparty IS NOT NULL"),
            postgresql_where=sa.text("counterparty IS NOT NULL"),
        )

    tables = sorted({table for table, _, _ in _COUNTERS})
    # The rows already there start at 0 (a server default while the columns are added, dropped after: the
    # store always writes them, as the models say).
    for table in tables:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, column, kind in _COUNTERS:
                if name == table:
                    batch_op.add_column(sa.Column(column, kind(), nullable=False, server_default="0"))
    for table in tables:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, column, kind in _COUNTERS:
                if name == table:
                    batch_op.alter_column(column, existing_type=kind(), server_default=None)


def downgrade() -> None:
    for table in sorted({table for table, _, _ in _COUNTERS}):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, column, _ in _COUNTERS:
                if name == table:
                    batch_op.drop_column(column)
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_counterparty")
        for column in (
            "original_seq",
            "recovery",
            "restored",
            "recovered",
            "requested",
            "refund_ref",
            "return_ref",
            "item_ref",
        ):
            batch_op.drop_column(column)
