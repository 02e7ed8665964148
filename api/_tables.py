"""The service's own tables (beside the mirror's, in the same database): who may call, who the members are.

Created and changed only by the ``service`` branch of the Alembic history (``api/migrations/versions``),
which lives in the same Alembic environment as the mirror's ``mirror`` branch: ``loyalty migrate`` (or
``alembic upgrade heads``) applies both; the mirror's history stays the indexer's alone. Nothing here
references the mirror's tables: the mirror is rebuilt from the chain, these rows are the service's record.

::

    api_keys          admin, partner (one partner) and auditor keys: the SHA-256 of the secret (a 256-bit
                      random token needs no slow hash), when created, last used, revoked; a rotation links
                      the new key to the one it replaced
    partner_profiles  what the directory says about a partner beyond the chain: name, where points can be
                      spent
    prices            the commercial prices per partner, effective-dated and append-only (an audit trail):
                      what it pays per point issued, what it is reimbursed per point redeemed
    members           the coalition's directory: one row per wallet (custodial: its BIP-32 index; self
                      custody: the address the member brought); no personal data
    memberships       a member as one partner knows it: the partner's customer id and the personal data it
                      gave (email, phone, birthday), for its own use; erasable
    link_codes        one-time codes a member creates in their own session so a partner may link them
    enrolment_links   one-time links a partner hands its custodial member to register a passkey
    passkeys          members' WebAuthn credentials (public key, sign count)
    sessions          member sessions: short-lived, revocable, stored hashed
    challenges        single-use, expiring SIWE nonces and WebAuthn challenges

The write path (earning, returns, redemptions):

    rule_sets         every earning rule set ever created, by its rule hash (keccak-256 of its canonical
                      encoding, which is stored verbatim): immutable, so any issuance can be recomputed
    rule_activations  which rule set a partner applies from when (append-only; the latest one is active)
    order_ref_keys    each partner's HMAC key that turns an order id into the reference written on chain
    operations        the durable outbox: every accepted purchase, return, engagement, adjustment, redemption
                      and refund, committed before anything is sent, with its state (pending, accepted,
                      submitted, confirmed, failed, cancelled), inputs, computed points and chain facts
    batches           the composition of each issuance batch, stored before it is broadcast, so a crash after
                      sending re-sends the very same batch (whose on-chain reference makes it a no-op)
    idempotency_keys  Idempotency-Key records: the request's digest and the stored response (kept >= 24 h)
    rewards           each partner's rewards catalogue (points price, optional stock and validity window)
    redemption_codes  one-time codes a custodial member creates in their session to let one partner redeem
                      up to a maximum of points before an expiry

Coalition operations:

    coalition_operations
                      every admin action on the ledger (onboarding, allowances, suspensions, rotations,
                      rights, settlements, the switches) with its state: sent with the role's key, or
                      scheduled on the timelock (operation id, salt, ready_at) and executed once ready
                      (not the mirror's ``admin_operations``: those are the timelock's operations as the
                      chain shows them, whoever scheduled them)

Webhooks (``api/_webhooks.py``):

    webhooks          partners' subscriptions: the URL, the event types, the parameters of the scheduled
                      notifications, and the signing secret (and the one it replaced, during the rotation's
                      grace period) encrypted with AES-256-GCM: a signing secret must be used, not only
                      checked, so it cannot be kept as a digest
    webhook_events    every event once, by its stable id (derived from its source: an operation and the
                      state it reached, a member and an epoch, ...), with the exact body every delivery sends
    webhook_deliveries
                      one event to one webhook (and each replay of it): its state, attempts (status codes,
                      errors), the next attempt, and who is sending it (a claim that expires)
    webhook_tiers     the tier last notified per partner and member (``tier.changed``)

Times are Unix seconds; secrets (keys, session tokens, codes) are stored only as SHA-256 digests (webhook
signing secrets, which must be usable, only encrypted).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from indexer._schema import NAMING_CONVENTION

__all__ = [
    "ApiKey",
    "Batch",
    "Challenge",
    "CoalitionOperation",
    "EnrolmentLink",
    "IdempotencyRecord",
    "LinkCode",
    "Member",
    "MemberSession",
    "Membership",
    "Operation",
    "OrderRefKey",
    "PartnerProfile",
    "Passkey",
    "Price",
    "RedemptionCode",
    "Reward",
    "RuleActivation",
    "RuleSetRecord",
    "ServiceBase",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookTier",
]

Digest = LargeBinary(32)
Address = String(42)


class ServiceBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(ServiceBase):
    """An API key: ``lk_<id>_<secret>``, shown once; the row keeps the SHA-256 of the whole token."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: ``admin``, ``partner`` or ``auditor``
    role: Mapped[str] = mapped_column(String(16))
    #: the partner a partner key acts for (None for the others)
    partner_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[bytes] = mapped_column(Digest)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: who created it (an admin key's id; None from the command line)
    created_by: Mapped[str | None] = mapped_column(String(16))
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    #: the key this one replaced (``rotate``)
    rotated_from: Mapped[str | None] = mapped_column(String(16))


class PartnerProfile(ServiceBase):
    """The directory's description of a partner (its figures come from the mirror)."""

    __tablename__ = "partner_profiles"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    #: where members can spend points with it (stores, a web shop), free text
    spend_at: Mapped[str | None] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Price(ServiceBase):
    """A partner's commercial prices from ``effective_from`` on, until the next row: what it pays per point
    it issues and is reimbursed per point redeemed with it, in ``currency`` (decimal text, exact). Rows are
    never changed or deleted: the table is the audit trail of every price."""

    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("partner_id", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    effective_from: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    issue_price: Mapped[str] = mapped_column(String(40))
    redeem_price: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class Member(ServiceBase):
    """A member of the coalition: one wallet. No personal data (that is per partner, in memberships)."""

    __tablename__ = "members"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: lower-case 0x address
    address: Mapped[str] = mapped_column(Address, unique=True)
    #: ``custodial`` (the service derives its key) or ``self`` (the member holds it)
    custody: Mapped[str] = mapped_column(String(16))
    #: the BIP-32 index of a custodial member's key
    custody_index: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: when its personal data was erased (the row and its address stay: the ledger keeps them)
    erased_at: Mapped[int | None] = mapped_column(BigInteger)


class Membership(ServiceBase):
    """A member as one partner knows it: that partner's customer id and the contact data it gave."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("partner_id", "customer_id"),
        Index("ix_memberships_member_id", "member_id"),
    )

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    member_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: the partner's own id of its customer (None once erased)
    customer_id: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    #: ISO date (``YYYY-MM-DD``)
    birthday: Mapped[str | None] = mapped_column(String(10))
    #: when the birthday was last set (the earning rules ignore one set within the last 30 days)
    birthday_set_at: Mapped[int | None] = mapped_column(BigInteger)
    enrolled_at: Mapped[int] = mapped_column(BigInteger)
    #: linked to an existing member with its consent (a link code), not enrolled new
    linked: Mapped[bool] = mapped_column(Boolean)


class LinkCode(ServiceBase):
    """A one-time code a member creates so one partner may link them (their consent)."""

    __tablename__ = "link_codes"

    code_hash: Mapped[bytes] = mapped_column(Digest, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    used_by: Mapped[int | None] = mapped_column(BigInteger)


class EnrolmentLink(ServiceBase):
    """A one-time link a partner gives its custodial member to register a passkey."""

    __tablename__ = "enrolment_links"

    token_hash: Mapped[bytes] = mapped_column(Digest, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class Passkey(ServiceBase):
    """A member's WebAuthn credential."""

    __tablename__ = "passkeys"

    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    transports: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)


class MemberSession(ServiceBase):
    """A member's session: ``ls_<id>_<secret>``; short-lived, revocable."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[bytes] = mapped_column(Digest)
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    #: ``siwe`` or ``passkey``
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Challenge(ServiceBase):
    """A SIWE nonce or WebAuthn challenge: used at most once, before it expires."""

    __tablename__ = "challenges"

    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: ``siwe``, ``passkey-register`` or ``passkey-login``
    kind: Mapped[str] = mapped_column(String(24))
    #: the member a passkey registration is for
    member_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


#: An auto-incrementing 64-bit key (SQLite's rowid alias must be declared INTEGER).
Serial = BigInteger().with_variant(Integer(), "sqlite")


class RuleSetRecord(ServiceBase):
    """An earning rule set, immutable once made: its hash is the ``ruleHash`` of the issuances it computed."""

    __tablename__ = "rule_sets"
    __table_args__ = (UniqueConstraint("partner_id", "version"),)

    #: keccak-256 of ``canonical``
    hash: Mapped[bytes] = mapped_column(Digest, primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    #: 1, 2, ... per partner
    version: Mapped[int] = mapped_column(Integer)
    #: the canonical encoding (compact JSON, sorted keys), byte for byte what was hashed
    canonical: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: the API key that created it (None: the command line)
    created_by: Mapped[str | None] = mapped_column(String(16))


class RuleActivation(ServiceBase):
    """From ``activated_at`` on, the partner's purchases and engagements are computed with ``rule_hash``."""

    __tablename__ = "rule_activations"
    __table_args__ = (Index("ix_rule_activations_latest", "partner_id", "activated_at"),)

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    rule_hash: Mapped[bytes] = mapped_column(Digest)
    activated_at: Mapped[int] = mapped_column(BigInteger)
    activated_by: Mapped[str | None] = mapped_column(String(16))


class OrderRefKey(ServiceBase):
    """A partner's key for the on-chain references of its orders: ``HMAC-SHA256(key, kind:order id)``."""

    __tablename__ = "order_ref_keys"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[bytes] = mapped_column(Digest)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Operation(ServiceBase):
    """One accepted write (the outbox): committed before anything is sent to the chain.

    ``kind`` and ``natural_key`` are the second guard after Idempotency-Key: a partner's order earns once
    (``purchase``/order id), a return id is used once, an engagement once per its key (a review id, a
    referral pair, a birthday year)."""

    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("partner_id", "kind", "natural_key"),
        Index("ix_operations_due", "state", "release_at"),
        Index("ix_operations_member", "partner_id", "member_address", "created_at"),
        Index("ix_operations_batch", "batch_id", "batch_index"),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    #: purchase, return, engagement, adjustment, redemption, refund
    kind: Mapped[str] = mapped_column(String(16))
    #: the partner's own id of the thing (order id, return id, engagement key)
    natural_key: Mapped[str] = mapped_column(String(300))
    #: pending (until release_at), accepted, submitted, confirmed, failed, cancelled
    state: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[str | None] = mapped_column(String(40))
    member_address: Mapped[str] = mapped_column(Address)
    #: the points this operation moves now (a partial return while pending lowers a purchase's)
    points: Mapped[int] = mapped_column(BigInteger)
    #: the points it was computed for when accepted
    original_points: Mapped[int] = mapped_column(BigInteger)
    #: the ledger's reason code (1 purchase, 2 review, 3 referral, 4 birthday, 5 newsletter, 6 campaign, ...)
    reason: Mapped[int] = mapped_column(Integer)
    rule_hash: Mapped[bytes | None] = mapped_column(Digest)
    #: the reference written on chain (HMAC of the natural key under the partner's key)
    ref: Mapped[bytes] = mapped_column(Digest)
    #: the operation this one acts on (a return's purchase, a refund's redemption)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    #: JSON: what the caller sent (an order's amount, lines, channel...), for auditors to recompute
    request: Mapped[str] = mapped_column(Text)
    #: JSON: the line-by-line computation, or what the chain call needs (a consent, an issuance record)
    detail: Mapped[str | None] = mapped_column(Text)
    #: the API key (or session) that asked for it
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    #: when a pending operation becomes due (the end of the return window; created_at when none)
    release_at: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(BigInteger)
    batch_index: Mapped[int | None] = mapped_column(Integer)
    tx_hash: Mapped[bytes | None] = mapped_column(Digest)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    #: the ledger entry's sequence number once confirmed
    seq: Mapped[int | None] = mapped_column(BigInteger)
    #: a typed reason: allowance-exhausted, partner-suspended, ledger-paused, consent-invalid, ...
    failure: Mapped[str | None] = mapped_column(String(40))
    failure_detail: Mapped[str | None] = mapped_column(Text)


class Batch(ServiceBase):
    """An ``issueBatch`` transaction's composition (its operations in order), stored before it is sent."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_open", "partner_id", "state"),)

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    #: the operator key that sends it
    operator: Mapped[str] = mapped_column(Address)
    reason: Mapped[int] = mapped_column(Integer)
    rule_hash: Mapped[bytes] = mapped_column(Digest)
    #: the batch's Merkle root: its reference on chain
    root: Mapped[bytes] = mapped_column(Digest)
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BigInteger)
    #: built, submitted, confirmed, failed
    state: Mapped[str] = mapped_column(String(16))
    tx_hash: Mapped[bytes | None] = mapped_column(Digest)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    submitted_at: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    failure: Mapped[str | None] = mapped_column(String(40))


class IdempotencyRecord(ServiceBase):
    """A POST under an ``Idempotency-Key``: in flight, or done with the response to replay."""

    __tablename__ = "idempotency_keys"

    #: the caller: an API key id or a member id
    principal: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    #: SHA-256 of the method, path and body
    request_hash: Mapped[bytes] = mapped_column(Digest)
    #: in_flight, done
    state: Mapped[str] = mapped_column(String(12))
    status_code: Mapped[int | None] = mapped_column(Integer)
    #: JSON object of the headers to replay
    response_headers: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class Reward(ServiceBase):
    """A reward in a partner's catalogue."""

    __tablename__ = "rewards"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    points_price: Mapped[int] = mapped_column(BigInteger)
    #: how many are left; None: unlimited
    stock: Mapped[int | None] = mapped_column(BigInteger)
    valid_from: Mapped[int | None] = mapped_column(BigInteger)
    valid_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    retired_at: Mapped[int | None] = mapped_column(BigInteger)


class RedemptionCode(ServiceBase):
    """A custodial member's one-time consent for one partner to redeem up to ``max_points`` before expiry."""

    __tablename__ = "redemption_codes"

    code_hash: Mapped[bytes] = mapped_column(Digest, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    max_points: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    #: the redemption it was used for
    operation_id: Mapped[int | None] = mapped_column(BigInteger)


class CoalitionOperation(ServiceBase):
    """One coalition operation an admin asked for through the service (onboarding, allowances, the partner
    life cycle, rights, settlements, the switches): sent at once with the role's key, or scheduled on the
    timelock and executed once its delay has passed. Rows are kept: the service's record of who asked for
    what (``api/_coalition.py``)."""

    __tablename__ = "coalition_operations"

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    #: register-partner, allowance-increase, allowance-decrease, suspend, reactivate, offboard,
    #: rotate-operator, set-rights, set-settlement-address, set-settlement-value, record-settlement,
    #: transfers, pause, unpause
    action: Mapped[str] = mapped_column(String(32))
    #: the partner it acts on (None for the ledger-wide ones)
    partner_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    #: JSON: the action's arguments as sent on chain (a generated operator key: its address, never the key)
    params: Mapped[str] = mapped_column(Text)
    #: submitted, scheduled, ready, confirmed (sent directly), executed (through the timelock), failed,
    #: cancelled
    state: Mapped[str] = mapped_column(String(16))
    #: the ledger calldata sent, or scheduled on the timelock
    call_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the transaction that made it take effect (the direct call, or the timelock's execute)
    tx_hash: Mapped[bytes | None] = mapped_column(Digest)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    #: through a timelock: the operation id, its salt, the scheduling transaction and when it may execute
    timelock_operation_id: Mapped[bytes | None] = mapped_column(Digest)
    salt: Mapped[bytes | None] = mapped_column(Digest)
    schedule_tx_hash: Mapped[bytes | None] = mapped_column(Digest)
    ready_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: the admin key that asked for it
    created_by: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[int] = mapped_column(BigInteger)
    #: a typed reason: partner-exists, partner-not-found, ledger-paused, ...
    failure: Mapped[str | None] = mapped_column(String(40))
    failure_detail: Mapped[str | None] = mapped_column(Text)


class Webhook(ServiceBase):
    """A partner's subscription: events of ``events`` are POSTed to ``url``, signed with its secret (Standard
    Webhooks). Deleting it keeps the row (its delivery log stays readable by id) and cancels what is due."""

    __tablename__ = "webhooks"

    #: ``wh_`` and 24 hex digits
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: JSON list of the event types, sorted
    events: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    #: ``points.expiring``: points that expire within this many days
    expiring_within_days: Mapped[int] = mapped_column(Integer)
    #: ``reward.within_reach``: a reward at most this many points beyond the balance
    reward_within_points: Mapped[int] = mapped_column(BigInteger)
    #: the signing secret (``whsec_...``), sealed: a 12-byte nonce and its AES-256-GCM ciphertext
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    #: the secret a rotation replaced, sealed, still signing deliveries until ``previous_secret_until``
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    #: the API key that created it
    created_by: Mapped[str | None] = mapped_column(String(40))
    rotated_at: Mapped[int | None] = mapped_column(BigInteger)
    deleted_at: Mapped[int | None] = mapped_column(BigInteger)


class WebhookEvent(ServiceBase):
    """An event, stored once by its stable id, with the exact body its deliveries send."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_partner", "partner_id", "created_at"),)

    #: ``evt_`` and 32 hex digits: a digest of the event's source, so emitting it again is the same event
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[int] = mapped_column(BigInteger)
    #: points.issued, points.pending_released, points.redeemed, points.reversed, points.expiring,
    #: tier.changed, reward.within_reach, operation.failed
    type: Mapped[str] = mapped_column(String(40))
    #: the body as sent (JSON: ``type``, ``timestamp``, ``data``), byte for byte
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(ServiceBase):
    """One event to one webhook: the first delivery (``replay`` 0) and each replay asked for (1, 2, ...)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", "replay"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    replay: Mapped[int] = mapped_column(Integer)
    #: pending, sending, succeeded, failed (retries exhausted), cancelled (the webhook was deleted)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    #: when it is (or was to be) attempted next; None once it ended
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger)
    #: the sender that claimed it (a random token) and until when its claim holds
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[int | None] = mapped_column(BigInteger)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    #: JSON list of the attempts: time, status code or error, duration
    log: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class WebhookTier(ServiceBase):
    """The tier last notified (``tier.changed``) of a partner's member, and how many changes were."""

    __tablename__ = "webhook_tiers"

    partner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    member_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32))
    changes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)
