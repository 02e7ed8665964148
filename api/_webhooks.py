"""Webhooks: partners' CRMs hear what happens to their members, signed per the Standard Webhooks spec.

**Events.** Each is stored once (``webhook_events``) under a stable id, ``evt_`` and a digest of its source,
so emitting it again (a batcher that confirms an operation a second time after a crash, two job runners)
is the same event, and a partner deduplicates on the ``webhook-id`` header::

    points.issued            an issuing operation (purchase, engagement, adjustment) confirmed on chain
    points.pending_released  a pending operation's return window closed: its points are sent to the chain
    points.redeemed          a redemption confirmed
    points.reversed          a return confirmed as a reversal on chain
    operation.failed         the chain refused an operation (``failure``: the typed reason)
    points.expiring          a member's points of one epoch expire within the subscription's N days
    reward.within_reach      the cheapest reward of the partner's catalogue the member cannot afford yet is
                             at most the subscription's N points away
    tier.changed             a member's tier in the mirror differs from the one last notified

The first five are emitted by the batcher in the same database transaction as the state change that causes
them (:func:`operation_events`, :func:`released_events`): an operation confirmed is an event stored, or
neither. The last three are computed by the scheduled job :func:`notify_members` for each partner with a
subscription to them, once per (member, epoch), per (member, reward) and per change of tier.

**Deliveries.** An event gets one delivery per webhook of its partner subscribed to its type (for the
computed ones: per webhook whose parameters it meets), in the same transaction. :class:`WebhookDispatcher`
sends them: any number of processes may run it, each claiming due deliveries with one conditional
``UPDATE ... RETURNING`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so a delivery is sent by one sender at a
time; a claim expires after twice the timeout (a sender that died), and a sender records its result only
under its own claim. The body is the stored one, byte for byte (``{"type", "timestamp", "data"}``), the
``webhook-id`` the event's id, ``webhook-timestamp`` the time of sending and ``webhook-signature`` the
HMAC-SHA256 ``v1,`` signatures of ``standardwebhooks`` (two during a secret rotation's grace period). A 2xx
answer ends it; anything else (another status, a timeout, a refused connection) is retried after
``settings.webhook_retry_schedule_s`` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: a little over 24 hours),
then given up (``failed``). Every attempt is logged on the delivery (time, status code or error, duration);
a replay is a new delivery of the same event (the same ``webhook-id``).

**Secrets** (``whsec_`` and 32 random bytes in base64, the format ``standardwebhooks`` reads) are shown once,
when a webhook is created or its secret rotated. A signing secret must be usable, so it cannot be kept as a
digest: it is sealed with AES-256-GCM (the webhook's id as associated data) under a key that is not in the
database (:func:`secret_box`): ``LOYALTY_WEBHOOK_SECRETS_KEY``, else a key derived from the custody seed in
the keystore (the service's one backed-up secret) when a keystore password is configured, else, in dev
mode only, a public dev key. No secret is ever logged; logs name webhooks by id, never by URL (a URL may
carry a partner's token).

Errors (:class:`api._errors.ApiError`)::

    WebhookError              webhooks cannot do what was asked (a configuration error: 500)
    └── WebhookKeyUnavailable the key that seals secrets is missing or malformed
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_utils.address import to_checksum_address
from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as StandardWebhook

from indexer import MirrorView, Tier
from indexer._schema import AccountEpoch

from ._errors import ApiError
from ._redemptions import available_rewards
from ._settings import Settings
from ._tables import (
    Member,
    Membership,
    Operation,
    Reward,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookTier,
)

__all__ = [
    "DEV_SECRETS_KEY",
    "EVENT_TYPES",
    "MEMBER_EVENTS",
    "OPERATION_EVENTS",
    "SECRET_PREFIX",
    "DispatchConfig",
    "DispatchReport",
    "Event",
    "EventType",
    "SecretBox",
    "WebhookDispatcher",
    "WebhookError",
    "WebhookKeyUnavailable",
    "cancel_pending",
    "event_id",
    "new_secret",
    "notify_members",
    "operation_events",
    "released_events",
    "replay_delivery",
    "secret_box",
    "subscribed_types",
]

logger = logging.getLogger(__name__)

EventType = Literal[
    "points.issued",
    "points.pending_released",
    "points.redeemed",
    "points.reversed",
    "points.expiring",
    "tier.changed",
    "reward.within_reach",
    "operation.failed",
]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)
#: Emitted by the batcher, as operations change state.
OPERATION_EVENTS: Final = frozenset(
    {"points.issued", "points.pending_released", "points.redeemed", "points.reversed", "operation.failed"}
)
#: Computed by the scheduled job from the mirror and the catalogue.
MEMBER_EVENTS: Final = frozenset({"points.expiring", "reward.within_reach", "tier.changed"})
#: The event a confirmed operation of each kind is (refunds and consent revocations are none of these).
_CONFIRMED: Final[dict[str, str]] = {
    "purchase": "points.issued",
    "engagement": "points.issued",
    "adjustment": "points.issued",
    "redemption": "points.redeemed",
    "return": "points.reversed",
}

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
#: The key that seals secrets in dev mode without a keystore password or a configured key: public (its
#: derivation is here), so production refuses it, as it refuses anvil's dev accounts.
DEV_SECRETS_KEY: Final = hashlib.sha256(b"loyalty public dev key: webhook secrets").digest()
USER_AGENT: Final = "loyalty-webhooks/1"
#: Rows per multi-row INSERT, and ids per ``IN`` list.
_INSERT_CHUNK: Final = 500
_DAY: Final = 24 * 3600


class WebhookError(ApiError):
    """Webhooks cannot do what was asked: a configuration error, never the client's (500)."""


class WebhookKeyUnavailable(WebhookError):
    """The key that seals webhook secrets is missing (production without one) or malformed."""


# --------------------------------------------------------------------------- secrets at rest


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks format: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class SecretBox:
    """Seals and opens signing secrets (AES-256-GCM, a random 96-bit nonce, the webhook id as associated
    data: a sealed secret moved to another webhook's row does not open). Shows no key material."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise WebhookKeyUnavailable("the key that seals webhook secrets is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, webhook_id: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, secret.encode(), _aad(webhook_id))

    def open(self, webhook_id: str, sealed: bytes) -> str:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], _aad(webhook_id)).decode()
        except InvalidTag:
            raise WebhookKeyUnavailable(
                f"the secret of webhook {webhook_id} does not open under this service's key (was the key "
                "that seals webhook secrets changed?)"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key>)"

    def __reduce__(self) -> Any:
        raise TypeError("a SecretBox holds a key and is neither picklable nor copyable")


def _aad(webhook_id: str) -> bytes:
    return b"loyalty webhook secret\0" + webhook_id.encode()


_BOXES: dict[bytes, SecretBox] = {}
_BOXES_LOCK = threading.Lock()


def secret_box(settings: Settings) -> SecretBox:
    """The box of this deployment's webhook secrets (see the module docstring for where its key comes from),
    made once per process and key source."""
    password_given = settings.keystore_password is not None or settings.keystore_password_file is not None
    explicit = settings.webhook_secrets_key
    source = hashlib.sha256(
        repr(
            (
                settings.mode,
                None if explicit is None else explicit.get_secret_value(),
                str(settings.keystore_dir) if password_given else None,
            )
        ).encode()
    ).digest()
    with _BOXES_LOCK:
        box = _BOXES.get(source)
        if box is None:
            box = _BOXES[source] = SecretBox(_secrets_key(settings, password_given))
        return box


def _secrets_key(settings: Settings, password_given: bool) -> bytes:
    explicit = settings.webhook_secrets_key
    if explicit is not None:
        text = explicit.get_secret_value().strip()
        try:
            key = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            key = b""
        if len(key) != 32:
            raise WebhookKeyUnavailable("LOYALTY_WEBHOOK_SECRETS_KEY must be 64 hex digits (32 bytes)")
        return key
    if password_given:
        return hmac.digest(_custody_seed(settings), b"loyalty webhook secrets\0", "sha256")
    if settings.mode == "production":
        raise WebhookKeyUnavailable(
            "production mode needs a key to seal webhook secrets: set LOYALTY_WEBHOOK_SECRETS_KEY, or a "
            "keystore password (the key is then derived from the custody seed)"
        )
    logger.warning("webhook secrets are sealed under the public dev key (no keystore password): dev only")
    return DEV_SECRETS_KEY


def _custody_seed(settings: Settings) -> bytes:
    """The custody seed, the one key of ``<keystore_dir>/custody`` (made by the service's first start)."""
    from chain._signer import Keystore

    from ._chain_setup import keystore_password
    from ._serve import CUSTODY_KEYSTORE

    keystore = Keystore(settings.keystore_dir / CUSTODY_KEYSTORE, scrypt_n=settings.keystore_scrypt_n)
    addresses = keystore.addresses()
    if len(addresses) != 1:
        raise WebhookKeyUnavailable(
            f"{keystore.directory} holds {len(addresses)} keys, not the one custody seed that webhook "
            "secrets are sealed under: start the service once (it creates the seed), or set "
            "LOYALTY_WEBHOOK_SECRETS_KEY"
        )
    # as api._custody reads it: the one keystore entry read as bytes rather than used to sign
    return bytes(keystore.load(addresses[0], keystore_password(settings))._key.secret)


# --------------------------------------------------------------------------- events


def event_id(partner_id: int, type_: str, source: str) -> str:
    """The stable id of the event ``type_`` of ``partner_id`` caused by ``source`` (an operation and the
    state it reached, a member and an epoch, ...): the same source is the same event."""
    digest = hashlib.sha256(f"{partner_id}\0{type_}\0{source}".encode()).hexdigest()
    return "evt_" + digest[:32]


def _iso(at: int) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Event:
    partner_id: int
    type: str
    #: what caused it (see :func:`event_id`)
    source: str
    data: dict[str, Any]
    #: when it happened (Unix seconds): the body's ``timestamp``
    at: int

    @property
    def id(self) -> str:
        return event_id(self.partner_id, self.type, self.source)

    def body(self) -> str:
        """The body every delivery sends (Standard Webhooks' payload structure)."""
        return json.dumps(
            {"type": self.type, "timestamp": _iso(self.at), "data": self.data},
            separators=(",", ":"),
            ensure_ascii=False,
        )


_SUBSCRIPTIONS = "webhook subscriptions"


def _subscriptions(session: Session, partner_id: int) -> list[Webhook]:
    """The partner's live webhooks, read once per session (the batcher's sessions are one transaction)."""
    cache: dict[int, list[Webhook]] = session.info.setdefault(_SUBSCRIPTIONS, {})
    found = cache.get(partner_id)
    if found is None:
        found = cache[partner_id] = list(
            session.scalars(
                select(Webhook)
                .where(Webhook.partner_id == partner_id, Webhook.deleted_at.is_(None))
                .order_by(Webhook.created_at, Webhook.id)
            )
        )
    return found


def _types(webhook: Webhook) -> list[str]:
    types: list[str] = json.loads(webhook.events)
    return types


def subscribed_types(session: Session, partner_id: int) -> set[str]:
    """The event types some live webhook of the partner subscribes to."""
    return {t for w in _subscriptions(session, partner_id) for t in _types(w)}


def _insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): what exists already stays as it is."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - the service runs on these two
        raise WebhookError(f"webhooks need SQLite or PostgreSQL, not {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for start in range(0, len(rows), _INSERT_CHUNK):  # within SQLite's limit of bound parameters
        session.execute(insert(table).values(rows[start : start + _INSERT_CHUNK]).on_conflict_do_nothing())


def _store(session: Session, events: Sequence[Event], targets: Mapping[str, Iterable[str]], now: int) -> int:
    """Stores ``events`` (once each, by id) and a first delivery of each to the webhooks ``targets`` names
    for it (once per webhook and event); returns how many events were given."""
    if not events:
        return 0
    unique = {e.id: e for e in events}
    _insert_ignoring_duplicates(
        session,
        WebhookEvent.__table__,
        [
            {"id": i, "partner_id": e.partner_id, "type": e.type, "payload": e.body(), "created_at": e.at}
            for i, e in unique.items()
        ],
    )
    deliveries = [
        {
            "webhook_id": webhook_id,
            "event_id": i,
            "replay": 0,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "log": "[]",
            "created_at": now,
        }
        for i in unique
        for webhook_id in dict.fromkeys(targets.get(i, ()))
    ]
    _insert_ignoring_duplicates(session, WebhookDelivery.__table__, deliveries)
    return len(unique)


def _emit(session: Session, events: Sequence[Event], now: int) -> int:
    """Stores the events that some webhook of their partner subscribes to, with a delivery to each."""
    targets: dict[str, list[str]] = {}
    kept = []
    for event in events:
        hooks = [w.id for w in _subscriptions(session, event.partner_id) if event.type in _types(w)]
        if hooks:
            targets[event.id] = hooks
            kept.append(event)
    return _store(session, kept, targets, now)


def _customer_ids(
    session: Session, partner_id: int, member_ids: Iterable[str | None]
) -> dict[str, str | None]:
    wanted = {m for m in member_ids if m is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(Membership.member_id, Membership.customer_id).where(
            Membership.partner_id == partner_id, Membership.member_id.in_(wanted)
        )
    )
    return {member_id: customer_id for member_id, customer_id in rows}


def _operation_data(op: Operation, customer_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "partner_id": op.partner_id,
        "operation_id": f"op_{op.id}",
        "kind": op.kind,
        "natural_key": op.natural_key,
        "member_id": op.member_id,
        "customer_id": customer_id,
        "address": to_checksum_address(op.member_address),
        "points": op.points,
        "reason": op.reason,
        "parent_operation_id": None if op.parent_id is None else f"op_{op.parent_id}",
    }
    if op.state == "confirmed":
        data |= {
            "tx_hash": None if op.tx_hash is None else "0x" + bytes(op.tx_hash).hex(),
            "block_number": op.block_number,
            "seq": op.seq,
        }
    elif op.state == "failed":
        data["failure"] = {"reason": op.failure, "detail": op.failure_detail}
    else:
        data["release_at"] = op.release_at
    return data


def _operation_event(op: Operation, type_: str, customer_id: str | None, now: int) -> Event:
    # the operation and the state it reached: a second confirmation (a crash, a re-sent batch) is the same
    return Event(op.partner_id, type_, f"op_{op.id}:{op.state}", _operation_data(op, customer_id), now)


def operation_events(session: Session, ops: Sequence[Operation], *, now: int) -> int:
    """Emits what ``ops`` became in ``session``'s transaction (the batcher calls it as it confirms or fails
    them): ``points.issued`` / ``points.redeemed`` / ``points.reversed`` for confirmed ones,
    ``operation.failed`` for failed ones. Stores nothing when no webhook of the partner subscribes."""
    by_partner: dict[int, list[tuple[Operation, str]]] = {}
    for op in ops:
        type_ = "operation.failed" if op.state == "failed" else _CONFIRMED.get(op.kind)
        if op.state not in ("confirmed", "failed") or type_ is None:
            continue
        by_partner.setdefault(op.partner_id, []).append((op, type_))
    stored = 0
    for partner_id, items in by_partner.items():
        wanted = subscribed_types(session, partner_id)
        items = [(op, t) for op, t in items if t in wanted]
        if not items:
            continue
        customers = _customer_ids(session, partner_id, (op.member_id for op, _ in items))
        stored += _emit(
            session,
            [_operation_event(op, t, customers.get(op.member_id or ""), now) for op, t in items],
            now,
        )
    return stored


def released_events(session: Session, partner_id: int, op_ids: Sequence[int], *, now: int) -> int:
    """Emits ``points.pending_released`` for the partner's operations ``op_ids`` whose return window has just
    closed (the batcher calls it in the transaction that releases them)."""
    if not op_ids or "points.pending_released" not in subscribed_types(session, partner_id):
        return 0
    ops = [
        op
        for start in range(0, len(op_ids), _INSERT_CHUNK)
        for op in session.scalars(
            select(Operation)
            .where(Operation.id.in_(op_ids[start : start + _INSERT_CHUNK]))
            .order_by(Operation.id)
        )
    ]
    customers = _customer_ids(session, partner_id, (op.member_id for op in ops))
    return _emit(
        session,
        [
            Event(
                partner_id,
                "points.pending_released",
                f"op_{op.id}:released",
                _operation_data(op, customers.get(op.member_id or "")),
                now,
            )
            for op in ops
        ],
        now,
    )


# --------------------------------------------------------------------------- the scheduled notifications


@dataclass(frozen=True, slots=True)
class _Member:
    member_id: str
    customer_id: str | None
    address: str
    enrolled_at: int

    def data(self, partner_id: int) -> dict[str, Any]:
        return {
            "partner_id": partner_id,
            "member_id": self.member_id,
            "customer_id": self.customer_id,
            "address": to_checksum_address(self.address),
        }


def notify_members(engine: Engine, contract: str, *, now: int, lowest_tier: str) -> dict[str, int]:
    """The scheduled notifications (``points.expiring``, ``reward.within_reach``, ``tier.changed``) of every
    partner with a webhook subscribed to one of them, read from the mirror at ``now``; one transaction per
    partner. Returns how many events of each type were emitted (including ones already known)."""
    with Session(engine) as db:
        partners = sorted(
            {
                w.partner_id
                for w in db.scalars(select(Webhook).where(Webhook.deleted_at.is_(None)))
                if MEMBER_EVENTS & set(_types(w))
            }
        )
    counts = dict.fromkeys(sorted(MEMBER_EVENTS), 0)
    for partner_id in partners:
        with Session(engine) as db, db.begin():
            view = MirrorView(db.connection(), contract)
            for type_, n in _notify_partner(db, view, partner_id, now=now, lowest_tier=lowest_tier).items():
                counts[type_] += n
    return counts


def _notify_partner(
    db: Session, view: MirrorView, partner_id: int, *, now: int, lowest_tier: str
) -> dict[str, int]:
    hooks = _subscriptions(db, partner_id)
    members = {
        m.member_id: _Member(m.member_id, m.customer_id, m.address, m.enrolled_at)
        for m in db.execute(
            select(Membership.member_id, Membership.customer_id, Membership.enrolled_at, Member.address)
            .join(Member, Member.id == Membership.member_id)
            .where(Membership.partner_id == partner_id, Member.erased_at.is_(None))
            .order_by(Membership.member_id)
        )
    }
    events: list[Event] = []
    targets: dict[str, list[str]] = {}

    def add(event: Event, webhook_id: str) -> None:
        if event.id not in targets:
            events.append(event)
        targets.setdefault(event.id, []).append(webhook_id)

    # live points per member and epoch (one query for all the partner's members)
    paused = view.paused_duration(at=now)
    low, high = view.params.first_live_epoch(now, paused), view.params.epoch_at(now, paused)
    holdings: dict[str, list[tuple[int, int, int]]] = {}
    for member_id, epoch, held in db.execute(
        select(Membership.member_id, AccountEpoch.epoch, AccountEpoch.held)
        .join(Member, Member.id == Membership.member_id)
        .join(AccountEpoch, AccountEpoch.account == Member.address)
        .where(
            Membership.partner_id == partner_id,
            Member.erased_at.is_(None),
            AccountEpoch.held > 0,
            AccountEpoch.epoch >= low,
            AccountEpoch.epoch <= high,
        )
        .order_by(Membership.member_id, AccountEpoch.epoch)
    ):
        holdings.setdefault(member_id, []).append(
            (int(epoch), int(held), view.params.expires_at(int(epoch), paused))
        )

    for hook in hooks:
        types = set(_types(hook))
        if "points.expiring" in types:
            horizon = now + hook.expiring_within_days * _DAY
            for member_id, held in holdings.items():
                member = members[member_id]
                balance = sum(points for _, points, _ in held)
                for epoch, points, expires_at in held:
                    if expires_at <= horizon:
                        data = member.data(partner_id) | {
                            "epoch": epoch,
                            "points": points,
                            "expires_at": expires_at,
                            "balance": balance,
                        }
                        add(Event(partner_id, "points.expiring", f"{member_id}:{epoch}", data, now), hook.id)
        if "reward.within_reach" in types:
            rewards = list(
                db.execute(
                    select(Reward.id, Reward.name, Reward.points_price)
                    .where(Reward.partner_id == partner_id, available_rewards(now))
                    .order_by(Reward.points_price, Reward.id)
                )
            )
            for member_id, held in holdings.items():
                balance = sum(points for _, points, _ in held)
                cheapest = next((r for r in rewards if r.points_price > balance), None)
                if cheapest is None or cheapest.points_price - balance > hook.reward_within_points:
                    continue
                data = members[member_id].data(partner_id) | {
                    "reward_id": cheapest.id,
                    "reward_name": cheapest.name,
                    "points_price": cheapest.points_price,
                    "balance": balance,
                    "points_away": cheapest.points_price - balance,
                }
                source = f"{member_id}:{cheapest.id}"
                add(Event(partner_id, "reward.within_reach", source, data, now), hook.id)

    tier_hooks = [h for h in hooks if "tier.changed" in _types(h)]
    if tier_hooks:
        for event in _tier_changes(db, partner_id, members, tier_hooks, now=now, lowest=lowest_tier):
            for hook in tier_hooks:
                add(event, hook.id)

    _store(db, events, targets, now)
    counts = dict.fromkeys(sorted(MEMBER_EVENTS), 0)
    for event in events:
        counts[event.type] += 1
    return counts


def _tier_changes(
    db: Session,
    partner_id: int,
    members: Mapping[str, _Member],
    hooks: Sequence[Webhook],
    *,
    now: int,
    lowest: str,
) -> list[Event]:
    """Members whose tier in the mirror is not the one last notified: one event per change, the notice
    updated. A member first seen is compared with the lowest tier when enrolled after the partner's first
    subscription to ``tier.changed``, else only recorded (a new subscription does not replay history)."""
    since = min(h.created_at for h in hooks)
    tiers = {
        account: (tier, int(points))
        for account, tier, points in db.execute(
            select(Tier.account, Tier.tier, Tier.qualifying_points)
            .join(Member, Member.address == Tier.account)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.partner_id == partner_id)
        )
    }
    notices = {
        n.member_id: n for n in db.scalars(select(WebhookTier).where(WebhookTier.partner_id == partner_id))
    }
    events = []
    for member_id, member in members.items():
        tier, points = tiers.get(member.address, (lowest, 0))
        notice = notices.get(member_id)
        if notice is None:
            baseline = tier if member.enrolled_at <= since else lowest
            notice = WebhookTier(
                partner_id=partner_id, member_id=member_id, tier=baseline, changes=0, updated_at=now
            )
            db.add(notice)
        if notice.tier == tier:
            continue
        data = member.data(partner_id) | {
            "previous_tier": notice.tier,
            "tier": tier,
            "qualifying_points": points,
        }
        notice.tier, notice.changes, notice.updated_at = tier, notice.changes + 1, now
        events.append(Event(partner_id, "tier.changed", f"{member_id}:{notice.changes}", data, now))
    db.flush()
    return events


# --------------------------------------------------------------------------- deliveries


def replay_delivery(session: Session, delivery: WebhookDelivery, *, now: int) -> WebhookDelivery:
    """A new delivery of ``delivery``'s event to its webhook (the same event id), due now."""
    last = session.scalar(
        select(func.max(WebhookDelivery.replay)).where(
            WebhookDelivery.webhook_id == delivery.webhook_id, WebhookDelivery.event_id == delivery.event_id
        )
    )
    again = WebhookDelivery(
        webhook_id=delivery.webhook_id,
        event_id=delivery.event_id,
        replay=int(last or 0) + 1,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        log="[]",
        created_at=now,
    )
    session.add(again)
    session.flush()
    return again


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    #: seconds an endpoint has to answer
    timeout_s: float = 10.0
    #: seconds before each retry; after the last retry fails, the delivery is given up
    retry_schedule_s: tuple[int, ...] = Settings.model_fields["webhook_retry_schedule_s"].default
    #: deliveries claimed per round, and sent at once
    batch: int = 100
    concurrency: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            retry_schedule_s=settings.webhook_retry_schedule_s,
            concurrency=settings.webhook_concurrency,
        )

    @property
    def claim_s(self) -> int:
        """How long a claim holds: a sender silent for longer is taken to have died."""
        return int(2 * self.timeout_s) + 30


@dataclass(frozen=True, slots=True)
class DispatchReport:
    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    #: deliveries that could not be attempted (logged; retried once their claim expires)
    errors: int = 0


#: A delivery's state after an attempt.
_Ended = Literal["pending", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: Literal["succeeded", "retrying", "failed", "cancelled", "error"]


class WebhookDispatcher:
    """Sends due deliveries: :meth:`run_once` claims up to ``config.batch`` of them and sends them (several at
    once), recording each attempt. Any number of dispatchers may run against one database.

    ``clock`` decides what is due and when to retry (a test moves it); the ``webhook-timestamp`` header is
    ``signing_clock``'s time, the real time of sending, which receivers check against their own clock."""

    def __init__(
        self,
        engine: Engine,
        client: httpx.Client,
        clock: Callable[[], float] = time.time,
        *,
        settings: Settings | None = None,
        box: SecretBox | None = None,
        config: DispatchConfig | None = None,
        signing_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.client = client
        self.clock = clock
        self.signing_clock = signing_clock
        self.settings = settings
        self.config = config or (DispatchConfig.from_settings(settings) if settings else DispatchConfig())
        self._box = box

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = secret_box(self.settings or Settings())
        return self._box

    def run_once(self) -> DispatchReport:
        token = secrets.token_hex(16)
        claimed = self._claim(token)
        if not claimed:
            return DispatchReport()
        try:
            self.box  # noqa: B018 - the key, before anything is sent (a configuration error stops here)
        except WebhookError:
            self._release(claimed, token)
            raise
        if len(claimed) == 1 or self.config.concurrency == 1:
            outcomes = [self._deliver(delivery_id, token) for delivery_id in claimed]
        else:
            with ThreadPoolExecutor(min(self.config.concurrency, len(claimed))) as pool:
                outcomes = list(pool.map(lambda d: self._deliver(d, token), claimed))
        return DispatchReport(
            claimed=len(claimed),
            succeeded=sum(o.outcome == "succeeded" for o in outcomes),
            retrying=sum(o.outcome == "retrying" for o in outcomes),
            failed=sum(o.outcome == "failed" for o in outcomes),
            cancelled=sum(o.outcome == "cancelled" for o in outcomes),
            errors=sum(o.outcome == "error" for o in outcomes),
        )

    def drain(self, *, rounds: int = 100) -> DispatchReport:
        """Runs rounds until nothing is due at the clock's time (tests, ``--once``)."""
        total = DispatchReport()
        for _ in range(rounds):
            report = self.run_once()
            if report.claimed == 0:
                return total
            total = DispatchReport(*(a + b for a, b in zip(_fields(total), _fields(report), strict=True)))
        return total

    # ------------------------------------------------------------------ claims

    def _claim(self, token: str) -> list[int]:
        now = int(self.clock())
        due = or_(
            and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now),
            and_(WebhookDelivery.state == "sending", WebhookDelivery.claimed_until < now),
        )
        candidates = (
            select(WebhookDelivery.id)
            .where(due)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(self.config.batch)
            .with_for_update(skip_locked=True)  # PostgreSQL: concurrent claimers pass each other by
        )
        claim = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(candidates.scalar_subquery()), due)
            .values(state="sending", claim=token, claimed_until=now + self.config.claim_s)
            .returning(WebhookDelivery.id)
        )
        with self.engine.begin() as conn:
            return sorted(conn.execute(claim).scalars())

    def _release(self, claimed: Sequence[int], token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(claimed), WebhookDelivery.claim == token)
                .values(state="pending", claim=None, claimed_until=None)
            )

    # ------------------------------------------------------------------ one delivery

    def _deliver(self, delivery_id: int, token: str) -> _Attempt:
        try:
            return self._attempt(delivery_id, token)
        except Exception:  # its claim expires and a later round tries again; the others go on
            logger.exception("webhook delivery %s could not be attempted", delivery_id)
            return _Attempt("error")

    def _attempt(self, delivery_id: int, token: str) -> _Attempt:
        with Session(self.engine) as db:
            row = db.execute(
                select(WebhookDelivery, WebhookEvent, Webhook)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id == delivery_id)
            ).one()
            delivery, event, hook = row._tuple()
            db.expunge_all()
        if hook.deleted_at is not None:
            self._finish(delivery, token, state="cancelled", status=None, error="webhook-deleted", took=0)
            return _Attempt("cancelled")
        now = int(self.clock())
        keys = [self.box.open(hook.id, bytes(hook.secret))]
        if hook.previous_secret is not None and (hook.previous_secret_until or 0) > now:
            keys.append(self.box.open(hook.id, bytes(hook.previous_secret)))
        body = event.payload.encode()
        sent_at = dt.datetime.fromtimestamp(int(self.signing_clock()), dt.UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": " ".join(StandardWebhook(k).sign(event.id, sent_at, body) for k in keys),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            with self.client.stream(
                "POST", hook.url, content=body, headers=headers, timeout=self.config.timeout_s
            ) as response:
                status = response.status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.InvalidURL:
            error = "invalid-url"
        except httpx.TransportError as exc:  # refused, reset, TLS, DNS: the endpoint is not reachable
            error = type(exc).__name__
        took = int((time.monotonic() - started) * 1000)
        state: _Ended
        if status is not None and 200 <= status < 300:
            state = "succeeded"
        else:
            error = error or f"http-{status}"
            state = "failed" if delivery.attempts + 1 > len(self.config.retry_schedule_s) else "pending"
        outcome = self._finish(delivery, token, state=state, status=status, error=error, took=took)
        logger.info(
            "webhook %s delivery %s (%s, attempt %d): %s",
            hook.id,
            delivery.id,
            event.type,
            delivery.attempts + 1,
            status if status is not None else error,
        )
        return outcome

    def _finish(
        self,
        delivery: WebhookDelivery,
        token: str,
        *,
        state: _Ended,
        status: int | None,
        error: str | None,
        took: int,
    ) -> _Attempt:
        now = int(self.clock())
        attempts = delivery.attempts + (0 if state == "cancelled" else 1)
        log: list[dict[str, Any]] = json.loads(delivery.log)
        if state != "cancelled":
            log.append({"at": now, "status": status, "error": error, "duration_ms": took})
        retry = state == "pending"
        values: dict[str, Any] = {
            "state": state,
            "attempts": attempts,
            "claim": None,
            "claimed_until": None,
            "log": json.dumps(log, separators=(",", ":")),
            "next_attempt_at": now + self.config.retry_schedule_s[attempts - 1] if retry else None,
            "finished_at": None if retry else now,
        }
        if state != "cancelled":
            values |= {"last_status": status, "last_error": error}
        with self.engine.begin() as conn:
            done = conn.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id, WebhookDelivery.claim == token)
                .values(**values)
            ).rowcount
        if not done:  # the claim expired and another sender took it over: its record stands
            logger.warning("webhook delivery %s: claim lost before its result was recorded", delivery.id)
        return _Attempt("retrying" if state == "pending" else state)


def _fields(report: DispatchReport) -> tuple[int, ...]:
    return (report.claimed, report.succeeded, report.retrying, report.failed, report.cancelled, report.errors)


def cancel_pending(session: Session, webhook_id: str, *, now: int) -> int:
    """Cancels the webhook's deliveries not yet sent (it was deleted); returns how many."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.state == "pending")
        .values(state="cancelled", next_attempt_at=None, finished_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
