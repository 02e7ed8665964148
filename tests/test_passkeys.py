"""Passkey ceremonies against a software authenticator (``soft_webauthn.SoftWebauthnDevice``).

The device speaks the fido2-style API (option dicts holding ``bytes``, answers holding ``bytes``); the
helpers below play the browser: they decode the JSON options the service sends and encode the answer as the
``PublicKeyCredential`` JSON (base64url, no padding) a browser posts back. Where a test needs an
authenticator that misbehaves (no user presence, a counter stuck at 0), it re-signs with the device's key.
"""

from __future__ import annotations

import hashlib
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from soft_webauthn import SoftWebauthnDevice  # type: ignore[import-untyped]

from api._errors import SignInFailed
from api._passkeys import (
    CEREMONY_TIMEOUT_MS,
    PasskeyError,
    RegisteredPasskey,
    RelyingParty,
    authentication_options,
    credential_id_of,
    new_challenge,
    registration_options,
    verify_authentication,
    verify_registration,
)

RP = RelyingParty(id="localhost", name="Loyalty", origin="http://localhost:8000")
USER_ID = b"\x01" * 16


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return urlsafe_b64decode(text + "===")


def for_device(options: dict[str, Any]) -> dict[str, Any]:
    """The service's JSON options as the fido2-style dict the device takes (bytes, not base64url)."""
    public_key = dict(options, challenge=unb64url(options["challenge"]))
    if "user" in options:
        public_key["user"] = dict(options["user"], id=unb64url(options["user"]["id"]))
    return {"publicKey": public_key}


def as_browser_json(answer: dict[str, Any], transports: list[str] | None = None) -> dict[str, Any]:
    """The device's answer as the JSON a browser posts (``PublicKeyCredential.toJSON()``)."""
    response: dict[str, Any] = {
        key: b64url(value) for key, value in answer["response"].items() if value is not None
    }
    if transports is not None:
        response["transports"] = transports
    return {
        "id": b64url(answer["rawId"]),
        "rawId": b64url(answer["rawId"]),
        "type": "public-key",
        "response": response,
        "clientExtensionResults": {},
    }


def register(device: SoftWebauthnDevice, rp: RelyingParty = RP) -> RegisteredPasskey:
    challenge = new_challenge()
    options = registration_options(
        rp, user_id=USER_ID, user_name="member-1", display_name="Member One", challenge=challenge
    )
    answer = device.create(for_device(options), rp.origin)
    return verify_registration(rp, as_browser_json(answer, ["internal", "hybrid"]), challenge=challenge)


def assertion(
    device: SoftWebauthnDevice, challenge: bytes, *, origin: str = RP.origin, rp: RelyingParty = RP
) -> dict[str, Any]:
    options = authentication_options(rp, challenge=challenge, allow=[device.credential_id])
    return as_browser_json(device.get(for_device(options), origin))


def resigned(
    device: SoftWebauthnDevice, credential: dict[str, Any], *, flags: int, count: int
) -> dict[str, Any]:
    """``credential`` with its authenticator data's flags and counter replaced, signed again by the device."""
    response = credential["response"]
    auth_data = unb64url(response["authenticatorData"])
    auth_data = auth_data[:32] + bytes([flags]) + count.to_bytes(4, "big") + auth_data[37:]
    signed = auth_data + hashlib.sha256(unb64url(response["clientDataJSON"])).digest()
    signature = device.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return dict(
        credential,
        response=dict(response, authenticatorData=b64url(auth_data), signature=b64url(signature)),
    )


def sign_in(
    credential: dict[str, Any] | str, challenge: bytes, passkey: RegisteredPasskey, stored: int
) -> int:
    """The sign-in check, with the passkey as the caller stored it and the counter the caller stored last."""
    return verify_authentication(
        RP, credential, challenge=challenge, public_key=passkey.public_key, sign_count=stored
    )


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(PasskeyError) as caught:
        call()
    assert isinstance(caught.value, SignInFailed)
    assert caught.value.status == 401
    assert caught.value.extensions["reason"] == caught.value.reason
    return caught.value.reason


@pytest.fixture
def device() -> SoftWebauthnDevice:
    return SoftWebauthnDevice()


@pytest.fixture
def passkey(device: SoftWebauthnDevice) -> RegisteredPasskey:
    return register(device)


# -- options ---------------------------------------------------------------------------------------------


def test_challenges_are_32_fresh_random_bytes() -> None:
    challenges = {new_challenge() for _ in range(8)}
    assert len(challenges) == 8
    assert all(len(challenge) == 32 for challenge in challenges)


def test_registration_options_ask_for_no_attestation_and_prefer_verification_and_a_resident_key() -> None:
    challenge = new_challenge()
    options = registration_options(
        RP,
        user_id=USER_ID,
        user_name="member-1",
        display_name="Member One",
        challenge=challenge,
        exclude=[b"old-credential"],
    )
    assert json.loads(json.dumps(options)) == options
    assert options["rp"] == {"id": "localhost", "name": "Loyalty"}
    assert options["user"] == {"id": b64url(USER_ID), "name": "member-1", "displayName": "Member One"}
    assert unb64url(options["challenge"]) == challenge
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["excludeCredentials"] == [{"id": b64url(b"old-credential"), "type": "public-key"}]
    assert options["timeout"] == CEREMONY_TIMEOUT_MS


def test_authentication_options_name_the_challenge_and_the_allowed_credentials() -> None:
    challenge = new_challenge()
    options = authentication_options(RP, challenge=challenge, allow=[b"cred-1"])
    assert json.loads(json.dumps(options)) == options
    assert options["rpId"] == "localhost"
    assert unb64url(options["challenge"]) == challenge
    assert options["userVerification"] == "preferred"
    assert options["allowCredentials"] == [{"id": b64url(b"cred-1"), "type": "public-key"}]
    # no allow list: the member picks a discoverable passkey
    assert authentication_options(RP, challenge=challenge)["allowCredentials"] == []


def test_a_short_challenge_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="16 random bytes"):
        authentication_options(RP, challenge=b"")


# -- the ceremonies --------------------------------------------------------------------------------------


def test_registration_then_sign_in_returns_the_increased_counter(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    assert passkey.credential_id == device.credential_id
    assert passkey.sign_count == 0
    assert passkey.transports == ("internal", "hybrid")

    challenge = new_challenge()
    credential = assertion(device, challenge)
    assert credential_id_of(credential) == passkey.credential_id
    count = verify_authentication(
        RP, credential, challenge=challenge, public_key=passkey.public_key, sign_count=passkey.sign_count
    )
    assert count == 1

    # the next sign-in, from the JSON text as posted, with the stored counter updated
    challenge = new_challenge()
    text = json.dumps(assertion(device, challenge))
    assert credential_id_of(text) == passkey.credential_id
    assert sign_in(text, challenge, passkey, 1) == 2


def test_a_replayed_assertion_is_refused_for_its_counter(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = assertion(device, challenge)
    stored = sign_in(credential, challenge, passkey, 0)
    # the same assertion again (its challenge not yet consumed, say): the stored counter already moved
    reason = refusal(lambda: sign_in(credential, challenge, passkey, stored))
    assert reason == "counter"


def test_a_cloned_authenticator_behind_the_stored_counter_is_refused(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = assertion(device, challenge)  # counter 1, signed by the genuine key
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 5))
    assert reason == "counter"


def test_an_authenticator_without_a_counter_signs_in_while_the_stored_count_is_zero(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = resigned(device, assertion(device, challenge), flags=0x01, count=0)
    assert sign_in(credential, challenge, passkey, 0) == 0
    # ...but a counter that falls back to 0 after counting is refused
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 3))
    assert reason == "counter"


def test_an_assertion_from_another_origin_is_refused(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = assertion(device, challenge, origin="https://phish.example")
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 0))
    assert reason == "origin"


def test_an_origin_that_names_another_check_is_still_an_origin_refusal(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    # the library quotes the client's origin in its message: the reason must not be read from it
    challenge = new_challenge()
    credential = assertion(device, challenge, origin='https://x" challenge "signature')
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 0))
    assert reason == "origin"


def test_a_passkey_scoped_to_another_relying_party_is_refused(device: SoftWebauthnDevice) -> None:
    other = RelyingParty(id="other.example", name="Other", origin=RP.origin)
    other_passkey = register(device, other)
    challenge = new_challenge()
    credential = assertion(device, challenge, rp=other)
    reason = refusal(lambda: sign_in(credential, challenge, other_passkey, 0))
    assert reason == "rp-id"


def test_an_assertion_for_another_challenge_is_refused(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    credential = assertion(device, new_challenge())
    reason = refusal(lambda: sign_in(credential, new_challenge(), passkey, 0))
    assert reason == "challenge"


def test_an_assertion_signed_by_another_key_is_refused(passkey: RegisteredPasskey) -> None:
    impostor = SoftWebauthnDevice()
    register(impostor)
    challenge = new_challenge()
    credential = assertion(impostor, challenge)
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 0))
    assert reason == "signature"


def test_a_forged_assertion_with_a_stale_counter_is_a_signature_refusal_not_a_clone_alarm(
    passkey: RegisteredPasskey,
) -> None:
    # "counter" may make the caller distrust a genuine authenticator: only a valid signature earns it
    impostor = SoftWebauthnDevice()
    register(impostor)
    challenge = new_challenge()
    credential = assertion(impostor, challenge)  # counter 1
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 7))
    assert reason == "signature"


def test_an_assertion_without_user_presence_is_refused(
    device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = resigned(device, assertion(device, challenge), flags=0x00, count=1)
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 0))
    assert reason == "user-presence"


def test_a_registration_answering_another_challenge_or_from_another_origin_is_refused(
    device: SoftWebauthnDevice,
) -> None:
    challenge = new_challenge()
    options = for_device(
        registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    )
    answer = as_browser_json(device.create(options, RP.origin))
    assert refusal(lambda: verify_registration(RP, answer, challenge=new_challenge())) == "challenge"
    elsewhere = as_browser_json(device.create(options, "https://phish.example"))
    assert refusal(lambda: verify_registration(RP, elsewhere, challenge=challenge)) == "origin"


def test_a_registration_for_another_relying_party_is_refused(device: SoftWebauthnDevice) -> None:
    challenge = new_challenge()
    options = for_device(
        registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    )
    options["publicKey"]["rp"]["id"] = "other.example"
    answer = as_browser_json(device.create(options, RP.origin))
    assert refusal(lambda: verify_registration(RP, answer, challenge=challenge)) == "rp-id"


def test_a_registration_without_user_presence_is_refused(device: SoftWebauthnDevice) -> None:
    challenge = new_challenge()
    options = registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    answer = as_browser_json(device.create(for_device(options), RP.origin))
    attestation = cbor2.loads(unb64url(answer["response"]["attestationObject"]))
    auth_data = attestation["authData"]
    attestation["authData"] = auth_data[:32] + bytes([auth_data[32] & ~0x01]) + auth_data[33:]
    answer["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    assert refusal(lambda: verify_registration(RP, answer, challenge=challenge)) == "user-presence"


def test_a_registration_whose_raw_id_is_not_the_attested_credential_is_refused(
    device: SoftWebauthnDevice,
) -> None:
    challenge = new_challenge()
    options = registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    answer = as_browser_json(device.create(for_device(options), RP.origin))
    answer["id"] = answer["rawId"] = b64url(b"someone-else's credential")
    assert refusal(lambda: verify_registration(RP, answer, challenge=challenge)) == "malformed"


# -- malformed input -------------------------------------------------------------------------------------


def _mangled(credential: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = json.loads(json.dumps(credential))
    change(copy)
    return copy  # type: ignore[no-any-return]


MANGLINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "no response": lambda c: c.pop("response"),
    "bad base64": lambda c: c["response"].update(signature="a"),
    "id is not rawId": lambda c: c.update(id=b64url(b"another")),
    "client data not JSON": lambda c: c["response"].update(clientDataJSON=b64url(b"\xff\xfe not json")),
    "client data a list": lambda c: c["response"].update(clientDataJSON=b64url(b"[1, 2]")),
    "authenticator data truncated": lambda c: c["response"].update(authenticatorData=b64url(b"\x00" * 10)),
    "user handle bad base64": lambda c: c["response"].update(userHandle="a"),
    "wrong type": lambda c: c.update(type="password"),
}


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '"a string"', "", "[" * 50_000, "[" * 200_000],
    ids=["not-json", "a-list", "a-string", "empty", "nested-too-deep", "too-large"],
)
def test_text_that_is_not_a_json_object_is_malformed(text: str, passkey: RegisteredPasskey) -> None:
    challenge = new_challenge()
    assert refusal(lambda: credential_id_of(text)) == "malformed"
    assert refusal(lambda: sign_in(text, challenge, passkey, 0)) == "malformed"
    assert refusal(lambda: verify_registration(RP, text, challenge=challenge)) == "malformed"


@pytest.mark.parametrize("mangling", list(MANGLINGS))
def test_a_mangled_assertion_is_malformed(
    mangling: str, device: SoftWebauthnDevice, passkey: RegisteredPasskey
) -> None:
    challenge = new_challenge()
    credential = _mangled(assertion(device, challenge), MANGLINGS[mangling])
    reason = refusal(lambda: sign_in(credential, challenge, passkey, 0))
    assert reason == "malformed"


@pytest.mark.parametrize(
    "attestation_object",
    [
        b"not cbor \xff",
        cbor2.dumps([1, 2]),
        cbor2.dumps({"fmt": "none"}),
        cbor2.dumps({"authData": b"\x00" * 40}),
    ],
    ids=["not-cbor", "a-list", "no-auth-data", "no-fmt"],
)
def test_a_mangled_registration_is_malformed(attestation_object: bytes, device: SoftWebauthnDevice) -> None:
    challenge = new_challenge()
    options = registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    answer = as_browser_json(device.create(for_device(options), RP.origin))
    answer["response"]["attestationObject"] = b64url(attestation_object)
    assert refusal(lambda: verify_registration(RP, answer, challenge=challenge)) == "malformed"


def test_a_registered_key_that_would_not_load_is_refused_at_registration(device: SoftWebauthnDevice) -> None:
    challenge = new_challenge()
    options = registration_options(RP, user_id=USER_ID, user_name="m", display_name="M", challenge=challenge)
    answer = as_browser_json(device.create(for_device(options), RP.origin))
    attestation = cbor2.loads(unb64url(answer["response"]["attestationObject"]))
    auth_data: bytes = attestation["authData"]
    cose_at = 37 + 16 + 2 + len(device.credential_id)
    cose = cbor2.loads(auth_data[cose_at:])
    cose[-3] = bytes(32)  # y = 0: not a point on P-256
    attestation["authData"] = auth_data[:cose_at] + cbor2.dumps(cose)
    answer["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    assert refusal(lambda: verify_registration(RP, answer, challenge=challenge)) == "malformed"
