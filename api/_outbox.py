"""The durable outbox: every write a partner (or a member) asks for is an :class:`~api._tables.Operation`
committed here before anything is sent to the chain; the batcher (``api/_batcher.py``) sends them.

States (``Operation.state``)::

    pending    accepted, waiting for its release time (a purchase's points pending until the return
               window closes); a return while pending cancels its points here, nothing goes on chain
    accepted   due: the batcher will send it
    submitted  in a transaction that was broadcast (``tx_hash``)
    confirmed  mined: ``block_number`` and ``seq`` (the ledger entry) are set
    failed     the chain refused it: ``failure`` is a typed reason (see :data:`FAILURES`)
    cancelled  never to be sent (a full return of a pending purchase, a revoked consent)

Two guards make a write happen at most once: the ``Idempotency-Key`` (``api/_idempotency.py``) and the
natural key ``(partner, kind, natural_key)`` — an order earns once, a return id is used once, an engagement
once per its key — which the database enforces (a unique constraint) and which also fixes the reference
written on chain: ``HMAC-SHA256(partner key, "kind:natural key")``, so a re-sent transaction is refused by
the ledger's own reference check, and nobody can guess an order or a customer from the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ._tables import Operation, OrderRefKey

__all__ = [
    "EARNING_KINDS",
    "FAILURES",
    "ISSUING_KINDS",
    "OperationDraft",
    "OperationKind",
    "enqueue",
    "find_operation",
    "order_ref",
    "order_ref_key",
]

OperationKind = Literal[
    "purchase", "return", "engagement", "adjustment", "redemption", "refund", "revocation"
]

#: Kinds whose points are issued (``issueBatch``); a negative adjustment is not issued (it is refused).
ISSUING_KINDS: Final = frozenset({"purchase", "engagement", "adjustment"})
#: Kinds that count towards a member's earning caps.
EARNING_KINDS: Final = frozenset({"purchase", "engagement"})

#: Typed failure reasons, by the ledger error that causes each (the others: ``rejected``).
FAILURES: Final[dict[str, str]] = {
    "LedgerAllowanceExceeded": "allowance-exhausted",
    "LedgerPartnerSuspended": "partner-suspended",
    "LedgerPartnerOffboarded": "partner-offboarded",
    "LedgerUnknownPartner": "partner-unknown",
    "LedgerRotatedOperator": "operator-rotated",
    "LedgerPartnerCannotIssue": "partner-cannot-issue",
    "LedgerPartnerCannotAccept": "partner-cannot-accept",
    "EnforcedPause": "ledger-paused",
    "LedgerInvalidSigner": "consent-invalid",
    "ECDSAInvalidSignature": "consent-invalid",
    "ECDSAInvalidSignatureLength": "consent-invalid",
    "ECDSAInvalidSignatureS": "consent-invalid",
    "InvalidAccountNonce": "consent-invalid",
    "LedgerExpiredSignature": "consent-expired",
    "LedgerInsufficientBalance": "insufficient-points",
    "ERC20InsufficientBalance": "insufficient-points",
    "LedgerReversalWindowClosed": "return-window-closed",
    "LedgerReversalExceedsIssuance": "return-exceeds-issuance",
    "LedgerRefundExceedsRedemption": "refund-exceeds-redemption",
    "LedgerAmountTooLarge": "amount-too-large",
}


@dataclass(frozen=True, slots=True)
class OperationDraft:
    """What a route hands the outbox: one write, not yet stored."""

    partner_id: int
    kind: OperationKind
    natural_key: str
    member_address: str
    points: int
    reason: int
    request: dict[str, Any]
    member_id: str | None = None
    rule_hash: bytes | None = None
    detail: dict[str, Any] | None = None
    parent_id: int | None = None
    created_by: str | None = None
    #: when it becomes due; None: at once (state ``accepted``)
    release_at: int | None = None
    #: the on-chain reference; None: the HMAC of ``kind:natural_key`` under the partner's key
    ref: bytes | None = None


#: Reference keys already read, by (database, partner): a key, once made, never changes.
_KEYS: dict[tuple[str, int], bytes] = {}


def order_ref_key(session: Session, partner_id: int, *, now: int) -> bytes:
    """The partner's reference key, made on first use (a concurrent first use keeps the first one)."""
    where = (str(session.get_bind().engine.url), partner_id)
    known = _KEYS.get(where)
    if known is not None:
        return known
    key = session.scalar(select(OrderRefKey.key).where(OrderRefKey.partner_id == partner_id))
    if key is not None:
        _KEYS[where] = bytes(key)
        return bytes(key)
    try:
        with session.begin_nested():
            session.add(OrderRefKey(partner_id=partner_id, key=secrets.token_bytes(32), created_at=now))
    except IntegrityError:
        pass
    key = session.scalar(select(OrderRefKey.key).where(OrderRefKey.partner_id == partner_id))
    assert key is not None
    return bytes(key)


def order_ref(key: bytes, kind: str, natural_key: str) -> bytes:
    """The reference written on chain for a partner's ``kind`` ``natural_key`` (e.g. an order id)."""
    return hmac.new(key, f"{kind}:{natural_key}".encode(), hashlib.sha256).digest()


#: An operation by its natural key (prebuilt: every write asks).
_BY_NATURAL_KEY = select(Operation).where(
    Operation.partner_id == bindparam("partner"),
    Operation.kind == bindparam("kind"),
    Operation.natural_key == bindparam("key"),
)


def find_operation(session: Session, partner_id: int, kind: str, natural_key: str) -> Operation | None:
    return session.scalars(
        _BY_NATURAL_KEY, {"partner": partner_id, "kind": kind, "key": natural_key}
    ).one_or_none()


def enqueue(
    session: Session, draft: OperationDraft, *, now: int, looked: bool = False
) -> tuple[Operation, bool]:
    """Stores ``draft`` (flushed, committed with the caller's session) and returns it with ``True``; when the
    partner already has an operation of that kind and natural key, returns that one with ``False`` and
    stores nothing (also when a concurrent request stored it first). ``looked``: the caller has just
    looked for it in this transaction; then a concurrent request that stored it first makes the flush
    raise ``IntegrityError`` (the unique constraint) instead, which the caller answers with a 409."""
    existing = None if looked else find_operation(session, draft.partner_id, draft.kind, draft.natural_key)
    if existing is not None:
        return existing, False
    ref = draft.ref
    if ref is None:
        ref = order_ref(order_ref_key(session, draft.partner_id, now=now), draft.kind, draft.natural_key)
    due = draft.release_at is None or draft.release_at <= now
    operation = Operation(
        partner_id=draft.partner_id,
        kind=draft.kind,
        natural_key=draft.natural_key,
        state="accepted" if due else "pending",
        member_id=draft.member_id,
        member_address=draft.member_address.lower(),
        points=draft.points,
        original_points=draft.points,
        reason=draft.reason,
        rule_hash=draft.rule_hash,
        ref=ref,
        parent_id=draft.parent_id,
        request=json.dumps(draft.request, sort_keys=True, separators=(",", ":")),
        detail=None
        if draft.detail is None
        else json.dumps(draft.detail, sort_keys=True, separators=(",", ":")),
        created_by=draft.created_by,
        created_at=now,
        updated_at=now,
        release_at=now if draft.release_at is None else draft.release_at,
    )
    if looked:  # no savepoint: a concurrent twin's IntegrityError ends the caller's transaction
        session.add(operation)
        session.flush()
        return operation, True
    try:
        with session.begin_nested():
            session.add(operation)
    except IntegrityError:
        existing = find_operation(session, draft.partner_id, draft.kind, draft.natural_key)
        if existing is None:
            raise
        return existing, False
    return operation, True
