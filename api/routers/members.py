"""Members: the coalition's directory.

A partner enrols its customer under its own customer id (``POST /v1/members``) and gets the member id and
the wallet address: a custodial wallet (a key derived for the member; a one-time enrolment link lets the
member register a passkey) or the member's own address (self custody). A customer who is a member already
(through another partner) is linked, not duplicated, and only with the member's consent: a one-time link
code the member creates in their own session (``POST /v1/me/link-codes``) and hands to the partner.

A partner sees only its own members, under its own customer ids, with the contact data it gave; another
partner's ids and data never appear, and asking for a member that is not its own answers 404 (whether
the member exists elsewhere is not its business). Personal data (customer ids, email, phone, birthday)
never goes on chain; ``DELETE /v1/members/{id}/personal-data`` erases it (a member: everywhere; a partner:
its own), while the member row keeps only the pseudonymous address the ledger knows.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid
from typing import Annotated, Any, Literal

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .._auth import Authenticated, Principal, ServicesDep, allow
from .._errors import (
    Conflict,
    FieldError,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    NotReady,
    Unauthenticated,
)
from .._models import (
    NO_NUL,
    TEXT,
    IsoDate,
    RequestModel,
    ResponseModel,
    link,
    linked_response,
    problem_responses,
)
from .._pagination import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, SeqPage
from .._services import Services
from .._tables import EnrolmentLink, LinkCode, Member, Membership
from .._tokens import digest
from .wallets import HistoryPublic, WalletPublic, checked_address, wallet_history, wallet_of

__all__ = [
    "EnrolmentLinkPublic",
    "ErasurePublic",
    "LinkCodePublic",
    "MemberCreate",
    "MemberPublic",
    "MemberUpdate",
    "MembersPublic",
    "router",
]

router = APIRouter(prefix="/v1", tags=["members"])
PartnerKey = Annotated[Principal, Depends(allow("partner"))]
MemberSession = Annotated[Principal, Depends(allow("member"))]
MemberId = Annotated[
    str, Path(pattern=r"^mem_[0-9a-f]{32}$", examples=["mem_0c1f5e8a9b7d4c3e2f1a0b9c8d7e6f5a"])
]

#: Not ``@``, white space nor NUL. ``\s`` alone means other characters in the API document's regexes (ECMA
#: 262: U+FEFF too) than in pydantic's (Rust: U+0085 too); naming both makes the two agree.
_NOT_AT_NOR_SPACE = "[^@\\s\\x00\u0085\ufeff]"
EMAIL = rf"^{_NOT_AT_NOR_SPACE}{{1,64}}@{_NOT_AT_NOR_SPACE}+\.{_NOT_AT_NOR_SPACE}+$"
PHONE = r"^\+[1-9][0-9]{6,14}$"


class MemberCreate(RequestModel):
    customer_id: str = Field(
        min_length=1, max_length=200, pattern=TEXT, description="the partner's own id of its customer"
    )
    custody: Literal["custodial", "self"] = Field(
        default="custodial", description="custodial: the service derives a wallet; self: the member's address"
    )
    address: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{40}$", description="self custody: the member's own address"
    )
    link_code: str | None = Field(
        default=None,
        pattern=r"^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$",
        description="an existing member's one-time consent to be linked to this partner",
    )
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL)
    phone: str | None = Field(default=None, pattern=PHONE, description="E.164")
    birthday: IsoDate | None = None

    @model_validator(mode="after")
    def _custody(self) -> MemberCreate:
        if self.link_code is None and (self.custody == "self") != (self.address is not None):
            raise ValueError("self custody needs an address; a custodial member takes none")
        return self


class MemberUpdate(RequestModel):
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL)
    phone: str | None = Field(default=None, pattern=PHONE)
    birthday: IsoDate | None = None


class MemberPublic(ResponseModel):
    id: str
    address: str
    custody: str
    created_at: int
    customer_id: str | None = Field(default=None, description="the calling partner's id of the member")
    email: str | None = None
    phone: str | None = None
    birthday: dt.date | None = None
    enrolled_at: int | None = None
    linked: bool | None = Field(
        default=None, description="linked with the member's consent, not enrolled new"
    )
    erased: bool = False


class EnrolmentLinkPublic(ResponseModel):
    url: str = Field(description="hand this to the member once: it registers their passkey")
    expires_at: int


class MemberEnrolledPublic(MemberPublic):
    enrolment: EnrolmentLinkPublic | None = Field(
        default=None, description="a new custodial member's passkey enrolment link"
    )


class MembersPublic(ResponseModel):
    data: list[MemberPublic]
    next_cursor: str | None


class LinkCodePublic(ResponseModel):
    code: str = Field(examples=["KQ3D-7MZA-P2XC"], description="give it to the partner that should link you")
    expires_at: int


class ErasurePublic(ResponseModel):
    member_id: str
    memberships_erased: int


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, [FieldError(field, message)])


def _public(member: Member, membership: Membership | None) -> MemberPublic:
    out = MemberPublic(
        id=member.id,
        address=to_checksum_address(member.address),
        custody=member.custody,
        created_at=member.created_at,
        erased=member.erased_at is not None,
    )
    if membership is not None:
        out.customer_id = membership.customer_id
        out.email = membership.email
        out.phone = membership.phone
        out.birthday = dt.date.fromisoformat(membership.birthday) if membership.birthday else None
        out.enrolled_at = membership.enrolled_at
        out.linked = membership.linked
    return out


def _enrolment_link(db: Session, services: Services, member: Member, partner_id: int) -> EnrolmentLinkPublic:
    token = secrets.token_urlsafe(32)
    now = services.now()
    expires = now + services.settings.enrolment_ttl_s
    db.add(
        EnrolmentLink(
            token_hash=digest(token),
            member_id=member.id,
            partner_id=partner_id,
            created_at=now,
            expires_at=expires,
        )
    )
    base = services.settings.public_url.rstrip("/")
    return EnrolmentLinkPublic(url=f"{base}/enrol#{token}", expires_at=expires)


def _new_custodial(db: Session, services: Services, now: int) -> Member:
    custody = services.custody
    if custody is None:
        raise NotReady("custodial wallets are not configured (the custody seed in the keystore)")
    index = int(db.execute(select(func.coalesce(func.max(Member.custody_index), -1))).scalar_one() or 0) + 1
    member = Member(
        id=f"mem_{uuid.uuid4().hex}",
        address=custody.address_of(index).lower(),
        custody="custodial",
        custody_index=index,
        created_at=now,
    )
    db.add(member)
    return member


def _use_link_code(db: Session, code: str, partner_id: int, now: int) -> Member:
    row = db.get(LinkCode, digest(code))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise Gone("this link code is unknown, used or expired: ask the member for a new one")
    member = db.get(Member, row.member_id)
    if member is None or member.erased_at is not None:
        raise Gone("this link code's member is gone")
    row.used_at, row.used_by = now, partner_id
    return member


ENROL_ERRORS = problem_responses(Unauthenticated, Forbidden, Conflict, Gone, NotReady)


def _member_links(member_id: str) -> dict[str, dict[str, Any]]:
    """What a member's id leads to (``member_id``: the runtime expression giving it)."""
    path = "/v1/members/{member_id}"
    return {
        "GetMember": link("GET", path, "the member", member_id=member_id),
        "GetMemberWallet": link("GET", f"{path}/wallet", "the member's wallet", member_id=member_id),
        "GetMemberHistory": link("GET", f"{path}/history", "the member's history", member_id=member_id),
    }


#: The member a response is about.
NEW_ID = "$response.body#/id"
#: What a partner does next with the member it enrolled.
ENROLLED_LINKS = {
    **_member_links(NEW_ID),
    "UpdateMember": link("PATCH", "/v1/members/{member_id}", "its contact data", member_id=NEW_ID),
    "FindByCustomerId": link(
        "GET",
        "/v1/members/by-customer-id/{customer_id}",
        "the member under the partner's customer id",
        customer_id="$response.body#/customer_id",
    ),
    "NewEnrolmentLink": link(
        "POST", "/v1/members/{member_id}/enrolment-links", "a new passkey enrolment link", member_id=NEW_ID
    ),
    "ErasePersonalData": link(
        "DELETE", "/v1/members/{member_id}/personal-data", "erase the partner's data of it", member_id=NEW_ID
    ),
    "GetWallet": link("GET", "/v1/wallets/{address}", "its wallet", address="$response.body#/address"),
}
ENROLLED = linked_response(201, "The member, enrolled or linked", ENROLLED_LINKS)


@router.post(
    "/members",
    status_code=201,
    response_model=MemberEnrolledPublic,
    responses={**ENROLLED, **ENROL_ERRORS},
    summary="Enrol a customer",
)
def enrol_member(body: MemberCreate, partner: PartnerKey, services: ServicesDep) -> MemberEnrolledPublic:
    """Enrols the partner's customer: a new member (custodial wallet or the member's own address), or an
    existing member linked with their one-time link code. 409 when the customer id is enrolled already,
    or when the address is a member already (ask the member for a link code)."""
    assert partner.partner_id is not None
    pid, now = partner.partner_id, services.now()
    address = None if body.address is None else checked_address(body.address, "body.address").lower()
    try:
        with services.session() as db:
            taken = db.scalars(
                select(Membership).where(
                    Membership.partner_id == pid, Membership.customer_id == body.customer_id
                )
            ).one_or_none()
            if taken is not None:
                raise Conflict(f"customer id {body.customer_id!r} is enrolled already")
            enrolment = None
            if body.link_code is not None:
                member = _use_link_code(db, body.link_code, pid, now)
                if address is not None and address != member.address:
                    raise _bad("body.address", "the link code's member has another address")
                if db.get(Membership, (pid, member.id)) is not None:
                    raise Conflict("this member is enrolled with this partner already")
                linked = True
            elif address is not None:
                if db.scalars(select(Member).where(Member.address == address)).one_or_none() is not None:
                    raise Conflict(
                        "this address is a member already: link it with a link code the member creates"
                    )
                member = Member(id=f"mem_{uuid.uuid4().hex}", address=address, custody="self", created_at=now)
                db.add(member)
                linked = False
            else:
                member = _new_custodial(db, services, now)
                enrolment = _enrolment_link(db, services, member, pid)
                linked = False
            membership = Membership(
                partner_id=pid,
                member_id=member.id,
                customer_id=body.customer_id,
                email=body.email,
                phone=body.phone,
                birthday=body.birthday.isoformat() if body.birthday else None,
                birthday_set_at=now if body.birthday else None,
                enrolled_at=now,
                linked=linked,
            )
            db.add(membership)
            db.flush()
            return MemberEnrolledPublic(**_public(member, membership).model_dump(), enrolment=enrolment)
    except IntegrityError:
        raise Conflict("enrolled concurrently by another request; retry") from None


def _member_for(db: Session, principal: Principal, member_id: str) -> tuple[Member, Membership | None]:
    """The member as ``principal`` may see it (404 when it may not: existence is not disclosed)."""
    member = db.get(Member, member_id)
    if member is None:
        raise NotFound(f"no member {member_id}")
    if principal.sees_everything:
        return member, None
    if principal.role == "member":
        if principal.member_id != member_id:
            raise NotFound(f"no member {member_id}")
        return member, None
    if principal.role == "partner":
        assert principal.partner_id is not None
        membership = db.get(Membership, (principal.partner_id, member_id))
        if membership is None:
            raise NotFound(f"no member {member_id} among this partner's members")
        return member, membership
    raise Unauthenticated("this endpoint needs credentials")


READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)


@router.get("/members", response_model=MembersPublic, responses=READ_ERRORS, summary="List members")
def list_members(
    caller: Annotated[Principal, Depends(allow("partner", "admin", "auditor"))],
    services: ServicesDep,
    cursor: Annotated[str | None, Query(pattern=r"^mem_[0-9a-f]{32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = PAGE_LIMIT_DEFAULT,
) -> MembersPublic:
    """A partner: its own members with its customer ids. Admin and auditor: every member (without personal
    data)."""
    with services.session() as db:
        if caller.role == "partner":
            query = (
                select(Member, Membership)
                .join(Membership, Membership.member_id == Member.id)
                .where(Membership.partner_id == caller.partner_id)
            )
            if cursor is not None:
                query = query.where(Member.id < cursor)
            rows = db.execute(query.order_by(Member.id.desc()).limit(limit + 1)).all()
            items = [_public(m, ms) for m, ms in rows]
        else:
            plain = select(Member)
            if cursor is not None:
                plain = plain.where(Member.id < cursor)
            items = [_public(m, None) for m in db.scalars(plain.order_by(Member.id.desc()).limit(limit + 1))]
    more = len(items) > limit
    items = items[:limit]
    return MembersPublic(data=items, next_cursor=items[-1].id if more else None)


@router.get(
    "/members/by-customer-id/{customer_id}",
    response_model=MemberPublic,
    responses=READ_ERRORS,
    summary="Find a member by the partner's customer id",
)
def member_by_customer_id(
    customer_id: Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)],
    partner: PartnerKey,
    services: ServicesDep,
) -> MemberPublic:
    with services.session() as db:
        row = db.execute(
            select(Member, Membership)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.partner_id == partner.partner_id, Membership.customer_id == customer_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no member with customer id {customer_id!r} among this partner's members")
        return _public(row[0], row[1])


@router.get("/members/{member_id}", response_model=MemberPublic, responses=READ_ERRORS, summary="A member")
def get_member(member_id: MemberId, caller: Authenticated, services: ServicesDep) -> MemberPublic:
    with services.session() as db:
        member, membership = _member_for(db, caller, member_id)
        return _public(member, membership)


@router.patch(
    "/members/{member_id}", response_model=MemberPublic, responses=READ_ERRORS, summary="Update contact data"
)
def update_member(
    member_id: MemberId, body: MemberUpdate, partner: PartnerKey, services: ServicesDep
) -> MemberPublic:
    """The partner's own contact data of its member (fields left out stay as they are)."""
    with services.session() as db:
        member, membership = _member_for(db, partner, member_id)
        assert membership is not None
        given = body.model_dump(exclude_unset=True)
        if "email" in given:
            membership.email = body.email
        if "phone" in given:
            membership.phone = body.phone
        if "birthday" in given:
            new = body.birthday.isoformat() if body.birthday else None
            if new != membership.birthday:
                membership.birthday, membership.birthday_set_at = new, services.now() if new else None
        db.flush()
        return _public(member, membership)


MIRROR_READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, NotReady)


@router.get(
    "/members/{member_id}/wallet",
    response_model=WalletPublic,
    responses=MIRROR_READ_ERRORS,
    summary="A member's wallet",
)
def get_member_wallet(member_id: MemberId, caller: Authenticated, services: ServicesDep) -> WalletPublic:
    with services.session() as db:
        member, _ = _member_for(db, caller, member_id)
        address = to_checksum_address(member.address)
    with services.mirror() as (view, as_of):
        return wallet_of(services, view, as_of, address)


@router.get(
    "/members/{member_id}/history",
    response_model=HistoryPublic,
    responses=MIRROR_READ_ERRORS,
    summary="A member's wallet history",
)
def get_member_history(
    member_id: MemberId, page: SeqPage, caller: Authenticated, services: ServicesDep
) -> HistoryPublic:
    with services.session() as db:
        member, _ = _member_for(db, caller, member_id)
        address = to_checksum_address(member.address)
    with services.mirror() as (view, as_of):
        return wallet_history(services, view, as_of, address, page)


@router.post(
    "/members/{member_id}/enrolment-links",
    status_code=201,
    response_model=EnrolmentLinkPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict),
    summary="A new passkey enrolment link",
)
def new_enrolment_link(
    member_id: MemberId, partner: PartnerKey, services: ServicesDep
) -> EnrolmentLinkPublic:
    """For the partner's custodial member (e.g. the first link expired, or a new device)."""
    assert partner.partner_id is not None
    with services.session() as db:
        member, _ = _member_for(db, partner, member_id)
        if member.custody != "custodial":
            raise Conflict("a self-custody member signs in with their own wallet (Sign-In with Ethereum)")
        return _enrolment_link(db, services, member, partner.partner_id)


@router.delete(
    "/members/{member_id}/personal-data",
    response_model=ErasurePublic,
    responses=READ_ERRORS,
    summary="Erase personal data",
)
def erase_personal_data(member_id: MemberId, caller: Authenticated, services: ServicesDep) -> ErasurePublic:
    """A member (their own) or an admin: every partner's customer id and contact data of the member, and
    its pending link codes. A partner: its own. The ledger keeps only the pseudonymous address."""
    if caller.role == "auditor":
        raise Forbidden("an auditor key changes nothing")
    with services.session() as db:
        member, _ = _member_for(db, caller, member_id)
        query = select(Membership).where(Membership.member_id == member.id)
        if caller.role == "partner":
            query = query.where(Membership.partner_id == caller.partner_id)
        rows = list(db.scalars(query))
        for row in rows:
            row.customer_id = row.email = row.phone = row.birthday = None
            row.birthday_set_at = None
        if caller.role != "partner":
            member.erased_at = services.now()
            for code in db.scalars(select(LinkCode).where(LinkCode.member_id == member.id)):
                db.delete(code)
        db.flush()
        return ErasurePublic(member_id=member.id, memberships_erased=len(rows))


@router.get(
    "/me",
    response_model=MemberPublic,
    responses={**linked_response(200, "The member", _member_links(NEW_ID)), **READ_ERRORS},
    summary="The signed-in member",
)
def me(member: MemberSession, services: ServicesDep) -> MemberPublic:
    with services.session() as db:
        row, _ = _member_for(db, member, member.member_id or "")
        return _public(row, None)


@router.post(
    "/me/link-codes",
    status_code=201,
    response_model=LinkCodePublic,
    responses=READ_ERRORS,
    summary="A one-time link code",
)
def new_link_code(member: MemberSession, services: ServicesDep) -> LinkCodePublic:
    """Your consent for one partner to link you: give the code to that partner (valid once, 15 minutes)."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()[:12]
    code = f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"
    now = services.now()
    expires = now + services.settings.link_code_ttl_s
    with services.session() as db:
        assert member.member_id is not None
        db.add(
            LinkCode(code_hash=digest(code), member_id=member.member_id, created_at=now, expires_at=expires)
        )
    return LinkCodePublic(code=code, expires_at=expires)
