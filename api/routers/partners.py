"""Partners: the public directory, each partner's position (what it and the coalition owe each other, in
points and in settlement value), its settlement statement under the commercial prices the admin sets, and
the coalition pool's position.

The directory is public: who the partners are, whether they may issue and accept points, where points can
be spent. Figures are not: a partner key reads its own, admin and auditor keys read every partner's, and the
coalition pool is theirs alone. Profiles and prices are the admin's to set; prices are effective-dated and
append-only (a new row takes effect at its ``effective_from``, which must be in the future, so a statement
once issued never changes).

Positions follow the contract (``partnerPosition`` / ``partnerOpenPosition``): positive means the coalition
owes the partner. Over all time they equal those views; over any range they are the same sums over the
entries in it, and every partner's position plus the coalition pool's is zero.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from indexer import MirrorView, PartnerStatus

from .._auth import Caller, Principal, ServicesDep, allow
from .._errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, NotReady, Unauthenticated
from .._models import NO_NUL, TEXT, AsOfPublic, RequestModel, ResponseModel, problem_responses
from .._services import AsOf, Services
from .._statements import (
    MAX_PERIODS,
    MAX_TIME,
    Amounts,
    Calendar,
    Flows,
    Period,
    Spans,
    amounts,
    breakage,
    decimal_text,
    flows,
    make_spans,
    price_spans,
    resolve_range,
)
from .._tables import PartnerProfile, Price

__all__ = [
    "FiguresPublic",
    "PartnerEntryPublic",
    "PartnerProfileUpdate",
    "PartnerPublic",
    "PartnersPublic",
    "PeriodPositionPublic",
    "PositionPublic",
    "PriceCreate",
    "PriceCreatedPublic",
    "PricePublic",
    "PricesPublic",
    "StatementAmountsPublic",
    "StatementPublic",
    "StatementSegmentPublic",
    "router",
]

#: An http(s) URL without white space (spelled out: ``\S`` means other characters in the document's regexes
#: than in pydantic's) nor NUL.
WEB_URL = "^https?://[^\\s\\x00\u0085\ufeff]+$"

router = APIRouter(prefix="/v1", tags=["partners"])

Admin = Annotated[Principal, Depends(allow("admin"))]
FiguresReader = Annotated[Principal, Depends(allow("admin", "auditor", "partner"))]
CoalitionReader = Annotated[Principal, Depends(allow("admin", "auditor"))]
PartnerIdPath = Annotated[
    int, Path(ge=0, lt=2**32, description="the partner's id on the ledger", examples=[1])
]
FromQuery = Annotated[
    int | None,
    Query(
        alias="from",
        ge=0,
        le=MAX_TIME,
        description="the range's first second (Unix time, block timestamps; default: the first entry's)",
    ),
]
ToQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_TIME,
        description="the second after the range (exclusive; default: just after the as-of time)",
    ),
]
PeriodQuery = Annotated[
    Period | None,
    Query(
        description=f"break the range down per UTC day, ISO week (from Monday), UTC month or ledger epoch "
        f"(at most {MAX_PERIODS} periods)"
    ),
]
DECIMAL = r"^[0-9]{1,20}(\.[0-9]{1,18})?$"

_STATUS = "the partner's status on the ledger: active, suspended or offboarded"


# --------------------------------------------------------------------------- schemas


class PartnerEntryPublic(ResponseModel):
    id: int
    name: str = Field(description="the directory's name (``Partner <id>`` until the admin sets one)")
    status: str = Field(description=_STATUS, examples=["active"])
    can_issue: bool = Field(description="may issue points")
    can_accept: bool = Field(description="may accept points (redemptions)")
    spend_at: str | None = Field(description="where points can be spent with it")
    website: str | None


class PartnerPublic(PartnerEntryPublic):
    as_of: AsOfPublic


class PartnersPublic(ResponseModel):
    data: list[PartnerEntryPublic]
    next_cursor: str | None = Field(default=None, description="always null: the directory is one page")
    as_of: AsOfPublic


class PartnerProfileUpdate(RequestModel):
    """The whole profile (a field left out is cleared)."""

    name: str = Field(min_length=1, max_length=200, pattern=TEXT, examples=["Bean There Coffee"])
    spend_at: str | None = Field(
        default=None, max_length=2000, pattern=NO_NUL, examples=["every store; beanthere.example"]
    )
    website: str | None = Field(default=None, max_length=500, pattern=WEB_URL)


class FiguresPublic(ResponseModel):
    """Points, or their value in settlement units (each entry at the settlement value it carries)."""

    issued: int = Field(description="issued: single issues and batches")
    reversed: int = Field(
        description="taken back by returns (IssuanceReversed recovered), at the issue's value"
    )
    redeemed: int = Field(description="redeemed")
    refunded: int = Field(description="given back by refunds, at the redemption's value")
    settled: int = Field(description="settled (SettlementRecorded; positive: paid to the partner)")
    position: int = Field(
        description="a partner: (redeemed - refunded) - (issued - reversed), positive when the coalition "
        "owes it (partnerPosition); the coalition pool: minus the sum of every partner's (coalitionPosition)"
    )
    open: int = Field(
        description="a partner: position - settled (partnerOpenPosition); the pool: position + settled "
        "(coalitionOpenPosition)"
    )

    @classmethod
    def of(cls, f: Flows, *, value: bool, pool: bool) -> FiguresPublic:
        if value:
            figures = (f.issued_value, f.reversed_value, f.redeemed_value, f.refunded_value, f.settled_value)
        else:
            figures = (f.issued, f.reversed, f.redeemed, f.refunded, f.settled_points)
        issued, reversed_, redeemed, refunded, settled = figures
        position = (redeemed - refunded) - (issued - reversed_)
        if pool:
            return cls(
                issued=issued,
                reversed=reversed_,
                redeemed=redeemed,
                refunded=refunded,
                settled=settled,
                position=-position,
                open=-position + settled,
            )
        return cls(
            issued=issued,
            reversed=reversed_,
            redeemed=redeemed,
            refunded=refunded,
            settled=settled,
            position=position,
            open=position - settled,
        )


class PeriodPositionPublic(ResponseModel):
    start: int = Field(description="the period's first second (the range's start for the first)")
    end: int = Field(description="the second after it (exclusive; the range's end for the last)")
    label: str = Field(examples=["2024-05-01", "2024-W18", "2024-05", "epoch 12"])
    points: FiguresPublic
    value: FiguresPublic


class PositionPublic(ResponseModel):
    partner_id: int | None = Field(description="the partner (null: the coalition pool)")
    start: int = Field(description="the range's first second (Unix time)")
    end: int = Field(description="the second after the range (exclusive)")
    period: Period | None
    points: FiguresPublic
    value: FiguresPublic
    periods: list[PeriodPositionPublic] = Field(
        description="per period (empty without ``period``); they sum to the totals"
    )
    as_of: AsOfPublic


class PricePublic(ResponseModel):
    id: int
    partner_id: int
    effective_from: int = Field(description="in force from this time (Unix seconds) until the next price")
    currency: str = Field(examples=["EUR"])
    issue_price: str = Field(
        description="what the partner pays per point it issues (decimal)", examples=["0.01"]
    )
    redeem_price: str = Field(
        description="what the partner is reimbursed per point redeemed with it (decimal)", examples=["0.008"]
    )
    note: str | None
    created_at: int
    created_by: str | None = Field(description="the admin key that set it")


class PricesPublic(ResponseModel):
    data: list[PricePublic] = Field(description="every price ever set, in the order they take effect")
    current: PricePublic | None = Field(description="the price in force at as_of.time")
    as_of: AsOfPublic


class PriceCreatedPublic(PricePublic):
    as_of: AsOfPublic


class PriceCreate(RequestModel):
    effective_from: int = Field(
        ge=0, le=MAX_TIME, description="when it takes effect (Unix seconds): after now, never in the past"
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["EUR"])
    issue_price: str = Field(
        pattern=DECIMAL, description="per point issued, a decimal >= 0", examples=["0.01"]
    )
    redeem_price: str = Field(
        pattern=DECIMAL, description="per point redeemed, a decimal >= 0", examples=["0.008"]
    )
    note: str | None = Field(default=None, max_length=1000, pattern=NO_NUL)


class StatementAmountsPublic(ResponseModel):
    currency: str
    due_from_partner: str = Field(description="issue price x (issued - reversed), per entry's price; decimal")
    due_to_partner: str = Field(
        description="redeem price x (redeemed - refunded), per entry's price; decimal"
    )
    margin: str = Field(description="the operator's margin: due_from_partner - due_to_partner; decimal")

    @classmethod
    def of(cls, a: Amounts) -> StatementAmountsPublic:
        return cls(
            currency=a.currency,
            due_from_partner=decimal_text(a.due_from_partner),
            due_to_partner=decimal_text(a.due_to_partner),
            margin=decimal_text(a.margin),
        )


class StatementSegmentPublic(ResponseModel):
    start: int
    end: int
    price: PricePublic | None = Field(description="the price in force (null: none set yet)")
    issued_net: int = Field(description="issued - reversed (points)")
    redeemed_net: int = Field(description="redeemed - refunded (points)")
    points: FiguresPublic
    value: FiguresPublic
    amounts: StatementAmountsPublic | None = Field(description="null while no price was in force")


class StatementPublic(ResponseModel):
    partner_id: int
    partner_name: str
    start: int
    end: int
    points: FiguresPublic = Field(description="the position figures of the range (points)")
    value: FiguresPublic = Field(description="the same in settlement units")
    issued_net: int
    redeemed_net: int
    breakage: int = Field(
        description="points that expired in the range, the partner's share: for every epoch whose points "
        "expired in [start, end) (epochExpiresAt, and not after as_of.time): the points of it that expired "
        "(swept since by PointsExpired entries, plus those still held unswept, from account_epochs) times "
        "the partner's share of the epoch's net issuance (its issues into the epoch less what its reversals "
        "of them took back, over every partner's), rounded down per epoch; plus the points of its refunds "
        "that expired on arrival in the range"
    )
    segments: list[StatementSegmentPublic] = Field(
        description="the range split wherever a price takes effect: each entry is charged at the price in "
        "force at its block's time"
    )
    totals: list[StatementAmountsPublic] = Field(description="the amounts summed per currency")
    unpriced_issued_net: int = Field(description="issued - reversed in segments without a price")
    unpriced_redeemed_net: int = Field(description="redeemed - refunded in segments without a price")
    as_of: AsOfPublic


# --------------------------------------------------------------------------- helpers


def _status(status: int) -> str:
    try:
        return PartnerStatus(status).name.lower()
    except ValueError:
        return str(status)


def _profiles(services: Services, partner_id: int | None = None) -> dict[int, PartnerProfile]:
    with services.session() as db:
        query = select(PartnerProfile)
        if partner_id is not None:
            query = query.where(PartnerProfile.partner_id == partner_id)
        profiles = {p.partner_id: p for p in db.scalars(query)}
        db.expunge_all()
        return profiles


def _entry(view: MirrorView, partner_id: int, profiles: dict[int, PartnerProfile]) -> PartnerEntryPublic:
    p = view.partner(partner_id)
    assert p is not None
    profile = profiles.get(partner_id)
    return PartnerEntryPublic(
        id=p.partner_id,
        name=profile.name if profile is not None else f"Partner {p.partner_id}",
        status=_status(p.status),
        can_issue=p.can_issue,
        can_accept=p.can_accept,
        spend_at=profile.spend_at if profile is not None else None,
        website=profile.website if profile is not None else None,
    )


def _require_partner(view: MirrorView, partner_id: int) -> None:
    if view.partner(partner_id) is None:
        raise NotFound(f"the ledger has no partner {partner_id}")


def _require_reader(principal: Principal, partner_id: int) -> None:
    if not principal.may_see_partner(partner_id):
        raise Forbidden("a partner key reads only its own partner's figures")


def _position(
    f: Flows,
    spans: Spans,
    per: list[Flows],
    start: int,
    end: int,
    partner_id: int | None,
    period: Period | None,
    as_of: AsOf,
) -> PositionPublic:
    pool = partner_id is None
    return PositionPublic(
        partner_id=partner_id,
        start=start,
        end=end,
        period=period,
        points=FiguresPublic.of(f, value=False, pool=pool),
        value=FiguresPublic.of(f, value=True, pool=pool),
        periods=[]
        if period is None
        else [
            PeriodPositionPublic(
                start=s.start,
                end=s.end,
                label=s.label,
                points=FiguresPublic.of(x, value=False, pool=pool),
                value=FiguresPublic.of(x, value=True, pool=pool),
            )
            for s, x in zip(spans, per, strict=True)
        ],
        as_of=AsOfPublic.of(as_of),
    )


def position_of(
    services: Services, partner_id: int | None, start: int | None, end: int | None, period: Period | None
) -> PositionPublic:
    with services.mirror() as (view, as_of):
        if partner_id is not None:
            _require_partner(view, partner_id)
        first, last = resolve_range(view, as_of, start, end)
        spans = make_spans(Calendar(view), first, last, period)
        per = flows(view, spans, partner_id=partner_id)
        return _position(sum(per, Flows()), spans, per, first, last, partner_id, period, as_of)


def _price(p: Price) -> PricePublic:
    return PricePublic.model_validate(p)


# --------------------------------------------------------------------------- the directory

READ_ERRORS = problem_responses(Unauthenticated, NotFound, NotReady)
FIGURES_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, NotReady)
ADMIN_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady)


@router.get("/partners", response_model=PartnersPublic, responses=READ_ERRORS, summary="The partners")
def list_partners(caller: Caller, services: ServicesDep) -> PartnersPublic:
    """Every partner the ledger registered (anyone may read it): name, status, rights, where points can be
    spent."""
    profiles = _profiles(services)
    with services.mirror() as (view, as_of):
        return PartnersPublic(
            data=[_entry(view, p.partner_id, profiles) for p in view.partners()], as_of=AsOfPublic.of(as_of)
        )


@router.get(
    "/partners/{partner_id}", response_model=PartnerPublic, responses=READ_ERRORS, summary="A partner"
)
def get_partner(partner_id: PartnerIdPath, caller: Caller, services: ServicesDep) -> PartnerPublic:
    """One partner of the directory (anyone may read it)."""
    profiles = _profiles(services, partner_id)
    with services.mirror() as (view, as_of):
        _require_partner(view, partner_id)
        entry = _entry(view, partner_id, profiles)
        return PartnerPublic(**entry.model_dump(), as_of=AsOfPublic.of(as_of))


@router.put(
    "/partners/{partner_id}/profile",
    response_model=PartnerPublic,
    responses=ADMIN_ERRORS,
    summary="Set a partner's profile",
)
def put_partner_profile(
    partner_id: PartnerIdPath, body: PartnerProfileUpdate, admin: Admin, services: ServicesDep
) -> PartnerPublic:
    """Sets the directory's name, where points can be spent and the website of a partner the ledger holds
    (admin keys only); the whole profile is replaced."""
    with services.mirror() as (view, _):
        _require_partner(view, partner_id)
    with services.session() as db:
        profile = db.get(PartnerProfile, partner_id)
        if profile is None:
            profile = PartnerProfile(partner_id=partner_id, name=body.name, updated_at=services.now())
            db.add(profile)
        profile.name = body.name
        profile.spend_at = body.spend_at
        profile.website = body.website
        profile.updated_at = services.now()
    return get_partner(partner_id, admin, services)


# --------------------------------------------------------------------------- positions


@router.get(
    "/partners/{partner_id}/position",
    response_model=PositionPublic,
    responses=FIGURES_ERRORS,
    summary="A partner's position",
)
def get_partner_position(
    partner_id: PartnerIdPath,
    caller: FiguresReader,
    services: ServicesDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    period: PeriodQuery = None,
) -> PositionPublic:
    """What the partner issued, had reversed, redeemed, refunded and settled in ``[from, to)`` (block
    timestamps), in points and in settlement value (each entry at the settlement value it carries: a batch's
    items at their header's, a reversal at its issue's, a refund at its redemption's), with the position
    (positive: the coalition owes the partner) and the open position (less what was settled); per period
    with ``period``. Without ``from`` and ``to`` the totals are all time: ``partnerPosition`` and
    ``partnerOpenPosition``. The partner's own key, admin and auditor keys."""
    _require_reader(caller, partner_id)
    return position_of(services, partner_id, from_, to, period)


@router.get(
    "/coalition/position",
    response_model=PositionPublic,
    responses=FIGURES_ERRORS,
    summary="The coalition pool's position",
)
def get_coalition_position(
    caller: CoalitionReader,
    services: ServicesDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    period: PeriodQuery = None,
) -> PositionPublic:
    """The coalition pool: every partner's issued, reversed, redeemed, refunded and settled points and value
    in ``[from, to)``; its position is minus the sum of the partners' (``coalitionPosition``: points issued
    less reversed less redeemed plus refunded), its open position that plus what was settled
    (``coalitionOpenPosition``). Over any range, it and every partner's sum to zero. Admin and auditor
    keys."""
    return position_of(services, None, from_, to, period)


# --------------------------------------------------------------------------- prices and statements


def _prices(services: Services, partner_id: int) -> list[Price]:
    with services.session() as db:
        rows = list(
            db.scalars(select(Price).where(Price.partner_id == partner_id).order_by(Price.effective_from))
        )
        db.expunge_all()
        return rows


@router.get(
    "/partners/{partner_id}/prices",
    response_model=PricesPublic,
    responses=FIGURES_ERRORS,
    summary="A partner's prices",
)
def get_partner_prices(
    partner_id: PartnerIdPath, caller: FiguresReader, services: ServicesDep
) -> PricesPublic:
    """Every commercial price set for the partner, in the order they take effect (the table is append-only:
    its audit trail), and the one in force now. The partner's own key, admin and auditor keys."""
    _require_reader(caller, partner_id)
    with services.mirror() as (view, as_of):
        _require_partner(view, partner_id)
    rows = _prices(services, partner_id)
    current = [p for p in rows if p.effective_from <= as_of.time]
    return PricesPublic(
        data=[_price(p) for p in rows],
        current=_price(current[-1]) if current else None,
        as_of=AsOfPublic.of(as_of),
    )


@router.post(
    "/partners/{partner_id}/prices",
    status_code=201,
    response_model=PriceCreatedPublic,
    responses=ADMIN_ERRORS,
    summary="Set a partner's next price",
)
def post_partner_price(
    partner_id: PartnerIdPath, body: PriceCreate, admin: Admin, services: ServicesDep
) -> PriceCreatedPublic:
    """Adds a price taking effect at ``effective_from``, which must be after now (the service's clock): the
    prices of entries already on the ledger never change. Admin keys only; the row records the key."""
    with services.mirror() as (view, as_of):
        _require_partner(view, partner_id)
    now = services.now()
    if body.effective_from <= now:
        raise InvalidRequest(
            "effective_from must be in the future: past prices are never rewritten",
            [FieldError("body.effective_from", f"must be after now ({now})")],
        )
    row = Price(
        partner_id=partner_id,
        effective_from=body.effective_from,
        currency=body.currency,
        issue_price=body.issue_price,
        redeem_price=body.redeem_price,
        note=body.note,
        created_at=now,
        created_by=admin.credential_id,
    )
    try:
        with services.session() as db:
            db.add(row)
            db.flush()
            created = _price(row)
    except IntegrityError:
        raise Conflict(
            f"partner {partner_id} already has a price taking effect at {body.effective_from}"
        ) from None
    return PriceCreatedPublic(**created.model_dump(), as_of=AsOfPublic.of(as_of))


@router.get(
    "/partners/{partner_id}/statement",
    response_model=StatementPublic,
    responses=FIGURES_ERRORS,
    summary="A partner's settlement statement",
)
def get_partner_statement(
    partner_id: PartnerIdPath,
    caller: FiguresReader,
    services: ServicesDep,
    from_: FromQuery = None,
    to: ToQuery = None,
) -> StatementPublic:
    """The partner's position figures for ``[from, to)`` with the amounts due each way under its prices:
    the range is split wherever a price takes effect and each entry is charged at the price in force at its
    block's time. It pays ``issue_price x (issued - reversed)`` and is reimbursed ``redeem_price x
    (redeemed - refunded)``; the operator's margin is the difference (summed per currency). Breakage: the
    points that expired in the range, the partner's pro-rata share (see the field). The partner's own key,
    admin and auditor keys."""
    _require_reader(caller, partner_id)
    profiles = _profiles(services, partner_id)
    prices = _prices(services, partner_id)
    with services.mirror() as (view, as_of):
        _require_partner(view, partner_id)
        first, last = resolve_range(view, as_of, from_, to)
        spans, in_force = price_spans(prices, first, last)
        per = flows(view, spans, partner_id=partner_id)
        calendar = Calendar(view)
        expired = sum(breakage(view, calendar, as_of, Spans.single(first, last), partner_id=partner_id))
    segments: list[StatementSegmentPublic] = []
    totals: dict[str, Amounts] = {}
    unpriced = Flows()
    for span, f, price in zip(spans, per, in_force, strict=True):
        due = None if price is None else amounts(f, price)
        if due is None:
            unpriced = unpriced + f
        else:
            totals[due.currency] = totals[due.currency] + due if due.currency in totals else due
        segments.append(
            StatementSegmentPublic(
                start=span.start,
                end=span.end,
                price=None if price is None else _price(price),
                issued_net=f.issued_net,
                redeemed_net=f.redeemed_net,
                points=FiguresPublic.of(f, value=False, pool=False),
                value=FiguresPublic.of(f, value=True, pool=False),
                amounts=None if due is None else StatementAmountsPublic.of(due),
            )
        )
    total = sum(per, Flows())
    profile = profiles.get(partner_id)
    return StatementPublic(
        partner_id=partner_id,
        partner_name=profile.name if profile is not None else f"Partner {partner_id}",
        start=first,
        end=last,
        points=FiguresPublic.of(total, value=False, pool=False),
        value=FiguresPublic.of(total, value=True, pool=False),
        issued_net=total.issued_net,
        redeemed_net=total.redeemed_net,
        breakage=expired,
        segments=segments,
        totals=[StatementAmountsPublic.of(totals[c]) for c in sorted(totals)],
        unpriced_issued_net=unpriced.issued_net,
        unpriced_redeemed_net=unpriced.redeemed_net,
        as_of=AsOfPublic.of(as_of),
    )
