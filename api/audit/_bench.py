"""Audit verification throughput on a spawned anvil, next to the project's own indexer, in one run.

The audit tool exists so that anyone can check the ledger from the chain alone, without trusting the
project's indexer or database. Whether a full check is practical depends on how long it takes on a chain of
realistic length, and the fairest yardstick is the indexer, which reads the same logs from the same node: so
both read one chain of at least ``entries`` ledger entries in one run, and the run reports entries per
second for each and their ratio.

Phases, in order, on one anvil and one ledger:

1. **Produce** (timed, reported, not part of any rate). The setup and batches of :mod:`indexer._bench`'s
   produce phase, waited for in rounds (:func:`_produce` says why): fresh admin and partner keys, a fresh
   deployment, interval-mined ``issue_batch`` transactions of ``batch_size`` recipients drawn from a pool
   of ``recipient_pool`` addresses, 1 to 500 points each, until at least ``entries`` ledger entries exist
   (that module's docstring explains the choices). The pool is a few thousand addresses rather than one
   per entry: every recipient then holds points from many batches, as members of a loyalty scheme do, and
   the audit's balance check covers a realistic number of accounts. Then ``window + 2`` empty blocks are
   mined, so the whole production range is older than the indexer's unfinalised window and the indexer
   backfills it in one pass, as the audit reads it.
2. **Indexer** (:meth:`indexer.Indexer.sync`) into a fresh SQLite file: migrations and the write lease
   before the clock starts, then ``eth_getLogs``, headers, decoding, entries, derived tables and the cursor
   up to the head. The mirror must hold exactly ``ledgerSequence()`` entries.
3. **Audit**: :func:`api.audit.verify` of the same ledger from its deployment block, timed from the call to
   its return (the audit sets up its own connection: that is part of what a user waits for). The report must
   be clean (``ok``, no differences) and count exactly ``ledgerSequence()`` entries, or the run fails.

Everything runs in this one Python process next to anvil, on whatever cores the machine has: the figures
include that contention. Nothing is retried: a stuck node fails the run instead of being waited for.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chain import PendingTransaction, Receipt
from chain._bench import BenchmarkFailed, _check
from chain._devnode import start_anvil
from indexer._bench import Backfill, IndexerBenchConfig, _Bench

from . import AuditTarget, Report, verify

__all__ = ["TARGET_VERIFY_SECONDS", "AuditBenchConfig", "AuditBenchResult", "run_benchmark"]

#: The issue's target: the whole verification of the default chain in less than this.
TARGET_VERIFY_SECONDS = 60.0
#: Differences quoted in the error when a clean chain does not verify.
_QUOTED_DIFFERENCES = 5


@dataclass(frozen=True, slots=True)
class AuditBenchConfig:
    """Sizes of the run; the defaults are the issue's (1,000,000 entries)."""

    #: Ledger entries to produce, at least (whole batches, plus the partner's registration).
    entries: int = 1_000_000
    #: Recipients per ``issue_batch`` (each batch is that many entries plus its header).
    batch_size: int = 500
    #: Distinct recipients the batches draw from (at least ``batch_size``).
    recipient_pool: int = 3_000
    #: anvil's block gas limit, and seconds between blocks while producing (interval mining).
    gas_limit: int = 1_000_000_000
    block_time: int = 1
    #: The indexer's unfinalised window (``IndexerConfig.window``).
    window: int = 64
    #: Transactions submitted before the previous round's receipts are waited for (see :func:`_produce`).
    round_size: int = 50

    def __post_init__(self) -> None:
        if self.entries < 2 or self.batch_size < 1 or self.recipient_pool < 1 or self.round_size < 1:
            raise ValueError("produce at least 2 entries, in batches of at least 1 recipient")

    def producer(self) -> IndexerBenchConfig:
        """The indexer benchmark's configuration that produces this chain."""
        return IndexerBenchConfig(
            events=self.entries,
            batch_size=self.batch_size,
            recipient_pool=self.recipient_pool,
            gas_limit=self.gas_limit,
            block_time=self.block_time,
            window=self.window,
        )


@dataclass(frozen=True, slots=True)
class AuditBenchResult:
    """The chain produced, the indexer's backfill of it and the audit's verification of it."""

    entries: int
    first_block: int
    last_block: int
    recipient_pool: int
    generation_seconds: float
    indexer: Backfill
    verify_seconds: float
    #: The block the audit verified up to, and the accounts whose balances it checked (from its report).
    verified_block: int
    accounts: int

    @property
    def verify_per_second(self) -> float:
        return self.entries / self.verify_seconds if self.verify_seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        """The audit's rate over the indexer's."""
        indexer = self.indexer.per_second
        return self.verify_per_second / indexer if indexer > 0 else 0.0

    def figures(self) -> dict[str, float | int]:
        """The last line's JSON: exactly the issue's keys."""
        return {
            "entries": self.entries,
            "verify_seconds": round(self.verify_seconds, 2),
            "verify_per_s": round(self.verify_per_second, 1),
            "indexer_per_s": round(self.indexer.per_second, 1),
        }

    def table(self) -> str:
        met = self.verify_seconds < TARGET_VERIFY_SECONDS
        lines = [
            f"{self.entries:,} ledger entries in blocks {self.first_block}..{self.last_block}, "
            f"{self.recipient_pool:,} recipients (issue_batch, produced in {self.generation_seconds:.1f} s, "
            "not counted)",
            "",
            f"{'reader':<24}{'entries':>11}{'seconds':>9}{'per s':>10}{'vs indexer':>12}  how",
            "-" * 110,
            f"{self.indexer.name:<24}{self.indexer.entries:>11,}{self.indexer.seconds:>9.2f}"
            f"{self.indexer.per_second:>10,.0f}{1.0:>11.2f}x  {self.indexer.note}",
            f"{'audit verify':<24}{self.entries:>11,}{self.verify_seconds:>9.2f}"
            f"{self.verify_per_second:>10,.0f}{self.ratio:>11.2f}x  "
            f"api.audit.verify from the deployment block to block {self.verified_block}: clean, "
            f"{self.accounts:,} accounts",
            "",
            f"target: full verification < {TARGET_VERIFY_SECONDS:g} s [{'met' if met else 'MISSED'}]",
        ]
        return "\n".join(lines)


def run_benchmark(
    root: Path,
    config: AuditBenchConfig = AuditBenchConfig(),
    *,
    progress: Callable[[str], None] | None = None,
) -> AuditBenchResult:
    """Spawns anvil from the project ``root`` and runs every phase; the SQLite mirror lives in a temporary
    directory removed at the end."""
    say = progress or (lambda _message: None)
    with (
        tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp,
        start_anvil(root, extra_args=("--gas-limit", str(config.gas_limit))) as node,
    ):
        bench = _Bench(node.url, Path(tmp), None, config.producer(), say)
        try:
            return _run(bench, config, say)
        finally:
            for engine in (*bench.engines.values(), bench.baseline_engine):
                engine.dispose()


def _run(bench: _Bench, config: AuditBenchConfig, say: Callable[[str], None]) -> AuditBenchResult:
    say(f"producing {config.entries:,} entries for {len(bench.pool):,} recipients")
    started = time.perf_counter()
    first, last = _produce(bench, config)
    generation = time.perf_counter() - started
    bench.rpc.request("anvil_mine", [hex(config.window + 2)])
    entries = bench.ledger.ledger_sequence()
    say(f"produced {entries:,} entries in blocks {first}..{last} in {generation:.1f} s")
    indexer = bench.backfill("SQLite", entries)
    verify_seconds, report = _verify(bench, entries)
    say(f"audit: {entries:,} entries to block {report.block_number} in {verify_seconds:.2f} s")
    return AuditBenchResult(
        entries=entries,
        first_block=first,
        last_block=last,
        recipient_pool=len(bench.pool),
        generation_seconds=generation,
        indexer=indexer,
        verify_seconds=verify_seconds,
        verified_block=report.block_number,
        accounts=report.accounts,
    )


def _produce(bench: _Bench, config: AuditBenchConfig) -> tuple[int, int]:
    """The indexer benchmark's production (its :meth:`~indexer._bench._Bench.produce`: the same batches, the
    same sender), waited for in rounds: ``round_size`` transactions are submitted, then the previous round's
    receipts are collected while anvil mines the new one. Returns the first and last block holding them.

    Not ``_Bench.produce`` itself, which submits every batch before it waits for any: with a million entries
    that is 2,000 transactions and over a minute and a half of submitting, then one wait that fetches and
    decodes every receipt (501 logs each). Tried at that size, the wait ended with the sender broadcasting
    replacements of the last transactions (not yet seen mined ``replace_after`` s after they were sent) in one
    JSON-RPC batch, which anvil 1.7.1 answered with "Invalid request" (-32600), failing the run. In rounds, no
    transaction waits long enough to be replaced, and each wait decodes a round's receipts only."""
    size = min(config.batch_size, config.entries - 1)
    count = math.ceil(config.entries / (size + 1))
    bench.rpc.request("evm_setIntervalMining", [config.block_time])
    blocks: list[int] = []
    previous: list[PendingTransaction] = []
    for start in range(0, count, config.round_size):
        current = [bench._issue_batch(size) for _ in range(min(config.round_size, count - start))]
        blocks += _mined(bench, previous, size)
        previous = current
        bench.say(f"produce: {start + len(current):,} of {count:,} batches submitted")
    blocks += _mined(bench, previous, size)
    return min(blocks), max(blocks)


def _mined(bench: _Bench, pending: list[PendingTransaction], size: int) -> list[int]:
    """Waits for ``pending``; the blocks holding them (every one must have succeeded)."""
    receipts = bench.sender.wait_all(pending)
    _check(receipts, f"issue_batch of {size}")
    return [r.block_number for r in receipts if isinstance(r, Receipt)]


def _verify(bench: _Bench, entries: int) -> tuple[float, Report]:
    """Times :func:`api.audit.verify` of the ledger; the report must be clean and count ``entries``."""
    target = AuditTarget(rpc_url=bench.url, ledger=bench.address, from_block=bench.deployment_block)
    start = time.perf_counter()
    report = verify(target, progress=None)
    elapsed = time.perf_counter() - start
    if not report.ok:
        quoted = "; ".join(str(d) for d in report.differences[:_QUOTED_DIFFERENCES])
        raise BenchmarkFailed(
            f"the audit of a clean chain is not clean: {len(report.differences)} difference(s) ({quoted}), "
            f"unchecked: {report.unchecked}"
        )
    if report.entries != entries:
        raise BenchmarkFailed(f"the audit verified {report.entries} entries, the ledger holds {entries}")
    return elapsed, report
