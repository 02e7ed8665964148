"""Redemptions over HTTP, always with the member's consent, up to the outbox (and through the batcher to the
chain): a self-custody member signs the EIP-712 intent the partner asked for; a custodial member creates a
one-time code in a passkey session and the service signs only after the till used it. Every path without a
valid consent of the member is refused and enqueues nothing. Refunds, rewards' stock, code and consent
revocation; the balance counts redemptions not yet on the ledger."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from api_scenario import Service
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select, update

from api._batcher import Batcher
from api._outbox import order_ref, order_ref_key
from api._redemptions import code_digest
from api._sessions import open_session
from api._tables import Operation, RedemptionCode, Reward
from api.routers import redemptions, rewards
from api.routers.redemptions import qr_svg
from chain import Points, ReasonCode
from chain._eip712 import redemption_typed_data, sign_cancellation, typed_data_digest
from conftest import ACTIVE, ISSUE_ONLY, chain_ledger, random_ref

pytestmark = pytest.mark.anvil

DETAIL_KEYS = {"customer", "amount", "ref", "nonce", "deadline", "signature"}


@pytest.fixture(scope="module", autouse=True)
def _routes(api_service: Service) -> Iterator[None]:
    """The rewards and redemption routes, included here until the app registers them."""
    app: Any = api_service.client.app
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/v1/redemptions" not in paths:
        app.include_router(redemptions.router)
    if "/v1/rewards" not in paths:
        app.include_router(rewards.router)
    yield


# --------------------------------------------------------------------------- helpers


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ops(service: Service, kind: str = "redemption") -> int:
    with service.services.session() as db:
        return int(db.scalar(select(func.count()).select_from(Operation).where(Operation.kind == kind)) or 0)


def _op(service: Service, op_id: str) -> Operation:
    with service.services.session() as db:
        op = db.get_one(Operation, int(op_id.removeprefix("op_")))
        db.expunge(op)
        return op


def _balance(service: Service, address: str) -> int:
    return int(
        service.ledger.contract.functions.balanceOf(service.ledger.w3.to_checksum_address(address)).call()
    )


def _issue(service: Service, address: str, points: int) -> None:
    partner = chain_ledger(service.ledger, service.ledger.actors.partner)
    partner.issue(
        service.ledger.w3.to_checksum_address(address), Points(points), random_ref(), ReasonCode(1)
    ).wait()
    service.sync()


def _custodial(service: Service, points: int = 100) -> tuple[str, str, dict[str, str]]:
    """A custodial member of partner A holding ``points``, with a passkey session: id, address, headers."""
    enrolled = service.post("partner_a", "/v1/members", json={"customer_id": f"c-{secrets.token_hex(6)}"})
    assert enrolled.status_code == 201, enrolled.text
    member_id, address = enrolled.json()["id"], enrolled.json()["address"]
    if points:
        _issue(service, address, points)
    with service.services.session() as db:
        issued, _ = open_session(db, member_id, "passkey", now=service.services.now(), ttl_s=3600)
    return member_id, address, _bearer(issued.token)


def _code(
    service: Service, session: dict[str, str], partner_id: int = ACTIVE, max_points: int = 50, **more: Any
) -> Any:
    response = service.client.post(
        "/v1/me/redemption-codes",
        json={"partner_id": partner_id, "max_points": max_points, **more},
        headers=session,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _intent(service: Service, caller: str = "partner_a", **body: Any) -> Any:
    body.setdefault("member", {"customer_id": "cust-member_a"})
    return service.post(caller, "/v1/redemptions/intents", json=body)


def _sign(account: LocalAccount, typed: dict[str, Any]) -> str:
    return "0x" + bytes(account.sign_typed_data(full_message=typed).signature).hex()


def _consent(
    service: Service, amount: int = 2, signer: LocalAccount | None = None, **body: Any
) -> dict[str, Any]:
    """A self-custody consent for member A at partner A: the submission body."""
    intent = _intent(service, amount=amount, **body)
    assert intent.status_code == 200, intent.text
    typed = intent.json()["typed_data"]
    return {
        "redemption_id": intent.json()["redemption_id"],
        "intent": typed["message"],
        "signature": _sign(signer or service.people[1], typed),
    }


def _chain_typed_data(service: Service, detail: dict[str, Any], partner_id: int) -> dict[str, Any]:
    """The typed data the ledger checks ``redeem(customer, amount, ref, nonce, deadline, signature)`` by."""
    return redemption_typed_data(
        chain_id=service.ledger.w3.eth.chain_id,
        contract=service.ledger.address,
        customer=detail["customer"],
        partner_id=partner_id,
        amount=detail["amount"],
        ref=bytes.fromhex(detail["ref"][2:]),
        nonce=detail["nonce"],
        deadline=detail["deadline"],
    )


def _assert_consent_of(service: Service, op: Operation, address: str) -> dict[str, Any]:
    """The operation's detail is a consent the chain accepts as ``address``'s."""
    detail: dict[str, Any] = json.loads(op.detail or "{}")
    assert set(detail) == DETAIL_KEYS
    assert isinstance(detail["nonce"], int) and isinstance(detail["deadline"], int)
    assert detail["nonce"] & (2**64 - 1) == 0 and detail["nonce"] >> 64 > 0
    assert detail["amount"] == op.points and detail["ref"] == "0x" + bytes(op.ref).hex()
    assert detail["customer"].lower() == address.lower() == op.member_address
    typed = _chain_typed_data(service, detail, op.partner_id)
    # The contract's own digest of these values is the one signed ...
    on_chain = service.ledger.contract.functions.redemptionDigest(
        detail["customer"],
        op.partner_id,
        detail["amount"],
        bytes.fromhex(detail["ref"][2:]),
        detail["nonce"],
        detail["deadline"],
    ).call()
    assert bytes(on_chain) == typed_data_digest(typed)
    # ... and the signature recovers the member.
    signer = Account.recover_message(encode_typed_data(full_message=typed), signature=detail["signature"])
    assert signer.lower() == address.lower()
    return detail


def _redeem(service: Service, caller: str = "partner_a", **body: Any) -> Any:
    return service.post(caller, "/v1/redemptions", json=body)


# --------------------------------------------------------------------------- self custody


def test_a_signed_intent_is_queued_as_the_redeem_call_the_chain_checks(api_service: Service) -> None:
    before = _ops(api_service)
    intent = _intent(api_service, amount=3, redemption_id=f"rd-{secrets.token_hex(4)}")
    assert intent.status_code == 200, intent.text
    body = intent.json()
    typed = body["typed_data"]
    assert typed["primaryType"] == "Redemption" and "EIP712Domain" in typed["types"]
    assert typed["domain"]["chainId"] == api_service.ledger.w3.eth.chain_id
    assert typed["domain"]["verifyingContract"].lower() == api_service.ledger.address.lower()
    message = typed["message"]
    assert message["customer"] == api_service.people[1].address and message["partnerId"] == ACTIVE
    assert message["amount"] == 3 and isinstance(message["nonce"], str)
    assert body["expires_at"] == message["deadline"] == api_service.services.now() + 3600
    with api_service.services.session() as db:
        key = order_ref_key(db, ACTIVE, now=0)
    assert message["reference"] == "0x" + order_ref(key, "redemption", body["redemption_id"]).hex()
    assert _ops(api_service) == before  # an intent stores nothing

    submission = {
        "redemption_id": body["redemption_id"],
        "intent": message,
        "signature": _sign(api_service.people[1], typed),
    }
    created = _redeem(api_service, **submission)
    assert created.status_code == 201, created.text
    op_id = created.json()["id"]
    assert created.headers["location"] == f"/v1/operations/{op_id}"
    assert created.json()["kind"] == "redemption" and created.json()["state"] == "accepted"
    assert created.json()["points"] == 3 and created.json()["member_id"] == api_service.members["member_a"]
    assert "signature" not in created.json()["detail"]
    _assert_consent_of(api_service, _op(api_service, op_id), api_service.people[1].address)

    # The same submission again is the same operation; the same redemption id with another consent is not.
    again = _redeem(api_service, **submission)
    assert again.status_code == 200 and again.json()["id"] == op_id
    other = _consent(api_service, amount=3)
    other["redemption_id"] = body["redemption_id"]
    assert _redeem(api_service, **other).status_code == 409
    assert _intent(api_service, amount=3, redemption_id=body["redemption_id"]).status_code == 409
    assert _ops(api_service) == before + 1


def test_the_balance_counts_redemptions_not_yet_on_the_ledger(api_service: Service) -> None:
    address = api_service.people[1].address
    live = api_service.get("member_a", f"/v1/wallets/{address}").json()["balance"]
    with api_service.services.session() as db:
        taken = db.scalar(
            select(func.coalesce(func.sum(Operation.points), 0)).where(
                Operation.member_address == address.lower(),
                Operation.kind == "redemption",
                Operation.state.in_(("accepted", "submitted")),
            )
        )
    left = live - int(taken or 0)
    assert left > 1
    refused = _intent(api_service, amount=left + 1)
    assert refused.status_code == 409
    assert refused.json()["type"] == "/problems/insufficient-points"
    assert refused.json()["needed"] == left + 1 and refused.json()["spendable"] == left
    # Two consents signed while the points were there: the first takes them all, the second is refused
    # when it is submitted (the balance is checked again), and so is any new intent.
    first, second = _consent(api_service, amount=left), _consent(api_service, amount=1)
    assert _redeem(api_service, **first).status_code == 201
    late = _redeem(api_service, **second)
    assert late.status_code == 409 and late.json()["type"] == "/problems/insufficient-points"
    assert _intent(api_service, amount=1).status_code == 409
    # Once that redemption fails (or is cancelled), its points count again.
    with api_service.services.session() as db:
        db.execute(
            update(Operation)
            .where(Operation.natural_key == first["redemption_id"])
            .values(state="failed", failure="consent-invalid")
        )
    assert _redeem(api_service, **second).status_code == 201


def test_a_custodial_member_cannot_be_asked_for_a_signature(api_service: Service) -> None:
    _, address, _ = _custodial(api_service, points=0)
    response = _intent(api_service, member={"address": address}, amount=1)
    assert response.status_code == 409


# --------------------------------------------------------------------------- custodial


def test_a_custodial_code_is_used_once_and_only_then_signed_for(api_service: Service) -> None:
    member_id, address, session = _custodial(api_service, points=100)
    code = _code(api_service, session, max_points=30, ttl_minutes=10)
    assert len(code["code"]) == 10 and code["code"].isdigit()
    assert code["expires_at"] == code["created_at"] + 600 and code["partner_id"] == ACTIVE
    assert code["code"] in code["qr_payload"] and member_id in code["qr_payload"]
    # the QR code shown at the till is an SVG of exactly that payload (segno's matrix, module for module)
    import segno

    expected = segno.make(code["qr_payload"], error="m")
    assert code["qr_svg"].startswith("<svg") and expected.designator in ("3-M", "4-M", "5-M", "6-M")
    assert code["qr_svg"] == qr_svg(code["qr_payload"])
    with api_service.services.session() as db:  # stored only as a digest
        rows = db.scalars(select(RedemptionCode).where(RedemptionCode.member_id == member_id)).all()
        assert len(rows) == 1 and code["code"].encode() not in bytes(rows[0].code_hash)
    created = _redeem(
        api_service, member={"member_id": member_id}, code=code["code"], amount=20, redemption_id="till-9-1"
    )
    assert created.status_code == 201, created.text
    assert created.json()["points"] == 20 and created.json()["member_id"] == member_id
    assert "code" not in created.json()["request"] and created.json()["request"]["code_id"] == code["id"]
    op = _op(api_service, created.json()["id"])
    _assert_consent_of(api_service, op, address)
    listed = api_service.client.get("/v1/me/redemption-codes", headers=session).json()["data"]
    assert listed[0]["id"] == code["id"] and listed[0]["used_at"] is not None
    assert listed[0]["operation"] == created.json()["id"] and "code" not in listed[0]
    # The same request again answers the operation; the code cannot be used a second time.
    again = _redeem(
        api_service, member={"member_id": member_id}, code=code["code"], amount=20, redemption_id="till-9-1"
    )
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    reused = _redeem(api_service, member={"member_id": member_id}, code=code["code"], amount=5)
    assert reused.status_code == 410
    # A used code cannot be revoked.
    assert (
        api_service.client.delete(f"/v1/me/redemption-codes/{code['id']}", headers=session).status_code == 409
    )


def test_codes_are_made_only_in_a_custodial_members_passkey_session(api_service: Service) -> None:
    body = {"partner_id": ACTIVE, "max_points": 5}
    # An API key is never a member; a self-custody member's SIWE session makes no codes.
    for caller, status in (("partner_a", 403), ("admin", 403), ("anonymous", 401), ("member_a", 403)):
        assert api_service.post(caller, "/v1/me/redemption-codes", json=body).status_code == status
    member_id, _, _ = _custodial(api_service, points=0)
    with api_service.services.session() as db:
        issued, _ = open_session(db, member_id, "siwe", now=api_service.services.now(), ttl_s=600)
    assert (
        api_service.client.post(
            "/v1/me/redemption-codes", json=body, headers=_bearer(issued.token)
        ).status_code
        == 403
    )
    _, _, session = _custodial(api_service, points=0)
    for bad in ({**body, "ttl_minutes": 16}, {**body, "ttl_minutes": 0}, {**body, "max_points": 0}):
        assert (
            api_service.client.post("/v1/me/redemption-codes", json=bad, headers=session).status_code == 422
        )
    unknown = api_service.client.post(
        "/v1/me/redemption-codes", json={**body, "partner_id": 999}, headers=session
    )
    assert unknown.status_code == 404


def test_a_revoked_code_cannot_be_used(api_service: Service) -> None:
    member_id, _, session = _custodial(api_service, points=10)
    code = _code(api_service, session, max_points=10)
    revoked = api_service.client.delete(f"/v1/me/redemption-codes/{code['id']}", headers=session)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (
        api_service.client.delete(f"/v1/me/redemption-codes/{code['id']}", headers=session).status_code == 200
    )
    # Another member cannot see or revoke it.
    _, _, other = _custodial(api_service, points=0)
    assert (
        api_service.client.delete(f"/v1/me/redemption-codes/{code['id']}", headers=other).status_code == 404
    )
    used = _redeem(api_service, member={"member_id": member_id}, code=code["code"], amount=1)
    assert used.status_code == 410


def test_a_partner_key_alone_can_never_spend_a_members_points(api_service: Service) -> None:
    """Every path without a valid consent of the member is refused, and nothing is queued or consumed."""
    member_id, _, session = _custodial(api_service, points=100)
    mine = _code(api_service, session, max_points=40)
    # A code for partner 4 (which accepts no points now, so the API makes none for it: stored directly).
    another_partners = {"code": "0000004242", "id": code_digest(member_id, "0000004242")[:8].hex()}
    with api_service.services.session() as db:
        now = api_service.services.now()
        db.add(
            RedemptionCode(
                code_hash=code_digest(member_id, another_partners["code"]),
                member_id=member_id,
                partner_id=ISSUE_ONLY,
                max_points=40,
                created_at=now,
                expires_at=now + 300,
            )
        )
    expired = _code(api_service, session, max_points=40)
    with api_service.services.session() as db:  # as if its minutes had passed
        for row in db.scalars(select(RedemptionCode).where(RedemptionCode.member_id == member_id)):
            if bytes(row.code_hash[:8]).hex() == expired["id"]:
                row.expires_at = api_service.services.now() - 1
    used = _code(api_service, session, max_points=40)
    assert (
        _redeem(api_service, member={"member_id": member_id}, code=used["code"], amount=1).status_code == 201
    )
    before = _ops(api_service)
    wrong = f"{(int(mine['code']) + 1) % 10**10:010d}"
    member = {"member_id": member_id}
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("no consent at all", {"member": member, "amount": 5}, 422),
        ("no consent, a redemption id", {"member": member, "amount": 5, "redemption_id": "x-1"}, 422),
        ("a wrong code", {"member": member, "code": wrong, "amount": 5}, 410),
        ("another partner's code", {"member": member, "code": another_partners["code"], "amount": 5}, 410),
        ("an expired code", {"member": member, "code": expired["code"], "amount": 5}, 410),
        ("a used code", {"member": member, "code": used["code"], "amount": 5}, 410),
        ("more than the code allows", {"member": member, "code": mine["code"], "amount": 41}, 422),
        (
            "the code for another member",
            {"member": {"customer_id": "cust-member_a"}, "code": mine["code"], "amount": 5},
            410,
        ),
        (
            "the code with an unknown member",
            {"member": {"member_id": "mem_" + "0" * 32}, "code": mine["code"], "amount": 5},
            410,
        ),
    ]
    for name, body, status in cases:
        response = _redeem(api_service, **body)
        assert response.status_code == status, (name, response.text)
    # My code, at another partner's till (partner B), is refused too.
    assert _redeem(api_service, "partner_b", member=member, code=mine["code"], amount=5).status_code == 410

    # Self custody: a consent signed by someone else, or for another partner, amount, reference or time.
    stranger = api_service.people[2]
    forged = _consent(api_service, amount=2, signer=stranger)
    other_partner = _intent(
        api_service, "partner_b", member={"address": api_service.people[1].address}, amount=2
    )
    assert other_partner.status_code == 200, other_partner.text
    typed_b = other_partner.json()["typed_data"]
    for_b = {
        "redemption_id": other_partner.json()["redemption_id"],
        "intent": typed_b["message"],
        "signature": _sign(api_service.people[1], typed_b),
    }
    honest = _consent(api_service, amount=2)
    more = {**honest, "intent": {**honest["intent"], "amount": 50}}
    elsewhere = {**honest, "redemption_id": "another-id"}
    typed_late = _intent(api_service, amount=2).json()["typed_data"]
    typed_late["message"]["deadline"] = api_service.services.now() - 1
    late = {
        "redemption_id": "late-1",
        "intent": typed_late["message"],
        "signature": _sign(api_service.people[1], typed_late),
    }
    mangled = {
        **honest,
        "signature": honest["signature"][:-2] + ("1b" if honest["signature"][-2:] == "1c" else "1c"),
    }
    for name, body in (
        ("signed by a stranger", forged),
        ("signed for another partner", for_b),
        ("another amount than signed", more),
        ("another redemption id than signed", elsewhere),
        ("an expired consent", late),
        ("a mangled signature", mangled),
        ("no signature", {k: v for k, v in honest.items() if k != "signature"}),
    ):
        response = _redeem(api_service, **body)
        assert response.status_code == 422, (name, response.text)
    # A member session is not a partner key.
    assert api_service.post("member_a", "/v1/redemptions", json=honest).status_code == 403
    assert _ops(api_service) == before
    # The refused codes are all still as they were (none consumed by a refusal).
    states = {
        c["id"]: c for c in api_service.client.get("/v1/me/redemption-codes", headers=session).json()["data"]
    }
    assert states[mine["id"]]["used_at"] is None
    assert states[another_partners["id"]]["used_at"] is None
    # The honest consent itself is accepted.
    assert _redeem(api_service, **honest).status_code == 201


# --------------------------------------------------------------------------- rewards


def test_redeeming_a_reward_takes_its_price_and_one_of_its_stock(api_service: Service) -> None:
    reward = api_service.post(
        "partner_a", f"/v1/partners/{ACTIVE}/rewards", json={"name": "Muffin", "points_price": 7, "stock": 1}
    ).json()
    member_id, _, session = _custodial(api_service, points=30)
    code = _code(api_service, session, max_points=20)
    created = _redeem(api_service, member={"member_id": member_id}, code=code["code"], reward_id=reward["id"])
    assert created.status_code == 201, created.text
    assert created.json()["points"] == 7
    with api_service.services.session() as db:
        assert db.get_one(Reward, reward["id"]).stock == 0
    second = _code(api_service, session, max_points=20)
    sold_out = _redeem(
        api_service, member={"member_id": member_id}, code=second["code"], reward_id=reward["id"]
    )
    assert sold_out.status_code == 409
    states = {
        c["id"]: c for c in api_service.client.get("/v1/me/redemption-codes", headers=session).json()["data"]
    }
    assert states[second["id"]]["used_at"] is None  # refused: the code is still usable
    later = api_service.post(
        "partner_a",
        f"/v1/partners/{ACTIVE}/rewards",
        json={"name": "Tomorrow", "points_price": 5, "valid_from": api_service.services.now() + 3600},
    ).json()
    assert (
        _redeem(
            api_service, member={"member_id": member_id}, code=second["code"], reward_id=later["id"]
        ).status_code
        == 409
    )
    foreign = api_service.post(
        "admin", f"/v1/partners/{ISSUE_ONLY}/rewards", json={"name": "Seat", "points_price": 5}
    ).json()
    assert (
        _redeem(
            api_service, member={"member_id": member_id}, code=second["code"], reward_id=foreign["id"]
        ).status_code
        == 404
    )
    # By intent too: the reward's price is the amount signed.
    intent = _intent(api_service, reward_id=later["id"])
    assert intent.status_code == 409


# --------------------------------------------------------------------------- revocation


def test_a_self_custody_member_revokes_a_signed_consent(api_service: Service) -> None:
    consent = _consent(api_service, amount=1)
    queued = _redeem(api_service, **consent)
    assert queued.status_code == 201
    nonce = int(consent["intent"]["nonce"])
    chain_id = api_service.ledger.w3.eth.chain_id
    signature = sign_cancellation(
        api_service.people[1], chain_id=chain_id, contract=api_service.ledger.address, nonce=nonce
    )
    forged = sign_cancellation(
        api_service.people[2], chain_id=chain_id, contract=api_service.ledger.address, nonce=nonce
    )
    path = "/v1/me/consent-revocations"
    assert (
        api_service.post(
            "member_a", path, json={"nonce": str(nonce), "signature": "0x" + forged.hex()}
        ).status_code
        == 422
    )
    assert (
        api_service.post(
            "partner_a", path, json={"nonce": str(nonce), "signature": "0x" + signature.hex()}
        ).status_code
        == 403
    )
    body = {"nonce": str(nonce), "signature": "0x" + signature.hex()}
    revoked = api_service.post("member_a", path, json=body)
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["kind"] == "revocation" and revoked.json()["partner_id"] == ACTIVE
    op = _op(api_service, revoked.json()["id"])
    assert json.loads(op.detail or "{}") == {
        "customer": api_service.people[1].address,
        "nonce": nonce,
        "signature": "0x" + signature.hex(),
    }
    assert _op(api_service, queued.json()["id"]).state == "cancelled"
    assert api_service.post("member_a", path, json=body).json()["id"] == revoked.json()["id"]
    # A consent the service never saw needs its partner named.
    unseen = secrets.randbits(192) << 64
    unseen_sig = sign_cancellation(
        api_service.people[1], chain_id=chain_id, contract=api_service.ledger.address, nonce=unseen
    )
    body = {"nonce": str(unseen), "signature": "0x" + unseen_sig.hex()}
    assert api_service.post("member_a", path, json=body).status_code == 422
    assert api_service.post("member_a", path, json={**body, "partner_id": ACTIVE}).status_code == 201


# --------------------------------------------------------------------------- refunds and the chain


def test_refunds_of_a_confirmed_redemption(api_service: Service) -> None:
    consent = _consent(api_service, amount=4)
    redemption = _redeem(api_service, **consent).json()
    path = f"/v1/redemptions/{redemption['id']}/refunds"
    assert (
        api_service.post("partner_a", path, json={"refund_id": "r-0", "amount": 1}).status_code == 409
    )  # not confirmed
    with api_service.services.session() as db:  # as the batcher would mark it
        db.execute(
            update(Operation)
            .where(Operation.id == int(redemption["id"][3:]))
            .values(state="confirmed", block_number=1)
        )
    assert api_service.post("partner_b", path, json={"refund_id": "r-1", "amount": 1}).status_code == 404
    first = api_service.post("partner_a", path, json={"refund_id": "r-1", "amount": 3})
    assert first.status_code == 201, first.text
    assert first.json()["kind"] == "refund" and first.json()["parent"] == redemption["id"]
    op = _op(api_service, first.json()["id"])
    with api_service.services.session() as db:
        key = order_ref_key(db, ACTIVE, now=0)
    assert bytes(op.ref) == order_ref(key, "refund", "r-1") and op.points == 3
    assert json.loads(op.detail or "{}") == {
        "amount": 3,
        "refund_ref": "0x" + order_ref(key, "refund", "r-1").hex(),
    }
    assert api_service.post("partner_a", path, json={"refund_id": "r-1", "amount": 3}).status_code == 200
    assert api_service.post("partner_a", path, json={"refund_id": "r-1", "amount": 1}).status_code == 409
    assert (
        api_service.post("partner_a", path, json={"refund_id": "r-2", "amount": 2}).status_code == 409
    )  # 1 left
    assert api_service.post("partner_a", path, json={"refund_id": "r-2", "amount": 1}).status_code == 201
    assert (
        api_service.post(
            "partner_a", "/v1/redemptions/op_999999/refunds", json={"refund_id": "r-3", "amount": 1}
        ).status_code
        == 404
    )


def test_both_consent_paths_redeem_on_chain_through_the_batcher(api_service: Service) -> None:
    """End to end: the batcher sends the queued consents (``redeem``), a refund and a revocation."""
    self_address = api_service.people[1].address
    member_id, custodial_address, session = _custodial(api_service, points=50)
    # Nothing earlier in this module is left for the batcher but what it can send (consents are fresh).
    with api_service.services.session() as db:
        db.execute(update(Operation).where(Operation.state == "accepted").values(state="cancelled"))
    consent = _consent(api_service, amount=2)
    mine = _redeem(api_service, **consent).json()
    code = _code(api_service, session, max_points=20)
    theirs = _redeem(api_service, member={"member_id": member_id}, code=code["code"], amount=12).json()
    before = _balance(api_service, self_address), _balance(api_service, custodial_address)
    now = api_service.chain_time

    batcher = Batcher(
        api_service.engine,
        chain_ledger(api_service.ledger, api_service.ledger.actors.partner),
        ACTIVE,
        clock=now,
    )
    batcher.drain(timeout=60)
    for op_id in (mine["id"], theirs["id"]):
        op = _op(api_service, op_id)
        assert op.state == "confirmed", (op.failure, op.failure_detail)
    assert _balance(api_service, self_address) == before[0] - 2
    assert _balance(api_service, custodial_address) == before[1] - 12

    refund = api_service.post(
        "partner_a",
        f"/v1/redemptions/{theirs['id']}/refunds",
        json={"refund_id": f"rf-{secrets.token_hex(4)}", "amount": 5},
    )
    assert refund.status_code == 201, refund.text
    batcher.drain(timeout=60)
    assert _op(api_service, refund.json()["id"]).state == "confirmed"
    assert _balance(api_service, custodial_address) == before[1] - 7

    # A revoked consent: the cancellation goes on chain and uses up the nonce.
    revoked = _consent(api_service, amount=1)
    nonce = int(revoked["intent"]["nonce"])
    queued = _redeem(api_service, **revoked).json()
    chain_id = api_service.ledger.w3.eth.chain_id
    cancellation = sign_cancellation(
        api_service.people[1], chain_id=chain_id, contract=api_service.ledger.address, nonce=nonce
    )
    revocation = api_service.post(
        "member_a",
        "/v1/me/consent-revocations",
        json={"nonce": str(nonce), "signature": "0x" + cancellation.hex()},
    )
    assert revocation.status_code == 201
    batcher.drain(timeout=60)
    assert _op(api_service, queued["id"]).state == "cancelled"
    assert _op(api_service, revocation.json()["id"]).state == "confirmed"
    key = nonce >> 64
    assert (
        chain_ledger(api_service.ledger, api_service.ledger.actors.partner).nonce_of(self_address, key)
        == nonce + 1
    )
    assert _balance(api_service, self_address) == before[0] - 2
