"""The sync loop: backfill in adaptive ranges, then follow new heads, detecting and undoing reorganisations.

Blocks at least ``window`` below the target (``head - confirmations``) are backfilled: raw ``eth_getLogs``
over ranges that double while answers are small and halve (or take the range the node suggests) on "too many
results", range limits, timeouts and unreadable answers. Newer blocks are followed with their headers: each
step re-reads the cursor's block and the new ones in one batch, checks that every block names the previous one
as its parent, and only then takes their logs (checking each log's block hash). When the cursor's block is no
longer on the node's chain the indexer walks back through the blocks it kept to the newest one that still
is, removes everything after it (entries, their contributions, blocks) in one transaction and goes on from
there. A reorganisation older than the kept window raises :class:`ReorgTooDeep`; nothing is changed.

Every retryable RPC failure is retried with exponential backoff, forever, at the same block: the cursor only
moves in the SQL transaction that commits the rows it covers, so a range is never skipped.

Each reorganisation undone is also handed to the callables in :data:`REORG_OBSERVERS` (the service counts
them for its metrics; the indexer knows nothing of who listens, and an observer that raises is ignored).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_hash.auto import keccak
from sqlalchemy import Connection, Engine
from web3 import Web3

from chain import RangeTooLarge, RateLimited, RetryableError, RpcError, RpcTimeout, RpcUnavailable

from ._db import Lease, migrate
from ._decode import decode_logs, entry_topics
from ._errors import IndexerError, MirrorMismatch, ReorgTooDeep
from ._source import LogSource
from ._store import BlockRow, CursorState, IncompleteLogs, LedgerParams, Store, TierPolicy
from ._timelock import timelock_rows, timelock_topics

__all__ = ["REORG_OBSERVERS", "Indexer", "IndexerConfig", "IndexerStats", "Progress"]

logger = logging.getLogger("indexer")
T = TypeVar("T")

#: Called as ``observer(ancestor_block, entries_removed)`` after each reorganisation the indexer undid (the
#: rollback committed). Registered once per process by whoever wants to count them.
REORG_OBSERVERS: list[Callable[[int, int], None]] = []


@dataclass(frozen=True, slots=True)
class IndexerConfig:
    #: Blocks behind the head the indexer stays (0 on a local node).
    confirmations: int = 0
    #: Unfinalised blocks whose hashes are kept: the deepest reorganisation that can be undone.
    window: int = 64
    #: Seconds between polls for new heads once caught up.
    poll_interval: float = 1.0
    #: First ``eth_getLogs`` range of a backfill, and its bounds as it adapts.
    initial_range: int = 2_000
    max_range: int = 100_000
    #: A range grows while answers have fewer logs than half of this.
    target_logs: int = 20_000
    #: Headers read per follow step.
    follow_blocks: int = 1_000
    #: Backoff between retries of a failing RPC call.
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    tiers: TierPolicy = field(default_factory=TierPolicy)


@dataclass
class IndexerStats:
    entries: int = 0
    batches: int = 0
    retries: int = 0
    reorgs: int = 0
    entries_removed: int = 0
    range_shrinks: int = 0


@dataclass(frozen=True, slots=True)
class Progress:
    cursor: int
    target: int
    first: int
    entries: int


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


class Indexer:
    """Mirrors one ledger contract into the database behind ``engine``; with ``timelock``, also the
    operations of that TimelockController (the ledger's admin in production) into ``admin_operations``,
    from the same ``eth_getLogs`` answers and in the same SQL transactions as the ledger's entries."""

    def __init__(
        self,
        w3: Web3,
        engine: Engine,
        address: str,
        *,
        deployment_block: int,
        config: IndexerConfig | None = None,
        lease_timeout: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_commit: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timelock: str | None = None,
    ) -> None:
        self.config = config or IndexerConfig()
        self.source = LogSource(w3)
        self.engine = engine
        self.address = address.lower()
        self.timelock = timelock.lower() if timelock else None
        self.deployment_block = deployment_block
        self.stats = IndexerStats()
        self._lease = Lease(engine, self.address, timeout=lease_timeout)
        self._conn: Connection | None = None
        self._store: Store | None = None
        self._topics = entry_topics() + (timelock_topics() if self.timelock else [])
        self._addresses: str | list[str] = [self.address, self.timelock] if self.timelock else self.address
        self._range = self.config.initial_range
        self._on_progress = on_progress
        self._on_commit = on_commit
        self._sleep = sleep
        self._checked = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Indexer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Migrates the schema, then waits for the write lease."""
        if self._conn is not None:
            return
        migrate(self.engine)
        self._conn = self._lease.acquire()
        self._store = Store(self._conn, self.address, self.config.tiers, timelock=self.timelock)

    def close(self) -> None:
        self._lease.release()
        self._conn = None
        self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self.open()
        assert self._store is not None
        return self._store

    def run(self, stop: threading.Event | None = None) -> int:
        """Backfills, then follows the chain until ``stop`` is set; returns the cursor then."""
        stop = stop or threading.Event()
        with self:
            while not stop.is_set():
                if self.step() == "idle":
                    stop.wait(self.config.poll_interval)
            return self.cursor().block_number

    def sync(self) -> int:
        """Catches up with the node's target block once; returns the cursor. Holds the lease meanwhile
        (and keeps holding it if it already did)."""
        opened = self._conn is None
        self.open()
        try:
            while self.step() != "idle":
                pass
            return self.cursor().block_number
        finally:
            if opened:
                self.close()

    # ------------------------------------------------------------------ steps

    def cursor(self) -> CursorState:
        state = self.store.cursor()
        if state is None:
            return self._initialise()
        if not self._checked:
            self._check_target(state)
            self._checked = True
        return state

    def step(self) -> str:
        """One unit of work: ``"backfill"``, ``"follow"``, ``"reorg"``, ``"retry"`` or ``"idle"``."""
        cursor = self.cursor()
        target = self._retrying(self.source.head) - self.config.confirmations
        final = target - self.config.window
        try:
            if cursor.block_number < final:
                self._backfill(cursor, final, target)
                return "backfill"
            return self._follow(cursor, target)
        except IncompleteLogs as exc:  # rolled back; read the range again
            self.stats.retries += 1
            if exc.before_batch:
                # Entries are missing below the cursor (an earlier answer was short and no state was left
                # to check it against): go back to the last entry held and read forward from there.
                back = self.store.rewind_to_last_entry(cursor.deployment_block - 1)
                logger.warning("%s; reading again from block %d", exc, back)
            else:
                logger.warning("%s; reading the range again", exc)
            self._sleep(self.config.backoff_initial)
            return "retry"

    def _initialise(self) -> CursorState:
        chain_id = self._retrying(self.source.chain_id)
        block = self.deployment_block
        at: int | str = block

        def read(signature: str) -> int:
            data = self._retrying(lambda: self.source.call(self.address, _selector(signature), at))
            if len(data) < 32:
                raise IndexerError(
                    f"no LoyaltyLedger at {self.address} in block {block} ({signature} is empty)"
                )
            return int.from_bytes(data[:32], "big")

        try:
            settlement_value = read("settlementValue()")
        except RpcError as exc:
            # A pruned node: the epoch parameters are immutable, so the latest state has them too. The
            # constructor's settlement value is in no entry: the current one stands in for it until the
            # first SettlementValueChanged entry replaces it, so if it changed since, the value of the
            # entries before that change is off (reconcile shows it in the partners' values).
            logger.warning("no state at the deployment block (%s); reading the parameters at the head", exc)
            at = "latest"
            settlement_value = read("settlementValue()")
        params = LedgerParams(
            genesis=read("genesisTimestamp()"),
            epoch_length=read("epochLength()"),
            validity=read("validityDuration()"),
        )
        min_delay = None
        if self.timelock is not None:
            timelock = self.timelock
            # None when the timelock comes after the ledger: its constructor's MinDelayChange sets it.
            answer = self._retrying(lambda: self.source.call(timelock, _selector("getMinDelay()"), at))
            min_delay = int.from_bytes(answer[:32], "big") if len(answer) >= 32 else None
        state = self.store.initialise(
            chain_id=chain_id,
            deployment_block=block,
            params=params,
            settlement_value=settlement_value,
            timelock_min_delay=min_delay,
        )
        logger.info("mirroring %s from block %d", self.address, block)
        return state

    def _check_target(self, cursor: CursorState) -> None:
        chain_id = self._retrying(self.source.chain_id)
        if cursor.chain_id != chain_id:
            raise MirrorMismatch("chain id", chain_id, cursor.chain_id)
        if cursor.deployment_block != self.deployment_block:
            raise MirrorMismatch("deployment block", self.deployment_block, cursor.deployment_block)
        if cursor.timelock != self.timelock:
            raise MirrorMismatch("timelock", self.timelock, cursor.timelock)

    def _backfill(self, cursor: CursorState, final: int, target: int) -> None:
        low = cursor.block_number + 1
        high = min(low + self._range - 1, final)
        logs, high = self._fetch_logs(low, high)
        missing = sorted(
            {int(log["blockNumber"], 16) for log in logs if "blockTimestamp" not in log} | {high}
        )
        headers = {h.number: h for h in self._retrying(lambda: self._headers(missing))}
        for log in logs:
            header = headers.get(int(log["blockNumber"], 16))
            if header is not None and bytes.fromhex(log["blockHash"][2:]) != header.hash:
                self.stats.retries += 1  # the node changed its mind between the two reads: read again
                return
        rows, timelock = self._decode(logs, {n: h.timestamp for n, h in headers.items()})
        to_block = headers[high]
        added = self.store.commit_batch(
            rows,
            params=cursor.params,
            to_block=to_block,
            blocks=(to_block,),
            keep_from=high - self.config.window,
            chain_seq=self._sequence_at(to_block),
            timelock_rows=timelock,
        )
        self._committed(added, high)
        if len(logs) < self.config.target_logs // 2:
            self._range = min(self._range * 2, self.config.max_range)
        if self._on_progress is not None:
            self._on_progress(Progress(high, target, cursor.deployment_block, self.stats.entries))

    def _headers(self, numbers: list[int]) -> list[BlockRow]:
        headers = self.source.headers(numbers)
        missing = [n for n, h in zip(numbers, headers, strict=True) if h is None]
        if missing:
            raise RpcUnavailable(f"the node has no block {missing[0]} yet")
        return [h for h in headers if h is not None]

    def _follow(self, cursor: CursorState, target: int) -> str:
        high = min(target, cursor.block_number + self.config.follow_blocks)
        # The whole window is read again (one batch): the kept blocks are then exactly the node's blocks
        # high - window .. high, whatever was kept, pruned or rolled back before.
        first = max(cursor.deployment_block - 1, 0)
        low = max(min(cursor.block_number, high - self.config.window), first)
        numbers = list(range(low, max(high, cursor.block_number) + 1))
        headers = self._retrying(lambda: self.source.headers(numbers))
        at_cursor = headers[cursor.block_number - low] if cursor.block_number >= low else None
        if cursor.block_hash is not None and (at_cursor is None or at_cursor.hash != cursor.block_hash):
            self._undo_reorg(cursor)
            return "reorg"
        chain: list[BlockRow] = []
        for header in headers:
            if header is None or (chain and header.parent_hash != chain[-1].hash):
                self.stats.retries += 1  # read mid-reorganisation or from a lagging node: read again
                return "retry"
            chain.append(header)
        if high <= cursor.block_number:
            return "idle"
        by_number = {h.number: h for h in chain}
        # The sequence at the newest block is asked before and after its logs, and the lower answer kept: a
        # node can answer an eth_call at its head with the state of the block it is mining at that moment
        # (anvil does), which only ever shows a higher sequence, and it is not mining twice in a few ms.
        before = self._sequence_at(by_number[high])
        asked = high
        logs, high = self._fetch_logs(cursor.block_number + 1, high)
        for log in logs:
            if bytes.fromhex(log["blockHash"][2:]) != by_number[int(log["blockNumber"], 16)].hash:
                self.stats.retries += 1
                return "retry"
        rows, timelock = self._decode(logs, {h.number: h.timestamp for h in chain})
        chain_seq = self._sequence_at(by_number[high])
        if high == asked and before is not None and chain_seq is not None:
            chain_seq = min(before, chain_seq)
        kept = [h for h in chain if h.number <= high]
        added = self.store.commit_batch(
            rows,
            params=cursor.params,
            to_block=by_number[high],
            blocks=kept,
            keep_from=high - self.config.window,
            chain_seq=chain_seq,
            timelock_rows=timelock,
        )
        self._committed(added, high)
        return "follow"

    def _decode(
        self, logs: list[dict[str, Any]], timestamps: dict[int, int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The ledger entries' rows and the timelock's rows of one answer (which holds both when a timelock
        is mirrored: the ledger's come to the hot path untouched otherwise)."""
        if self.timelock is None:
            return decode_logs(logs, timestamps), []
        ledger = [log for log in logs if log["address"].lower() == self.address]
        timelock = [log for log in logs if log["address"].lower() == self.timelock]
        return decode_logs(ledger, timestamps), timelock_rows(timelock, timestamps)

    def _sequence_at(self, block: BlockRow) -> int | None:
        """``ledgerSequence()`` at ``block``'s number (a reorganisation in between fails the check and the
        range is read again), or ``None`` when the node no longer has that block's state (a pruned full
        node): then the contiguity of ``seq`` is the only check."""
        try:
            data = self._retrying(
                lambda: self.source.call(self.address, _selector("ledgerSequence()"), block.number)
            )
        except RpcError as exc:
            logger.debug("no state at block %d to check the sequence against: %s", block.number, exc)
            return None
        return int.from_bytes(data[:32], "big")

    def _committed(self, added: int, block: int) -> None:
        self.stats.entries += added
        self.stats.batches += 1
        if self._on_commit is not None:
            self._on_commit(block, added)

    def _undo_reorg(self, cursor: CursorState) -> None:
        kept = self.store.window()
        numbers = sorted(kept, reverse=True)
        canonical = self._retrying(lambda: self.source.headers(numbers))
        for number, header in zip(numbers, canonical, strict=True):
            if header is not None and header.hash == kept[number]:
                removed = self.store.rollback_to(header, cursor.params)
                self.stats.reorgs += 1
                self.stats.entries_removed += removed
                logger.warning(
                    "reorganisation: block %d is the newest common ancestor; removed %d entries after it",
                    number,
                    removed,
                )
                for observer in tuple(REORG_OBSERVERS):
                    try:
                        observer(number, removed)
                    except Exception:  # counting must never stop the mirror
                        logger.debug("reorganisation observer %r failed", observer, exc_info=True)
                return
        raise ReorgTooDeep(cursor.block_number, min(kept, default=cursor.block_number), self.config.window)

    # ------------------------------------------------------------------ RPC with retries

    def _backoff(self) -> Iterator[float]:
        """The delays between retries of one call: doubling from ``backoff_initial`` up to ``backoff_max``,
        without end (a range is never given up)."""
        delay = self.config.backoff_initial
        while True:
            yield delay
            delay = min(delay * 2, self.config.backoff_max)

    def _retrying(self, fn: Callable[[], T]) -> T:
        delays = self._backoff()
        while True:
            try:
                return fn()
            except RetryableError as exc:
                self.stats.retries += 1
                delay = next(delays)
                logger.warning("%s; retrying in %.2fs", exc, delay)
                self._sleep(delay)

    def _fetch_logs(self, low: int, high: int) -> tuple[list[dict[str, Any]], int]:
        """The logs of ``low..high``, or of a shorter range starting at ``low`` when the node will not answer
        the whole of it; returns them with the range's actual end."""
        delays = self._backoff()
        while True:
            try:
                return self.source.logs(self._addresses, self._topics, low, high), high
            except RangeTooLarge as exc:
                suggested = exc.suggested
                if suggested is not None and suggested[0] <= low <= suggested[1] < high:
                    high = suggested[1]
                elif high > low:
                    high = low + (high - low) // 2
                else:  # one block is too much for this node: nothing to shrink, never skip it
                    self._sleep(next(delays))
                self._shrunk(low, high, exc)
            except (RpcTimeout, RpcUnavailable) as exc:
                # A timeout or a cut-off answer is often a too-large one: shrink as well as back off.
                if high > low:
                    high = low + (high - low) // 2
                    self._shrunk(low, high, exc)
                self.stats.retries += 1
                self._sleep(next(delays))
            except RateLimited as exc:
                self.stats.retries += 1
                delay = next(delays)
                logger.warning("%s; retrying in %.2fs", exc, delay)
                self._sleep(delay)

    def _shrunk(self, low: int, high: int, why: Exception) -> None:
        self.stats.range_shrinks += 1
        self._range = max(high - low + 1, 1)
        logger.info("eth_getLogs range shrunk to %d blocks (%s)", self._range, why)
