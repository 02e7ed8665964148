"""From a partner's till to the chain: purchases, returns, engagements and adjustments through the HTTP
service, sent by the batcher to anvil, on SQLite and PostgreSQL. The points on chain are what the rule set
computes by hand; an order earns once; a return takes back pro rata, cancelling pending points or
reversing issued ones; the reference on chain reveals nothing of the order id."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from api_scenario import Service

from api._batcher import Batcher
from api._tables import OrderRefKey
from conftest import ACTIVE, chain_ledger

RULES: dict[str, Any] = {
    "earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}},
    "categories": {"coffee": "2"},
    "engagements": {"review": 20, "newsletter": 10, "referral_referrer": 50, "referral_referee": 25},
}


@pytest.fixture(scope="module")
def earning(api_service: Service) -> Service:
    created = api_service.post("admin", f"/v1/partners/{ACTIVE}/rule-sets", json=RULES)
    assert created.status_code in (200, 201), created.text
    digest = created.json()["hash"]
    activated = api_service.post("admin", f"/v1/partners/{ACTIVE}/rule-sets/{digest}/activate")
    assert activated.status_code == 200, activated.text
    return api_service


def _batcher(service: Service) -> Batcher:
    return Batcher(
        service.engine,
        chain_ledger(service.ledger, service.ledger.actors.partner),
        ACTIVE,
        clock=lambda: float(service.chain_time()),
    )


def _balance(service: Service, address: str) -> int:
    return int(service.ledger.call("balanceOf", service.ledger.w3.to_checksum_address(address)))


def _purchase(order_id: str, amount: int = 1250, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "member": {"customer_id": "cust-member_a"},
        "channel": "pos",
        "currency": "EUR",
        "amount": amount,
        "lines": [
            {"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 425},
            {"sku": "MUG", "category": "goods", "quantity": 1, "unit_price": 400},
        ],
        **extra,
    }


def test_a_purchase_is_computed_queued_and_issued_once(earning: Service) -> None:
    member = earning.people[1].address
    before = _balance(earning, member)
    answer = earning.post("partner_a", "/v1/purchases", json=_purchase("till-1-0001"))
    assert answer.status_code == 201, answer.text
    op = answer.json()
    # 2 x 4.25 EUR of coffee at 2 points per EUR, 4.00 EUR of goods at 1: 17 + 4
    assert (op["points"], op["state"], op["kind"]) == (21, "accepted", "purchase")
    assert answer.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["rule_hash"] is not None and op["detail"]["explanation"]
    # the reference on chain is the HMAC of the order id under the partner's key, not the order id
    with earning.services.session() as db:
        key = db.get_one(OrderRefKey, ACTIVE).key
    expected = hmac.new(bytes(key), b"purchase:till-1-0001", hashlib.sha256).hexdigest()
    assert op["reference"] == "0x" + expected
    assert hashlib.sha256(b"till-1-0001").hexdigest() != expected

    _batcher(earning).drain()
    done = earning.get("partner_a", f"/v1/operations/{op['id']}").json()
    assert done["state"] == "confirmed" and done["seq"] is not None and done["tx_hash"] is not None
    assert _balance(earning, member) == before + 21

    # the same order again: the stored operation, no second issuance; other details: 409
    again = earning.post("partner_a", "/v1/purchases", json=_purchase("till-1-0001"))
    assert (again.status_code, again.json()["id"]) == (200, op["id"])
    other = earning.post("partner_a", "/v1/purchases", json=_purchase("till-1-0001", amount=999))
    assert other.status_code == 409
    _batcher(earning).drain()
    assert _balance(earning, member) == before + 21


def test_a_partial_then_full_return_takes_back_exactly_what_the_order_earned(earning: Service) -> None:
    member = earning.people[1].address
    earning.post("partner_a", "/v1/purchases", json=_purchase("till-1-0002", amount=1000, lines=[]))
    batcher = _batcher(earning)
    batcher.drain()
    before = _balance(earning, member)
    first = earning.post(
        "partner_a", "/v1/returns", json={"order_id": "till-1-0002", "return_id": "r-1", "amount": 333}
    )
    assert first.status_code == 201, first.text
    assert (first.json()["points"], first.json()["detail"]["effect"]) == (3, "reversal")
    rest = earning.post(
        "partner_a", "/v1/returns", json={"order_id": "till-1-0002", "return_id": "r-2", "amount": 667}
    )
    assert rest.json()["points"] == 7  # 10 in all: floor(10 x 1000/1000) - floor(10 x 333/1000)
    too_much = earning.post(
        "partner_a", "/v1/returns", json={"order_id": "till-1-0002", "return_id": "r-3", "amount": 1}
    )
    assert too_much.status_code == 422
    batcher.drain()
    for answer in (first, rest):
        state = earning.get("partner_a", f"/v1/operations/{answer.json()['id']}").json()
        assert state["state"] == "confirmed", state
    assert _balance(earning, member) == before - 10


def test_a_referral_rewards_both_members_on_the_referees_first_purchase(earning: Service) -> None:
    referrer = earning.people[2].address
    referee = "0x" + "5" * 40
    answer = earning.post(
        "partner_a",
        "/v1/engagements",
        json={"kind": "referral", "member": {"address": referee}, "referrer": {"address": referrer}},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "pending"
    batcher = _batcher(earning)
    batcher.drain()
    assert _balance(earning, referee) == 0
    bought = {**_purchase("till-1-0003", amount=500, lines=[]), "member": {"address": referee}}
    assert earning.post("partner_a", "/v1/purchases", json=bought).status_code == 201
    batcher.drain()
    assert _balance(earning, referee) == 25 + 5
    # once per pair
    again = earning.post(
        "partner_a",
        "/v1/engagements",
        json={"kind": "referral", "member": {"address": referee}, "referrer": {"address": referrer}},
    )
    assert again.status_code == 200
    batcher.drain()
    assert _balance(earning, referee) == 30


def test_adjustments_need_a_reason_and_an_admin_beyond_the_limit(earning: Service) -> None:
    body = {
        "adjustment_id": "adj-1",
        "member": {"customer_id": "cust-member_a"},
        "points": 5000,
        "kind": "goodwill",
        "reason": "coffee machine broke",
    }
    assert earning.post("partner_a", "/v1/adjustments", json=body).status_code == 422
    assert earning.post("partner_a", "/v1/adjustments", json={**body, "points": 50}).status_code == 201
    admin = earning.post(
        "admin",
        "/v1/adjustments",
        json={**body, "adjustment_id": "adj-2", "partner_id": ACTIVE, "member": {"address": "0x" + "6" * 40}},
    )
    assert admin.status_code == 201, admin.text
    assert earning.post("member_a", "/v1/adjustments", json=body).status_code == 403


def test_operations_are_visible_to_their_partner_only(earning: Service) -> None:
    mine = earning.get("partner_a", "/v1/operations?limit=2").json()
    assert len(mine["data"]) == 2 and mine["next_cursor"] is not None
    op_id = mine["data"][0]["id"]
    assert earning.get("partner_b", f"/v1/operations/{op_id}").status_code == 404
    assert earning.get("auditor", f"/v1/operations/{op_id}").status_code == 200
    assert earning.get("anonymous", f"/v1/operations/{op_id}").status_code == 401


def test_birthdays_are_granted_once_a_year_and_not_for_a_birthday_just_set(earning: Service) -> None:
    import datetime as dt

    from sqlalchemy import select

    from api._jobs import grant_birthdays
    from api._tables import Membership

    _batcher(earning).drain()  # what earlier tests queued
    now = earning.chain_time()
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    birthday = f"1990-{today.month:02d}-{today.day:02d}"
    created = earning.post(
        "admin",
        f"/v1/partners/{ACTIVE}/rule-sets",
        json={**RULES, "engagements": {**RULES["engagements"], "birthday": 100}},
    )
    digest = created.json()["hash"]
    assert earning.post("admin", f"/v1/partners/{ACTIVE}/rule-sets/{digest}/activate").status_code == 200
    with earning.services.session() as db:
        membership = db.scalars(
            select(Membership).where(
                Membership.partner_id == ACTIVE, Membership.customer_id == "cust-member_a"
            )
        ).one()
        membership.birthday, membership.birthday_set_at = birthday, now - 5 * 24 * 3600
        member_id = membership.member_id
    with earning.services.session() as db:
        assert grant_birthdays(db, ACTIVE, now=now) == 0  # set five days ago: not this year
    with earning.services.session() as db:
        db.get_one(Membership, (ACTIVE, member_id)).birthday_set_at = now - 40 * 24 * 3600
    with earning.services.session() as db:
        assert grant_birthdays(db, ACTIVE, now=now) == 1
    with earning.services.session() as db:
        assert grant_birthdays(db, ACTIVE, now=now + 3600) == 0  # once a year
    member = earning.people[1].address
    before = _balance(earning, member)
    _batcher(earning).drain()
    assert _balance(earning, member) == before + 100
    # back to the rules the other tests expect
    first = earning.get("admin", f"/v1/partners/{ACTIVE}/rule-sets").json()["data"][-1]["hash"]
    assert earning.post("admin", f"/v1/partners/{ACTIVE}/rule-sets/{first}/activate").status_code == 200


def test_the_sweeper_turns_expired_points_into_ledger_entries(earning: Service) -> None:
    from api._jobs import expired_holders, sweep_expired
    from indexer import MirrorView

    earning.sync()
    now = earning.chain_time()
    with earning.engine.connect() as conn:
        holders = expired_holders(MirrorView(conn, earning.ledger.address), at=now)
    assert holders  # the scenario's first points expired
    supply = int(earning.ledger.call("totalSupply"))
    assert sweep_expired(chain_ledger(earning.ledger, earning.ledger.actors.stranger), holders) == 1
    earning.sync()
    with earning.engine.connect() as conn:
        assert expired_holders(MirrorView(conn, earning.ledger.address), at=now) == []
    assert int(earning.ledger.call("totalSupply")) <= supply


def test_an_auditor_ties_every_issued_item_to_its_operation(earning: Service) -> None:
    """With the reference keys and the operations (kind, natural key), each confirmed issuance's item
    reference on chain is the HMAC of its natural key; the chain alone shows none of them."""
    _batcher(earning).drain()
    keys = {
        k["partner_id"]: bytes.fromhex(k["key"][2:])
        for k in earning.get("auditor", "/v1/audit/reference-keys").json()["data"]
    }
    ops = earning.get("auditor", f"/v1/operations?partner_id={ACTIVE}&state=confirmed&limit=500").json()[
        "data"
    ]
    issued = [op for op in ops if op["kind"] in ("purchase", "engagement", "adjustment")]
    assert issued
    earning.sync()
    entries = earning.get("auditor", "/v1/audit/entries?limit=500").json()["data"]
    by_seq = {e["seq"]: e for e in entries}
    for op in issued:
        digest = hmac.new(keys[ACTIVE], f"{op['kind']}:{op['natural_key']}".encode(), hashlib.sha256)
        assert op["reference"] == "0x" + digest.hexdigest()
        assert by_seq[op["seq"]]["item_ref"] == op["reference"], op
        assert by_seq[op["seq"]]["amount"] == op["points"]
