"""The members' directory over HTTP: enrolment (custodial and self custody), linking an existing member only
with their one-time code, each partner's own view under its own customer ids, erasure of personal data,
and refusals that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from api_scenario import Service
from eth_account import Account
from sqlalchemy import func, select

from api._tables import Member, Membership

pytestmark = pytest.mark.anvil


def _count(service: Service, table: Any) -> int:
    with service.services.session() as db:
        return int(db.execute(select(func.count()).select_from(table)).scalar_one())


def _enrol(service: Service, caller: str, **body: Any) -> Any:
    return service.post(caller, "/v1/members", json=body)


def test_custodial_enrolment_derives_a_wallet_and_an_enrolment_link(api_service: Service) -> None:
    response = _enrol(
        api_service, "partner_a", customer_id="c-100", email="ann@example.com", birthday="1990-04-01"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("mem_") and body["custody"] == "custodial"
    custody = api_service.services.custody
    assert custody is not None
    with api_service.services.session() as db:
        member = db.get(Member, body["id"])
        assert member is not None and member.custody_index is not None
        assert body["address"] == custody.address_of(member.custody_index)
    assert body["customer_id"] == "c-100" and body["email"] == "ann@example.com"
    assert body["birthday"] == "1990-04-01" and body["linked"] is False
    assert body["enrolment"]["url"].startswith("http://testserver/enrol#")
    # The key never appears anywhere in the answer.
    assert "private" not in response.text.lower()
    second = _enrol(api_service, "partner_a", customer_id="c-101").json()
    assert second["address"] != body["address"]


def test_customer_id_enrolled_twice_is_a_conflict_and_changes_nothing(api_service: Service) -> None:
    assert _enrol(api_service, "partner_a", customer_id="c-200").status_code == 201
    members = _count(api_service, Member)
    again = _enrol(api_service, "partner_a", customer_id="c-200")
    assert again.status_code == 409 and again.json()["type"] == "/problems/conflict"
    assert _count(api_service, Member) == members
    # Another partner may use the same customer id for its own customer.
    assert _enrol(api_service, "partner_b", customer_id="c-200").status_code == 201


def test_self_custody_and_linking_needs_the_members_code(api_service: Service) -> None:
    wallet = Account.create().address
    first = _enrol(api_service, "partner_a", customer_id="s-1", custody="self", address=wallet)
    assert (
        first.status_code == 201 and first.json()["address"] == wallet and first.json()["enrolment"] is None
    )
    member_id = first.json()["id"]
    # The same person at partner B: not duplicated, and not linked without their consent.
    members = _count(api_service, Member)
    refused = _enrol(api_service, "partner_b", customer_id="b-9", custody="self", address=wallet)
    assert refused.status_code == 409
    assert _count(api_service, Member) == members
    # The member (their own session) creates a one-time link code and hands it to partner B.
    with api_service.services.session() as db:
        from api._sessions import open_session

        issued, _ = open_session(db, member_id, "siwe", now=api_service.services.now(), ttl_s=600)
    session = {"Authorization": f"Bearer {issued.token}"}
    code = api_service.client.post("/v1/me/link-codes", headers=session).json()["code"]
    linked = _enrol(api_service, "partner_b", customer_id="b-9", link_code=code)
    assert linked.status_code == 201, linked.text
    assert linked.json()["id"] == member_id and linked.json()["linked"] is True
    assert _count(api_service, Member) == members
    # Used once only.
    again = _enrol(api_service, "partner_b", customer_id="b-10", link_code=code)
    assert again.status_code == 410
    # Each partner sees the member under its own customer id, never the other's.
    seen_a = api_service.get("partner_a", f"/v1/members/{member_id}").json()
    seen_b = api_service.get("partner_b", f"/v1/members/{member_id}").json()
    assert seen_a["customer_id"] == "s-1" and seen_b["customer_id"] == "b-9"
    assert "b-9" not in api_service.get("partner_a", "/v1/members", params={"limit": 500}).text
    by_id = api_service.get("partner_b", "/v1/members/by-customer-id/b-9").json()
    assert by_id["id"] == member_id
    assert api_service.get("partner_a", "/v1/members/by-customer-id/b-9").status_code == 404


def test_a_partner_never_sees_another_partners_member(api_service: Service) -> None:
    theirs = api_service.members["member_b"]
    for path in ("", "/wallet", "/history"):
        response = api_service.get("partner_a", f"/v1/members/{theirs}{path}")
        assert response.status_code == 404, path
    listed = api_service.get("partner_a", "/v1/members", params={"limit": 500}).json()["data"]
    assert theirs not in {m["id"] for m in listed}
    assert all(m["customer_id"] is not None or m["erased"] for m in listed)
    everyone = api_service.get("auditor", "/v1/members", params={"limit": 500}).json()["data"]
    assert theirs in {m["id"] for m in everyone}
    assert all(m["customer_id"] is None and m["email"] is None for m in everyone)


def test_mass_assignment_and_invalid_bodies_change_nothing(api_service: Service) -> None:
    members, memberships = _count(api_service, Member), _count(api_service, Membership)
    for body in (
        {"customer_id": "x-1", "custody": "custodial", "custody_index": 0},  # not a field
        {"customer_id": "x-2", "partner_id": 4},  # another partner's scope
        {"customer_id": "x-3", "custody": "self"},  # self custody needs an address
        {"customer_id": "x-4", "email": "not an email"},
        {"customer_id": "x-5", "birthday": "1990-02-30"},
        {"customer_id": ""},
        {"customer_id": "x-6", "custody": "self", "address": "0x1234"},
    ):
        response = _enrol(api_service, "partner_a", **body)
        assert response.status_code == 422, body
        assert response.json()["errors"], body
    assert (_count(api_service, Member), _count(api_service, Membership)) == (members, memberships)
    unknown = _enrol(api_service, "partner_a", customer_id="x-7", role="admin").json()
    assert unknown["errors"][0]["field"] == "body.role"


def test_only_partner_keys_enrol(api_service: Service) -> None:
    for caller, status in (
        ("anonymous", 401),
        ("auditor", 403),
        ("admin", 403),
        ("member_a", 403),
        ("revoked", 401),
    ):
        assert _enrol(api_service, caller, customer_id=f"k-{caller}").status_code == status, caller


def test_update_contact_data(api_service: Service) -> None:
    member_id = api_service.members["member_a"]
    changed = api_service.client.patch(
        f"/v1/members/{member_id}", json={"phone": "+441234567890"}, headers=api_service.headers("partner_a")
    )
    assert changed.status_code == 200 and changed.json()["phone"] == "+441234567890"
    assert changed.json()["email"] == "member_a@example.com"  # left out: unchanged
    other = api_service.client.patch(
        f"/v1/members/{member_id}", json={"phone": "+441234567890"}, headers=api_service.headers("partner_b")
    )
    assert other.status_code == 404


def test_erasure_removes_personal_data_everywhere_and_keeps_the_address(api_service: Service) -> None:
    first = _enrol(api_service, "partner_a", customer_id="e-1", email="eve@example.com", phone="+15551234567")
    member_id = first.json()["id"]
    address = first.json()["address"]
    with api_service.services.session() as db:
        from api._sessions import open_session

        issued, _ = open_session(db, member_id, "passkey", now=api_service.services.now(), ttl_s=600)
    session = {"Authorization": f"Bearer {issued.token}"}
    # Another member cannot erase this one's data; the member can.
    assert (
        api_service.client.delete(
            f"/v1/members/{member_id}/personal-data", headers=api_service.headers("member_a")
        ).status_code
        == 404
    )
    assert (
        api_service.client.delete(
            f"/v1/members/{member_id}/personal-data", headers=api_service.headers("auditor")
        ).status_code
        == 403
    )
    erased = api_service.client.delete(f"/v1/members/{member_id}/personal-data", headers=session)
    assert erased.status_code == 200 and erased.json()["memberships_erased"] == 1
    with api_service.services.session() as db:
        row = db.get(Membership, (1, member_id))
        assert row is not None
        assert (row.customer_id, row.email, row.phone, row.birthday) == (None, None, None, None)
        member = db.get(Member, member_id)
        assert member is not None and member.address == address.lower() and member.erased_at is not None
    seen = api_service.get("partner_a", f"/v1/members/{member_id}").json()
    assert seen["erased"] is True and seen["email"] is None and seen["customer_id"] is None
    assert api_service.get("partner_a", "/v1/members/by-customer-id/e-1").status_code == 404
