"""Earning rules over HTTP (api/routers/rules.py) after the scripted scenario (tests/api_scenario.py), on
SQLite and PostgreSQL: who may create, list and activate a partner's rule sets; the canonical text and its
hash; the same rules again are the same rule set; anyone reads any rule set by its hash; quotes compute
the points an order would earn with the rule set in force (or a named one), the member's tier from the
mirror and its caps from the outbox, and issue nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_scenario import Service
from eth_hash.auto import keccak
from sqlalchemy import func, select

from api._rules import RuleSet, canonical
from api._tables import Operation
from conftest import ACTIVE, ISSUE_ONLY

pytestmark = pytest.mark.anvil

#: A partner no key belongs to (only admin keys manage its rules).
OTHER = 77
RULES: dict[str, Any] = {
    "earn": {"basis": "points_per_unit", "rates": {"EUR": "1.50", "JPY": "0.01"}},
    "categories": {"coffee": "2"},
    "excluded_skus": ["GIFTCARD"],
    "pending_days": 14,
}


@pytest.fixture(scope="module")
def service(api_service: Service) -> Service:
    return api_service


def url(partner_id: int, *rest: str) -> str:
    return "/".join([f"/v1/partners/{partner_id}/rule-sets", *rest])


def create(service: Service, caller: str, partner_id: int, body: dict[str, Any], status: int = 201) -> Any:
    response = service.post(caller, url(partner_id), json=body)
    assert response.status_code == status, response.text
    return response.json()


def activate(service: Service, caller: str, partner_id: int, rule_hash: str) -> Any:
    response = service.post(caller, url(partner_id, rule_hash, "activate"))
    assert response.status_code == 200, response.text
    return response.json()


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in response.json()["errors"]]


# --------------------------------------------------------------------------- rule sets


@pytest.mark.parametrize(
    ("caller", "partner_id", "status"),
    [
        ("anonymous", ACTIVE, 401),
        ("revoked", ACTIVE, 401),
        ("member_a", ACTIVE, 403),
        ("auditor", ACTIVE, 403),
        ("partner_b", ACTIVE, 403),
        ("partner_a", ISSUE_ONLY, 403),
    ],
)
def test_only_admin_or_the_partner_creates_rule_sets(
    service: Service, caller: str, partner_id: int, status: int
) -> None:
    response = service.post(caller, url(partner_id), json=RULES)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_a_rule_set_is_its_canonical_text_and_hash(service: Service) -> None:
    body = {**RULES, "pending_days": 15}
    created = create(service, "partner_a", ACTIVE, body)
    text = created["canonical"]
    assert created["hash"] == "0x" + keccak(text.encode()).hex()
    assert json.loads(text)["partner_id"] == ACTIVE
    assert text == canonical(RuleSet.model_validate({**body, "partner_id": ACTIVE}))
    assert '"rates":{"EUR":"1.5","JPY":"0.01"}' in text
    assert created["partner_id"] == ACTIVE and created["created_by"] is not None
    assert created["created_at"] == service.services.now()
    assert created["rules"]["earn"]["rates"] == {"EUR": "1.5", "JPY": "0.01"}
    # the same rules, written otherwise, are the same rule set (200, nothing new)
    again = {**body, "earn": {"rates": {"JPY": "0.010", "EUR": "1.5"}, "basis": "points_per_unit"}}
    assert create(service, "partner_a", ACTIVE, again, status=200) == created
    assert create(service, "admin", ACTIVE, body, status=200)["hash"] == created["hash"]
    # other rules: the next version
    newer = create(service, "partner_a", ACTIVE, {**body, "pending_days": 16})
    assert newer["version"] == created["version"] + 1 and newer["hash"] != created["hash"]
    # the same rules for another partner are another rule set (the partner is part of the text)
    other = create(service, "admin", OTHER, body)
    assert other["hash"] != created["hash"] and other["partner_id"] == OTHER


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUR": 1.5}}},
            "body.earn.points_per_unit.rates.EUR",
        ),
        (
            {"earn": {"basis": "points_per_unit", "rates": {"EUR": "-1"}}},
            "body.earn.points_per_unit.rates.EUR",
        ),
        ({"categories": {"coffee": "101"}}, "body.categories.coffee"),
        ({"campaigns": [{"name": "x", "start": 10, "end": 10, "bonus": 5}]}, "body.campaigns.0"),
        ({"excluded_skus": ["A", "A"]}, "body.excluded_skus"),
        ({"pending_days": "3"}, "body.pending_days"),
        ({"partner_id": ISSUE_ONLY}, "body.partner_id"),
        ({"bonus": 1}, "body.bonus"),
    ],
)
def test_invalid_rule_sets_are_refused_with_the_field(
    service: Service, change: dict[str, Any], field: str
) -> None:
    assert field in fields(service.post("partner_a", url(ACTIVE), json={**RULES, **change}))


def test_activation(service: Service) -> None:
    first = create(service, "admin", OTHER, {**RULES, "pending_days": 1})
    second = create(service, "admin", OTHER, {**RULES, "pending_days": 2})
    assert not first["active"] and first["activated_at"] is None
    done = activate(service, "admin", OTHER, first["hash"])
    assert done["active"] and done["activated_at"] == service.services.now() and done["hash"] == first["hash"]
    assert activate(service, "admin", OTHER, first["hash"]) == done  # in force already: nothing changes
    activate(service, "admin", OTHER, second["hash"])
    listed = service.get("admin", url(OTHER)).json()
    assert [r["version"] for r in listed["data"]] == sorted(
        (r["version"] for r in listed["data"]), reverse=True
    )
    assert [r["hash"] for r in listed["data"] if r["active"]] == [second["hash"]]
    assert listed["next_cursor"] is None
    # an older version can be put back in force
    assert activate(service, "admin", OTHER, first["hash"])["active"]


def test_who_activates(service: Service) -> None:
    mine = create(service, "partner_a", ACTIVE, {**RULES, "pending_days": 30})
    theirs = create(service, "admin", OTHER, {**RULES, "pending_days": 31})
    path = url(ACTIVE, mine["hash"], "activate")
    assert service.post("anonymous", path).status_code == 401
    assert service.post("member_a", path).status_code == 403
    assert service.post("auditor", path).status_code == 403
    assert service.post("partner_b", path).status_code == 403
    # another partner's rule set, or none at all
    assert service.post("partner_a", url(ACTIVE, theirs["hash"], "activate")).status_code == 404
    assert service.post("partner_a", url(ACTIVE, "0x" + "00" * 32, "activate")).status_code == 404
    assert fields(service.post("partner_a", url(ACTIVE, "0x1234", "activate"))) == ["path.hash"]


def test_who_lists(service: Service) -> None:
    assert service.get("anonymous", url(ACTIVE)).status_code == 401
    assert service.get("member_a", url(ACTIVE)).status_code == 403
    assert service.get("partner_b", url(ACTIVE)).status_code == 403
    for caller in ("partner_a", "admin", "auditor"):
        assert service.get(caller, url(ACTIVE)).status_code == 200


def test_anyone_reads_a_rule_set_by_its_hash(service: Service) -> None:
    created = create(service, "partner_a", ACTIVE, {**RULES, "pending_days": 40})
    for caller in ("anonymous", "member_b", "partner_b"):
        response = service.get(caller, f"/v1/rules/{created['hash']}")
        assert response.status_code == 200
        public = response.json()
        assert public["canonical"] == created["canonical"] and public["rules"] == created["rules"]
        assert "created_by" not in public
    assert (
        service.get("anonymous", f"/v1/rules/{created['hash'].upper().replace('0X', '0x')}").status_code
        == 200
    )
    assert service.get("anonymous", "/v1/rules/0x" + "00" * 32).status_code == 404
    assert fields(service.get("anonymous", "/v1/rules/0xzz")) == ["path.hash"]


# --------------------------------------------------------------------------- quotes


ORDER: dict[str, Any] = {
    "channel": "pos",
    "currency": "EUR",
    "amount": 1500,
    "lines": [
        {"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 450},
        {"sku": "GIFTCARD", "quantity": 1, "unit_price": 500},
        {"sku": "BAGEL", "category": "food", "quantity": 1, "unit_price": 100},
    ],
}


@pytest.fixture(scope="module")
def quoting(service: Service) -> dict[str, Any]:
    """Partner A's rule set in force for the quotes: the one created here, with a daily cap."""
    created = create(service, "partner_a", ACTIVE, {**RULES, "caps": {"day": 100}, "tiers": {"member": "2"}})
    activate(service, "partner_a", ACTIVE, created["hash"])
    return created


def quote(service: Service, caller: str, body: dict[str, Any], status: int = 200) -> Any:
    response = service.post(caller, "/v1/quotes", json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_a_quote_explains_the_points(service: Service, quoting: dict[str, Any]) -> None:
    """9.00 of coffee x2 at 1.5 = 27, the gift card excluded, 1.00 of food = 1.5: 28.5, floored to 28."""
    with service.services.session() as db:
        operations = db.scalar(select(func.count()).select_from(Operation))
    got = quote(service, "partner_a", ORDER)
    assert got["points"] == 28 and got["reason"] == 1 and got["reason_label"] == "purchase"
    assert got["rule_hash"] == quoting["hash"] and got["at"] == service.services.now()
    assert got["release_at"] == got["at"] + 14 * 86_400
    assert [x["kind"] for x in got["lines"]] == ["rate", "line", "excluded", "line", "rounding"]
    assert [x["points"] for x in got["lines"]] == ["1.5", "27", "0", "1.5", "28"]
    assert got["member"] is None and not got["capped"]
    # the admin quotes for any partner; nothing was issued
    assert quote(service, "admin", {**ORDER, "partner_id": ACTIVE})["points"] == 28
    with service.services.session() as db:
        assert db.scalar(select(func.count()).select_from(Operation)) == operations


def test_a_quote_under_a_named_rule_set(service: Service, quoting: dict[str, Any]) -> None:
    older = create(
        service, "partner_a", ACTIVE, {**RULES, "earn": {"basis": "points_per_unit", "rates": {"EUR": "10"}}}
    )
    got = quote(service, "partner_a", {**ORDER, "amount": 100, "lines": [], "rule_hash": older["hash"]})
    assert got["points"] == 10 and got["rule_hash"] == older["hash"]
    others = create(service, "admin", OTHER, {**RULES, "pending_days": 50})
    assert quote(service, "partner_a", {**ORDER, "rule_hash": others["hash"]}, status=404)
    assert quote(service, "partner_a", {**ORDER, "rule_hash": "0x" + "11" * 32}, status=404)


def test_a_quote_needs_a_rule_set_in_force(service: Service) -> None:
    problem = quote(service, "admin", {**ORDER, "partner_id": 4242}, status=409)
    assert problem["type"] == "/problems/conflict" and "no rule set in force" in problem["detail"]


def test_a_member_brings_its_tier_and_caps(service: Service, quoting: dict[str, Any]) -> None:
    member_id = service.members["member_a"]
    wallet = service.get("admin", f"/v1/members/{member_id}/wallet").json()
    assert wallet["tier"]["name"] == "member"
    by_id = quote(service, "partner_a", {**ORDER, "member": {"member_id": member_id}})
    assert by_id["points"] == 57  # x2 for tier member: 57 exactly
    assert by_id["member"]["member_id"] == member_id and by_id["member"]["tier"] == "member"
    assert by_id["member"]["address"] == wallet["address"]
    by_customer = quote(service, "partner_a", {**ORDER, "member": {"customer_id": "cust-member_a"}})
    assert by_customer == by_id
    by_address = quote(service, "partner_a", {**ORDER, "member": {"address": wallet["address"].lower()}})
    assert by_address == by_id
    # what the member earned today counts against the daily cap of 100; failed operations do not
    now = service.services.now()
    address = wallet["address"].lower()
    with service.services.session() as db:
        for i, (state, points, kind) in enumerate(
            [
                ("confirmed", 60, "purchase"),
                ("pending", 10, "engagement"),
                ("failed", 500, "purchase"),
                ("confirmed", 999, "redemption"),
            ]
        ):
            db.add(
                Operation(
                    partner_id=ACTIVE,
                    kind=kind,
                    natural_key=f"test-{i}",
                    state=state,
                    member_id=member_id,
                    member_address=address,
                    points=points,
                    original_points=points,
                    reason=1,
                    ref=bytes([i]) * 32,
                    request="{}",
                    created_at=now,
                    updated_at=now,
                    release_at=now,
                )
            )
    try:
        capped = quote(service, "partner_a", {**ORDER, "member": {"member_id": member_id}})
        assert capped["points"] == 30 and capped["capped"]
        assert capped["member"]["earned_day"] == 70 and capped["member"]["earned_month"] == 70
        assert capped["lines"][-1]["kind"] == "cap"
    finally:
        with service.services.session() as db:
            db.query(Operation).filter(Operation.natural_key.like("test-%")).delete()


def test_a_partner_quotes_only_its_own_members(service: Service, quoting: dict[str, Any]) -> None:
    problem = quote(
        service, "partner_a", {**ORDER, "member": {"member_id": service.members["member_b"]}}, status=404
    )
    assert problem["type"] == "/problems/not-found"
    quote(service, "partner_a", {**ORDER, "member": {"customer_id": "cust-member_b"}}, status=404)
    # by address any wallet can be quoted, but another partner's member is not disclosed as a member
    other = quote(service, "partner_a", {**ORDER, "member": {"address": service.people[3].address}})
    assert other["member"]["member_id"] is None and other["member"]["address"] == service.people[3].address


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "GBP"}, "body.currency"),  # ISO, but the rule set has no rate for it
        ({"currency": "EUX"}, "body.currency"),
        ({"amount": -1}, "body.amount"),
        ({"amount": 1.5}, "body.amount"),
        ({"channel": "kiosk"}, "body.channel"),
        ({"lines": [{"sku": "A", "quantity": 0, "unit_price": 1}]}, "body.lines.0.quantity"),
        ({"member": {"member_id": "mem_" + "0" * 32, "customer_id": "x"}}, "body.member"),
        ({"member": {"address": "0x70997970C51812dc3A010C7d01b50e0d17dc79c8"}}, "body.member.address"),
        ({"rule_hash": "0x12"}, "body.rule_hash"),
        ({"surprise": True}, "body.surprise"),
    ],
)
def test_invalid_quotes_are_refused_with_the_field(
    service: Service, quoting: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    assert field in fields(service.post("partner_a", "/v1/quotes", json={**ORDER, **change}))


def test_who_quotes(service: Service, quoting: dict[str, Any]) -> None:
    assert service.post("anonymous", "/v1/quotes", json=ORDER).status_code == 401
    assert service.post("member_a", "/v1/quotes", json=ORDER).status_code == 403
    assert service.post("auditor", "/v1/quotes", json=ORDER).status_code == 403
    assert service.post("partner_b", "/v1/quotes", json={**ORDER, "partner_id": ACTIVE}).status_code == 403
    assert fields(service.post("admin", "/v1/quotes", json=ORDER)) == ["body.partner_id"]


def test_the_document_describes_the_routes(service: Service) -> None:
    paths = service.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/partners/{partner_id}/rule-sets"]) == {"get", "post"}
    assert "security" not in paths["/v1/rules/{hash}"]["get"]
    assert set(paths["/v1/quotes"]["post"]["responses"]) >= {"200", "401", "403", "404", "409", "422"}
