"""Webhooks as a partner's CRM receives them, on SQLite and PostgreSQL: a real HTTP endpoint (``http.server``
in a thread) verifies every delivery with ``standardwebhooks.Webhook(secret).verify(body, headers)``.

Events come from the write path itself (the HTTP service, the batcher on anvil, the indexer) and from the
scheduled job; the dispatcher's clock is driven by hand (retries, give-up, the rotation's grace period):
nothing sleeps, nothing is timed. What a partner relies on:

- every event it subscribed to arrives, signed, with a stable ``webhook-id``: the same state change seen
  again (a batcher that confirms an operation a second time) is the same event, delivered once;
- a failing endpoint is retried on the schedule (5 s, 5 min, 30 min, ...), given up after 24 h, and can be
  replayed (the same event id); the delivery log shows every attempt;
- the secret is shown once, stored sealed, rotatable with a grace period where both secrets sign;
- a partner sees and changes only its own webhooks;
- several dispatchers never send one delivery twice; a dispatcher that died leaves nothing stuck;
- "expiring soon", "N points away" and tier changes are computed once per member, epoch, reward and change.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from api import Settings, create_app
from api._batcher import Batcher
from api._custody import Custody
from api._db import migrate_all
from api._jobs import Jobs
from api._keys import create_key
from api._ratelimit import RateLimiter
from api._services import Services
from api._tables import Operation, Webhook, WebhookDelivery, WebhookEvent
from api._webhooks import (
    DEV_SECRETS_KEY,
    DispatchConfig,
    SecretBox,
    WebhookDispatcher,
    WebhookKeyUnavailable,
    secret_box,
)
from conftest import ACTIVE, ISSUE_ONLY, AnvilNode, Ledger, chain_ledger, mirror, mirror_engine

pytestmark = pytest.mark.anvil

DAY = 24 * 3600
RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}}
PENDING_RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}, "pending_days": 1}
OPERATION_EVENTS = [
    "points.issued",
    "points.pending_released",
    "points.redeemed",
    "points.reversed",
    "operation.failed",
]
#: The default retry schedule, as offsets from the first attempt (the last, 27.6 h after it, is given up).
ATTEMPTS_AT = [0, 5, 305, 2_105, 9_305, 27_305, 63_305, 99_305]


# --------------------------------------------------------------------------- the partner's receiver


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    status: int
    #: per secret the receiver knew, whether the delivery verified with it
    verified: list[bool]

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP endpoint that verifies each delivery with every secret it knows and answers the scripted
    statuses in turn (then 200)."""

    secrets: list[str] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    verified = []
                    for secret in receiver.secrets:
                        try:
                            StandardWebhook(secret).verify(body, headers)
                            verified.append(True)
                        except WebhookVerificationError:
                            verified.append(False)
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append(Received(self.path, body, headers, status, verified))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, type_: str) -> list[Received]:
        return [r for r in self.received if r.json()["type"] == type_]


class DriftClock:
    """The chain's time plus an offset the test moves (the dispatcher's and the job's clock)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.offset = 0

    def __call__(self) -> float:
        return float(self.ledger.w3.eth.get_block("latest")["timestamp"] + self.offset)


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    ledger: Ledger
    node: AnvilNode
    database: str
    engine: Engine
    client: TestClient
    services: Services
    batcher: Batcher
    receiver: Receiver
    clock: DriftClock
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"} if caller in self.tokens else {}

    def post(self, caller: str, url: str, body: Any = None) -> Any:
        return self.client.post(url, json=body, headers=self.headers(caller))

    def get(self, caller: str, url: str) -> Any:
        return self.client.get(url, headers=self.headers(caller))

    def delete(self, caller: str, url: str) -> Any:
        return self.client.delete(url, headers=self.headers(caller))

    def now(self) -> int:
        return int(self.ledger.w3.eth.get_block("latest")["timestamp"])

    def dispatcher(self, **config: Any) -> WebhookDispatcher:
        """A dispatcher on the test's clock (one delivery at a time unless ``concurrency`` says otherwise: the
        receiver then sees them in order)."""
        return WebhookDispatcher(
            self.engine,
            self.http,
            self.clock,
            box=secret_box(self.services.settings),
            config=DispatchConfig(**({"timeout_s": 5, "concurrency": 1} | config)),
        )

    def subscribe(
        self, events: list[str], *, path: str = "/hook", caller: str = "partner_a", **extra: Any
    ) -> Any:
        body = {"url": self.receiver.url + path, "events": events, **extra}
        created = _ok(self.post(caller, f"/v1/partners/{ACTIVE}/webhooks", body))
        self.receiver.secrets.append(created["secret"])
        return created

    def enrol(self, customer_id: str) -> tuple[str, Any]:
        """A self-custody member of partner A: its id and its account (which signs its consents)."""
        person = Account.create(secrets.token_hex(16))
        body = {"customer_id": customer_id, "custody": "self", "address": person.address}
        member = _ok(self.post("partner_a", "/v1/members", body))
        return member["id"], person

    def purchase(self, order_id: str, member_id: str, euros: int) -> Any:
        body = {
            "order_id": order_id,
            "member": {"member_id": member_id},
            "channel": "pos",
            "currency": "EUR",
            "amount": euros * 100,
        }
        return _ok(self.post("partner_a", "/v1/purchases", body))

    def rules(self, rules: dict[str, Any]) -> str:
        created = self.post("partner_a", f"/v1/partners/{ACTIVE}/rule-sets", rules)
        assert created.status_code in (200, 201), created.text
        digest: str = created.json()["hash"]
        _ok(self.post("partner_a", f"/v1/partners/{ACTIVE}/rule-sets/{digest}/activate"), 200)
        return digest

    def sync(self) -> None:
        with mirror(self.ledger, self.database) as indexer:
            indexer.sync()

    def deliveries(self, webhook: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"/v1/partners/{webhook['partner_id']}/webhooks/{webhook['id']}/deliveries?limit=500"
        data: list[dict[str, Any]] = _ok(self.get("partner_a", url), 200)["data"]
        return data


def _ok(response: Any, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def world(anvil_ledger: Ledger, anvil_node: AnvilNode, database: str) -> Iterator[World]:
    ledger = anvil_ledger
    engine = mirror_engine(database)
    migrate_all(engine)
    with mirror(ledger, database) as indexer:
        indexer.sync()

    def chain_clock() -> float:
        return float(ledger.w3.eth.get_block("latest")["timestamp"])

    app = create_app(
        Settings(database_url=database, public_url="http://testserver"),
        engine=engine,
        contract=ledger.address,
        w3=ledger.w3,
        clock=chain_clock,
        custody=Custody.generate(),
        limiter=RateLimiter(per_key="100000/minute", per_client="100000/minute"),
    )
    services: Services = app.state.services
    batcher = Batcher(engine, chain_ledger(ledger, ledger.actors.partner), ACTIVE, clock=chain_clock)
    receiver = Receiver()
    receiver.start()
    http = httpx.Client()
    w = World(
        ledger,
        anvil_node,
        database,
        engine,
        TestClient(app),
        services,
        batcher,
        receiver,
        DriftClock(ledger),
        http,
    )
    with services.session() as db:
        for name, role, partner_id in (
            ("admin", "admin", None),
            ("auditor", "auditor", None),
            ("partner_a", "partner", ACTIVE),
            ("partner_b", "partner", ISSUE_ONLY),
        ):
            w.tokens[name] = create_key(db, role=role, name=name, partner_id=partner_id, now=w.now()).token
    w.rules(RULES)
    try:
        yield w
    finally:
        w.client.close()
        http.close()
        receiver.stop()


# --------------------------------------------------------------------------- the write path's events


def test_the_write_path_emits_signed_events_with_stable_ids(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world
    hook = w.subscribe(OPERATION_EVENTS, description="CRM")
    dispatcher = w.dispatcher()
    member_id, person = w.enrol("cust-1")
    address = person.address

    # a purchase whose points are pending for a day: released, then issued
    w.rules(PENDING_RULES)
    order = w.purchase("order-1", member_id, 120)
    assert order["state"] == "pending"
    w.batcher.drain()
    assert dispatcher.drain().claimed == 0  # nothing happened yet that the partner subscribed to
    w.node.advance_time(DAY + 60)
    w.batcher.drain()
    dispatcher.drain()
    released, issued = w.receiver.received
    assert released.json()["type"] == "points.pending_released"
    assert released.json()["data"]["operation_id"] == order["id"]
    confirmed = _ok(w.get("partner_a", f"/v1/operations/{order['id']}"), 200)
    assert issued.json()["type"] == "points.issued"
    assert issued.json()["data"] == {
        "partner_id": ACTIVE,
        "operation_id": order["id"],
        "kind": "purchase",
        "natural_key": "order-1",
        "member_id": member_id,
        "customer_id": "cust-1",
        "address": address,
        "points": 120,
        "reason": 1,
        "parent_operation_id": None,
        "tx_hash": confirmed["tx_hash"],
        "block_number": confirmed["block_number"],
        "seq": confirmed["seq"],
    }
    assert issued.headers["content-type"] == "application/json"

    # a return after the release is a reversal on chain
    w.rules(RULES)
    ret = _ok(
        w.post("partner_a", "/v1/returns", {"order_id": "order-1", "return_id": "ret-1", "amount": 3000})
    )
    w.batcher.drain()
    dispatcher.drain()
    reversed_ = w.receiver.received[-1].json()
    assert (reversed_["type"], reversed_["data"]["operation_id"]) == ("points.reversed", ret["id"])
    assert (reversed_["data"]["points"], reversed_["data"]["parent_operation_id"]) == (30, order["id"])

    # a redemption the member signed
    w.sync()
    intent = _ok(
        w.post("partner_a", "/v1/redemptions/intents", {"member": {"member_id": member_id}, "amount": 40}),
        200,
    )
    signature = "0x" + bytes(person.sign_typed_data(full_message=intent["typed_data"]).signature).hex()
    body = {
        "redemption_id": intent["redemption_id"],
        "intent": intent["typed_data"]["message"],
        "signature": signature,
    }
    redemption = _ok(w.post("partner_a", "/v1/redemptions", body))
    w.batcher.drain()
    dispatcher.drain()
    redeemed = w.receiver.received[-1].json()
    assert (redeemed["type"], redeemed["data"]["operation_id"], redeemed["data"]["points"]) == (
        "points.redeemed",
        redemption["id"],
        40,
    )

    # the chain refuses an operation: operation.failed with the typed reason
    w.ledger.transact("pause", sender=w.ledger.actors.pauser)
    adjustment = {
        "adjustment_id": "adj-1",
        "member": {"member_id": member_id},
        "points": 5,
        "kind": "goodwill",
        "reason": "sorry for the wait",
    }
    refused = _ok(w.post("partner_a", "/v1/adjustments", adjustment))
    w.batcher.drain()
    w.ledger.transact("unpause", sender=w.ledger.actors.pauser)
    dispatcher.drain()
    failed = w.receiver.received[-1].json()
    assert (failed["type"], failed["data"]["operation_id"]) == ("operation.failed", refused["id"])
    assert failed["data"]["failure"]["reason"] == "ledger-paused"

    # every delivery verified with the secret; each event once, under its own id
    assert all(r.verified == [True] and r.status == 200 for r in w.receiver.received)
    ids = [r.id for r in w.receiver.received]
    assert len(set(ids)) == len(ids) == 5 and all(i.startswith("evt_") for i in ids)
    log = w.deliveries(hook)
    assert {d["event_id"] for d in log} == set(ids)
    assert all(d["state"] == "succeeded" and d["attempts"] == 1 for d in log)
    assert all(d["log"][0]["status_code"] == 200 for d in log)

    # the batcher sees the return again (its state lost in a crash) and confirms it as already done: the
    # same event, which is neither stored nor delivered twice
    with Session(w.engine) as db, db.begin():
        db.execute(
            update(Operation).where(Operation.id == int(ret["id"][3:])).values(state="accepted", tx_hash=None)
        )
    w.batcher.drain()
    assert _ok(w.get("partner_a", f"/v1/operations/{ret['id']}"), 200)["state"] == "confirmed"
    assert dispatcher.drain().claimed == 0
    assert len(w.receiver.received) == 5 and len(w.deliveries(hook)) == 5
    with Session(w.engine) as db:
        assert len(db.scalars(select(WebhookEvent)).all()) == 5
    # and no secret was ever logged
    assert w.receiver.secrets[0] not in caplog.text


# --------------------------------------------------------------------------- retries, give-up, replay


def test_a_failing_endpoint_is_retried_on_the_schedule_then_given_up_and_replayed(world: World) -> None:
    w = world
    hook = w.subscribe(["points.issued"])
    dispatcher = w.dispatcher()
    member_id, _ = w.enrol("cust-2")
    w.purchase("order-2", member_id, 10)
    w.batcher.drain()

    # the endpoint fails twice, then answers: delivered on the third attempt, 5 s and 5 min later
    w.receiver.script = [500, 503]
    assert dispatcher.run_once().retrying == 1
    assert dispatcher.run_once().claimed == 0  # not due yet
    w.clock.offset += 4
    assert dispatcher.run_once().claimed == 0
    w.clock.offset += 1
    assert dispatcher.run_once().retrying == 1
    w.clock.offset += 299
    assert dispatcher.run_once().claimed == 0
    w.clock.offset += 1
    assert dispatcher.run_once().succeeded == 1
    first, second, third = w.receiver.received
    assert first.id == second.id == third.id and first.body == second.body == third.body
    assert all(r.verified == [True] for r in w.receiver.received)
    (delivery,) = w.deliveries(hook)
    assert (delivery["state"], delivery["attempts"], delivery["next_attempt_at"]) == ("succeeded", 3, None)
    assert [a["status_code"] for a in delivery["log"]] == [500, 503, 200]
    assert [a["error"] for a in delivery["log"]] == ["http-500", "http-503", None]
    start = delivery["log"][0]["at"]
    assert [a["at"] - start for a in delivery["log"]] == [0, 5, 305]

    # an endpoint that never answers 2xx: retried for a little over 24 hours, then given up
    w.purchase("order-3", member_id, 11)
    w.batcher.drain()
    w.receiver.script = [500] * len(ATTEMPTS_AT)
    w.clock.offset = 0
    while True:
        report = dispatcher.run_once()
        assert report.claimed == 1
        (latest, _) = w.deliveries(hook)
        if latest["state"] != "pending":
            break
        w.clock.offset = latest["next_attempt_at"] - w.now()
    assert (latest["state"], latest["attempts"], latest["next_attempt_at"]) == ("failed", 8, None)
    start = latest["log"][0]["at"]
    assert [a["at"] - start for a in latest["log"]] == ATTEMPTS_AT
    assert ATTEMPTS_AT[-1] > DAY
    assert latest["finished_at"] == start + ATTEMPTS_AT[-1]
    w.clock.offset += 7 * DAY
    assert dispatcher.run_once().claimed == 0  # given up: never sent again by itself

    # the partner fixed its endpoint and replays it: the same event id, signed again, delivered
    failed_id = latest["event_id"]
    replayed = _ok(
        w.post("partner_a", f"/v1/partners/{ACTIVE}/webhooks/{hook['id']}/deliveries/{latest['id']}/replay"),
        202,
    )
    assert (replayed["event_id"], replayed["replay"], replayed["state"]) == (failed_id, 1, "pending")
    assert dispatcher.run_once().succeeded == 1
    last = w.receiver.received[-1]
    assert (last.id, last.status, last.verified) == (failed_id, 200, [True])
    followed = _ok(
        w.get("partner_a", f"/v1/partners/{ACTIVE}/webhooks/{hook['id']}/deliveries/{replayed['id']}"), 200
    )
    assert (followed["state"], followed["attempts"]) == ("succeeded", 1)
    only_failed = w.get("partner_a", f"/v1/partners/{ACTIVE}/webhooks/{hook['id']}/deliveries?state=failed")
    assert [d["id"] for d in _ok(only_failed, 200)["data"]] == [latest["id"]]


def test_an_unreachable_endpoint_is_an_error_in_the_log(world: World) -> None:
    w = world
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    created = _ok(
        w.post(
            "partner_a",
            f"/v1/partners/{ACTIVE}/webhooks",
            {"url": f"http://127.0.0.1:{port}/hook", "events": ["points.issued"]},
        )
    )
    member_id, _ = w.enrol("cust-3")
    w.purchase("order-4", member_id, 3)
    w.batcher.drain()
    assert w.dispatcher().run_once().retrying == 1
    (delivery,) = w.deliveries(created)
    assert (delivery["last_status_code"], delivery["last_error"]) == (None, "ConnectError")
    assert delivery["log"][0]["status_code"] is None and delivery["next_attempt_at"] is not None


# --------------------------------------------------------------------------- secrets


def test_a_secret_is_shown_once_stored_sealed_and_rotated_with_a_grace_period(world: World) -> None:
    w = world
    hook = w.subscribe(["points.issued"])
    old = hook["secret"]
    assert old.startswith("whsec_") and len(StandardWebhook(old)._whsecret) == 32
    base = f"/v1/partners/{ACTIVE}/webhooks"
    for url in (base, f"{base}/{hook['id']}"):
        shown = w.get("partner_a", url)
        assert shown.status_code == 200 and old not in shown.text and 'secret"' not in shown.text
    with Session(w.engine) as db:
        row = db.get_one(Webhook, hook["id"])
        assert old.encode() not in row.secret and StandardWebhook(old)._whsecret not in row.secret
        assert secret_box(w.services.settings).open(hook["id"], row.secret) == old

    rotated = _ok(w.post("partner_a", f"{base}/{hook['id']}/secret"), 200)
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"] == w.now() + DAY
    w.receiver.secrets = [old, new]
    dispatcher = w.dispatcher()
    member_id, _ = w.enrol("cust-5")

    # within the grace period both secrets sign: the receiver may verify with either
    w.purchase("order-5", member_id, 5)
    w.batcher.drain()
    dispatcher.drain()
    during = w.receiver.received[-1]
    assert during.verified == [True, True]
    assert len(during.headers["webhook-signature"].split(" ")) == 2

    # after it only the new one
    w.node.advance_time(DAY + 1)
    w.purchase("order-6", member_id, 6)
    w.batcher.drain()
    dispatcher.drain()
    after = w.receiver.received[-1]
    assert after.verified == [False, True]
    assert _ok(w.get("partner_a", f"{base}/{hook['id']}"), 200)["previous_secret_expires_at"] is None

    # deleted: gone, and what was due is cancelled, never sent
    w.purchase("order-7", member_id, 7)
    w.batcher.drain()
    deleted = _ok(w.delete("partner_a", f"{base}/{hook['id']}"), 200)
    assert deleted["id"] == hook["id"]
    assert w.get("partner_a", f"{base}/{hook['id']}").status_code == 404
    assert w.delete("partner_a", f"{base}/{hook['id']}").status_code == 404
    assert dispatcher.drain().claimed == 0
    with Session(w.engine) as db:
        states = db.scalars(select(WebhookDelivery.state).order_by(WebhookDelivery.id)).all()
    assert states == ["succeeded", "succeeded", "cancelled"]


def test_the_key_that_seals_secrets() -> None:
    dev = Settings()
    assert secret_box(dev).open("wh_1", SecretBox(DEV_SECRETS_KEY).seal("wh_1", "whsec_x")) == "whsec_x"
    key = secrets.token_hex(32)
    mine = Settings(webhook_secrets_key=SecretStr(key))
    sealed = secret_box(mine).seal("wh_1", "whsec_y")
    assert secret_box(mine).open("wh_1", sealed) == "whsec_y"
    with pytest.raises(WebhookKeyUnavailable):  # another webhook's row
        secret_box(mine).open("wh_2", sealed)
    with pytest.raises(WebhookKeyUnavailable):  # another key
        secret_box(dev).open("wh_1", sealed)
    with pytest.raises(WebhookKeyUnavailable, match="64 hex digits"):
        secret_box(Settings(webhook_secrets_key=SecretStr("abcd")))
    production = Settings.model_construct(**(dev.model_dump() | {"mode": "production"}))
    with pytest.raises(WebhookKeyUnavailable, match="production mode needs a key"):
        secret_box(production)
    assert "key" not in repr(secret_box(mine)).replace("<key>", "")


# --------------------------------------------------------------------------- who sees what


def test_a_partner_sees_and_changes_only_its_own_webhooks(world: World) -> None:
    w = world
    hook = w.subscribe(["points.issued"])
    mine = f"/v1/partners/{ACTIVE}/webhooks"
    one = f"{mine}/{hook['id']}"
    theirs = f"/v1/partners/{ISSUE_ONLY}/webhooks"
    for method, url in (
        ("GET", mine),
        ("POST", mine),
        ("GET", one),
        ("DELETE", one),
        ("POST", f"{one}/secret"),
        ("GET", f"{one}/deliveries"),
        ("GET", f"{one}/deliveries/dlv_1"),
        ("POST", f"{one}/deliveries/dlv_1/replay"),
    ):
        body = {"url": "https://b.example/hook", "events": ["points.issued"]} if method == "POST" else None
        answer = w.client.request(method, url, json=body, headers=w.headers("partner_b"))
        assert answer.status_code == 403, (method, url, answer.text)
        assert w.client.request(method, url, json=body).status_code == 401
    # under its own partner's path, A's webhook does not exist for B
    for url in (f"{theirs}/{hook['id']}", f"{theirs}/{hook['id']}/deliveries"):
        assert w.get("partner_b", url).status_code == 404
    assert w.delete("partner_b", f"{theirs}/{hook['id']}").status_code == 404
    assert _ok(w.get("partner_b", theirs), 200)["data"] == []
    # auditors read (never a secret) and change nothing; admins manage any partner's
    listed = _ok(w.get("auditor", mine), 200)["data"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert (
        w.post("auditor", mine, {"url": "https://a.example/", "events": ["tier.changed"]}).status_code == 403
    )
    by_admin = _ok(w.post("admin", mine, {"url": "https://a.example/", "events": ["tier.changed"]}))
    assert by_admin["partner_id"] == ACTIVE and by_admin["secret"].startswith("whsec_")
    # a partner the ledger does not know, an unknown event type, a URL with credentials
    assert (
        w.post(
            "admin", "/v1/partners/77/webhooks", {"url": "https://a.example/", "events": ["tier.changed"]}
        ).status_code
        == 404
    )
    assert (
        w.post("partner_a", mine, {"url": "https://a.example/", "events": ["points.minted"]}).status_code
        == 422
    )
    assert (
        w.post("partner_a", mine, {"url": "https://u:p@a.example/", "events": ["tier.changed"]}).status_code
        == 422
    )


# --------------------------------------------------------------------------- dispatchers


def test_concurrent_dispatchers_send_each_delivery_once(world: World) -> None:
    w = world
    hooks = [w.subscribe(["points.issued"], path=f"/hook/{n}") for n in range(3)]
    member_id, _ = w.enrol("cust-6")
    for n in range(8):
        w.purchase(f"order-c{n}", member_id, 1 + n)
    w.batcher.drain()
    dispatchers = [w.dispatcher(batch=5, concurrency=2) for _ in range(4)]
    start = threading.Barrier(len(dispatchers))

    def run(dispatcher: WebhookDispatcher) -> None:
        start.wait()
        dispatcher.drain()

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [(r.path, r.id) for r in w.receiver.received]
    assert len(sent) == len(set(sent)) == 3 * 8
    assert all(r.verified.count(True) == 1 for r in w.receiver.received)  # each with its webhook's secret
    for hook in hooks:
        assert {d["state"] for d in w.deliveries(hook)} == {"succeeded"}


def test_a_delivery_claimed_by_a_dispatcher_that_died_is_sent_by_another(world: World) -> None:
    w = world
    hook = w.subscribe(["points.issued"])
    member_id, _ = w.enrol("cust-7")
    w.purchase("order-8", member_id, 8)
    w.batcher.drain()
    dead = w.dispatcher()
    assert len(dead._claim("dead-claim")) == 1  # claimed, then the process died before sending
    other = w.dispatcher()
    assert other.run_once().claimed == 0  # the claim holds ...
    w.clock.offset = other.config.claim_s + 1
    assert other.run_once().succeeded == 1  # ... until it expires
    (delivery,) = w.deliveries(hook)
    assert (delivery["state"], delivery["attempts"]) == ("succeeded", 1)
    assert len(w.receiver.received) == 1


# --------------------------------------------------------------------------- the scheduled notifications


def test_expiring_points_rewards_within_reach_and_tier_changes_are_notified_once(world: World) -> None:
    w = world
    # a member already silver before the partner subscribes: its tier is history, not a change
    veteran, _ = w.enrol("veteran")
    w.purchase("order-v", veteran, 1_100)
    w.batcher.drain()
    w.sync()
    hook = w.subscribe(
        ["points.expiring", "reward.within_reach", "tier.changed"],
        expiring_within_days=30,
        reward_within_points=100,
    )
    reward = _ok(
        w.post("partner_a", f"/v1/partners/{ACTIVE}/rewards", {"name": "Free flight", "points_price": 1_300})
    )
    w.node.advance_time(1)  # a member who joins after the subscription (its second, not the same one)
    member_id, person = w.enrol("cust-8")
    address = person.address
    w.purchase("order-9", member_id, 1_250)
    w.batcher.drain()
    w.sync()
    jobs = Jobs(
        w.engine,
        w.ledger.address,
        partners=[],
        clock=w.clock,
        settings=w.services.settings,
        webhooks=w.dispatcher(),
    )

    done = jobs.run_once()
    # the veteran (silver since before) changed nothing; 200 points from the reward is beyond 100
    assert done == done | {
        "notified_tier_changed": 1,
        "notified_reward_within_reach": 1,
        "notified_points_expiring": 0,  # a year to go
        "webhook_deliveries": 2,
    }
    member = {"partner_id": ACTIVE, "member_id": member_id, "customer_id": "cust-8", "address": address}
    (tier,) = w.receiver.of_type("tier.changed")
    assert tier.json()["data"] == member | {
        "previous_tier": "member",
        "tier": "silver",
        "qualifying_points": 1_250,
    }
    (near,) = w.receiver.of_type("reward.within_reach")
    assert near.json()["data"] == member | {
        "reward_id": reward["id"],
        "reward_name": "Free flight",
        "points_price": 1_300,
        "balance": 1_250,
        "points_away": 50,
    }

    # the next rounds find the same facts: the same events, not sent again
    assert jobs.run_once()["webhook_deliveries"] == 0
    count = len(w.receiver.received)

    # ten days before the member's points expire: "expiring soon", once
    wallet = _ok(w.get("partner_a", f"/v1/wallets/{address}"), 200)
    (epoch,) = wallet["epochs"]
    w.clock.offset = epoch["expires_at"] - 10 * DAY - w.now()
    jobs.run_once()
    jobs.run_once()
    expiring = [r.json()["data"] for r in w.receiver.received[count:]]
    assert [e for e in expiring if e["member_id"] == member_id] == [
        member
        | {
            "epoch": epoch["epoch"],
            "points": 1_250,
            "expires_at": epoch["expires_at"],
            "balance": 1_250,
        }
    ]
    assert [e["member_id"] for e in expiring] == sorted([member_id, veteran])  # the veteran's expire too
    assert all(r.verified == [True] for r in w.receiver.received)
    assert {d["state"] for d in w.deliveries(hook)} == {"succeeded"}
