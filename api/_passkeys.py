"""Passkeys (WebAuthn) for custodial members: the registration and sign-in ceremonies, as pure functions.

The service keeps no state here. The caller issues a :func:`new_challenge`, stores it (single-use, expiring
after at least :data:`CEREMONY_TIMEOUT_MS`), sends the options this module builds to the browser, and hands
the browser's answer back together with the stored challenge. A verified registration yields a
:class:`RegisteredPasskey` to store; a verified sign-in yields the authenticator's new signature counter to
store in place of the old one. Storage, lookup (:func:`credential_id_of` names the passkey an assertion
claims) and consuming the challenge are the caller's.

Policy: attestation ``none`` (the service does not care which make of authenticator a member uses),
user verification and a discoverable ("resident") key *preferred*, never required, so a plain security
key still works. User presence is always required.

The checks are py_webauthn's (``webauthn``). Every refusal is a :class:`PasskeyError` whose ``reason``
names the check: ``malformed``, ``challenge``, ``origin``, ``rp-id``, ``signature``, ``counter``,
``user-presence``. Two things are done here rather than left to the library:

- **The counter is compared after the signature.** py_webauthn compares the counter before it checks the
  signature, so anyone could have an unsigned assertion with a stale counter reported as ``counter``, the
  reason a caller may treat as "this authenticator was cloned" and act on. The library is therefore
  called with a stored count of 0 (which disables its comparison) and the spec's rule, *refuse unless the
  new count exceeds the stored one, when either is non-zero*, is applied here once the signature holds.
- **Hostile bytes are refusals, not crashes.** The library's parsers let ``ValueError``, ``TypeError``,
  ``KeyError`` and ``IndexError`` escape on some crafted inputs (bad base64, a CBOR list where a map is
  expected, a client data JSON that is not an object, ...); these become ``malformed``. A registered
  public key is also loaded once before it is accepted, so a key stored by :func:`verify_registration`
  always loads at sign-in.

The library reports its checks as ``InvalidRegistrationResponse`` / ``InvalidAuthenticationResponse``
with a message only; :data:`_REASONS` maps a message to a reason by the library's own words in it (never by
the origin or type it quotes from the client, which could otherwise steer the reason), and anything it does
not recognise is ``malformed``, still a refusal. ``counter`` comes only from this module, after a valid
signature. The tests drive each reason with a software authenticator, so a change of wording in a new
py_webauthn release shows up as a failing test, not as a wrong reason in production.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from api._errors import SignInFailed

__all__ = [
    "CEREMONY_TIMEOUT_MS",
    "PasskeyError",
    "RegisteredPasskey",
    "RelyingParty",
    "authentication_options",
    "credential_id_of",
    "new_challenge",
    "registration_options",
    "verify_authentication",
    "verify_registration",
]

#: How long the browser gives the member, in milliseconds: the spec's recommended range starts at 5
#: minutes when user verification is preferred. A stored challenge must not expire sooner.
CEREMONY_TIMEOUT_MS = 300_000

_CHALLENGE_BYTES = 32
#: WebAuthn refuses to register longer credential ids; it also bounds the caller's lookup key.
_MAX_CREDENTIAL_ID = 1023

#: A posted credential is a few hundred bytes with attestation "none", a few kB with a certificate chain.
_MAX_TEXT = 64 * 1024
#: ...and 4 levels deep (5 with some extension results). ``json`` recurses in C per level and the process
#: runs with a recursion limit of 100000 (``py_ecc``, imported by web3, raises it), far past what the C
#: stack holds: ``"[" * 100_000`` would crash the process instead of raising ``RecursionError``.
_MAX_DEPTH = 32
_BRACKETS = re.compile(r"[\[\]{}]")

#: What py_webauthn's parsers let escape on crafted input, besides their own errors.
_HOSTILE_INPUT = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)

#: py_webauthn's refusal messages, by the check that failed: the first pattern found in the library's own
#: words (the message up to the first quoted value; what follows the quote, an origin or a type, is the
#: client's) names the reason; none found: ``malformed``. ``counter`` is not here: only this module says it.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"challenge", re.I), "challenge"),
    (re.compile(r"origin", re.I), "origin"),
    (re.compile(r"\brp id\b", re.I), "rp-id"),
    (re.compile(r"not present|user presence|user verification", re.I), "user-presence"),
    (re.compile(r"signature|could not be verified", re.I), "signature"),
)

_DETAILS = {
    "malformed": "the passkey response is not a well-formed WebAuthn credential",
    "challenge": "the passkey response answers another challenge",
    "origin": "the passkey response comes from another origin",
    "rp-id": "the passkey is scoped to another relying party",
    "signature": "the passkey signature does not verify",
    "counter": "the authenticator's signature counter did not increase: a cloned authenticator or a replay",
    "user-presence": "the authenticator did not confirm the user's presence",
}


class PasskeyError(SignInFailed):
    """A passkey registration or assertion was refused; ``reason`` names the check that failed."""


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """The service as WebAuthn sees it: ``id`` is a registrable domain (``"loyalty.example"``), ``origin``
    the exact origin the pages are served from (``"https://loyalty.example"``)."""

    id: str
    name: str
    origin: str


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    """What to store after a registration: the credential's id, its COSE public key, its counter and the
    transports the browser reported (hints for later ``allowCredentials``)."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]


def new_challenge() -> bytes:
    """32 random bytes, for one ceremony."""
    return secrets.token_bytes(_CHALLENGE_BYTES)


def registration_options(
    rp: RelyingParty,
    *,
    user_id: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    exclude: Sequence[bytes] = (),
) -> dict[str, Any]:
    """JSON-ready ``PublicKeyCredentialCreationOptions`` for ``navigator.credentials.create()``.

    ``user_id`` is the member's opaque WebAuthn user handle (never an e-mail or customer id); ``exclude``
    lists the member's registered credential ids, so the same authenticator is not registered twice.
    """
    _check_challenge(challenge)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user_id,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=CEREMONY_TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=bytes(cid)) for cid in exclude],
    )
    return options_to_json_dict(options)


def verify_registration(
    rp: RelyingParty, credential: Mapping[str, Any] | str, *, challenge: bytes
) -> RegisteredPasskey:
    """Check the browser's answer to :func:`registration_options` (the ``PublicKeyCredential`` in its JSON
    form, as an object or a string) against the stored ``challenge``.

    Raises:
        PasskeyError: ``malformed``, ``challenge``, ``origin``, ``rp-id``, ``user-presence`` or
            ``signature`` (an attestation statement that does not verify).
    """
    _check_challenge(challenge)
    body = _json_object(credential)
    try:
        parsed = parse_registration_credential_json(body)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_presence=True,
            require_user_verification=False,
        )
        # a key that does not load would fail every sign-in: refuse it now
        decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
    except InvalidRegistrationResponse as exc:
        _refuse(exc)
    except _HOSTILE_INPUT as exc:
        raise _refusal("malformed") from exc
    credential_id = verified.credential_id
    if credential_id != parsed.raw_id or not 0 < len(credential_id) <= _MAX_CREDENTIAL_ID:
        raise _refusal("malformed", "the credential id is empty, too long, or not the attested one")
    return RegisteredPasskey(
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=tuple(t.value for t in parsed.response.transports or ()),
    )


def authentication_options(
    rp: RelyingParty, *, challenge: bytes, allow: Sequence[bytes] = ()
) -> dict[str, Any]:
    """JSON-ready ``PublicKeyCredentialRequestOptions`` for ``navigator.credentials.get()``.

    Leave ``allow`` empty to let the member pick a discoverable passkey (no user name typed first).
    """
    _check_challenge(challenge)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=CEREMONY_TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=bytes(cid)) for cid in allow],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return options_to_json_dict(options)


def credential_id_of(credential: Mapping[str, Any] | str) -> bytes:
    """The ``rawId`` of an assertion: the key to look the stored passkey up by. Nothing is verified yet.

    Raises:
        PasskeyError: ``malformed``.
    """
    return _parse_assertion(credential).raw_id


def verify_authentication(
    rp: RelyingParty,
    credential: Mapping[str, Any] | str,
    *,
    challenge: bytes,
    public_key: bytes,
    sign_count: int,
) -> int:
    """Check an assertion (the browser's answer to :func:`authentication_options`) against the stored
    ``challenge`` and the stored passkey's ``public_key`` and ``sign_count``; return the new sign count,
    which the caller stores in place of the old one.

    Raises:
        PasskeyError: ``malformed``, ``challenge``, ``origin``, ``rp-id``, ``user-presence``,
            ``signature``, or ``counter`` (a validly signed assertion whose counter does not exceed the
            stored one while either is non-zero: a replay, or a cloned authenticator).
    """
    _check_challenge(challenge)
    if sign_count < 0:
        raise ValueError("a stored sign count is never negative")
    parsed = _parse_assertion(credential)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=public_key,
            # 0 disables the library's counter check, which runs before the signature check (see above)
            credential_current_sign_count=0,
            require_user_verification=False,
        )
    except InvalidAuthenticationResponse as exc:
        _refuse(exc)
    except _HOSTILE_INPUT as exc:
        raise _refusal("malformed") from exc
    new_count = verified.new_sign_count
    if (new_count or sign_count) and new_count <= sign_count:
        raise _refusal("counter")
    return new_count


def _parse_assertion(credential: Mapping[str, Any] | str) -> AuthenticationCredential:
    body = _json_object(credential)
    try:
        parsed = parse_authentication_credential_json(body)
    except _HOSTILE_INPUT as exc:
        raise _refusal("malformed") from exc
    if not 0 < len(parsed.raw_id) <= _MAX_CREDENTIAL_ID:
        raise _refusal("malformed", "the credential id is empty or too long")
    return parsed


def _json_object(credential: Mapping[str, Any] | str) -> dict[str, Any]:
    """The credential as the plain ``dict`` (with a plain ``dict`` ``response``) py_webauthn expects."""
    value: object = credential
    if isinstance(credential, str):
        _check_json_text(credential)
        try:
            value = json.loads(credential)
        except (ValueError, RecursionError) as exc:
            raise _refusal("malformed", "the passkey response is not JSON") from exc
    if not isinstance(value, Mapping):
        raise _refusal("malformed", "the passkey response is not a JSON object")
    body = dict(value)
    response = body.get("response")
    if isinstance(response, Mapping):
        body["response"] = dict(response)
    return body


def _check_json_text(text: str) -> None:
    if len(text) > _MAX_TEXT:
        raise _refusal("malformed", "the passkey response is too large")
    depth = 0
    for bracket in _BRACKETS.findall(text):  # brackets inside strings count too: only ever too strict
        depth += 1 if bracket in "[{" else -1
        if depth > _MAX_DEPTH:
            raise _refusal("malformed", "the passkey response is nested too deeply")


def _refuse(exc: WebAuthnException) -> NoReturn:
    own_words = str(exc).split('"', 1)[0]
    reason = next((reason for pattern, reason in _REASONS if pattern.search(own_words)), "malformed")
    raise _refusal(reason) from exc


def _refusal(reason: str, detail: str | None = None) -> PasskeyError:
    return PasskeyError(detail or _DETAILS[reason], reason)


def _check_challenge(challenge: bytes) -> None:
    # py_webauthn would silently put a random challenge of its own in place of an empty one
    if len(challenge) < 16:
        raise ValueError("a WebAuthn challenge needs at least 16 random bytes; use new_challenge()")
