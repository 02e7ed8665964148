"""Redemptions: a member spends points at a partner, always with the member's consent; refunds; revoking a
consent.

- Self custody: the partner asks ``POST /v1/redemptions/intents`` for the EIP-712 ``Redemption`` message,
  the member's wallet signs it, the partner submits message and signature to ``POST /v1/redemptions``.
  The intent is stateless: everything is checked again on submission (the signer, the partner, the amount
  against the balance, the deadline, the reference against the redemption id).
- Custodial: the member creates a one-time code in their passkey session (``POST /v1/me/redemption-codes``:
  one partner, a maximum of points, an expiry of minutes) and shows it at the till; the partner submits it
  with the amount or reward to ``POST /v1/redemptions``; the code is claimed once, and only then does the
  service sign the consent with the member's custodial key.
- ``POST /v1/redemptions/{id}/refunds``: the accepting partner gives back (part of) a confirmed redemption.
- ``DELETE /v1/me/redemption-codes/{id}`` revokes an unused code; ``POST /v1/me/consent-revocations`` takes
  a self-custody member's signed ``ConsentCancellation``, cancels the redemption it would have paid if it
  is still queued, and queues the revocation for the chain.

Every write answers the outbox operation (201, ``Location: /v1/operations/{id}``); the same redemption or
refund id again answers the stored operation (200) when the request is the same, 409 when it differs.
See :mod:`api._redemptions` for the consent rules and the outbox shapes.
"""

from __future__ import annotations

import io
import json
import secrets
from typing import Annotated, Any

import segno
from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Path, Response
from pydantic import Field, model_validator
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from indexer import MirrorView, PartnerStatus

from .._auth import Principal, ServicesDep, allow
from .._errors import (
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    InsufficientPoints,
    InvalidRequest,
    NotFound,
    NotReady,
    Unauthenticated,
)
from .._models import TEXT, RequestModel, ResponseModel, problem_responses
from .._operations import OPERATION_LINKS, OperationPublic, operation_public, parse_operation_id
from .._outbox import OperationDraft, enqueue, find_operation
from .._redemptions import (
    CODE_DIGITS,
    CONSENT_TTL_S,
    EIP712_DOMAIN_FIELDS,
    MAX_POINTS,
    REVOCATION,
    cancel_queued,
    claim_code,
    code_digest,
    custodial_signature,
    new_code,
    new_nonce,
    public_code_id,
    recovers,
    redemption_detail,
    redemption_ref,
    refundable,
    revocation_typed_data,
    reward_to_redeem,
    same_request,
    spendable,
    take_stock,
    typed_data,
)
from .._rulebook import resolve_member
from .._services import AsOf, Services
from .._tables import Member, Membership, Operation, RedemptionCode
from .._tables import MemberSession as SessionRow
from .rules import MemberFields
from .wallets import checked_address

__all__ = [
    "ConsentRevocationCreate",
    "RedemptionCodeCreate",
    "RedemptionCodePublic",
    "RedemptionCodeStatePublic",
    "RedemptionCodesPublic",
    "RedemptionCreate",
    "RedemptionIntentCreate",
    "RedemptionIntentPublic",
    "RedemptionMessage",
    "RefundCreate",
    "router",
]

router = APIRouter(prefix="/v1", tags=["redemptions"])

PartnerKey = Annotated[Principal, Depends(allow("partner"))]
MemberSessionDep = Annotated[Principal, Depends(allow("member"))]
OperationIdPath = Annotated[
    str, Path(pattern=r"^op_[0-9]{1,18}$", description="the redemption's operation id", examples=["op_42"])
]
CodeIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the code's id (not the code)")]

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
HEX32 = r"^0x[0-9a-fA-F]{64}$"
#: A 65-byte ECDSA signature, or an ERC-1271 wallet's (of any length up to 4 KiB).
SIGNATURE = r"^0x([0-9a-fA-F]{2}){1,4096}$"
PointsField = Annotated[int, Field(gt=0, le=MAX_POINTS)]
RedemptionId = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
RewardId = Annotated[int, Field(ge=1, lt=2**63)]
#: A uint256 as a decimal string (JavaScript numbers cannot hold it), or a JSON integer.
Uint256 = Annotated[int, Field(ge=0, lt=2**256)] | Annotated[str, Field(pattern=r"^[0-9]{1,78}$")]


# --------------------------------------------------------------------------- schemas


class RedemptionMessage(RequestModel):
    """The ``message`` of the typed data the member signed, as the intent returned it."""

    customer: str = Field(pattern=ADDRESS)
    partnerId: int = Field(ge=0, lt=2**32)  # the EIP-712 field's own name
    amount: PointsField
    reference: str = Field(pattern=HEX32)
    nonce: Uint256
    deadline: int = Field(ge=0, lt=2**63)


class RedemptionIntentCreate(RequestModel):
    member: MemberFields
    amount: PointsField | None = Field(default=None, description="points; or reward_id")
    reward_id: RewardId | None = Field(default=None, description="a reward of the partner's: its price")
    redemption_id: RedemptionId | None = Field(
        default=None, description="the partner's id of the redemption (once per partner); made up if left out"
    )

    @model_validator(mode="after")
    def _one(self) -> RedemptionIntentCreate:
        if (self.amount is None) == (self.reward_id is None):
            raise ValueError("give either amount or reward_id")
        return self


class RedemptionIntentPublic(ResponseModel):
    intent_id: str = Field(description="the redemption id the consent is for (submit it back)")
    redemption_id: str
    reward_id: int | None
    amount: int
    expires_at: int = Field(description="the consent's deadline (Unix seconds)")
    typed_data: dict[str, Any] = Field(
        description="EIP-712 typed data for the member's wallet (eth_signTypedData_v4): domain, types, "
        "primaryType, message; the message's nonce is a decimal string"
    )


class RedemptionCreate(RequestModel):
    """Either ``code`` (a custodial member's one-time code, with ``member`` and ``amount`` or ``reward_id``)
    or ``intent`` and ``signature`` (a self-custody member's signed consent, with its ``redemption_id``)."""

    member: MemberFields | None = None
    amount: PointsField | None = None
    reward_id: RewardId | None = None
    redemption_id: RedemptionId | None = None
    code: str | None = Field(default=None, pattern=rf"^[0-9]{{{CODE_DIGITS}}}$")
    intent: RedemptionMessage | None = None
    signature: str | None = Field(default=None, pattern=SIGNATURE)

    @model_validator(mode="after")
    def _consent(self) -> RedemptionCreate:
        if self.code is not None:
            if self.intent is not None or self.signature is not None:
                raise ValueError("give either a code or an intent with its signature, not both")
            if self.member is None:
                raise ValueError("a code is redeemed for the member who created it: name the member")
            if (self.amount is None) == (self.reward_id is None):
                raise ValueError("give either amount or reward_id")
        else:
            if self.intent is None or self.signature is None:
                raise ValueError("give the member's consent: a code, or an intent with its signature")
            if self.redemption_id is None:
                raise ValueError("give the redemption_id the intent was made for")
        return self


class RefundCreate(RequestModel):
    refund_id: RedemptionId = Field(description="the partner's id of the refund (once per partner)")
    amount: PointsField


class RedemptionCodeCreate(RequestModel):
    partner_id: int = Field(ge=0, lt=2**32, description="the partner that may redeem with the code")
    max_points: PointsField
    ttl_minutes: int = Field(default=5, ge=1, le=15, description="how long the code is valid")


class RedemptionCodeStatePublic(ResponseModel):
    id: str = Field(description="the code's id (not the code): revoke it with this")
    partner_id: int
    max_points: int
    created_at: int
    expires_at: int
    used_at: int | None
    revoked_at: int | None
    operation: str | None = Field(description="the redemption it was used for")


class RedemptionCodePublic(RedemptionCodeStatePublic):
    code: str = Field(description="show it once: the digits the till types in", examples=["0427315589"])
    qr_payload: str = Field(description="what the QR code shown to the till encodes")
    qr_svg: str = Field(description="the QR code of ``qr_payload`` as an SVG image, to show at the till")


class RedemptionCodesPublic(ResponseModel):
    data: list[RedemptionCodeStatePublic]


class ConsentRevocationCreate(RequestModel):
    nonce: Uint256 = Field(description="the nonce of the consent to revoke")
    signature: str = Field(pattern=SIGNATURE, description="the member's EIP-712 ConsentCancellation")
    partner_id: int | None = Field(
        default=None,
        ge=0,
        lt=2**32,
        description="the consent's partner, when the service has no redemption with that nonce",
    )


# --------------------------------------------------------------------------- helpers


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, [FieldError(field, message)])


def _request(body: RequestModel) -> dict[str, Any]:
    dumped: dict[str, Any] = body.model_dump(mode="json", exclude_none=True)
    return dumped


def _answer(response: Response, op: Operation, created: bool, request: dict[str, Any]) -> OperationPublic:
    """201 for a new operation; its natural key again: the stored one (200) for the same request, else 409."""
    if not created:
        if not same_request(op, request):
            raise Conflict(
                f"{op.kind} {op.natural_key!r} was recorded already with other details (op_{op.id})"
            )
        response.status_code = 200
    response.headers["Location"] = f"/v1/operations/op_{op.id}"
    return operation_public(op)


def _serialise(db: Session, address: str) -> None:
    """One member's redemptions are accepted one at a time (the balance is read, then taken): a
    transaction-scoped advisory lock on PostgreSQL; SQLite serialises writers itself."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"redeem:{address.lower()}"})


def _require_points(view: MirrorView, as_of: AsOf, db: Session, address: str, amount: int) -> None:
    available = spendable(view, as_of, db, address)
    if amount > available:
        raise InsufficientPoints(amount, max(available, 0))


def _has_code(services: Services, address: str) -> bool:
    """Whether ``address`` has code (an ERC-1271 wallet, a delegated EOA): the chain checks its consent."""
    if services.w3 is None:
        return False
    return len(services.w3.eth.get_code(to_checksum_address(address))) > 0


def _nonce(value: int | str, field: str) -> int:
    nonce = int(value)
    if nonce >= 2**256 or nonce & (2**64 - 1):
        raise _bad(
            field, "a consent's nonce is a fresh key with sequence 0 (key << 64), as the intent gave it"
        )
    return nonce


def _amount(db: Session, partner_id: int, amount: int | None, reward_id: int | None, now: int) -> int:
    if reward_id is None:
        assert amount is not None
        return amount
    return reward_to_redeem(db, partner_id, reward_id, now=now).points_price


def _take_reward(db: Session, partner_id: int, reward_id: int | None, amount: int, now: int) -> None:
    if reward_id is None:
        return
    reward = reward_to_redeem(db, partner_id, reward_id, now=now)
    if reward.points_price != amount:
        raise _bad("body.reward_id", f"reward {reward_id} costs {reward.points_price} points, not {amount}")
    take_stock(db, reward)


# --------------------------------------------------------------------------- intents


WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, Gone, NotReady)


@router.post(
    "/redemptions/intents",
    response_model=RedemptionIntentPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady),
    summary="The consent a self-custody member signs for a redemption",
)
def create_intent(
    body: RedemptionIntentCreate, partner: PartnerKey, services: ServicesDep
) -> RedemptionIntentPublic:
    """The EIP-712 ``Redemption`` typed data for the member's wallet to sign (valid one hour): the member's
    address, this partner, the amount (or the reward's price), the reference of the redemption id, a fresh
    nonce and the deadline. Nothing is stored: submit the signed message to ``POST /v1/redemptions``. 409
    when the member is custodial (they consent with a redemption code), the redemption id was used, or the
    member's points do not cover the amount (``insufficient-points``)."""
    assert partner.partner_id is not None
    pid, now = partner.partner_id, services.now()
    redemption_id = body.redemption_id or f"rdm_{secrets.token_hex(16)}"
    naming = body.member
    with services.mirror() as (view, as_of), services.session() as db:
        member = resolve_member(
            db, pid, member_id=naming.member_id, customer_id=naming.customer_id, address=naming.address
        )
        row = db.scalars(select(Member).where(Member.address == member.address)).first()
        if row is not None and row.custody == "custodial":
            raise Conflict("a custodial member consents with a redemption code from their session")
        if find_operation(db, pid, "redemption", redemption_id) is not None:
            raise Conflict(f"redemption {redemption_id!r} was recorded already")
        amount = _amount(db, pid, body.amount, body.reward_id, now)
        _require_points(view, as_of, db, member.address, amount)
        ref = redemption_ref(db, pid, "redemption", redemption_id, now=now)
        data = typed_data(
            chain_id=as_of.chain_id,
            contract=view.contract,
            customer=member.address,
            partner_id=pid,
            amount=amount,
            ref=ref,
            nonce=new_nonce(),
            deadline=now + CONSENT_TTL_S,
        )
    message = data["message"]
    shown = {
        **data,
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, **data["types"]},
        "message": {**message, "reference": "0x" + ref.hex(), "nonce": str(message["nonce"])},
    }
    return RedemptionIntentPublic(
        intent_id=redemption_id,
        redemption_id=redemption_id,
        reward_id=body.reward_id,
        amount=amount,
        expires_at=message["deadline"],
        typed_data=shown,
    )


# --------------------------------------------------------------------------- redemptions


@router.post(
    "/redemptions",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **WRITE_ERRORS},
    summary="Redeem a member's points with their consent",
)
def create_redemption(
    body: RedemptionCreate, partner: PartnerKey, services: ServicesDep, response: Response
) -> OperationPublic:
    """Queues a redemption at this partner, with the member's consent: a custodial member's one-time
    ``code`` (then the service signs with the member's key), or a self-custody member's signed ``intent``.
    By ``amount`` or by ``reward_id`` (its price; one of its stock is taken). 409 ``insufficient-points``
    when the member's points, less their redemptions not yet on the ledger, do not cover it; 410 for a code
    that is unknown, another partner's, used, revoked or expired; 422 for a consent that is not the
    member's, or not for this partner, amount, redemption id or an open deadline."""
    if body.code is not None:
        return _redeem_with_code(body, partner, services, response)
    return _redeem_with_signature(body, partner, services, response)


def _code_member(db: Session, partner_id: int, naming: MemberFields) -> Member:
    """The member a till names for a code: any member by id or address (the member showed it), by customer
    id the partner's own. An unknown one is refused as a wrong code would be (410): nothing is disclosed."""
    if naming.member_id is not None:
        member = db.get(Member, naming.member_id)
    elif naming.customer_id is not None:
        member = db.scalars(
            select(Member)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.partner_id == partner_id, Membership.customer_id == naming.customer_id)
        ).first()
    else:
        assert naming.address is not None
        member = db.scalars(select(Member).where(Member.address == naming.address.lower())).first()
    if member is None or member.custody != "custodial":
        raise Gone("this redemption code is unknown, used, revoked or expired: ask the member for a new one")
    return member


def _redeem_with_code(
    body: RedemptionCreate, partner: PartnerKey, services: Services, response: Response
) -> OperationPublic:
    assert partner.partner_id is not None and body.code is not None and body.member is not None
    pid, now = partner.partner_id, services.now()
    redemption_id = body.redemption_id or f"rdm_{secrets.token_hex(16)}"
    with services.mirror() as (view, as_of), services.session() as db:
        member = _code_member(db, pid, body.member)
        # The code is a secret: the request keeps its id only.
        request = {k: v for k, v in _request(body).items() if k != "code"}
        request |= {
            "code_id": public_code_id(code_digest(member.id, body.code)),
            "redemption_id": redemption_id,
        }
        existing = find_operation(db, pid, "redemption", redemption_id)
        if existing is not None:
            return _answer(response, existing, False, request)
        _serialise(db, member.address)
        amount = _amount(db, pid, body.amount, body.reward_id, now)
        _require_points(view, as_of, db, member.address, amount)
        # The member's consent is used up first; only then is anything signed with their key.
        code = claim_code(db, member_id=member.id, partner_id=pid, code=body.code, amount=amount, now=now)
        _take_reward(db, pid, body.reward_id, amount, now)
        ref = redemption_ref(db, pid, "redemption", redemption_id, now=now)
        nonce, deadline = new_nonce(), now + CONSENT_TTL_S
        data = typed_data(
            chain_id=as_of.chain_id,
            contract=view.contract,
            customer=member.address,
            partner_id=pid,
            amount=amount,
            ref=ref,
            nonce=nonce,
            deadline=deadline,
        )
        signature = custodial_signature(services.custody, member, data)
        op = _enqueue_redemption(
            db,
            partner,
            member.id,
            member.address,
            amount,
            redemption_id,
            request,
            ref,
            nonce,
            deadline,
            signature,
            now,
        )
        code.operation_id = op.id
        return _answer(response, op, True, request)


def _redeem_with_signature(
    body: RedemptionCreate, partner: PartnerKey, services: Services, response: Response
) -> OperationPublic:
    assert partner.partner_id is not None and body.intent is not None and body.signature is not None
    assert body.redemption_id is not None
    pid, now, intent = partner.partner_id, services.now(), body.intent
    customer = checked_address(intent.customer, "body.intent.customer").lower()
    if intent.partnerId != pid:
        raise _bad("body.intent.partnerId", f"this consent is for partner {intent.partnerId}, not {pid}")
    if body.amount is not None and body.amount != intent.amount:
        raise _bad("body.amount", f"the consent is for {intent.amount} points")
    if not now < intent.deadline <= now + CONSENT_TTL_S:
        raise _bad("body.intent.deadline", "the consent has expired, or its deadline is over an hour away")
    nonce = _nonce(intent.nonce, "body.intent.nonce")
    ref, signature = bytes.fromhex(intent.reference[2:]), bytes.fromhex(body.signature[2:])
    request = _request(body)
    with services.mirror() as (view, as_of), services.session() as db:
        if body.member is not None:
            named = body.member
            member = resolve_member(
                db, pid, member_id=named.member_id, customer_id=named.customer_id, address=named.address
            )
            if member.address != customer:
                raise _bad("body.member", "the consent was signed for another member")
        existing = find_operation(db, pid, "redemption", body.redemption_id)
        if existing is not None:
            return _answer(response, existing, False, request)
        row = db.scalars(select(Member).where(Member.address == customer)).first()
        if row is not None and row.custody == "custodial":
            raise Conflict("a custodial member consents with a redemption code from their session")
        if ref != redemption_ref(db, pid, "redemption", body.redemption_id, now=now):
            raise _bad("body.intent.reference", "the consent's reference is not this redemption id's")
        data = typed_data(
            chain_id=as_of.chain_id,
            contract=view.contract,
            customer=customer,
            partner_id=pid,
            amount=intent.amount,
            ref=ref,
            nonce=nonce,
            deadline=intent.deadline,
        )
        if not recovers(data, signature, customer) and not _has_code(services, customer):
            raise _bad("body.signature", "the signature is not the member's consent to this redemption")
        _serialise(db, customer)
        _require_points(view, as_of, db, customer, intent.amount)
        _take_reward(db, pid, body.reward_id, intent.amount, now)
        op = _enqueue_redemption(
            db,
            partner,
            None if row is None else row.id,
            customer,
            intent.amount,
            body.redemption_id,
            request,
            ref,
            nonce,
            intent.deadline,
            signature,
            now,
        )
        return _answer(response, op, True, request)


def _enqueue_redemption(
    db: Session,
    partner: Principal,
    member_id: str | None,
    address: str,
    amount: int,
    redemption_id: str,
    request: dict[str, Any],
    ref: bytes,
    nonce: int,
    deadline: int,
    signature: bytes,
    now: int,
) -> Operation:
    assert partner.partner_id is not None
    op, created = enqueue(
        db,
        OperationDraft(
            partner_id=partner.partner_id,
            kind="redemption",
            natural_key=redemption_id,
            member_address=address,
            member_id=member_id,
            points=amount,
            reason=0,
            request=request,
            detail=redemption_detail(
                customer=address, amount=amount, ref=ref, nonce=nonce, deadline=deadline, signature=signature
            ),
            ref=ref,
            created_by=partner.credential_id,
        ),
        now=now,
    )
    if not created:  # a concurrent request stored it first: undo this one's code and stock
        raise Conflict(f"redemption {redemption_id!r} is being recorded by another request; retry")
    return op


# --------------------------------------------------------------------------- refunds


@router.post(
    "/redemptions/{operation_id}/refunds",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)},
    summary="Refund (part of) a redemption",
)
def create_refund(
    operation_id: OperationIdPath,
    body: RefundCreate,
    partner: PartnerKey,
    services: ServicesDep,
    response: Response,
) -> OperationPublic:
    """Gives back ``amount`` points of a confirmed redemption this partner accepted (the ledger's refund:
    to the epochs they were spent from). All refunds of a redemption, but failed ones, never exceed it."""
    assert partner.partner_id is not None
    pid, now = partner.partner_id, services.now()
    number = parse_operation_id(operation_id)
    request = {**_request(body), "redemption": operation_id}
    with services.session() as db:
        redemption = None if number is None else db.get(Operation, number, with_for_update=True)
        if redemption is None or redemption.kind != "redemption" or redemption.partner_id != pid:
            raise NotFound(f"no redemption {operation_id} at this partner")
        existing = find_operation(db, pid, "refund", body.refund_id)
        if existing is not None:
            return _answer(response, existing, False, request)
        if redemption.state != "confirmed":
            raise Conflict(f"only a confirmed redemption is refunded; {operation_id} is {redemption.state}")
        left = refundable(db, redemption)
        if body.amount > left:
            raise Conflict(f"{operation_id} has {left} points left to refund, not {body.amount}")
        ref = redemption_ref(db, pid, "refund", body.refund_id, now=now)
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=pid,
                kind="refund",
                natural_key=body.refund_id,
                member_address=redemption.member_address,
                member_id=redemption.member_id,
                points=body.amount,
                reason=0,
                request=request,
                detail={"amount": body.amount, "refund_ref": "0x" + ref.hex()},
                parent_id=redemption.id,
                ref=ref,
                created_by=partner.credential_id,
            ),
            now=now,
        )
        return _answer(response, op, created, request)


# --------------------------------------------------------------------------- the member's own consents


def _session_member(db: Session, principal: Principal) -> Member:
    assert principal.member_id is not None
    member = db.get(Member, principal.member_id)
    if member is None:
        raise Unauthenticated("this session's member is gone")
    return member


def _code_state(row: RedemptionCode) -> RedemptionCodeStatePublic:
    return RedemptionCodeStatePublic(
        id=public_code_id(bytes(row.code_hash)),
        partner_id=row.partner_id,
        max_points=row.max_points,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
        operation=None if row.operation_id is None else f"op_{row.operation_id}",
    )


@router.post(
    "/me/redemption-codes",
    status_code=201,
    response_model=RedemptionCodePublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady),
    summary="A one-time redemption code (custodial members)",
)
def create_redemption_code(
    body: RedemptionCodeCreate, member: MemberSessionDep, services: ServicesDep
) -> RedemptionCodePublic:
    """Your consent for one partner to redeem up to ``max_points`` of your points, once, within
    ``ttl_minutes``: show the digits (or the QR code) at the partner's till. Only in a passkey session of a
    custodial member (a self-custody member's wallet signs each redemption itself)."""
    now = services.now()
    with services.mirror() as (view, _), services.session() as db:
        session_row = db.get(SessionRow, member.credential_id)
        if session_row is None or session_row.method != "passkey":
            raise Forbidden("a redemption code is created in a passkey session")
        row = _session_member(db, member)
        if row.custody != "custodial":
            raise Conflict("a self-custody member signs each redemption in their own wallet")
        listed = view.partner(body.partner_id)
        if listed is None:
            raise NotFound(f"the ledger has no partner {body.partner_id}")
        if listed.status != PartnerStatus.ACTIVE or not listed.can_accept:
            raise Conflict(f"partner {body.partner_id} does not accept points now")
        code = new_code()
        code_hash = code_digest(row.id, code)
        stored = RedemptionCode(
            code_hash=code_hash,
            member_id=row.id,
            partner_id=body.partner_id,
            max_points=body.max_points,
            created_at=now,
            expires_at=now + 60 * body.ttl_minutes,
        )
        db.add(stored)
        db.flush()
        state = _code_state(stored)
        payload = f"loyalty:redeem?member_id={row.id}&code={code}&partner_id={body.partner_id}"
    return RedemptionCodePublic(**state.model_dump(), code=code, qr_payload=payload, qr_svg=qr_svg(payload))


def qr_svg(payload: str) -> str:
    """``payload`` as a QR code (error correction M), an SVG document of its own."""
    image = io.BytesIO()
    segno.make(payload, error="m").save(image, kind="svg", scale=4, xmldecl=False, svgns=True)
    return image.getvalue().decode()


@router.get(
    "/me/redemption-codes",
    response_model=RedemptionCodesPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="Your redemption codes",
)
def list_redemption_codes(member: MemberSessionDep, services: ServicesDep) -> RedemptionCodesPublic:
    """Your last 100 redemption codes, newest first (their ids and states; the codes themselves are never
    shown again)."""
    with services.session() as db:
        rows = db.scalars(
            select(RedemptionCode)
            .where(RedemptionCode.member_id == member.member_id)
            .order_by(RedemptionCode.created_at.desc())
            .limit(100)
        ).all()
        return RedemptionCodesPublic(data=[_code_state(r) for r in rows])


@router.delete(
    "/me/redemption-codes/{code_id}",
    response_model=RedemptionCodeStatePublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict),
    summary="Revoke a redemption code",
)
def revoke_redemption_code(
    code_id: CodeIdPath,
    member: MemberSessionDep,
    services: ServicesDep,
) -> RedemptionCodeStatePublic:
    """Withdraws your consent before the till uses it (revoking it twice is harmless); 409 once used."""
    now = services.now()
    with services.session() as db:
        rows = db.scalars(select(RedemptionCode).where(RedemptionCode.member_id == member.member_id)).all()
        row = next((r for r in rows if public_code_id(bytes(r.code_hash)) == code_id), None)
        if row is None:
            raise NotFound(f"you have no redemption code {code_id}")
        db.execute(
            update(RedemptionCode)
            .where(
                RedemptionCode.code_hash == row.code_hash,
                RedemptionCode.used_at.is_(None),
                RedemptionCode.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        db.refresh(row)
        if row.used_at is not None:
            raise Conflict(f"code {code_id} was used already (operation op_{row.operation_id})")
        return _code_state(row)


@router.post(
    "/me/consent-revocations",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **problem_responses(Unauthenticated, Forbidden, Conflict, NotReady)},
    summary="Revoke a signed consent (self custody)",
)
def revoke_consent(
    body: ConsentRevocationCreate, member: MemberSessionDep, services: ServicesDep, response: Response
) -> OperationPublic:
    """Takes your signed EIP-712 ``ConsentCancellation`` of the consent with ``nonce``: a redemption the
    service still holds for it is cancelled at once, and the revocation is queued for the ledger (after it,
    that consent can never be redeemed). ``partner_id`` names the consent's partner when the service has no
    redemption with that nonce."""
    now = services.now()
    nonce = int(body.nonce)
    if nonce >= 2**256:
        raise _bad("body.nonce", "a nonce is a uint256")
    signature = bytes.fromhex(body.signature[2:])
    with services.mirror() as (view, as_of), services.session() as db:
        row = _session_member(db, member)
        if row.custody == "custodial":
            raise Conflict("a custodial member revokes their unused redemption codes instead")
        customer = row.address
        data = revocation_typed_data(
            chain_id=as_of.chain_id, contract=view.contract, customer=customer, nonce=nonce
        )
        if not recovers(data, signature, customer) and not _has_code(services, customer):
            raise _bad("body.signature", "the signature is not your cancellation of this consent")
        signed = [
            op
            for op in db.scalars(
                select(Operation).where(Operation.member_address == customer, Operation.kind == "redemption")
            )
            if op.detail is not None and json.loads(op.detail).get("nonce") == nonce
        ]
        if any(op.state in ("submitted", "confirmed") for op in signed):
            raise Conflict("the redemption with this consent was sent to the ledger already")
        partners = {op.partner_id for op in signed} | (
            {body.partner_id} if body.partner_id is not None else set()
        )
        if len(partners) != 1:
            raise _bad(
                "body.partner_id",
                "name the consent's partner" if not partners else "not the consent's partner",
            )
        (pid,) = partners
        natural_key = f"{customer}:{nonce}"
        request = {**_request(body), "nonce": str(nonce)}
        existing = find_operation(db, pid, REVOCATION, natural_key)
        if existing is not None:
            return _answer(response, existing, False, request)
        cancel_queued(db, address=customer, nonce=nonce, now=now)
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=pid,
                kind=REVOCATION,
                natural_key=natural_key,
                member_address=customer,
                member_id=row.id,
                points=0,
                reason=0,
                request=request,
                detail={
                    "customer": to_checksum_address(customer),
                    "nonce": nonce,
                    "signature": "0x" + signature.hex(),
                },
                created_by=member.credential_id,
            ),
            now=now,
        )
        return _answer(response, op, created, request)
