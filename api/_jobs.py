"""Scheduled jobs: what happens without anyone calling the API.

- :func:`grant_birthdays`: each member enrolled with a partner whose rule set gives birthday points gets
  them once a year, on their birthday (UTC; 29 February is celebrated on 28 February in other years), not
  when the birthday was set within the last 30 days (a birthday entered to collect the reward). The
  natural key ``birthday:<year>:<member>`` makes it once per member per year whoever runs the job.
- :func:`sweep_expired`: sends ``sweepExpired`` for every account that the mirror says still holds points
  of an expired epoch, so breakage becomes ledger entries (``PointsExpired``) instead of a silent view.
- member notifications (``api/_webhooks.py``): each partner with a webhook subscribed to
  ``points.expiring``, ``reward.within_reach`` or ``tier.changed`` gets those events, computed from the mirror
  and its catalogue, once per (member, epoch), (member, reward) and change of tier, whoever runs the job.
- :class:`Jobs` runs them on a schedule (with the idempotency records' purge) in ``loyalty jobs`` /
  ``loyalty run``, and between two rounds sends the due webhook deliveries every
  ``settings.webhook_poll_interval_s`` (:class:`~api._webhooks.WebhookDispatcher`: any number of processes
  may, each delivery is claimed by one).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx
from sqlalchemy import Engine, distinct, select
from sqlalchemy.orm import Session

from chain import Ledger
from indexer import MirrorView
from indexer._schema import AccountEpoch, Partner

from ._idempotency import purge_expired
from ._outbox import OperationDraft, enqueue
from ._rulebook import active_rule_set, member_context
from ._rules import quote_engagement
from ._settings import Settings
from ._tables import Member, Membership
from ._webhooks import DispatchReport, WebhookDispatcher, notify_members

__all__ = ["BIRTHDAY_GRACE_S", "Jobs", "expired_holders", "grant_birthdays", "sweep_expired"]

logger = logging.getLogger(__name__)

#: A birthday set within this many seconds earns nothing this year.
BIRTHDAY_GRACE_S: Final = 30 * 24 * 3600
#: Accounts per ``sweepExpired`` transaction.
SWEEP_CHUNK: Final = 100


def _birthday_today(birthday: str, today: dt.date) -> bool:
    try:
        month, day = int(birthday[5:7]), int(birthday[8:10])
    except ValueError:
        return False
    if (month, day) == (2, 29) and not _leap(today.year):
        return (today.month, today.day) == (2, 28)
    return (today.month, today.day) == (month, day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def grant_birthdays(
    session: Session, partner_id: int, *, now: int, tier: Callable[[str], str | None] = lambda _: None
) -> int:
    """Queues today's birthday points of the partner's members (once per member and year); returns how
    many were queued now."""
    active = active_rule_set(session, partner_id, now)
    if active is None:
        return 0
    rule_hash, rules = active
    if rules.engagements.birthday <= 0:
        return 0
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    rows = session.execute(
        select(Membership.member_id, Membership.birthday, Membership.birthday_set_at, Member.address)
        .join(Member, Member.id == Membership.member_id)
        .where(
            Membership.partner_id == partner_id,
            Membership.birthday.is_not(None),
            Member.erased_at.is_(None),
        )
    ).all()
    queued = 0
    for member_id, birthday, set_at, address in rows:
        if birthday is None or not _birthday_today(birthday, today):
            continue
        if set_at is not None and set_at > now - BIRTHDAY_GRACE_S:
            continue
        context = member_context(session, partner_id, address, now, tier(address))
        quote = quote_engagement(rules, "birthday", context, at=now)
        if quote.points <= 0:
            continue
        _, created = enqueue(
            session,
            OperationDraft(
                partner_id=partner_id,
                kind="engagement",
                natural_key=f"birthday:{today.year}:{member_id}",
                member_id=member_id,
                member_address=address,
                points=quote.points,
                reason=quote.reason,
                rule_hash=rule_hash,
                request={"kind": "birthday", "year": today.year},
                detail={"explanation": quote.explanation()},
                created_by="scheduler",
            ),
            now=now,
        )
        queued += created
    return queued


def expired_holders(view: MirrorView, *, at: int) -> list[str]:
    """Accounts that still hold points of an epoch expired at ``at`` (as the mirror knows them)."""
    first_live = view.params.first_live_epoch(at, view.paused_duration(at=at))
    rows = view.conn.execute(
        select(distinct(AccountEpoch.account))
        .where(AccountEpoch.epoch < first_live, AccountEpoch.held > 0)
        .order_by(AccountEpoch.account)
    ).all()
    return [row[0] for row in rows]


def sweep_expired(ledger: Ledger, holders: Sequence[str]) -> int:
    """``sweepExpired`` for ``holders`` (anyone may call it), in chunks; returns the transactions sent."""
    sent = 0
    for start in range(0, len(holders), SWEEP_CHUNK):
        ledger.sweep_expired(list(holders[start : start + SWEEP_CHUNK])).wait()
        sent += 1
    return sent


@dataclass
class Jobs:
    """The scheduled jobs of one deployment: birthdays for ``partners`` (hourly; the natural key keeps it
    once a year), the sweeper (hourly; ``sweeper`` is a ledger with any funded key's sender), the member
    notifications and the purge of expired idempotency records; and the webhook deliveries, sent by
    ``webhooks`` (made from ``settings`` on first use, with an HTTP client of its own, when not given)."""

    engine: Engine
    contract: str
    #: None: every partner the mirror knows, read each round
    partners: Sequence[int] | None = None
    sweeper: Ledger | None = None
    clock: Callable[[], float] = time.time
    every_s: float = 3600.0
    tier: Callable[[str], str | None] = field(default=lambda _: None)
    #: None: read from the environment when first needed (the webhooks' key, timeouts, retries, tiers)
    settings: Settings | None = None
    webhooks: WebhookDispatcher | None = None

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings()
        return self.settings

    def dispatcher(self) -> WebhookDispatcher:
        if self.webhooks is None:
            settings = self._settings()
            client = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
            self.webhooks = WebhookDispatcher(self.engine, client, self.clock, settings=settings)
        return self.webhooks

    def deliver(self) -> DispatchReport:
        """Sends the webhook deliveries due now (one round of the dispatcher)."""
        return self.dispatcher().run_once()

    def run_once(self) -> dict[str, int]:
        now = int(self.clock())
        birthdays = 0
        partners = self.partners
        if partners is None:
            with self.engine.connect() as conn:
                partners = list(conn.scalars(select(Partner.partner_id).order_by(Partner.partner_id)))
        for partner_id in partners:
            with Session(self.engine) as db, db.begin():
                birthdays += grant_birthdays(db, partner_id, now=now, tier=self.tier)
        swept = 0
        if self.sweeper is not None:
            with self.engine.connect() as conn:
                view = MirrorView(conn, self.contract)
                holders = expired_holders(view, at=now)
            swept = sweep_expired(self.sweeper, holders)
        with Session(self.engine) as db, db.begin():
            purged = purge_expired(db, now)
        lowest_tier = next(iter(self._settings().tier_thresholds))
        notified = notify_members(self.engine, self.contract, now=now, lowest_tier=lowest_tier)
        delivered = self.deliver()
        return {
            "birthdays": birthdays,
            "sweeps": swept,
            "idempotency_purged": purged,
            **{f"notified_{kind.replace('.', '_')}": n for kind, n in notified.items()},
            "webhook_deliveries": delivered.claimed,
            "webhook_deliveries_failed": delivered.failed,
        }

    def run(self, stop: threading.Event) -> None:
        """Every ``every_s`` the whole round; between rounds, the due webhook deliveries every
        ``settings.webhook_poll_interval_s``."""
        poll = self._settings().webhook_poll_interval_s
        next_round = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + self.every_s
                    done = self.run_once()
                    logger.info("scheduled jobs: %s", done)
                else:
                    self.deliver()
            except Exception:  # a job's failure is logged; the next round tries again
                logger.exception("scheduled jobs failed")
            stop.wait(min(poll, max(next_round - time.monotonic(), 0.0)))
