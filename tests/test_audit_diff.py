"""The audit's two observers of the operator's copies: the mirror database and the HTTP API.

The scripted scenario (tests/api_scenario.py: every kind of entry), purchases computed with a published
rule set and sent by the batcher, and prices that split partner A's statement are built once per database.
Every test then verifies the chain with both observers: the clean copies have no difference; one thing
changed in the service's database (and undone afterwards) comes out as the differences it causes, named by
copy, subject and field, with what the chain says and what the copy says, and the exit code 1; a resumed
audit holds only the new entries; copies that cannot be read end the audit with typed errors.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from api_scenario import Service
from sqlalchemy import text

from api._batcher import Batcher
from api.audit import AuditTarget, Report, verify
from api.audit._decode import keccak
from api.audit._diff import ApiDiff, ApiUnavailable, MirrorDiff, MirrorUnavailable
from conftest import ACTIVE, AnvilNode, chain_ledger

pytestmark = pytest.mark.anvil

RULES: dict[str, Any] = {
    "earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}},
    "categories": {"coffee": "2"},
}


@dataclass
class Audited:
    service: Service
    rpc_url: str
    rule_hash: str
    purchases: list[dict[str, Any]]

    def target(self) -> AuditTarget:
        ledger = self.service.ledger
        return AuditTarget(rpc_url=self.rpc_url, ledger=ledger.address, from_block=ledger.deployment_block)

    def api(self, *, sample: int = 0) -> ApiDiff:
        return ApiDiff(
            "http://testserver", self.service.tokens["auditor"], client=self.service.client, sample=sample
        )

    def verify(self, *, sample: int = 0) -> Report:
        return verify(
            self.target(), observers=[MirrorDiff(self.service.database_url), self.api(sample=sample)]
        )

    def one(self, sql: str, **params: Any) -> Any:
        with self.service.engine.connect() as conn:
            return conn.execute(text(sql), params).one()

    def entry(self, seq: int) -> Any:
        return self.one("SELECT * FROM ledger_entries WHERE seq = :seq", seq=seq)


def _purchase(order_id: str, amount: int) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "member": {"customer_id": "cust-member_a"},
        "channel": "pos",
        "currency": "EUR",
        "amount": amount,
        "lines": [
            {"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 425},
            {"sku": "MUG", "category": "goods", "quantity": 1, "unit_price": amount - 850},
        ],
    }


def purchases_seq(service: Service) -> list[int]:
    """The ledger entries of the purchases: batch items after their header."""
    answer = service.get("auditor", "/v1/operations", params={"kind": "purchase"}).json()
    return sorted(p["seq"] for p in answer["data"])


@pytest.fixture(scope="module")
def audited(api_service: Service, anvil_node: AnvilNode) -> Audited:
    """The scenario plus purchases of partner A computed with its published rule set, confirmed on chain by
    the batcher and mirrored."""
    service = api_service
    created = service.post("admin", f"/v1/partners/{ACTIVE}/rule-sets", json=RULES)
    assert created.status_code in (200, 201), created.text
    digest = created.json()["hash"]
    assert service.post("admin", f"/v1/partners/{ACTIVE}/rule-sets/{digest}/activate").status_code == 200
    purchases = []
    for i, amount in enumerate((1250, 2000, 990)):
        answer = service.post("partner_a", "/v1/purchases", json=_purchase(f"audit-{i}", amount))
        assert answer.status_code == 201, answer.text
        purchases.append(answer.json())
    Batcher(
        service.engine,
        chain_ledger(service.ledger, service.ledger.actors.partner),
        ACTIVE,
        clock=lambda: float(service.chain_time()),
    ).drain()
    service.sync()
    # Prices set over time (each took effect when it was set, in the past now): partner A's statement is
    # split where each took effect, from its first settlement on and from the purchases on (and has an
    # unpriced segment before the first one, unless the ledger began in that very second).
    with service.engine.begin() as conn:
        settled = conn.execute(
            text("SELECT MIN(seq) FROM settlements WHERE partner_id = :p"), {"p": ACTIVE}
        ).scalar_one()
        times = [
            conn.execute(
                text("SELECT block_timestamp FROM ledger_entries WHERE seq = :s"), {"s": seq}
            ).scalar_one()
            for seq in (settled, purchases_seq(service)[0])
        ]
        for effective_from, issue, redeem in zip(times, ("0.01", "0.012"), ("0.008", "0.0095"), strict=True):
            conn.execute(
                text(
                    "INSERT INTO prices (partner_id, effective_from, currency, issue_price, redeem_price, "
                    "created_at) VALUES (:p, :t, 'EUR', :i, :r, :t)"
                ),
                {"p": ACTIVE, "t": effective_from, "i": issue, "r": redeem},
            )
    return Audited(service, str(anvil_node.w3.provider.endpoint_uri), digest, purchases)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- helpers

Found = tuple[str, str, str, Any, Any]


def found(report: Report) -> list[Found]:
    """(kind, subject, field, expected, found) of every difference, in a stable order."""
    out = [(d.kind, d.subject, d.field, d.expected, d.found) for d in report.differences]
    return sorted(out, key=lambda d: (d[0], d[1], d[2]))


def plus(n: int) -> Callable[[Any], Any]:
    """Adds ``n`` to a stored number of whichever type the database keeps it in (decimal text on SQLite)."""
    return lambda old: type(old)(int(old) + n) if not isinstance(old, Decimal) else old + n


@contextmanager
def changed(audited: Audited, table: str, where: dict[str, Any], **values: Any) -> Iterator[Any]:
    """Sets ``values`` (a value, or a function of the old one) in the one row of ``table`` matching ``where``
    of the service's database, and puts the old values back afterwards. Yields the old row."""
    condition = " AND ".join(f"{k} = :w_{k}" for k in where)
    keys = {f"w_{k}": v for k, v in where.items()}
    with audited.service.engine.begin() as conn:
        old = conn.execute(text(f"SELECT * FROM {table} WHERE {condition}"), keys).one()
        new = {k: v(getattr(old, k)) if callable(v) else v for k, v in values.items()}
        assignments = ", ".join(f"{k} = :v_{k}" for k in values)
        conn.execute(
            text(f"UPDATE {table} SET {assignments} WHERE {condition}"),
            keys | {f"v_{k}": v for k, v in new.items()},
        )
    try:
        yield old
    finally:
        with audited.service.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {table} SET {assignments} WHERE {condition}"),
                keys | {f"v_{k}": getattr(old, k) for k in values},
            )


@contextmanager
def removed(audited: Audited, seq: int) -> Iterator[Any]:
    """The mirror's entry ``seq`` deleted, and put back afterwards."""
    row = audited.entry(seq)
    with audited.service.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = :seq"), {"seq": seq})
    try:
        yield row
    finally:
        columns = list(row._fields)
        with audited.service.engine.begin() as conn:
            conn.execute(_insert(columns), dict(row._mapping))


def _insert(columns: list[str]) -> Any:
    return text(f"INSERT INTO ledger_entries ({', '.join(columns)}) VALUES (:{', :'.join(columns)})")


def _at(row: Any) -> str:
    return f"{row.event} at block {row.block_number}, log {row.log_index}"


@pytest.fixture
def purchase_seqs(audited: Audited) -> list[int]:
    return purchases_seq(audited.service)


# --------------------------------------------------------------------------- clean


def test_clean_copies_have_no_differences(audited: Audited) -> None:
    """Every entry, figure, rule set and sampled purchase the copies serve matches the chain."""
    mirror, api = MirrorDiff(audited.service.database_url), audited.api(sample=10)
    report = verify(audited.target(), observers=[mirror, api])
    assert report.differences == [], "\n".join(d.line() for d in report.differences)
    assert report.exit_code == 0 and report.checks["mirror"] == report.checks["api"] == 1
    # every entry was held against a row of each copy
    assert mirror._rows.compared == api._rows.compared == report.entries


# --------------------------------------------------------------------------- entries


def test_an_amount_changed_in_the_mirror_is_that_entrys_amount_in_both_copies(
    audited: Audited, purchase_seqs: list[int]
) -> None:
    seq = purchase_seqs[0]  # a batch item: no position, statement or balance is summed from its row
    with changed(audited, "ledger_entries", {"seq": seq}, amount=plus(1)) as row:
        report = audited.verify()
    amount = int(row.amount)
    assert found(report) == [
        ("api", f"entry {seq}", "amount", amount, amount + 1),
        ("mirror", f"entry {seq}", "amount", amount, amount + 1),
    ]
    assert report.exit_code == 1


def test_a_deleted_entry_is_one_missing_row_not_a_cascade(audited: Audited, purchase_seqs: list[int]) -> None:
    seq = purchase_seqs[1]
    with removed(audited, seq) as row:
        report = audited.verify()
    detail = f"no row with this seq; the next row is seq {seq + 1}"
    assert found(report) == [
        ("api", f"entry {seq}", "missing", _at(row), "missing"),
        ("mirror", f"entry {seq}", "missing", _at(row), "missing"),
    ]
    assert {d.detail for d in report.differences} == {detail}
    assert report.exit_code == 1


def test_two_entries_swapped_are_reported_as_reordered(audited: Audited, purchase_seqs: list[int]) -> None:
    first, second = purchase_seqs[0], purchase_seqs[1]
    with audited.service.engine.begin() as conn:
        for old, new in ((first, -1), (second, first), (-1, second)):
            conn.execute(
                text("UPDATE ledger_entries SET seq = :new WHERE seq = :old"), {"old": old, "new": new}
            )
    try:
        report = audited.verify()
    finally:
        with audited.service.engine.begin() as conn:
            for old, new in ((first, -1), (second, first), (-1, second)):
                conn.execute(
                    text("UPDATE ledger_entries SET seq = :new WHERE seq = :old"), {"old": old, "new": new}
                )
    # each entry is where the other should be: nothing else about them differs
    assert found(report) == [
        ("api", f"entry {first}", "seq", first, second),
        ("api", f"entry {second}", "seq", second, first),
        ("mirror", f"entry {first}", "seq", first, second),
        ("mirror", f"entry {second}", "seq", second, first),
    ]
    assert all(d.detail.startswith("reordered") for d in report.differences)
    assert report.exit_code == 1


def test_a_rule_hash_changed_in_the_mirror(audited: Audited, purchase_seqs: list[int]) -> None:
    header = purchase_seqs[0] - 1  # the purchases' batch header carries the rule hash
    forged = secrets.token_bytes(32)
    with changed(audited, "ledger_entries", {"seq": header}, rule_hash=forged) as row:
        report = audited.verify()
    assert row.event == "PointsBatchIssued" and "0x" + bytes(row.rule_hash).hex() == audited.rule_hash
    assert found(report) == [
        ("api", f"entry {header}", "rule_hash", audited.rule_hash, "0x" + forged.hex()),
        ("mirror", f"entry {header}", "rule_hash", audited.rule_hash, "0x" + forged.hex()),
    ]
    assert report.exit_code == 1


def test_rows_past_the_chains_last_entry_are_extra(audited: Audited) -> None:
    last = audited.one("SELECT MAX(seq) AS seq FROM ledger_entries").seq
    row = audited.entry(last)
    copy = dict(row._mapping) | {"seq": last + 1, "log_index": 999, "block_number": row.block_number - 1}
    columns = list(copy)
    with audited.service.engine.begin() as conn:
        conn.execute(_insert(columns), copy)
    try:
        report = audited.verify()
    finally:
        with audited.service.engine.begin() as conn:
            conn.execute(text("DELETE FROM ledger_entries WHERE seq = :seq"), {"seq": last + 1})
    # the API's export ends at its mirror's last entry of the mirrored block, which this row is not
    assert found(report) == [
        (
            "mirror",
            f"row {last + 1}",
            "extra",
            "no such entry on chain",
            f"{row.event} at block {row.block_number - 1}, log 999",
        )
    ]


# --------------------------------------------------------------------------- figures


def test_a_stale_balance_in_the_mirror_is_served_as_a_stale_wallet(audited: Audited) -> None:
    member = audited.service.people[1].address.lower()
    held = audited.one(
        "SELECT epoch, held FROM account_epochs WHERE account = :a AND held > 0 ORDER BY epoch DESC LIMIT 1",
        a=member,
    )
    epoch, points = int(held.epoch), int(held.held)
    with changed(audited, "account_epochs", {"account": member, "epoch": epoch}, held=plus(5)):
        report = audited.verify()
    differences = found(report)
    assert ("mirror", f"account {member}", f"held at epoch {epoch}", points, points + 5) in differences
    balance = next(d for d in differences if d[:3] == ("api", f"wallet {member}", "balance"))
    assert balance[4] == balance[3] + 5
    # the wallet's other figures follow from the same row; nothing else differs
    assert {d[:2] for d in differences} == {("mirror", f"account {member}"), ("api", f"wallet {member}")}
    assert {d[2] for d in differences if d[0] == "api"} <= {
        "balance",
        "epochs",
        "expiring_30d",
        "next_expiry_points",
    }
    assert report.exit_code == 1


def test_a_settlement_off_by_one_unit(audited: Audited) -> None:
    settlement = audited.one(
        "SELECT seq, partner_id, value FROM settlements WHERE partner_id = :p ORDER BY seq LIMIT 1", p=ACTIVE
    )
    seq, partner, value = int(settlement.seq), int(settlement.partner_id), int(settlement.value)
    settlement_time = audited.entry(seq).block_timestamp
    # the settlements table, and the entry the statement sums
    with (
        changed(audited, "settlements", {"seq": seq}, value=plus(1)),
        changed(audited, "ledger_entries", {"seq": seq}, settled_value=plus(1)),
    ):
        report = audited.verify()
    differences = found(report)
    assert ("mirror", f"settlement {seq}", "value", value, value + 1) in differences
    assert ("mirror", f"entry {seq}", "settled_value", value, value + 1) in differences
    assert ("api", f"entry {seq}", "settled_value", value, value + 1) in differences
    statement = {d[2]: d[3:] for d in differences if d[1] == f"partner {partner} statement"}
    settled = statement["value.settled"]
    assert settled[1] == settled[0] + 1
    assert set(statement) == {"value.settled", "value.open"}
    assert statement["value.open"][1] == statement["value.open"][0] - 1
    # the statement's segment under the first price (which took effect with this settlement), the position
    # and the coalition's, summed from the same entry, are off by the same unit
    segments = {d[1] for d in differences if " segment " in d[1]}
    assert len(segments) == 1
    (segment,) = segments
    assert f" [{settlement_time}, " in segment
    assert {d[1] for d in differences} - segments == {
        f"settlement {seq}",
        f"entry {seq}",
        f"partner {partner} statement",
        f"partner {partner} position",
        "coalition position",
    }
    assert {d[2] for d in differences if (d[0] == "api" and "partner" in d[1]) or "coalition" in d[1]} == {
        "value.settled",
        "value.open",
    }
    assert report.exit_code == 1


# --------------------------------------------------------------------------- rules and purchases


def test_a_rule_set_changed_after_use(audited: Audited) -> None:
    digest = bytes.fromhex(audited.rule_hash[2:])
    row = audited.one("SELECT canonical FROM rule_sets WHERE hash = :h", h=digest)
    altered = row.canonical.replace('"rates":{"EUR":"1"}', '"rates":{"EUR":"3"}')
    assert altered != row.canonical
    with changed(audited, "rule_sets", {"hash": digest}, canonical=altered):
        assert (
            audited.service.get("anonymous", f"/v1/rules/{audited.rule_hash}").json()["canonical"] == altered
        )
        report = audited.verify()
    assert found(report) == [
        (
            "rules",
            f"rule set {audited.rule_hash}",
            "keccak(canonical)",
            audited.rule_hash,
            "0x" + keccak(altered.encode()).hex(),
        )
    ]
    assert report.exit_code == 1


def test_a_purchase_whose_points_its_rule_set_does_not_give(audited: Audited) -> None:
    """The order's published inputs, recomputed with the published rule set, earn 16 points; the chain
    issued 21 under the order's reference."""
    op = audited.purchases[0]
    number = int(op["id"][3:])
    request = json.loads(audited.one("SELECT request FROM operations WHERE id = :id", id=number).request)
    assert request["amount"] == 1250 and op["points"] == 21
    # paid 10.00 of lines worth 12.50: each line counts x0.8, (8.50 x 2 + 4.00) x 0.8 = 16.8 -> 16
    forged = json.dumps(request | {"amount": 1000}, sort_keys=True, separators=(",", ":"))
    with changed(audited, "operations", {"id": number}, request=forged):
        report = audited.verify(sample=10)
    assert found(report) == [
        ("purchase", f"operation {op['id']}", "issued on chain", 16, 21),
        ("purchase", f"operation {op['id']}", "points", 16, 21),
    ]
    assert report.exit_code == 1


# --------------------------------------------------------------------------- unreachable copies


def test_copies_that_cannot_be_read_are_audit_errors(audited: Audited, tmp_path: Path) -> None:
    """An API that does not answer and a database without the mirror's tables end the audit with typed
    errors of the audit's tree (the command line's one line and exit code), not with differences."""
    api = ApiDiff("http://127.0.0.1:9", "a-key")  # nothing listens on the discard port
    api.ATTEMPTS = 1
    with pytest.raises(ApiUnavailable, match="GET /v1/audit/export: ConnectError") as refused:
        verify(audited.target(), observers=[api])
    assert "a-key" not in str(refused.value)
    with pytest.raises(MirrorUnavailable, match="no such table: ledger_entries"):
        verify(audited.target(), observers=[MirrorDiff(f"sqlite:///{tmp_path / 'empty.db'}")])


# --------------------------------------------------------------------------- a resumed audit


def test_a_resumed_audit_holds_the_new_entries_and_names_what_needs_them_all(
    audited: Audited, purchase_seqs: list[int], tmp_path: Path
) -> None:
    """A run verified at the block before the purchases finds both copies at a later entry (one difference
    each, not one per figure); the next run resumes from its checkpoint, holds only the purchases' entries
    (its hash chain continued from the copies' head before them) and is clean, naming the statement figures
    it could not recompute without the earlier entries."""
    header = purchase_seqs[0] - 1
    before = audited.entry(header).block_number - 1
    checkpoint = tmp_path / "checkpoint.json"
    first = verify(
        dataclasses.replace(audited.target(), block=before, checkpoint=checkpoint),
        observers=[MirrorDiff(audited.service.database_url), audited.api()],
    )
    last = purchase_seqs[-1]
    assert [(d.kind, d.subject, d.field, d.expected, d.found) for d in first.differences] == [
        ("mirror", "ledger_state", "seq", header - 1, last),
        ("api", "head", "seq", header - 1, last),
    ]
    mirror, api = MirrorDiff(audited.service.database_url), audited.api(sample=10)
    report = verify(dataclasses.replace(audited.target(), checkpoint=checkpoint), observers=[mirror, api])
    assert report.resumed_from == first.block_number
    assert report.differences == [], "\n".join(d.line() for d in report.differences)
    assert mirror._rows.compared == api._rows.compared == last - header + 1
    assert api.unchecked == [
        f"partner {ACTIVE}'s statement breakage and segments: the audit resumed at entry {header}, and they "
        "need every entry"
    ]
