"""``kill -9`` of the batcher at each step of its work, then a restart: every accepted operation ends
confirmed exactly once, none lost, none doubled (anvil; SQLite and PostgreSQL).

The batcher runs in a process of its own (tests/batcher_worker.py) that dies by SIGKILL at the chosen point;
a fresh batcher then finishes the work. "Exactly once" is checked on the chain itself: one
``PointsIssuedInBatch`` entry per customer, and each balance equal to what was accepted."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from batcher_worker import CRASH_POINTS
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_batcher import Outbox

from api._db import migrate_all
from api._tables import Batch, Operation
from conftest import ACTIVE, AnvilNode, Ledger, chain_ledger, mirror_engine

pytestmark = pytest.mark.anvil

WORKER = Path(__file__).with_name("batcher_worker.py")


@pytest.fixture
def outbox(anvil_ledger: Ledger, database: str) -> Outbox:
    engine = mirror_engine(database)
    migrate_all(engine)
    return Outbox(anvil_ledger, engine)


def _item_entries(ledger: Ledger, address: str) -> int:
    event = ledger.contract.events.PointsIssuedInBatch
    logs = event.get_logs(from_block=ledger.deployment_block, argument_filters={"to": address})
    return len(logs)


@pytest.mark.parametrize("crash", CRASH_POINTS)
def test_a_batcher_killed_at_any_step_ends_with_each_operation_confirmed_once(
    outbox: Outbox, anvil_node: AnvilNode, database: str, crash: str
) -> None:
    people = [outbox.ledger.w3.to_checksum_address("0x" + secrets.token_hex(20)) for _ in range(5)]
    ids = [outbox.add(p, 10 + i) for i, p in enumerate(people)]
    env = dict(
        os.environ,
        WORKER_DATABASE_URL=database,
        WORKER_RPC_URL=anvil_node.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
        WORKER_LEDGER=outbox.ledger.address,
        WORKER_PARTNER=str(ACTIVE),
        WORKER_OPERATOR=outbox.ledger.actors.partner,
        WORKER_CRASH=crash,
        PYTHONPATH=os.pathsep.join([str(WORKER.parent), str(WORKER.parent.parent)]),
    )
    worker = subprocess.run(
        [sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=120
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-3000:]

    outbox.batcher(outbox.ledger.actors.partner).drain()

    assert {outbox.op(i).state for i in ids} == {"confirmed"}
    assert [_item_entries(outbox.ledger, p) for p in people] == [1] * 5
    assert [int(outbox.ledger.call("balanceOf", p)) for p in people] == [10 + i for i in range(5)]
    with Session(outbox.engine) as db:
        batches = db.scalars(select(Batch)).all()
        assert [b.state for b in batches] == ["confirmed"]  # the same batch, sent again if need be
        seqs = db.scalars(select(Operation.seq)).all()
    assert len(set(seqs)) == 5 and None not in seqs
    assert chain_ledger(outbox.ledger, outbox.ledger.actors.partner).ledger_sequence() >= max(seqs)
