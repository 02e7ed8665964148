"""Webhooks: a partner subscribes its CRM to what happens to its members (points issued, released, redeemed,
reversed, expiring soon, a tier changed, a reward within reach, an operation failed), and follows what was
delivered.

A partner key manages its own partner's webhooks, an admin key any; auditors read them. The signing secret
(``whsec_...``, Standard Webhooks) is in the answer that creates it or rotates it, once, and nowhere else;
a rotation keeps the old secret signing beside the new one for ``settings.webhook_secret_grace_s``. The
delivery log shows every attempt (status code or error), the next one, and the event id that receivers
deduplicate on; a replay sends an event again under the same id. What is sent and how:
:mod:`api._webhooks`.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .._auth import Principal, ServicesDep, allow
from .._errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, NotReady, Unauthenticated
from .._models import NO_NUL, RequestModel, ResponseModel, link, linked_response, problem_responses
from .._pagination import SeqPage
from .._redemptions import MAX_POINTS
from .._services import Services
from .._tables import Webhook, WebhookDelivery, WebhookEvent
from .._webhooks import EVENT_TYPES, EventType, cancel_pending, new_secret, replay_delivery, secret_box

__all__ = [
    "DeliveriesPublic",
    "DeliveryAttemptPublic",
    "DeliveryPublic",
    "WebhookCreate",
    "WebhookPublic",
    "WebhookSecretPublic",
    "WebhooksPublic",
    "router",
]

router = APIRouter(prefix="/v1", tags=["webhooks"])

Owner = Annotated[Principal, Depends(allow("admin", "partner"))]
Reader = Annotated[Principal, Depends(allow("admin", "auditor", "partner"))]
PartnerIdPath = Annotated[
    int, Path(ge=0, lt=2**32, description="the partner's id on the ledger", examples=[1])
]
WEBHOOK_ID = r"^wh_[0-9a-f]{24}$"
DELIVERY_ID = r"^dlv_[0-9]{1,18}$"
WebhookIdPath = Annotated[
    str, Path(pattern=WEBHOOK_ID, description="the webhook's id", examples=["wh_" + "3f9c0a1b2c4d" * 2])
]
DeliveryIdPath = Annotated[
    str, Path(pattern=DELIVERY_ID, description="the delivery's id", examples=["dlv_42"])
]

#: Live webhooks a partner may have.
MAX_WEBHOOKS = 20
#: An http(s) URL: a host name or an IP literal, a port in range, then a path, query or fragment of printable
#: ASCII; no user info (credentials belong in the path or query the partner's receiver checks).
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
URL = (
    r"^https?://([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    rf"(:{_PORT})?([/?#][!-~]*)?$"
)
#: Defaults of the scheduled notifications' parameters.
EXPIRING_DAYS_DEFAULT = 30
WITHIN_POINTS_DEFAULT = 100


# --------------------------------------------------------------------------- schemas


class WebhookCreate(RequestModel):
    url: str = Field(
        max_length=2000,
        pattern=URL,
        description="where events are POSTed (https in production mode)",
        examples=["https://crm.example.com/loyalty/events"],
    )
    events: list[EventType] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="the event types to receive",
        examples=[["points.issued", "points.expiring", "reward.within_reach"]],
    )
    description: str | None = Field(
        default=None, max_length=500, pattern=NO_NUL, examples=["CRM: expiry and reward reminders"]
    )
    expiring_within_days: int = Field(
        default=EXPIRING_DAYS_DEFAULT,
        ge=1,
        le=366,
        description="points.expiring: points that expire within this many days",
        examples=[30],
    )
    reward_within_points: int = Field(
        default=WITHIN_POINTS_DEFAULT,
        ge=1,
        le=MAX_POINTS,
        description="reward.within_reach: the cheapest reward not yet affordable is at most this many points "
        "away",
        examples=[100],
    )


class WebhookPublic(ResponseModel):
    id: str = Field(examples=["wh_" + "3f9c0a1b2c4d" * 2])
    partner_id: int
    url: str
    events: list[str]
    description: str | None
    expiring_within_days: int
    reward_within_points: int
    created_at: int
    created_by: str | None = Field(description="the API key that created it")
    rotated_at: int | None = Field(description="when its secret was last rotated")
    previous_secret_expires_at: int | None = Field(
        description="until when the secret a rotation replaced still signs deliveries (beside the new one)"
    )


class WebhookSecretPublic(WebhookPublic):
    secret: str = Field(
        description="the signing secret (Standard Webhooks): shown this once, never again",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhooksPublic(ResponseModel):
    data: list[WebhookPublic] = Field(description="oldest first")
    next_cursor: str | None = Field(default=None, description="always null: one page")


class DeliveryAttemptPublic(ResponseModel):
    at: int = Field(description="when it was made (Unix seconds)")
    status_code: int | None = Field(description="the endpoint's answer (null: none)")
    error: str | None = Field(description="why it failed: http-<status>, timeout, ConnectError, ...")
    duration_ms: int


class DeliveryPublic(ResponseModel):
    id: str = Field(examples=["dlv_42"])
    webhook_id: str
    event_id: str = Field(description="the webhook-id header: the same for every delivery of the event")
    event_type: str
    replay: int = Field(description="0: the event's delivery; n: its n-th replay")
    state: Literal["pending", "sending", "succeeded", "failed", "cancelled"] = Field(
        description="pending (waiting for its next attempt), sending, succeeded (a 2xx answer), failed "
        "(retries exhausted), cancelled (the webhook was deleted)"
    )
    attempts: int
    next_attempt_at: int | None
    last_status_code: int | None
    last_error: str | None
    created_at: int
    finished_at: int | None
    log: list[DeliveryAttemptPublic] = Field(description="every attempt, oldest first")
    payload: dict[str, Any] = Field(description="the body sent: type, timestamp, data")


class DeliveriesPublic(ResponseModel):
    data: list[DeliveryPublic] = Field(description="newest first")
    next_cursor: str | None


# --------------------------------------------------------------------------- helpers


def _require_owner(principal: Principal, partner_id: int) -> None:
    if principal.role == "partner" and principal.partner_id != partner_id:
        raise Forbidden("a partner key manages only its own partner's webhooks")


def _require_reader(principal: Principal, partner_id: int) -> None:
    if not principal.may_see_partner(partner_id):
        raise Forbidden("a partner key reads only its own partner's webhooks")


def _require_partner(services: Services, partner_id: int) -> None:
    with services.mirror() as (view, _):
        if view.partner(partner_id) is None:
            raise NotFound(f"the ledger has no partner {partner_id}")


def _webhook(db: Session, partner_id: int, webhook_id: str) -> Webhook:
    hook = db.get(Webhook, webhook_id)
    if hook is None or hook.partner_id != partner_id or hook.deleted_at is not None:
        raise NotFound(f"partner {partner_id} has no webhook {webhook_id}")
    return hook


def _public(hook: Webhook, now: int) -> WebhookPublic:
    grace = hook.previous_secret_until
    return WebhookPublic(
        id=hook.id,
        partner_id=hook.partner_id,
        url=hook.url,
        events=json.loads(hook.events),
        description=hook.description,
        expiring_within_days=hook.expiring_within_days,
        reward_within_points=hook.reward_within_points,
        created_at=hook.created_at,
        created_by=hook.created_by,
        rotated_at=hook.rotated_at,
        previous_secret_expires_at=grace if grace is not None and grace > now else None,
    )


def _delivery(db: Session, hook: Webhook, delivery_id: str) -> tuple[WebhookDelivery, WebhookEvent]:
    row = db.execute(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == int(delivery_id[4:]), WebhookDelivery.webhook_id == hook.id)
    ).first()
    if row is None:
        raise NotFound(f"webhook {hook.id} has no delivery {delivery_id}")
    delivery, event = row._tuple()
    return delivery, event


def _delivery_public(delivery: WebhookDelivery, event: WebhookEvent) -> DeliveryPublic:
    return DeliveryPublic(
        id=f"dlv_{delivery.id}",
        webhook_id=delivery.webhook_id,
        event_id=delivery.event_id,
        event_type=event.type,
        replay=delivery.replay,
        state=delivery.state,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        log=[
            DeliveryAttemptPublic(
                at=a["at"], status_code=a["status"], error=a["error"], duration_ms=a["duration_ms"]
            )
            for a in json.loads(delivery.log)
        ],
        payload=json.loads(event.payload),
    )


def _check_url(services: Services, url: str) -> None:
    if services.settings.mode == "production" and urlsplit(url).scheme != "https":
        message = "production mode delivers only to https URLs"
        raise InvalidRequest(message, [FieldError("body.url", message)])


# --------------------------------------------------------------------------- routes

WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)
CREATE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady)
READ_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound)
LIST_ERRORS = problem_responses(Unauthenticated, Forbidden)

#: What a partner does next with a webhook it just created.
WEBHOOK_LINKS = {
    "GetWebhook": link(
        "GET",
        "/v1/partners/{partner_id}/webhooks/{webhook_id}",
        "the webhook (without its secret)",
        partner_id="$response.body#/partner_id",
        webhook_id="$response.body#/id",
    ),
    "ListDeliveries": link(
        "GET",
        "/v1/partners/{partner_id}/webhooks/{webhook_id}/deliveries",
        "what was delivered",
        partner_id="$response.body#/partner_id",
        webhook_id="$response.body#/id",
    ),
    "RotateSecret": link(
        "POST",
        "/v1/partners/{partner_id}/webhooks/{webhook_id}/secret",
        "replace its signing secret",
        partner_id="$response.body#/partner_id",
        webhook_id="$response.body#/id",
    ),
    "DeleteWebhook": link(
        "DELETE",
        "/v1/partners/{partner_id}/webhooks/{webhook_id}",
        "stop it",
        partner_id="$response.body#/partner_id",
        webhook_id="$response.body#/id",
    ),
}
CREATED = linked_response(201, "The webhook, with its signing secret (shown this once)", WEBHOOK_LINKS)
ROTATED = linked_response(
    200,
    "The webhook, with its new signing secret (shown this once)",
    {k: v for k, v in WEBHOOK_LINKS.items() if k != "RotateSecret"},
)
REPLAYED = linked_response(
    202,
    "The new delivery of the event (same event id), due now",
    {
        "GetDelivery": link(
            "GET",
            "/v1/partners/{partner_id}/webhooks/{webhook_id}/deliveries/{delivery_id}",
            "follow it",
            partner_id="$request.path.partner_id",
            webhook_id="$response.body#/webhook_id",
            delivery_id="$response.body#/id",
        )
    },
)


@router.post(
    "/partners/{partner_id}/webhooks",
    status_code=201,
    response_model=WebhookSecretPublic,
    responses={**CREATED, **CREATE_ERRORS},
    summary="Subscribe to events",
)
def create_webhook(
    partner_id: PartnerIdPath, body: WebhookCreate, owner: Owner, services: ServicesDep, response: Response
) -> WebhookSecretPublic:
    """Events of the types given are POSTed to the URL from now on, signed per Standard Webhooks with the
    secret in this answer (shown this once: keep it). The partner's own key, or an admin key; at most
    20 webhooks per partner (409 beyond)."""
    _require_owner(owner, partner_id)
    _check_url(services, body.url)
    _require_partner(services, partner_id)
    box = secret_box(services.settings)
    now = services.now()
    secret = new_secret()
    with services.session() as db:
        live = db.scalar(
            select(func.count())
            .select_from(Webhook)
            .where(Webhook.partner_id == partner_id, Webhook.deleted_at.is_(None))
        )
        if (live or 0) >= MAX_WEBHOOKS:
            raise Conflict(f"partner {partner_id} has {MAX_WEBHOOKS} webhooks: delete one first")
        webhook_id = "wh_" + secrets.token_hex(12)
        hook = Webhook(
            id=webhook_id,
            partner_id=partner_id,
            url=body.url,
            events=json.dumps(sorted(set(body.events))),
            description=body.description,
            expiring_within_days=body.expiring_within_days,
            reward_within_points=body.reward_within_points,
            secret=box.seal(webhook_id, secret),
            created_at=now,
            created_by=owner.credential_id,
        )
        db.add(hook)
        db.flush()
        response.headers["Location"] = f"/v1/partners/{partner_id}/webhooks/{webhook_id}"
        return WebhookSecretPublic(**_public(hook, now).model_dump(), secret=secret)


@router.get(
    "/partners/{partner_id}/webhooks",
    response_model=WebhooksPublic,
    responses=LIST_ERRORS,
    summary="A partner's webhooks",
)
def list_webhooks(partner_id: PartnerIdPath, reader: Reader, services: ServicesDep) -> WebhooksPublic:
    """Its live webhooks, oldest first, without their secrets."""
    _require_reader(reader, partner_id)
    now = services.now()
    with services.session() as db:
        hooks = db.scalars(
            select(Webhook)
            .where(Webhook.partner_id == partner_id, Webhook.deleted_at.is_(None))
            .order_by(Webhook.created_at, Webhook.id)
        )
        return WebhooksPublic(data=[_public(h, now) for h in hooks])


@router.get(
    "/partners/{partner_id}/webhooks/{webhook_id}",
    response_model=WebhookPublic,
    responses=READ_ERRORS,
    summary="A webhook",
)
def get_webhook(
    partner_id: PartnerIdPath, webhook_id: WebhookIdPath, reader: Reader, services: ServicesDep
) -> WebhookPublic:
    """The webhook without its secret (shown only when created or rotated)."""
    _require_reader(reader, partner_id)
    with services.session() as db:
        return _public(_webhook(db, partner_id, webhook_id), services.now())


@router.delete(
    "/partners/{partner_id}/webhooks/{webhook_id}",
    response_model=WebhookPublic,
    responses=WRITE_ERRORS,
    summary="Delete a webhook",
)
def delete_webhook(
    partner_id: PartnerIdPath, webhook_id: WebhookIdPath, owner: Owner, services: ServicesDep
) -> WebhookPublic:
    """Nothing more is sent to it (its deliveries not yet sent are cancelled); from then on it is 404."""
    _require_owner(owner, partner_id)
    now = services.now()
    with services.session() as db:
        hook = _webhook(db, partner_id, webhook_id)
        hook.deleted_at = now
        cancel_pending(db, hook.id, now=now)
        db.flush()
        return _public(hook, now)


@router.post(
    "/partners/{partner_id}/webhooks/{webhook_id}/secret",
    response_model=WebhookSecretPublic,
    responses={**ROTATED, **WRITE_ERRORS},
    summary="Rotate a webhook's signing secret",
)
def rotate_webhook_secret(
    partner_id: PartnerIdPath, webhook_id: WebhookIdPath, owner: Owner, services: ServicesDep
) -> WebhookSecretPublic:
    """A new signing secret (shown this once). For ``webhook_secret_grace_s`` (a day by default) deliveries
    carry a signature with each secret, so the receiver can switch at its own pace; then only the new one."""
    _require_owner(owner, partner_id)
    box = secret_box(services.settings)
    now = services.now()
    secret = new_secret()
    with services.session() as db:
        hook = _webhook(db, partner_id, webhook_id)
        hook.previous_secret = hook.secret
        hook.previous_secret_until = now + services.settings.webhook_secret_grace_s
        hook.secret = box.seal(hook.id, secret)
        hook.rotated_at = now
        db.flush()
        return WebhookSecretPublic(**_public(hook, now).model_dump(), secret=secret)


@router.get(
    "/partners/{partner_id}/webhooks/{webhook_id}/deliveries",
    response_model=DeliveriesPublic,
    responses=READ_ERRORS,
    summary="A webhook's delivery log",
)
def list_deliveries(
    partner_id: PartnerIdPath,
    webhook_id: WebhookIdPath,
    reader: Reader,
    services: ServicesDep,
    page: SeqPage,
    state: Annotated[
        Literal["pending", "sending", "succeeded", "failed", "cancelled"] | None,
        Query(description="only deliveries in this state"),
    ] = None,
) -> DeliveriesPublic:
    """Every delivery, newest first: its event (id, type, body), attempts with their status codes or
    errors, and the next attempt."""
    _require_reader(reader, partner_id)
    with services.session() as db:
        hook = _webhook(db, partner_id, webhook_id)
        query = (
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.webhook_id == hook.id)
        )
        if state is not None:
            query = query.where(WebhookDelivery.state == state)
        if page.before is not None:
            query = query.where(WebhookDelivery.id < page.before)
        rows = [
            r._tuple() for r in db.execute(query.order_by(WebhookDelivery.id.desc()).limit(page.limit + 1))
        ]
        more = len(rows) > page.limit
        rows = rows[: page.limit]
        return DeliveriesPublic(
            data=[_delivery_public(d, e) for d, e in rows],
            next_cursor=str(rows[-1][0].id) if more and rows else None,
        )


@router.get(
    "/partners/{partner_id}/webhooks/{webhook_id}/deliveries/{delivery_id}",
    response_model=DeliveryPublic,
    responses=READ_ERRORS,
    summary="A delivery",
)
def get_delivery(
    partner_id: PartnerIdPath,
    webhook_id: WebhookIdPath,
    delivery_id: DeliveryIdPath,
    reader: Reader,
    services: ServicesDep,
) -> DeliveryPublic:
    _require_reader(reader, partner_id)
    with services.session() as db:
        return _delivery_public(*_delivery(db, _webhook(db, partner_id, webhook_id), delivery_id))


@router.post(
    "/partners/{partner_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryPublic,
    responses={**REPLAYED, **problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)},
    summary="Send an event again",
)
def replay(
    partner_id: PartnerIdPath,
    webhook_id: WebhookIdPath,
    delivery_id: DeliveryIdPath,
    owner: Owner,
    services: ServicesDep,
    response: Response,
) -> DeliveryPublic:
    """A new delivery of the delivery's event, due now, under the same event id (``webhook-id``), so a
    receiver that processed it already recognises it; signed with the webhook's current secret."""
    _require_owner(owner, partner_id)
    try:
        with services.session() as db:
            hook = _webhook(db, partner_id, webhook_id)
            delivery, event = _delivery(db, hook, delivery_id)
            again = replay_delivery(db, delivery, now=services.now())
            response.headers["Location"] = (
                f"/v1/partners/{partner_id}/webhooks/{hook.id}/deliveries/dlv_{again.id}"
            )
            return _delivery_public(again, event)
    except IntegrityError:
        raise Conflict("another replay of this event was asked for at the same moment; retry") from None
