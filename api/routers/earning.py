"""Earning: purchases, returns, engagements and adjustments, from a partner's till or web shop to the outbox.

Each write is computed and committed here (an :class:`~api._tables.Operation`) before anything is sent;
the batcher (``api/_batcher.py``) sends it and ``GET /v1/operations/{id}`` follows it to confirmed (or a
typed failure). A partner's order earns once (its order id is the natural key); a return id, a review id, a
referral pair and a member's birthday year are used once as well. The reference written on chain is a
keyed hash of the order id (``api/_outbox.py``), so the chain never shows an order or a customer.

Points are computed by the partner's active rule set (``api/_rules.py``), whose hash goes on chain with
them; ``GET /v1/rules/{hash}`` publishes it, and auditors read each operation's inputs, so every issuance
can be recomputed.

- ``POST /v1/purchases``: pending until the rule set's return window closes (``pending_days``), then
  issued. A referee's first purchase with points releases the referral rewards of both members.
- ``POST /v1/returns``: by amount (minor units) or by lines (sku and quantity, priced as the purchase's
  lines). Pro rata of what the purchase earned, cumulative over several returns (never more than it
  earned). While the purchase's points are pending they are cancelled (a full return leaves nothing);
  once issued, the return is a reversal on chain, bounded by what the order earned.
- ``POST /v1/engagements``: a review, a newsletter sign-up (once per member), a referral (both members,
  once per pair, on the referee's first qualifying purchase) or a custom event. Birthdays are granted by
  the scheduler (``api/_jobs.py``), never asked for.
- ``POST /v1/adjustments``: goodwill or a correction, with a reason; a partner key may grant up to
  ``adjustment_limit`` points at once, more needs an admin key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import ConfigDict, Field, model_validator
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .._auth import Principal, ServicesDep, allow
from .._errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, Unauthenticated
from .._models import NO_NUL, TEXT, RequestModel, problem_responses
from .._operations import OPERATION_LINKS, OperationPublic, operation_public
from .._outbox import OperationDraft, enqueue, find_operation
from .._rulebook import MemberRef, active_rule_set, member_context, parsed, resolve_member, rule_set_by_hash
from .._rules import EngagementKind, MemberContext, Rounding, RuleSet, quote_engagement, return_points
from .._services import Services
from .._tables import Operation
from .rules import MemberFields, OrderFields, member_tier, order_from, quote_order

__all__ = [
    "AdjustmentCreate",
    "EngagementCreate",
    "PurchaseCreate",
    "ReturnCreate",
    "router",
]

router = APIRouter(prefix="/v1", tags=["earning"])

PartnerKey = Annotated[Principal, Depends(allow("partner"))]
Writer = Annotated[Principal, Depends(allow("partner", "admin"))]

#: A referral's rewards wait for the referee's first purchase: until then they are pending "forever".
AWAITING_PURCHASE = 2**62
#: ``Operation.points`` is a BIGINT; the ledger's MAX_AMOUNT is far below.
MAX_POINTS = 10**15
OrderId = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]


class PurchaseCreate(OrderFields):
    order_id: OrderId
    member: MemberFields

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "till-7-000123",
                    "member": {"customer_id": "cust-42"},
                    "channel": "pos",
                    "store": "lisbon-01",
                    "currency": "EUR",
                    "amount": 1250,
                    "lines": [{"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 425}],
                }
            ]
        }
    )


#: A line's SKU as tills and shops write them (ASCII: a returned line names the purchase's line).
SKU = r"^[A-Za-z0-9][A-Za-z0-9._:/#+-]{0,63}$"
#: Lines per return at most (every request body stays well under the 64 KiB limit).
MAX_LINES = 250


class ReturnedLine(RequestModel):
    sku: Annotated[str, Field(pattern=SKU)]
    quantity: Annotated[int, Field(gt=0, le=10**9)]


class ReturnCreate(RequestModel):
    order_id: OrderId
    return_id: OrderId
    #: minor units returned (refunded to the customer); or ``lines``
    amount: Annotated[int | None, Field(gt=0, le=10**15)] = None
    lines: Annotated[list[ReturnedLine] | None, Field(min_length=1, max_length=MAX_LINES)] = None

    @model_validator(mode="after")
    def _one(self) -> ReturnCreate:
        if (self.amount is None) == (self.lines is None):
            raise ValueError("give either amount or lines")
        return self


class EngagementCreate(RequestModel):
    kind: Literal["review", "newsletter", "referral", "custom"]
    member: MemberFields
    #: the partner's id of the engagement (a review id, the custom event's occurrence); a newsletter
    #: sign-up and a referral are once per member / pair and need none
    engagement_id: Annotated[str | None, Field(min_length=1, max_length=200, pattern=TEXT)] = None
    #: a custom event's name (as the rule set names it)
    event: Annotated[str | None, Field(min_length=1, max_length=100, pattern=TEXT)] = None
    #: a referral: the member who referred ``member``
    referrer: MemberFields | None = None

    @model_validator(mode="after")
    def _fields(self) -> EngagementCreate:
        if self.kind in ("review", "custom") and self.engagement_id is None:
            raise ValueError(f"a {self.kind} needs its engagement_id")
        if (self.kind == "custom") != (self.event is not None):
            raise ValueError("a custom engagement, and only one, names its event")
        if (self.kind == "referral") != (self.referrer is not None):
            raise ValueError("a referral, and only a referral, names its referrer")
        return self


class AdjustmentCreate(RequestModel):
    adjustment_id: OrderId
    member: MemberFields
    points: Annotated[int, Field(gt=0, le=MAX_POINTS)]
    kind: Literal["goodwill", "correction"]
    reason: Annotated[str, Field(min_length=3, max_length=500, pattern=NO_NUL)]
    #: an admin key names the partner whose allowance it uses
    partner_id: Annotated[int | None, Field(ge=0, lt=2**32)] = None


WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)


def _request(body: RequestModel) -> dict[str, Any]:
    dumped: dict[str, Any] = body.model_dump(mode="json", exclude_none=True)
    return dumped


def _member(db: Session, partner_id: int, naming: MemberFields) -> MemberRef:
    return resolve_member(
        db, partner_id, member_id=naming.member_id, customer_id=naming.customer_id, address=naming.address
    )


def _serialise(db: Session, partner_id: int, address: str) -> None:
    """Caps are read, then written: one member's earnings at one partner are computed one at a time
    (PostgreSQL: a transaction-scoped advisory lock; SQLite serialises writers itself)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"earn:{partner_id}:{address}"})


def _context(services: Services, db: Session, partner_id: int, address: str, now: int) -> MemberContext:
    return member_context(db, partner_id, address, now, member_tier(services, address, db))


def _rules(db: Session, partner_id: int, now: int) -> tuple[bytes, RuleSet]:
    active = active_rule_set(db, partner_id, now)
    if active is None:
        raise Conflict(f"partner {partner_id} has no active rule set: create and activate one first")
    return active


@contextmanager
def _recorded_once() -> Iterator[None]:
    """A concurrent request that recorded the same order (or return) first: 409, and the retry answers it."""
    try:
        yield
    except IntegrityError:
        raise Conflict(
            "recorded by a concurrent request at this moment; retry to get its operation"
        ) from None


def _created(response: Response, op: Operation, created: bool, body: dict[str, Any]) -> OperationPublic:
    """201 for a new operation; the same natural key again: the stored one (200) when the request is the
    same, 409 when it differs."""
    if not created:
        if json.loads(op.request) != body:
            raise Conflict(
                f"{op.kind} {op.natural_key!r} was recorded already with other details (operation op_{op.id})"
            )
        response.status_code = 200
    response.headers["Location"] = f"/v1/operations/op_{op.id}"
    return operation_public(op)


@router.post(
    "/purchases",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **WRITE_ERRORS},
    summary="Record a purchase: its points are computed and queued for the chain",
)
def create_purchase(
    body: PurchaseCreate, partner: PartnerKey, services: ServicesDep, response: Response
) -> OperationPublic:
    """Computes the order's points with the partner's active rule set and queues them (pending until the
    return window closes, when the rule set has one). The same order id again answers the stored
    operation (200) when the request is the same, 409 when it differs."""
    assert partner.partner_id is not None
    pid, now, request = partner.partner_id, services.now(), _request(body)
    with _recorded_once(), services.session() as db:
        existing = find_operation(db, pid, "purchase", body.order_id)
        if existing is not None:
            return _created(response, existing, False, request)
        member = _member(db, pid, body.member)
        _serialise(db, pid, member.address)
        rule_hash, quote, _ = quote_order(services, db, pid, order_from(body, now), member=member)
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=pid,
                kind="purchase",
                natural_key=body.order_id,
                member_id=member.member_id,
                member_address=member.address,
                points=quote.points,
                reason=quote.reason,
                rule_hash=rule_hash,
                request=request,
                detail={"explanation": quote.explanation(), "capped": quote.capped},
                created_by=partner.credential_id,
                release_at=quote.release_at,
            ),
            now=now,
            looked=True,
        )
        if created and quote.points == 0:
            op.state, op.failure_detail = "cancelled", "the order earned no points"
        if created and quote.points > 0:
            _release_referral(db, pid, member.address, now)
        return _created(response, op, created, request)


#: A referee's referral rewards still waiting for a first purchase (prebuilt: every purchase asks; the
#: index on (state, release_at) finds the few that wait).
_RELEASE_REFERRAL = (
    update(Operation)
    .where(
        Operation.partner_id == bindparam("partner"),
        Operation.kind == "engagement",
        Operation.state == "pending",
        Operation.release_at == AWAITING_PURCHASE,
        Operation.natural_key.like(bindparam("pair")),
    )
    .values(release_at=bindparam("now"), updated_at=bindparam("now"))
)


def _release_referral(db: Session, partner_id: int, referee: str, now: int) -> None:
    """A referee's first purchase with points releases the referral rewards waiting for it."""
    db.execute(_RELEASE_REFERRAL, {"partner": partner_id, "pair": f"referral:%:{referee}:%", "now": now})


@router.post(
    "/returns",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **WRITE_ERRORS, **problem_responses(InvalidRequest)},
    summary="Record a return of (part of) an order",
)
def create_return(
    body: ReturnCreate, partner: PartnerKey, services: ServicesDep, response: Response
) -> OperationPublic:
    """Takes back the order's points pro rata: cancelled while still pending, reversed on chain after."""
    assert partner.partner_id is not None
    pid, now, request = partner.partner_id, services.now(), _request(body)
    with _recorded_once(), services.session() as db:
        existing = find_operation(db, pid, "return", body.return_id)
        if existing is not None:
            return _created(response, existing, False, request)
        purchase = find_operation(db, pid, "purchase", body.order_id)
        if purchase is None:
            raise NotFound(f"no purchase with order id {body.order_id!r}")
        order: dict[str, Any] = json.loads(purchase.request)
        returned = body.amount if body.amount is not None else _lines_amount(order, body.lines or [])
        earlier = db.scalars(
            select(Operation.detail).where(
                Operation.partner_id == pid, Operation.kind == "return", Operation.parent_id == purchase.id
            )
        ).all()
        already = sum(int(json.loads(d or "{}").get("returned_amount", 0)) for d in earlier)
        if already + returned > int(order["amount"]):
            raise InvalidRequest(
                f"returns of {already} + {returned} exceed the order's amount {order['amount']}",
                errors=[FieldError("body.amount", "more than is left of the order to return")],
            )
        rounding: Rounding = "floor"
        if purchase.rule_hash is not None:
            record = rule_set_by_hash(db, bytes(purchase.rule_hash))
            if record is not None:
                rounding = parsed(record).rounding
        points = return_points(
            purchase.original_points, int(order["amount"]), returned, rounding, already_returned=already
        )
        cancelled = points == 0 or _cancel_pending(db, purchase, points, now)
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=pid,
                kind="return",
                natural_key=body.return_id,
                member_id=purchase.member_id,
                member_address=purchase.member_address,
                points=points,
                reason=0,
                rule_hash=purchase.rule_hash,
                parent_id=purchase.id,
                request=request,
                detail={
                    "effect": "pending-points-cancelled" if cancelled else "reversal",
                    "returned_amount": returned,
                },
                created_by=partner.credential_id,
            ),
            now=now,
            looked=True,
        )
        if created and cancelled:
            op.state = "confirmed"  # nothing to send: the purchase's pending points were lowered
        return _created(response, op, created, request)


def _lines_amount(order: dict[str, Any], lines: list[ReturnedLine]) -> int:
    bought: dict[str, tuple[int, int]] = {}
    for line in order.get("lines", []):
        quantity, price = bought.get(line["sku"], (0, int(line["unit_price"])))
        bought[line["sku"]] = (quantity + int(line["quantity"]), price)
    total = 0
    for i, line in enumerate(lines):
        if line.sku not in bought or line.quantity > bought[line.sku][0]:
            raise InvalidRequest(
                f"the order has no {line.quantity} x {line.sku!r} to return",
                errors=[FieldError(f"body.lines.{i}", "not in the order in that quantity")],
            )
        total += line.quantity * bought[line.sku][1]
    return min(total, int(order["amount"]))


def _cancel_pending(db: Session, purchase: Operation, points: int, now: int) -> bool:
    """Lowers a still-pending purchase's points (False when the batcher took it first: then it is a
    reversal on chain). A purchase left with no points is cancelled."""
    lowered = db.execute(
        update(Operation)
        .where(Operation.id == purchase.id, Operation.state == "pending", Operation.points >= points)
        .values(points=Operation.points - points, updated_at=now)
    )
    if not getattr(lowered, "rowcount", 0):
        return False
    db.execute(
        update(Operation)
        .where(Operation.id == purchase.id, Operation.state == "pending", Operation.points == 0)
        .values(state="cancelled", failure_detail="returned in full while pending")
    )
    db.refresh(purchase)
    return True


@router.post(
    "/engagements",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **WRITE_ERRORS},
    summary="Reward an engagement: a review, a newsletter sign-up, a referral or a custom event",
)
def create_engagement(
    body: EngagementCreate, partner: PartnerKey, services: ServicesDep, response: Response
) -> OperationPublic:
    """Queues the rule set's points for the engagement. A referral queues the rewards of both members,
    pending until the referee's first purchase with points (the referee's operation is answered)."""
    assert partner.partner_id is not None
    pid, now, request = partner.partner_id, services.now(), _request(body)
    with services.session() as db:
        rule_hash, rules = _rules(db, pid, now)
        member = _member(db, pid, body.member)
        if body.kind == "referral":
            assert body.referrer is not None
            referrer = _member(db, pid, body.referrer)
            if referrer.address == member.address:
                raise InvalidRequest(
                    "a member cannot refer themselves",
                    errors=[FieldError("body.referrer", "the same member as body.member")],
                )
            pair = f"referral:{referrer.address}:{member.address}"
            first_purchase = db.scalar(
                select(Operation.id).where(
                    Operation.partner_id == pid,
                    Operation.kind == "purchase",
                    Operation.member_address == member.address,
                    Operation.original_points > 0,
                )
            )
            release = now if first_purchase is not None else AWAITING_PURCHASE
            answer = None
            roles: tuple[tuple[MemberRef, EngagementKind], ...] = (
                (referrer, "referral_referrer"),
                (member, "referral_referee"),
            )
            for who, role in roles:
                _serialise(db, pid, who.address)
                quote = quote_engagement(
                    rules,
                    role,
                    _context(services, db, pid, who.address, now),
                    at=now,
                )
                op, created = _engagement(
                    db,
                    pid,
                    f"{pair}:{role}",
                    who,
                    quote.points,
                    quote.reason,
                    rule_hash,
                    request,
                    quote.explanation(),
                    partner,
                    now,
                    release,
                )
                answer = (op, created)
            assert answer is not None
            return _created(response, *answer, request)
        if body.kind == "newsletter":
            key = f"newsletter:{member.address}"
        elif body.kind == "custom":
            key = f"custom:{body.event}:{body.engagement_id}"
        else:
            key = f"review:{body.engagement_id}"
        existing = find_operation(db, pid, "engagement", key)
        if existing is not None:
            return _created(response, existing, False, request)
        _serialise(db, pid, member.address)
        quote = quote_engagement(
            rules,
            body.kind,
            _context(services, db, pid, member.address, now),
            at=now,
            event=body.event,
        )
        op, created = _engagement(
            db,
            pid,
            key,
            member,
            quote.points,
            quote.reason,
            rule_hash,
            request,
            quote.explanation(),
            partner,
            now,
            None,
        )
        return _created(response, op, created, request)


def _engagement(
    db: Session,
    partner_id: int,
    key: str,
    member: MemberRef,
    points: int,
    reason: int,
    rule_hash: bytes,
    request: dict[str, Any],
    explanation: list[dict[str, str]],
    partner: Principal,
    now: int,
    release_at: int | None,
) -> tuple[Operation, bool]:
    op, created = enqueue(
        db,
        OperationDraft(
            partner_id=partner_id,
            kind="engagement",
            natural_key=key,
            member_id=member.member_id,
            member_address=member.address,
            points=points,
            reason=reason,
            rule_hash=rule_hash,
            request=request,
            detail={"explanation": explanation},
            created_by=partner.credential_id,
            release_at=release_at,
        ),
        now=now,
    )
    if created and points == 0:
        op.state, op.failure_detail = "cancelled", "the rule set gives this engagement no points"
    return op, created


@router.post(
    "/adjustments",
    status_code=201,
    response_model=OperationPublic,
    responses={**OPERATION_LINKS, **WRITE_ERRORS, **problem_responses(InvalidRequest)},
    summary="Grant points as goodwill or a correction",
)
def create_adjustment(
    body: AdjustmentCreate, caller: Writer, services: ServicesDep, response: Response
) -> OperationPublic:
    """Grants ``points`` with a reason. A partner key may grant up to the service's ``adjustment_limit``
    at once; an admin key any amount, for the partner it names. Points are never taken by an adjustment:
    a correction downwards is a return of the order that earned them."""
    if caller.role == "admin":
        if body.partner_id is None:
            raise InvalidRequest(
                "an admin key names the partner", errors=[FieldError("body.partner_id", "required")]
            )
        pid = body.partner_id
    else:
        assert caller.partner_id is not None
        if body.partner_id not in (None, caller.partner_id):
            raise InvalidRequest(
                "a partner key adjusts only for its own partner",
                errors=[FieldError("body.partner_id", "not this key's partner")],
            )
        limit = services.settings.adjustment_limit
        if body.points > limit:
            raise InvalidRequest(
                f"a partner key grants at most {limit} points at once: larger adjustments need an admin",
                errors=[FieldError("body.points", f"more than {limit}")],
            )
        pid = caller.partner_id
    now, request = services.now(), _request(body)
    with services.session() as db:
        member = _member(db, pid, body.member)
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=pid,
                kind="adjustment",
                natural_key=body.adjustment_id,
                member_id=member.member_id,
                member_address=member.address,
                points=body.points,
                reason=7 if body.kind == "goodwill" else 0,
                request=request,
                created_by=caller.credential_id,
            ),
            now=now,
        )
        return _created(response, op, created, request)
