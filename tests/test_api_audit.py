"""The audit trail over HTTP, after the scripted scenario (tests/api_scenario.py), on both databases.

Each filter of ``/v1/audit/entries`` selects exactly what an independent query of the mirror's
``ledger_entries`` selects; the cursor walks every entry once even when entries arrive between two pages;
the CSV and JSON Lines exports hold exactly the filtered entries in seq order, with the figures of the
entries, pinned at the block they began at and read in keyset pages; the hash-chain head equals the
contract's ``ledgerHead()``; reconciliation of the scenario is clean (and reports a figure altered by
hand); the supply series ends at the contract's totals; the timelock's operations show (empty without a
timelock, scheduled / executed / cancelled with one); and only auditor and admin keys get in.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_scenario import Service
from eth_utils.address import to_checksum_address
from fastapi.testclient import TestClient
from sqlalchemy import ColumnElement, event, or_, select, update
from sqlalchemy.orm import Session
from test_indexer_governance import timelocked_ledger

from api import Settings, create_app
from api._db import migrate_all
from api._export import ENTRY_FIELDS, EntryFilters, encode_csv, encode_jsonl, export_rows, mirrored_seq
from api._keys import create_key
from api._ratelimit import RateLimiter
from api.routers.audit import EntryPublic
from chain import Points, ReasonCode
from conftest import (
    ACTIVE,
    AnvilNode,
    chain_ledger,
    mirror_engine,
    new_customer,
    random_ref,
)
from indexer import ENTRY_EVENTS, Indexer, IndexerConfig, LedgerEntry, LedgerState, SupplyPoint

pytestmark = pytest.mark.anvil

CALLERS_REFUSED = {"anonymous": 401, "expired": 401, "revoked": 401, "partner_a": 403, "member_a": 403}
ENDPOINTS = (
    "/v1/audit/entries",
    "/v1/audit/export",
    "/v1/audit/supply",
    "/v1/audit/head",
    "/v1/audit/reconciliation",
    "/v1/audit/admin-operations",
)


# --------------------------------------------------------------------------- helpers


def _walk(service: Service, limit: int = 500, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = service.get("auditor", "/v1/audit/entries", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= limit
        entries += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


def _seqs(service: Service, *where: ColumnElement[bool]) -> list[int]:
    """The independent answer: seqs of the mirror's entries matching ``where``, oldest first."""
    with service.engine.connect() as conn:
        return list(conn.execute(select(LedgerEntry.seq).where(*where).order_by(LedgerEntry.seq)).scalars())


def _entries(service: Service, *where: ColumnElement[bool]) -> list[LedgerEntry]:
    with Session(service.engine) as session:
        rows = list(session.scalars(select(LedgerEntry).where(*where).order_by(LedgerEntry.seq)))
        session.expunge_all()
        return rows


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + bytes(value).hex()


def _expected(e: LedgerEntry) -> dict[str, Any]:
    """The figures an entry must carry, computed here from the mirror's row."""
    return {
        "seq": e.seq,
        "kind": e.event,
        "block_number": e.block_number,
        "block_timestamp": e.block_timestamp,
        "tx_hash": _hex(e.tx_hash),
        "log_index": e.log_index,
        "partner_id": e.partner_id,
        "account": None if e.account is None else to_checksum_address(e.account),
        "counterparty": None if e.counterparty is None else to_checksum_address(e.counterparty),
        "epoch": e.epoch,
        "amount": e.amount,
        "value": e.value,
        "reason": e.reason,
        "ref": _hex(e.ref),
        "item_ref": _hex(e.item_ref),
        "original_seq": e.original_seq,
        "settled_value": e.settled_value,
        "handover_kind": e.kind,
        "entry_hash": _hex(e.entry_hash),
        "head": _hex(e.head),
    }


def _issue_one(service: Service) -> None:
    """One more issue on chain (through the chain layer), mirrored."""
    partner = chain_ledger(service.ledger, service.ledger.actors.partner)
    partner.issue(service.people[1].address, Points(3), random_ref(), ReasonCode(1)).wait()
    service.sync()


# --------------------------------------------------------------------------- who may read


@pytest.mark.parametrize("url", ENDPOINTS)
def test_only_auditor_and_admin_keys_read_the_audit_trail(api_service: Service, url: str) -> None:
    for caller, status in CALLERS_REFUSED.items():
        response = api_service.get(caller, url)
        assert response.status_code == status, (caller, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == (
            "/problems/unauthenticated" if status == 401 else "/problems/forbidden"
        )
    for caller in ("auditor", "admin"):
        assert api_service.get(caller, url).status_code == 200, caller


# --------------------------------------------------------------------------- entries


def test_every_entry_carries_all_its_columns(api_service: Service) -> None:
    assert tuple(EntryPublic.model_fields) == ENTRY_FIELDS
    everything = _walk(api_service)
    rows = _entries(api_service)
    assert [e["seq"] for e in everything] == [r.seq for r in reversed(rows)]
    by_seq = {e["seq"]: e for e in everything}
    for row in rows:
        entry = by_seq[row.seq]
        assert tuple(entry) == ENTRY_FIELDS
        assert {k: entry[k] for k in _expected(row)} == _expected(row)
    # Every kind of entry the scenario has shows, with a hash chain linking them.
    assert {e["kind"] for e in everything} >= {"PointsIssued", "PointsIssuedInBatch", "IssuanceReversed"}
    assert everything[0]["head"] == "0x" + api_service.ledger.contract.functions.ledgerHead().call().hex()


FILTERS: dict[str, tuple[dict[str, Any], list[ColumnElement[bool]]]] = {
    "partner": ({"partner": ACTIVE}, [LedgerEntry.partner_id == ACTIVE]),
    "kind repeated": (
        {"kind": ["PointsRedeemed", "PointsExpired"]},
        [LedgerEntry.event.in_(("PointsRedeemed", "PointsExpired"))],
    ),
    "kind comma list": (
        {"kind": "PointsIssued, PointsIssuedInBatch"},
        [LedgerEntry.event.in_(("PointsIssued", "PointsIssuedInBatch"))],
    ),
    "reason": ({"reason": 6}, [LedgerEntry.reason == 6]),
    "partner and kind": (
        {"partner": ACTIVE, "kind": "PointsIssued"},
        [LedgerEntry.partner_id == ACTIVE, LedgerEntry.event == "PointsIssued"],
    ),
}


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_selects_what_an_independent_query_selects(api_service: Service, name: str) -> None:
    params, where = FILTERS[name]
    expected = _seqs(api_service, *where)
    assert 0 < len(expected) < len(_seqs(api_service))
    for limit in (4, 500):
        assert [e["seq"] for e in _walk(api_service, limit, **params)] == expected[::-1]


def test_the_account_filter_matches_either_address_column(api_service: Service) -> None:
    for person in api_service.people:
        lower = person.address.lower()
        expected = _seqs(api_service, or_(LedgerEntry.account == lower, LedgerEntry.counterparty == lower))
        assert expected
        for given in (person.address, lower):
            assert [e["seq"] for e in _walk(api_service, account=given)] == expected[::-1]
    # A customer who received a transfer and was migrated away shows in the counterparty role too.
    received = _seqs(api_service, LedgerEntry.counterparty == api_service.people[2].address.lower())
    assert received and set(received) <= {
        e["seq"] for e in _walk(api_service, account=api_service.people[2].address)
    }


def test_block_and_time_ranges_are_inclusive(api_service: Service) -> None:
    rows = _entries(api_service)
    blocks = sorted({r.block_number for r in rows})
    low, high = blocks[len(blocks) // 4], blocks[3 * len(blocks) // 4]
    expected = [r.seq for r in rows if low <= r.block_number <= high]
    assert 0 < len(expected) < len(rows)
    got = _walk(api_service, from_block=low, to_block=high)
    assert [e["seq"] for e in got] == expected[::-1]
    assert {got[0]["block_number"], got[-1]["block_number"]} == {low, high}
    times = sorted({r.block_timestamp for r in rows})
    start, end = times[1], times[-2]
    expected = [r.seq for r in rows if start <= r.block_timestamp <= end]
    assert 0 < len(expected) < len(rows)
    assert [e["seq"] for e in _walk(api_service, from_time=start, to_time=end)] == expected[::-1]
    assert [e["seq"] for e in _walk(api_service, from_block=high)] == [
        r.seq for r in rows if r.block_number >= high
    ][::-1]


def test_the_order_reference_matches_an_item_or_an_entry_reference(api_service: Service) -> None:
    rows = _entries(api_service)
    item = next(r for r in rows if r.event == "PointsIssuedInBatch")
    reversed_issue = next(r for r in rows if r.event == "IssuanceReversed" and r.original_seq is not None)
    redemption = next(r for r in rows if r.event == "PointsRedeemed")
    for ref in (item.item_ref, item.ref, reversed_issue.item_ref, redemption.ref):
        assert ref is not None
        expected = [r.seq for r in rows if ref in (r.item_ref, r.ref)]
        got = [e["seq"] for e in _walk(api_service, order_ref="0x" + ref.hex().upper())]
        assert got == expected[::-1] and got
    # A returned order: its issue and the reversal share the order reference.
    returned = {e["seq"] for e in _walk(api_service, order_ref=_hex(reversed_issue.item_ref))}
    assert {reversed_issue.seq, reversed_issue.original_seq} <= returned
    assert _walk(api_service, order_ref="0x" + "00" * 31 + "01") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "PointsMinted"}, "query.kind"),
        ({"kind": ["PointsIssued", "Bogus,PointsRedeemed"]}, "query.kind"),
        ({"from_block": 10, "to_block": 9}, "query.from_block"),
        ({"from_time": 10, "to_time": 9}, "query.from_time"),
        ({"account": "0x70997970c51812dc3A010C7d01b50e0d17dc79C8"}, "query.account"),
        ({"account": "0x1234"}, "query.account"),
        ({"order_ref": "0x" + "ab" * 31}, "query.order_ref"),
        ({"partner": -1}, "query.partner"),
        ({"reason": 70_000}, "query.reason"),
        ({"to_block": 2**63}, "query.to_block"),
        ({"cursor": "x1"}, "query.cursor"),
        ({"limit": 501}, "query.limit"),
    ],
)
def test_bad_filters_are_invalid_requests_naming_the_field(
    api_service: Service, params: dict[str, Any], field: str
) -> None:
    for url in ("/v1/audit/entries", "/v1/audit/export"):
        if url.endswith("export") and field in ("query.cursor", "query.limit"):
            continue
        response = api_service.get("auditor", url, params=params)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["type"] == "/problems/invalid-request"
        assert field in [e["field"] for e in body["errors"]]


def test_unknown_kinds_are_named_and_every_kind_is_accepted(api_service: Service) -> None:
    body = api_service.get("auditor", "/v1/audit/entries", params={"kind": "Bogus"}).json()
    assert "Bogus" in body["detail"] and "PointsIssued" in body["errors"][0]["message"]
    names = sorted(spec.name for spec in ENTRY_EVENTS.values())
    response = api_service.get("auditor", "/v1/audit/entries", params={"kind": ",".join(names), "limit": 1})
    assert response.status_code == 200 and len(response.json()["data"]) == 1


def test_pages_walk_every_entry_once_while_new_entries_arrive(api_service: Service) -> None:
    before = _seqs(api_service)
    first = api_service.get("auditor", "/v1/audit/entries", params={"limit": 7}).json()
    as_of = first["as_of"]["block_number"]
    seen = [e["seq"] for e in first["data"]]
    cursor = first["next_cursor"]
    _issue_one(api_service)  # one more entry, mirrored between the first and the second page
    assert len(_seqs(api_service)) == len(before) + 1
    while cursor is not None:
        page = api_service.get("auditor", "/v1/audit/entries", params={"limit": 7, "cursor": cursor}).json()
        seen += [e["seq"] for e in page["data"]]
        cursor = page["next_cursor"]
    assert seen == before[::-1]  # no gap, no repeat, and the newcomer not in the middle
    fresh = api_service.get("auditor", "/v1/audit/entries", params={"limit": 7}).json()
    assert fresh["data"][0]["seq"] == before[-1] + 1 and fresh["data"][0]["kind"] == "PointsIssued"
    assert fresh["as_of"]["block_number"] > as_of


# --------------------------------------------------------------------------- export


def _csv_rows(body: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(body.decode()))
    assert tuple(reader.fieldnames or ()) == ENTRY_FIELDS
    return list(reader)


def _as_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


EXPORTED: dict[str, tuple[dict[str, Any], list[ColumnElement[bool]]]] = {
    "everything": ({}, []),
    "partner": ({"partner": ACTIVE}, [LedgerEntry.partner_id == ACTIVE]),
    "redemptions and refunds": (
        {"kind": "PointsRedeemed,RedemptionRefunded"},
        [LedgerEntry.event.in_(("PointsRedeemed", "RedemptionRefunded"))],
    ),
}


@pytest.mark.parametrize("name", EXPORTED)
def test_exports_hold_exactly_the_filtered_entries_in_seq_order(api_service: Service, name: str) -> None:
    params, where = EXPORTED[name]
    listed = _walk(api_service, **params)[::-1]  # the same entries as the list, oldest first
    assert [e["seq"] for e in listed] == _seqs(api_service, *where) != []
    rows = {r.seq: r for r in _entries(api_service)}
    as_of = api_service.get("auditor", "/v1/audit/entries", params={"limit": 1}).json()["as_of"]
    jsonl = api_service.get("auditor", "/v1/audit/export", params=params | {"format": "jsonl"})
    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    disposition = jsonl.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"block-{as_of['block_number']}.jsonl" in disposition
    assert jsonl.headers["x-mirror-block"] == str(as_of["block_number"])
    objects = [json.loads(line) for line in jsonl.content.decode().splitlines()]
    assert objects == listed
    for obj in objects:
        assert tuple(obj) == ENTRY_FIELDS
        assert {k: obj[k] for k in _expected(rows[obj["seq"]])} == _expected(rows[obj["seq"]])

    exported = api_service.get("auditor", "/v1/audit/export", params=params | {"format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"block-{as_of['block_number']}.csv" in exported.headers["content-disposition"]
    assert exported.content.count(b"\r\n") == len(listed) + 1
    table = _csv_rows(exported.content)
    assert [int(r["seq"]) for r in table] == [e["seq"] for e in listed]
    for line, entry in zip(table, listed, strict=True):
        assert line == {k: _as_csv(v) for k, v in entry.items()}
        assert int(line["amount"] or 0) == (rows[entry["seq"]].amount or 0)


def test_an_unfiltered_export_ends_at_the_chains_head(api_service: Service) -> None:
    response = api_service.get("auditor", "/v1/audit/export")  # CSV by default
    assert response.headers["content-type"].startswith("text/csv")
    last = _csv_rows(response.content)[-1]
    views = api_service.ledger.contract.functions
    assert int(last["seq"]) == views.ledgerSequence().call() == int(response.headers["x-ledger-seq"])
    assert last["head"] == "0x" + views.ledgerHead().call().hex() == response.headers["x-ledger-head"]


def test_an_empty_export_is_a_header_or_nothing(api_service: Service) -> None:
    params = {"from_block": 2**62}
    csv_body = api_service.get("auditor", "/v1/audit/export", params=params).content
    assert csv_body == (",".join(ENTRY_FIELDS) + "\r\n").encode()
    assert api_service.get("auditor", "/v1/audit/export", params=params | {"format": "jsonl"}).content == b""
    assert api_service.get("auditor", "/v1/audit/export", params={"format": "xml"}).status_code == 422


def test_an_export_is_pinned_at_its_start_and_read_in_keyset_pages(api_service: Service) -> None:
    """Without HTTP: entries mirrored while an export streams are left out, and the rows come from
    ``LIMIT`` pages after the last seq seen (no OFFSET, one short read per page)."""
    engine = api_service.engine
    with engine.connect() as conn:
        block = conn.execute(select(LedgerState.seq)).scalar()
        upto, head = mirrored_seq(conn, api_service.ledger.w3.eth.block_number)
    assert upto == block and head is not None
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "ledger_entries" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        rows = export_rows(engine, EntryFilters(), upto_seq=upto, page_size=10)
        first = [next(rows) for _ in range(3)]
        _issue_one(api_service)  # an entry arrives while the export is half-way
        statements.clear()
        rest = list(rows)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    exported = [r["seq"] for r in first + rest]
    assert exported == list(range(exported[0], upto + 1)) == [s for s in _seqs(api_service) if s <= upto]
    assert max(_seqs(api_service)) > upto
    assert len(statements) == len(exported) // 10  # the pages after the first (the last one short)
    for statement, parameters in statements:
        assert "ledger_entries.seq >" in statement and "LIMIT" in statement
        if "OFFSET" in statement:  # SQLite's dialect always adds OFFSET 0
            assert list(parameters)[-1] == 0
    # The encoders: the same rows, whichever way they are chunked.
    lines = b"".join(encode_jsonl(iter(first))).decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [r["seq"] for r in first]
    assert len(list(csv.reader(io.StringIO(b"".join(encode_csv(iter(first))).decode())))) == 4


# --------------------------------------------------------------------------- supply


def test_the_supply_series_ends_at_the_contracts_totals(api_service: Service) -> None:
    body = api_service.get("auditor", "/v1/audit/supply").json()
    views = api_service.ledger.contract.functions
    last = body["points"][-1]
    totals = {
        "total_issued": views.totalIssued().call(),
        "total_redeemed": views.totalRedeemed().call(),
        "total_expired": views.totalExpired().call(),
        "total_reversed": views.totalReversed().call(),
        "total_refunded": views.totalRefunded().call(),
    }
    assert {k: last[k] for k in totals} == totals == {k: body["now"][k] for k in totals}
    live, pending = views.outstandingSupply().call(), views.pendingExpiry().call()
    assert last["outstanding"] == live + pending == body["now"]["outstanding"]
    assert body["settlement_value"] == views.settlementValue().call()
    assert last["liability_value"] == last["outstanding"] * body["settlement_value"]
    assert (body["now"]["outstanding_supply"], body["now"]["pending_expiry"]) == (live, pending)
    assert body["now"]["liability_value"] == live * body["settlement_value"]
    assert body["as_of"]["time"] == api_service.chain_time()
    # The whole series: the mirror's supply history, each total never decreasing.
    with api_service.engine.connect() as conn:
        history = conn.execute(select(SupplyPoint).order_by(SupplyPoint.block_number)).all()
    assert [p["block_number"] for p in body["points"]] == [h.block_number for h in history]
    assert body["rows"] == len(history) and body["sampled"] is False
    for key in totals:
        series = [p[key] for p in body["points"]]
        assert series == sorted(series)


def test_a_long_supply_series_is_sampled_evenly_keeping_the_first_and_last(api_service: Service) -> None:
    full = api_service.get("auditor", "/v1/audit/supply").json()["points"]
    n = len(full)
    assert n > 8
    for most in (2, 3, 4, 5, 7, n - 1, n, n + 1):
        body = api_service.get("auditor", "/v1/audit/supply", params={"max_points": min(most, 1000)}).json()
        points = body["points"]
        assert len(points) <= most and body["sampled"] == (n > most) and body["rows"] == n
        assert points[0] == full[0] and points[-1] == full[-1]
        index = [full.index(p) for p in points]
        steps = {b - a for a, b in itertools.pairwise(index[:-1])}
        assert len(steps) <= 1  # evenly spaced (but the step to the last point)
    assert len(api_service.get("auditor", "/v1/audit/supply", params={"max_points": 2}).json()["points"]) == 2
    assert api_service.get("auditor", "/v1/audit/supply", params={"max_points": 1}).status_code == 422
    assert api_service.get("auditor", "/v1/audit/supply", params={"max_points": 1001}).status_code == 422


def test_supply_in_a_block_or_time_range(api_service: Service) -> None:
    full = api_service.get("auditor", "/v1/audit/supply").json()["points"]
    low, high = full[2]["block_number"], full[-3]["block_number"]
    ranged = api_service.get(
        "auditor", "/v1/audit/supply", params={"from_block": low, "to_block": high}
    ).json()
    assert ranged["points"] == [p for p in full if low <= p["block_number"] <= high]
    start = full[3]["timestamp"]
    timed = api_service.get("auditor", "/v1/audit/supply", params={"from_time": start}).json()
    assert timed["points"] == [p for p in full if p["timestamp"] >= start]
    bad = api_service.get("auditor", "/v1/audit/supply", params={"from_block": 9, "to_block": 8})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.from_block"


# --------------------------------------------------------------------------- head and reconciliation


def test_the_head_equals_the_contracts_at_the_mirrors_block_and_shows_the_lag(api_service: Service) -> None:
    views = api_service.ledger.contract.functions
    body = api_service.get("auditor", "/v1/audit/head").json()
    head = "0x" + views.ledgerHead().call().hex()
    assert body["matches"] is True
    assert (
        body["mirror"]["head"]
        == body["chain_at_mirror_block"]["head"]
        == body["chain_latest"]["head"]
        == head
    )
    assert body["mirror"]["seq"] == body["chain_latest"]["seq"] == views.ledgerSequence().call()
    assert body["mirror_block"] == body["mirror"]["block_number"] == body["as_of"]["block_number"]
    assert body["mirror"]["block_hash"] == body["chain_at_mirror_block"]["block_hash"]
    assert body["lag_blocks"] == body["chain_block"] - body["mirror_block"] >= 0
    # The chain moves on before the mirror: still equal at the mirror's block, the lag shows.
    partner = chain_ledger(api_service.ledger, api_service.ledger.actors.partner)
    partner.issue(api_service.people[0].address, Points(2), random_ref(), ReasonCode(1)).wait()
    try:
        behind = api_service.get("auditor", "/v1/audit/head").json()
        assert behind["matches"] is True and behind["lag_blocks"] >= 1
        assert behind["chain_latest"]["seq"] == behind["mirror"]["seq"] + 1 == views.ledgerSequence().call()
        assert (
            behind["chain_latest"]["head"]
            == "0x" + views.ledgerHead().call().hex()
            != behind["mirror"]["head"]
        )
    finally:
        api_service.sync()
    caught_up = api_service.get("auditor", "/v1/audit/head").json()
    assert caught_up["lag_blocks"] == 0 and caught_up["mirror"] == caught_up["chain_latest"]


def test_without_the_chain_live_reads_are_not_ready(api_service: Service) -> None:
    services = api_service.services
    w3, services.w3 = services.w3, None
    try:
        for url in ("/v1/audit/head", "/v1/audit/reconciliation"):
            response = api_service.get("auditor", url)
            assert response.status_code == 503 and response.json()["type"] == "/problems/not-ready"
        assert api_service.get("auditor", "/v1/audit/supply").status_code == 200
    finally:
        services.w3 = w3


def test_the_scenario_reconciles_once_per_mirrored_block(api_service: Service) -> None:
    body = api_service.get("auditor", "/v1/audit/reconciliation").json()
    assert (body["ok"], body["differences"]) == (True, []), body["differences"]
    assert body["contract"] == api_service.ledger.address
    head = api_service.get("auditor", "/v1/audit/head").json()
    assert (body["block_number"], body["block_hash"]) == (head["mirror_block"], head["mirror"]["block_hash"])
    again = api_service.get("admin", "/v1/audit/reconciliation").json()
    assert again == body | {"cached": True}


def test_reconciliation_reports_a_figure_altered_in_the_mirror(api_service: Service) -> None:
    views = api_service.ledger.contract.functions
    issued = views.totalIssued().call()
    with api_service.engine.begin() as conn:
        conn.execute(update(LedgerState).values(total_issued=LedgerState.total_issued + 1))
    try:
        api_service.ledger.node.mine()
        api_service.sync()  # a new block: a new reconciliation
        body = api_service.get("auditor", "/v1/audit/reconciliation").json()
        assert body["ok"] is False and body["cached"] is False
        assert {"what": "totalIssued", "key": None, "mirror": issued + 1, "chain": issued} in body[
            "differences"
        ]
    finally:
        with api_service.engine.begin() as conn:
            conn.execute(update(LedgerState).values(total_issued=LedgerState.total_issued - 1))
    api_service.ledger.node.mine()
    api_service.sync()
    assert api_service.get("auditor", "/v1/audit/reconciliation").json()["ok"] is True


# --------------------------------------------------------------------------- admin operations


def test_a_ledger_without_a_timelock_has_no_admin_operations(api_service: Service) -> None:
    body = api_service.get("auditor", "/v1/audit/admin-operations").json()
    assert (body["timelock"], body["min_delay"], body["data"]) == (None, None, [])
    assert body["as_of"]["block_number"] > 0
    for status in ("scheduled", "executed", "cancelled"):
        assert (
            api_service.get("auditor", "/v1/audit/admin-operations", params={"status": status}).json()["data"]
            == []
        )
    assert (
        api_service.get("auditor", "/v1/audit/admin-operations", params={"status": "done"}).status_code == 422
    )


@pytest.fixture
def timelocked(anvil_node: AnvilNode, database: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A ledger behind a CoalitionTimelock with two operations scheduled and one of them cancelled,
    mirrored, served with an auditor key."""
    snapshot = anvil_node.snapshot()
    try:
        delay = 2 * 24 * 3600
        ledger, timelock, deployment_block = timelocked_ledger(anvil_node, delay)
        operator = new_customer().address
        register = ledger.call_of("registerPartner", 7, operator, operator, True, True, 5_000)
        kept = timelock.schedule(register, salt=random_ref()).wait()
        dropped = timelock.schedule(ledger.call_of("setTransfersEnabled", True)).wait()
        timelock.cancel(dropped).wait()
        engine = mirror_engine(database)
        migrate_all(engine)
        with Indexer(
            anvil_node.w3,
            engine,
            ledger.address,
            deployment_block=deployment_block,
            config=IndexerConfig(window=16),
            timelock=timelock.address,
        ) as indexer:
            indexer.sync()
        app = create_app(
            Settings(database_url=database, public_url="http://testserver"),
            engine=engine,
            contract=ledger.address,
            w3=anvil_node.w3,
            limiter=RateLimiter(per_key="100000/minute", per_client="100000/minute"),
        )
        with app.state.services.session() as db:
            token = create_key(
                db, role="auditor", name="auditor", partner_id=None, now=anvil_node.timestamp()
            ).token
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
            yield {
                "client": client,
                "timelock": timelock.address,
                "delay": delay,
                "kept": kept,
                "dropped": dropped,
                "register": register,
                "ledger": ledger.address,
            }
    finally:
        anvil_node.revert(snapshot)


def test_the_timelocks_operations_show_scheduled_and_cancelled(timelocked: dict[str, Any]) -> None:
    client: TestClient = timelocked["client"]
    body = client.get("/v1/audit/admin-operations").json()
    assert body["timelock"] == timelocked["timelock"] and body["min_delay"] == timelocked["delay"]
    by_id = {op["operation_id"]: op for op in body["data"]}
    kept, dropped = timelocked["kept"], timelocked["dropped"]
    assert set(by_id) == {_hex(kept.id), _hex(dropped.id)}
    op = by_id[_hex(kept.id)]
    assert (op["status"], op["function"], op["target"], op["ready_at"], op["salt"]) == (
        "scheduled",
        "registerPartner",
        timelocked["ledger"],
        kept.ready_at,
        _hex(kept.salt),
    )
    assert op["data"] == _hex(timelocked["register"].data) and op["ready"] is False
    assert (op["call_index"], op["delay"], op["timelock"]) == (0, timelocked["delay"], timelocked["timelock"])
    assert op["executed_tx"] is None and op["cancelled_tx"] is None
    cancelled = by_id[_hex(dropped.id)]
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_block"] >= cancelled["scheduled_block"]
    scheduled = client.get("/v1/audit/admin-operations", params={"status": "scheduled"}).json()["data"]
    assert [o["operation_id"] for o in scheduled] == [_hex(kept.id)]
    # The mirror of a timelocked ledger reconciles too (the operations' timestamps included).
    reconciliation = client.get("/v1/audit/reconciliation").json()
    assert reconciliation["ok"] is True, reconciliation["differences"]
