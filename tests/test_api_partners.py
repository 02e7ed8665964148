"""Partners over HTTP after the scripted scenario (tests/api_scenario.py): the public directory, positions
cross-checked against the contract's views (all time) and the raw ledger entries (any range), every
partner and the coalition pool summing to zero, settlement statements under effective-dated prices
recomputed entry by entry, and who may read and write what."""

from __future__ import annotations

import bisect
import itertools
from decimal import Decimal
from typing import Any

import pytest
from api_scenario import Service
from sqlalchemy import select
from sqlalchemy.orm import Session

from api._tables import Price
from conftest import ACTIVE, ISSUE_ONLY, ROTATED_PARTNER
from indexer import LedgerEntry, MirrorView

pytestmark = pytest.mark.anvil

FIGURES = ("issued", "reversed", "redeemed", "refunded", "settled", "position", "open")
#: the contract's ``partner(id)`` struct, in order
PARTNER_STRUCT = [
    *("id", "operator", "settlement", "status", "can_issue", "can_accept", "allowance"),
    *("issued", "redeemed", "issued_value", "redeemed_value", "reversed", "refunded"),
    *("reversed_value", "refunded_value", "settled_points", "settled_value"),
]
STATUS = {1: "active", 2: "suspended", 3: "offboarded"}


def _partner_ids(service: Service) -> list[int]:
    return sorted(service.ledger.call("partnerIds"))


def _entries(service: Service) -> list[LedgerEntry]:
    with Session(service.engine) as db:
        entries = list(db.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
        db.expunge_all()
        return entries


def _expected_flows(
    service: Service, partner_id: int | None, start: int, end: int
) -> dict[str, dict[str, int]]:
    """A partner's (None: every partner's) figures in [start, end), entry by entry from the raw rows."""
    points = dict.fromkeys(("issued", "reversed", "redeemed", "refunded", "settled"), 0)
    value = dict(points)
    for e in _entries(service):
        if not start <= e.block_timestamp < end or e.partner_id is None:
            continue
        if partner_id is not None and e.partner_id != partner_id:
            continue
        figure, amount = {
            "PointsIssued": ("issued", e.amount),
            "PointsBatchIssued": ("issued", e.amount),
            "IssuanceReversed": ("reversed", e.recovered),
            "PointsRedeemed": ("redeemed", e.amount),
            "RedemptionRefunded": ("refunded", e.amount),
            "SettlementRecorded": ("settled", e.settled_points),
        }.get(e.event, (None, None))
        if figure is None:
            continue
        assert amount is not None
        points[figure] += amount
        value[figure] += (e.settled_value or 0) if figure == "settled" else amount * (e.value or 0)
    for figures in (points, value):
        net = (figures["redeemed"] - figures["refunded"]) - (figures["issued"] - figures["reversed"])
        if partner_id is None:
            figures["position"] = -net
            figures["open"] = -net + figures["settled"]
        else:
            figures["position"] = net
            figures["open"] = net - figures["settled"]
    return {"points": points, "value": value}


def _figures(body: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {kind: {f: body[kind][f] for f in FIGURES} for kind in ("points", "value")}


def _middle(service: Service) -> int:
    """A time in the middle of the scenario: the resume after its pause (every kind of entry came before,
    issues of both partners after)."""
    resume = next(e for e in _entries(service) if e.event == "PauseChanged" and not e.paused)
    return resume.block_timestamp


# --------------------------------------------------------------------------- the directory


def test_the_directory_is_public_and_follows_the_ledger(api_service: Service) -> None:
    body = api_service.get("anonymous", "/v1/partners").json()
    assert [p["id"] for p in body["data"]] == _partner_ids(api_service)
    assert body["next_cursor"] is None and body["as_of"]["time"] == api_service.chain_time()
    for p in body["data"]:
        on_chain = dict(zip(PARTNER_STRUCT, api_service.ledger.call("partner", p["id"]), strict=True))
        assert p["status"] == STATUS[on_chain["status"]]
        assert (p["can_issue"], p["can_accept"]) == (on_chain["can_issue"], on_chain["can_accept"])
    names = {p["id"]: p["name"] for p in body["data"]}
    assert names[ACTIVE] == "Bean There Coffee" and names[ISSUE_ONLY] == "Skyline Air"
    assert names[ROTATED_PARTNER] == f"Partner {ROTATED_PARTNER}"
    assert "offboarded" in {p["status"] for p in body["data"]}
    one = api_service.get("anonymous", f"/v1/partners/{ACTIVE}").json()
    assert one["name"] == "Bean There Coffee" and one["spend_at"] == "all stores" and "as_of" in one
    missing = api_service.get("anonymous", "/v1/partners/999")
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    bad = api_service.client.get("/v1/partners", headers={"Authorization": "Bearer lpk_nope_nope"})
    assert bad.status_code == 401


def test_only_the_admin_sets_a_profile(api_service: Service) -> None:
    url = f"/v1/partners/{ROTATED_PARTNER}/profile"
    profile = {"name": "Northwind Books", "spend_at": "every shop", "website": "https://northwind.example"}
    assert api_service.client.put(url, json=profile).status_code == 401
    for caller in ("partner_a", "auditor", "member_a"):
        refused = api_service.client.put(url, json=profile, headers=api_service.headers(caller))
        assert refused.status_code == 403
    admin = api_service.headers("admin")
    sneaky = api_service.client.put(url, json=profile | {"partner_id": 1, "updated_at": 0}, headers=admin)
    assert sneaky.status_code == 422
    assert {e["field"] for e in sneaky.json()["errors"]} == {"body.partner_id", "body.updated_at"}
    script = api_service.client.put(url, json=profile | {"website": "javascript:x"}, headers=admin)
    assert script.status_code == 422
    assert api_service.client.put("/v1/partners/999/profile", json=profile, headers=admin).status_code == 404
    put = api_service.client.put(url, json=profile, headers=admin)
    assert put.status_code == 200 and put.json()["name"] == "Northwind Books"
    read = api_service.get("anonymous", f"/v1/partners/{ROTATED_PARTNER}").json()
    assert {k: read[k] for k in profile} == profile
    # The whole profile is replaced: a field left out is cleared.
    api_service.client.put(url, json={"name": "Northwind"}, headers=admin)
    read = api_service.get("anonymous", f"/v1/partners/{ROTATED_PARTNER}").json()
    assert (read["name"], read["spend_at"], read["website"]) == ("Northwind", None, None)


# --------------------------------------------------------------------------- positions


def test_all_time_positions_equal_the_contract_and_the_mirror(api_service: Service) -> None:
    ledger = api_service.ledger
    with api_service.engine.connect() as conn:
        view = MirrorView(conn, ledger.address)
        for pid in _partner_ids(api_service):
            body = api_service.get("auditor", f"/v1/partners/{pid}/position").json()
            assert body["as_of"]["block_number"] == ledger.w3.eth.block_number
            points, value = body["points"], body["value"]
            assert [points["position"], value["position"]] == ledger.call("partnerPosition", pid)
            assert [points["open"], value["open"]] == ledger.call("partnerOpenPosition", pid)
            mirrored = view.partner_position(pid), view.partner_open_position(pid)
            assert (points["position"], value["position"]) == (mirrored[0].net_points, mirrored[0].net_value)
            assert (points["open"], value["open"]) == (mirrored[1].net_points, mirrored[1].net_value)
            on_chain = dict(zip(PARTNER_STRUCT, ledger.call("partner", pid), strict=True))
            for figure in ("issued", "reversed", "redeemed", "refunded"):
                assert points[figure] == on_chain[figure]
                assert value[figure] == on_chain[f"{figure}_value"]
            assert points["settled"] == on_chain["settled_points"]
            assert value["settled"] == on_chain["settled_value"]
            assert body["periods"] == [] and body["period"] is None
    pool = api_service.get("admin", "/v1/coalition/position").json()
    assert [pool["points"]["position"], pool["value"]["position"]] == ledger.call("coalitionPosition")
    assert [pool["points"]["open"], pool["value"]["open"]] == ledger.call("coalitionOpenPosition")
    # The scenario exercises every figure: reversals, a refund, a settlement, two settlement values.
    mine = api_service.get("auditor", f"/v1/partners/{ACTIVE}/position").json()["points"]
    assert all(mine[f] != 0 for f in ("issued", "reversed", "redeemed", "refunded", "settled"))


def test_a_range_equals_the_raw_entries(api_service: Service) -> None:
    middle, now = _middle(api_service), api_service.chain_time()
    for start, end in ((0, middle), (middle, now + 1), (middle - 1, middle + 1)):
        for pid in (ACTIVE, ISSUE_ONLY):
            url = f"/v1/partners/{pid}/position?from={start}&to={end}"
            body = api_service.get("admin", url).json()
            assert (body["start"], body["end"]) == (start, end)
            assert _figures(body) == _expected_flows(api_service, pid, start, end)
        pool = api_service.get("auditor", f"/v1/coalition/position?from={start}&to={end}").json()
        assert _figures(pool) == _expected_flows(api_service, None, start, end)


@pytest.mark.parametrize("period", ["day", "week", "month", "epoch"])
def test_periods_cover_the_range_and_sum_to_the_totals(api_service: Service, period: str) -> None:
    for url in (f"/v1/partners/{ACTIVE}/position", "/v1/coalition/position"):
        body = api_service.get("auditor", f"{url}?period={period}").json()
        periods = body["periods"]
        assert periods and body["period"] == period
        assert periods[0]["start"] == body["start"] and periods[-1]["end"] == body["end"]
        assert all(a["end"] == b["start"] for a, b in itertools.pairwise(periods))
        for kind in ("points", "value"):
            for figure in FIGURES:
                assert sum(p[kind][figure] for p in periods) == body[kind][figure]
        assert len({p["label"] for p in periods}) == len(periods)
    if period == "epoch":
        # An epoch begins when the one validity earlier expires (the scenario's pause came first).
        validity = api_service.ledger.call("validityDuration")  # in epochs
        for p in periods[1:]:
            epoch = int(p["label"].removeprefix("epoch "))
            if epoch >= validity:
                assert p["start"] == api_service.ledger.call("epochExpiresAt", epoch - validity)
    if period == "day":
        assert all(p["start"] % 86_400 == 0 for p in periods[1:])


def test_partners_and_the_pool_sum_to_zero_in_any_range(api_service: Service) -> None:
    middle, now = _middle(api_service), api_service.chain_time()
    for query in (f"from={middle}&to={now}", f"from={middle - 1}&to={middle + 2}&period=day", ""):
        pool = api_service.get("auditor", f"/v1/coalition/position?{query}").json()
        bodies = [pool] + [
            api_service.get("admin", f"/v1/partners/{pid}/position?{query}").json()
            for pid in _partner_ids(api_service)
        ]
        for kind in ("points", "value"):
            for figure in ("position", "open"):
                assert sum(b[kind][figure] for b in bodies) == 0
                for i in range(len(pool["periods"])):
                    assert sum(b["periods"][i][kind][figure] for b in bodies) == 0
        assert pool["points"]["issued"] == sum(b["points"]["issued"] for b in bodies[1:])


def test_who_may_read_a_position(api_service: Service) -> None:
    url = f"/v1/partners/{ACTIVE}/position"
    assert api_service.get("anonymous", url).status_code == 401
    assert api_service.get("revoked", url).status_code == 401
    assert api_service.get("partner_b", url).status_code == 403
    assert api_service.get("member_a", url).status_code == 403
    for caller in ("partner_a", "auditor", "admin"):
        assert api_service.get(caller, url).status_code == 200
    assert api_service.get("partner_b", f"/v1/partners/{ISSUE_ONLY}/position").status_code == 200
    assert api_service.get("admin", "/v1/partners/999/position").status_code == 404
    assert api_service.get("anonymous", "/v1/coalition/position").status_code == 401
    assert api_service.get("partner_a", "/v1/coalition/position").status_code == 403
    assert api_service.get("auditor", "/v1/coalition/position").status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=100&to=100", "query.from"),
        ("from=200&to=100", "query.from"),
        ("from=-1", "query.from"),
        ("to=-5", "query.to"),
        ("from=99999999999", "query.from"),
        ("period=hour", "query.period"),
        ("from=0&to=100000000&period=day", "query.period"),
    ],
)
def test_a_bad_range_is_refused(api_service: Service, query: str, field: str) -> None:
    urls = (f"/v1/partners/{ACTIVE}/position", "/v1/coalition/position", f"/v1/partners/{ACTIVE}/statement")
    for url in urls:
        if "period" in query and "statement" in url:
            continue
        response = api_service.get("admin", f"{url}?{query}")
        assert response.status_code == 422, url
        assert response.headers["content-type"] == "application/problem+json"
        assert field in {e["field"] for e in response.json()["errors"]}


def test_four_hundred_periods_are_the_limit(api_service: Service) -> None:
    url = f"/v1/partners/{ACTIVE}/position?from=0&period=day&to="
    assert len(api_service.get("auditor", f"{url}{400 * 86_400}").json()["periods"]) == 400
    assert api_service.get("auditor", f"{url}{400 * 86_400 + 1}").status_code == 422


# --------------------------------------------------------------------------- prices and statements


def _admin_key_id(service: Service) -> str:
    return service.tokens["admin"].split("_")[1]


def test_prices_are_set_by_the_admin_for_the_future_only(api_service: Service) -> None:
    url = f"/v1/partners/{ISSUE_ONLY}/prices"
    now = api_service.chain_time()
    price = {"effective_from": now + 3600, "currency": "EUR", "issue_price": "0.0125", "redeem_price": "0.01"}
    assert api_service.post("anonymous", url, json=price).status_code == 401
    for caller in ("partner_b", "auditor"):
        assert api_service.post(caller, url, json=price).status_code == 403
    for bad in (
        {"effective_from": now - 1},
        {"effective_from": now},
        {"currency": "eur"},
        {"currency": "EURO"},
        {"issue_price": "-1"},
        {"redeem_price": "1e3"},
        {"issue_price": 0.5},
        {"created_by": "someone"},
        {"id": 7},
    ):
        response = api_service.post("admin", url, json=price | bad)
        assert response.status_code == 422, bad
        assert {e["field"] for e in response.json()["errors"]} == {f"body.{next(iter(bad))}"}
    assert api_service.post("admin", "/v1/partners/999/prices", json=price).status_code == 404
    created = api_service.post("admin", url, json=price | {"note": "launch"})
    assert created.status_code == 201
    body = created.json()
    assert body["created_by"] == _admin_key_id(api_service) and body["created_at"] == now
    assert {k: body[k] for k in price} == price and body["note"] == "launch"
    assert api_service.post("admin", url, json=price).status_code == 409
    listed = api_service.get("partner_b", url).json()
    assert [p["id"] for p in listed["data"]] == [body["id"]]
    assert listed["current"] is None  # it takes effect in an hour
    assert api_service.get("auditor", url).status_code == 200
    assert api_service.get("partner_a", url).status_code == 403
    assert api_service.get("anonymous", url).status_code == 401


def test_a_statement_charges_each_entry_at_the_price_in_force(api_service: Service) -> None:
    genesis = api_service.ledger.call("genesisTimestamp")
    middle, now = _middle(api_service), api_service.chain_time()
    # The API refuses past prices, so the history is written straight into the table.
    history = [
        (genesis - 100, "EUR", "0.0125", "0.01"),
        (middle, "EUR", "0.02", "0.0075"),
    ]
    with api_service.services.session() as db:
        for effective_from, currency, issue, redeem in history:
            db.add(
                Price(
                    partner_id=ACTIVE,
                    effective_from=effective_from,
                    currency=currency,
                    issue_price=issue,
                    redeem_price=redeem,
                    created_at=genesis - 200,
                    created_by=None,
                )
            )
    starts = [h[0] for h in history]
    for start, end in ((None, None), (middle - 1, now), (genesis, middle)):
        query = "" if start is None else f"?from={start}&to={end}"
        body = api_service.get("auditor", f"/v1/partners/{ACTIVE}/statement{query}").json()
        first, last = body["start"], body["end"]
        # Entry by entry: the price in force at the entry's time.
        due_from, due_to = Decimal(0), Decimal(0)
        for e in _entries(api_service):
            if e.partner_id != ACTIVE or not first <= e.block_timestamp < last:
                continue
            _, _, issue, redeem = history[bisect.bisect_right(starts, e.block_timestamp) - 1]
            if e.event in ("PointsIssued", "PointsBatchIssued"):
                due_from += Decimal(issue) * (e.amount or 0)
            elif e.event == "IssuanceReversed":
                due_from -= Decimal(issue) * (e.recovered or 0)
            elif e.event == "PointsRedeemed":
                due_to += Decimal(redeem) * (e.amount or 0)
            elif e.event == "RedemptionRefunded":
                due_to -= Decimal(redeem) * (e.amount or 0)
        [total] = body["totals"]
        assert total["currency"] == "EUR"
        assert Decimal(total["due_from_partner"]) == due_from and due_from != 0
        assert Decimal(total["due_to_partner"]) == due_to
        assert Decimal(total["margin"]) == due_from - due_to
        assert body["unpriced_issued_net"] == body["unpriced_redeemed_net"] == 0
        # Split at the price change when it falls inside the range.
        bounds = [first, *(s for s in starts if first < s < last), last]
        assert [(s["start"], s["end"]) for s in body["segments"]] == list(itertools.pairwise(bounds))
        assert sum(Decimal(s["amounts"]["margin"]) for s in body["segments"]) == due_from - due_to
        # The position figures are the position endpoint's for the same range.
        position = api_service.get("auditor", f"/v1/partners/{ACTIVE}/position?from={first}&to={last}").json()
        assert _figures(body) == _figures(position)
        assert body["issued_net"] == body["points"]["issued"] - body["points"]["reversed"]
        # Breakage is the stats' for the same partner and range (recomputed in tests/test_api_stats.py).
        stats = api_service.get("auditor", f"/v1/stats?partner={ACTIVE}&from={first}&to={last}").json()
        assert body["breakage"] == stats["totals"]["expired"]
    assert body["partner_name"] == "Bean There Coffee"


def test_a_statement_without_prices_says_what_is_unpriced(api_service: Service) -> None:
    body = api_service.get("admin", f"/v1/partners/{ROTATED_PARTNER}/statement").json()
    assert body["totals"] == [] and all(s["price"] is None and s["amounts"] is None for s in body["segments"])
    assert body["unpriced_issued_net"] == body["issued_net"]
    assert body["unpriced_redeemed_net"] == body["redeemed_net"]


def test_who_may_read_a_statement(api_service: Service) -> None:
    url = f"/v1/partners/{ACTIVE}/statement"
    assert api_service.get("anonymous", url).status_code == 401
    assert api_service.get("partner_b", url).status_code == 403
    assert api_service.get("member_a", url).status_code == 403
    for caller in ("partner_a", "auditor", "admin"):
        assert api_service.get(caller, url).status_code == 200
    assert api_service.get("admin", "/v1/partners/999/statement").status_code == 404
