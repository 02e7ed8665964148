"""service: the write path (rule sets and their activations, order reference keys, the operations outbox,
issuance batches, idempotency keys, rewards, redemption codes)

See ``api/_tables.py`` for what each table holds.

Revision ID: s0002
Revises: s0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0002"
down_revision: str | None = "s0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.String(length=42), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("rule_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("failure", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index("ix_batches_open", "batches", ["partner_id", "state"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_headers", sa.Text(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False)
    op.create_table(
        "operations",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("natural_key", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("member_address", sa.String(length=42), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("original_points", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("rule_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("ref", sa.LargeBinary(length=32), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("release_at", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("batch_index", sa.Integer(), nullable=True),
        sa.Column("tx_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("failure", sa.String(length=40), nullable=True),
        sa.Column("failure_detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint(
            "partner_id", "kind", "natural_key", name=op.f("uq_operations_partner_id_kind_natural_key")
        ),
    )
    op.create_index("ix_operations_batch", "operations", ["batch_id", "batch_index"], unique=False)
    op.create_index("ix_operations_due", "operations", ["state", "release_at"], unique=False)
    op.create_index(
        "ix_operations_member", "operations", ["partner_id", "member_address", "created_at"], unique=False
    )
    op.create_index(op.f("ix_operations_parent_id"), "operations", ["parent_id"], unique=False)
    op.create_table(
        "order_ref_keys",
        sa.Column("partner_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("partner_id", name=op.f("pk_order_ref_keys")),
    )
    op.create_table(
        "redemption_codes",
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("max_points", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("operation_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_redemption_codes")),
    )
    op.create_index(op.f("ix_redemption_codes_member_id"), "redemption_codes", ["member_id"], unique=False)
    op.create_table(
        "rewards",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("points_price", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", sa.BigInteger(), nullable=True),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_index(op.f("ix_rewards_partner_id"), "rewards", ["partner_id"], unique=False)
    op.create_table(
        "rule_activations",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("rule_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("activated_at", sa.BigInteger(), nullable=False),
        sa.Column("activated_by", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_activations")),
    )
    op.create_index(
        "ix_rule_activations_latest", "rule_activations", ["partner_id", "activated_at"], unique=False
    )
    op.create_table(
        "rule_sets",
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_rule_sets")),
        sa.UniqueConstraint("partner_id", "version", name=op.f("uq_rule_sets_partner_id_version")),
    )
    op.create_index(op.f("ix_rule_sets_partner_id"), "rule_sets", ["partner_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rule_sets_partner_id"), table_name="rule_sets")
    op.drop_table("rule_sets")
    op.drop_index("ix_rule_activations_latest", table_name="rule_activations")
    op.drop_table("rule_activations")
    op.drop_index(op.f("ix_rewards_partner_id"), table_name="rewards")
    op.drop_table("rewards")
    op.drop_index(op.f("ix_redemption_codes_member_id"), table_name="redemption_codes")
    op.drop_table("redemption_codes")
    op.drop_table("order_ref_keys")
    op.drop_index(op.f("ix_operations_parent_id"), table_name="operations")
    op.drop_index("ix_operations_member", table_name="operations")
    op.drop_index("ix_operations_due", table_name="operations")
    op.drop_index("ix_operations_batch", table_name="operations")
    op.drop_table("operations")
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_batches_open", table_name="batches")
    op.drop_table("batches")
