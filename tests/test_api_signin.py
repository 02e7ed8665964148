"""Member sign-in over HTTP: Sign-In with Ethereum for self custody, passkeys (a software authenticator) for
custodial members; sessions that read only their own wallet, expire and sign out; every refusal typed and
creating no session."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from api_scenario import Service
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from soft_webauthn import SoftWebauthnDevice  # type: ignore[import-untyped]
from sqlalchemy import func, select
from test_passkeys import as_browser_json, for_device

from api._siwe import SiweMessage
from api._tables import MemberSession

pytestmark = pytest.mark.anvil


def _sessions(service: Service) -> int:
    with service.services.session() as db:
        return int(db.execute(select(func.count()).select_from(MemberSession)).scalar_one())


def _siwe(service: Service, account: LocalAccount, **changes: Any) -> tuple[str, str]:
    """A message for a fresh nonce, as a wallet would build it, and its signature."""
    offer = service.post("anonymous", "/v1/auth/siwe/nonce").json()
    now = dt.datetime.fromtimestamp(service.chain_time(), dt.UTC)
    fields: dict[str, Any] = {
        "domain": offer["domain"],
        "address": account.address,
        "statement": "Sign in to your coalition wallet.",
        "uri": offer["uri"],
        "version": "1",
        "chain_id": offer["chain_id"],
        "nonce": offer["nonce"],
        "issued_at": now,
        "expiration_time": now + dt.timedelta(minutes=5),
    } | changes
    text = SiweMessage(**fields).text()
    signer = changes.pop("signer", None) or account
    signature = signer.sign_message(encode_defunct(text=text)).signature.hex()
    return text, "0x" + signature.removeprefix("0x")


def _sign_in(service: Service, text: str, signature: str) -> Any:
    return service.post("anonymous", "/v1/auth/siwe", json={"message": text, "signature": signature})


def test_siwe_signs_a_self_custody_member_in_to_their_own_wallet_only(api_service: Service) -> None:
    member = api_service.people[1]
    text, signature = _siwe(api_service, member)
    response = _sign_in(api_service, text, signature)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["address"] == member.address and session["method"] == "siwe"
    assert session["member_id"] == api_service.members["member_a"]
    assert "loyalty_session" in response.headers["set-cookie"].lower()
    assert "httponly" in response.headers["set-cookie"].lower()
    bearer = {"Authorization": f"Bearer {session['token']}"}
    client = api_service.client
    own = client.get(f"/v1/wallets/{member.address}", headers=bearer)
    assert own.status_code == 200
    assert own.json()["balance"] == api_service.ledger.contract.functions.balanceOf(member.address).call()
    assert client.get(f"/v1/wallets/{api_service.people[3].address}", headers=bearer).status_code == 403
    assert client.get("/v1/me", headers=bearer).json()["id"] == session["member_id"]
    # Signing out ends the session at once.
    assert client.delete("/v1/session", headers=bearer).status_code == 204
    assert client.get("/v1/me", headers=bearer).status_code == 401


def _refused(service: Service, text: str, signature: str, reason: str) -> None:
    before = _sessions(service)
    response = _sign_in(service, text, signature)
    assert response.status_code == 401, response.text
    problem = response.json()
    assert problem["type"] == "/problems/sign-in-failed" and problem["reason"] == reason, problem
    assert _sessions(service) == before


def test_siwe_refusals(api_service: Service) -> None:
    member = api_service.people[1]
    # A nonce is single-use: the replay of a good sign-in is refused.
    text, signature = _siwe(api_service, member)
    assert _sign_in(api_service, text, signature).status_code == 201
    _refused(api_service, text, signature, "nonce")
    # A nonce the service never issued.
    text, signature = _siwe(api_service, member, nonce="neverissued123")
    _refused(api_service, text, signature, "nonce")
    # Wrong domain, wrong chain, expired, not yet valid.
    _refused(api_service, *_siwe(api_service, member, domain="evil.example"), "domain")
    _refused(api_service, *_siwe(api_service, member, chain_id=1), "chain-id")
    past = dt.datetime.fromtimestamp(api_service.chain_time(), dt.UTC) - dt.timedelta(hours=1)
    _refused(api_service, *_siwe(api_service, member, issued_at=past, expiration_time=past), "expired")
    future = dt.datetime.fromtimestamp(api_service.chain_time(), dt.UTC) + dt.timedelta(hours=1)
    _refused(api_service, *_siwe(api_service, member, not_before=future), "not-yet-valid")
    # Signed by another key than the message's address.
    text, _ = _siwe(api_service, member)
    stranger = Account.create()
    forged = "0x" + stranger.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")
    _refused(api_service, text, forged, "signer")
    # A wallet that is no member.
    _refused(api_service, *_siwe(api_service, stranger), "not-a-member")
    # Garbage.
    _refused(api_service, "hello", "0x00", "malformed")


def _custodial_member(service: Service) -> tuple[str, str]:
    enrolled = service.post(
        "partner_a", "/v1/members", json={"customer_id": f"pk-{_sessions(service)}"}
    ).json()
    return enrolled["id"], enrolled["enrolment"]["url"].split("#", 1)[1]


def _register(
    service: Service, device: SoftWebauthnDevice, token: str, origin: str = "http://testserver"
) -> Any:
    offer = service.post(
        "anonymous", "/v1/auth/passkeys/registration/options", json={"enrolment_token": token}
    )
    assert offer.status_code == 200, offer.text
    answer = as_browser_json(device.create(for_device(offer.json()["options"]), origin))
    return service.post(
        "anonymous",
        "/v1/auth/passkeys/registration",
        json={"enrolment_token": token, "challenge": offer.json()["challenge"], "credential": answer},
    )


def _login(
    service: Service, device: SoftWebauthnDevice, origin: str = "http://testserver"
) -> tuple[Any, Any]:
    offer = service.post("anonymous", "/v1/auth/passkeys/login/options").json()
    credential = as_browser_json(device.get(for_device(offer["options"]), origin))
    body = {"challenge": offer["challenge"], "credential": credential}
    return service.post("anonymous", "/v1/auth/passkeys/login", json=body), body


def test_passkey_enrolment_and_sign_in(api_service: Service) -> None:
    member_id, token = _custodial_member(api_service)
    device = SoftWebauthnDevice()
    registered = _register(api_service, device, token)
    assert registered.status_code == 201, registered.text
    assert registered.json()["member_id"] == member_id and registered.json()["method"] == "passkey"
    # The enrolment link is used up.
    again = api_service.post(
        "anonymous", "/v1/auth/passkeys/registration/options", json={"enrolment_token": token}
    )
    assert again.status_code == 410
    response, body = _login(api_service, device)
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["member_id"] == member_id
    bearer = {"Authorization": f"Bearer {session['token']}"}
    wallet = api_service.client.get(f"/v1/members/{member_id}/wallet", headers=bearer)
    assert wallet.status_code == 200 and wallet.json()["address"] == session["address"]
    # A replayed assertion: its challenge was used.
    before = _sessions(api_service)
    replay = api_service.post("anonymous", "/v1/auth/passkeys/login", json=body)
    assert replay.status_code == 401 and replay.json()["reason"] == "challenge"
    # The same assertion under a fresh challenge does not verify (and its counter did not move).
    fresh = api_service.post("anonymous", "/v1/auth/passkeys/login/options").json()
    replay = api_service.post(
        "anonymous",
        "/v1/auth/passkeys/login",
        json={"challenge": fresh["challenge"], "credential": body["credential"]},
    )
    assert replay.status_code == 401 and replay.json()["reason"] == "challenge"
    assert _sessions(api_service) == before


def test_passkey_counter_regression_and_wrong_origin(api_service: Service) -> None:
    _, token = _custodial_member(api_service)
    device = SoftWebauthnDevice()
    assert _register(api_service, device, token).status_code == 201
    assert _login(api_service, device)[0].status_code == 201
    # A cloned authenticator: its counter is behind the stored one.
    device.sign_count = 0
    cloned, _ = _login(api_service, device)
    assert cloned.status_code == 401 and cloned.json()["reason"] == "counter"
    device.sign_count = 100
    phished, _ = _login(api_service, device, origin="https://phish.example")
    assert phished.status_code == 401 and phished.json()["reason"] == "origin"
    # Registering with a wrong origin is refused and leaves the enrolment link usable.
    other_id, other_token = _custodial_member(api_service)
    wrong = _register(api_service, SoftWebauthnDevice(), other_token, origin="https://phish.example")
    assert wrong.status_code == 401 and wrong.json()["reason"] == "origin"
    assert _register(api_service, SoftWebauthnDevice(), other_token).json()["member_id"] == other_id


def test_a_partner_key_is_never_a_member(api_service: Service) -> None:
    for path in ("/v1/me", "/v1/session"):
        assert api_service.get("partner_a", path).status_code == 403
    assert api_service.post("partner_a", "/v1/me/link-codes").status_code == 403
    assert api_service.get("expired", "/v1/me").status_code == 401
