"""Where rule sets are kept: every rule set ever created (``rule_sets``, by its hash, immutable) and which one
each partner applies from when (``rule_activations``, append-only), plus what a quote needs to know of a
member (who it is, and what it earned under the caps so far).

A rule set is stored bound to its partner (``partner_id`` is part of its canonical encoding, hence of its
hash): two partners with the same rules have two rule sets, and a rule hash on chain names the partner
whose rules computed it. Creating the same rules again for the same partner returns the existing record.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import ColumnElement, bindparam, case, func, select
from sqlalchemy.orm import Session

from ._errors import FieldError, InvalidRequest, NotFound
from ._rules import (
    DAY,
    MemberContext,
    RuleSet,
    RuleSetCreate,
    canonical,
    cap_windows,
    parse_canonical,
    rule_hash,
)
from ._tables import Member, Membership, Operation, RuleActivation, RuleSetRecord

__all__ = [
    "EARNING_KINDS",
    "MemberRef",
    "activate",
    "active_rule_set",
    "bind_partner",
    "create_rule_set",
    "latest_activation",
    "member_context",
    "parsed",
    "resolve_member",
    "rule_set_by_hash",
    "rule_sets_of",
]

#: The operations that count against the caps.
EARNING_KINDS = ("purchase", "engagement")
#: The states of operations that earn nothing.
_NOT_EARNING = ("failed", "cancelled")


def bind_partner(rules: RuleSetCreate, partner_id: int) -> RuleSet:
    """``rules`` as ``partner_id``'s (a :class:`RuleSet` naming another partner: 422)."""
    if not isinstance(rules, RuleSet):
        return RuleSet.of(rules, partner_id)
    if rules.partner_id is not None and rules.partner_id != partner_id:
        message = f"the rule set names partner {rules.partner_id}, not {partner_id}"
        raise InvalidRequest(message, [FieldError("body.partner_id", message)])
    return rules if rules.partner_id == partner_id else rules.model_copy(update={"partner_id": partner_id})


def create_rule_set(
    session: Session, partner_id: int, rules: RuleSetCreate, *, now: int, created_by: str | None
) -> RuleSetRecord:
    """Stores ``rules`` as the partner's next version; the same rules again return the existing record."""
    bound = bind_partner(rules, partner_id)
    text = canonical(bound)
    digest = rule_hash(bound)
    existing = session.get(RuleSetRecord, digest)
    if existing is not None:
        return existing
    last = session.execute(
        select(func.max(RuleSetRecord.version)).where(RuleSetRecord.partner_id == partner_id)
    ).scalar()
    record = RuleSetRecord(
        hash=digest,
        partner_id=partner_id,
        version=(last or 0) + 1,
        canonical=text,
        created_at=now,
        created_by=created_by,
    )
    session.add(record)
    session.flush()
    return record


def rule_set_by_hash(session: Session, digest: bytes) -> RuleSetRecord | None:
    return session.get(RuleSetRecord, digest)


def rule_sets_of(session: Session, partner_id: int) -> list[RuleSetRecord]:
    """The partner's rule sets, newest first."""
    query = select(RuleSetRecord).where(RuleSetRecord.partner_id == partner_id)
    return list(session.scalars(query.order_by(RuleSetRecord.version.desc())))


def latest_activation(session: Session, partner_id: int, at: int) -> RuleActivation | None:
    """The partner's activation in force at ``at`` (the latest one not after it)."""
    query = (
        select(RuleActivation)
        .where(RuleActivation.partner_id == partner_id, RuleActivation.activated_at <= at)
        .order_by(RuleActivation.activated_at.desc(), RuleActivation.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def activate(
    session: Session, partner_id: int, digest: bytes, *, now: int, activated_by: str | None
) -> RuleActivation:
    """Makes the partner's rule set ``digest`` the one in force from ``now`` (404 when the partner has no
    such rule set). Activating the set in force already changes nothing and returns its activation."""
    record = session.get(RuleSetRecord, digest)
    if record is None or record.partner_id != partner_id:
        raise NotFound(f"partner {partner_id} has no rule set 0x{digest.hex()}")
    current = latest_activation(session, partner_id, now)
    if current is not None and current.rule_hash == digest:
        return current
    activation = RuleActivation(
        partner_id=partner_id, rule_hash=digest, activated_at=now, activated_by=activated_by
    )
    session.add(activation)
    session.flush()
    return activation


@lru_cache(maxsize=256)
def _parsed(digest: bytes, text: str) -> RuleSet:
    return parse_canonical(text)


def parsed(record: RuleSetRecord) -> RuleSet:
    """The record's rule set (parsed once per process: a rule set never changes)."""
    return _parsed(record.hash, record.canonical)


#: The hash of the rule set in force for a partner at a time (prebuilt: every purchase asks).
_IN_FORCE = (
    select(RuleActivation.rule_hash)
    .where(RuleActivation.partner_id == bindparam("partner"), RuleActivation.activated_at <= bindparam("at"))
    .order_by(RuleActivation.activated_at.desc(), RuleActivation.id.desc())
    .limit(1)
)
_CANONICAL = select(RuleSetRecord.canonical).where(RuleSetRecord.hash == bindparam("digest"))
#: Rule sets by hash, parsed: a hash names one canonical text forever.
_BY_HASH: dict[bytes, RuleSet] = {}


def active_rule_set(session: Session, partner_id: int, at: int) -> tuple[bytes, RuleSet] | None:
    """The partner's rule set in force at ``at`` and its hash (None: none activated by then)."""
    found = session.execute(_IN_FORCE, {"partner": partner_id, "at": at}).scalar()
    if found is None:
        return None
    digest = bytes(found)
    rules = _BY_HASH.get(digest)
    if rules is None:
        text = session.execute(_CANONICAL, {"digest": digest}).scalar()
        assert text is not None, "an activation names a stored rule set"
        rules = _BY_HASH[digest] = _parsed(digest, text)
    return digest, rules


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A member as a partner named it: its id (None: an address that is not the partner's member; whether
    it is another partner's is not disclosed) and its wallet (lower-case)."""

    member_id: str | None
    address: str


def resolve_member(
    session: Session,
    partner_id: int,
    *,
    member_id: str | None = None,
    customer_id: str | None = None,
    address: str | None = None,
) -> MemberRef:
    """The member a partner names by exactly one of its member id, its own customer id, or a wallet address.
    By id, it must be the partner's member (404 otherwise: another partner's members are not disclosed); an
    address need not be a member's (points can go to any wallet)."""
    if member_id is not None:
        row = session.execute(
            select(Member.id, Member.address)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.partner_id == partner_id, Member.id == member_id)
        ).first()
        if row is None:
            raise NotFound(f"no member {member_id} among this partner's members")
        return MemberRef(row.id, row.address)
    if customer_id is not None:
        row = session.execute(
            select(Member.id, Member.address)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.partner_id == partner_id, Membership.customer_id == customer_id)
        ).first()
        if row is None:
            raise NotFound(f"no member with customer id {customer_id!r} among this partner's members")
        return MemberRef(row.id, row.address)
    if address is None:
        raise ValueError("name a member by member_id, customer_id or address")
    wallet = address.lower()
    own = session.scalars(
        select(Member.id)
        .join(Membership, Membership.member_id == Member.id)
        .where(Membership.partner_id == partner_id, Member.address == wallet)
    ).first()
    return MemberRef(own, wallet)


def _earned_since(start: str) -> ColumnElement[int]:
    return func.coalesce(
        func.sum(case((Operation.created_at >= bindparam(start), Operation.points), else_=0)), 0
    )


#: What a member earned from a partner in the day, week and month of a time (prebuilt: every purchase asks).
_EARNED = select(_earned_since("day"), _earned_since("week"), _earned_since("month")).where(
    Operation.partner_id == bindparam("partner"),
    Operation.member_address == bindparam("address"),
    Operation.created_at >= bindparam("since"),
    Operation.created_at < bindparam("until"),
    Operation.kind.in_(sorted(EARNING_KINDS)),
    Operation.state.not_in(sorted(_NOT_EARNING)),
)


def member_context(
    session: Session, partner_id: int, address: str, at: int, tier: str | None
) -> MemberContext:
    """The points the member at ``address`` earned from the partner (purchases and engagements not failed nor
    cancelled, at their current points: a return while pending lowers them) in the UTC day, ISO week and
    calendar month of ``at``, up to the end of its day."""
    day, week, month = cap_windows(at)
    row = session.execute(
        _EARNED,
        {
            "day": day,
            "week": week,
            "month": month,
            "partner": partner_id,
            "address": address.lower(),
            "since": min(week, month),
            "until": day + DAY,
        },
    ).one()
    return MemberContext(tier=tier, earned_day=int(row[0]), earned_week=int(row[1]), earned_month=int(row[2]))
