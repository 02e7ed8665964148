"""The mirror's tables: SQLAlchemy 2 typed models, created and changed only by the Alembic history.

Raw (what the chain said, in on-chain order)::

    cursors          one row per indexed contract: how far the mirror is, and the ledger's fixed parameters
    blocks           number, hash, parent hash, timestamp of the unfinalised window (reorg detection)
    ledger_entries   every ledger entry (an event with a ``seq``), typed argument columns, the entry hash
                     and the hash-chain head after it; keyed by ``seq``, unique on (block, log index)

Derived (a pure function of the entries; rebuilt or reversed on a reorg)::

    ledger_state     per contract: last seq, hash-chain head, totals, settlement value, transfer switch
    account_epochs   points held and earned per (account, epoch): live balance and "expiring on date X"
    partners         registry, status, remaining allowance, points issued and redeemed at it
    partner_periods  per partner and period (ledger epoch of the entry's block): points issued and redeemed
    supply_history   cumulative issued / redeemed / expired after every block that changed them
    tiers            rolling qualifying points and tier per account, as of the cursor's block

Points and other uint256 values are exact: ``NUMERIC(78, 0)`` on PostgreSQL; on SQLite a 64-bit
``INTEGER`` (a value that does not fit raises ``OverflowError`` instead of losing precision).
Addresses are stored as lower-case ``0x`` hex, hashes as 32 raw bytes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Dialect,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

__all__ = [
    "AccountEpoch",
    "Base",
    "Block",
    "Cursor",
    "LedgerEntry",
    "LedgerState",
    "Partner",
    "PartnerPeriod",
    "SupplyPoint",
    "Tier",
    "Uint",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Uint(TypeDecorator[int]):
    """An exact unsigned integer: ``NUMERIC(78, 0)`` on PostgreSQL, ``INTEGER`` on SQLite; a Python int."""

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))
        return dialect.type_descriptor(BigInteger())

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value) if isinstance(value, Decimal) else value


class BigUint(TypeDecorator[int]):
    """A uint256 that is compared but never summed (allowances, settlement values): ``NUMERIC(78, 0)`` on
    PostgreSQL, decimal text on SQLite (whose integers stop at 2^63)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


Hash = LargeBinary(32)
Address = String(42)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --------------------------------------------------------------------------- raw


class Cursor(Base):
    """How far the mirror of one contract is: every entry up to ``block_number`` is in, nothing after it."""

    __tablename__ = "cursors"

    contract: Mapped[str] = mapped_column(Address, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    deployment_block: Mapped[int] = mapped_column(BigInteger)
    #: The last block whose entries are all committed (``deployment_block - 1`` before the first batch).
    block_number: Mapped[int] = mapped_column(BigInteger)
    #: Its hash, when known (the parent every next block must name).
    block_hash: Mapped[bytes | None] = mapped_column(Hash)
    genesis_timestamp: Mapped[int] = mapped_column(BigInteger)
    epoch_length: Mapped[int] = mapped_column(BigInteger)
    validity_epochs: Mapped[int] = mapped_column(Integer)


class Block(Base):
    """A block of the unfinalised window, as the indexer saw it."""

    __tablename__ = "blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(Hash, unique=True)
    parent_hash: Mapped[bytes] = mapped_column(Hash)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    """One ledger entry (an event with a ``seq``), in on-chain order. Which argument columns are filled
    depends on ``event``; a batch item carries its header's partner, epoch, reference, reason and rule."""

    __tablename__ = "ledger_entries"
    # (block, log index) is the on-chain order and, within one chain, a log's identity; it also serves the
    # block range scans of a reorganisation. ``seq`` is the replay key: an entry is never inserted twice.
    __table_args__ = (UniqueConstraint("block_number", "log_index"),)

    #: SQLite: ``INTEGER PRIMARY KEY`` (the rowid itself, no second index to maintain).
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[bytes] = mapped_column(Hash)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[bytes] = mapped_column(Hash)
    tx_index: Mapped[int] = mapped_column(Integer)
    log_index: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    partner_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    #: recipient (issue, batch item), customer (redeem), holder (expire), sender (transfer), operator
    account: Mapped[str | None] = mapped_column(Address, index=True)
    #: recipient of a transfer, settlement address of a registration
    counterparty: Mapped[str | None] = mapped_column(Address)
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(Uint)
    ref: Mapped[bytes | None] = mapped_column(Hash)
    reason: Mapped[int | None] = mapped_column(Integer)
    rule_hash: Mapped[bytes | None] = mapped_column(Hash)
    nonce: Mapped[int | None] = mapped_column(BigUint)
    #: batch header: number of items; batch item: the header's seq
    batch_count: Mapped[int | None] = mapped_column(BigInteger)
    batch_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: new allowance / settlement value; the value it replaced
    value: Mapped[int | None] = mapped_column(BigUint)
    previous_value: Mapped[int | None] = mapped_column(BigUint)
    #: partner status (``active``), transfer switch (``enabled``), registration rights
    active: Mapped[bool | None] = mapped_column(Boolean)
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    can_issue: Mapped[bool | None] = mapped_column(Boolean)
    can_accept: Mapped[bool | None] = mapped_column(Boolean)
    entry_hash: Mapped[bytes] = mapped_column(Hash)
    #: the hash-chain head after this entry: ``keccak(head_before ‖ entry_hash)``
    head: Mapped[bytes] = mapped_column(Hash)


# --------------------------------------------------------------------------- derived


class LedgerState(Base):
    """The ledger as a whole, rebuilt from the entries."""

    __tablename__ = "ledger_state"

    contract: Mapped[str] = mapped_column(Address, ForeignKey("cursors.contract"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    head: Mapped[bytes] = mapped_column(Hash)
    total_issued: Mapped[int] = mapped_column(Uint)
    total_redeemed: Mapped[int] = mapped_column(Uint)
    total_expired: Mapped[int] = mapped_column(Uint)
    settlement_value: Mapped[int] = mapped_column(BigUint)
    transfers_enabled: Mapped[bool] = mapped_column(Boolean)
    #: the epoch the ``tiers`` rows are computed for
    tiers_as_of: Mapped[int | None] = mapped_column(BigInteger)


class AccountEpoch(Base):
    """Points ``account`` holds of ``epoch`` (expired ones until swept) and the points it earned in it."""

    __tablename__ = "account_epochs"

    account: Mapped[str] = mapped_column(Address, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    held: Mapped[int] = mapped_column(Uint)
    earned: Mapped[int] = mapped_column(Uint)


class Partner(Base):
    __tablename__ = "partners"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operator: Mapped[str] = mapped_column(Address)
    settlement: Mapped[str] = mapped_column(Address)
    can_issue: Mapped[bool] = mapped_column(Boolean)
    can_accept: Mapped[bool] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean)
    #: remaining issuance allowance
    allowance: Mapped[int] = mapped_column(Uint)
    issued: Mapped[int] = mapped_column(Uint)
    redeemed: Mapped[int] = mapped_column(Uint)
    registered_seq: Mapped[int] = mapped_column(BigInteger)


class PartnerPeriod(Base):
    """Settlement figures of one partner in one period (the ledger epoch in which the entries were mined)."""

    __tablename__ = "partner_periods"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    issued: Mapped[int] = mapped_column(Uint)
    redeemed: Mapped[int] = mapped_column(Uint)


class SupplyPoint(Base):
    """Cumulative totals after ``block_number`` (one row per block that changed them)."""

    __tablename__ = "supply_history"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    total_issued: Mapped[int] = mapped_column(Uint)
    total_redeemed: Mapped[int] = mapped_column(Uint)
    total_expired: Mapped[int] = mapped_column(Uint)


class Tier(Base):
    """An account's qualifying points (earned in the last ``qualifying_epochs`` epochs up to ``as_of_epoch``)
    and the tier they reach under the thresholds in Settings."""

    __tablename__ = "tiers"

    account: Mapped[str] = mapped_column(Address, primary_key=True)
    qualifying_points: Mapped[int] = mapped_column(Uint)
    tier: Mapped[str] = mapped_column(String(32))
    as_of_epoch: Mapped[int] = mapped_column(BigInteger)
