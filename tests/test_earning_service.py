"""The write path as deployed, on PostgreSQL: ``loyalty serve`` with two worker processes takes purchases
while one batcher sends them to anvil.

- 1,000 concurrent POSTs: every one accepted, every one confirmed on chain once, no nonce error reaches a
  client (only the batcher signs, and it alone holds the partner key's lease).
- The same Idempotency-Key sent concurrently: one operation, one issuance; the others are told it is in
  flight (409) or get the stored answer replayed.
- ``kill -9`` of the whole service in the middle of a stream of purchases, a restart, and the clients'
  retries with their keys: every order ends recorded once and issued once.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_scenario import scenario_chain
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api._batcher import Batcher
from api._db import migrate_all
from api._keys import create_key
from api._rulebook import activate, create_rule_set
from api._rules import RuleSet
from api._tables import Operation
from conftest import ACTIVE, POSTGRES_URL, AnvilNode, Ledger, chain_ledger, mirror, mirror_engine
from indexer import scratch_schema

pytestmark = pytest.mark.anvil

START_TIMEOUT_S = 60.0
RULES = RuleSet.model_validate({"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}})


@dataclass
class Till:
    ledger: Ledger
    engine: Engine
    env: dict[str, str]
    tmp: Path
    base_url: str
    token: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--no-access-log"],
            cwd=self.tmp,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: kill -9 takes the workers too
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, "loyalty serve exited"
            try:
                # live (the mirror is not followed here, so readiness would report its lag)
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "loyalty serve did not get ready"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def batcher(self) -> Batcher:
        return Batcher(self.engine, chain_ledger(self.ledger, self.ledger.actors.partner), ACTIVE)

    def post(self, client: httpx.Client, body: dict[str, Any], key: str) -> httpx.Response:
        return client.post(
            f"{self.base_url}/v1/purchases",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
        )

    def operations(self) -> int:
        with Session(self.engine) as db:
            return int(db.scalar(select(func.count()).select_from(Operation)) or 0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def till(anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Till]:
    if POSTGRES_URL is None:
        pytest.skip("no PostgreSQL configured (set LOYALTY_TEST_POSTGRES_URL)")
    tmp = tmp_path_factory.mktemp("till")
    snapshot = anvil_node.snapshot()
    try:
        with scratch_schema(POSTGRES_URL, prefix="till") as url:
            ledger, _ = scenario_chain(anvil_node)
            engine = mirror_engine(url)
            migrate_all(engine)
            with mirror(ledger, url) as indexer:
                indexer.sync()
            now = int(time.time())
            with Session(engine) as db, db.begin():
                token = create_key(db, role="partner", name="till", partner_id=ACTIVE, now=now).token
                record = create_rule_set(db, ACTIVE, RULES, now=0, created_by=None)
                activate(db, ACTIVE, record.hash, now=0, activated_by=None)
            port = _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
            env.update(
                LOYALTY_DATABASE_URL=url,
                LOYALTY_RPC_URL=anvil_node.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
                LOYALTY_API_PORT=str(port),
                LOYALTY_API_WORKERS="2",
                LOYALTY_MANIFEST_PATH=str(tmp / "no-manifest.json"),
                LOYALTY_KEYSTORE_DIR=str(tmp / "keystore"),
                LOYALTY_RATE_LIMIT_PER_KEY="1000000/minute",
                LOYALTY_IDEMPOTENCY_ABANDONED_AFTER_S="1",
            )
            served = Till(ledger, engine, env, tmp, f"http://127.0.0.1:{port}", token)
            served.start()
            try:
                yield served
            finally:
                served.stop()
                engine.dispose()
    finally:
        anvil_node.revert(snapshot)


def _order(order_id: str, address: str, amount: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "member": {"address": address},
        "channel": "online",
        "currency": "EUR",
        "amount": amount,
    }


def _balance(ledger: Ledger, address: str) -> int:
    return int(ledger.call("balanceOf", ledger.w3.to_checksum_address(address)))


def test_a_thousand_concurrent_purchases_through_two_workers_and_one_batcher(till: Till) -> None:
    orders = [(f"load-{i}", "0x" + secrets.token_hex(20), 100 + i * 100) for i in range(1000)]
    stop = threading.Event()
    batcher = till.batcher()
    sending = threading.Thread(target=batcher.run, args=(stop,))
    sending.start()
    try:
        with (
            httpx.Client(limits=httpx.Limits(max_connections=32), timeout=60) as client,
            ThreadPoolExecutor(32) as pool,
        ):
            answers = list(pool.map(lambda o: till.post(client, _order(*o), str(uuid.uuid4())), orders))
    finally:
        stop.set()
        sending.join(120)
    assert [a.status_code for a in answers] == [201] * 1000, next(
        a.text for a in answers if a.status_code != 201
    )
    till.batcher().drain(timeout=120)
    with Session(till.engine) as db:
        states = dict(
            db.execute(
                select(Operation.state, func.count())
                .where(Operation.natural_key.like("load-%"))
                .group_by(Operation.state)
            ).all()
        )
    assert states == {"confirmed": 1000}
    for order_id, address, amount in orders[::97]:
        assert _balance(till.ledger, address) == amount // 100, order_id


def test_the_same_key_sent_concurrently_has_one_effect(till: Till) -> None:
    address = "0x" + secrets.token_hex(20)
    body, key = _order("same-key-1", address, 4200), str(uuid.uuid4())
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: till.post(client, body, key), range(12)))
    statuses = sorted(a.status_code for a in answers)
    # 201 once, then the stored answer replayed (201) or "still in flight" (409). This service takes over a
    # key in flight for more than a second (LOYALTY_IDEMPOTENCY_ABANDONED_AFTER_S=1, for the kill -9 test):
    # on a loaded machine a request may, and then the order's natural key answers the same operation (200).
    assert set(statuses) <= {200, 201, 409}, statuses
    created = [a for a in answers if a.status_code == 201]
    answered = [a for a in answers if a.status_code in (200, 201)]
    assert created and len({a.json()["id"] for a in answered}) == 1
    replayed = [a for a in created if a.headers.get("Idempotent-Replayed") == "true"]
    assert len(created) - len(replayed) == 1  # the rest of the 201s are the stored answer replayed
    assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 409)
    with httpx.Client(timeout=60) as client:
        later = till.post(client, body, key)
    # the stored answer (a taken-over key stores its own: the 200 above, same operation)
    assert later.headers.get("Idempotent-Replayed") == "true" and later.status_code in (200, 201)
    assert later.json()["id"] == answered[0].json()["id"]
    till.batcher().drain()
    assert _balance(till.ledger, address) == 42


def test_kill_9_of_the_service_mid_stream_then_retries_record_every_order_once(till: Till) -> None:
    orders = [(f"crash-{i}", "0x" + secrets.token_hex(20), 1000 + i * 100) for i in range(60)]
    keys = {order_id: str(uuid.uuid4()) for order_id, _, _ in orders}
    answered: dict[str, httpx.Response] = {}
    killed = threading.Event()

    def send(order: tuple[str, str, int]) -> None:
        try:
            response = till.post(client, _order(*order), keys[order[0]])
        except httpx.TransportError:
            return  # the service died under it: the client retries later
        answered[order[0]] = response
        if len(answered) >= 20 and not killed.is_set():
            killed.set()
            till.kill()

    with httpx.Client(limits=httpx.Limits(max_connections=8), timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, orders))
        assert killed.is_set()
        lost = [o for o in orders if o[0] not in answered]
        assert lost, "the kill came after every answer: nothing was tested"
        till.start()
        time.sleep(1.2)  # requests that were in flight when it died are now abandoned
        retried = {o[0]: till.post(client, _order(*o), keys[o[0]]) for o in orders}
    assert {r.status_code for r in retried.values()} <= {200, 201}, [
        r.text for r in retried.values() if r.status_code not in (200, 201)
    ]
    for order_id, first in answered.items():
        if first.status_code == 201:
            assert retried[order_id].json()["id"] == first.json()["id"]
    with Session(till.engine) as db:
        recorded = db.scalars(
            select(Operation.natural_key).where(Operation.natural_key.like("crash-%"))
        ).all()
    assert sorted(recorded) == sorted(o[0] for o in orders)
    till.batcher().drain()
    assert [_balance(till.ledger, a) for _, a, _ in orders] == [amount // 100 for _, _, amount in orders]
