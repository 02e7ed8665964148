"""Partners' positions, settlement statements and programme metrics, computed from the mirror in SQL.

Every figure is a sum over ledger entries in a time range ``[start, end)`` of block timestamps, optionally
cut into periods (:class:`Spans`: UTC days, ISO weeks, UTC months or ledger epochs, at most
:data:`MAX_PERIODS`). The database does the summing: one ``GROUP BY`` per figure, keyed on the period an
entry falls in (a balanced tree of ``CASE`` over the period boundaries, inlined as constants so PostgreSQL
sees the same expression in ``SELECT`` and ``GROUP BY``), never one row per entry into Python. Values are
``BigUint`` (decimal text on SQLite, which cannot multiply them exactly), so value sums are grouped by
``(period, event, value per point)`` and multiplied out in Python; the groups number the settlement values
ever used, not the entries.

**Flows** (:func:`flows`), as the chain accrues a partner's counters, each entry at its own value:

    issued     PointsIssued amount, PointsBatchIssued amount (a batch's header: its items' value is its own)
    reversed   IssuanceReversed recovered (what the return took back), at the reversed issue's value
    redeemed   PointsRedeemed amount
    refunded   RedemptionRefunded amount, at the redemption's value
    settled    SettlementRecorded settled_points / settled_value

**The ledger's calendar** (:class:`Calendar`): pauses stop the ledger clock, so epoch ``k`` begins at the
first second the clock reads ``k * epoch_length`` (``genesis + k * epoch_length`` plus every pause begun
before it) and the points of epoch ``e`` expire when epoch ``e + validity`` begins (``epochExpiresAt``).

**Attribution.** Points are fungible in a wallet: the chain does not say whose points expired or are still
outstanding. Both are attributed to partners pro rata per epoch, by the partner's share of the epoch's net
issuance (points issued into the epoch, less what reversals of those issuances took back), rounded down
per epoch; the coalition's figures are the unrounded totals. A refund's part that expired on arrival is
the refunding partner's.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from decimal import Context, Decimal
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import ColumnElement, Integer, SQLColumnExpression, case, func, literal_column, select
from sqlalchemy.orm import Session, aliased

from indexer import AccountEpoch, LedgerEntry, MirrorView

from ._errors import FieldError, InvalidRequest
from ._services import AsOf
from ._tables import Membership, Price

__all__ = [
    "ACTIVITY_WINDOWS",
    "MAX_PERIODS",
    "MAX_TIME",
    "PURCHASE",
    "Amounts",
    "Calendar",
    "Flows",
    "Period",
    "PurchaseCycles",
    "Span",
    "Spans",
    "active_members",
    "amounts",
    "breakage",
    "decimal_text",
    "enrolments",
    "flows",
    "make_spans",
    "outstanding",
    "price_spans",
    "purchase_cycles",
    "resolve_range",
]

Period = Literal["day", "week", "month", "epoch"]
#: the most periods one answer breaks a range into
MAX_PERIODS = 400
#: the last second of year 9999 (UTC): the latest time a range may name
MAX_TIME = 253_402_300_799
DAY = 86_400
WEEK = 7 * DAY
#: 1970-01-05, the first Monday of Unix time (ISO weeks begin on Mondays)
_FIRST_MONDAY = 4 * DAY
#: active members: an earning or redemption entry within these many seconds before the period's end
ACTIVITY_WINDOWS = (30 * DAY, 90 * DAY)
#: the reason code of an issue for a purchase
PURCHASE = 1

_ISSUES = ("PointsIssued", "PointsBatchIssued")
_FLOW_EVENTS = (*_ISSUES, "PointsRedeemed", "IssuanceReversed", "RedemptionRefunded")
#: how each entry changes the points held in its (account, epoch); transfers move them between accounts
_HELD = {
    "PointsIssued": 1,
    "PointsIssuedInBatch": 1,
    "PointsRedeemed": -1,
    "PointsReversed": -1,
    "PointsRefunded": 1,
    "PointsExpired": -1,
}
#: entries to an account (batch items, not their header) that earn points, and redemptions
_EARNINGS = ("PointsIssued", "PointsIssuedInBatch")
_ACTIVITY = (*_EARNINGS, "PointsRedeemed")
#: exact decimal arithmetic for prices times points (20 + 18 digits times 20 digits fit with room)
_DECIMAL = Context(prec=200)


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, [FieldError(field, message)])


# --------------------------------------------------------------------------- the ledger's calendar


class Calendar:
    """Epochs in wall time: when each begins and expires, given the pauses the mirror holds."""

    def __init__(self, view: MirrorView) -> None:
        self.params = view.params
        #: (started_at, ended_at or None while paused), in the order they began
        self.pauses = [(p.started_at, p.ended_at) for p in view.pause_intervals()]

    def paused(self, at: int) -> int:
        """``pausedDuration()`` in a block at ``at``."""
        return sum(
            min(at if ended is None else ended, at) - started
            for started, ended in self.pauses
            if started < at
        )

    def epoch_at(self, at: int) -> int:
        return self.params.epoch_at(at, self.paused(at))

    def epoch_start(self, epoch: int) -> int | None:
        """The first second of ``epoch`` (at least 1): ``genesis + epoch * epoch_length``, later by every
        pause begun before it. None: the ledger is paused before it begins (its clock stands still)."""
        start = self.params.genesis + epoch * self.params.epoch_length
        for started, ended in self.pauses:
            if started >= start:
                break
            if ended is None:
                return None
            start += ended - started
        return start

    def expires_at(self, epoch: int) -> int | None:
        """When the points of ``epoch`` expire (epoch ``epoch + validity`` begins); None: not while paused."""
        return self.epoch_start(epoch + self.params.validity)


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Span:
    """The time range ``[start, end)`` (Unix seconds), and the period it is (``2024-05-01``, ``2024-W18``,
    ``2024-05``, ``epoch 12``; empty for a range not cut into periods)."""

    start: int
    end: int
    label: str = ""


def _rank(x: SQLColumnExpression[Any], cuts: Sequence[int]) -> ColumnElement[int]:
    """How many of ``cuts`` (ascending) are at or below ``x``: a balanced tree of ``CASE`` (depth log2),
    the cuts inlined as integer constants."""

    def node(low: int, high: int) -> ColumnElement[int]:
        if low == high:
            return literal_column(str(low), Integer)
        mid = (low + high) // 2
        return case(
            (x < literal_column(str(int(cuts[mid])), Integer), node(low, mid)), else_=node(mid + 1, high)
        )

    return node(0, len(cuts))


@dataclass(frozen=True, slots=True)
class Spans:
    """Consecutive spans covering ``[start, end)``."""

    items: tuple[Span, ...]

    @property
    def start(self) -> int:
        return self.items[0].start

    @property
    def end(self) -> int:
        return self.items[-1].end

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Span]:
        return iter(self.items)

    def index_of(self, at: int) -> int | None:
        """The span holding time ``at`` (None: outside the range)."""
        if not self.start <= at < self.end:
            return None
        return bisect.bisect_right([s.start for s in self.items], at) - 1

    def index(self, at: SQLColumnExpression[Any]) -> ColumnElement[int]:
        """SQL: the span holding the time ``at`` (a time inside the range)."""
        return _rank(at, [s.start for s in self.items[1:]])

    def index_or_before(self, at: SQLColumnExpression[Any]) -> ColumnElement[int]:
        """SQL: the span holding ``at``, or -1 before the range."""
        return case(
            (at < literal_column(str(self.start), Integer), literal_column("-1", Integer)),
            else_=self.index(at),
        )

    def within(self, at: SQLColumnExpression[Any]) -> list[ColumnElement[bool]]:
        return [at >= literal_column(str(self.start), Integer), at < literal_column(str(self.end), Integer)]

    @classmethod
    def single(cls, start: int, end: int) -> Spans:
        return cls((Span(start, end),))

    @classmethod
    def cut(cls, bounds: Sequence[int], labels: Sequence[str] | None = None) -> Spans:
        """The spans between successive ``bounds``."""
        pairs = list(pairwise(bounds))
        names = labels if labels is not None else [""] * len(pairs)
        return cls(tuple(Span(a, b, name) for (a, b), name in zip(pairs, names, strict=True)))


def resolve_range(view: MirrorView, as_of: AsOf, start: int | None, end: int | None) -> tuple[int, int]:
    """The range ``[start, end)`` asked for; by default from the ledger's first entry (or genesis, if
    earlier) to the as-of time (inclusive). 422 unless ``start < end``."""
    if start is not None and end is not None and start >= end:
        raise _bad("query.from", "from must be before to")
    if end is None:
        end = as_of.time + 1
        if start is not None and start >= end:
            raise _bad("query.from", f"from must be before to (by default the as-of time, {as_of.time})")
    if start is None:
        first = view.conn.execute(
            select(LedgerEntry.block_timestamp).order_by(LedgerEntry.seq).limit(1)
        ).scalar()
        start = min(view.params.genesis, first if first is not None else view.params.genesis, end - 1)
    return max(start, 0), end


def _next_boundary(calendar: Calendar, period: Period, at: int) -> int | None:
    if period == "day":
        return (at // DAY + 1) * DAY
    if period == "week":
        return _FIRST_MONDAY + ((at - _FIRST_MONDAY) // WEEK + 1) * WEEK
    if period == "month":
        day = dt.datetime.fromtimestamp(at, dt.UTC)
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return None if year > 9999 else int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp())
    return calendar.epoch_start(calendar.epoch_at(at) + 1)


def _label(calendar: Calendar, period: Period, at: int) -> str:
    day = dt.datetime.fromtimestamp(at, dt.UTC)
    if period == "day":
        return day.date().isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    return f"epoch {calendar.epoch_at(at)}"


def make_spans(calendar: Calendar, start: int, end: int, period: Period | None) -> Spans:
    """``[start, end)`` cut at each period's beginning (the first and last span may be partial); 422 for more
    than :data:`MAX_PERIODS` periods."""
    if period is None:
        return Spans.single(start, end)
    bounds = [start]
    while True:
        after = _next_boundary(calendar, period, bounds[-1])
        if after is None or after >= end or after <= bounds[-1]:
            break
        if len(bounds) >= MAX_PERIODS:
            raise _bad("query.period", f"the range spans more than {MAX_PERIODS} periods of a {period}")
        bounds.append(after)
    bounds.append(end)
    return Spans.cut(bounds, [_label(calendar, period, at) for at in bounds[:-1]])


# --------------------------------------------------------------------------- flows


@dataclass
class Flows:
    """Points and their value (settlement units) that moved in a span: issued, reversed, redeemed,
    refunded, settled. ``settled`` is signed (positive: paid to the partner)."""

    issued: int = 0
    issued_value: int = 0
    reversed: int = 0
    reversed_value: int = 0
    redeemed: int = 0
    redeemed_value: int = 0
    refunded: int = 0
    refunded_value: int = 0
    settled_points: int = 0
    settled_value: int = 0

    def __add__(self, other: Flows) -> Flows:
        return Flows(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def issued_net(self) -> int:
        """Issued less reversed."""
        return self.issued - self.reversed

    @property
    def redeemed_net(self) -> int:
        """Redeemed less refunded."""
        return self.redeemed - self.refunded

    @property
    def issued_net_value(self) -> int:
        return self.issued_value - self.reversed_value

    @property
    def redeemed_net_value(self) -> int:
        return self.redeemed_value - self.refunded_value


def _partner(column: SQLColumnExpression[Any], partner_id: int | None) -> list[ColumnElement[bool]]:
    return [] if partner_id is None else [column == partner_id]


def flows(view: MirrorView, spans: Spans, *, partner_id: int | None) -> list[Flows]:
    """Each span's flows of ``partner_id`` (None: of every partner, the coalition's)."""
    e = LedgerEntry
    at = e.block_timestamp
    index = spans.index(at).label("span_i")
    query = (
        select(index, e.event, e.value, func.sum(e.amount), func.sum(e.recovered))
        .where(e.event.in_(_FLOW_EVENTS), *spans.within(at), *_partner(e.partner_id, partner_id))
        .group_by("span_i", e.event, e.value)
    )
    out = [Flows() for _ in spans]
    for i, event, value, amount, recovered in view.conn.execute(query):
        f, per_point = out[i], int(value or 0)
        if event in _ISSUES:
            f.issued += int(amount or 0)
            f.issued_value += int(amount or 0) * per_point
        elif event == "PointsRedeemed":
            f.redeemed += int(amount or 0)
            f.redeemed_value += int(amount or 0) * per_point
        elif event == "IssuanceReversed":
            f.reversed += int(recovered or 0)
            f.reversed_value += int(recovered or 0) * per_point
        else:
            f.refunded += int(amount or 0)
            f.refunded_value += int(amount or 0) * per_point
    # Settlements are signed text on SQLite (no SQL sum); there are few (one per partner per period).
    settled = select(at, e.settled_points, e.settled_value).where(
        e.event == "SettlementRecorded", *spans.within(at), *_partner(e.partner_id, partner_id)
    )
    for when, points, value in view.conn.execute(settled):
        i = spans.index_of(when)
        assert i is not None
        out[i].settled_points += int(points or 0)
        out[i].settled_value += int(value or 0)
    return out


# --------------------------------------------------------------------------- expiry and what is outstanding


@dataclass
class _Shares:
    """Net issuance (issued less recovered) per epoch: the partner's and every partner's."""

    partner_id: int | None
    mine: defaultdict[int, int]
    total: defaultdict[int, int]

    def add(self, partner_id: int, epoch: int, points: int) -> None:
        self.total[epoch] += points
        if partner_id == self.partner_id:
            self.mine[epoch] += points

    def part(self, epoch: int, points: int) -> int:
        """The partner's share of ``points`` of ``epoch`` (rounded down; all of them for the coalition)."""
        if self.partner_id is None:
            return points
        total = self.total[epoch]
        return points * self.mine[epoch] // total if total > 0 else 0


def _net_issuance_rows(*where: ColumnElement[bool], by_span: ColumnElement[int] | None = None) -> Any:
    e = LedgerEntry
    keys: list[Any] = [] if by_span is None else [by_span.label("span_i")]
    return (
        select(*keys, e.partner_id, e.epoch, e.event, func.sum(e.amount), func.sum(e.recovered))
        .where(e.event.in_((*_ISSUES, "IssuanceReversed")), e.epoch.is_not(None), *where)
        .group_by(*(["span_i"] if by_span is not None else []), e.partner_id, e.epoch, e.event)
    )


def _net(event: str, amount: Any, recovered: Any) -> int:
    return int(amount or 0) if event in _ISSUES else -int(recovered or 0)


def breakage(
    view: MirrorView, calendar: Calendar, as_of: AsOf, spans: Spans, *, partner_id: int | None
) -> list[int]:
    """Points that expired in each span: the points of every epoch whose expiry time (``epochExpiresAt``)
    falls in the span and is not after the as-of time (swept since, by ``PointsExpired`` entries, or not:
    still held), plus refunded points that expired on arrival in the span. A partner's: its pro-rata share
    of each epoch's, and the expired arrivals of its own refunds."""
    e = LedgerEntry
    first_live = calendar.epoch_at(as_of.time) - calendar.params.validity + 1
    expired: defaultdict[int, int] = defaultdict(int)
    swept = (
        select(e.epoch, func.sum(e.amount))
        .where(e.event == "PointsExpired", e.batch_seq.is_(None), e.epoch < first_live)
        .group_by(e.epoch)
    )
    unswept = (
        select(AccountEpoch.epoch, func.sum(AccountEpoch.held))
        .where(AccountEpoch.epoch < first_live)
        .group_by(AccountEpoch.epoch)
    )
    for query in (swept, unswept):
        for epoch, points in view.conn.execute(query):
            expired[int(epoch)] += int(points or 0)
    shares = _Shares(partner_id, defaultdict(int), defaultdict(int))
    if partner_id is not None:
        for pid, epoch, event, amount, recovered in view.conn.execute(
            _net_issuance_rows(e.epoch < first_live)
        ):
            shares.add(pid, epoch, _net(event, amount, recovered))
    out = [0] * len(spans)
    for epoch, points in expired.items():
        expires = calendar.expires_at(epoch)
        i = None if expires is None or expires > as_of.time else spans.index_of(expires)
        if i is not None:
            out[i] += shares.part(epoch, points)
    # A refund's part whose epoch had expired: expired on arrival, when the refund happened.
    at = e.block_timestamp
    arrivals = (
        select(spans.index(at).label("span_i"), func.sum(e.amount))
        .where(e.event == "PointsExpired", e.batch_seq.is_not(None), *spans.within(at))
        .group_by("span_i")
    )
    if partner_id is not None:
        refund = aliased(LedgerEntry)
        arrivals = arrivals.join(refund, refund.seq == e.batch_seq).where(refund.partner_id == partner_id)
    for i, points in view.conn.execute(arrivals):
        out[i] += int(points or 0)
    return out


def outstanding(view: MirrorView, calendar: Calendar, spans: Spans, *, partner_id: int | None) -> list[int]:
    """Points live at the end of each span (at ``end - 1``, after every entry before ``end``): the points
    held in epochs not expired then (``outstandingSupply`` in a block at that time). A partner's: its
    pro-rata share of each live epoch's, by the net issuance before the span's end."""
    e = LedgerEntry
    at = e.block_timestamp
    # Only epochs live at some span's end matter: none older than those live at the first end.
    oldest = calendar.epoch_at(spans.items[0].end - 1) - calendar.params.validity + 1
    before_end = at < literal_column(str(spans.end), Integer)
    span = spans.index_or_before(at)
    deltas: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
    held_rows = (
        select(span.label("span_i"), e.epoch, e.event, func.sum(e.amount))
        .where(e.event.in_(tuple(_HELD)), e.epoch >= oldest, before_end)
        .group_by("span_i", e.epoch, e.event)
    )
    for i, epoch, event, amount in view.conn.execute(held_rows):
        deltas[i].append((int(epoch), _HELD[event] * int(amount or 0)))
    issuance: defaultdict[int, list[tuple[int, int, int]]] = defaultdict(list)
    if partner_id is not None:
        for i, pid, epoch, event, amount, recovered in view.conn.execute(
            _net_issuance_rows(e.epoch >= oldest, before_end, by_span=span)
        ):
            issuance[i].append((pid, int(epoch), _net(event, amount, recovered)))
    held: defaultdict[int, int] = defaultdict(int)
    shares = _Shares(partner_id, defaultdict(int), defaultdict(int))
    expiry: dict[int, int | None] = {}
    out = []
    for i in range(-1, len(spans)):
        for epoch, points in deltas.get(i, ()):
            held[epoch] += points
        for pid, epoch, points in issuance.get(i, ()):
            shares.add(pid, epoch, points)
        if i < 0:
            continue
        end = spans.items[i].end
        total = 0
        for epoch, points in held.items():
            if epoch not in expiry:
                expiry[epoch] = calendar.expires_at(epoch)
            expires = expiry[epoch]
            if points > 0 and (expires is None or expires >= end):
                total += shares.part(epoch, points)
        out.append(total)
    return out


# --------------------------------------------------------------------------- members


def active_members(view: MirrorView, spans: Spans, *, partner_id: int | None) -> list[tuple[int, ...]]:
    """Per span: how many accounts had an earning (issue, batch item) or a redemption entry (at the partner)
    in each of :data:`ACTIVITY_WINDOWS` before the span's end, i.e. in ``[end - window, end)``.

    One pass in SQL: an account is active at ``end`` when its last activity before ``end`` is within the
    window, so each activity (time ``t``, the account's next at ``t_next``) counts at every span end in
    ``(t, min(t_next, t + window)]``, a run of consecutive spans; the runs are counted per first and last
    span (a ``GROUP BY``) and added up in Python."""
    e = LedgerEntry
    at = e.block_timestamp
    ends = [s.end for s in spans]
    longest = max(ACTIVITY_WINDOWS)
    acts = (
        select(
            at.label("t"),
            func.lead(at).over(partition_by=e.account, order_by=(at, e.seq)).label("t_next"),
        )
        .where(
            e.event.in_(_ACTIVITY),
            at >= literal_column(str(ends[0] - longest), Integer),
            at < literal_column(str(ends[-1]), Integer),
            *_partner(e.partner_id, partner_id),
        )
        .subquery()
    )
    t, t_next = acts.c.t, acts.c.t_next

    def until(window: int) -> ColumnElement[Any]:
        cap = t + literal_column(str(window), Integer)
        return case((t_next.is_(None) | (t_next > cap), cap), else_=t_next)

    keys = [_rank(t, ends).label("w_from")] + [
        _rank(until(w), ends).label(f"w_to{n}") for n, w in enumerate(ACTIVITY_WINDOWS)
    ]
    query = select(*keys, func.count()).group_by(*(k.name for k in keys))
    runs = [[0] * (len(spans) + 1) for _ in ACTIVITY_WINDOWS]
    for row in view.conn.execute(query):
        first, count = row[0], row[-1]
        for n, last in enumerate(row[1:-1]):
            runs[n][first] += count
            runs[n][last] -= count
    counts: list[list[int]] = []
    for diff in runs:
        running, column = 0, []
        for i in range(len(spans)):
            running += diff[i]
            column.append(running)
        counts.append(column)
    return [tuple(c[i] for c in counts) for i in range(len(spans))]


@dataclass(frozen=True, slots=True)
class PurchaseCycles:
    """Purchases in a span and the gaps between a member's successive ones there: their number and total
    length (seconds)."""

    purchases: int = 0
    gaps: int = 0
    gap_seconds: int = 0

    @property
    def mean(self) -> float | None:
        return self.gap_seconds / self.gaps if self.gaps else None


def purchase_cycles(view: MirrorView, spans: Spans, *, partner_id: int | None) -> list[PurchaseCycles]:
    """Per span: purchases (issues and batch items with reason :data:`PURCHASE`) and the gaps between each
    member's successive purchases in the span. The gaps of one member add up to its last purchase's time
    less its first's, and number one less than its purchases, so SQL sums them per member."""
    e = LedgerEntry
    at = e.block_timestamp
    per_member = (
        select(
            spans.index(at).label("span_i"),
            func.min(at).label("first_t"),
            func.max(at).label("last_t"),
            func.count().label("n"),
        )
        .where(
            e.event.in_(_EARNINGS),
            e.reason == PURCHASE,
            *spans.within(at),
            *_partner(e.partner_id, partner_id),
        )
        .group_by("span_i", e.account)
        .subquery()
    )
    m = per_member.c
    query = select(m.span_i, func.sum(m.n), func.sum(m.n - 1), func.sum(m.last_t - m.first_t)).group_by(
        m.span_i
    )
    out = [PurchaseCycles() for _ in spans]
    for i, purchases, gaps, seconds in view.conn.execute(query):
        out[i] = PurchaseCycles(int(purchases or 0), int(gaps or 0), int(seconds or 0))
    return out


def enrolments(db: Session, spans: Spans, *, partner_id: int | None) -> list[int]:
    """Per span: memberships begun in it (``memberships.enrolled_at``; with one partner or any: a member
    enrolled with two partners counts twice)."""
    m = Membership
    at = m.enrolled_at
    query = (
        select(spans.index(at).label("span_i"), func.count())
        .where(*spans.within(at), *_partner(m.partner_id, partner_id))
        .group_by("span_i")
    )
    out = [0] * len(spans)
    for i, count in db.execute(query):
        out[i] = int(count)
    return out


# --------------------------------------------------------------------------- prices


def price_spans(prices: Iterable[Price], start: int, end: int) -> tuple[Spans, list[Price | None]]:
    """``[start, end)`` cut wherever a price takes effect, and the price in force in each span (the latest
    with ``effective_from`` at or before the span's start; None before the first)."""
    ordered = sorted(prices, key=lambda p: p.effective_from)
    bounds = [start, *(p.effective_from for p in ordered if start < p.effective_from < end), end]
    spans = Spans.cut(bounds)
    starts = [p.effective_from for p in ordered]
    in_force = []
    for span in spans:
        k = bisect.bisect_right(starts, span.start)
        in_force.append(ordered[k - 1] if k else None)
    return spans, in_force


@dataclass(frozen=True, slots=True)
class Amounts:
    """What a partner owes for the points it issued (net of reversals) at the issue price, and what it is
    owed for the points redeemed with it (net of refunds) at the redeem price; the operator keeps the
    difference (``margin``)."""

    currency: str
    due_from_partner: Decimal
    due_to_partner: Decimal

    @property
    def margin(self) -> Decimal:
        return _DECIMAL.subtract(self.due_from_partner, self.due_to_partner)

    def __add__(self, other: Amounts) -> Amounts:
        assert other.currency == self.currency
        return Amounts(
            self.currency,
            _DECIMAL.add(self.due_from_partner, other.due_from_partner),
            _DECIMAL.add(self.due_to_partner, other.due_to_partner),
        )


def amounts(f: Flows, price: Price) -> Amounts:
    return Amounts(
        price.currency,
        _DECIMAL.multiply(Decimal(price.issue_price), Decimal(f.issued_net)),
        _DECIMAL.multiply(Decimal(price.redeem_price), Decimal(f.redeemed_net)),
    )


def decimal_text(value: Decimal) -> str:
    """A decimal as plain text (never an exponent)."""
    return format(value, "f")
