"""Earning rules: each partner's versioned rule sets, which one is in force, the exact text of any rule set by
its hash (public: anyone can recompute any issuance), and quotes (the points an order would earn, explained
line by line; nothing is issued).

A partner key manages its own partner's rule sets, admin keys every partner's; auditors read them. A rule
set is immutable: changing the rules is creating a new version and activating it. Its hash is keccak-256 of
its canonical encoding (:mod:`api._rules`), the ``ruleHash`` every issuance it computes carries on chain.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Path, Response
from pydantic import ConfigDict, Field, WithJsonSchema, model_validator
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from indexer import Tier

from .._auth import Caller, Principal, ServicesDep, allow
from .._errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, NotReady, Unauthenticated
from .._models import TEXT, RequestModel, ResponseModel, link, linked_response, problem_responses
from .._rulebook import (
    MemberRef,
    activate,
    active_rule_set,
    bind_partner,
    create_rule_set,
    latest_activation,
    member_context,
    parsed,
    resolve_member,
    rule_set_by_hash,
    rule_sets_of,
)
from .._rules import (
    MAX_AMOUNT,
    NAME,
    Currency,
    Line,
    MemberContext,
    Order,
    Quote,
    RuleSet,
    RuleSetCreate,
    quote_purchase,
    rule_hash,
)
from .._services import Services
from .._tables import RuleActivation, RuleSetRecord
from .wallets import REASONS, checked_address

__all__ = [
    "ExplanationPublic",
    "LineFields",
    "MemberFields",
    "OrderFields",
    "QuoteCreate",
    "QuoteMemberPublic",
    "QuotePublic",
    "RuleSetPublic",
    "RuleSetsPublic",
    "RuleTextPublic",
    "member_tier",
    "order_from",
    "quote_order",
    "router",
]

router = APIRouter(prefix="/v1", tags=["rules"])

RuleWriter = Annotated[Principal, Depends(allow("admin", "partner"))]
RuleReader = Annotated[Principal, Depends(allow("admin", "auditor", "partner"))]
PartnerIdPath = Annotated[
    int, Path(ge=0, lt=2**32, description="the partner's id on the ledger", examples=[1])
]
HASH = r"^0x[0-9a-fA-F]{64}$"
HashPath = Annotated[
    str,
    Path(
        pattern=HASH,
        description="a rule hash (keccak-256 of the rule set's canonical encoding)",
        examples=["0x" + "ab" * 32],
    ),
]


# --------------------------------------------------------------------------- schemas


class RuleTextPublic(ResponseModel):
    """A rule set exactly as hashed, and what it says."""

    hash: str = Field(description="keccak-256 of ``canonical`` (UTF-8): the ruleHash on chain")
    partner_id: int
    version: int = Field(description="1, 2, ... per partner")
    canonical: str = Field(description="the canonical encoding, byte for byte what was hashed")
    created_at: int
    rules: RuleSet = Field(description="the rule set the canonical encoding encodes")


class RuleSetPublic(RuleTextPublic):
    created_by: str | None = Field(description="the API key that created it (null: the command line)")
    active: bool = Field(description="the partner's rule set in force now")
    activated_at: int | None = Field(description="since when it is in force (null: not in force)")


class RuleSetsPublic(ResponseModel):
    data: list[RuleSetPublic] = Field(description="newest version first")
    next_cursor: str | None = Field(default=None, description="always null: one page")


class LineFields(RequestModel):
    sku: str = Field(pattern=NAME, max_length=100, examples=["LATTE-L"])
    category: str | None = Field(default=None, pattern=NAME, max_length=100, examples=["coffee"])
    quantity: int = Field(ge=1, le=1_000_000, examples=[2])
    unit_price: int = Field(ge=0, le=MAX_AMOUNT, description="minor units (cents)", examples=[450])


class OrderFields(RequestModel):
    """An order as a partner's till or checkout describes it."""

    channel: Literal["pos", "online"] = Field(examples=["pos"])
    store: str | None = Field(default=None, pattern=NAME, max_length=100, examples=["berlin-mitte"])
    currency: Currency = Field(examples=["EUR"])
    amount: int = Field(
        ge=0, le=MAX_AMOUNT, description="what was paid, in minor units (cents)", examples=[900]
    )
    lines: list[LineFields] = Field(
        default_factory=list, max_length=500, description="the line items (optional)"
    )


#: How a partner names a member: exactly one of these.
MEMBER_KEYS = ("member_id", "customer_id", "address")
MEMBER_ID = r"^mem_[0-9a-f]{32}$"
ADDRESS = r"^0x[0-9a-fA-F]{40}$"


def _string(pattern: str, **schema: Any) -> WithJsonSchema:
    """A string property that is never null (the document's; the model also refuses an explicit null)."""
    return WithJsonSchema({"type": "string", "pattern": pattern, **schema})


class MemberFields(RequestModel):
    """The member, by exactly one of: member id, the partner's customer id, wallet address."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": [key]} for key in MEMBER_KEYS]})

    member_id: Annotated[str | None, _string(MEMBER_ID)] = Field(default=None, pattern=MEMBER_ID)
    customer_id: Annotated[str | None, _string(TEXT, minLength=1, maxLength=200)] = Field(
        default=None, min_length=1, max_length=200, pattern=TEXT
    )
    address: Annotated[str | None, _string(ADDRESS)] = Field(default=None, pattern=ADDRESS)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(data.get(key, "") is None for key in MEMBER_KEYS):
            raise ValueError("leave out what is not given (no nulls)")
        return data

    @model_validator(mode="after")
    def _one(self) -> MemberFields:
        if sum(x is not None for x in (self.member_id, self.customer_id, self.address)) != 1:
            raise ValueError("name the member by exactly one of member_id, customer_id, address")
        return self


class QuoteCreate(OrderFields):
    partner_id: int | None = Field(
        default=None, ge=0, lt=2**32, description="admin keys: the partner (a partner key: its own)"
    )
    member: MemberFields | None = Field(
        default=None, description="the member, for its tier and the points it earned under the caps"
    )
    rule_hash: str | None = Field(
        default=None, pattern=HASH, description="a rule set of the partner's (default: the one in force)"
    )


class ExplanationPublic(ResponseModel):
    kind: str = Field(
        description="rate, minimum, discount, line, excluded, amount, channel, store, tier, rounding, "
        "bonus, cap, engagement",
        examples=["line"],
    )
    detail: str = Field(examples=["LATTE-L (coffee): 2 x 450: base 9, x2 category"])
    points: str = Field(
        description="what the step contributes, or the running total after it; exact (a decimal, or n/d)",
        examples=["18"],
    )


class QuoteMemberPublic(ResponseModel):
    member_id: str | None = Field(description="null: the address is not one of the partner's members")
    address: str
    tier: str
    earned_day: int = Field(description="points earned from the partner this UTC day")
    earned_week: int = Field(description="... this ISO week")
    earned_month: int = Field(description="... this calendar month")


class QuotePublic(ResponseModel):
    points: int = Field(description="whole points, >= 0")
    release_at: int = Field(description="when they would be released (pending until the return window ends)")
    reason: int = Field(description="the ledger's reason code")
    reason_label: str
    rule_hash: str
    at: int = Field(description="the time the order was quoted for (now)")
    capped: bool = Field(description="a cap lowered the points")
    lines: list[ExplanationPublic] = Field(description="the computation, step by step")
    member: QuoteMemberPublic | None


# --------------------------------------------------------------------------- helpers


def _require_writer(principal: Principal, partner_id: int) -> None:
    if principal.role == "partner" and principal.partner_id != partner_id:
        raise Forbidden("a partner key manages only its own partner's rule sets")


def _require_reader(principal: Principal, partner_id: int) -> None:
    if not principal.may_see_partner(partner_id):
        raise Forbidden("a partner key reads only its own partner's rule sets")


def _hash_of(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _text(record: RuleSetRecord) -> dict[str, Any]:
    return {
        "hash": "0x" + record.hash.hex(),
        "partner_id": record.partner_id,
        "version": record.version,
        "canonical": record.canonical,
        "created_at": record.created_at,
        "rules": parsed(record),
    }


def _public(record: RuleSetRecord, current: RuleActivation | None) -> RuleSetPublic:
    active = current is not None and current.rule_hash == record.hash
    return RuleSetPublic(
        **_text(record),
        created_by=record.created_by,
        active=active,
        activated_at=current.activated_at if current is not None and active else None,
    )


def order_from(fields: OrderFields, at: int) -> Order:
    """The order the rules compute, at ``at`` (Unix seconds)."""
    return Order(
        channel=fields.channel,
        store=fields.store,
        currency=fields.currency,
        amount=fields.amount,
        lines=tuple(Line(x.sku, x.category, x.quantity, x.unit_price) for x in fields.lines),
        at=at,
    )


_TIER = select(Tier.tier).where(Tier.account == bindparam("account"))


def member_tier(services: Services, address: str, db: Session | None = None) -> str:
    """The wallet's tier in the mirror (the lowest tier before it earned anything), as the wallet shows it.
    With ``db`` (a session on the same database) it is read there, without a snapshot of its own."""
    if db is not None:
        tier = db.execute(_TIER, {"account": address.lower()}).scalar()
    else:
        with services.mirror() as (view, _):
            tier = view.conn.execute(_TIER, {"account": address.lower()}).scalar()
    return tier if tier is not None else next(iter(services.settings.tier_thresholds))


def _rules_for(db: Session, partner_id: int, digest: bytes | None, at: int) -> tuple[bytes, RuleSet]:
    if digest is not None:
        record = rule_set_by_hash(db, digest)
        if record is None or record.partner_id != partner_id:
            raise NotFound(f"partner {partner_id} has no rule set 0x{digest.hex()}")
        return record.hash, parsed(record)
    active = active_rule_set(db, partner_id, at)
    if active is None:
        raise Conflict(f"partner {partner_id} has no rule set in force: create one and activate it")
    return active


def quote_order(
    services: Services,
    db: Session,
    partner_id: int,
    order: Order,
    *,
    member: MemberRef | None,
    digest: bytes | None = None,
) -> tuple[bytes, Quote, MemberContext | None]:
    """The rule hash, quote and member context of ``order`` under the partner's rule set ``digest`` (default:
    the one in force at the order's time): 409 when none is in force, 404 for an unknown hash."""
    found_hash, rules = _rules_for(db, partner_id, digest, order.at)
    context = None
    if member is not None:
        tier = member_tier(services, member.address, db)
        context = member_context(db, partner_id, member.address, order.at, tier)
    return found_hash, quote_purchase(rules, order, context or MemberContext()), context


# --------------------------------------------------------------------------- routes

WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, Conflict)
READ_ERRORS = problem_responses(Unauthenticated, Forbidden)
ACTIVATE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)
PUBLIC_ERRORS = problem_responses(Unauthenticated, NotFound)
QUOTE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady)

#: What a caller does next with a rule set it just created.
RULE_SET_LINKS = {
    "ActivateRuleSet": link(
        "POST",
        "/v1/partners/{partner_id}/rule-sets/{hash}/activate",
        "put it in force",
        partner_id="$response.body#/partner_id",
        hash="$response.body#/hash",
    ),
    "GetRules": link("GET", "/v1/rules/{hash}", "its public text", hash="$response.body#/hash"),
}
CREATED = {
    **linked_response(201, "The new rule set (the next version)", RULE_SET_LINKS),
    200: {"description": "The same rules existed already: that rule set", "model": RuleSetPublic},
}


@router.post(
    "/partners/{partner_id}/rule-sets",
    status_code=201,
    response_model=RuleSetPublic,
    responses={**CREATED, **WRITE_ERRORS},
    summary="Create a rule set",
)
def post_rule_set(
    partner_id: PartnerIdPath,
    body: RuleSetCreate,
    caller: RuleWriter,
    services: ServicesDep,
    response: Response,
) -> RuleSetPublic:
    """Stores the rules as the partner's next version (not yet in force: activate it). The same rules
    again (the same canonical encoding) answer the existing rule set with 200. A partner key creates its
    own partner's only."""
    _require_writer(caller, partner_id)
    bound = bind_partner(body, partner_id)
    now = services.now()
    try:
        with services.session() as db:
            existing = rule_set_by_hash(db, rule_hash(bound))
            record = existing or create_rule_set(
                db, partner_id, bound, now=now, created_by=caller.credential_id
            )
            if existing is not None:
                response.status_code = 200
            return _public(record, latest_activation(db, partner_id, now))
    except IntegrityError:
        raise Conflict("another rule set of this partner was created at the same time; retry") from None


@router.get(
    "/partners/{partner_id}/rule-sets",
    response_model=RuleSetsPublic,
    responses=READ_ERRORS,
    summary="A partner's rule sets",
)
def list_rule_sets(partner_id: PartnerIdPath, caller: RuleReader, services: ServicesDep) -> RuleSetsPublic:
    """Every version, newest first, with the one in force marked."""
    _require_reader(caller, partner_id)
    with services.session() as db:
        current = latest_activation(db, partner_id, services.now())
        return RuleSetsPublic(data=[_public(r, current) for r in rule_sets_of(db, partner_id)])


@router.post(
    "/partners/{partner_id}/rule-sets/{hash}/activate",
    response_model=RuleSetPublic,
    responses=ACTIVATE_ERRORS,
    summary="Put a rule set in force",
)
def activate_rule_set(
    partner_id: PartnerIdPath, hash: HashPath, caller: RuleWriter, services: ServicesDep
) -> RuleSetPublic:
    """From now on the partner's purchases and engagements are computed with this rule set (any of its
    versions, an older one too). Activating the one in force changes nothing."""
    _require_writer(caller, partner_id)
    digest, now = _hash_of(hash), services.now()
    with services.session() as db:
        activation = activate(db, partner_id, digest, now=now, activated_by=caller.credential_id)
        record = rule_set_by_hash(db, digest)
        assert record is not None
        return _public(record, activation)


@router.get("/rules/{hash}", response_model=RuleTextPublic, responses=PUBLIC_ERRORS, summary="A rule set")
def get_rules(hash: HashPath, caller: Caller, services: ServicesDep) -> RuleTextPublic:
    """The rule set with this hash, exactly as hashed (anyone may read it: with it and an issuance's inputs
    anyone can recompute the issuance's points)."""
    with services.session() as db:
        record = rule_set_by_hash(db, _hash_of(hash))
        if record is None:
            raise NotFound(f"no rule set {hash.lower()}")
        return RuleTextPublic(**_text(record))


@router.post("/quotes", response_model=QuotePublic, responses=QUOTE_ERRORS, summary="Quote an order")
def post_quote(body: QuoteCreate, caller: RuleWriter, services: ServicesDep) -> QuotePublic:
    """The points the order would earn now, with the computation step by step; nothing is issued. With a
    member: its tier and the caps (what it earned from the partner today, this week, this month). 409 when
    the partner has no rule set in force (and none is named)."""
    if caller.role == "partner":
        assert caller.partner_id is not None
        if body.partner_id is not None and body.partner_id != caller.partner_id:
            raise Forbidden("a partner key quotes only for its own partner")
        partner_id = caller.partner_id
    elif body.partner_id is None:
        message = "an admin key names the partner"
        raise InvalidRequest(message, [FieldError("body.partner_id", message)])
    else:
        partner_id = body.partner_id
    at = services.now()
    order = order_from(body, at)
    with services.session() as db:
        ref = None
        if body.member is not None:
            given = body.member
            address = None
            if given.address is not None:
                address = checked_address(given.address, "body.member.address")
            ref = resolve_member(
                db, partner_id, member_id=given.member_id, customer_id=given.customer_id, address=address
            )
        digest = None if body.rule_hash is None else _hash_of(body.rule_hash)
        found, quote, context = quote_order(services, db, partner_id, order, member=ref, digest=digest)
    return QuotePublic(
        points=quote.points,
        release_at=quote.release_at,
        reason=quote.reason,
        reason_label=REASONS.get(quote.reason, "programme-specific"),
        rule_hash="0x" + found.hex(),
        at=at,
        capped=quote.capped,
        lines=[ExplanationPublic(kind=x.kind, detail=x.detail, points=x.points) for x in quote.lines],
        member=None
        if ref is None or context is None
        else QuoteMemberPublic(
            member_id=ref.member_id,
            address=to_checksum_address(ref.address),
            tier=context.tier or "",
            earned_day=context.earned_day,
            earned_week=context.earned_week,
            earned_month=context.earned_month,
        ),
    )
