"""Issuance throughput on a spawned anvil: a plain web3.py loop next to the chain layer, in one run.

Four scenarios, each with its own partner (its own fresh key, so nonces never interfere)::

    naive       the loop a typical dev writes, per issue: ``build_transaction`` (nonce, gas estimate and fees
                asked of the node), ``Account.sign_transaction``, ``send_raw_transaction``,
                ``wait_for_transaction_receipt``, the last polling every 5 ms rather than web3's default
                100 ms: anvil sometimes answers the send a moment before its block is mined, and a 100 ms
                nap on those (2 to 30 in 300, at random) would halve the baseline for nothing
    pipelined   ``Ledger.issue_many`` in chunks through one :class:`~chain._sender.Sender` (optionally from
                several threads), then one ``Sender.wait_all`` for every receipt
    batched     ``Ledger.issue_batch`` with a fixed gas limit (:func:`batch_gas`), all batches in flight at
                once; the batch size is chosen by a trial of each candidate size in the same run
    anvil_raw   issue transactions signed before the clock starts, then only sent with ``Rpc.batch`` (JSON-RPC
                batches, as ``pipelined`` sends them): what anvil itself can take in and mine, the ceiling
                for ``pipelined``

Every issuance is 1 point to a fresh recipient under a unique reference. A scenario's clock runs from its
first request until every receipt is in; every receipt must have status 1, and at the end the ledger's
outstanding supply must equal the points issued by all scenarios (trials included), or
:class:`BenchmarkFailed` is raised.

Mining. Two properties of anvil 1.7.1 decide how it is driven:

- every block costs time in proportion to the whole state (anvil rebuilds the state root from every account
  and slot): about 1 ms per thousand recipients holding points, over 100 ms by the end of a default run.
  Many transactions per block are cheap, many blocks are not.
- automine ("a block as soon as a transaction arrives") copes with one transaction at a time but not with
  hundreds arriving in one JSON-RPC batch: it mines anything from one to hundreds of them per block, so one
  run varies tenfold, and now and then a batch never gets an answer while anvil's memory grows by ~80 MB/s
  (splitting batches is foundry-rs/foundry#14867, fixed upstream after 1.7.1).

So the naive loop runs first, on automine and a small state: each of its transactions is mined the moment
it arrives and the loop never waits for a block, the baseline's best case. Then anvil switches to interval
mining (``block_time``: 1 s, the shortest ``evm_setIntervalMining`` takes; blocks of up to ``gas_limit``)
for the scenarios that keep many transactions in flight, as on a real chain; their clocks include waiting
for the last block. ``--prune-history`` keeps anvil from holding a copy of the state per block. Nothing is
retried: a stuck node fails the run instead of being waited for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from ._compile import Artifact, load_artifact
from ._deploy import DEFAULT_REVERSAL_WINDOW, deploy_contract
from ._devnode import fund, start_anvil
from ._errors import ChainError, PermanentError, RevertDecoder
from ._ledger import ZERO_HASH, Issuance, Ledger
from ._rpc import AlreadyKnown, RetryPolicy, Rpc
from ._sender import PendingTransaction, Sender
from ._signer import LocalSigner
from ._types import Address, Points, ReasonCode, Receipt, Wei

__all__ = ["BenchConfig", "BenchResult", "BenchmarkFailed", "Scenario", "run_benchmark"]

T = TypeVar("T")
R = TypeVar("R")

EPOCH_LENGTH = 30 * 24 * 3600
VALIDITY = 12
PURCHASE = ReasonCode(1)
#: Ether for each partner key: far more than any run spends on gas at anvil's fees.
FUNDING = 100 * 10**18
#: Gas limit of each pre-signed ``issue`` in the raw scenario (a fresh recipient uses about 100k).
RAW_ISSUE_GAS = 150_000
#: Each partner's allowance: the ledger's MAX_ALLOWANCE (2**64 - 1), which no run exhausts.
PARTNER_ALLOWANCE = 2**64 - 1


def batch_gas(size: int) -> int:
    """A gas limit that covers an ``issueBatch`` of ``size`` fresh recipients (the v2 ledger uses 124k for
    a batch of one, 30.9k each in a batch of 100, 30.4k each at 500, on anvil). A fixed limit spares the
    node an estimate, which costs as much as running the batch; the sender still checks the call with
    ``eth_call`` before sending it."""
    return 100_000 + 36_000 * size


GWEI = 10**9
#: Seconds between the naive loop's receipt polls (see the module docstring).
NAIVE_POLL = 0.005


class BenchmarkFailed(PermanentError):
    """An issuance did not land (refused, reverted, or missing from the ledger's supply)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes of the run: the defaults give stable figures in under 3 minutes, :meth:`quick` in under 1."""

    naive: int = 300
    pipelined: int = 5_000
    #: Recipients issued by the batched scenario (rounded down to whole batches, at least one).
    batched: int = 100_000
    raw: int = 10_000
    #: Issuances per ``issue_many`` call (and per JSON-RPC batch in the raw scenario).
    chunk: int = 500
    #: Threads calling ``issue_many`` / ``issue_batch`` at once. One is fastest here: with more, their gas
    #: estimates compete for anvil and the run gets slower, not faster.
    submit_threads: int = 1
    #: Candidate batch sizes, each tried on ``trial_recipients`` recipients; the fastest is used.
    batch_sizes: tuple[int, ...] = (100, 250, 500)
    trial_recipients: int = 20_000
    #: anvil's block gas limit (``--gas-limit``): a second's worth of issuances fits in one block.
    gas_limit: int = 1_000_000_000
    #: Whole seconds between blocks once many transactions are in flight (the naive loop runs on automine).
    block_time: int = 1

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(naive=100, pipelined=2_000, batched=25_000, raw=4_000, trial_recipients=5_000)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured scenario: ``issuances`` landed in ``seconds`` of wall time."""

    name: str
    issuances: int
    seconds: float
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.issuances / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The four scenarios, the batch-size trials, and the ledger's supply check."""

    naive: Scenario
    pipelined: Scenario
    batched: Scenario
    batch_size: int
    raw: Scenario
    #: Issuances per second of each candidate batch size in the trial, by size.
    batch_trials: dict[int, float]
    submit_threads: int
    points_issued: int
    outstanding_supply: int
    scenarios: tuple[Scenario, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", (self.naive, self.pipelined, self.batched, self.raw))

    def figures(self) -> dict[str, float | int]:
        """The summary printed as the last line: the required keys first, then ratios and details."""
        naive = self.naive.per_second
        figures: dict[str, float | int] = {
            "naive_per_s": round(naive, 1),
            "pipelined_per_s": round(self.pipelined.per_second, 1),
            "batched_per_s": round(self.batched.per_second, 1),
            "batch_size": self.batch_size,
            "anvil_raw_per_s": round(self.raw.per_second, 1),
            "pipelined_ratio": round(self.pipelined.per_second / naive, 2),
            "batch_ratio": round(self.batched.per_second / naive, 2),
            "anvil_raw_ratio": round(self.raw.per_second / naive, 2),
            "pipelined_of_raw": round(self.pipelined.per_second / self.raw.per_second, 3),
            "submit_threads": self.submit_threads,
        }
        for size, rate in sorted(self.batch_trials.items()):
            figures[f"batch_trial_{size}_per_s"] = round(rate, 1)
        figures["points_issued"] = self.points_issued
        return figures

    def table(self) -> str:
        """Scenario, issuances, seconds, issuances per second and the ratio to the naive loop."""
        naive = self.naive.per_second
        lines = [f"{'scenario':<24}{'N':>9}{'seconds':>9}{'per s':>10}{'vs naive':>10}  how", "-" * 100]
        for s in self.scenarios:
            lines.append(
                f"{s.name:<24}{s.issuances:>9,}{s.seconds:>9.2f}{s.per_second:>10,.0f}"
                f"{s.per_second / naive:>9.1f}x  {s.note}"
            )
        trials = ", ".join(f"{size}: {rate:,.0f}/s" for size, rate in sorted(self.batch_trials.items()))
        lines.append(f"batch size trial ({trials}) -> {self.batch_size}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def run_benchmark(
    root: Path, config: BenchConfig = BenchConfig(), *, progress: Callable[[str], None] | None = None
) -> BenchResult:
    """Spawns anvil from the project ``root``, deploys the ledger and measures the four scenarios."""
    say = progress or (lambda _message: None)
    with start_anvil(root, extra_args=("--gas-limit", str(config.gas_limit), "--prune-history")) as node:
        return _Bench(node.w3, config, say).run()


class _Bench:
    """One run on one node: the ledger, one funded partner per scenario (and per trial), the tally."""

    def __init__(self, w3: Web3, config: BenchConfig, say: Callable[[str], None]) -> None:
        self.w3 = w3
        self.config = config
        self.say = say
        self.artifact: Artifact = load_artifact("LoyaltyLedger")
        self.decoder = RevertDecoder.for_contracts()
        self.rpc = Rpc(w3, decoder=self.decoder, retry=RetryPolicy(attempts=1))
        self.admin = to_checksum_address(w3.eth.accounts[0])
        # v2 constructor: the admin also holds the treasury and pauser roles here (no admin delay: a
        # benchmark never hands the admin role over).
        self.contract: Contract = deploy_contract(
            w3,
            self.artifact,
            "Coalition Points",
            "PTS",
            self.admin,
            self.admin,
            self.admin,
            0,
            EPOCH_LENGTH,
            VALIDITY,
            1,
            DEFAULT_REVERSAL_WINDOW,
            sender=self.admin,
        )
        self.address: Address = to_checksum_address(self.contract.address)
        self.points_issued = 0

    def run(self) -> BenchResult:
        sizes = self._sizes()
        # Every partner is set up now, while blocks are instant, so no scenario waits for a block to begin.
        naive_key, pipelined_key, batched_key, raw_key, *trial_keys = self._partners(4 + len(sizes))
        naive = self.naive(naive_key)
        self.say(f"naive: {naive.per_second:,.0f}/s")
        self.rpc.request("evm_setIntervalMining", [self.config.block_time])
        pipelined = self.pipelined(pipelined_key)
        self.say(f"pipelined: {pipelined.per_second:,.0f}/s")
        trials = {
            size: self.batched(key, size, self.config.trial_recipients).per_second
            for size, key in zip(sizes, trial_keys, strict=True)
        }
        size = max(trials, key=lambda s: trials[s])
        self.say("batch size trial: " + ", ".join(f"{s}: {r:,.0f}/s" for s, r in trials.items()))
        batched = self.batched(batched_key, size, self.config.batched)
        self.say(f"batched: {batched.per_second:,.0f}/s")
        raw = self.raw(raw_key)
        self.say(f"anvil raw: {raw.per_second:,.0f}/s")
        outstanding = int(self.contract.functions.outstandingSupply().call())
        if outstanding != self.points_issued:
            raise BenchmarkFailed(
                f"outstanding supply is {outstanding}, {self.points_issued} points were issued"
            )
        return BenchResult(
            naive=naive,
            pipelined=pipelined,
            batched=batched,
            batch_size=size,
            raw=raw,
            batch_trials=trials,
            submit_threads=self.config.submit_threads,
            points_issued=self.points_issued,
            outstanding_supply=outstanding,
        )

    def _sizes(self) -> tuple[int, ...]:
        # A candidate larger than the whole batched run could not be used for it.
        sizes = tuple(s for s in self.config.batch_sizes if s <= self.config.batched)
        return sizes or (max(1, self.config.batched),)

    # ------------------------------------------------------------------ setup

    def _partners(self, count: int) -> list[LocalAccount]:
        """``count`` fresh keys, each funded and registered as a partner with an allowance no run exhausts.

        One transaction at a time: on automine, that is what anvil handles reliably."""
        accounts: list[LocalAccount] = [Account.create() for _ in range(count)]
        for partner_id, account in enumerate(accounts, start=1):
            fund(self.w3, account.address, FUNDING)
            register = self.contract.functions.registerPartner(
                partner_id, account.address, account.address, True, False, PARTNER_ALLOWANCE
            ).transact({"from": self.admin})
            if self.w3.eth.wait_for_transaction_receipt(register)["status"] != 1:
                raise BenchmarkFailed(f"registering partner {partner_id} failed")
        return accounts

    def _ledger(self, account: LocalAccount) -> tuple[Sender, Ledger]:
        sender = Sender(self.rpc, LocalSigner(account), decoder=self.decoder)
        return sender, Ledger(self.rpc, self.address, sender=sender, artifact=self.artifact)

    # ------------------------------------------------------------------ (a) naive web3.py loop

    def naive(self, account: LocalAccount) -> Scenario:
        issue = self.contract.functions.issue
        work = [(to, secrets.token_bytes(32)) for to in _recipients(self.config.naive)]
        eth = self.w3.eth
        start = time.perf_counter()
        for to, ref in work:
            tx = issue(to, 1, ref, PURCHASE, ZERO_HASH).build_transaction(
                {"from": account.address, "nonce": eth.get_transaction_count(account.address)}
            )
            signed = account.sign_transaction(cast(dict[str, Any], tx))
            sent = eth.send_raw_transaction(signed.raw_transaction)
            receipt = eth.wait_for_transaction_receipt(sent, poll_latency=NAIVE_POLL)
            if receipt["status"] != 1:
                raise BenchmarkFailed(f"naive issue failed: {receipt['transactionHash'].to_0x_hex()}")
        elapsed = time.perf_counter() - start
        self.points_issued += len(work)
        return Scenario(
            "naive web3.py loop", len(work), elapsed, "build, sign, send, wait: one issue at a time"
        )

    # ------------------------------------------------------------------ (b) pipelined issue_many

    def pipelined(self, account: LocalAccount) -> Scenario:
        sender, ledger = self._ledger(account)
        issuances = [
            Issuance(to, Points(1), secrets.token_bytes(32), PURCHASE)
            for to in _recipients(self.config.pipelined)
        ]
        chunks = list(_chunks(issuances, self.config.chunk))
        start = time.perf_counter()
        pending = [p for chunk in self._map(ledger.issue_many, chunks) for p in chunk]
        receipts = sender.wait_all(pending)
        elapsed = time.perf_counter() - start
        _check(receipts, "pipelined issue")
        self.points_issued += len(issuances)
        threads = self.config.submit_threads
        note = f"issue_many x{self.config.chunk} from {threads} thread{'s' if threads > 1 else ''}, wait_all"
        return Scenario("pipelined issue", len(issuances), elapsed, note)

    # ------------------------------------------------------------------ (c) issue_batch

    def batched(self, account: LocalAccount, size: int, recipients: int) -> Scenario:
        sender, ledger = self._ledger(account)
        batches = [
            (_recipients(size), [secrets.token_bytes(32) for _ in range(size)])
            for _ in range(max(1, recipients // size))
        ]
        amounts = [Points(1)] * size

        def submit(batch: tuple[list[Address], list[bytes]]) -> PendingTransaction:
            return ledger.issue_batch(batch[0], amounts, batch[1], PURCHASE, gas=batch_gas(size))

        start = time.perf_counter()
        pending = self._map(submit, batches)
        receipts = sender.wait_all(pending)
        elapsed = time.perf_counter() - start
        _check(receipts, f"issue_batch of {size}")
        issued = size * len(batches)
        self.points_issued += issued
        note = f"{len(batches)} batches of {size}, fixed gas + eth_call check, wait_all"
        return Scenario("issue_batch", issued, elapsed, note)

    # ------------------------------------------------------------------ (d) anvil's ingestion limit

    def raw(self, account: LocalAccount) -> Scenario:
        signer = LocalSigner(account)
        encode = Ledger(self.rpc, self.address, artifact=self.artifact).encode
        nonce = self.rpc.transaction_count(account.address)
        tip = Wei(GWEI)
        max_fee = Wei(2 * self.rpc.base_fee() + tip)
        template = {
            "type": 2,
            "chainId": self.rpc.chain_id(),
            "gas": RAW_ISSUE_GAS,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "to": self.address,
            "value": 0,
        }
        raws = [
            signer.sign_transaction(
                {
                    **template,
                    "nonce": nonce + i,
                    "data": encode("issue", to, 1, secrets.token_bytes(32), PURCHASE, ZERO_HASH),
                }
            )
            for i, to in enumerate(_recipients(self.config.raw))
        ]
        calls = [("eth_sendRawTransaction", [HexBytes(r).to_0x_hex()]) for r in raws]
        batches = list(_chunks(calls, self.config.chunk))
        start = time.perf_counter()
        for batch in batches:
            for result in self.rpc.batch(batch):
                if isinstance(result, ChainError) and not isinstance(result, AlreadyKnown):
                    raise BenchmarkFailed(f"anvil refused a pre-signed issue: {result}") from result
        last = keccak(raws[-1])
        while self.rpc.receipts([last])[0] is None:  # consecutive nonces: the last one is mined last
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        receipts: list[Receipt | None] = []
        for chunk in _chunks([keccak(r) for r in raws], self.config.chunk):
            receipts.extend(self.rpc.receipts(chunk))
        _check(receipts, "pre-signed issue")
        self.points_issued += len(raws)
        note = f"pre-signed, sent {self.config.chunk} at a time with Rpc.batch"
        return Scenario("anvil raw ingestion", len(raws), elapsed, note)

    # ------------------------------------------------------------------ helpers

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items``, results in order, from ``submit_threads`` threads."""
        if self.config.submit_threads <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(self.config.submit_threads) as pool:
            return list(pool.map(fn, items))


def _check(receipts: Sequence[Receipt | ChainError | None], what: str) -> None:
    failed = [r for r in receipts if not isinstance(r, Receipt) or not r.succeeded]
    if failed:
        count = f"{len(failed)} of {len(receipts)}"
        raise BenchmarkFailed(f"{count} {what} transactions did not succeed; the first: {failed[0]}")


def _recipients(count: int) -> list[Address]:
    """``count`` distinct addresses that have never held points (random, not derived from keys: faster)."""
    base = int.from_bytes(secrets.token_bytes(12), "big") << 64
    return [to_checksum_address((base + i).to_bytes(20, "big")) for i in range(1, count + 1)]


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
