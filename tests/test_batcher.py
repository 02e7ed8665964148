"""The batcher sends the outbox to a real chain (anvil), on SQLite and PostgreSQL: every accepted operation
ends confirmed exactly once, even when an earlier run stopped between storing, broadcasting and seeing a
receipt; a refusal is a typed failure that touches nothing else."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api._batcher import Batcher, BatcherConfig
from api._db import migrate_all
from api._outbox import OperationDraft, enqueue
from api._tables import Batch, Operation
from chain import Points, ReasonCode
from chain._ledger import Ledger as ChainLedger
from conftest import (
    ACTIVE,
    ISSUE_ONLY,
    AnvilNode,
    Ledger,
    chain_ledger,
    mirror_engine,
)


@dataclass
class Outbox:
    ledger: Ledger
    engine: Engine

    def now(self) -> int:
        return int(self.ledger.w3.eth.get_block("latest")["timestamp"])

    def add(
        self,
        address: str,
        points: int,
        *,
        partner_id: int = ACTIVE,
        kind: str = "purchase",
        reason: int = 1,
        key: str | None = None,
        release_at: int | None = None,
        parent_id: int | None = None,
    ) -> int:
        with Session(self.engine) as db, db.begin():
            op, created = enqueue(
                db,
                OperationDraft(
                    partner_id=partner_id,
                    kind=kind,  # type: ignore[arg-type]
                    natural_key=key or f"order-{secrets.token_hex(6)}",
                    member_address=address,
                    points=points,
                    reason=reason,
                    request={"points": points},
                    release_at=release_at,
                    parent_id=parent_id,
                ),
                now=self.now(),
            )
            assert created
            return op.id

    def op(self, op_id: int) -> Operation:
        with Session(self.engine) as db:
            return db.get_one(Operation, op_id)

    def states(self) -> dict[str, int]:
        with Session(self.engine) as db:
            ops = db.scalars(select(Operation)).all()
            out: dict[str, int] = {}
            for op in ops:
                out[op.state] = out.get(op.state, 0) + 1
            return out

    def batcher(self, actor: str, partner_id: int = ACTIVE, **config: int) -> Batcher:
        return Batcher(
            self.engine,
            chain_ledger(self.ledger, actor),
            partner_id,
            config=BatcherConfig(**config),  # type: ignore[arg-type]
            clock=self.now,
        )


@pytest.fixture
def outbox(anvil_ledger: Ledger, database: str) -> Iterator[Outbox]:
    engine = mirror_engine(database)
    migrate_all(engine)
    yield Outbox(anvil_ledger, engine)


def _customers(n: int) -> list[str]:
    return ["0x" + secrets.token_hex(20) for _ in range(n)]


def _balance(ledger: Ledger, address: str) -> int:
    return int(ledger.call("balanceOf", ledger.w3.to_checksum_address(address)))


def test_due_issuances_go_out_in_batches_and_are_confirmed_with_their_entries(outbox: Outbox) -> None:
    people = _customers(17)
    ids = [outbox.add(p, 10 + i) for i, p in enumerate(people)]
    ids.append(outbox.add(people[0], 5, kind="engagement", reason=2))
    batcher = outbox.batcher(outbox.ledger.actors.partner, max_items=7)
    batcher.drain()
    assert outbox.states() == {"confirmed": 18}
    ops = [outbox.op(i) for i in ids]
    seqs = [op.seq for op in ops]
    assert len(set(seqs)) == 18 and all(s is not None for s in seqs)
    with Session(outbox.engine) as db:
        batches = db.scalars(select(Batch).order_by(Batch.id)).all()
    # 17 purchases in 7 + 7 + 3, and the review alone: grouped by (reason, rule hash)
    assert sorted((b.reason, b.count) for b in batches) == [(1, 3), (1, 7), (1, 7), (2, 1)]
    assert all(b.state == "confirmed" for b in batches)
    assert _balance(outbox.ledger, people[0]) == 10 + 5
    for i, p in enumerate(people[1:], start=1):
        assert _balance(outbox.ledger, p) == 10 + i
    # each item's entry is where the operation says: the batch header's seq + 1 + its index
    for op in ops:
        receipt = outbox.ledger.w3.eth.get_transaction_receipt(op.tx_hash)
        assert receipt["blockNumber"] == op.block_number


def test_a_batch_stored_but_never_broadcast_is_sent_by_the_next_run(outbox: Outbox) -> None:
    people = _customers(3)
    ids = [outbox.add(p, 7) for p in people]
    batcher = outbox.batcher(outbox.ledger.actors.partner)
    (batch_id,) = batcher._compose(outbox.now(), 4)  # stored, then the process died
    assert outbox.op(ids[0]).state == "accepted"
    outbox.batcher(outbox.ledger.actors.partner).drain()
    assert {outbox.op(i).state for i in ids} == {"confirmed"}
    assert [_balance(outbox.ledger, p) for p in people] == [7, 7, 7]
    with Session(outbox.engine) as db:
        assert db.get_one(Batch, batch_id).state == "confirmed"
        assert len(db.scalars(select(Batch)).all()) == 1


def test_a_batch_broadcast_before_the_crash_is_not_issued_twice(outbox: Outbox) -> None:
    people = _customers(4)
    ids = [outbox.add(p, 9) for p in people]
    first = outbox.batcher(outbox.ledger.actors.partner)
    (batch_id,) = first._compose(outbox.now(), 4)
    with Session(outbox.engine) as db:
        ops = db.scalars(
            select(Operation).where(Operation.batch_id == batch_id).order_by(Operation.batch_index)
        )
        items = [(op.member_address, Points(op.points), bytes(op.ref)) for op in ops]
    # broadcast and mined, but the process died before it recorded the transaction
    first.ledger.issue_batch(
        [a for a, _, _ in items], [p for _, p, _ in items], [r for _, _, r in items], ReasonCode(1)
    ).wait()
    outbox.batcher(outbox.ledger.actors.partner).drain()
    assert {outbox.op(i).state for i in ids} == {"confirmed"}
    assert [_balance(outbox.ledger, p) for p in people] == [9, 9, 9, 9]
    assert outbox.op(ids[0]).failure is None


def test_a_transaction_whose_receipt_was_never_seen_is_confirmed_from_it(outbox: Outbox) -> None:
    people = _customers(2)
    ids = [outbox.add(p, 3) for p in people]
    first = outbox.batcher(outbox.ledger.actors.partner)
    (batch_id,) = first._compose(outbox.now(), 4)
    sent = first._send_batch(batch_id, outbox.now())  # broadcast and recorded; died before the receipt
    assert not isinstance(sent, bool) and sent is not None
    assert outbox.op(ids[0]).state == "submitted"
    outbox.batcher(outbox.ledger.actors.partner).drain()
    assert {outbox.op(i).state for i in ids} == {"confirmed"}
    assert outbox.op(ids[0]).tx_hash == sent.pending.hash
    assert [_balance(outbox.ledger, p) for p in people] == [3, 3]


def test_pending_points_wait_for_their_release(outbox: Outbox, anvil_node: AnvilNode) -> None:
    (person,) = _customers(1)
    later = outbox.add(person, 50, release_at=outbox.now() + 3600)
    now = outbox.add(person, 5)
    batcher = outbox.batcher(outbox.ledger.actors.partner)
    batcher.drain()
    assert outbox.op(later).state == "pending" and outbox.op(now).state == "confirmed"
    assert _balance(outbox.ledger, person) == 5
    anvil_node.advance_time(3601)
    batcher.drain()
    assert outbox.op(later).state == "confirmed"
    assert _balance(outbox.ledger, person) == 55


def test_a_refusal_fails_with_a_typed_reason_and_touches_no_other_partner(
    outbox: Outbox,
) -> None:
    person, other = _customers(2)
    big = outbox.add(person, 10**12)  # beyond the partner's allowance
    fine = outbox.add(other, 4, partner_id=ISSUE_ONLY)
    outbox.batcher(outbox.ledger.actors.partner).drain()
    outbox.batcher(outbox.ledger.actors.issue_only, ISSUE_ONLY).drain()
    failed = outbox.op(big)
    assert (failed.state, failed.failure) == ("failed", "allowance-exhausted")
    assert "LedgerAllowanceExceeded" in (failed.failure_detail or "")
    assert outbox.op(fine).state == "confirmed"
    assert _balance(outbox.ledger, person) == 0 and _balance(outbox.ledger, other) == 4


def test_a_paused_ledger_fails_operations_as_ledger_paused(outbox: Outbox) -> None:
    (person,) = _customers(1)
    outbox.ledger.transact("pause", sender=outbox.ledger.actors.pauser)
    op = outbox.add(person, 4)
    outbox.batcher(outbox.ledger.actors.partner).drain()
    assert (outbox.op(op).state, outbox.op(op).failure) == ("failed", "ledger-paused")


def test_a_return_reverses_the_item_its_purchase_earned(outbox: Outbox) -> None:
    person, other = _customers(2)
    purchase = outbox.add(person, 30)
    outbox.add(other, 11)
    batcher = outbox.batcher(outbox.ledger.actors.partner)
    batcher.drain()
    ret = outbox.add(person, 12, kind="return", key="return-1", parent_id=purchase, reason=0)
    batcher.drain()
    done = outbox.op(ret)
    assert done.state == "confirmed", (done.failure, done.failure_detail)
    assert _balance(outbox.ledger, person) == 18 and _balance(outbox.ledger, other) == 11
    # a second run that sees the return again (its state lost) recognises it as done
    with Session(outbox.engine) as db, db.begin():
        db.execute(update(Operation).where(Operation.id == ret).values(state="accepted", tx_hash=None))
    batcher.drain()
    assert outbox.op(ret).state == "confirmed" and _balance(outbox.ledger, person) == 18


def test_the_operation_detail_is_json(outbox: Outbox) -> None:
    (person,) = _customers(1)
    op = outbox.add(person, 1)
    assert json.loads(outbox.op(op).request) == {"points": 1}
    assert isinstance(chain_ledger(outbox.ledger, outbox.ledger.actors.partner), ChainLedger)
