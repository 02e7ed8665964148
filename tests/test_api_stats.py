"""Programme metrics over HTTP after the scripted scenario (tests/api_scenario.py), each recomputed here from
the raw ledger entries by its stated formula (entry by entry, with the contract's ``epochExpiresAt`` for
expiry times) and, for all time, checked against the contract's totals (``outstandingSupply``,
``totalExpired + pendingExpiry``, issued and redeemed net)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from api_scenario import Service
from sqlalchemy import select
from sqlalchemy.orm import Session

from api._tables import Membership
from conftest import ACTIVE, ISSUE_ONLY
from indexer import LedgerEntry

pytestmark = pytest.mark.anvil

DAY = 86_400
HELD = {
    "PointsIssued": 1,
    "PointsIssuedInBatch": 1,
    "PointsRedeemed": -1,
    "PointsReversed": -1,
    "PointsRefunded": 1,
    "PointsExpired": -1,
}


@dataclass
class Model:
    """The metrics from the raw entries, by the formulas the API states."""

    entries: list[LedgerEntry]
    expires: dict[int, int]  # epoch -> epochExpiresAt
    now: int
    enrolled: list[tuple[int, int]]  # (partner, enrolled_at)

    def _mine(self, e: LedgerEntry, partner: int | None) -> bool:
        return partner is None or e.partner_id == partner

    def flows(self, partner: int | None, start: int, end: int) -> tuple[int, int]:
        issued = redeemed = 0
        for e in self.entries:
            if start <= e.block_timestamp < end and e.partner_id is not None and self._mine(e, partner):
                if e.event in ("PointsIssued", "PointsBatchIssued"):
                    issued += e.amount or 0
                elif e.event == "IssuanceReversed":
                    issued -= e.recovered or 0
                elif e.event == "PointsRedeemed":
                    redeemed += e.amount or 0
                elif e.event == "RedemptionRefunded":
                    redeemed -= e.amount or 0
        return issued, redeemed

    def held(self, before: int) -> dict[int, int]:
        """Points held per epoch after every entry before ``before``."""
        held: defaultdict[int, int] = defaultdict(int)
        for e in self.entries:
            if e.block_timestamp < before and e.event in HELD:
                held[e.epoch or 0] += HELD[e.event] * (e.amount or 0)
        return held

    def shares(self, partner: int | None, before: int) -> tuple[dict[int, int], dict[int, int]]:
        """Net issuance per epoch before ``before``: the partner's and everyone's."""
        mine: defaultdict[int, int] = defaultdict(int)
        total: defaultdict[int, int] = defaultdict(int)
        for e in self.entries:
            if e.block_timestamp >= before or e.epoch is None:
                continue
            if e.event in ("PointsIssued", "PointsBatchIssued"):
                points = e.amount or 0
            elif e.event == "IssuanceReversed":
                points = -(e.recovered or 0)
            else:
                continue
            total[e.epoch] += points
            if e.partner_id == partner:
                mine[e.epoch] += points
        return mine, total

    def _part(self, partner: int | None, epoch: int, points: int, shares: Any) -> int:
        if partner is None:
            return points
        mine, total = shares
        return points * mine[epoch] // total[epoch] if total[epoch] else 0

    def expired(self, partner: int | None, start: int, end: int) -> int:
        swept: defaultdict[int, int] = defaultdict(int)
        for e in self.entries:
            if e.event == "PointsExpired" and e.batch_seq is None:
                swept[e.epoch or 0] += e.amount or 0
        held = self.held(self.now + 1)
        shares = self.shares(partner, self.now + 1)
        total = 0
        for epoch, at in self.expires.items():
            if start <= at < end and at <= self.now:
                total += self._part(partner, epoch, swept[epoch] + held[epoch], shares)
        by_seq = {e.seq: e for e in self.entries}
        for e in self.entries:  # refunded points that expired on arrival
            if (
                e.event == "PointsExpired"
                and e.batch_seq is not None
                and start <= e.block_timestamp < end
                and (partner is None or by_seq[e.batch_seq].partner_id == partner)
            ):
                total += e.amount or 0
        return total

    def outstanding(self, partner: int | None, end: int) -> int:
        held = self.held(end)
        shares = self.shares(partner, end)
        return sum(
            self._part(partner, epoch, points, shares)
            for epoch, points in held.items()
            if points > 0 and self.expires[epoch] >= end
        )

    def active(self, partner: int | None, end: int, window: int) -> int:
        return len(
            {
                e.account
                for e in self.entries
                if e.event in ("PointsIssued", "PointsIssuedInBatch", "PointsRedeemed")
                and end - window <= e.block_timestamp < end
                and self._mine(e, partner)
            }
        )

    def purchase_cycle(self, partner: int | None, start: int, end: int) -> tuple[int, float | None]:
        times: defaultdict[str, list[int]] = defaultdict(list)
        for e in self.entries:
            if (
                e.event in ("PointsIssued", "PointsIssuedInBatch")
                and e.reason == 1
                and start <= e.block_timestamp < end
                and self._mine(e, partner)
            ):
                times[e.account or ""].append(e.block_timestamp)
        gaps = [b - a for ts in times.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)]
        return sum(len(ts) for ts in times.values()), (sum(gaps) / len(gaps) if gaps else None)

    def enrolments(self, partner: int | None, start: int, end: int) -> int:
        return sum(1 for p, at in self.enrolled if start <= at < end and (partner is None or p == partner))

    def figures(self, partner: int | None, start: int, end: int, value: int) -> dict[str, Any]:
        issued, redeemed = self.flows(partner, start, end)
        expired = self.expired(partner, start, end)
        outstanding = self.outstanding(partner, end)
        purchases, cycle = self.purchase_cycle(partner, start, end)
        return {
            "issued_net": issued,
            "redeemed_net": redeemed,
            "expired": expired,
            "redemption_rate": redeemed / issued if issued > 0 else None,
            "breakage": expired / issued if issued > 0 else None,
            "outstanding_points": outstanding,
            "outstanding_value": outstanding * value,
            "active_members_30d": self.active(partner, end, 30 * DAY),
            "active_members_90d": self.active(partner, end, 90 * DAY),
            "purchases": purchases,
            "average_purchase_cycle_s": cycle,
            "enrolments": self.enrolments(partner, start, end),
        }


@pytest.fixture(scope="module")
def model(api_service: Service) -> Model:
    ledger = api_service.ledger
    with Session(api_service.engine) as db:
        entries = list(db.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
        enrolled = [(m.partner_id, m.enrolled_at) for m in db.scalars(select(Membership))]
        db.expunge_all()
    epochs = {e.epoch for e in entries if e.epoch is not None}
    expires = {epoch: ledger.call("epochExpiresAt", epoch) for epoch in range(max(epochs) + 1)}
    return Model(entries, expires, api_service.chain_time(), enrolled)


def _without_span(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("start", "end", "label")}


def test_all_time_metrics_equal_the_contract(api_service: Service, model: Model) -> None:
    call = api_service.ledger.call
    body = api_service.get("auditor", "/v1/stats").json()
    totals = body["totals"]
    assert body["partner_id"] is None and body["settlement_value"] == call("settlementValue")
    assert totals["issued_net"] == call("totalIssued") - call("totalReversed")
    assert totals["redeemed_net"] == call("totalRedeemed") - call("totalRefunded")
    assert totals["expired"] == call("totalExpired") + call("pendingExpiry") > 0
    assert totals["outstanding_points"] == call("outstandingSupply") > 0
    assert totals["outstanding_value"] == call("outstandingSupply") * call("settlementValue")
    assert totals == model.figures(None, body["start"], body["end"], body["settlement_value"])
    assert totals["enrolments"] == 2 and totals["average_purchase_cycle_s"] is not None


def test_metrics_per_partner_and_range_equal_the_raw_entries(api_service: Service, model: Model) -> None:
    now = api_service.chain_time()
    latest_issue = max(e.block_timestamp for e in model.entries if e.event == "PointsIssued")
    ranges = [
        (None, None),
        (latest_issue - DAY, now + 1),
        (0, latest_issue),
        (now - DAY, latest_issue + 31 * DAY),
    ]
    for partner in (None, ACTIVE, ISSUE_ONLY):
        for start, end in ranges:
            query = {} if start is None else {"from": start, "to": end}
            if partner is not None:
                query["partner"] = partner
            body = api_service.get("admin", "/v1/stats", params=query).json()
            expected = model.figures(partner, body["start"], body["end"], body["settlement_value"])
            assert body["totals"] == expected, (partner, start, end)
    # Thirty-one days after the last activity nobody is active over 30 days, everybody over 90.
    late = api_service.get("admin", "/v1/stats", params={"from": 0, "to": latest_issue + 31 * DAY}).json()
    assert late["totals"]["active_members_30d"] == 0 < late["totals"]["active_members_90d"]


@pytest.mark.parametrize("period", ["day", "epoch"])
def test_metrics_per_period(api_service: Service, model: Model, period: str) -> None:
    for partner in (None, ACTIVE):
        query: dict[str, Any] = {"period": period} | ({} if partner is None else {"partner": partner})
        body = api_service.get("auditor", "/v1/stats", params=query).json()
        periods = body["periods"]
        assert len(periods) > 2 and periods[0]["start"] == body["start"] and periods[-1]["end"] == body["end"]
        for p in periods:
            assert _without_span(p) == model.figures(partner, p["start"], p["end"], body["settlement_value"])
        for figure in ("issued_net", "redeemed_net", "expired", "purchases", "enrolments"):
            assert sum(p[figure] for p in periods) == body["totals"][figure]
        assert periods[-1]["outstanding_points"] == body["totals"]["outstanding_points"]
        assert sum(p["expired"] for p in periods) > 0


def test_who_may_read_the_metrics(api_service: Service) -> None:
    assert api_service.get("anonymous", "/v1/stats").status_code == 401
    assert api_service.get("member_a", "/v1/stats").status_code == 403
    assert api_service.get("partner_a", "/v1/stats").status_code == 403
    assert api_service.get("partner_a", f"/v1/stats?partner={ISSUE_ONLY}").status_code == 403
    assert api_service.get("partner_a", f"/v1/stats?partner={ACTIVE}").status_code == 200
    for caller in ("auditor", "admin"):
        assert api_service.get(caller, f"/v1/stats?partner={ISSUE_ONLY}").status_code == 200
    assert api_service.get("admin", "/v1/stats?partner=999").status_code == 404
    bad = api_service.get("admin", "/v1/stats?from=10&to=5")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.from"


def test_the_formulas_are_in_the_openapi(api_service: Service) -> None:
    schemas = api_service.client.get("/openapi.json").json()["components"]["schemas"]
    for field, spec in schemas["StatsFiguresPublic"]["properties"].items():
        assert spec.get("description"), field
    assert "rounded down per epoch" in schemas["StatementPublic"]["properties"]["breakage"]["description"]
