"""The batcher: sends one partner key's operations from the outbox to the chain, each exactly once.

One batcher runs per partner operator key and holds a lease for it (a PostgreSQL advisory lock; a
``flock`` beside a SQLite database), so it alone uses the key's nonces; API replicas only write the outbox.
Each :meth:`Batcher.step`:

1. releases the partner's pending operations whose time has come (``pending`` → ``accepted``);
2. resolves what an earlier run left unfinished (a crash, a timeout): a batch or operation that was stored
   but has no receipt is sent again, exactly as it was stored;
3. groups the due issuances (purchases, engagements, adjustments) by (reason, rule hash) into batches of
   at most ``max_items``, and **stores each batch's composition (its operations, in order, and its Merkle
   root) before it is broadcast**; sends them (``issueBatch``) and then the due returns (``reverseIssuance``),
   redemptions (``redeem``), refunds (``refundRedemption``) and consent revocations (``cancelConsent``), one
   transaction each, with consecutive nonces;
4. waits for the receipts and marks each operation confirmed (block, the ledger entry's ``seq``) or failed
   with a typed reason (:data:`~api._outbox.FAILURES`).

Each of these state changes stores its webhook event (``api/_webhooks.py``: ``points.pending_released``,
``points.issued``, ``points.redeemed``, ``points.reversed``, ``operation.failed``) in the same transaction,
when a webhook of the partner subscribes to it: the change and its event are committed together or not at
all, and a change seen again (after a crash) is the same event.

Why a crash never double-issues: a re-sent batch carries the same items, so the same Merkle root, which is
its reference on chain, usable once per partner; a re-sent return, redemption or refund carries the same
reference. When the ledger refuses one as already used (before sending, in ``eth_call``, or mined after its
twin), the batcher finds the entry that used it in the logs and marks the operation confirmed by that
entry: "already done", not a failure. Any other refusal is checked the same way first (a redemption sent
twice is refused for its consumed nonce), so only a refusal with no entry behind it fails the operation.

Group commit: a step takes every due operation, so under load batches fill up to ``max_items``; when
idle, the loop polls every ``flush_interval_s`` (both in Settings: ``batch_max_items``,
``batch_flush_interval_s``), which bounds how long an accepted operation waits to be sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from chain import (
    ChainError,
    ConsentCancellation,
    ContractRevert,
    EntryNotFound,
    Ledger,
    PartnerId,
    PendingTransaction,
    Points,
    ReasonCode,
    Receipt,
    RedemptionConsent,
    RetryableError,
    TransactionTimeout,
)
from indexer._db import Lease

from ._outbox import FAILURES, ISSUING_KINDS
from ._tables import Batch, Operation
from ._webhooks import operation_events, released_events

__all__ = ["Batcher", "BatcherConfig", "StepReport"]

logger = logging.getLogger(__name__)

ZERO_HASH: Final = bytes(32)
#: Operations sent one transaction each, and the ledger entry that confirms each (its reference field).
_SINGLE: Final[dict[str, tuple[str, str]]] = {
    "return": ("IssuanceReversed", "returnRef"),
    "redemption": ("PointsRedeemed", "ref"),
    "refund": ("RedemptionRefunded", "refundRef"),
    "revocation": ("ConsentRevoked", "nonce"),
}


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    #: items per ``issueBatch`` at most
    max_items: int = 200
    #: seconds the loop waits when there was nothing to send
    flush_interval_s: float = 0.2
    #: batches (and single transactions) sent per step before waiting for their receipts
    max_in_flight: int = 16


@dataclass(frozen=True, slots=True)
class StepReport:
    released: int = 0
    sent: int = 0
    confirmed: int = 0
    failed: int = 0

    @property
    def idle(self) -> bool:
        return self.released == self.sent == self.confirmed == self.failed == 0


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A transaction of this step: a batch (``batch_id``) or one operation (``operation_id``)."""

    batch_id: int | None
    operation_id: int | None
    pending: PendingTransaction


class Batcher:
    """Sends partner ``partner_id``'s operations with ``ledger``'s sender (the partner's operator key)."""

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        partner_id: int,
        *,
        config: BatcherConfig = BatcherConfig(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ledger.sender is None:
            raise ValueError("the batcher's ledger needs a sender (the partner's operator key)")
        self.engine = engine
        self.ledger = ledger
        self.partner_id = partner_id
        self.config = config
        self.clock = clock
        self.operator = to_checksum_address(ledger.sender.address)

    # ------------------------------------------------------------------ running

    def lease(self) -> Lease:
        """The lease of this partner key (one batcher per key, whichever process it runs in)."""
        name = f"batcher:{self.ledger.address}:{self.operator}".lower()
        return Lease(self.engine, name, tag=f"batcher-{self.operator.lower()}")

    def run(self, stop: threading.Event) -> None:
        """Holds the key's lease and sends until ``stop`` is set."""
        lease = self.lease()
        lease.acquire()
        try:
            while not stop.is_set():
                try:
                    report = self.step()
                except RetryableError as exc:  # the node is down or busy: try again after a pause
                    logger.warning("batcher for partner %s: %s", self.partner_id, exc)
                    report = StepReport()
                if report.idle:
                    stop.wait(self.config.flush_interval_s)
        finally:
            lease.release()

    def drain(self, *, timeout: float = 60.0) -> None:
        """Steps until nothing due is left to send (tests, ``--once``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step()
            if not self._has_due_work():
                return
        raise TimeoutError(f"the batcher for partner {self.partner_id} did not drain in {timeout} s")

    def step(self) -> StepReport:
        now = int(self.clock())
        released = self._release_due(now)
        results: list[_Outgoing | bool | None] = [
            self._send_again(kind, key, now) for kind, key in self._unfinished()
        ]
        room = max(self.config.max_in_flight - len(results), 1)
        results += [self._send_batch(batch_id, now) for batch_id in self._compose(now, room)]
        results += [self._send_single(op_id, now) for op_id in self._due_singles(room)]
        outgoing = [r for r in results if isinstance(r, _Outgoing)]
        confirmed = sum(1 for r in results if r is True)
        failed = sum(1 for r in results if r is False)
        ok, bad = self._await(outgoing)
        return StepReport(released, len(outgoing), confirmed + ok, failed + bad)

    # ------------------------------------------------------------------ database

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _release_due(self, now: int) -> int:
        with self._session() as db:
            released = list(
                db.scalars(
                    update(Operation)
                    .where(
                        Operation.partner_id == self.partner_id,
                        Operation.state == "pending",
                        Operation.release_at <= now,
                    )
                    .values(state="accepted", updated_at=now)
                    .returning(Operation.id)
                )
            )
            released_events(db, self.partner_id, released, now=now)
            return len(released)

    def _has_due_work(self) -> bool:
        with self._session() as db:
            return (
                db.scalar(
                    select(Operation.id)
                    .where(
                        Operation.partner_id == self.partner_id,
                        Operation.state.in_(("accepted", "submitted")),
                    )
                    .limit(1)
                )
                is not None
                or db.scalar(
                    select(Batch.id)
                    .where(
                        Batch.partner_id == self.partner_id,
                        Batch.operator == self.operator.lower(),
                        Batch.state.in_(("built", "submitted")),
                    )
                    .limit(1)
                )
                is not None
            )

    def _unfinished(self) -> list[tuple[str, int]]:
        """Batches and single operations an earlier step stored or sent but did not see through."""
        with self._session() as db:
            batches = db.scalars(
                select(Batch.id)
                .where(
                    Batch.partner_id == self.partner_id,
                    Batch.operator == self.operator.lower(),
                    Batch.state.in_(("built", "submitted")),
                )
                .order_by(Batch.id)
            ).all()
            singles = db.scalars(
                select(Operation.id)
                .where(
                    Operation.partner_id == self.partner_id,
                    Operation.state == "submitted",
                    Operation.batch_id.is_(None),
                )
                .order_by(Operation.id)
            ).all()
        return [("batch", b) for b in batches] + [("single", s) for s in singles]

    def _compose(self, now: int, room: int) -> list[int]:
        """Stores the next batches (composition and root) and returns their ids, in sending order."""
        limit = self.config.max_items * room
        with self._session() as db:
            ops = db.scalars(
                select(Operation)
                .where(
                    Operation.partner_id == self.partner_id,
                    Operation.state == "accepted",
                    Operation.kind.in_(ISSUING_KINDS),
                    Operation.batch_id.is_(None),
                )
                .order_by(Operation.id)
                .limit(limit)
            ).all()
            groups: dict[tuple[int, bytes], list[Operation]] = {}
            for op in ops:
                groups.setdefault((op.reason, bytes(op.rule_hash or ZERO_HASH)), []).append(op)
            ids = []
            for (reason, rule_hash), members in groups.items():
                for start in range(0, len(members), self.config.max_items):
                    chunk = members[start : start + self.config.max_items]
                    tree = Ledger.batch_tree(
                        [op.member_address for op in chunk],
                        [Points(op.points) for op in chunk],
                        [bytes(op.ref) for op in chunk],
                    )
                    batch = Batch(
                        partner_id=self.partner_id,
                        operator=self.operator.lower(),
                        reason=reason,
                        rule_hash=rule_hash,
                        root=tree.root,
                        count=len(chunk),
                        total=sum(op.points for op in chunk),
                        state="built",
                        created_at=now,
                    )
                    db.add(batch)
                    db.flush()
                    for index, op in enumerate(chunk):
                        op.batch_id = batch.id
                        op.batch_index = index
                        op.updated_at = now
                    ids.append(batch.id)
            return ids

    def _due_singles(self, room: int) -> list[int]:
        with self._session() as db:
            return list(
                db.scalars(
                    select(Operation.id)
                    .where(
                        Operation.partner_id == self.partner_id,
                        Operation.state == "accepted",
                        Operation.kind.in_(tuple(_SINGLE)),
                    )
                    .order_by(Operation.id)
                    .limit(room)
                ).all()
            )

    # ------------------------------------------------------------------ sending

    def _batch_items(self, db: Session, batch_id: int) -> tuple[Batch, list[Operation]]:
        batch = db.get_one(Batch, batch_id)
        ops = list(
            db.scalars(
                select(Operation).where(Operation.batch_id == batch_id).order_by(Operation.batch_index)
            ).all()
        )
        return batch, ops

    def _send_batch(self, batch_id: int, now: int) -> _Outgoing | bool:
        with self._session() as db:
            batch, ops = self._batch_items(db, batch_id)
            recipients = [op.member_address for op in ops]
            amounts = [Points(op.points) for op in ops]
            refs = [bytes(op.ref) for op in ops]
            reason, rule_hash = ReasonCode(batch.reason), bytes(batch.rule_hash)
        try:
            pending = self.ledger.issue_batch(recipients, amounts, refs, reason, rule_hash)
        except ContractRevert as refused:
            return self._refused_batch(batch_id, refused, now)
        with self._session() as db:
            batch, ops = self._batch_items(db, batch_id)
            batch.state, batch.tx_hash, batch.submitted_at = "submitted", pending.hash, now
            for op in ops:
                op.state, op.tx_hash, op.updated_at = "submitted", pending.hash, now
        return _Outgoing(batch_id, None, pending)

    def _send_single(self, op_id: int, now: int) -> _Outgoing | bool | None:
        with self._session() as db:
            op = db.get_one(Operation, op_id)
            try:
                call = self._single_call(db, op)
            except EntryNotFound as missing:
                return self._fail(db, op, "issuance-not-found", str(missing), now)
            except _NotYet:
                return None  # waits for the operation it acts on (tried again next step)
        try:
            pending = call()
        except ContractRevert as refused:
            return self._refused_single(op_id, refused, now)
        with self._session() as db:
            op = db.get_one(Operation, op_id)
            op.state, op.tx_hash, op.updated_at = "submitted", pending.hash, now
        return _Outgoing(None, op_id, pending)

    def _single_call(self, db: Session, op: Operation) -> Callable[[], PendingTransaction]:
        detail: dict[str, Any] = json.loads(op.detail or "{}")
        partner = PartnerId(self.partner_id)
        if op.kind == "redemption":
            consent = RedemptionConsent(
                customer=to_checksum_address(detail["customer"]),
                partner_id=partner,
                amount=Points(int(detail["amount"])),
                ref=bytes(HexBytes(detail["ref"])),
                nonce=int(detail["nonce"]),
                deadline=int(detail["deadline"]),
                signature=bytes(HexBytes(detail["signature"])),
            )
            return lambda: self.ledger.redeem(consent)
        if op.kind == "revocation":
            cancellation = ConsentCancellation(
                to_checksum_address(detail["customer"]),
                int(detail["nonce"]),
                bytes(HexBytes(detail["signature"])),
            )
            return lambda: self.ledger.cancel_consent(cancellation)
        parent = db.get(Operation, op.parent_id) if op.parent_id is not None else None
        if parent is None:
            raise EntryNotFound(f"operation {op.id} acts on no operation")
        if parent.state != "confirmed" or parent.block_number is None:
            if parent.state in ("failed", "cancelled"):
                raise EntryNotFound(f"operation {parent.id} it acts on is {parent.state}")
            raise _NotYet
        block = parent.block_number
        ref = bytes(op.ref)
        amount = Points(op.points)
        if op.kind == "return":
            root = self._issuance_ref(db, parent)
            records = self.ledger.find_issuances(
                partner, root, customer=parent.member_address, from_block=block, to_block=block
            )
            item = next((r for r in records if r.item_ref == bytes(parent.ref)), None)
            if item is None:
                raise EntryNotFound(f"no item 0x{bytes(parent.ref).hex()} in the batch 0x{root.hex()}")
            return lambda: self.ledger.reverse_issuance(item, amount, ref)
        record = self.ledger.find_redemption(
            partner, bytes(parent.ref), customer=parent.member_address, from_block=block, to_block=block
        )
        return lambda: self.ledger.refund_redemption(record, amount, ref)

    @staticmethod
    def _issuance_ref(db: Session, purchase: Operation) -> bytes:
        if purchase.batch_id is None:
            return bytes(purchase.ref)
        return bytes(db.get_one(Batch, purchase.batch_id).root)

    def _send_again(self, kind: str, key: int, now: int) -> _Outgoing | bool | None:
        """A batch or operation left unfinished: its receipt if it has one, else the same thing again."""
        with self._session() as db:
            row = db.get_one(Batch, key) if kind == "batch" else db.get_one(Operation, key)
            tx_hash = None if row.tx_hash is None else bytes(row.tx_hash)
        if tx_hash is not None:
            receipt = self.ledger.rpc.receipts([tx_hash])[0]
            if receipt is not None:
                return self._settle(
                    key if kind == "batch" else None, None if kind == "batch" else key, receipt
                )
        logger.info("sending %s %s again (no receipt of its last transaction)", kind, key)
        if kind == "batch":
            return self._send_batch(key, now)
        return self._send_single(key, now)

    # ------------------------------------------------------------------ receipts

    def _await(self, outgoing: Sequence[_Outgoing]) -> tuple[int, int]:
        if not outgoing:
            return 0, 0
        sender = self.ledger.sender
        assert sender is not None
        results = sender.wait_all([o.pending for o in outgoing])
        ok = bad = 0
        for o, result in zip(outgoing, results, strict=True):
            if isinstance(result, TransactionTimeout):
                logger.warning("no receipt yet for 0x%s: checked again next step", o.pending.hash.hex())
                continue
            if isinstance(result, Receipt):
                done = self._settle(o.batch_id, o.operation_id, result)
            elif isinstance(result, ContractRevert):
                now = int(self.clock())
                if o.batch_id is not None:
                    done = self._refused_batch(o.batch_id, result, now)
                else:
                    assert o.operation_id is not None
                    done = self._refused_single(o.operation_id, result, now)
            else:
                logger.warning("transaction 0x%s: %s (checked again next step)", o.pending.hash.hex(), result)
                continue
            if done:
                ok += 1
            else:
                bad += 1
        return ok, bad

    def _settle(self, batch_id: int | None, op_id: int | None, receipt: Receipt) -> bool:
        """Marks what ``receipt`` mined as confirmed (True), or handles its revert (False when failed)."""
        now = int(self.clock())
        if receipt.status != 1:
            refused = ContractRevert("reverted", [])
            if batch_id is not None:
                return self._refused_batch(batch_id, refused, now)
            assert op_id is not None
            return self._refused_single(op_id, refused, now)
        entries = [e for e in (self.ledger.decode_entry(log) for log in receipt.logs) if e is not None]
        with self._session() as db:
            if batch_id is not None:
                batch, ops = self._batch_items(db, batch_id)
                header = next(
                    (
                        v
                        for name, v in entries
                        if name == "PointsBatchIssued" and v["ref"] == bytes(batch.root)
                    ),
                    None,
                )
                if header is None:
                    raise ChainError(
                        f"transaction 0x{receipt.transaction_hash.hex()} is not batch {batch_id}"
                    )
                self._confirm_batch(
                    db, batch, ops, receipt.transaction_hash, receipt.block_number, header, now
                )
                return True
            assert op_id is not None
            op = db.get_one(Operation, op_id)
            event, field = _SINGLE[op.kind]
            want = self._single_key(op)
            seq = next((v["seq"] for name, v in entries if name == event and v[field] == want), None)
            self._confirm(db, op, receipt.transaction_hash, receipt.block_number, seq, now)
            return True

    @staticmethod
    def _single_key(op: Operation) -> Any:
        if op.kind == "revocation":
            return int(json.loads(op.detail or "{}")["nonce"])
        return bytes(op.ref)

    def _confirm_batch(
        self,
        db: Session,
        batch: Batch,
        ops: Sequence[Operation],
        tx_hash: bytes,
        block_number: int,
        header: dict[str, Any],
        now: int,
    ) -> None:
        batch.state, batch.tx_hash, batch.block_number, batch.finished_at = (
            "confirmed",
            tx_hash,
            block_number,
            now,
        )
        first = int(header["seq"]) + 1
        for op in ops:
            assert op.batch_index is not None
            self._confirm(db, op, tx_hash, block_number, first + op.batch_index, now, emit=False)
        operation_events(db, ops, now=now)

    @staticmethod
    def _confirm(
        db: Session,
        op: Operation,
        tx_hash: bytes,
        block_number: int,
        seq: int | None,
        now: int,
        *,
        emit: bool = True,
    ) -> None:
        """Marks ``op`` confirmed and (``emit``) stores its webhook event in the same transaction."""
        op.state, op.tx_hash, op.block_number, op.seq = "confirmed", tx_hash, block_number, seq
        op.failure = op.failure_detail = None
        op.updated_at = now
        if emit:
            operation_events(db, [op], now=now)

    @staticmethod
    def _fail(db: Session, op: Operation, failure: str, detail: str, now: int, *, emit: bool = True) -> bool:
        """Marks ``op`` failed and (``emit``) stores its event ``operation.failed`` with it."""
        op.state, op.failure, op.failure_detail, op.updated_at = "failed", failure, detail[:2000], now
        logger.warning("operation %s failed: %s (%s)", op.id, failure, detail)
        if emit:
            operation_events(db, [op], now=now)
        return False

    # ------------------------------------------------------------------ refusals: already done, or failed

    def _refused_batch(self, batch_id: int, refused: ContractRevert, now: int) -> bool:
        with self._session() as db:
            batch, ops = self._batch_items(db, batch_id)
            root = bytes(batch.root)
        found = next(
            (e for e in self._entries("PointsBatchIssued") if bytes(e.values["ref"]) == root),
            None,
        )
        with self._session() as db:
            batch, ops = self._batch_items(db, batch_id)
            if found is not None:
                logger.info("batch %s was already issued (0x%s)", batch_id, found.tx_hash.hex())
                self._confirm_batch(db, batch, ops, found.tx_hash, found.block_number, found.values, now)
                return True
            failure = FAILURES.get(refused.name, "rejected")
            batch.state, batch.failure, batch.finished_at = "failed", failure, now
            for op in ops:
                self._fail(db, op, failure, str(refused), now, emit=False)
            operation_events(db, ops, now=now)
            return False

    def _refused_single(self, op_id: int, refused: ContractRevert, now: int) -> bool:
        with self._session() as db:
            op = db.get_one(Operation, op_id)
            event, field = _SINGLE[op.kind]
            want = self._single_key(op)
        found = next((e for e in self._entries(event) if e.values[field] == want), None)
        with self._session() as db:
            op = db.get_one(Operation, op_id)
            if found is not None:
                logger.info("operation %s was already done (0x%s)", op_id, found.tx_hash.hex())
                self._confirm(db, op, found.tx_hash, found.block_number, int(found.values["seq"]), now)
                return True
            return self._fail(db, op, FAILURES.get(refused.name, "rejected"), str(refused), now)

    def _entries(self, event: str) -> list[Any]:
        if event == "ConsentRevoked":  # not keyed by partner: nothing to look up by reference
            return []
        return list(self.ledger.find_entries(event, PartnerId(self.partner_id)))


class _NotYet(Exception):
    """The operation acts on one that is not confirmed yet."""
