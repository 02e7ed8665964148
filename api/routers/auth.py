"""Member sign-in and sessions.

- Self custody: Sign-In with Ethereum (EIP-4361). ``POST /v1/auth/siwe/nonce`` issues a single-use nonce
  (with the domain, URI and chain id the message must name); ``POST /v1/auth/siwe`` takes the signed
  message. The nonce is consumed by the first attempt that names it, whatever its outcome.
- Custodial members: passkeys (WebAuthn). The partner hands its member a one-time enrolment link;
  ``/v1/auth/passkeys/registration/options`` and ``/v1/auth/passkeys/registration`` register a passkey
  with it (and sign in); ``/v1/auth/passkeys/login/options`` and ``/v1/auth/passkeys/login`` sign in with a
  registered one. Origin, RP id, challenge and the signature counter are checked (``api._passkeys``).

A sign-in opens a short-lived session: its token is in the response (once) and in an ``HttpOnly``,
``SameSite=Strict`` cookie for the pages. ``DELETE /v1/session`` signs out (the token is refused from then
on). The sign-in routes ignore a session cookie that no longer works (expired, signed out): the browser of a
member who comes back to sign in again still sends it. Only these routes create member sessions: no API key,
a partner's included, can act as a member.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field
from sqlalchemy import select

from .._auth import SESSION_COOKIE, Principal, ServicesDep, allow, authenticate
from .._errors import Forbidden, Gone, NotReady, SignInFailed, Unauthenticated
from .._models import RequestModel, ResponseModel, problem_responses
from .._passkeys import (
    PasskeyError,
    RelyingParty,
    authentication_options,
    credential_id_of,
    new_challenge,
    registration_options,
    verify_authentication,
    verify_registration,
)
from .._services import Services
from .._sessions import consume_challenge, open_session, revoke_session, store_challenge
from .._siwe import SiweError, parse_message, verify
from .._tables import EnrolmentLink, Member, MemberSession, Passkey
from .._tokens import digest

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sign-in"])
MemberCaller = Annotated[Principal, Depends(allow("member"))]


def _signing_in(request: Request, services: ServicesDep) -> Principal:
    """The caller of a sign-in route. A session cookie that no longer works (expired, signed out elsewhere)
    is how a member's browser comes back to sign in again: it is ignored here, where any other route refuses
    it with 401. Otherwise the member could never replace it: the cookie is ``HttpOnly``, so the page cannot
    drop it. A bad ``Authorization`` header is still refused."""
    try:
        return authenticate(request, services)
    except Unauthenticated:
        if request.headers.get("authorization") is not None or SESSION_COOKIE not in request.cookies:
            raise
        limiter = services.limiter
        assert limiter is not None
        limiter.hit_client(request.client.host if request.client else "unknown")
        return Principal("anonymous")


SigningIn = Annotated[Principal, Depends(_signing_in)]

#: Challenges and enrolment tokens (unpadded base64url)
BASE64URL = r"^[A-Za-z0-9_-]+$"
#: ERC-1271's ``isValidSignature`` magic value
ERC1271_MAGIC = bytes.fromhex("1626ba7e")


class SiweNoncePublic(ResponseModel):
    nonce: str
    domain: str = Field(description="the message's domain must be exactly this")
    uri: str
    chain_id: int
    expires_at: int


class SiweSignIn(RequestModel):
    message: str = Field(min_length=1, max_length=4096, description="the EIP-4361 message, as signed")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]+$", max_length=2 + 2 * 4096)

    model_config = RequestModel.model_config | {"str_strip_whitespace": False}


class SessionPublic(ResponseModel):
    member_id: str
    address: str
    method: str
    expires_at: int


class SessionCreatedPublic(SessionPublic):
    token: str = Field(description="the session token (also set as the loyalty_session cookie)")


class EnrolmentToken(RequestModel):
    enrolment_token: str = Field(min_length=20, max_length=100, pattern=BASE64URL)


class CeremonyOptionsPublic(ResponseModel):
    challenge: str = Field(description="send it back with the credential")
    options: dict[str, Any] = Field(description="for navigator.credentials.create() / .get()")
    expires_at: int


class PasskeyRegistration(RequestModel):
    enrolment_token: str = Field(min_length=20, max_length=100, pattern=BASE64URL)
    challenge: str = Field(min_length=20, max_length=128, pattern=BASE64URL)
    credential: dict[str, Any] = Field(description="the PublicKeyCredential, JSON-encoded as browsers do")


class PasskeyLogin(RequestModel):
    challenge: str = Field(min_length=20, max_length=128, pattern=BASE64URL)
    credential: dict[str, Any]


def _relying_party(services: Services) -> RelyingParty:
    settings = services.settings
    return RelyingParty(id=settings.relying_party_id, name="Coalition loyalty", origin=settings.public_url)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise PasskeyError("the challenge is not base64url", reason="malformed") from None


def _signed_in(services: Services, response: Response, member: Member, method: str) -> SessionCreatedPublic:
    with services.session() as db:
        issued, expires = open_session(
            db, member.id, method, now=services.now(), ttl_s=services.settings.session_ttl_s
        )
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=services.settings.session_ttl_s,
        httponly=True,
        samesite="strict",
        secure=services.settings.public_url.startswith("https://"),
    )
    return SessionCreatedPublic(
        member_id=member.id,
        address=to_checksum_address(member.address),
        method=method,
        expires_at=expires,
        token=issued.token,
    )


SIGN_IN_ERRORS = problem_responses(SignInFailed, Gone, NotReady)

# --------------------------------------------------------------------------- Sign-In with Ethereum


@router.post(
    "/auth/siwe/nonce", response_model=SiweNoncePublic, responses=SIGN_IN_ERRORS, summary="SIWE nonce"
)
def siwe_nonce(caller: SigningIn, services: ServicesDep) -> SiweNoncePublic:
    """A single-use nonce for a Sign-In with Ethereum message (valid for ``challenge_ttl_s``)."""
    with services.mirror() as (_, as_of):
        chain_id = as_of.chain_id
    now, ttl = services.now(), services.settings.challenge_ttl_s
    with services.session() as db:
        nonce = store_challenge(db, "siwe", now=now, ttl_s=ttl)
    return SiweNoncePublic(
        nonce=nonce,
        domain=services.settings.siwe_domain,
        uri=services.settings.public_url,
        chain_id=chain_id,
        expires_at=now + ttl,
    )


def _erc1271(services: Services) -> Any:
    w3 = services.w3
    if w3 is None:
        return None

    def is_valid(address: str, message_hash: bytes, signature: bytes) -> bool:
        if not w3.eth.get_code(to_checksum_address(address)):
            return False
        abi = [
            {
                "name": "isValidSignature",
                "type": "function",
                "stateMutability": "view",
                "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
                "outputs": [{"name": "", "type": "bytes4"}],
            }
        ]
        contract = w3.eth.contract(address=to_checksum_address(address), abi=abi)
        try:
            result = contract.functions.isValidSignature(message_hash, signature).call()
        except Exception:  # a reverting or absent implementation is a refusal
            return False
        return bytes(result) == ERC1271_MAGIC

    return is_valid


@router.post(
    "/auth/siwe",
    status_code=201,
    response_model=SessionCreatedPublic,
    responses=SIGN_IN_ERRORS,
    summary="Sign in with Ethereum",
)
def siwe_sign_in(
    body: SiweSignIn, response: Response, caller: SigningIn, services: ServicesDep
) -> SessionCreatedPublic:
    """Verifies the signed EIP-4361 message (domain, chain id, single-use nonce, validity times, signer by
    EIP-191 recovery or, for a contract account, ERC-1271) and opens a session for the member whose wallet
    signed it."""
    message = parse_message(body.message)
    with services.mirror() as (_, as_of):
        chain_id = as_of.chain_id
    now = services.now()
    with services.session() as db:
        try:
            consume_challenge(db, "siwe", message.nonce, now=now)
        except Gone:
            raise SiweError("the nonce is unknown, used or expired", reason="nonce") from None
    verify(
        body.message,
        body.signature,
        domain=services.settings.siwe_domain,
        chain_id=chain_id,
        nonce=message.nonce,
        now=dt.datetime.fromtimestamp(now, dt.UTC),
        is_valid_erc1271=_erc1271(services),
    )
    with services.session() as db:
        member = db.scalars(select(Member).where(Member.address == message.address.lower())).one_or_none()
        if member is None or member.custody != "self":
            raise SignInFailed("this wallet is not a self-custody member's", reason="not-a-member")
        db.expunge(member)
    return _signed_in(services, response, member, "siwe")


# --------------------------------------------------------------------------- passkeys


def _enrolment(services: Services, token: str, now: int) -> EnrolmentLink:
    with services.session() as db:
        link = db.get(EnrolmentLink, digest(token))
        if link is None or link.used_at is not None or link.expires_at <= now:
            raise Gone("this enrolment link is unknown, used or expired: ask the partner for a new one")
        db.expunge(link)
        return link


@router.post(
    "/auth/passkeys/registration/options",
    response_model=CeremonyOptionsPublic,
    responses=SIGN_IN_ERRORS,
    summary="Passkey registration options",
)
def passkey_registration_options(
    body: EnrolmentToken, caller: SigningIn, services: ServicesDep
) -> CeremonyOptionsPublic:
    now, ttl = services.now(), services.settings.challenge_ttl_s
    link = _enrolment(services, body.enrolment_token, now)
    challenge = new_challenge()
    with services.session() as db:
        store_challenge(
            db, "passkey-register", now=now, ttl_s=ttl, value=_b64(challenge), member_id=link.member_id
        )
        existing = list(db.scalars(select(Passkey.credential_id).where(Passkey.member_id == link.member_id)))
    options = registration_options(
        _relying_party(services),
        user_id=link.member_id.encode(),
        user_name=link.member_id,
        display_name="Coalition member",
        challenge=challenge,
        exclude=existing,
    )
    return CeremonyOptionsPublic(challenge=_b64(challenge), options=options, expires_at=now + ttl)


@router.post(
    "/auth/passkeys/registration",
    status_code=201,
    response_model=SessionCreatedPublic,
    responses=SIGN_IN_ERRORS,
    summary="Register a passkey",
)
def passkey_register(
    body: PasskeyRegistration, response: Response, caller: SigningIn, services: ServicesDep
) -> SessionCreatedPublic:
    """Registers the member's passkey with the enrolment link (used up by it) and signs in."""
    now = services.now()
    link = _enrolment(services, body.enrolment_token, now)
    with services.session() as db:
        try:
            challenge = consume_challenge(db, "passkey-register", body.challenge, now=now)
        except Gone:
            raise PasskeyError("the challenge is unknown, used or expired", reason="challenge") from None
        if challenge.member_id != link.member_id:
            raise PasskeyError("the challenge was issued for another enrolment", reason="challenge")
    registered = verify_registration(
        _relying_party(services), body.credential, challenge=_unb64(body.challenge)
    )
    with services.session() as db:
        claimed = db.get(EnrolmentLink, link.token_hash)
        if claimed is None or claimed.used_at is not None:
            raise Gone("this enrolment link was used meanwhile")
        claimed.used_at = now
        if db.get(Passkey, registered.credential_id) is not None:
            raise PasskeyError("this passkey is registered already", reason="malformed")
        db.add(
            Passkey(
                credential_id=registered.credential_id,
                member_id=link.member_id,
                public_key=registered.public_key,
                sign_count=registered.sign_count,
                transports=",".join(registered.transports),
                created_at=now,
            )
        )
        member = db.get(Member, link.member_id)
        assert member is not None
        db.expunge(member)
    return _signed_in(services, response, member, "passkey")


@router.post(
    "/auth/passkeys/login/options",
    response_model=CeremonyOptionsPublic,
    responses=SIGN_IN_ERRORS,
    summary="Passkey sign-in options",
)
def passkey_login_options(caller: SigningIn, services: ServicesDep) -> CeremonyOptionsPublic:
    now, ttl = services.now(), services.settings.challenge_ttl_s
    challenge = new_challenge()
    with services.session() as db:
        store_challenge(db, "passkey-login", now=now, ttl_s=ttl, value=_b64(challenge))
    options = authentication_options(_relying_party(services), challenge=challenge)
    return CeremonyOptionsPublic(challenge=_b64(challenge), options=options, expires_at=now + ttl)


@router.post(
    "/auth/passkeys/login",
    status_code=201,
    response_model=SessionCreatedPublic,
    responses=SIGN_IN_ERRORS,
    summary="Sign in with a passkey",
)
def passkey_login(
    body: PasskeyLogin, response: Response, caller: SigningIn, services: ServicesDep
) -> SessionCreatedPublic:
    now = services.now()
    with services.session() as db:
        try:
            consume_challenge(db, "passkey-login", body.challenge, now=now)
        except Gone:
            raise PasskeyError("the challenge is unknown, used or expired", reason="challenge") from None
    credential_id = credential_id_of(body.credential)
    with services.session() as db:
        passkey = db.get(Passkey, credential_id)
        if passkey is None:
            raise PasskeyError("no member registered this passkey", reason="unknown-credential")
        count = verify_authentication(
            _relying_party(services),
            body.credential,
            challenge=_unb64(body.challenge),
            public_key=passkey.public_key,
            sign_count=passkey.sign_count,
        )
        passkey.sign_count, passkey.last_used_at = count, now
        member = db.get(Member, passkey.member_id)
        assert member is not None
        db.expunge(member)
    return _signed_in(services, response, member, "passkey")


# --------------------------------------------------------------------------- the session


@router.get(
    "/session",
    response_model=SessionPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="The current session",
)
def get_session(member: MemberCaller, services: ServicesDep) -> SessionPublic:
    with services.session() as db:
        row = db.get(MemberSession, member.credential_id)
        assert row is not None and member.member_id is not None and member.address is not None
        return SessionPublic(
            member_id=member.member_id,
            address=to_checksum_address(member.address),
            method=row.method,
            expires_at=row.expires_at,
        )


@router.delete(
    "/session", status_code=204, responses=problem_responses(Unauthenticated, Forbidden), summary="Sign out"
)
def sign_out(member: MemberCaller, response: Response, services: ServicesDep) -> Response:
    assert member.credential_id is not None
    with services.session() as db:
        revoke_session(db, member.credential_id, now=services.now())
    response.delete_cookie(SESSION_COOKIE)
    response.status_code = 204
    return response
