"""What the service runs on, built once per app and injected into every route (``Annotated`` dependencies).

:class:`Services` holds the database engine (the mirror's tables and the service's own, one database), the
ledger's address, an optional connection to the chain (live reads: the audit head, reconciliation, ERC-1271
signatures), the rate limiter, the custody of members' keys and the clock. Each is a seam a test replaces
with a real alternative (another database, a chain at a chosen time, a clock pinned to the chain's).

Every figure of the ledger is answered "as of" a :class:`AsOf`: the mirror's block (number, hash,
timestamp) and the time the live figures are computed for. That time is now, but never before the
mirror's block (a development chain whose clock was moved ahead); figures are computed for it the way
``balanceOf`` computes them in a block with that timestamp (the ledger clock that pauses stop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.orm import Session

from indexer import Block, Cursor, IndexerError, LedgerEntry, MirrorView

from ._errors import NotReady
from ._ratelimit import RateLimiter
from ._settings import Settings

if TYPE_CHECKING:
    from web3 import Web3

    from ._coalition import Coalition
    from ._custody import Custody

__all__ = ["AsOf", "Services"]

_BLOCK_TIME = select(Block.timestamp).where(Block.number == bindparam("number"))


@dataclass(frozen=True, slots=True)
class AsOf:
    """The mirror's block and the time live figures are computed for."""

    block_number: int
    block_hash: str | None
    block_timestamp: int
    time: int
    chain_id: int


@dataclass
class Services:
    settings: Settings
    engine: Engine
    #: the ledger's address; None: the one ledger the mirror holds (found on first use)
    contract: str | None = None
    #: the chain, for live reads; None: those endpoints answer 503
    w3: Web3 | None = None
    limiter: RateLimiter | None = None
    custody: Custody | None = None
    #: Unix time now (a test pins it to the chain's clock)
    clock: Callable[[], float] = time.time
    #: the keys that send or schedule coalition operations (``api/_coalition.py``); None: those routes 503
    coalition: Coalition | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _per_block: dict[tuple[str, int, bytes | None], tuple[int, tuple[tuple[int, int | None], ...]]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(
                per_key=self.settings.rate_limit_per_key,
                per_client=self.settings.rate_limit_per_client,
                redis_url=self.settings.redis_url,
            )

    # ------------------------------------------------------------------ the mirror

    def ledger_address(self, conn: Connection) -> str:
        """The mirrored ledger (the one the mirror holds unless ``contract`` names it)."""
        if self.contract is not None:
            return self.contract
        with self._lock:
            if self.contract is None:
                rows = conn.execute(select(Cursor.contract)).scalars().all()
                if len(rows) != 1:
                    raise NotReady(
                        "the mirror holds no ledger yet" if not rows else "the mirror holds several ledgers"
                    )
                self.contract = rows[0]
            return self.contract

    @contextmanager
    def mirror(self) -> Iterator[tuple[MirrorView, AsOf]]:
        """A read of the mirror in one transaction (a consistent snapshot), and what it is as of."""
        with self.engine.connect() as conn:
            # One snapshot for every statement of the read, even while the indexer commits: REPEATABLE READ
            # on PostgreSQL; on SQLite an explicit BEGIN (pysqlite opens none before a SELECT).
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            elif conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")
            try:
                view = MirrorView(conn, self.ledger_address(conn))
            except IndexerError as exc:
                raise NotReady(str(exc)) from None
            yield view, self.as_of(view)

    def as_of(self, view: MirrorView) -> AsOf:
        """What ``view`` is as of. What depends only on the mirrored block (its timestamp, the pauses) is
        kept per block (number and hash: a reorganisation changes the hash) and handed to later views."""
        cursor = view.cursor
        key = (cursor.contract, cursor.block_number, cursor.block_hash)
        known = self._per_block.get(key)
        if known is None:
            known = (self._block_timestamp(view), view.pauses())
            if len(self._per_block) >= 64:
                self._per_block.clear()
            self._per_block[key] = known
        block_timestamp, pauses = known
        view.use_pauses(pauses)
        return AsOf(
            block_number=cursor.block_number,
            block_hash=None if cursor.block_hash is None else "0x" + cursor.block_hash.hex(),
            block_timestamp=block_timestamp,
            time=max(int(self.clock()), block_timestamp),
            chain_id=cursor.chain_id,
        )

    def _block_timestamp(self, view: MirrorView) -> int:
        cursor = view.cursor
        timestamp = view.conn.execute(_BLOCK_TIME, {"number": cursor.block_number}).scalar()
        if timestamp is None:  # the window keeps recent blocks only: the newest entry's time then
            timestamp = view.conn.execute(
                select(LedgerEntry.block_timestamp).order_by(LedgerEntry.seq.desc()).limit(1)
            ).scalar()
        return int(timestamp or view.params.genesis)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session on the service's tables, committed when the block ends without an error."""
        with Session(self.engine) as session, session.begin():
            yield session

    def now(self) -> int:
        return int(self.clock())

    def require_chain(self) -> Web3:
        if self.w3 is None:
            raise NotReady("the service has no connection to the chain (LOYALTY_RPC_URL)")
        return self.w3
