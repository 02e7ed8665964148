"""Refunds: the accepting partner gives (part of) one of its redemptions back.

The partner presents the redemption as its ``PointsRedeemed`` entries recorded it, built by the chain layer
from the receipt (``Ledger.redemption_in``): the customer, the reference, the value and the (epoch, amount)
parts in order. The ledger checks it against the commitment it stored, then gives the points back to the
epochs they were spent from, newest part first (after what earlier refunds took): a live epoch gets them
back (minted), an epoch that expired in between takes them as expired at once (``PointsRefunded`` followed
by ``PointsExpired``, the balance never holds them). Refunded points leave the partner's redeemed figures at
the redemption's settlement value.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from chain import ContractRevert, RedemptionRecord
from chain._rpc import receipt_from_rpc
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    SETTLEMENT_VALUE,
    VALIDITY,
    Ledger,
    expect_revert,
    new_customer,
    random_ref,
)
from contract_helpers import assert_supply_identity, chain_reader, entries, holding, keyed, to_epoch

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


# --------------------------------------------------------------------------- helpers


def redeemed(ledger: Ledger, customer: LocalAccount, amount: int, **kw: Any) -> RedemptionRecord:
    """Redeems ``amount`` of the customer's points (at partner ACTIVE by default); the redemption as a
    refund presents it."""
    return chain_reader(ledger).redemption_in(receipt_from_rpc(ledger.redeem(customer, amount, **kw)))


def refund(
    ledger: Ledger,
    record: RedemptionRecord,
    amount: int,
    *,
    ref: bytes | None = None,
    sender: str | None = None,
) -> TxReceipt:
    return ledger.transact(
        "refundRedemption",
        record.as_struct(),
        amount,
        ref or random_ref(),
        sender=sender or ledger.actors.partner,
    )


def given_back(ledger: Ledger, receipt: TxReceipt) -> list[tuple[int, int]]:
    return [(e["args"]["epoch"], e["args"]["amount"]) for e in ledger.events(receipt, "PointsRefunded")]


def header(ledger: Ledger, receipt: TxReceipt) -> dict[str, Any]:
    [event] = ledger.events(receipt, "RedemptionRefunded")
    return event["args"]


def state(ledger: Ledger) -> tuple[Any, ...]:
    return (ledger.call("ledgerSequence"), ledger.call("ledgerHead"), ledger.call("totalRefunded"))


def refused(
    ledger: Ledger, record: RedemptionRecord, amount: int, **kw: Any
) -> pytest.ExceptionInfo[ContractRevert]:
    before = state(ledger)
    with pytest.raises(ContractRevert) as excinfo:
        refund(ledger, record, amount, **kw)
    assert state(ledger) == before
    return excinfo


def by_epoch(ledger: Ledger, account: str) -> dict[int, int]:
    epochs, amounts = ledger.call("liveBalances", account)
    return dict(zip(epochs, amounts, strict=True))


# --------------------------------------------------------------------------- the record


def test_the_record_is_the_redemptions_parts_in_order(ledger: Ledger) -> None:
    customer = holding(ledger, [10, 20, 15])
    ref = random_ref()
    receipt = ledger.redeem(customer, 35, ref=ref)

    record = chain_reader(ledger).redemption_in(receipt_from_rpc(receipt))

    assert record == RedemptionRecord(
        partner_id=ACTIVE,
        customer=customer.address,
        ref=ref,
        value=SETTLEMENT_VALUE,
        nonce=keyed(ACTIVE),
        epochs=(0, 1, 2),
        amounts=(10, 20, 5),
    )
    assert record.amount == 35
    parts = [(e["args"]["epoch"], e["args"]["amount"]) for e in ledger.events(receipt, "PointsRedeemed")]
    assert parts == list(zip(record.epochs, record.amounts, strict=True))


# --------------------------------------------------------------------------- what a refund does


def test_a_partial_refund_gives_points_back_and_records_them(ledger: Ledger) -> None:
    customer = holding(ledger, [100])
    record = redeemed(ledger, customer, 60)
    refund_ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = refund(ledger, record, 25, ref=refund_ref)

    common = {"partnerId": ACTIVE, "customer": customer.address}
    assert entries(ledger, receipt) == [
        (
            "RedemptionRefunded",
            {**common, "seq": seq + 1, "ref": record.ref, "refundRef": refund_ref, "amount": 25}
            | {"restored": 25, "value": SETTLEMENT_VALUE},
        ),
        ("Transfer", {"from": ZERO_ADDRESS, "to": customer.address, "value": 25}),
        ("PointsRefunded", {**common, "seq": seq + 2, "epoch": 0, "amount": 25, "refundRef": refund_ref}),
    ]
    assert ledger.call("balanceOf", customer.address) == 65
    client = chain_reader(ledger)
    assert (client.refunded_of(ACTIVE, record.ref), client.total_refunded()) == (25, 25)
    assert client.refund_reference_used(ACTIVE, refund_ref) is True
    assert client.redemption_reference_used(ACTIVE, refund_ref) is False  # refund refs: their own namespace
    partner = client.partner(ACTIVE)
    assert (partner.redeemed, partner.refunded, partner.refunded_value) == (60, 25, 25 * SETTLEMENT_VALUE)
    assert ledger.call("totalRedeemed") == 60  # gross: a refund does not undo the redemption entry
    assert_supply_identity(ledger)


def test_a_full_refund_and_no_more(ledger: Ledger) -> None:
    customer = holding(ledger, [100])
    record = redeemed(ledger, customer, 60)
    expect_revert(refused(ledger, record, 61), "LedgerRefundExceedsRedemption", record.ref, 60, 0, 61)
    refund(ledger, record, 20)

    receipt = refund(ledger, record, 40)

    assert (header(ledger, receipt)["amount"], header(ledger, receipt)["restored"]) == (40, 40)
    assert ledger.call("balanceOf", customer.address) == 100
    expect_revert(refused(ledger, record, 1), "LedgerRefundExceedsRedemption", record.ref, 60, 60, 1)
    expect_revert(refused(ledger, record, 0), "LedgerZeroAmount")
    assert_supply_identity(ledger)


def test_the_epochs_are_restored_exactly_newest_part_first(ledger: Ledger) -> None:
    """A redemption of 35 took 10 of epoch 0, 20 of epoch 1 and 5 of epoch 2. Refunds of 15, 12 and 8 give
    back epoch 2's 5 and 10 of epoch 1, then epoch 1's other 10 and 2 of epoch 0, then epoch 0's last 8."""
    customer = holding(ledger, [10, 20, 15])
    record = redeemed(ledger, customer, 35)
    assert (record.epochs, record.amounts) == ((0, 1, 2), (10, 20, 5))
    assert by_epoch(ledger, customer.address) == {2: 10}

    assert given_back(ledger, refund(ledger, record, 15)) == [(2, 5), (1, 10)]
    assert by_epoch(ledger, customer.address) == {1: 10, 2: 15}
    assert given_back(ledger, refund(ledger, record, 12)) == [(1, 10), (0, 2)]
    assert given_back(ledger, refund(ledger, record, 8)) == [(0, 8)]

    assert by_epoch(ledger, customer.address) == {0: 10, 1: 20, 2: 15}
    assert [ledger.call("epochSupply", e) for e in (0, 1, 2)] == [10, 20, 15]
    assert chain_reader(ledger).refunded_of(ACTIVE, record.ref) == 35
    assert_supply_identity(ledger)


def test_a_refund_into_expired_epochs_expires_on_arrival(short_ledger: Ledger) -> None:
    """Both parts' epochs expired between the redemption and the refund: each PointsRefunded is followed by
    its PointsExpired, no Transfer, the balance is unchanged and totalExpired grows by the refund."""
    ledger = short_ledger
    customer = holding(ledger, [10, 10])
    record = redeemed(ledger, customer, 15)
    assert (record.epochs, record.amounts) == ((0, 1), (10, 5))
    to_epoch(ledger, 4)  # epochs 0 and 1 expired
    ledger.issue(customer.address, 7)  # something live, which the refund leaves alone
    balance, expired = ledger.call("balanceOf", customer.address), ledger.call("totalExpired")
    refund_ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = refund(ledger, record, 15, ref=refund_ref)

    common = {"partnerId": ACTIVE, "customer": customer.address, "refundRef": refund_ref}
    assert entries(ledger, receipt) == [
        (
            "RedemptionRefunded",
            {"partnerId": ACTIVE, "customer": customer.address, "seq": seq + 1, "ref": record.ref}
            | {"refundRef": refund_ref, "amount": 15, "restored": 0, "value": SETTLEMENT_VALUE},
        ),
        ("PointsRefunded", {**common, "seq": seq + 2, "epoch": 1, "amount": 5}),
        ("PointsExpired", {"account": customer.address, "seq": seq + 3, "epoch": 1, "amount": 5}),
        ("PointsRefunded", {**common, "seq": seq + 4, "epoch": 0, "amount": 10}),
        ("PointsExpired", {"account": customer.address, "seq": seq + 5, "epoch": 0, "amount": 10}),
    ]
    assert ledger.call("balanceOf", customer.address) == balance == 7
    assert ledger.call("totalExpired") == expired + 15
    assert ledger.call("totalRefunded") == 15
    partner = chain_reader(ledger).partner(ACTIVE)
    assert (partner.refunded, partner.refunded_value) == (
        15,
        15 * SETTLEMENT_VALUE,
    )  # the whole refund counts
    assert_supply_identity(ledger)


def test_an_epoch_that_expired_on_the_standard_ledger_too(ledger: Ledger) -> None:
    customer = holding(ledger, [10, 10])
    record = redeemed(ledger, customer, 15)
    to_epoch(ledger, VALIDITY)  # epoch 0 expired, epoch 1 live
    receipt = refund(ledger, record, 15)
    assert [name for name, _ in entries(ledger, receipt)] == [
        "RedemptionRefunded",
        "Transfer",
        "PointsRefunded",
        "PointsRefunded",
        "PointsExpired",
    ]
    assert header(ledger, receipt)["restored"] == 5
    assert by_epoch(ledger, customer.address) == {1: 10}
    assert_supply_identity(ledger)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda r: replace(r, amounts=(r.amounts[0] + 1, *r.amounts[1:])), id="more points"),
        pytest.param(lambda r: replace(r, epochs=(r.epochs[0] + 1, *r.epochs[1:])), id="another epoch"),
        pytest.param(
            lambda r: replace(r, epochs=r.epochs[::-1], amounts=r.amounts[::-1]), id="parts reordered"
        ),
        pytest.param(
            lambda r: replace(r, epochs=r.epochs[:-1], amounts=r.amounts[:-1]), id="a part left out"
        ),
        pytest.param(lambda r: replace(r, amounts=r.amounts[:-1]), id="lengths differ"),
        pytest.param(lambda r: replace(r, customer=new_customer().address), id="another customer"),
        pytest.param(lambda r: replace(r, value=r.value + 1), id="another value"),
        pytest.param(lambda r: replace(r, ref=random_ref()), id="unknown reference"),
    ],
)
def test_a_wrong_record_is_not_found(ledger: Ledger, forge: Any) -> None:
    record = redeemed(ledger, holding(ledger, [10, 10]), 15)
    forged = forge(record)
    expect_revert(refused(ledger, forged, 1), "LedgerRedemptionNotFound", ACTIVE, forged.ref)
    refund(ledger, record, 1)  # the true record still works


def test_a_refund_reference_is_used_once(ledger: Ledger) -> None:
    customer = holding(ledger, [100])
    first, second = redeemed(ledger, customer, 10), redeemed(ledger, customer, 10)
    refund_ref = random_ref()
    refund(ledger, first, 5, ref=refund_ref)
    expect_revert(refused(ledger, first, 5, ref=refund_ref), "LedgerReferenceUsed", ACTIVE, refund_ref)
    expect_revert(refused(ledger, second, 5, ref=refund_ref), "LedgerReferenceUsed", ACTIVE, refund_ref)
    refund(ledger, second, 5, ref=second.ref)  # refund refs are their own namespace


def test_only_the_accepting_partner_refunds(ledger: Ledger) -> None:
    a = ledger.actors
    customer = holding(ledger, [100])
    record = redeemed(ledger, customer, 30)
    excinfo = refused(ledger, record, 5, sender=a.accept_only)
    expect_revert(excinfo, "LedgerRedemptionNotFound", ACCEPT_ONLY, record.ref)
    expect_revert(refused(ledger, record, 5, sender=a.stranger), "LedgerUnknownPartner", a.stranger)
    # partner ACCEPT_ONLY refunds its own redemption
    own = redeemed(ledger, customer, 20, sender=a.accept_only, partner_id=ACCEPT_ONLY)
    assert header(ledger, refund(ledger, own, 20, sender=a.accept_only))["partnerId"] == ACCEPT_ONLY
    ledger.transact("pause", sender=a.pauser)
    expect_revert(refused(ledger, record, 5), "EnforcedPause")


# --------------------------------------------------------------------------- settlement


def test_refunds_leave_the_partners_figures_at_the_redemptions_value(ledger: Ledger) -> None:
    a = ledger.actors
    customer = holding(ledger, [1_000])  # issued at 10
    first = redeemed(ledger, customer, 100)  # at 10
    ledger.transact("setSettlementValue", 7, sender=a.treasury)
    second = redeemed(ledger, customer, 50)  # at 7
    ledger.transact("setSettlementValue", 4, sender=a.treasury)

    assert header(ledger, refund(ledger, first, 40))["value"] == 10
    assert header(ledger, refund(ledger, second, 50))["value"] == 7

    partner = chain_reader(ledger).partner(ACTIVE)
    assert (partner.redeemed, partner.redeemed_value) == (150, 1000 + 350)
    assert (partner.refunded, partner.refunded_value) == (90, 400 + 350)
    # position = (redeemed - refunded) - (issued - reversed), in points and in value
    assert ledger.call("partnerPosition", ACTIVE) == [(150 - 90) - 1_000, (1350 - 750) - 10_000]
    assert ledger.call("coalitionPosition") == [1_000 - 60, 10_000 - 600]
    ids = ledger.call("partnerIds")
    assert sum(ledger.call("partnerPosition", p)[0] for p in ids) + ledger.call("coalitionPosition")[0] == 0
    assert sum(ledger.call("partnerPosition", p)[1] for p in ids) + ledger.call("coalitionPosition")[1] == 0
    assert_supply_identity(ledger)
