"""ERC-7818 expiry: time-based epochs, points that live ``validityDuration`` epochs, and sweeping the expired.

Points credited in epoch ``e`` are live during epochs ``e`` … ``e + validity - 1`` and expired from the first
second of epoch ``e + validity``. Expiry itself emits nothing; ``sweepExpired`` (anyone may call it) burns
expired points with a ``PointsExpired`` entry, and so does reusing a storage bucket that still holds them.
At every step: totalIssued == (totalRedeemed - totalRefunded) + totalReversed + totalExpired + pendingExpiry
+ outstandingSupply.
Epochs run on the ledger's clock, which pauses stop (tests/test_pause_clock.py); no pause happens here.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractCustomError

from conftest import (
    ACTIVE,
    EPOCH,
    SETTLEMENT_VALUE,
    VALIDITY,
    Ledger,
    Node,
    deploy_ledger,
    deploy_ledger_contract,
    new_customer,
    random_ref,
    revert_decoder,
)
from contract_helpers import batch_root, redemption_record, warp_to

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
TIME_BASED = 1  # IERC7818.EPOCH_TYPE.TIME_BASED
MAX_VALIDITY = 120
MAX_SETTLEMENT_VALUE = 2**64 - 1


# --------------------------------------------------------------------------- helpers


def to_epoch(ledger: Ledger, epoch: int) -> None:
    """Moves the clock into ``epoch``, a minute past its start (so the next transactions land in it too)."""
    warp_to(ledger.node, ledger.call("genesisTimestamp") + epoch * ledger.call("epochLength") + 60)
    assert ledger.call("currentEpoch") == epoch


def totals(ledger: Ledger) -> dict[str, int]:
    names = ("totalIssued", "totalRedeemed", "totalExpired", "pendingExpiry", "outstandingSupply")
    return {name: ledger.call(name) for name in names}


def assert_conserved(ledger: Ledger) -> dict[str, int]:
    """Checks issued == (redeemed - refunded) + reversed + expired + pending + outstanding (and
    totalSupply == outstanding); returns the totals but refunded and reversed."""
    t = totals(ledger)
    refunded, reversed_ = ledger.call("totalRefunded"), ledger.call("totalReversed")
    assert t["totalIssued"] == (
        t["totalRedeemed"]
        - refunded
        + reversed_
        + t["totalExpired"]
        + t["pendingExpiry"]
        + t["outstandingSupply"]
    )
    assert ledger.call("totalSupply") == t["outstandingSupply"]
    return t


def entries(ledger: Ledger, receipt: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["args"]) for e in ledger.events(receipt)]


def sweep(ledger: Ledger, accounts: list[str]) -> tuple[int, Any]:
    """What ``sweepExpired(accounts)`` returns (read first), and the receipt of sending it as a stranger."""
    swept = ledger.contract.functions.sweepExpired(accounts).call({"from": ledger.actors.stranger})
    return swept, ledger.transact("sweepExpired", accounts, sender=ledger.actors.stranger)


# --------------------------------------------------------------------------- epochs


def test_epochs_are_time_based_and_follow_the_clock(ledger: Ledger) -> None:
    assert ledger.call("epochType") == TIME_BASED
    assert ledger.call("epochLength") == EPOCH
    assert ledger.call("validityDuration") == VALIDITY
    genesis = ledger.call("genesisTimestamp")
    assert genesis <= ledger.node.timestamp() < genesis + EPOCH
    assert ledger.call("currentEpoch") == 0

    warp_to(ledger.node, genesis + EPOCH - 1)
    assert ledger.call("currentEpoch") == 0
    warp_to(ledger.node, genesis + EPOCH)
    assert ledger.call("currentEpoch") == 1
    ledger.node.advance_time(5 * EPOCH)
    assert ledger.call("currentEpoch") == 6


def test_epoch_expires_at_the_start_of_epoch_plus_validity(ledger: Ledger) -> None:
    genesis = ledger.call("genesisTimestamp")
    for epoch in (0, 1, 7, 1000):
        assert ledger.call("epochExpiresAt", epoch) == genesis + (epoch + VALIDITY) * EPOCH
    expires = ledger.call("epochExpiresAt", 0)
    assert [ledger.call("isEpochExpired", e) for e in (0, 1, VALIDITY)] == [False, False, False]

    warp_to(ledger.node, expires - 1)  # last second of epoch 11: epoch 0 still live
    assert ledger.call("currentEpoch") == VALIDITY - 1
    assert ledger.call("isEpochExpired", 0) is False

    warp_to(ledger.node, expires)  # the first second at which epoch 0 is expired
    assert ledger.call("currentEpoch") == VALIDITY
    assert ledger.call("isEpochExpired", 0) is True
    assert ledger.call("isEpochExpired", 1) is False  # live: 1 + 12 > 12
    assert ledger.call("isEpochExpired", VALIDITY) is False  # the current epoch
    assert ledger.call("isEpochExpired", VALIDITY + 1) is False  # a future epoch


# --------------------------------------------------------------------------- expiry of balances


def test_points_are_live_for_validity_epochs_then_drop_out_without_an_event(ledger: Ledger) -> None:
    customer = ledger.actors.customer
    ledger.issue(customer, 100)  # epoch 0
    to_epoch(ledger, 1)
    ledger.issue(customer, 50)  # epoch 1
    expires = ledger.call("epochExpiresAt", 0)
    seq = ledger.call("ledgerSequence")

    warp_to(ledger.node, expires - 1)  # epoch 11: both epochs live
    assert ledger.call("balanceOf", customer) == 150
    assert [ledger.call("balanceOfAtEpoch", e, customer) for e in (0, 1)] == [100, 50]
    assert ledger.call("liveBalances", customer) == [[0, 1], [100, 50]]
    assert assert_conserved(ledger) == {
        "totalIssued": 150,
        "totalRedeemed": 0,
        "totalExpired": 0,
        "pendingExpiry": 0,
        "outstandingSupply": 150,
    }

    warp_to(ledger.node, expires)  # epoch 12: epoch 0 has expired, in an empty block
    assert ledger.w3.eth.get_block("latest")["transactions"] == []
    assert ledger.call("balanceOf", customer) == 50  # exactly epoch 0's points dropped out
    assert ledger.call("balanceOfAtEpoch", 0, customer) == 0  # ERC-7818: MUST return 0 once expired
    assert ledger.call("balanceOfAtEpoch", 1, customer) == 50
    assert ledger.call("liveBalances", customer) == [[1], [50]]
    assert ledger.call("epochSupply", 0) == 100  # still stored until swept
    assert assert_conserved(ledger) == {
        "totalIssued": 150,
        "totalRedeemed": 0,
        "totalExpired": 0,
        "pendingExpiry": 100,
        "outstandingSupply": 50,
    }
    assert ledger.call("ledgerSequence") == seq  # no entry: expiry is not a transaction

    to_epoch(ledger, VALIDITY + 1)  # epoch 1 expires in turn
    assert ledger.call("balanceOf", customer) == 0
    assert ledger.call("balanceOfAtEpoch", 1, customer) == 0
    assert assert_conserved(ledger)["pendingExpiry"] == 150


# --------------------------------------------------------------------------- sweeping


def test_sweep_burns_expired_points_with_one_entry_per_bucket(ledger: Ledger) -> None:
    customer, other = new_customer(), ledger.actors.customer
    ledger.issue(customer.address, 100)  # epoch 0
    ledger.issue(other, 30)  # epoch 0
    ledger.redeem(customer, 20)  # 80 of epoch 0 left
    to_epoch(ledger, 1)
    ledger.issue(customer.address, 50)  # epoch 1
    assert_conserved(ledger)

    to_epoch(ledger, VALIDITY - 1)  # nothing has expired yet: sweeping live points does nothing
    seq = ledger.call("ledgerSequence")
    swept, receipt = sweep(ledger, [customer.address, other])
    assert swept == 0
    assert entries(ledger, receipt) == []
    assert ledger.call("ledgerSequence") == seq
    assert ledger.call("balanceOf", customer.address) == 130

    to_epoch(ledger, VALIDITY)  # epoch 0 expired, epoch 1 live
    before = assert_conserved(ledger)
    assert before["pendingExpiry"] == 110

    swept, receipt = sweep(ledger, [customer.address, other])

    assert swept == 110
    assert entries(ledger, receipt) == [
        ("Transfer", {"from": customer.address, "to": ZERO_ADDRESS, "value": 80}),
        ("PointsExpired", {"account": customer.address, "seq": seq + 1, "epoch": 0, "amount": 80}),
        ("Transfer", {"from": other, "to": ZERO_ADDRESS, "value": 30}),
        ("PointsExpired", {"account": other, "seq": seq + 2, "epoch": 0, "amount": 30}),
    ]
    assert assert_conserved(ledger) == {
        "totalIssued": 180,
        "totalRedeemed": 20,
        "totalExpired": 110,
        "pendingExpiry": 0,
        "outstandingSupply": 50,
    }
    assert ledger.call("epochSupply", 0) == 0
    assert ledger.call("balanceOf", customer.address) == 50  # live points untouched
    assert ledger.call("balanceOfAtEpoch", 1, customer.address) == 50

    swept, receipt = sweep(ledger, [customer.address, other])  # sweeping again is a no-op
    assert swept == 0
    assert entries(ledger, receipt) == []
    assert ledger.call("ledgerSequence") == seq + 2
    assert assert_conserved(ledger)["totalExpired"] == 110


def test_sweep_of_several_expired_epochs_emits_one_entry_per_epoch(node: Node) -> None:
    ledger = deploy_ledger(node, epoch_length=3600, validity=3)
    customer = ledger.actors.customer
    for epoch, amount in enumerate((10, 20, 30)):
        if epoch:
            to_epoch(ledger, epoch)
        ledger.issue(customer, amount)
    to_epoch(ledger, 5)  # epochs 0, 1, 2 all expired (e + 3 <= 5)
    assert ledger.call("balanceOf", customer) == 0
    assert assert_conserved(ledger)["pendingExpiry"] == 60
    seq = ledger.call("ledgerSequence")

    swept, receipt = sweep(ledger, [customer])

    assert swept == 60
    assert [args for name, args in entries(ledger, receipt) if name == "PointsExpired"] == [
        {"account": customer, "seq": seq + 1, "epoch": 0, "amount": 10},
        {"account": customer, "seq": seq + 2, "epoch": 1, "amount": 20},
        {"account": customer, "seq": seq + 3, "epoch": 2, "amount": 30},
    ]
    assert [args["value"] for name, args in entries(ledger, receipt) if name == "Transfer"] == [10, 20, 30]
    assert assert_conserved(ledger) == {
        "totalIssued": 60,
        "totalRedeemed": 0,
        "totalExpired": 60,
        "pendingExpiry": 0,
        "outstandingSupply": 0,
    }


def test_issuing_into_a_bucket_holding_expired_points_expires_them_first(node: Node) -> None:
    ledger = deploy_ledger(node, epoch_length=3600, validity=3)
    customer = ledger.actors.customer
    ledger.issue(customer, 10)  # epoch 0, bucket 0
    to_epoch(ledger, 3)  # epoch 0 expired, unswept; epoch 3 uses bucket 0 again
    assert assert_conserved(ledger)["pendingExpiry"] == 10
    ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = ledger.issue(customer, 7, ref=ref)

    assert entries(ledger, receipt) == [
        ("Transfer", {"from": customer, "to": ZERO_ADDRESS, "value": 10}),
        ("PointsExpired", {"account": customer, "seq": seq + 1, "epoch": 0, "amount": 10}),
        ("Transfer", {"from": ZERO_ADDRESS, "to": customer, "value": 7}),
        (
            "PointsIssued",
            {
                "partnerId": ACTIVE,
                "to": customer,
                "seq": seq + 2,
                "epoch": 3,
                "amount": 7,
                "ref": ref,
                "reason": 1,
                "ruleHash": b"\x00" * 32,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    assert ledger.call("balanceOf", customer) == 7
    assert ledger.call("balanceOfAtEpoch", 3, customer) == 7
    assert ledger.call("epochSupply", 0) == 0
    assert assert_conserved(ledger) == {
        "totalIssued": 17,
        "totalRedeemed": 0,
        "totalExpired": 10,
        "pendingExpiry": 0,
        "outstandingSupply": 7,
    }
    swept, _ = sweep(ledger, [customer])  # nothing left to sweep
    assert swept == 0


def test_a_batch_expires_stale_buckets_before_its_numbered_items(node: Node) -> None:
    """The items of a batch are the entries seq + 1 … seq + count after its PointsBatchIssued entry."""
    ledger = deploy_ledger(node, epoch_length=3600, validity=3)
    stale, fresh = ledger.actors.customer, new_customer().address
    ledger.issue(stale, 10)  # epoch 0, bucket 0
    to_epoch(ledger, 3)  # epoch 0 expired, unswept; epoch 3 uses bucket 0 again
    refs, seq = [random_ref(), random_ref()], ledger.call("ledgerSequence")

    receipt = ledger.issue_batch([fresh, stale], [4, 5], refs)

    logged = [(name, args.get("seq")) for name, args in entries(ledger, receipt) if name != "Transfer"]
    assert logged == [
        ("PointsExpired", seq + 1),
        ("PointsBatchIssued", seq + 2),
        ("PointsIssuedInBatch", seq + 3),
        ("PointsIssuedInBatch", seq + 4),
    ]
    header = ledger.events(receipt, "PointsBatchIssued")[0]["args"]
    assert (header["count"], header["total"], header["epoch"]) == (2, 9, 3)
    assert header["ref"] == batch_root([fresh, stale], [4, 5], refs)
    items = [(e["args"]["to"], e["args"]["itemRef"]) for e in ledger.events(receipt, "PointsIssuedInBatch")]
    assert items == [(fresh, refs[0]), (stale, refs[1])]
    assert ledger.call("balanceOf", stale) == 5
    assert assert_conserved(ledger)["pendingExpiry"] == 0


def test_a_refund_into_an_expired_epoch_expires_on_arrival(node: Node) -> None:
    """A redemption spent epochs 0 and 1; refunded once epoch 0 has expired, the part of epoch 1 comes back
    live (newest part first) and the part of epoch 0 is expired at once: a PointsRefunded entry followed by
    its PointsExpired, no balance change, no Transfer, and the identity still holds."""
    ledger = deploy_ledger(node, epoch_length=3600, validity=3)
    customer = new_customer()
    ledger.issue(customer.address, 10)  # epoch 0
    to_epoch(ledger, 1)
    ledger.issue(customer.address, 10)  # epoch 1
    record = redemption_record(ledger, ledger.redeem(customer, 15))
    assert (record.epochs, record.amounts) == ([0, 1], [10, 5])
    to_epoch(ledger, 3)  # epoch 0 expired, epoch 1 live
    refund_ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = ledger.transact("refundRedemption", record, 8, refund_ref, sender=ledger.actors.partner)

    customer_, value = customer.address, SETTLEMENT_VALUE
    refunded = {"partnerId": ACTIVE, "customer": customer_}
    assert entries(ledger, receipt) == [
        (
            "RedemptionRefunded",
            {**refunded, "seq": seq + 1, "ref": record.ref, "refundRef": refund_ref, "amount": 8}
            | {"restored": 5, "value": value},
        ),
        ("Transfer", {"from": ZERO_ADDRESS, "to": customer_, "value": 5}),
        ("PointsRefunded", {**refunded, "seq": seq + 2, "epoch": 1, "amount": 5, "refundRef": refund_ref}),
        ("PointsRefunded", {**refunded, "seq": seq + 3, "epoch": 0, "amount": 3, "refundRef": refund_ref}),
        ("PointsExpired", {"account": customer_, "seq": seq + 4, "epoch": 0, "amount": 3}),
    ]
    assert ledger.call("liveBalances", customer_) == [[1], [10]]
    assert (ledger.call("totalRefunded"), ledger.call("totalExpired")) == (8, 3)
    assert (ledger.call("epochSupply", 0), ledger.call("epochSupply", 1)) == (0, 10)
    assert assert_conserved(ledger) == {
        "totalIssued": 20,
        "totalRedeemed": 15,
        "totalExpired": 3,
        "pendingExpiry": 0,
        "outstandingSupply": 10,
    }


def test_epoch_views_do_not_overflow_for_huge_epochs(ledger: Ledger) -> None:
    huge = 2**256 - 1
    assert ledger.call("isEpochExpired", huge) is False
    assert ledger.call("balanceOfAtEpoch", huge, ledger.actors.customer) == 0


# --------------------------------------------------------------------------- configuration


def deployment_revert(node: Node, **parameters: Any) -> tuple[str, tuple[Any, ...]]:
    """The custom error a deployment with these parameters reverts with, as ``(name, arguments)``."""
    admin = node.accounts[0]
    # The deployment fails while web3 estimates its gas: eth-tester raises TransactionFailed, anvil
    # ContractCustomError; both carry the revert data, decoded the same way.
    with pytest.raises((TransactionFailed, ContractCustomError)) as excinfo:
        deploy_ledger_contract(node, admin, **parameters)
    revert = revert_decoder().from_exception(excinfo.value)
    assert revert is not None
    return revert.name, revert.arguments


@pytest.mark.parametrize(
    ("epoch_length", "validity"),
    [(0, VALIDITY), (EPOCH, 0), (EPOCH, MAX_VALIDITY + 1), (EPOCH, 1024)],
    ids=["zero-epoch-length", "zero-validity", "validity-over-max", "validity-1024"],
)
def test_constructor_rejects_an_invalid_configuration(node: Node, epoch_length: int, validity: int) -> None:
    assert deployment_revert(node, epoch_length=epoch_length, validity=validity) == (
        "LedgerInvalidConfiguration",
        (epoch_length, validity),
    )


def test_constructor_accepts_the_largest_validity(node: Node) -> None:
    """MAX_VALIDITY bounds the buckets balanceOf, redeem and sweep of one account read."""
    contract = deploy_ledger_contract(node, node.accounts[0], epoch_length=1, validity=MAX_VALIDITY)
    assert contract.functions.MAX_VALIDITY().call() == MAX_VALIDITY
    assert contract.functions.validityDuration().call() == MAX_VALIDITY
    assert contract.functions.epochLength().call() == 1


def test_constructor_bounds_the_settlement_value(node: Node) -> None:
    assert deployment_revert(node, settlement_value=MAX_SETTLEMENT_VALUE + 1) == (
        "LedgerInvalidSettlementValue",
        (MAX_SETTLEMENT_VALUE + 1, MAX_SETTLEMENT_VALUE),
    )
    contract = deploy_ledger_contract(node, node.accounts[0], settlement_value=MAX_SETTLEMENT_VALUE)
    assert contract.functions.settlementValue().call() == MAX_SETTLEMENT_VALUE


def test_constructor_rejects_a_reversal_window_beyond_64_bits(node: Node) -> None:
    """A window so long that `issuedAt + window` could overflow is refused with its own error."""
    refusal = ("LedgerInvalidReversalWindow", (2**64, 2**64 - 1))
    assert deployment_revert(node, reversal_window=2**64) == refusal
    contract = deploy_ledger_contract(node, node.accounts[0], reversal_window=2**64 - 1)
    assert contract.functions.reversalWindow().call() == 2**64 - 1
