"""Sending transactions: one nonce allocator per account, pipelined submission, fee bumping, typed reverts.

The life of a transaction::

    submit(call)  estimate gas (a revert raises its ContractRevert here: nothing was sent, no nonce used)
                  -> reserve a nonce -> sign -> eth_sendRawTransaction         returns a PendingTransaction
    wait()        poll the receipt of every version of it (one JSON-RPC batch for all outstanding ones)
                  not mined after ``replace_after`` -> the same nonce re-signed with both fees raised by at
                  least 12.5 % (at the fee cap: the last version broadcast again, which covers a dropped one)
                  nonce used by a transaction we did not send -> the call is submitted again with a new nonce;
                  the ledger's reference dedupe makes a second landing revert instead of issuing twice
                  mined with status 0 -> the call replayed with ``eth_call`` to decode its ContractRevert
                  ``confirmations`` blocks on top -> the Receipt

Concurrency: the allocator's lock is held from nonce reservation to broadcast, so nonces reach the node in
order from any number of threads; asyncio callers use :meth:`Sender.submit_async` and
:meth:`PendingTransaction.wait_async`.
Throughput comes from not waiting: submit many calls (``submit_many`` signs them all and broadcasts them in
one JSON-RPC batch), then wait for all receipts at once with :meth:`Sender.wait_all`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from ._errors import ChainError, ContractRevert, PermanentError, RetryableError, RevertDecoder
from ._rpc import AlreadyKnown, NonceTooLow, ReplacementUnderpriced, Rpc
from ._signer import Signer
from ._types import Address, Receipt, Wei

__all__ = [
    "Call",
    "FeePolicy",
    "NonceAllocator",
    "PendingTransaction",
    "SendPolicy",
    "Sender",
    "SenderStats",
    "TransactionFailed",
    "TransactionTimeout",
]

logger = logging.getLogger("chain.sender")

GWEI = 10**9
DEFAULT_MAX_FEE = Wei(500 * GWEI)
#: Each replacement raises both fee fields by at least this fraction (geth's pool refuses less than 10 %).
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8  # x 1.125


class TransactionTimeout(RetryableError):
    """No version of the transaction was mined (and confirmed) within the wait's timeout."""

    def __init__(self, pending: PendingTransaction, timeout: float) -> None:
        self.pending = pending
        hashes = ", ".join(HexBytes(h).to_0x_hex() for h in pending.hashes)
        super().__init__(f"nonce {pending.nonce} not mined within {timeout:.0f}s (sent as {hashes})")


class TransactionFailed(PermanentError):
    """A transaction mined with status 0 and replaying it did not reproduce a revert (e.g. out of gas)."""

    def __init__(self, receipt: Receipt) -> None:
        self.receipt = receipt
        super().__init__(
            f"transaction {HexBytes(receipt.transaction_hash).to_0x_hex()} failed in block "
            f"{receipt.block_number} (gas used {receipt.gas_used})"
        )


@dataclass(frozen=True, slots=True)
class Call:
    """What to send: a contract call, a transfer, or (``to=None``) a contract creation; no nonce or fees."""

    to: Address | None
    data: bytes = b""
    value: int = 0
    #: A fixed gas limit; estimated (with the policy's margin) when ``None``.
    gas: int | None = None
    #: Run the call against the latest state before sending it (an estimate, or ``eth_call`` when the gas
    #: limit is fixed), so a call that would revert raises its ContractRevert and nothing is sent. Only a
    #: caller that wants the chain itself to refuse (tests of the on-chain checks) turns it off.
    check: bool = True


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """EIP-1559 fees: ``maxFeePerGas = base fee x base_fee_multiplier + tip``, capped at ``max_fee_cap``."""

    base_fee_multiplier: float = 2.0
    #: The tip; asked of the node (``eth_maxPriorityFeePerGas``) when ``None``.
    priority_fee: Wei | None = None
    max_fee_cap: Wei = DEFAULT_MAX_FEE
    #: Estimated gas is multiplied by this before it becomes the gas limit.
    gas_margin: float = 1.2
    #: How long a fetched base fee / tip is reused.
    fee_ttl: float = 1.0


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """How long to wait, and when to replace."""

    #: Blocks on top of the one that holds the transaction before it counts as done (0 on local nodes).
    confirmations: int = 0
    #: A transaction not mined this many seconds after its last broadcast is replaced (fees bumped).
    replace_after: float = 30.0
    #: ``wait`` gives up (TransactionTimeout) after this many seconds.
    timeout: float = 300.0
    poll_interval: float = 0.05
    #: Submitted but not yet mined transactions allowed at once; a submission beyond it waits (at most
    #: ``replace_after``) for the node to mine. Node pools cap what one account may have pending.
    max_in_flight: int = 4096  # geth's default pool holds 4096 executable transactions in all


@dataclass(slots=True)
class SenderStats:
    """What the sender had to do beyond the happy path (read by tests and benchmarks)."""

    submitted: int = 0
    replaced: int = 0
    rebroadcast: int = 0
    resynced: int = 0
    resubmitted: int = 0
    reverted: int = 0


class NonceAllocator:
    """Hands out consecutive nonces for one account; resynchronises from the node's pending count.

    Thread-safe: :attr:`lock` is held by the sender from :meth:`reserve` to broadcast, so nonces reach the
    node in order.
    """

    def __init__(self, rpc: Rpc, address: Address) -> None:
        self._rpc = rpc
        self.address = address
        self.lock = threading.RLock()
        self._next: int | None = None

    def reserve(self, count: int = 1) -> range:
        """The next ``count`` nonces (call with :attr:`lock` held)."""
        with self.lock:
            if self._next is None:
                self._next = self._rpc.transaction_count(self.address, "pending")
            start = self._next
            self._next += count
            return range(start, start + count)

    def release(self, nonces: range) -> None:
        """Gives back nonces that were never broadcast; if later ones are out, resynchronise instead."""
        with self.lock:
            if self._next is not None and nonces.stop == self._next:
                self._next = nonces.start
            else:
                self._next = None

    def resync(self) -> None:
        """Forgets the local count; the next reservation asks the node."""
        with self.lock:
            self._next = None

    @property
    def next_nonce(self) -> int | None:
        return self._next


@dataclass(eq=False)
class PendingTransaction:
    """A submitted call: every signed version of it (same nonce), until one is mined."""

    sender: Sender
    call: Call
    nonce: int
    gas: int
    max_fee: Wei
    priority_fee: Wei
    raw: bytes
    hashes: list[bytes] = field(default_factory=list)
    last_broadcast: float = field(default_factory=time.monotonic)
    receipt: Receipt | None = None
    #: Set when the receipt was found but is not yet confirmed deep enough.
    mined: Receipt | None = None
    #: Set when the node refused the transaction for good at broadcast.
    error: ChainError | None = None

    @property
    def hash(self) -> bytes:
        """The hash of the latest version."""
        return self.hashes[-1]

    def wait(self, timeout: float | None = None) -> Receipt:
        """The receipt once mined and confirmed; a revert raises its :class:`ContractRevert`."""
        result = self.sender.wait_all([self], timeout=timeout)[0]
        if isinstance(result, ChainError):
            raise result
        return result

    async def wait_async(self, timeout: float | None = None) -> Receipt:
        return await asyncio.to_thread(self.wait, timeout)

    def __repr__(self) -> str:
        state = "mined" if self.receipt else "pending"
        shown = HexBytes(self.hashes[-1]).to_0x_hex() if self.hashes else "not broadcast"
        return f"PendingTransaction(nonce={self.nonce}, hash={shown}, {state})"


class Sender:
    """Signs and sends transactions for one account, ``signer``, through the node behind ``rpc``."""

    def __init__(
        self,
        rpc: Rpc,
        signer: Signer,
        *,
        fees: FeePolicy = FeePolicy(),
        policy: SendPolicy = SendPolicy(),
        decoder: RevertDecoder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpc = rpc
        self.signer = signer
        self.fees = fees
        self.policy = policy
        self.decoder = decoder or rpc.decoder
        self.address: Address = to_checksum_address(signer.address)
        self.nonces = NonceAllocator(rpc, self.address)
        self.stats = SenderStats()
        self._clock = clock
        self._fee_cache: tuple[float, Wei, Wei] | None = None
        self._fee_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Sender({self.address})"

    # ------------------------------------------------------------------ fees and gas

    def current_fees(self) -> tuple[Wei, Wei]:
        """``(maxFeePerGas, maxPriorityFeePerGas)`` for a new transaction under the policy."""
        with self._fee_lock:
            now = self._clock()
            if self._fee_cache is None or now - self._fee_cache[0] > self.fees.fee_ttl:
                base = self.rpc.base_fee()
                tip = self.fees.priority_fee
                if tip is None:
                    tip = self.rpc.max_priority_fee()
                self._fee_cache = (now, base, tip)
            _, base, tip = self._fee_cache
        cap = self.fees.max_fee_cap
        max_fee = min(int(base * self.fees.base_fee_multiplier) + tip, cap)
        return Wei(max_fee), Wei(min(tip, max_fee))

    def _gas_limits(self, calls: Sequence[Call]) -> list[int]:
        """Estimates the gas of calls without a limit; runs the others with ``eth_call`` (``Call.check``)."""
        missing = [c for c in calls if c.gas is None]
        checked = [c for c in calls if c.gas is not None and c.check]
        if checked:
            self.rpc.check_many([_call_tx(self.address, c) for c in checked])
        estimates = iter(
            self.rpc.estimate_gas_many([_call_tx(self.address, c) for c in missing]) if missing else []
        )
        return [c.gas if c.gas is not None else int(next(estimates) * self.fees.gas_margin) for c in calls]

    # ------------------------------------------------------------------ submitting

    def _sign(self, call: Call, nonce: int, gas: int, max_fee: Wei, tip: Wei) -> bytes:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.rpc.chain_id(),
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": call.value,
            "data": HexBytes(call.data).to_0x_hex(),
        }
        if call.to is not None:  # a contract creation has no ``to`` at all
            tx["to"] = call.to
        return self.signer.sign_transaction(tx)

    def submit(self, call: Call) -> PendingTransaction:
        """Sends ``call`` without waiting for it to be mined. A revert in estimation raises here."""
        return self.submit_many([call])[0]

    async def submit_async(self, call: Call) -> PendingTransaction:
        return await asyncio.to_thread(self.submit, call)

    def submit_many(self, calls: Sequence[Call]) -> list[PendingTransaction]:
        """Sends ``calls`` with consecutive nonces, signed together and broadcast in one JSON-RPC batch.

        Each is first estimated (or, with a fixed ``gas``, run with ``eth_call``) against the latest block,
        so a call that only succeeds after an earlier one of the list is mined needs ``check=False`` (and a
        ``gas``). A call whose nonce turns out to be taken (another process with this key) is signed again
        with a fresh nonce, so the calls may land in a different order than given. A call the node refuses
        for good carries that error: its :meth:`PendingTransaction.wait` raises it (a single :meth:`submit`
        raises it at once).
        """
        if not calls:
            return []
        step = self.policy.max_in_flight
        if len(calls) > step:
            return [
                p
                for start in range(0, len(calls), step)
                for p in self.submit_many(calls[start : start + step])
            ]
        self._wait_for_room(len(calls))
        gas = self._gas_limits(calls)
        max_fee, tip = self.current_fees()
        with self.nonces.lock:
            nonces = self.nonces.reserve(len(calls))
            try:
                pending = [
                    PendingTransaction(self, c, n, g, max_fee, tip, self._sign(c, n, g, max_fee, tip))
                    for c, n, g in zip(calls, nonces, gas, strict=True)
                ]
            except BaseException:
                self.nonces.release(nonces)
                raise
            todo = pending
            for _attempt in range(3):
                try:
                    results = self.rpc.send_raw_many([p.raw for p in todo])
                except RetryableError as exc:
                    # Signed and maybe received: waiting broadcasts them again until they are mined.
                    results = [exc] * len(todo)
                todo = self._absorb_send_results(todo, results)
                if not todo:
                    break
                # Their nonces were taken by transactions we did not send: sign them again with fresh ones.
                self.nonces.resync()
                self.stats.resynced += 1
                fresh = self.nonces.reserve(len(todo))
                logger.info("%d nonce(s) already taken; signed again from nonce %d", len(todo), fresh.start)
                for p, n in zip(todo, fresh, strict=True):
                    p.nonce = n
                    p.raw = self._sign(p.call, n, p.gas, p.max_fee, p.priority_fee)
            else:
                for p in todo:
                    p.error = PermanentError(f"no free nonce for {self.address} after 3 resynchronisations")
            self._fill_gaps(pending)
        self.stats.submitted += sum(1 for p in pending if p.error is None)
        if len(pending) == 1 and pending[0].error is not None:
            raise pending[0].error
        return pending

    def _wait_for_room(self, count: int) -> None:
        """Holds a submission back while more than ``max_in_flight`` of ours would be waiting to be mined."""
        deadline = self._clock() + self.policy.replace_after
        while (next_nonce := self.nonces.next_nonce) is not None:
            in_flight = next_nonce - self.rpc.transaction_count(self.address, "latest")
            if in_flight + count <= self.policy.max_in_flight:
                return
            if self._clock() > deadline:
                logger.warning("%d transactions in flight and the node mines none; sending anyway", in_flight)
                return
            time.sleep(self.policy.poll_interval)

    def _absorb_send_results(
        self, pending: list[PendingTransaction], results: list[bytes | ChainError]
    ) -> list[PendingTransaction]:
        """Records each broadcast; returns the transactions whose nonce was already taken."""
        taken = []
        refused = [p for p, r in zip(pending, results, strict=True) if isinstance(r, NonceTooLow)]
        # "Nonce too low" for a transaction broadcast again (after a timeout) may mean that its own first
        # copy was mined: only a nonce held by some other transaction is really taken.
        receipts = self.rpc.receipts([_tx_hash(p.raw) for p in refused])
        ours = {id(p) for p, r in zip(refused, receipts, strict=True) if r is not None}
        for p, result in zip(pending, results, strict=True):
            p.last_broadcast = self._clock()
            if isinstance(result, NonceTooLow | ReplacementUnderpriced) and id(p) not in ours:
                taken.append(p)
                continue
            p.hashes.append(_tx_hash(p.raw))
            if isinstance(result, bytes | AlreadyKnown) or id(p) in ours:
                continue
            if isinstance(result, RetryableError):
                # The node may or may not have it; ``wait`` broadcasts it again if it never shows up.
                logger.warning("broadcast of nonce %d failed (%s); will retry while waiting", p.nonce, result)
                continue
            p.error = result
        return taken

    def _fill_gaps(self, pending: list[PendingTransaction]) -> None:
        """Refused transactions leave holes in the nonce sequence that would stall every later one: each
        hole goes to a zero-value transfer to ourselves (if nothing after it went out, the nonce is free)."""
        refused = [p for p in pending if p.error is not None]
        if not refused:
            return
        last_sent = max((p.nonce for p in pending if p.error is None), default=-1)
        for p in refused:
            if p.nonce > last_sent:
                continue
            filler = Call(to=self.address, gas=21_000)
            raw = self._sign(filler, p.nonce, 21_000, p.max_fee, p.priority_fee)
            result = self.rpc.send_raw_many([raw])[0]
            if isinstance(result, ChainError) and not isinstance(result, AlreadyKnown):
                logger.error("could not fill nonce %d (%s); resynchronising", p.nonce, result)
        self.nonces.resync()

    # ------------------------------------------------------------------ waiting

    def wait_all(
        self, pending: Sequence[PendingTransaction], timeout: float | None = None
    ) -> list[Receipt | ChainError]:
        """Waits for every transaction; each item is its confirmed receipt or its error (a decoded revert)."""
        timeout = self.policy.timeout if timeout is None else timeout
        deadline = self._clock() + timeout
        results: dict[int, Receipt | ChainError] = {}
        outstanding = list(pending)
        for p in pending:
            if p.error is not None:
                results[id(p)] = p.error
        while True:
            outstanding = [p for p in outstanding if id(p) not in results]
            if not outstanding:
                break
            try:
                progressed = self._poll(outstanding, results)
            except RetryableError as exc:  # the node is down or busy: keep waiting
                logger.warning("waiting for receipts: %s", exc)
                progressed = False
            if self._clock() > deadline:
                for p in outstanding:
                    if id(p) not in results:
                        results[id(p)] = TransactionTimeout(p, timeout)
                break
            if not progressed:
                time.sleep(self.policy.poll_interval)
        return [results[id(p)] for p in pending]

    def _poll(self, outstanding: list[PendingTransaction], results: dict[int, Receipt | ChainError]) -> bool:
        progressed = False
        # One cheap question first: how many of our nonces are used? Receipts are fetched only for those.
        mined_count = self.rpc.transaction_count(self.address, "latest")
        unmined = [p for p in outstanding if p.mined is None and p.nonce < mined_count]
        hashes = [h for p in unmined for h in p.hashes]
        # Rpc splits a long list into JSON-RPC batches of its own size.
        found = {h: r for h, r in zip(hashes, self.rpc.receipts(hashes), strict=True) if r is not None}
        for p in unmined:
            receipt = next((found[h] for h in p.hashes if h in found), None)
            if receipt is not None:
                p.mined = receipt
                progressed = True
        if self.policy.confirmations > 0 and any(p.mined for p in outstanding):
            head = self.rpc.block_number()
        else:
            head = None
        now = self._clock()
        for p in outstanding:
            if p.mined is not None:
                if head is not None and head - p.mined.block_number < self.policy.confirmations:
                    continue
                if head is not None and self.rpc.block_hash(p.mined.block_number) != p.mined.block_hash:
                    p.mined = None  # reorganised away: it will be found again or rebroadcast
                    continue
                results[id(p)] = self._settle(p, p.mined)
                progressed = True
        due = [
            p
            for p in outstanding
            if p.mined is None
            and id(p) not in results
            and now - p.last_broadcast >= self.policy.replace_after
        ]
        if due:
            self._replace(due, results, mined_count)
        return progressed

    def _settle(self, p: PendingTransaction, receipt: Receipt) -> Receipt | ChainError:
        p.receipt = receipt
        if receipt.succeeded:
            return receipt
        self.stats.reverted += 1
        try:
            self.rpc.call({**_call_tx(self.address, p.call), "gas": p.gas}, receipt.block_number)
        except ContractRevert as revert:
            return revert
        except ChainError as exc:
            return exc
        return TransactionFailed(receipt)

    def _replace(
        self, due: list[PendingTransaction], results: dict[int, Receipt | ChainError], mined_count: int
    ) -> None:
        """``due`` were not mined in time: each is signed again with its fees bumped (same nonce), or, at
        the fee cap, broadcast again as it is; one whose nonce went to a transaction we did not send is
        submitted again under a new nonce."""
        with self.nonces.lock:
            used = [p for p in due if p.nonce < mined_count]
            if used:
                # The nonce is used. If none of our versions holds it, a transaction we did not send does.
                hashes = [h for p in used for h in p.hashes]
                mined_hashes = {h for h, r in zip(hashes, self.rpc.receipts(hashes), strict=True) if r}
                for p in used:
                    if not mined_hashes.intersection(p.hashes):
                        try:
                            self._resubmit(p)
                        except PermanentError as exc:
                            results[id(p)] = exc
            again = [p for p in due if p.nonce >= mined_count]
            if not again:
                return
            max_fee, tip = self.current_fees()
            for p in again:
                bumped_fee = Wei(-(-p.max_fee * BUMP_NUMERATOR // BUMP_DENOMINATOR))
                bumped_tip = Wei(-(-p.priority_fee * BUMP_NUMERATOR // BUMP_DENOMINATOR))
                if bumped_fee <= self.fees.max_fee_cap:
                    p.max_fee, p.priority_fee = Wei(max(bumped_fee, max_fee)), Wei(max(bumped_tip, tip))
                    p.raw = self._sign(p.call, p.nonce, p.gas, p.max_fee, p.priority_fee)
                    self.stats.replaced += 1
                    logger.info(
                        "nonce %d not mined after %.0fs: replacing it with maxFee %d, tip %d",
                        p.nonce,
                        self.policy.replace_after,
                        p.max_fee,
                        p.priority_fee,
                    )
                else:
                    self.stats.rebroadcast += 1
                    logger.info("nonce %d not mined and at the fee cap: broadcasting it again", p.nonce)
                new_hash = _tx_hash(p.raw)
                if new_hash not in p.hashes:
                    p.hashes.append(new_hash)
                p.last_broadcast = self._clock()
            try:
                sent = self.rpc.send_raw_many([p.raw for p in again])
            except RetryableError as exc:
                logger.info("broadcasting %d replacement(s) failed (%s); will try again", len(again), exc)
                return
            for p, result in zip(again, sent, strict=True):
                # Nonce too low: a version was mined meanwhile (the next poll finds it). Underpriced, known,
                # unreachable: the next round tries again.
                if isinstance(result, ChainError) and not isinstance(
                    result, NonceTooLow | ReplacementUnderpriced | AlreadyKnown | RetryableError
                ):
                    results[id(p)] = result

    def _resubmit(self, p: PendingTransaction) -> None:
        """Sends ``p``'s call again under a new nonce (its old one went to a transaction we did not send)."""
        self.nonces.resync()
        self.stats.resynced += 1
        self.stats.resubmitted += 1
        (nonce,) = self.nonces.reserve(1)
        max_fee, tip = self.current_fees()
        p.nonce, p.max_fee, p.priority_fee = nonce, max_fee, tip
        p.raw = self._sign(p.call, nonce, p.gas, max_fee, tip)
        p.hashes.append(_tx_hash(p.raw))
        p.last_broadcast = self._clock()
        logger.info("nonce used by another transaction: call resubmitted with nonce %d", nonce)
        result = self.rpc.send_raw_many([p.raw])[0]
        if isinstance(result, ChainError) and not isinstance(result, AlreadyKnown | RetryableError):
            raise result

    # ------------------------------------------------------------------ conveniences

    def transact(self, call: Call, timeout: float | None = None) -> Receipt:
        """Submits ``call`` and waits for its receipt."""
        return self.submit(call).wait(timeout)

    def transact_many(
        self, calls: Sequence[Call], timeout: float | None = None
    ) -> list[Receipt | ChainError]:
        return self.wait_all(self.submit_many(calls), timeout)

    def __getstate__(self) -> Any:  # pragma: no cover - a sender holds a signer; never pickle it
        raise TypeError("a Sender cannot be pickled")


def _call_tx(sender: Address, call: Call) -> dict[str, Any]:
    tx: dict[str, Any] = {"from": sender, "data": call.data, "value": call.value}
    if call.to is not None:
        tx["to"] = call.to
    return tx


def _tx_hash(raw: bytes) -> bytes:
    from eth_utils.crypto import keccak

    return bytes(keccak(raw))
