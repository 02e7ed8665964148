"""Indexer throughput and live lag on a spawned anvil, next to the indexer people usually write, in one run.

Phases, in order, on one anvil and one ledger:

1. **Produce.** A fresh admin key deploys the ledger and registers a fresh partner key (both funded by the
   node's first dev account; fresh keys give a new ledger address every run, see :meth:`_Bench.__init__`).
   With interval mining (``block_time`` s blocks of up to ``gas_limit`` gas; :mod:`chain._bench` explains
   why not automine) the partner sends ``issue_batch`` transactions of ``batch_size`` recipients drawn from
   a pool of ``recipient_pool`` random addresses, 1 to 500 points each, until at least ``events`` ledger
   entries exist (a batch is one ``PointsBatchIssued`` header plus one ``PointsIssuedInBatch`` per
   recipient). Then ``window + 2`` empty blocks are mined, so that the whole production range is older than
   the indexer's unfinalised window and goes through its backfill path (the follow path then covers only
   the empty blocks). The entries counted are the ledger's own ``ledgerSequence()`` (the partner's
   registration included), and every mirror must hold exactly that many.
2. **Backfill into SQLite and into PostgreSQL** with the real :class:`~indexer.Indexer`. ``migrate`` and the
   write lease are taken before the clock starts; the clock covers ``sync()`` only (``eth_getLogs``,
   headers, decoding, entries, every derived table, tiers, the cursor) until the mirror is at the head.
3. **Baseline**: the indexer a web3.py tutorial leads to, over whole blocks from the first production block
   holding at least ``baseline_events`` entries (all of them when ``None``): web3.py
   ``contract.events.PointsBatchIssued.get_logs`` and ``contract.events.PointsIssuedInBatch.get_logs``
   (web3's formatters and ABI decoding per log), ``w3.eth.get_block`` once per block for its timestamp,
   the entry hash and hash-chain head per event (``eth_abi.encode`` and keccak, as the contract computes
   them), one SQLAlchemy ORM ``LedgerEntry`` per event, ``session.add``, one ``commit``, into a third,
   freshly migrated SQLite file. It writes ``ledger_entries`` only (no derived tables: less work than the
   indexer does), and its rows must equal the SQLite mirror's (seq, entry hash, head, account) or the run
   fails.
4. **Live lag.** Both mirrors follow the chain at once (``Indexer.run`` in two threads, ``poll_interval``
   s between polls once idle) while a producer sends ``live_rate`` entries per second for ``live_seconds``:
   every ``live_tick`` s one ``issue_batch`` of ``live_rate * live_tick - 1`` recipients, which is
   ``live_rate * live_tick`` entries. anvil mines by ``live_block_time``: by default every second (interval
   mining: ten transactions, a hundred entries a block, as on a chain with one-second blocks); 0 is
   automine, each transaction mined in a block of its own the moment it arrives. Automine is not the
   default because anvil 1.7.1 answers an ``eth_call`` at its newest block with the state of the block it
   is mining at that moment (by number and by hash alike; the bigger the state, the longer the moment), so
   the indexer's check of ``ledgerSequence()`` at the end of each range fails about one step in three and
   the step is read again after a backoff: the lag then measures that race, not the indexer. Either way the
   wait for a block is not part of the lag: a watcher thread asks for ``eth_blockNumber`` every
   ``watch_interval`` s and records when each block number first shows as the node's head, the block's
   *mined time*, late by at most one poll plus one round trip (a few milliseconds, by which the lags are
   understated). The lag of an entry is the time from its block's mined time to the return of the mirror's
   ``commit_batch`` that covers that block (``on_commit``): committed, visible to readers. Percentiles are
   over entries.

Everything runs in this one Python process (both indexers, the producer, the watcher) on whatever cores
the machine has next to anvil and PostgreSQL: the figures include that contention.
"""

from __future__ import annotations

import math
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_hash.auto import keccak
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from web3 import HTTPProvider, Web3

from chain import Artifact, Ledger, PartnerId, Points, RetryPolicy, RevertDecoder, Rpc, Sender, load_artifact
from chain import deploy_ledger as deploy_ledger_contract
from chain._bench import (
    EPOCH_LENGTH,
    FUNDING,
    PURCHASE,
    VALIDITY,
    BenchmarkFailed,
    _check,
    _recipients,
    batch_gas,
)
from chain._devnode import fund, start_anvil
from chain._sender import PendingTransaction
from chain._signer import LocalSigner

from ._db import make_engine, migrate, scratch_schema
from ._decode import ENTRY_EVENTS
from ._indexer import Indexer, IndexerConfig
from ._schema import Cursor, LedgerEntry

__all__ = [
    "Backfill",
    "IndexerBenchConfig",
    "IndexerBenchResult",
    "LiveLag",
    "run_benchmark",
]

#: Seconds a mirror may take to reach a block before the run fails.
CATCH_UP_TIMEOUT = 120.0
#: The partner's issuance allowance: more than any run issues (at most MAX_ALLOWANCE, 2^64 - 1).
ALLOWANCE = 10**15
#: The issue's targets; the table marks each as met or missed.
TARGET_SQLITE = 20_000
TARGET_POSTGRES = 15_000
TARGET_RATIO = 10
TARGET_LAG_P95 = 1.0
#: ABI types of ``abi.encode(selector, args...)`` as the contract hashes each entry (see LoyaltyLedger.sol).
_HEADER_TYPES = [
    "bytes32",
    "uint32",
    "uint64",
    "uint256",
    "bytes32",
    "uint16",
    "bytes32",
    "uint256",
    "uint256",
    "uint256",
]
_ITEM_TYPES = ["bytes32", "address", "uint64", "uint256", "bytes32"]
_HEADER_ARGS = ("partnerId", "seq", "epoch", "ref", "reason", "ruleHash", "count", "total", "value")


@dataclass(frozen=True, slots=True)
class IndexerBenchConfig:
    """Sizes of the run; the defaults are the issue's (100,000 entries; 100 entries/s for 20 s)."""

    #: Ledger entries to produce, at least (whole batches, plus the partner's registration).
    events: int = 100_000
    batch_size: int = 500
    recipient_pool: int = 20_000
    #: Entries the baseline indexes, at least (whole blocks from the first batch); ``None``: all of them.
    #: Its rate does not depend on the range (it is per log); the full range only takes ten times longer.
    baseline_events: int | None = 20_000
    live_rate: int = 100
    live_seconds: float = 20.0
    live_tick: float = 0.1
    #: anvil's mining during the live phase: N > 0 interval mining every N seconds, 0 automine.
    live_block_time: int = 1
    #: The followers' ``IndexerConfig.poll_interval``, and the head watcher's.
    poll_interval: float = 0.1
    watch_interval: float = 0.005
    #: anvil's block gas limit, and seconds between blocks while producing.
    gas_limit: int = 1_000_000_000
    block_time: int = 1
    #: The indexers' unfinalised window (``IndexerConfig.window``).
    window: int = 64

    def __post_init__(self) -> None:
        if self.events < 2 or self.batch_size < 1:
            raise ValueError("produce at least 2 entries, in batches of at least 1 recipient")
        if round(self.live_rate * self.live_tick) < 2 or self.live_seconds < self.live_tick:
            raise ValueError("each live tick sends a batch of at least 2 entries; at least one tick")


@dataclass(frozen=True, slots=True)
class Backfill:
    """One measured catch-up: ``entries`` written in ``seconds``."""

    name: str
    entries: int
    seconds: float
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LiveLag:
    """The lag of every entry (block mined -> mirror committed) of one mirror during the live phase."""

    backend: str
    #: Seconds, sorted.
    lags: tuple[float, ...]
    blocks: int
    commits: int

    @property
    def entries(self) -> int:
        return len(self.lags)

    def percentile(self, q: float) -> float:
        return _percentile(self.lags, q)


@dataclass(frozen=True, slots=True)
class IndexerBenchResult:
    events: int
    first_block: int
    last_block: int
    production_seconds: float
    sqlite: Backfill
    postgres: Backfill
    baseline: Backfill
    live: tuple[LiveLag, ...]
    live_mode: str
    live_sent: int
    live_seconds: float
    lag_note: str = ""

    @property
    def lag_p95(self) -> float:
        """The p95 of the slower mirror."""
        return max(lag.percentile(95) for lag in self.live)

    def figures(self) -> dict[str, float | int]:
        """The last line's JSON: exactly the issue's keys."""
        return {
            "events": self.events,
            "sqlite_per_s": round(self.sqlite.per_second, 1),
            "postgres_per_s": round(self.postgres.per_second, 1),
            "baseline_per_s": round(self.baseline.per_second, 1),
            "lag_p95_s": round(self.lag_p95, 4),
        }

    def table(self) -> str:
        base = self.baseline.per_second
        lines = [
            f"{self.events:,} ledger entries in blocks {self.first_block}..{self.last_block} "
            f"(issue_batch, produced in {self.production_seconds:.1f} s)",
            "",
            f"{'backfill':<26}{'entries':>9}{'seconds':>9}{'per s':>9}{'vs baseline':>13}  how",
            "-" * 110,
        ]
        for b in (self.sqlite, self.postgres, self.baseline):
            lines.append(
                f"{b.name:<26}{b.entries:>9,}{b.seconds:>9.2f}{b.per_second:>9,.0f}"
                f"{b.per_second / base:>12.1f}x  {b.note}"
            )
        lines += [
            "",
            f"live follow: {self.live_sent:,} entries sent in {self.live_seconds:.1f} s "
            f"({self.live_sent / self.live_seconds:,.0f}/s); {self.live_mode}",
            f"{'mirror':<26}{'entries':>9}{'blocks':>8}{'commits':>9}{'p50 s':>9}{'p95 s':>9}{'max s':>9}",
            "-" * 79,
        ]
        for lag in self.live:
            lines.append(
                f"{lag.backend:<26}{lag.entries:>9,}{lag.blocks:>8}{lag.commits:>9}"
                f"{lag.percentile(50):>9.3f}{lag.percentile(95):>9.3f}{lag.percentile(100):>9.3f}"
            )
        lines += [self.lag_note, ""]
        slower = min(self.sqlite.per_second, self.postgres.per_second)
        checks = [
            (f"SQLite >= {TARGET_SQLITE:,}/s", self.sqlite.per_second >= TARGET_SQLITE),
            (f"PostgreSQL >= {TARGET_POSTGRES:,}/s", self.postgres.per_second >= TARGET_POSTGRES),
            (f"both >= {TARGET_RATIO}x baseline", slower >= TARGET_RATIO * base),
            (f"lag p95 < {TARGET_LAG_P95:g} s", self.lag_p95 < TARGET_LAG_P95),
        ]
        lines.append("targets: " + ", ".join(f"{name} [{'met' if ok else 'MISSED'}]" for name, ok in checks))
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def run_benchmark(
    root: Path,
    postgres_url: str,
    config: IndexerBenchConfig = IndexerBenchConfig(),
    *,
    progress: Callable[[str], None] | None = None,
) -> IndexerBenchResult:
    """Spawns anvil from the project ``root`` and runs every phase. PostgreSQL work happens in a fresh
    schema of ``postgres_url``'s database, dropped at the end; SQLite files in a temporary directory."""
    say = progress or (lambda _message: None)
    with (
        scratch_schema(postgres_url, prefix="bench") as pg_url,
        tempfile.TemporaryDirectory(prefix="bench-indexer-") as tmp,
        start_anvil(root, extra_args=("--gas-limit", str(config.gas_limit))) as node,
    ):
        return _Bench(node.url, Path(tmp), pg_url, config, say).run()


def _web3(url: str) -> Web3:
    """A ``Web3`` with an HTTP session of its own (one per thread that talks to the node)."""
    return Web3(HTTPProvider(url, request_kwargs={"timeout": 120}, session=requests.Session()))


class _Bench:
    """One run on one node: the ledger, its partner, the three databases."""

    def __init__(
        self, url: str, tmp: Path, pg_url: str | None, config: IndexerBenchConfig, say: Callable[[str], None]
    ) -> None:
        self.url = url
        self.config = config
        self.say = say
        self.w3 = _web3(url)
        self.artifact: Artifact = load_artifact("LoyaltyLedger")
        self.decoder = RevertDecoder([self.artifact.abi])
        self.rpc = Rpc(self.w3, decoder=self.decoder, retry=RetryPolicy(attempts=1))
        self.rng = random.Random()
        self.pool = _recipients(max(config.recipient_pool, config.batch_size))
        # Fresh keys rather than anvil's dev accounts: the dev admin at nonce 0 would deploy to the same
        # address every run, and the mirror's write lease is a PostgreSQL advisory lock keyed by the
        # contract address across the whole database, so a test or another run mirroring that address in
        # another schema would hold it.
        admin, partner = LocalSigner(Account.create()), LocalSigner(Account.create())
        for signer in (admin, partner):
            fund(self.w3, signer.address, FUNDING)
        admin_sender = Sender(self.rpc, admin, decoder=self.decoder)
        manifest = deploy_ledger_contract(
            admin_sender,
            name="Coalition Points",
            symbol="PTS",
            admin=admin.address,
            epoch_length=EPOCH_LENGTH,
            validity=VALIDITY,
            settlement_value=1,
            artifact=self.artifact,
        )
        self.address = manifest.ledger.address
        self.deployment_block = int(manifest.deployed_at.block_number)
        Ledger(self.rpc, self.address, sender=admin_sender, artifact=self.artifact).register_partner(
            PartnerId(1), partner.address, allowance=Points(ALLOWANCE)
        ).wait()
        self.sender = Sender(self.rpc, partner, decoder=self.decoder)
        self.ledger = Ledger(self.rpc, self.address, sender=self.sender, artifact=self.artifact)
        # Without ``pg_url``, a SQLite mirror only (api/audit/_bench.py: its batches and the SQLite backfill).
        self.engines = {"SQLite": make_engine(f"sqlite:///{tmp / 'mirror.db'}")}
        if pg_url is not None:
            self.engines["PostgreSQL"] = make_engine(pg_url)
        self.baseline_engine = make_engine(f"sqlite:///{tmp / 'baseline.db'}")

    def run(self) -> IndexerBenchResult:
        try:
            started = time.perf_counter()
            first, last = self.produce()
            production = time.perf_counter() - started
            self.rpc.request("anvil_mine", [hex(self.config.window + 2)])
            events = self.ledger.ledger_sequence()
            self.say(f"produced {events:,} entries in blocks {first}..{last} in {production:.1f} s")
            sqlite, postgres = (self.backfill(name, events) for name in self.engines)
            baseline = self.baseline(first, last)
            lags, sent, seconds = self.live()
        finally:
            for engine in (*self.engines.values(), self.baseline_engine):
                engine.dispose()
        return IndexerBenchResult(
            events=events,
            first_block=first,
            last_block=last,
            production_seconds=production,
            sqlite=sqlite,
            postgres=postgres,
            baseline=baseline,
            live=lags,
            live_mode=self._live_mode(),
            live_sent=sent,
            live_seconds=seconds,
            lag_note=(
                f"lag: from the block first showing as the node's head (polled every "
                f"{self.config.watch_interval * 1000:g} ms) to the return of the mirror's commit covering "
                f"it; followers poll every {self.config.poll_interval:g} s when idle"
            ),
        )

    # ------------------------------------------------------------------ 1. produce

    def produce(self) -> tuple[int, int]:
        """Batches until ``events`` entries exist; returns the first and last block holding them."""
        size = min(self.config.batch_size, self.config.events - 1)
        count = math.ceil(self.config.events / (size + 1))
        self.rpc.request("evm_setIntervalMining", [self.config.block_time])
        receipts = self.sender.wait_all([self._issue_batch(size) for _ in range(count)])
        _check(receipts, f"issue_batch of {size}")
        blocks = [r.block_number for r in receipts if not isinstance(r, Exception)]
        return min(blocks), max(blocks)

    def _issue_batch(self, size: int) -> PendingTransaction:
        recipients = self.rng.sample(self.pool, size)
        amounts = [Points(self.rng.randint(1, 500)) for _ in range(size)]
        return self.ledger.issue_batch(
            recipients, amounts, [secrets.token_bytes(32) for _ in range(size)], PURCHASE, gas=batch_gas(size)
        )

    # ------------------------------------------------------------------ 2. backfill with the indexer

    def _indexer(self, name: str, on_commit: Callable[[int, int], None] | None = None) -> Indexer:
        indexer = Indexer(
            _web3(self.url),
            self.engines[name],
            self.address,
            deployment_block=self.deployment_block,
            config=IndexerConfig(window=self.config.window, poll_interval=self.config.poll_interval),
            lease_timeout=30.0,
            on_commit=on_commit,
        )
        # Migrations and the write lease, here: not timed, and alembic's migrate is not thread-safe.
        indexer.open()
        return indexer

    def backfill(self, name: str, events: int) -> Backfill:
        indexer = self._indexer(name)
        try:
            start = time.perf_counter()
            cursor = indexer.sync()
            elapsed = time.perf_counter() - start
        finally:
            indexer.close()
        if indexer.stats.entries != events:
            raise BenchmarkFailed(f"the {name} mirror holds {indexer.stats.entries} entries, not {events}")
        self.say(f"{name}: {events:,} entries to block {cursor} in {elapsed:.2f} s")
        note = f"Indexer.sync(), {indexer.stats.batches} commits: entries, derived tables, tiers"
        return Backfill(f"Indexer -> {name}", events, elapsed, note)

    # ------------------------------------------------------------------ 3. baseline

    def baseline(self, first: int, last: int) -> Backfill:
        mirror = self.engines["SQLite"]
        to_block = last
        if self.config.baseline_events is not None:
            to_block = _blocks_holding(mirror, first, last, self.config.baseline_events)
        with mirror.connect() as conn:
            low, count = conn.execute(
                select(func.min(LedgerEntry.seq), func.count()).where(
                    LedgerEntry.block_number.between(first, to_block)
                )
            ).one()
            # Where the hash chain stands before the range: the baseline resumes from it (not timed).
            head = conn.execute(select(LedgerEntry.head).where(LedgerEntry.seq == low - 1)).scalar_one()
        engine = self.baseline_engine
        migrate(engine)
        start = time.perf_counter()
        written = _naive_index(_web3(self.url), self.artifact, self.address, first, to_block, engine, head)
        elapsed = time.perf_counter() - start
        if written != count or _rows(engine, first, to_block) != _rows(mirror, first, to_block):
            raise BenchmarkFailed(
                f"the baseline's {written} entries of blocks {first}..{to_block} are not the mirror's {count}"
            )
        self.say(f"baseline: {written:,} entries in {elapsed:.2f} s")
        if to_block == last:
            scope = "same blocks"
        else:
            scope = f"blocks {first}..{to_block} of {first}..{last} (a per-log rate)"
        note = f"web3 get_logs, ORM session.add, {scope}; ledger_entries only"
        return Backfill("web3.py get_logs + ORM", written, elapsed, note)

    # ------------------------------------------------------------------ 4. live lag

    def _live_mode(self) -> str:
        if self.config.live_block_time == 0:
            return "anvil automine: every transaction mined on arrival, in a block of its own"
        per_block = round(self.config.live_rate * self.config.live_block_time)
        return f"anvil interval mining every {self.config.live_block_time} s (~{per_block} entries a block)"

    def live(self) -> tuple[tuple[LiveLag, ...], int, float]:
        config = self.config
        if config.live_block_time == 0:
            self.rpc.request("evm_setIntervalMining", [0])
            self.rpc.request("evm_setAutomine", [True])
        else:
            self.rpc.request("evm_setIntervalMining", [config.live_block_time])
        watcher = _HeadWatcher(_web3(self.url), config.watch_interval)
        followers = [_Follower(name, self._indexer) for name in self.engines]
        try:
            watcher.start()
            for follower in followers:
                follower.start()
            head = self.rpc.block_number()
            for follower in followers:
                follower.wait_for(head)
            after = self.rpc.block_number()
            self.say(
                f"live: mirrors at block {after}; {config.live_rate} entries/s for {config.live_seconds} s"
            )
            sent, seconds, last = self._send_live()
            for follower in followers:
                follower.wait_for(last)
        finally:
            for follower in followers:
                follower.stop()
            watcher.stop()
        lags = tuple(f.lags(after, last, watcher) for f in followers)
        for lag in lags:
            self.say(f"live {lag.backend}: p50 {lag.percentile(50):.3f} s, p95 {lag.percentile(95):.3f} s")
        return lags, sent, seconds

    def _send_live(self) -> tuple[int, float, int]:
        """``live_rate`` entries per second for ``live_seconds``; returns the entries sent, the seconds
        sending took and the last block holding them."""
        config = self.config
        per_tick = round(config.live_rate * config.live_tick)
        ticks = max(1, round(config.live_seconds / config.live_tick))
        pending: list[PendingTransaction] = []
        start = time.perf_counter()
        for tick in range(ticks):
            delay = start + tick * config.live_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pending.append(self._issue_batch(per_tick - 1))
        seconds = time.perf_counter() - start
        receipts = self.sender.wait_all(pending)
        _check(receipts, "live issue_batch")
        last = max(r.block_number for r in receipts if not isinstance(r, Exception))
        return per_tick * ticks, max(seconds, ticks * config.live_tick), last


def _blocks_holding(engine: Engine, first: int, last: int, wanted: int) -> int:
    """The first block ``b`` such that blocks ``first..b`` hold at least ``wanted`` entries (or ``last``)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(LedgerEntry.block_number, func.count())
            .where(LedgerEntry.block_number.between(first, last))
            .group_by(LedgerEntry.block_number)
            .order_by(LedgerEntry.block_number)
        ).all()
    total = 0
    for number, count in rows:
        total += count
        if total >= wanted:
            return int(number)
    return last


def _rows(engine: Engine, first: int, last: int) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.head, LedgerEntry.account)
                .where(LedgerEntry.block_number.between(first, last))
                .order_by(LedgerEntry.seq)
            )
        ]


# --------------------------------------------------------------------------- the naive indexer


def _naive_index(
    w3: Web3, artifact: Artifact, address: str, first: int, last: int, engine: Engine, head: bytes
) -> int:
    """Batch entries of blocks ``first..last`` the way a web3.py tutorial does it: contract events, web3's
    per-log decoding, ORM objects. ``head`` is the hash chain's head before the range."""
    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)
    headers = list(contract.events.PointsBatchIssued.get_logs(from_block=first, to_block=last))
    items = list(contract.events.PointsIssuedInBatch.get_logs(from_block=first, to_block=last))
    logs = sorted(headers + items, key=lambda e: (e["blockNumber"], e["logIndex"]))
    topic0 = {spec.name: bytes.fromhex(spec.topic0[2:]) for spec in ENTRY_EVENTS.values()}
    timestamps: dict[int, int] = {}
    batch: Any = None
    with Session(engine) as session:
        for log in logs:
            number = log["blockNumber"]
            if number not in timestamps:
                timestamps[number] = int(w3.eth.get_block(number)["timestamp"])
            args = log["args"]
            is_header = log["event"] == "PointsBatchIssued"
            if is_header:
                batch = args
                values = [topic0["PointsBatchIssued"], *(args[k] for k in _HEADER_ARGS)]
                entry_hash = keccak(abi_encode(_HEADER_TYPES, values))
            else:
                values = [
                    topic0["PointsIssuedInBatch"],
                    args["to"],
                    args["seq"],
                    args["amount"],
                    args["itemRef"],
                ]
                entry_hash = keccak(abi_encode(_ITEM_TYPES, values))
            head = keccak(head + entry_hash)
            session.add(
                LedgerEntry(
                    seq=args["seq"],
                    block_number=number,
                    block_hash=bytes(log["blockHash"]),
                    block_timestamp=timestamps[number],
                    tx_hash=bytes(log["transactionHash"]),
                    tx_index=log["transactionIndex"],
                    log_index=log["logIndex"],
                    event=log["event"],
                    partner_id=batch["partnerId"],
                    account=None if is_header else args["to"].lower(),
                    epoch=batch["epoch"],
                    amount=args["total"] if is_header else args["amount"],
                    ref=batch["ref"],
                    item_ref=None if is_header else args["itemRef"],
                    value=batch["value"] if is_header else None,
                    reason=batch["reason"],
                    rule_hash=batch["ruleHash"],
                    batch_count=args["count"] if is_header else None,
                    batch_seq=None if is_header else batch["seq"],
                    entry_hash=entry_hash,
                    head=head,
                )
            )
        session.commit()
    return len(logs)


# --------------------------------------------------------------------------- live-phase helpers


class _HeadWatcher:
    """Polls the node's head; :meth:`seen` is when a block number first showed as the head (or below it)."""

    def __init__(self, w3: Web3, interval: float) -> None:
        self.rpc = Rpc(w3, retry=RetryPolicy(attempts=1))
        self.interval = interval
        #: (head, when first seen), heads ascending.
        self.changes: list[tuple[int, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="head-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        head = -1
        try:
            while not self._stop.is_set():
                number = int(self.rpc.block_number())
                now = time.perf_counter()
                if number > head:
                    head = number
                    self.changes.append((number, now))
                self._stop.wait(self.interval)
        except BaseException as exc:
            self.error = exc

    def seen(self, block: int) -> float:
        found = next((t for head, t in self.changes if head >= block), None)
        if found is None:
            raise BenchmarkFailed(f"the head watcher never saw block {block} (error: {self.error})")
        return found


class _Follower:
    """An :class:`Indexer` following the chain in a thread of its own, its commits timestamped."""

    def __init__(self, name: str, make: Callable[[str, Callable[[int, int], None]], Indexer]) -> None:
        self.name = name
        #: (when ``commit_batch`` returned, the block it committed up to), in order.
        self.commits: list[tuple[float, int]] = []
        self.indexer = make(name, self._committed)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)

    def _committed(self, block: int, _added: int) -> None:
        self.commits.append((time.perf_counter(), block))

    def _run(self) -> None:
        try:
            self.indexer.run(self._stop)
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.indexer.close()

    def wait_for(self, block: int) -> None:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while _cursor(self.indexer.engine) < block:
            if self.error is not None:
                raise BenchmarkFailed(f"the {self.name} follower failed: {self.error}") from self.error
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"the {self.name} mirror did not reach block {block} in time")
            time.sleep(0.05)

    def lags(self, after: int, last: int, watcher: _HeadWatcher) -> LiveLag:
        """Each entry of blocks ``after+1..last``: its block's mined time to the commit that covered it."""
        with self.indexer.engine.connect() as conn:
            per_block = conn.execute(
                select(LedgerEntry.block_number, func.count())
                .where(LedgerEntry.block_number > after, LedgerEntry.block_number <= last)
                .group_by(LedgerEntry.block_number)
            ).all()
        lags: list[float] = []
        for number, count in per_block:
            committed = next((t for t, block in self.commits if block >= number), None)
            if committed is None:
                raise BenchmarkFailed(f"{self.name}: no commit covers block {number}")
            lags += [committed - watcher.seen(number)] * int(count)
        commits = sum(1 for _, block in self.commits if after < block <= last)
        return LiveLag(self.name, tuple(sorted(lags)), len(per_block), commits)


def _cursor(engine: Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(select(func.max(Cursor.block_number))).scalar()
    return -1 if value is None else int(value)


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (``q`` in 0..100)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(values)))
    return float(values[min(rank, len(values)) - 1])
