"""Indexer: mirrors the ledger's on-chain entries into SQL (SQLite embedded, PostgreSQL in production).

``Indexer`` backfills from the deployment block and follows new heads, undoing reorganisations within its
window; ``reconcile`` compares the mirror with the chain at the mirror's block; ``queries`` answer
time-aware questions (live balance, points expiring by a date) from the derived tables.
"""

from ._db import Lease, make_engine, migrate, scratch_schema
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
from ._queries import EpochHolding, MirrorView
from ._reconcile import Difference, reconcile
from ._schema import (
    AccountEpoch,
    Base,
    Block,
    Cursor,
    LedgerEntry,
    LedgerState,
    Partner,
    PartnerPeriod,
    SupplyPoint,
    Tier,
)
from ._store import BlockRow, CursorState, IncompleteLogs, LedgerParams, Store, TierPolicy

__all__ = [
    "ENTRY_EVENTS",
    "AccountEpoch",
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
    "PartnerPeriod",
    "Progress",
    "ReorgTooDeep",
    "Store",
    "SupplyPoint",
    "Tier",
    "TierPolicy",
    "UndecodableLog",
    "decode_logs",
    "entry_topics",
    "make_engine",
    "migrate",
    "reconcile",
    "scratch_schema",
]
