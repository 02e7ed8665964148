"""Programme metrics: redemption rate, breakage, outstanding liability, active members, purchase cycle and
enrolments, for one partner or the whole coalition, over a time range and per period.

Each figure is one SQL aggregate over the mirror (:mod:`api._statements`), never the entries one by one;
each field's description states its formula. Admin and auditor keys read any partner's and the
coalition's; a partner key reads only its own (``partner=<its id>``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from indexer import MirrorView

from .._auth import Principal, ServicesDep, allow
from .._errors import Forbidden, NotFound, NotReady, Unauthenticated
from .._models import AsOfPublic, ResponseModel, problem_responses
from .._services import AsOf, Services
from .._statements import (
    ACTIVITY_WINDOWS,
    PURCHASE,
    Calendar,
    Period,
    Spans,
    active_members,
    breakage,
    enrolments,
    flows,
    make_spans,
    outstanding,
    purchase_cycles,
    resolve_range,
)
from .partners import FromQuery, PeriodQuery, ToQuery

__all__ = ["StatsFiguresPublic", "StatsPeriodPublic", "StatsPublic", "router"]

router = APIRouter(prefix="/v1", tags=["stats"])
Reader = Annotated[Principal, Depends(allow("admin", "auditor", "partner"))]
PartnerQuery = Annotated[
    int | None,
    Query(
        ge=0, lt=2**32, description="one partner's metrics (a partner key: its own id); none: the coalition's"
    ),
]

_DAYS = [w // 86_400 for w in ACTIVITY_WINDOWS]


class StatsFiguresPublic(ResponseModel):
    issued_net: int = Field(
        description="points issued in the range (issues and batches) less those reversals took back in it"
    )
    redeemed_net: int = Field(description="points redeemed in the range less those refunds gave back in it")
    expired: int = Field(
        description="breakage in points: for every epoch whose points expired in the range "
        "(epochExpiresAt in [start, end) and not after as_of.time), its expired points (swept since by "
        "PointsExpired entries, plus those still held unswept); plus refunded points that expired on arrival "
        "in the range. A partner's: its share of each epoch's (its net issuance into the epoch over every "
        "partner's, rounded down per epoch) and the expired arrivals of its own refunds"
    )
    redemption_rate: float | None = Field(
        description="redeemed_net / issued_net (null unless issued_net > 0)"
    )
    breakage: float | None = Field(description="expired / issued_net (null unless issued_net > 0)")
    outstanding_points: int = Field(
        description="the outstanding liability at the range's end: points live at end - 1 after every entry "
        "before end, i.e. held in epochs not expired then (outstandingSupply in a block at that time); a "
        "partner's: its share of each live epoch's points, by its net issuance into the epoch before end, "
        "rounded down per epoch"
    )
    outstanding_value: int = Field(
        description="outstanding_points x the current settlement value (settlement_value): settlement units"
    )
    active_members_30d: int = Field(
        description=f"accounts with an earning entry (issue or batch item) or a redemption (at the partner) "
        f"in the {_DAYS[0]} days before the range's end: [end - {ACTIVITY_WINDOWS[0]}, end)"
    )
    active_members_90d: int = Field(
        description=f"the same over the {_DAYS[1]} days before the range's end: "
        f"[end - {ACTIVITY_WINDOWS[1]}, end)"
    )
    purchases: int = Field(
        description=f"issues and batch items for a purchase (reason {PURCHASE}) in the range (by the partner)"
    )
    average_purchase_cycle_s: float | None = Field(
        description="mean seconds between a member's successive purchases, both in the range: the sum over "
        "members of (last purchase time - first) over the sum of (purchases - 1); null without two purchases "
        "by one member"
    )
    enrolments: int = Field(
        description="memberships begun in the range (memberships.enrolled_at; with the partner, or with any "
        "partner: a member enrolled with two counts twice)"
    )


class StatsPeriodPublic(StatsFiguresPublic):
    start: int = Field(description="the period's first second (the range's start for the first)")
    end: int = Field(description="the second after it (exclusive)")
    label: str = Field(examples=["2024-05-01", "2024-W18", "2024-05", "epoch 12"])


class StatsPublic(ResponseModel):
    partner_id: int | None = Field(description="the partner (null: the coalition)")
    start: int = Field(description="the range's first second (Unix time, block timestamps)")
    end: int = Field(description="the second after the range (exclusive)")
    period: Period | None
    settlement_value: int = Field(description="the current settlement value per point (outstanding_value)")
    totals: StatsFiguresPublic = Field(description="the whole range")
    periods: list[StatsPeriodPublic] = Field(description="per period (empty without ``period``)")
    as_of: AsOfPublic


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _figures(
    services: Services,
    view: MirrorView,
    as_of: AsOf,
    spans: Spans,
    *,
    partner_id: int | None,
    settlement_value: int,
) -> list[StatsFiguresPublic]:
    calendar = Calendar(view)
    moved = flows(view, spans, partner_id=partner_id)
    expired = breakage(view, calendar, as_of, spans, partner_id=partner_id)
    live = outstanding(view, calendar, spans, partner_id=partner_id)
    active = active_members(view, spans, partner_id=partner_id)
    cycles = purchase_cycles(view, spans, partner_id=partner_id)
    with services.session() as db:
        enrolled = enrolments(db, spans, partner_id=partner_id)
    return [
        StatsFiguresPublic(
            issued_net=f.issued_net,
            redeemed_net=f.redeemed_net,
            expired=x,
            redemption_rate=_ratio(f.redeemed_net, f.issued_net),
            breakage=_ratio(x, f.issued_net),
            outstanding_points=o,
            outstanding_value=o * settlement_value,
            active_members_30d=a[0],
            active_members_90d=a[1],
            purchases=c.purchases,
            average_purchase_cycle_s=c.mean,
            enrolments=n,
        )
        for f, x, o, a, c, n in zip(moved, expired, live, active, cycles, enrolled, strict=True)
    ]


@router.get(
    "/stats",
    response_model=StatsPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, NotReady),
    summary="Programme metrics",
)
def get_stats(
    caller: Reader,
    services: ServicesDep,
    partner: PartnerQuery = None,
    from_: FromQuery = None,
    to: ToQuery = None,
    period: PeriodQuery = None,
) -> StatsPublic:
    """The programme's metrics over ``[from, to)`` (block timestamps) for one partner or the coalition,
    and per period with ``period``; every field's description gives its formula. Admin and auditor keys:
    any; a partner key: only ``partner=<its own id>``."""
    if caller.role == "partner" and (partner is None or partner != caller.partner_id):
        raise Forbidden("a partner key reads only its own metrics (partner=<its id>)")
    with services.mirror() as (view, as_of):
        if partner is not None and view.partner(partner) is None:
            raise NotFound(f"the ledger has no partner {partner}")
        start, end = resolve_range(view, as_of, from_, to)
        spans = make_spans(Calendar(view), start, end, period)
        value = view.state().settlement_value
        whole = Spans.single(start, end)
        totals = _figures(services, view, as_of, whole, partner_id=partner, settlement_value=value)[0]
        periods = (
            []
            if period is None
            else _figures(services, view, as_of, spans, partner_id=partner, settlement_value=value)
        )
        return StatsPublic(
            partner_id=partner,
            start=start,
            end=end,
            period=period,
            settlement_value=value,
            totals=totals,
            periods=[
                StatsPeriodPublic(start=s.start, end=s.end, label=s.label, **f.model_dump())
                for s, f in zip(spans if period is not None else (), periods, strict=True)
            ],
            as_of=AsOfPublic.of(as_of),
        )
