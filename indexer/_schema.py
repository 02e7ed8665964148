"""The mirror's tables: SQLAlchemy 2 typed models, created and changed only by the Alembic history.

Raw (what the chain said, in on-chain order)::

    cursors          one row per indexed contract: how far the mirror is, the ledger's fixed parameters and
                     the timelock mirrored with it (if any)
    blocks           number, hash, parent hash, timestamp of the unfinalised window (reorg detection)
    ledger_entries   every ledger entry (an event with a ``seq``), typed argument columns, the entry hash
                     and the hash-chain head after it; keyed by ``seq``, unique on (block, log index)
    timelock_events  the timelock's CallScheduled / CallSalt / CallExecuted / Cancelled / MinDelayChange
                     logs as the node sent them (topics and data), keyed by (block, log index)

Derived (a pure function of the raw rows; reversed or recomputed on a reorg)::

    ledger_state     per contract: last seq, hash-chain head, totals, settlement value, transfer switch,
                     the pause state (the ledger clock's offset), a pending admin handover or delay change,
                     the timelock's minimum delay
    account_epochs   points held and earned per (account, epoch): live balance and "expiring on date X"
    partners         registry (operator, settlement address, status, rights), remaining allowance, points
                     issued and redeemed at it, reversed (returns) and refunded by it, and their values,
                     what was settled with it
    partner_history  every registration, operator rotation, rights, status, settlement address and
                     allowance change, one row per entry
    partner_periods  per partner and period (ledger epoch of the entry): points issued, redeemed, reversed
                     and refunded
    settlements      one row per recorded settlement (a closed period)
    role_holders     who holds each role now
    pause_intervals  every pause: when it began and ended (open while the ledger is paused)
    admin_operations the timelock's operations, one row per call: scheduled, executed or cancelled
    supply_history   cumulative issued / redeemed / expired / reversed / refunded after every block that
                     changed them
    tiers            rolling qualifying points and tier per account, as of the cursor's block

Points summed in SQL are exact: ``NUMERIC(78, 0)`` on PostgreSQL; on SQLite a 64-bit ``INTEGER`` (a
value that does not fit raises ``OverflowError`` instead of losing precision). Figures that can pass
2^63 (allowances, partner counters, values up to 2^128, signed settlement amounts) are ``NUMERIC(78, 0)``
on PostgreSQL and decimal text on SQLite, added up in Python. Addresses are stored as lower-case ``0x``
hex, hashes as 32 raw bytes.
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

__all__ = [
    "AccountEpoch",
    "AdminOperation",
    "Base",
    "BigInt",
    "BigUint",
    "Block",
    "Cursor",
    "LedgerEntry",
    "LedgerState",
    "Partner",
    "PartnerChange",
    "PartnerPeriod",
    "PartnerStatus",
    "PauseInterval",
    "RoleHolder",
    "Settlement",
    "SupplyPoint",
    "Tier",
    "TimelockEvent",
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
    """A uint256 that is never summed in SQL (allowances, settlement values, values of partner counters):
    ``NUMERIC(78, 0)`` on PostgreSQL, decimal text on SQLite (whose integers stop at 2^63)."""

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


class BigInt(BigUint):
    """A signed int256 stored as :class:`BigUint` is (``NUMERIC(78, 0)``, decimal text on SQLite): the
    settled points and value, which move either way."""

    cache_ok = True


class PartnerStatus(IntEnum):
    """The contract's ``PartnerStatus`` (``NONE`` is a rotated-away key's tombstone, never a partner's)."""

    NONE = 0
    ACTIVE = 1
    SUSPENDED = 2
    OFFBOARDED = 3


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
    #: The TimelockController whose operations are mirrored with the ledger's entries (None: none).
    timelock: Mapped[str | None] = mapped_column(Address)


class Block(Base):
    """A block of the unfinalised window, as the indexer saw it."""

    __tablename__ = "blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(Hash, unique=True)
    parent_hash: Mapped[bytes] = mapped_column(Hash)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    """One ledger entry (an event with a ``seq``), in on-chain order. Which argument columns are filled
    depends on ``event``; a batch item carries its header's partner, epoch, reference, reason and rule.

    ================================  =====================================================================
    event                             columns
    ================================  =====================================================================
    PartnerRegistered                 partner_id, account (operator), counterparty (settlement address),
                                      can_issue, can_accept, value (allowance)
    PartnerAllowanceChanged           partner_id, previous_value, value (remaining allowance)
    PartnerStatusChanged              partner_id, status (:class:`PartnerStatus`)
    PartnerOperatorChanged            partner_id, account (new operator), counterparty (previous operator)
    PartnerRightsChanged              partner_id, can_issue, can_accept
    PartnerSettlementAddressChanged   partner_id, counterparty (settlement address)
    SettlementRecorded                partner_id, settled_points, settled_value, ref (payment reference)
    PointsIssued                      partner_id, account, epoch, amount, ref, item_ref (= ref), reason,
                                      rule_hash, value (per point)
    PointsBatchIssued                 partner_id, epoch, ref (Merkle root), reason, rule_hash, batch_count,
                                      amount (total), value (per point)
    PointsIssuedInBatch               account, amount, item_ref, batch_seq (+ the header's partner, epoch,
                                      ref, reason, rule; its value is the header's)
    PointsRedeemed                    partner_id, account (customer), epoch, amount, ref, nonce, value
    IssuanceReversed                  partner_id, account (customer), ref (issue's or batch root), item_ref,
                                      return_ref, requested, recovered, value; original_seq and epoch:
                                      the reversed issue or batch item and its epoch
    PointsReversed                    partner_id, account, epoch, amount, return_ref, batch_seq (its
                                      IssuanceReversed)
    RedemptionRefunded                partner_id, account (customer), ref (the redemption's), refund_ref,
                                      amount, restored, value; original_seq: the redemption's first part
    PointsRefunded                    partner_id, account, epoch, amount, refund_ref, batch_seq (its
                                      RedemptionRefunded)
    AccountMigrated                   account (from), counterparty (to), nonce, recovery, amount
    PointsExpired                     account, epoch, amount; batch_seq: the RedemptionRefunded whose
                                      part expired on arrival (the PointsRefunded just before it)
    PointsTransferred                 account (from), counterparty (to), epoch, amount; batch_seq: the
                                      AccountMigrated it is part of (none for a transfer)
    ConsentRevoked                    account (customer), nonce
    SettlementValueChanged            previous_value, value
    TransfersEnabledChanged           enabled
    RoleChanged                       role, account, granted, counterparty (the sender)
    AdminHandoverChanged              kind (1 handover scheduled, 2 cancelled, 3 delay change scheduled,
                                      4 cancelled), account (new admin), delay, schedule
    PauseChanged                      paused, paused_duration (before this pause / including it)
    ================================  =====================================================================

    Links: ``batch_seq`` names the header of the operation an entry is part of (a batch, a reversal, a
    refund, a migration); ``original_seq`` names the entry a reversal or refund undoes part of, so an
    issuance's returns and a redemption's refunds are found from it (:meth:`MirrorView.returns_of`).
    """

    __tablename__ = "ledger_entries"
    # (block, log index) is the on-chain order and, within one chain, a log's identity; it also serves the
    # block range scans of a reorganisation. ``seq`` is the replay key: an entry is never inserted twice.
    #: ``counterparty`` is indexed only where set (transfers, migrations, settlement addresses, ...): the
    #: issues and batch items of a backfill add no key to it.
    __table_args__ = (
        UniqueConstraint("block_number", "log_index"),
        Index(
            "ix_ledger_entries_counterparty",
            "counterparty",
            sqlite_where=text("counterparty IS NOT NULL"),
            postgresql_where=text("counterparty IS NOT NULL"),
        ),
    )

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
    #: recipient (issue, batch item), customer (redeem, revocation, reversal, refund), holder (expire),
    #: sender (transfer, migration), operator (registration, rotation), role holder, new admin
    account: Mapped[str | None] = mapped_column(Address, index=True)
    #: recipient of a transfer or migration, settlement address, previous operator, sender of a role change
    counterparty: Mapped[str | None] = mapped_column(Address)
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(Uint)
    ref: Mapped[bytes | None] = mapped_column(Hash)
    reason: Mapped[int | None] = mapped_column(Integer)
    rule_hash: Mapped[bytes | None] = mapped_column(Hash)
    nonce: Mapped[int | None] = mapped_column(BigUint)
    #: batch header: number of items; a part of an operation (batch item, reversal or refund part, a
    #: migration's move, a refund's expiry on arrival): its header's seq
    batch_count: Mapped[int | None] = mapped_column(BigInteger)
    batch_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: a batch item's (an issue's: its ref) and a reversal's item reference (the partner's order)
    item_ref: Mapped[bytes | None] = mapped_column(Hash)
    #: the partner's reference of a return (reversal and its parts) and of a refund (and its parts)
    return_ref: Mapped[bytes | None] = mapped_column(Hash)
    refund_ref: Mapped[bytes | None] = mapped_column(Hash)
    #: reversal: points asked back and points taken back (the rest was spent or expired)
    requested: Mapped[int | None] = mapped_column(Uint)
    recovered: Mapped[int | None] = mapped_column(Uint)
    #: refund: the part of ``amount`` that went back to live epochs (the rest expired on arrival)
    restored: Mapped[int | None] = mapped_column(Uint)
    #: migration: by the admin's recovery of a lost key (else both accounts' consent)
    recovery: Mapped[bool | None] = mapped_column(Boolean)
    #: reversal: the issue or batch item it reverses; refund: the first part of the redemption it refunds
    original_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: new allowance / settlement value; settlement value per point of an issue, batch, redemption,
    #: reversal or refund (the original's); the value it replaced
    value: Mapped[int | None] = mapped_column(BigUint)
    previous_value: Mapped[int | None] = mapped_column(BigUint)
    #: partner status (a :class:`PartnerStatus`)
    status: Mapped[int | None] = mapped_column(Integer)
    #: transfer switch, registration and rights changes
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    can_issue: Mapped[bool | None] = mapped_column(Boolean)
    can_accept: Mapped[bool | None] = mapped_column(Boolean)
    #: settlement record: points and value leaving the partner's open position (signed)
    settled_points: Mapped[int | None] = mapped_column(BigInt)
    settled_value: Mapped[int | None] = mapped_column(BigInt)
    #: role change: the role (bytes32) and whether it was granted (else revoked)
    role: Mapped[bytes | None] = mapped_column(Hash)
    granted: Mapped[bool | None] = mapped_column(Boolean)
    #: admin handover step: its kind, the new delay, when it takes effect
    kind: Mapped[int | None] = mapped_column(Integer)
    delay: Mapped[int | None] = mapped_column(BigInteger)
    schedule: Mapped[int | None] = mapped_column(BigInteger)
    #: pause or resume, and the seconds spent paused (before this pause, or including it)
    paused: Mapped[bool | None] = mapped_column(Boolean)
    paused_duration: Mapped[int | None] = mapped_column(BigInteger)
    entry_hash: Mapped[bytes] = mapped_column(Hash)
    #: the hash-chain head after this entry: ``keccak(head_before ‖ entry_hash)``
    head: Mapped[bytes] = mapped_column(Hash)


class TimelockEvent(Base):
    """One log of the mirrored timelock, as the node sent it (the timelock has no sequence: a log's
    identity is its block and log index). Decoded into :class:`AdminOperation` rows."""

    __tablename__ = "timelock_events"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_hash: Mapped[bytes] = mapped_column(Hash)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[bytes] = mapped_column(Hash)
    event: Mapped[str] = mapped_column(String(32))
    #: the operation's id (every event but MinDelayChange)
    operation_id: Mapped[bytes | None] = mapped_column(Hash, index=True)
    #: topics 1..n concatenated, and the data, raw
    topics: Mapped[bytes] = mapped_column(LargeBinary)
    data: Mapped[bytes] = mapped_column(LargeBinary)


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
    #: points taken back by reversals, and given back by refunds (``totalReversed``, ``totalRefunded``)
    total_reversed: Mapped[int] = mapped_column(Uint)
    total_refunded: Mapped[int] = mapped_column(Uint)
    settlement_value: Mapped[int] = mapped_column(BigUint)
    transfers_enabled: Mapped[bool] = mapped_column(Boolean)
    #: the epoch the ``tiers`` rows are computed for
    tiers_as_of: Mapped[int | None] = mapped_column(BigInteger)
    paused: Mapped[bool] = mapped_column(Boolean)
    #: seconds spent paused in the pauses that ended (the contract's ``pausedDuration()`` when not paused)
    paused_duration: Mapped[int] = mapped_column(BigInteger)
    #: when the ongoing pause began (None when not paused)
    paused_since: Mapped[int | None] = mapped_column(BigInteger)
    #: a scheduled admin handover: the new admin and the time from which it may accept
    pending_admin: Mapped[str | None] = mapped_column(Address)
    pending_admin_schedule: Mapped[int | None] = mapped_column(BigInteger)
    #: a scheduled change of the handover delay: the new delay and when it takes effect
    pending_delay: Mapped[int | None] = mapped_column(BigInteger)
    pending_delay_schedule: Mapped[int | None] = mapped_column(BigInteger)
    #: the mirrored timelock's minimum delay (None without a timelock, or before it was deployed)
    timelock_min_delay: Mapped[int | None] = mapped_column(BigUint)


class AccountEpoch(Base):
    """Points ``account`` holds of ``epoch`` (expired ones until swept) and the points it earned in it:
    issued to it in that epoch, less the returned part of those issuances (what reversals asked back, taken
    back or not). Tiers sum ``earned``; a migration moves held points, not earnings."""

    __tablename__ = "account_epochs"

    account: Mapped[str] = mapped_column(Address, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    held: Mapped[int] = mapped_column(Uint)
    earned: Mapped[int] = mapped_column(Uint)


class Partner(Base):
    """A partner as ``partner(id)`` returns it. Values are in settlement units, each entry valued at the
    settlement value in force when it happened; settled amounts are signed (positive: paid to it)."""

    __tablename__ = "partners"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operator: Mapped[str] = mapped_column(Address)
    settlement: Mapped[str] = mapped_column(Address)
    #: a :class:`PartnerStatus`
    status: Mapped[int] = mapped_column(Integer)
    can_issue: Mapped[bool] = mapped_column(Boolean)
    can_accept: Mapped[bool] = mapped_column(Boolean)
    #: remaining issuance allowance
    allowance: Mapped[int] = mapped_column(BigUint)
    issued: Mapped[int] = mapped_column(BigUint)
    redeemed: Mapped[int] = mapped_column(BigUint)
    issued_value: Mapped[int] = mapped_column(BigUint)
    redeemed_value: Mapped[int] = mapped_column(BigUint)
    #: points its reversals took back and its refunds gave back, each at its original entry's value
    reversed: Mapped[int] = mapped_column(BigUint)
    refunded: Mapped[int] = mapped_column(BigUint)
    reversed_value: Mapped[int] = mapped_column(BigUint)
    refunded_value: Mapped[int] = mapped_column(BigUint)
    settled_points: Mapped[int] = mapped_column(BigInt)
    settled_value: Mapped[int] = mapped_column(BigInt)
    registered_seq: Mapped[int] = mapped_column(BigInteger)

    @property
    def active(self) -> bool:
        return self.status == PartnerStatus.ACTIVE


class PartnerChange(Base):
    """One change of a partner's registry entry: its registration, an operator rotation, a rights, status
    or settlement address change, or an allowance change. Only the columns of that change are set."""

    __tablename__ = "partner_history"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    #: the ledger entry: PartnerRegistered, PartnerOperatorChanged, PartnerRightsChanged,
    #: PartnerStatusChanged, PartnerSettlementAddressChanged or PartnerAllowanceChanged
    event: Mapped[str] = mapped_column(String(32))
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[bytes] = mapped_column(Hash)
    operator: Mapped[str | None] = mapped_column(Address)
    previous_operator: Mapped[str | None] = mapped_column(Address)
    settlement: Mapped[str | None] = mapped_column(Address)
    status: Mapped[int | None] = mapped_column(Integer)
    can_issue: Mapped[bool | None] = mapped_column(Boolean)
    can_accept: Mapped[bool | None] = mapped_column(Boolean)
    allowance: Mapped[int | None] = mapped_column(BigUint)
    previous_allowance: Mapped[int | None] = mapped_column(BigUint)


class PartnerPeriod(Base):
    """Settlement figures of one partner in one period (the ledger epoch in which the entries happened): a
    reversal or refund counts in the period it happened in, not in its original's."""

    __tablename__ = "partner_periods"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    issued: Mapped[int] = mapped_column(Uint)
    redeemed: Mapped[int] = mapped_column(Uint)
    reversed: Mapped[int] = mapped_column(Uint)
    refunded: Mapped[int] = mapped_column(Uint)


class Settlement(Base):
    """A settlement the treasury recorded with a partner: ``points`` and ``value`` left its open position
    (positive: the coalition paid the partner; negative: the partner paid)."""

    __tablename__ = "settlements"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    points: Mapped[int] = mapped_column(BigInt)
    value: Mapped[int] = mapped_column(BigInt)
    payment_ref: Mapped[bytes] = mapped_column(Hash)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[bytes] = mapped_column(Hash)


class RoleHolder(Base):
    """``account`` holds ``role`` (bytes32; the default admin role is 32 zero bytes), granted by the
    entry ``granted_seq``."""

    __tablename__ = "role_holders"

    role: Mapped[bytes] = mapped_column(Hash, primary_key=True)
    account: Mapped[str] = mapped_column(Address, primary_key=True)
    granted_seq: Mapped[int] = mapped_column(BigInteger)
    granted_by: Mapped[str] = mapped_column(Address)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)


class PauseInterval(Base):
    """One pause of the ledger: its clock stood still from ``started_at`` to ``ended_at`` (None: still
    paused). ``paused_before``: seconds spent paused before it."""

    __tablename__ = "pause_intervals"

    started_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    started_at: Mapped[int] = mapped_column(BigInteger)
    started_block: Mapped[int] = mapped_column(BigInteger)
    paused_before: Mapped[int] = mapped_column(BigInteger)
    ended_seq: Mapped[int | None] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    ended_block: Mapped[int | None] = mapped_column(BigInteger)


class AdminOperation(Base):
    """One call of an operation of the mirrored timelock (a batch has one row per call, same id).

    ``status``: ``scheduled`` (pending; ready from ``ready_at``), ``executed`` or ``cancelled``.
    ``function``: the called function's name when the target is the ledger or the timelock itself."""

    __tablename__ = "admin_operations"

    operation_id: Mapped[bytes] = mapped_column(Hash, primary_key=True)
    call_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    timelock: Mapped[str] = mapped_column(Address)
    target: Mapped[str] = mapped_column(Address)
    value: Mapped[int] = mapped_column(BigUint)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    function: Mapped[str | None] = mapped_column(String(64))
    predecessor: Mapped[bytes] = mapped_column(Hash)
    salt: Mapped[bytes | None] = mapped_column(Hash)
    delay: Mapped[int] = mapped_column(BigUint)
    ready_at: Mapped[int] = mapped_column(BigUint)
    status: Mapped[str] = mapped_column(String(16))
    scheduled_block: Mapped[int] = mapped_column(BigInteger)
    scheduled_at: Mapped[int] = mapped_column(BigInteger)
    scheduled_tx: Mapped[bytes] = mapped_column(Hash)
    executed_block: Mapped[int | None] = mapped_column(BigInteger)
    executed_tx: Mapped[bytes | None] = mapped_column(Hash)
    cancelled_block: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_tx: Mapped[bytes | None] = mapped_column(Hash)


class SupplyPoint(Base):
    """Cumulative totals after ``block_number`` (one row per block that changed them)."""

    __tablename__ = "supply_history"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    total_issued: Mapped[int] = mapped_column(Uint)
    total_redeemed: Mapped[int] = mapped_column(Uint)
    total_expired: Mapped[int] = mapped_column(Uint)
    total_reversed: Mapped[int] = mapped_column(Uint)
    total_refunded: Mapped[int] = mapped_column(Uint)


class Tier(Base):
    """An account's qualifying points (earned in the last ``qualifying_epochs`` epochs up to ``as_of_epoch``)
    and the tier they reach under the thresholds in Settings."""

    __tablename__ = "tiers"

    account: Mapped[str] = mapped_column(Address, primary_key=True)
    qualifying_points: Mapped[int] = mapped_column(Uint)
    tier: Mapped[str] = mapped_column(String(32))
    as_of_epoch: Mapped[int] = mapped_column(BigInteger)
