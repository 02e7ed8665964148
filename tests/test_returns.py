"""Returns: the issuing partner reverses (part of) one of its issuances, within the reversal window.

The partner presents the issuance as its entries recorded it, built by the chain layer from the receipt
(``Ledger.issuances_in``): a single issue, or one item of a batch with its Merkle proof. The ledger checks it
against the commitment it stored under (partner, ref), then takes back what the customer still holds: the
issuance's own epoch first (if live), then the oldest live epochs; what was spent or expired is not recovered.
``IssuanceReversed`` reports the points requested and recovered; one ``PointsReversed`` per epoch follows.
Recovered points leave the partner's issued figures at the issuance's settlement value.

At every step: issued == (redeemed - refunded) + reversed + expired + pendingExpiry + outstanding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from chain import ContractRevert, IssuanceRecord
from chain._rpc import receipt_from_rpc
from conftest import (
    ACTIVE,
    ISSUE_ONLY,
    REVERSAL_WINDOW,
    SETTLEMENT_VALUE,
    SUSPENDED,
    Ledger,
    expect_revert,
    new_customer,
    random_ref,
)
from contract_helpers import (
    assert_supply_identity,
    chain_reader,
    entries,
    next_block_at,
    to_epoch,
)

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DAY = 24 * 3600


# --------------------------------------------------------------------------- helpers


def issued(ledger: Ledger, to: str, amount: int, *, sender: str | None = None) -> IssuanceRecord:
    """Issues ``amount`` to ``to`` (as partner ACTIVE by default); the issuance as a reversal presents it."""
    [record] = chain_reader(ledger).issuances_in(receipt_from_rpc(ledger.issue(to, amount, sender=sender)))
    return record


def batch(ledger: Ledger, recipients: list[str], amounts: list[int]) -> list[IssuanceRecord]:
    """Issues a batch as partner ACTIVE (a random item reference each); its items with their proofs."""
    refs = [random_ref() for _ in recipients]
    receipt = ledger.transact(
        "issueBatch", recipients, amounts, refs, 1, b"\x00" * 32, sender=ledger.actors.partner
    )
    return chain_reader(ledger).issuances_in(receipt_from_rpc(receipt))


def reverse(
    ledger: Ledger, item: IssuanceRecord, amount: int, *, ref: bytes | None = None, sender: str | None = None
) -> TxReceipt:
    return ledger.transact(
        "reverseIssuance",
        item.as_struct(),
        amount,
        ref or random_ref(),
        sender=sender or ledger.actors.partner,
    )


def taken(ledger: Ledger, receipt: TxReceipt) -> list[tuple[int, int]]:
    """The (epoch, amount) of each PointsReversed entry, in order."""
    return [(e["args"]["epoch"], e["args"]["amount"]) for e in ledger.events(receipt, "PointsReversed")]


def header(ledger: Ledger, receipt: TxReceipt) -> dict[str, Any]:
    [event] = ledger.events(receipt, "IssuanceReversed")
    return event["args"]


def state(ledger: Ledger) -> tuple[Any, ...]:
    return (ledger.call("ledgerSequence"), ledger.call("ledgerHead"), ledger.call("totalReversed"))


def refused(
    ledger: Ledger, item: IssuanceRecord, amount: int, **kw: Any
) -> pytest.ExceptionInfo[ContractRevert]:
    """A reversal that must revert; checks that nothing changed."""
    before = state(ledger)
    with pytest.raises(ContractRevert) as excinfo:
        reverse(ledger, item, amount, **kw)
    assert state(ledger) == before
    return excinfo


def assert_positions_sum_to_zero(ledger: Ledger) -> None:
    ids = ledger.call("partnerIds")
    points, value = ledger.call("coalitionPosition")
    assert sum(ledger.call("partnerPosition", p)[0] for p in ids) + points == 0
    assert sum(ledger.call("partnerPosition", p)[1] for p in ids) + value == 0


# --------------------------------------------------------------------------- the record


def test_the_record_is_the_issuance_as_its_entries_recorded_it(ledger: Ledger) -> None:
    customer = new_customer().address
    receipt = ledger.issue(customer, 100)
    [record] = chain_reader(ledger).issuances_in(receipt_from_rpc(receipt))
    [entry] = ledger.events(receipt, "PointsIssued")

    assert record == IssuanceRecord(
        partner_id=ACTIVE,
        ref=entry["args"]["ref"],
        customer=customer,
        amount=100,
        item_ref=entry["args"]["ref"],  # a single issue is its own item
        epoch=0,
        issued_at=ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"],
        value=SETTLEMENT_VALUE,
        proof=(),
    )


# --------------------------------------------------------------------------- what a reversal does


def test_a_partial_reversal_takes_the_points_back_and_records_them(ledger: Ledger) -> None:
    customer = new_customer().address
    item = issued(ledger, customer, 100)
    return_ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = reverse(ledger, item, 30, ref=return_ref)

    common = {"partnerId": ACTIVE, "customer": customer}
    assert entries(ledger, receipt) == [
        (
            "IssuanceReversed",
            {**common, "seq": seq + 1, "ref": item.ref, "itemRef": item.ref, "issued": 100}
            | {"returnRef": return_ref, "requested": 30, "recovered": 30, "value": SETTLEMENT_VALUE},
        ),
        ("Transfer", {"from": customer, "to": ZERO_ADDRESS, "value": 30}),
        ("PointsReversed", {**common, "seq": seq + 2, "epoch": 0, "amount": 30, "returnRef": return_ref}),
    ]
    assert ledger.call("balanceOf", customer) == 70
    assert ledger.call("totalReversed") == 30
    assert ledger.call("totalIssued") == 100  # gross: a reversal does not undo the issue entry
    client = chain_reader(ledger)
    assert client.reversed_of(item) == 30
    assert client.return_reference_used(ACTIVE, return_ref) is True
    assert client.reference_used(ACTIVE, return_ref) is False  # return refs are their own namespace
    partner = client.partner(ACTIVE)
    assert (partner.issued, partner.reversed, partner.reversed_value) == (100, 30, 30 * SETTLEMENT_VALUE)
    assert_supply_identity(ledger)


def test_a_full_reversal_leaves_nothing_to_reverse(ledger: Ledger) -> None:
    customer = new_customer().address
    item = issued(ledger, customer, 100)
    reverse(ledger, item, 60)

    receipt = reverse(ledger, item, 40)

    assert (header(ledger, receipt)["requested"], header(ledger, receipt)["recovered"]) == (40, 40)
    assert ledger.call("balanceOf", customer) == 0
    assert chain_reader(ledger).reversed_of(item) == 100
    expect_revert(refused(ledger, item, 1), "LedgerReversalExceedsIssuance", item.ref, 100, 100, 1)
    assert_supply_identity(ledger)


def test_more_than_issued_is_refused(ledger: Ledger) -> None:
    item = issued(ledger, new_customer().address, 100)
    expect_revert(refused(ledger, item, 101), "LedgerReversalExceedsIssuance", item.ref, 100, 0, 101)
    reverse(ledger, item, 60)
    expect_revert(refused(ledger, item, 41), "LedgerReversalExceedsIssuance", item.ref, 100, 60, 41)
    expect_revert(refused(ledger, item, 0), "LedgerZeroAmount")


def test_a_batch_item_is_reversed_with_its_proof(ledger: Ledger) -> None:
    customers = [new_customer().address for _ in range(3)]
    items = batch(ledger, customers, [10, 20, 30])
    root = items[0].ref
    assert {i.ref for i in items} == {root} and all(i.proof for i in items)

    receipt = reverse(ledger, items[1], 15)

    h = header(ledger, receipt)
    assert (h["customer"], h["ref"], h["itemRef"], h["issued"], h["recovered"]) == (
        customers[1],
        root,
        items[1].item_ref,
        20,
        15,
    )
    assert [ledger.call("balanceOf", c) for c in customers] == [10, 5, 30]
    expect_revert(refused(ledger, items[1], 6), "LedgerReversalExceedsIssuance", root, 20, 15, 6)
    # each item has its own count: another item of the batch is whole
    reverse(ledger, items[2], 30)
    assert [chain_reader(ledger).reversed_of(i) for i in items] == [0, 15, 30]
    assert_supply_identity(ledger)


def test_an_order_named_twice_in_one_batch_is_bounded_by_one_item(ledger: Ledger) -> None:
    """Two identical items (same customer, amount and order reference) are one leaf: the bound is one item's
    amount, so a reversal can never take back more than one order's points (the audit flags the duplicate)."""
    customer, order = new_customer().address, random_ref()
    twice = ([customer, customer], [10, 10], [order, order], 1, b"\x00" * 32)
    receipt = ledger.transact("issueBatch", *twice, sender=ledger.actors.partner)
    first, second = chain_reader(ledger).issuances_in(receipt_from_rpc(receipt))
    assert first.leaf == second.leaf and ledger.call("balanceOf", customer) == 20
    reverse(ledger, first, 10)
    expect_revert(refused(ledger, second, 1), "LedgerReversalExceedsIssuance", first.ref, 10, 10, 1)
    assert ledger.call("balanceOf", customer) == 10


# --------------------------------------------------------------------------- the reversal window


def test_the_reversal_window_closes_after_its_length(ledger: Ledger) -> None:
    item = issued(ledger, new_customer().address, 100)
    closes_at = item.issued_at + REVERSAL_WINDOW
    assert chain_reader(ledger).reversal_window() == REVERSAL_WINDOW

    next_block_at(ledger.node, closes_at)  # the last second of the window
    receipt = reverse(ledger, item, 10)
    assert ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == closes_at

    ledger.node.advance_time(1)
    expect_revert(refused(ledger, item, 10), "LedgerReversalWindowClosed", item.ref, closes_at)


def test_the_window_stands_still_while_the_ledger_is_paused(ledger: Ledger) -> None:
    """Nobody may reverse while the ledger is paused, so a window closes later by the time spent paused since
    its issuance (as the ledger's clock does); a pause that ended before the issuance does not count."""
    a = ledger.actors
    ledger.transact("pause", sender=a.pauser)
    ledger.node.advance_time(DAY)  # a pause before the issuance: no extension for it
    ledger.transact("unpause", sender=a.pauser)
    item = issued(ledger, new_customer().address, 100)
    ledger.transact("pause", sender=a.pauser)
    paused_at = ledger.node.timestamp()
    ledger.node.advance_time(REVERSAL_WINDOW + DAY)  # the whole window and more, paused
    ledger.transact("unpause", sender=a.pauser)
    paused_for = ledger.node.timestamp() - paused_at
    closes_at = item.issued_at + REVERSAL_WINDOW + paused_for

    next_block_at(ledger.node, closes_at)  # the last second of the extended window
    reverse(ledger, item, 10)
    ledger.node.advance_time(1)
    expect_revert(refused(ledger, item, 10), "LedgerReversalWindowClosed", item.ref, closes_at)


def test_a_batch_items_window_runs_from_the_batchs_block(ledger: Ledger) -> None:
    items = batch(ledger, [new_customer().address, new_customer().address], [5, 6])
    ledger.node.advance_time(REVERSAL_WINDOW + 1)
    closes_at = items[0].issued_at + REVERSAL_WINDOW
    expect_revert(refused(ledger, items[0], 1), "LedgerReversalWindowClosed", items[0].ref, closes_at)


# --------------------------------------------------------------------------- who may reverse, and what


def test_another_partner_cannot_reverse_it(ledger: Ledger) -> None:
    item = issued(ledger, new_customer().address, 100)
    excinfo = refused(ledger, item, 10, sender=ledger.actors.issue_only)
    expect_revert(excinfo, "LedgerIssuanceNotFound", ISSUE_ONLY, item.ref)
    expect_revert(
        refused(ledger, item, 10, sender=ledger.actors.stranger),
        "LedgerUnknownPartner",
        ledger.actors.stranger,
    )


def test_a_suspended_partner_cannot_reverse_and_a_rotated_key_hands_the_right_on(ledger: Ledger) -> None:
    a = ledger.actors
    ledger.transact("reactivatePartner", SUSPENDED, sender=a.admin)
    item = issued(ledger, new_customer().address, 100, sender=a.suspended)
    ledger.transact("suspendPartner", SUSPENDED, sender=a.pauser)
    expect_revert(refused(ledger, item, 10, sender=a.suspended), "LedgerPartnerSuspended", SUSPENDED)

    # partner ACTIVE rotates to a new key: its issuances stay its own, the old key is refused
    mine = issued(ledger, new_customer().address, 100)
    new_key = a.stranger
    ledger.transact("rotatePartnerOperator", ACTIVE, new_key, sender=a.admin)
    expect_revert(refused(ledger, mine, 10), "LedgerRotatedOperator", a.partner, ACTIVE)
    assert header(ledger, reverse(ledger, mine, 10, sender=new_key))["partnerId"] == ACTIVE


def test_a_paused_ledger_reverses_nothing(ledger: Ledger) -> None:
    item = issued(ledger, new_customer().address, 100)
    ledger.transact("pause", sender=ledger.actors.pauser)
    expect_revert(refused(ledger, item, 10), "EnforcedPause")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda i, other: replace(i, amount=i.amount + 1), id="more points"),
        pytest.param(lambda i, other: replace(i, customer=new_customer().address), id="another customer"),
        pytest.param(lambda i, other: replace(i, issued_at=i.issued_at + 1), id="another time"),
        pytest.param(lambda i, other: replace(i, value=i.value + 1), id="another value"),
        pytest.param(lambda i, other: replace(i, epoch=i.epoch + 1), id="another epoch"),
        pytest.param(lambda i, other: replace(i, item_ref=random_ref()), id="another item reference"),
        pytest.param(lambda i, other: replace(i, proof=(random_ref(), *i.proof[1:])), id="forged proof"),
        pytest.param(lambda i, other: replace(i, proof=i.proof[:-1]), id="short proof"),
        pytest.param(lambda i, other: replace(i, proof=other.proof), id="another batch's proof"),
        pytest.param(lambda i, other: replace(other, ref=i.ref), id="another batch's item under this root"),
    ],
)
def test_a_forged_record_is_not_found(ledger: Ledger, forge: Any) -> None:
    customers = [new_customer().address for _ in range(3)]
    item = batch(ledger, customers, [10, 20, 30])[1]
    other = batch(ledger, customers, [10, 20, 30])[1]  # the same items, other item references
    excinfo = refused(ledger, forge(item, other), 5)
    expect_revert(excinfo, "LedgerIssuanceNotFound", ACTIVE, item.ref)
    reverse(ledger, item, 5)  # the true record still works


def test_a_single_issue_presented_as_a_batch_item_is_not_found(ledger: Ledger) -> None:
    item = issued(ledger, new_customer().address, 10)
    forged = replace(item, proof=(random_ref(),))
    expect_revert(refused(ledger, forged, 5), "LedgerIssuanceNotFound", ACTIVE, item.ref)


def test_a_return_reference_is_used_once(ledger: Ledger) -> None:
    first, second = issued(ledger, new_customer().address, 10), issued(ledger, new_customer().address, 10)
    return_ref = random_ref()
    reverse(ledger, first, 5, ref=return_ref)
    expect_revert(refused(ledger, first, 5, ref=return_ref), "LedgerReferenceUsed", ACTIVE, return_ref)
    expect_revert(refused(ledger, second, 5, ref=return_ref), "LedgerReferenceUsed", ACTIVE, return_ref)
    # return references are a namespace of their own: one may equal an issue reference
    reverse(ledger, first, 5, ref=first.ref)


# --------------------------------------------------------------------------- what is recovered


def test_after_the_customer_spent_part_the_rest_is_recovered(ledger: Ledger) -> None:
    customer = new_customer()
    item = issued(ledger, customer.address, 100)
    ledger.redeem(customer, 70)

    receipt = reverse(ledger, item, 50)

    h = header(ledger, receipt)
    assert (h["requested"], h["recovered"]) == (50, 30)
    assert taken(ledger, receipt) == [(0, 30)]
    assert ledger.call("balanceOf", customer.address) == 0
    client = chain_reader(ledger)
    assert (client.reversed_of(item), client.total_reversed()) == (50, 30)  # requested vs recovered
    partner = client.partner(ACTIVE)
    assert (partner.reversed, partner.reversed_value) == (30, 30 * SETTLEMENT_VALUE)
    # the requested count is what limits further reversals; nothing left to take: recovered 0, no entries
    expect_revert(refused(ledger, item, 51), "LedgerReversalExceedsIssuance", item.ref, 100, 50, 51)
    nothing = reverse(ledger, item, 50)
    assert [name for name, _ in entries(ledger, nothing)] == ["IssuanceReversed"]
    assert (header(ledger, nothing)["requested"], header(ledger, nothing)["recovered"]) == (50, 0)
    assert client.total_reversed() == 30
    assert_supply_identity(ledger)
    assert_positions_sum_to_zero(ledger)


def test_the_issuances_epoch_first_then_the_oldest(ledger: Ledger) -> None:
    """Epoch 0: 10 points, epoch 1: the issuance of 50 (40 moved away since), epoch 2: 10 points. Reversing
    25 takes the 10 left of epoch 1, then 10 of epoch 0 (the oldest), then 5 of epoch 2."""
    a = ledger.actors
    customer = a.customer  # an unlocked account: it transfers below
    issued(ledger, customer, 10)
    to_epoch(ledger, 1)
    item = issued(ledger, customer, 50)
    to_epoch(ledger, 2)
    issued(ledger, customer, 10)
    ledger.transact("setTransfersEnabled", True, sender=a.admin)
    ledger.transact("transferAtEpoch", 1, a.stranger, 40, sender=customer)

    receipt = reverse(ledger, item, 25)

    assert taken(ledger, receipt) == [(1, 10), (0, 10), (2, 5)]
    assert ledger.call("liveBalances", customer) == [[2], [5]]
    assert_supply_identity(ledger)


def test_after_the_issuances_epoch_expired_other_live_epochs_are_taken(short_ledger: Ledger) -> None:
    ledger = short_ledger
    customer, other = new_customer().address, new_customer().address
    item = issued(ledger, customer, 50)  # epoch 0
    lost = issued(ledger, other, 40)  # epoch 0, all the other customer ever gets
    for epoch in (1, 2):
        to_epoch(ledger, epoch)
        issued(ledger, customer, 10)
    to_epoch(ledger, 3)  # epoch 0 expired, within the window
    issued(ledger, customer, 10)  # bucket 0 is reused: epoch 0's 50 points expire first

    receipt = reverse(ledger, item, 25)

    assert taken(ledger, receipt) == [(1, 10), (2, 10), (3, 5)]
    assert (header(ledger, receipt)["requested"], header(ledger, receipt)["recovered"]) == (25, 25)
    # an issuance whose points expired and whose customer holds nothing live: nothing is recovered
    nothing = reverse(ledger, lost, 40)
    assert (header(ledger, nothing)["recovered"], taken(ledger, nothing)) == (0, [])
    assert ledger.call("pendingExpiry") == 40  # the other customer's expired points, not swept
    assert_supply_identity(ledger)


# --------------------------------------------------------------------------- settlement


def test_reversals_leave_the_partners_figures_at_the_issuances_value(ledger: Ledger) -> None:
    a = ledger.actors
    first = issued(ledger, new_customer().address, 100)  # valued at SETTLEMENT_VALUE (10)
    ledger.transact("setSettlementValue", 7, sender=a.treasury)
    second = issued(ledger, new_customer().address, 50)  # valued at 7
    ledger.transact("setSettlementValue", 3, sender=a.treasury)

    assert header(ledger, reverse(ledger, first, 40))["value"] == 10
    assert header(ledger, reverse(ledger, second, 20))["value"] == 7

    partner = chain_reader(ledger).partner(ACTIVE)
    assert (partner.issued, partner.issued_value) == (150, 1000 + 350)
    assert (partner.reversed, partner.reversed_value) == (60, 400 + 140)
    assert ledger.call("partnerPosition", ACTIVE) == [-(150 - 60), -(1350 - 540)]
    assert ledger.call("coalitionPosition") == [90, 810]
    assert_positions_sum_to_zero(ledger)
    # a settlement of the open position closes it
    ledger.transact("recordSettlement", ACTIVE, -90, -810, random_ref(), sender=a.treasury)
    assert ledger.call("partnerOpenPosition", ACTIVE) == [0, 0]
    assert ledger.call("coalitionOpenPosition") == [0, 0]


def test_the_supply_identity_holds_through_every_kind_of_entry(short_ledger: Ledger) -> None:
    ledger = short_ledger
    customer: LocalAccount = new_customer()
    item = issued(ledger, customer.address, 100)
    assert_supply_identity(ledger)
    redeemed = ledger.redeem(customer, 30)
    record = chain_reader(ledger).redemption_in(receipt_from_rpc(redeemed))
    assert_supply_identity(ledger)
    reverse(ledger, item, 20)
    assert_supply_identity(ledger)
    ledger.transact("refundRedemption", record.as_struct(), 10, random_ref(), sender=ledger.actors.partner)
    assert_supply_identity(ledger)
    to_epoch(ledger, 3)  # everything of epoch 0 expired
    assert ledger.call("pendingExpiry") == 100 - 30 - 20 + 10
    assert_supply_identity(ledger)
    ledger.transact("sweepExpired", [customer.address], sender=ledger.actors.stranger)
    assert (ledger.call("pendingExpiry"), ledger.call("totalExpired")) == (0, 60)
    assert_supply_identity(ledger)
    assert (ledger.call("totalIssued"), ledger.call("totalRedeemed")) == (100, 30)
    assert (ledger.call("totalReversed"), ledger.call("totalRefunded")) == (20, 10)
