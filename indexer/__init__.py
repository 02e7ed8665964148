"""Indexer: mirrors the ledger's on-chain entries into SQL (SQLite embedded, PostgreSQL in production).

``Indexer`` backfills from the deployment block and follows new heads, undoing reorganisations within its
window (and, given the ledger's timelock, the timelock's scheduled and executed operations);
``reconcile`` compares the mirror with the chain at the mirror's block; ``MirrorView`` answers time-aware
questions (live balance, points expiring by a date, on the ledger's pause-stopped clock), positions,
settlements, a wallet's history with its returns and refunds, role holders and admin operations from the
derived tables.
"""

from ._db import MIRROR_BRANCH, Lease, make_engine, migrate, register_migrations, scratch_schema
from ._decode import ENTRY_EVENTS, decode_logs, entry_topics
from ._errors import (
    BlockNotMirrored,
    IndexerError,
    LeaseTimeout,
    MirrorMismatch,
    ReorgTooDeep,
    UndecodableLog,
)
from ._indexer import Indexer, IndexerConfig, IndexerStats, Progress
from ._queries import EpochHolding, MirrorView, WalletEntry
from ._reconcile import Difference, reconcile
from ._schema import (
    AccountEpoch,
    AdminOperation,
    Base,
    Block,
    Cursor,
    LedgerEntry,
    LedgerState,
    Partner,
    PartnerChange,
    PartnerPeriod,
    PartnerStatus,
    PauseInterval,
    RoleHolder,
    Settlement,
    SupplyPoint,
    Tier,
    TimelockEvent,
)
from ._store import BlockRow, CursorState, IncompleteLogs, LedgerParams, PauseState, Store, TierPolicy
from ._timelock import TIMELOCK_EVENTS, timelock_topics

__all__ = [
    "ENTRY_EVENTS",
    "MIRROR_BRANCH",
    "TIMELOCK_EVENTS",
    "AccountEpoch",
    "AdminOperation",
    "Base",
    "Block",
    "BlockNotMirrored",
    "BlockRow",
    "Cursor",
    "CursorState",
    "Difference",
    "EpochHolding",
    "IncompleteLogs",
    "Indexer",
    "IndexerConfig",
    "IndexerError",
    "IndexerStats",
    "Lease",
    "LeaseTimeout",
    "LedgerEntry",
    "LedgerParams",
    "LedgerState",
    "MirrorMismatch",
    "MirrorView",
    "Partner",
    "PartnerChange",
    "PartnerPeriod",
    "PartnerStatus",
    "PauseInterval",
    "PauseState",
    "Progress",
    "ReorgTooDeep",
    "RoleHolder",
    "Settlement",
    "Store",
    "SupplyPoint",
    "Tier",
    "TierPolicy",
    "TimelockEvent",
    "UndecodableLog",
    "WalletEntry",
    "decode_logs",
    "entry_topics",
    "make_engine",
    "migrate",
    "reconcile",
    "register_migrations",
    "scratch_schema",
    "timelock_topics",
]
