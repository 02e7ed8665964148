"""``loyalty audit verify`` from the chain alone: the scripted scenario verifies, an order reference earned
twice is caught, faults and range limits of the node cost retries but never a range, a pruned node still
gives a log-based verdict and names what it could not check, a checkpoint resumes with only what is new, the
timelock's operations are checked, and the command line speaks in one line and an exit code.

The mirror and API diffs are in tests/test_audit_diff.py, the proofs in tests/test_audit_proofs.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_scenario import scenario_chain
from eth_account.signers.local import LocalAccount
from rpc_proxy import FaultProxy
from test_indexer_governance import timelocked_ledger
from test_indexer_reorg import blocks_of_issues, reorg

from api.audit import AuditTarget, Report, verify
from api.audit._decode import ENTRY_SIGNATURES, UnknownEntry, decode_log, shapes
from api.cli import main
from chain import Points, ReasonCode, load_artifact
from conftest import AnvilNode, Ledger, chain_ledger, mirror, random_ref

pytestmark = pytest.mark.anvil

#: every kind of entry the scenario holds (tests/api_scenario.py, conftest.ledger_activity)
SCENARIO_KINDS = {
    "PartnerRegistered",
    "PartnerAllowanceChanged",
    "PartnerStatusChanged",
    "PartnerOperatorChanged",
    "PartnerRightsChanged",
    "PartnerSettlementAddressChanged",
    "SettlementRecorded",
    "PointsIssued",
    "PointsBatchIssued",
    "PointsIssuedInBatch",
    "PointsRedeemed",
    "IssuanceReversed",
    "PointsReversed",
    "RedemptionRefunded",
    "PointsRefunded",
    "AccountMigrated",
    "PointsExpired",
    "PointsTransferred",
    "ConsentRevoked",
    "SettlementValueChanged",
    "TransfersEnabledChanged",
    "RoleChanged",
    "AdminHandoverChanged",
    "PauseChanged",
}


def url_of(node: AnvilNode) -> str:
    return str(node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]


def audit(ledger: Ledger, rpc_url: str, **target: Any) -> Report:
    return verify(
        AuditTarget(rpc_url=rpc_url, ledger=ledger.address, from_block=ledger.deployment_block, **target)
    )


@pytest.fixture(scope="module")
def scenario(anvil_node: AnvilNode) -> Iterator[tuple[Ledger, list[LocalAccount]]]:
    snapshot = anvil_node.snapshot()
    try:
        yield scenario_chain(anvil_node)
    finally:
        anvil_node.revert(snapshot)


@pytest.fixture
def rollback(anvil_node: AnvilNode) -> Iterator[None]:
    """What a test adds to the scenario's chain is gone after it."""
    snapshot = anvil_node.snapshot()
    yield
    anvil_node.revert(snapshot)


def chain_view(ledger: Ledger, fn: str, block: int | str = "latest") -> Any:
    return getattr(ledger.contract.functions, fn)().call(block_identifier=block)


# --------------------------------------------------------------------------- the decoder


def test_the_hand_written_entry_signatures_are_the_contracts_entries() -> None:
    """The auditor's own table (not the ABI) names every event that carries a seq, with the same argument
    types, names, order and indexed count: a change to the contract that the table misses fails here."""
    abi = load_artifact("LoyaltyLedger").abi
    compiled = {
        item["name"]: (
            sum(1 for p in item["inputs"] if p["indexed"]),
            tuple((p["type"], p["name"]) for p in item["inputs"]),
        )
        for item in abi
        if item["type"] == "event" and any(p["name"] == "seq" for p in item["inputs"])
    }
    mine = {name: (indexed, args) for name, indexed, args in ENTRY_SIGNATURES}
    assert mine == compiled
    # the indexed arguments come first (so topics, then data words, in declared order)
    for item in abi:
        if item["type"] == "event" and item["name"] in compiled:
            flags = [p["indexed"] for p in item["inputs"]]
            assert flags == sorted(flags, reverse=True), item["name"]


def test_a_word_the_contract_cannot_have_written_is_refused() -> None:
    """An address with dirty padding, a narrow integer beyond its width, a bool other than 0 or 1: no
    ledger wrote them, so the auditor refuses the log rather than reading it leniently."""
    topic0 = next(t for t, shape in shapes().items() if shape.name == "PointsIssuedInBatch")
    clean = {
        "topics": ["0x" + topic0.hex(), "0x" + "00" * 12 + "11" * 20],
        "data": "0x" + (7).to_bytes(32, "big").hex() + (5).to_bytes(32, "big").hex() + "ab" * 32,
        "blockNumber": "0x1",
        "blockHash": "0x" + "00" * 32,
        "transactionHash": "0x" + "00" * 32,
        "logIndex": "0x0",
    }
    assert decode_log(clean).args["to"] == "0x" + "11" * 20
    dirty_address = clean | {"topics": [clean["topics"][0], "0x" + "01" + "00" * 11 + "11" * 20]}
    wide_seq = clean | {"data": "0x" + (1 << 64).to_bytes(32, "big").hex() + clean["data"][66:]}
    for log in (dirty_address, wide_seq):
        with pytest.raises(UnknownEntry):
            decode_log(log)


# --------------------------------------------------------------------------- the scenario


def test_the_scenario_verifies_against_the_chain_and_a_mirror_that_went_through_a_reorg(
    scenario: tuple[Ledger, list[LocalAccount]], anvil_node: AnvilNode, rollback: None, tmp_path: Path
) -> None:
    from api.audit._diff import MirrorDiff

    ledger, _ = scenario
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with mirror(ledger, url, window=4) as indexer:
        indexer.sync()
        blocks_of_issues(ledger, anvil_node, 3, salt=1)
        indexer.sync()
        reorg(anvil_node, ledger, 2, salt=2)  # the last two blocks replaced: the indexer must undo them
        indexer.sync()
    report = verify(
        AuditTarget(rpc_url=url_of(anvil_node), ledger=ledger.address, from_block=ledger.deployment_block),
        observers=[MirrorDiff(url)],
    )
    assert report.differences == [] and report.unchecked == [], report.summary()
    assert report.ok and report.exit_code == 0
    assert set(report.counts) >= SCENARIO_KINDS
    assert report.entries == chain_view(ledger, "ledgerSequence", report.block_number)
    assert report.head == "0x" + chain_view(ledger, "ledgerHead", report.block_number).hex()
    assert report.block_hash == "0x" + bytes(anvil_node.w3.eth.get_block(report.block_number)["hash"]).hex()
    # every account and partner was held against the contract's views
    assert report.checks["balanceOf"] == report.accounts and report.checks["liveBalances"] == report.accounts
    assert report.checks["partner"] == report.partners == len(chain_view(ledger, "partnerIds"))
    assert report.checks["positions-sum"] == 1
    assert report.checks["mirror"] == 1


def test_an_order_reference_earned_twice_across_batches_is_reported(
    scenario: tuple[Ledger, list[LocalAccount]], anvil_node: AnvilNode, rollback: None
) -> None:
    """The contract keys an issuance by its batch root, so two batches naming the same order both go
    through; the auditor catches it, and names the partner, the order and the second batch."""
    ledger, people = scenario
    partner = chain_ledger(ledger, ledger.actors.partner)
    order = random_ref()
    first = partner.issue_batch(
        [people[0].address, people[1].address], [Points(5), Points(6)], [random_ref(), order], ReasonCode(1)
    ).wait()
    second = partner.issue_batch(
        [people[1].address, people[2].address], [Points(6), Points(7)], [order, random_ref()], ReasonCode(1)
    ).wait()
    assert first.status == second.status == 1
    report = audit(ledger, url_of(anvil_node))
    assert report.exit_code == 1
    assert [(d.kind, d.field, d.found) for d in report.differences] == [
        ("order-reference", "itemRef", "0x" + order.hex())
    ]
    (difference,) = report.differences
    partner_id = partner.partner_id_of(ledger.actors.partner)
    assert difference.subject == f"partner {partner_id}"
    assert second.transaction_hash.hex().removeprefix("0x") in difference.detail


# --------------------------------------------------------------------------- an unreliable node


def test_faults_and_range_limits_cost_retries_never_a_range(
    scenario: tuple[Ledger, list[LocalAccount]], anvil_node: AnvilNode
) -> None:
    ledger, _ = scenario
    clean = audit(ledger, url_of(anvil_node))
    proxy = FaultProxy(url_of(anvil_node))
    proxy.max_log_range = 7
    with proxy.running():
        proxy.inject(
            ["429", "reset", "503", "truncate", "stale", "pass", "stale", "rpc:-32000:busy"],
            method="eth_getLogs",
        )
        proxy.inject(["503", "reset"], method="eth_call")
        report = audit(ledger, proxy.url, block=clean.block_number)
    assert report.differences == [] and report.unchecked == [], report.summary()
    assert (report.entries, report.head, report.counts) == (clean.entries, clean.head, clean.counts)
    assert proxy.pending("eth_getLogs") == 0 and proxy.pending("eth_call") == 0
    assert {"429", "reset", "503", "truncate", "stale", "range-limit"} <= set(proxy.hits)
    # the ranges the node answered untouched cover every block from the deployment to the block verified
    covered = set()
    for low, high in proxy.log_ranges:
        covered |= set(range(low, high + 1))
    assert set(range(ledger.deployment_block, clean.block_number + 1)) <= covered


def test_a_pruned_node_still_rebuilds_from_logs_and_names_what_it_could_not_check(
    scenario: tuple[Ledger, list[LocalAccount]], anvil_node: AnvilNode, rollback: None
) -> None:
    ledger, _ = scenario
    old = anvil_node.w3.eth.block_number - 2
    blocks_of_issues(ledger, anvil_node, 6, salt=3)  # the block to verify falls behind the node's horizon
    archive = audit(ledger, url_of(anvil_node), block=old)
    proxy = FaultProxy(url_of(anvil_node))
    proxy.state_horizon = 4
    with proxy.running():
        report = audit(ledger, proxy.url, block=old)
    assert proxy.hits["pruned"] > 0
    assert report.differences == []
    assert report.exit_code == 2 and not report.ok
    assert report.unchecked and all("missing trie node" in u for u in report.unchecked)
    assert (report.entries, report.head) == (archive.entries, archive.head)
    assert report.entries == chain_view(ledger, "ledgerSequence", old)
    assert "ledgerHead" not in report.checks  # nothing counted as checked that was not
    assert archive.ok and archive.checks["ledgerHead"] == 1


# --------------------------------------------------------------------------- resuming


def test_a_checkpoint_resumes_with_only_what_is_new_and_is_dropped_after_a_reorg(
    scenario: tuple[Ledger, list[LocalAccount]], anvil_node: AnvilNode, rollback: None, tmp_path: Path
) -> None:
    ledger, people = scenario
    checkpoint = tmp_path / "audit.checkpoint.json"
    first = audit(ledger, url_of(anvil_node), checkpoint=checkpoint)
    assert first.ok and first.resumed_from is None and checkpoint.exists()

    partner = chain_ledger(ledger, ledger.actors.partner)
    partner.issue(people[0].address, Points(11), random_ref(), ReasonCode(1)).wait()
    partner.issue_batch([people[1].address], [Points(12)], [random_ref()], ReasonCode(1)).wait()
    second = audit(ledger, url_of(anvil_node), checkpoint=checkpoint)
    assert second.ok, second.summary()
    assert second.resumed_from == first.block_number
    assert second.entries == first.entries + 3
    fresh = audit(ledger, url_of(anvil_node), block=second.block_number)
    assert (second.head, second.counts) == (fresh.head, fresh.counts)

    # the checkpoint's block is replaced: it is ignored (and said so), and the run verifies from the start
    depth = anvil_node.w3.eth.block_number - second.block_number + 1
    reorg(anvil_node, ledger, depth, salt=4)
    third = audit(ledger, url_of(anvil_node), checkpoint=checkpoint)
    assert third.ok, third.summary()
    assert third.resumed_from is None
    assert any("reorganised away" in note for note in third.notes)
    assert third.entries == chain_view(ledger, "ledgerSequence", third.block_number)


# --------------------------------------------------------------------------- the timelock


def test_the_timelocks_scheduled_and_executed_operations_are_checked(
    anvil_node: AnvilNode, rollback: None
) -> None:
    delay = 3600
    ledger, timelock, deployment_block = timelocked_ledger(anvil_node, delay)
    operator = "0x" + "42" * 20
    op = timelock.schedule(
        ledger.call_of("registerPartner", 77, operator, operator, True, True, 1_000)
    ).wait()
    cancelled = timelock.schedule(ledger.call_of("setTransfersEnabled", True)).wait()
    timelock.cancel(cancelled).wait()
    anvil_node.advance_time(delay + 1)
    timelock.execute(op).wait()
    report = verify(
        AuditTarget(rpc_url=url_of(anvil_node), ledger=ledger.address, from_block=deployment_block)
    )
    assert report.ok, report.summary()
    states = {o["id"]: (o["state"], o["calls"][0]["target"]) for o in report.operations}
    assert states == {
        "0x" + op.id.hex(): ("executed", ledger.address.lower()),
        "0x" + cancelled.id.hex(): ("cancelled", ledger.address.lower()),
    }
    assert report.partners == 1 and report.checks["timelock-operations"] == 2


# --------------------------------------------------------------------------- the command line


def test_the_command_line_prints_a_verdict_a_report_and_proofs(
    scenario: tuple[Ledger, list[LocalAccount]],
    anvil_node: AnvilNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, people = scenario
    rpc = url_of(anvil_node)
    report_path = tmp_path / "report.json"
    base = ["audit", "verify", "--rpc", rpc, "--ledger", ledger.address]
    assert main([*base, "--from-block", str(ledger.deployment_block), "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: ledger {ledger.address.lower()}")
    document = json.loads(report_path.read_text())
    assert document["ok"] is True and document["differences"] == []
    assert document["entries"] == chain_view(ledger, "ledgerSequence", document["block_number"])

    assert main(["audit", "prove", "5", "--rpc", rpc, "--ledger", ledger.address]) == 0
    assert capsys.readouterr().out.startswith("PROVEN: entry 5 ")
    assert (
        main(["audit", "prove", people[1].address, "--rpc", rpc, "--ledger", ledger.address, "--json"]) == 0
    )
    proof = json.loads(capsys.readouterr().out)
    assert proof["balance"] == ledger.contract.functions.balanceOf(people[1].address).call(
        block_identifier=proof["blockNumber"]
    )


def test_expected_failures_are_one_line_and_a_distinct_exit_code(
    scenario: tuple[Ledger, list[LocalAccount]],
    anvil_node: AnvilNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, _ = scenario
    down = ["audit", "verify", "--rpc", "http://127.0.0.1:9", "--ledger", ledger.address]
    assert main(down) == 3
    err = capsys.readouterr().err
    error, hint = err.splitlines()  # one line, and what to check
    assert error.startswith("error: ") and hint.startswith("hint: check --rpc") and "Traceback" not in err

    not_a_ledger = ["audit", "verify", "--rpc", url_of(anvil_node), "--ledger", "0x" + "11" * 20]
    assert main(not_a_ledger) == 3
    assert "is no loyalty ledger" in capsys.readouterr().err

    bad = tmp_path / "checkpoint.json"
    bad.write_text("{not json")
    assert (
        main(
            [
                "audit",
                "verify",
                "--rpc",
                url_of(anvil_node),
                "--ledger",
                ledger.address,
                "--checkpoint",
                str(bad),
            ]
        )
        == 3
    )
    assert "unreadable checkpoint" in capsys.readouterr().err

    usage_error = main(["audit", "verify", "--rpc", url_of(anvil_node), "--ledger", "nonsense"])
    assert usage_error == 2
    assert "not an address: 'nonsense'" in capsys.readouterr().err
