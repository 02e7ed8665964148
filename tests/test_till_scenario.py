"""A coalition of three partners at their tills, end to end: the HTTP service, the batchers, anvil and the
indexer together, on SQLite and PostgreSQL.

A coffee chain (partner 1: points per euro, coffee counts double, a pastry campaign, reviews, referrals,
birthdays), an airline (partner 10: five points per euro, pending until the two-day return window
closes) and a hotel group (partner 11: 10 % cash back at 100 points per euro, pending one day). Two members:
Ada holds her own key (Sign-In with Ethereum), Bo is custodial (a passkey session). Purchases with line
items, a review, a referral released by the referee's first purchase, a birthday, the campaign, pending
points released by the clock, a partial return before release (cancelled off chain) and one after
(reversed on chain), redemptions by both consent paths and a refund.

Every expected figure is computed here by hand from the rule sets (not by the rules engine), and checked
against the chain (``balanceOf``, ``partnerPosition``), the API's wallets and positions, and the rule hash
each issuance carries on chain (published by ``GET /v1/rules/{hash}``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from api import Settings, create_app
from api._batcher import Batcher
from api._custody import Custody
from api._db import migrate_all
from api._jobs import grant_birthdays
from api._keys import create_key
from api._ratelimit import RateLimiter
from api._services import Services
from api._sessions import open_session
from api._tables import Membership
from chain import PartnerId, Rpc, Sender
from chain._ledger import Ledger as ChainLedger
from chain._signer import LocalSigner
from conftest import ACTIVE, AnvilNode, Ledger, chain_ledger, mirror, mirror_engine, new_partner

pytestmark = pytest.mark.anvil

COFFEE, AIRLINE, HOTEL = ACTIVE, 10, 11
DAY = 24 * 3600


def coffee_rules(now: int) -> dict[str, Any]:
    return {
        "earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}},
        "categories": {"coffee": "2"},
        "campaigns": [
            {
                "name": "pastry-week",
                "start": now - 60,
                "end": now + 7 * DAY,
                "categories": ["pastry"],
                "multiplier": "3",
            }
        ],
        "engagements": {"review": 20, "referral_referrer": 50, "referral_referee": 25, "birthday": 100},
    }


AIRLINE_RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "5"}}, "pending_days": 2}
HOTEL_RULES = {
    "earn": {"basis": "cashback_percent", "percent": "10", "points_per_unit": {"EUR": "100"}},
    "pending_days": 1,
}


@dataclass
class Coalition:
    ledger: Ledger
    node: AnvilNode
    database: str
    client: TestClient
    services: Services
    batchers: dict[int, Batcher]
    tokens: dict[str, str] = field(default_factory=dict)
    rule_hashes: dict[int, str] = field(default_factory=dict)

    def post(self, caller: str, url: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.post(
            url, json=body, headers={"Authorization": f"Bearer {self.tokens[caller]}", **headers}
        )

    def get(self, caller: str, url: str) -> Any:
        return self.client.get(url, headers={"Authorization": f"Bearer {self.tokens[caller]}"})

    def send(self) -> None:
        for batcher in self.batchers.values():
            batcher.drain(timeout=60)

    def sync(self) -> None:
        with mirror(self.ledger, self.database) as indexer:
            indexer.sync()

    def now(self) -> int:
        return int(self.ledger.w3.eth.get_block("latest")["timestamp"])

    def balance(self, address: str) -> int:
        return int(self.ledger.call("balanceOf", self.ledger.w3.to_checksum_address(address)))


def _operator_ledger(ledger: Ledger, signer: LocalSigner) -> ChainLedger:
    rpc = Rpc(ledger.w3, decoder=ledger.decoder)
    return ChainLedger(rpc, ledger.address, sender=Sender(rpc, signer))


@pytest.fixture
def coalition(anvil_ledger: Ledger, anvil_node: AnvilNode, database: str) -> Iterator[Coalition]:
    ledger = anvil_ledger
    airline, hotel = new_partner(ledger, AIRLINE), new_partner(ledger, HOTEL)
    engine = mirror_engine(database)
    migrate_all(engine)
    with mirror(ledger, database) as indexer:
        indexer.sync()

    def clock() -> float:
        return float(ledger.w3.eth.get_block("latest")["timestamp"])

    app = create_app(
        Settings(database_url=database, public_url="http://testserver"),
        engine=engine,
        contract=ledger.address,
        w3=ledger.w3,
        clock=clock,
        custody=Custody.generate(),
        limiter=RateLimiter(per_key="100000/minute", per_client="100000/minute"),
    )
    services: Services = app.state.services
    batchers = {
        COFFEE: Batcher(engine, chain_ledger(ledger, ledger.actors.partner), COFFEE, clock=clock),
        AIRLINE: Batcher(engine, _operator_ledger(ledger, airline), AIRLINE, clock=clock),
        HOTEL: Batcher(engine, _operator_ledger(ledger, hotel), HOTEL, clock=clock),
    }
    club = Coalition(ledger, anvil_node, database, TestClient(app), services, batchers)
    with services.session() as db:
        club.tokens["admin"] = create_key(
            db, role="admin", name="admin", partner_id=None, now=int(clock())
        ).token
        for name, pid in (("coffee", COFFEE), ("airline", AIRLINE), ("hotel", HOTEL)):
            club.tokens[name] = create_key(
                db, role="partner", name=name, partner_id=pid, now=int(clock())
            ).token
    for name, pid, rules in (
        ("coffee", COFFEE, coffee_rules(club.now())),
        ("airline", AIRLINE, AIRLINE_RULES),
        ("hotel", HOTEL, HOTEL_RULES),
    ):
        created = club.post(name, f"/v1/partners/{pid}/rule-sets", rules)
        assert created.status_code == 201, created.text
        digest = created.json()["hash"]
        assert club.post(name, f"/v1/partners/{pid}/rule-sets/{digest}/activate").status_code == 200
        club.rule_hashes[pid] = digest
    try:
        yield club
    finally:
        club.client.close()
        engine.dispose()


def _purchase(order_id: str, member: dict[str, str], amount: int, lines: list[Any] | None = None) -> Any:
    return {
        "order_id": order_id,
        "member": member,
        "channel": "pos",
        "currency": "EUR",
        "amount": amount,
        "lines": lines or [],
    }


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_three_partners_at_their_tills(coalition: Coalition) -> None:
    c = coalition
    ada: LocalAccount = Account.create(secrets.token_hex(32))
    # Ada brings her own wallet to the coffee chain (the airline credits her address); Bo is enrolled
    # custodial by the hotel
    enrolled = _ok(
        c.post("coffee", "/v1/members", {"customer_id": "ada", "custody": "self", "address": ada.address})
    )
    ada_id = enrolled["id"]
    bo = _ok(c.post("hotel", "/v1/members", {"customer_id": "bo"}))
    bo_id, bo_address = bo["id"], bo["address"]
    # Bo also joins the coffee chain through a link code he makes in his own (passkey) session
    with c.services.session() as db:
        bo_session, _ = open_session(db, bo_id, "passkey", now=c.now(), ttl_s=3 * DAY)
        today = dt.datetime.fromtimestamp(c.now(), dt.UTC).date()
    bo_headers = {"Authorization": f"Bearer {bo_session.token}"}
    code = c.client.post("/v1/me/link-codes", headers=bo_headers)
    assert code.status_code == 201, code.text
    _ok(c.post("coffee", "/v1/members", {"customer_id": "bo", "link_code": code.json()["code"]}))
    with c.services.session() as db:
        coffee_bo = db.get_one(Membership, (COFFEE, bo_id))
        coffee_bo.birthday, coffee_bo.birthday_set_at = (
            f"1990-{today.month:02d}-{today.day:02d}",
            c.now() - 60 * DAY,
        )

    expected = {ada.address.lower(): 0, bo_address.lower(): 0}

    # --- coffee: a purchase with line items and the pastry campaign --------------------------------
    lines = [
        {"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 350},  # 7.00 EUR x2 = 14
        {"sku": "CROISSANT", "category": "pastry", "quantity": 1, "unit_price": 250},  # 2.50 x3 = 7.5
        {"sku": "WATER", "category": "drinks", "quantity": 1, "unit_price": 150},  # 1.50 x1 = 1.5
    ]
    coffee_order = _ok(
        c.post("coffee", "/v1/purchases", _purchase("c-1", {"member_id": ada_id}, 1100, lines))
    )
    assert coffee_order["points"] == 23  # 14 + 7.5 + 1.5, floored once
    expected[ada.address.lower()] += 23
    # --- a review and a referral (Ada refers Bo; released by Bo's first coffee purchase) -------------
    _ok(
        c.post(
            "coffee",
            "/v1/engagements",
            {"kind": "review", "member": {"member_id": ada_id}, "engagement_id": "rv-1"},
        )
    )
    expected[ada.address.lower()] += 20
    referral = _ok(
        c.post(
            "coffee",
            "/v1/engagements",
            {"kind": "referral", "member": {"customer_id": "bo"}, "referrer": {"customer_id": "ada"}},
        )
    )
    assert referral["state"] == "pending"
    c.send()
    assert c.balance(ada.address) == 43  # the referral waits for Bo's first purchase
    _ok(c.post("coffee", "/v1/purchases", _purchase("c-2", {"customer_id": "bo"}, 420)))  # 4 points
    expected[bo_address.lower()] += 4 + 25
    expected[ada.address.lower()] += 50
    # --- Bo's birthday, granted by the scheduler -----------------------------------------------------
    with c.services.session() as db:
        assert grant_birthdays(db, COFFEE, now=c.now()) == 1
    expected[bo_address.lower()] += 100

    # --- airline (pending two days) and hotel (pending one day) ---------------------------------------
    flight = _ok(c.post("airline", "/v1/purchases", _purchase("f-1", {"address": ada.address}, 20_000)))
    assert (flight["points"], flight["state"]) == (1000, "pending")  # 200 EUR x 5
    stay = _ok(c.post("hotel", "/v1/purchases", _purchase("h-1", {"customer_id": "bo"}, 35_000)))
    assert (stay["points"], stay["state"]) == (3500, "pending")  # 350 EUR x 10 % x 100
    # a partial return of the flight while its points are pending: 30 % cancelled off chain
    flight_return = _ok(
        c.post("airline", "/v1/returns", {"order_id": "f-1", "return_id": "fr-1", "amount": 6_000})
    )
    assert (flight_return["points"], flight_return["detail"]["effect"]) == (300, "pending-points-cancelled")
    c.send()
    for address, points in expected.items():
        assert c.balance(address) == points, address
    assert c.get("airline", f"/v1/operations/{flight['id']}").json()["points"] == 700

    # --- two days later: both released and issued; then a partial hotel return is a reversal ----------
    c.node.advance_time(2 * DAY + 60)
    c.send()
    expected[ada.address.lower()] += 700
    expected[bo_address.lower()] += 3500
    hotel_return = _ok(
        c.post("hotel", "/v1/returns", {"order_id": "h-1", "return_id": "hr-1", "amount": 3_500})
    )
    assert (hotel_return["points"], hotel_return["detail"]["effect"]) == (350, "reversal")
    c.send()
    expected[bo_address.lower()] -= 350
    for address, points in expected.items():
        assert c.balance(address) == points, address

    # --- redemptions: Ada signs an intent at the coffee chain; Bo's till code at the hotel ------------
    c.sync()  # the indexer has followed the chain (what a member can spend is read from the mirror)
    intent = _ok(
        c.post("coffee", "/v1/redemptions/intents", {"member": {"member_id": ada_id}, "amount": 40}), 200
    )
    typed = intent["typed_data"]
    signature = "0x" + bytes(ada.sign_typed_data(full_message=typed).signature).hex()
    ada_redemption = _ok(
        c.post(
            "coffee",
            "/v1/redemptions",
            {"redemption_id": intent["redemption_id"], "intent": typed["message"], "signature": signature},
        )
    )
    bo_code = c.client.post(
        "/v1/me/redemption-codes", json={"partner_id": HOTEL, "max_points": 1000}, headers=bo_headers
    )
    assert bo_code.status_code == 201, bo_code.text
    bo_redemption = _ok(
        c.post(
            "hotel",
            "/v1/redemptions",
            {"member": {"member_id": bo_id}, "code": bo_code.json()["code"], "amount": 800},
        )
    )
    c.send()
    expected[ada.address.lower()] -= 40
    expected[bo_address.lower()] -= 800
    for op in (ada_redemption, bo_redemption):
        assert c.get("admin", f"/v1/operations/{op['id']}").json()["state"] == "confirmed"
    # --- the hotel refunds part of Bo's redemption -----------------------------------------------------
    _ok(
        c.post(
            "hotel", f"/v1/redemptions/{bo_redemption['id']}/refunds", {"refund_id": "rf-1", "amount": 300}
        )
    )
    c.send()
    expected[bo_address.lower()] += 300

    # ================================================================ the figures, every way
    for address, points in expected.items():
        assert c.balance(address) == points, address
    c.sync()
    for address, points in expected.items():
        wallet = c.get("admin", f"/v1/wallets/{c.ledger.w3.to_checksum_address(address)}").json()
        assert wallet["balance"] == points, address
    reader = ChainLedger(Rpc(c.ledger.w3), c.ledger.address)
    issued = {COFFEE: 23 + 20 + 4 + 25 + 50 + 100, AIRLINE: 700, HOTEL: 3500}
    redeemed = {COFFEE: 40, HOTEL: 800}
    reversed_, refunded = {HOTEL: 350}, {HOTEL: 300}
    for pid in (COFFEE, AIRLINE, HOTEL):
        # (redeemed - refunded) - (issued - reversed): what the coalition owes the partner, in points
        owed = redeemed.get(pid, 0) - refunded.get(pid, 0) - (issued[pid] - reversed_.get(pid, 0))
        assert reader.partner_position(PartnerId(pid)).net_points == owed, pid
        served = c.get("admin", f"/v1/partners/{pid}/position").json()
        assert served["points"]["position"] == owed, served
    # every issuance on chain carries the rule hash of the set that computed it, published by the API
    entries = c.get("admin", "/v1/audit/entries?limit=500").json()["data"]
    checked = set()
    for entry in entries:
        if entry["kind"] in ("PointsIssued", "PointsBatchIssued") and entry["partner_id"] in c.rule_hashes:
            assert entry["rule_hash"] == c.rule_hashes[entry["partner_id"]], entry
            published = c.client.get(f"/v1/rules/{entry['rule_hash']}")
            assert published.status_code == 200
            checked.add(entry["partner_id"])
    assert checked == {COFFEE, AIRLINE, HOTEL}
