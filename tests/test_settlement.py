"""Settlement that does not move under your feet (both backends).

Each entry is valued at the settlement value in force when it happens, a return (reversal) at its
issuance's value and a refund at its redemption's; a partner's position is
``((redeemed - refunded) - (issued - reversed), (redeemedValue - refundedValue) - (issuedValue -
reversedValue))`` all-time (reversed: the points a return recovered), its open position that minus what
the treasury recorded as settled (``recordSettlement``: positive paid to the partner, negative received
from it). The coalition's position is ``((issued - reversed) - (redeemed - refunded), -Σ partners' value)``,
its open position that plus everything settled; the partners' and the coalition's positions sum to zero,
all-time and open, in points and in value, whatever the value changes, returns, refunds and settlements in
between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from eth_account.signers.local import LocalAccount
from test_roles import assert_entries, reverts

from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    Ledger,
    new_customer,
    random_ref,
)
from contract_helpers import IssuanceItem, RedemptionRecord, issued_item, partner_view, redemption_record

POINTS_BOUND, VALUE_BOUND = 2**96 - 1, 2**160 - 1
UNKNOWN = 99


def settle(ledger: Ledger, pid: int, points: int, value: int, ref: bytes | None = None) -> None:
    """The treasury records a settlement with ``pid``; asserts its one entry."""
    ref = ref or random_ref()
    before = ledger.call("ledgerSequence")
    receipt = ledger.transact("recordSettlement", pid, points, value, ref, sender=ledger.actors.treasury)
    fields = {"partnerId": pid, "points": points, "value": value, "paymentRef": ref}
    assert_entries(ledger, receipt, before, ("SettlementRecorded", fields))
    assert ledger.call("settlementReferenceUsed", pid, ref) is True


#: The counters of :class:`Book`, as ``partner(id)`` names them.
BOOKED = (
    "issued",
    "issuedValue",
    "redeemed",
    "redeemedValue",
    "reversed",
    "reversedValue",
    "refunded",
    "refundedValue",
    "settledPoints",
    "settledValue",
)


@dataclass
class Book:
    """What the positions must be: per partner the counters of :data:`BOOKED`, computed here from the
    operations alone."""

    value: int = SETTLEMENT_VALUE
    counts: dict[int, dict[str, int]] = field(default_factory=dict)

    def row(self, pid: int) -> dict[str, int]:
        return self.counts.setdefault(pid, dict.fromkeys(BOOKED, 0))

    def issued(self, pid: int, amount: int) -> None:
        self.row(pid)["issued"] += amount
        self.row(pid)["issuedValue"] += amount * self.value

    def redeemed(self, pid: int, amount: int) -> None:
        self.row(pid)["redeemed"] += amount
        self.row(pid)["redeemedValue"] += amount * self.value

    def reversed(self, pid: int, recovered: int, value: int) -> None:
        """A return that took back ``recovered`` points of an issuance valued at ``value`` a point."""
        self.row(pid)["reversed"] += recovered
        self.row(pid)["reversedValue"] += recovered * value

    def refunded(self, pid: int, amount: int, value: int) -> None:
        """A refund of ``amount`` points of a redemption valued at ``value`` a point."""
        self.row(pid)["refunded"] += amount
        self.row(pid)["refundedValue"] += amount * value

    def settled(self, pid: int, points: int, value: int) -> None:
        self.row(pid)["settledPoints"] += points
        self.row(pid)["settledValue"] += value

    def check(self, ledger: Ledger) -> None:
        """Every partner's counters, all-time and open position as booked; the coalition's likewise; all
        sum to zero."""
        total, total_open = [0, 0], [0, 0]
        for pid in ledger.call("partnerIds"):
            row = self.row(pid)
            view = partner_view(ledger, pid)
            assert {name: view[name] for name in BOOKED} == row, pid
            points = (row["redeemed"] - row["refunded"]) - (row["issued"] - row["reversed"])
            value = (row["redeemedValue"] - row["refundedValue"]) - (
                row["issuedValue"] - row["reversedValue"]
            )
            settled, settled_value = row["settledPoints"], row["settledValue"]
            position = (points, value)
            opened = (position[0] - settled, position[1] - settled_value)
            assert tuple(ledger.call("partnerPosition", pid)) == position, pid
            assert tuple(ledger.call("partnerOpenPosition", pid)) == opened, pid
            total = [total[0] + position[0], total[1] + position[1]]
            total_open = [total_open[0] + opened[0], total_open[1] + opened[1]]
        coalition, coalition_open = ledger.call("coalitionPosition"), ledger.call("coalitionOpenPosition")
        assert tuple(coalition) == (-total[0], -total[1])
        assert tuple(coalition_open) == (-total_open[0], -total_open[1])
        rows = [self.row(pid) for pid in ledger.call("partnerIds")]
        assert (ledger.call("totalReversed"), ledger.call("totalRefunded")) == (
            sum(row["reversed"] for row in rows),
            sum(row["refunded"] for row in rows),
        )


def issue_at(ledger: Ledger, book: Book, customer: str, pid: int, operator: str, amount: int) -> IssuanceItem:
    item = issued_item(ledger, ledger.issue(customer, amount, sender=operator))
    book.issued(pid, amount)
    return item


def redeem_at(
    ledger: Ledger, book: Book, customer: LocalAccount, pid: int, operator: str, amount: int
) -> RedemptionRecord:
    record = redemption_record(ledger, ledger.redeem(customer, amount, sender=operator, partner_id=pid))
    book.redeemed(pid, amount)
    return record


def reverse(ledger: Ledger, book: Book, item: IssuanceItem, pid: int, operator: str, amount: int) -> int:
    """Reverses ``amount`` of ``item``; books and returns what it recovered."""
    receipt = ledger.transact("reverseIssuance", item, amount, random_ref(), sender=operator)
    (header,) = (e["args"] for e in ledger.events(receipt, "IssuanceReversed"))
    assert (header["requested"], header["value"]) == (amount, item.value)
    book.reversed(pid, header["recovered"], item.value)
    return int(header["recovered"])


def refund(
    ledger: Ledger, book: Book, record: RedemptionRecord, pid: int, operator: str, amount: int
) -> None:
    receipt = ledger.transact("refundRedemption", record, amount, random_ref(), sender=operator)
    (header,) = (e["args"] for e in ledger.events(receipt, "RedemptionRefunded"))
    assert (header["amount"], header["value"]) == (amount, record.value)
    book.refunded(pid, amount, record.value)


def test_a_settlement_is_an_entry_that_moves_the_open_position_only(ledger: Ledger) -> None:
    """ACTIVE issued 100 points and owes 1,000; ACCEPT_ONLY redeemed 40 and is owed 400. The treasury
    receives ACTIVE's 1,000 and pays ACCEPT_ONLY its 400: both open positions are closed, the all-time
    positions stay, and the coalition's open position is what it keeps for the 60 points still out."""
    actors, customer, book = ledger.actors, new_customer(), Book()
    ledger.issue(customer.address, 100)
    book.issued(ACTIVE, 100)
    redeem_at(ledger, book, customer, ACCEPT_ONLY, actors.accept_only, 40)
    book.check(ledger)
    assert [tuple(ledger.call("partnerPosition", pid)) for pid in (ACTIVE, ACCEPT_ONLY)] == [
        (-100, -1_000),
        (40, 400),
    ]

    settle(ledger, ACTIVE, -100, -1_000)
    book.settled(ACTIVE, -100, -1_000)
    book.check(ledger)
    assert tuple(ledger.call("partnerOpenPosition", ACTIVE)) == (0, 0)
    view = partner_view(ledger, ACTIVE)
    assert (view["settledPoints"], view["settledValue"], view["issued"], view["issuedValue"]) == (
        -100,
        -1_000,
        100,
        1_000,
    )
    assert tuple(ledger.call("coalitionOpenPosition")) == (-40, -400)

    settle(ledger, ACCEPT_ONLY, 40, 400)
    book.settled(ACCEPT_ONLY, 40, 400)
    book.check(ledger)
    assert tuple(ledger.call("partnerOpenPosition", ACCEPT_ONLY)) == (0, 0)
    assert tuple(ledger.call("coalitionPosition")) == (60, 600)
    assert tuple(ledger.call("coalitionOpenPosition")) == (0, 0)


def test_positions_sum_to_zero_through_value_changes_and_settlements(ledger: Ledger) -> None:
    """Issues, redemptions, returns and refunds at three values (a return or a refund at its original's),
    partial, excess, points-only and value-only settlements: after each phase every view equals the book
    and the sums are zero."""
    actors, treasury, customer, book = ledger.actors, ledger.actors.treasury, new_customer(), Book()

    big = issue_at(ledger, book, customer.address, ACTIVE, actors.partner, 300)
    issue_at(ledger, book, customer.address, ISSUE_ONLY, actors.issue_only, 50)
    accepted = redeem_at(ledger, book, customer, ACCEPT_ONLY, actors.accept_only, 120)
    settle(ledger, ACTIVE, -200, -1_500)  # partial
    book.settled(ACTIVE, -200, -1_500)
    book.check(ledger)

    ledger.transact("setSettlementValue", 7, sender=treasury)
    book.value = 7
    redeemed = redeem_at(ledger, book, customer, ACTIVE, actors.partner, 80)
    issue_at(ledger, book, customer.address, ISSUE_ONLY, actors.issue_only, 9)
    settle(ledger, ACCEPT_ONLY, 150, 2_000)  # more than it was owed
    book.settled(ACCEPT_ONLY, 150, 2_000)
    book.check(ledger)

    # returns and refunds at the values of their originals (10 and 7), not at the 7 in force
    assert reverse(ledger, book, big, ACTIVE, actors.partner, 40) == 40
    refund(ledger, book, accepted, ACCEPT_ONLY, actors.accept_only, 30)
    refund(ledger, book, redeemed, ACTIVE, actors.partner, 20)
    # a return of more than the customer still holds recovers what it holds (and counts only that)
    spender = new_customer()
    small = issue_at(ledger, book, spender.address, ISSUE_ONLY, actors.issue_only, 20)
    redeem_at(ledger, book, spender, ACCEPT_ONLY, actors.accept_only, 15)
    assert reverse(ledger, book, small, ISSUE_ONLY, actors.issue_only, 12) == 5
    assert ledger.call("reversedOf", ISSUE_ONLY, small.ref, spender.address, 20, small.item_ref) == 12
    book.check(ledger)

    settle(ledger, ISSUE_ONLY, 0, -77)  # value only
    book.settled(ISSUE_ONLY, 0, -77)
    settle(ledger, ISSUE_ONLY, -5, 0)  # points only
    book.settled(ISSUE_ONLY, -5, 0)
    ledger.transact("setSettlementValue", 0, sender=treasury)
    book.value = 0
    redeem_at(ledger, book, customer, ACCEPT_ONLY, actors.accept_only, 10)  # worth nothing
    book.check(ledger)


def test_a_payment_reference_is_used_once_per_partner(ledger: Ledger) -> None:
    """Per partner, and apart from its issue, redemption, return and refund references."""
    ref = random_ref()
    settle(ledger, ACTIVE, 1, 10, ref)
    with reverts("LedgerReferenceUsed", ACTIVE, ref):
        ledger.transact("recordSettlement", ACTIVE, 2, 20, ref, sender=ledger.actors.treasury)
    assert ledger.call("settlementReferenceUsed", ACCEPT_ONLY, ref) is False
    settle(ledger, ACCEPT_ONLY, 1, 10, ref)  # another partner's payment may carry it
    customer = new_customer()
    # so may ACTIVE's orders, redemptions, returns and refunds
    issuance = issued_item(ledger, ledger.issue(customer.address, 10, ref=ref))
    redeemed = redemption_record(ledger, ledger.redeem(customer, 5, ref=ref))
    ledger.transact("reverseIssuance", issuance, 1, ref, sender=ledger.actors.partner)
    ledger.transact("refundRedemption", redeemed, 1, ref, sender=ledger.actors.partner)
    used = ("referenceUsed", "redemptionReferenceUsed", "settlementReferenceUsed")
    used += ("returnReferenceUsed", "refundReferenceUsed")
    assert [ledger.call(view, ACTIVE, ref) for view in used] == [True] * 5
    assert partner_view(ledger, ACTIVE)["settledPoints"] == 1


def test_a_settlement_of_nothing_is_refused(ledger: Ledger) -> None:
    ref = random_ref()
    with reverts("LedgerZeroAmount"):
        ledger.transact("recordSettlement", ACTIVE, 0, 0, ref, sender=ledger.actors.treasury)
    assert ledger.call("settlementReferenceUsed", ACTIVE, ref) is False


@pytest.mark.parametrize(
    ("points", "value", "magnitude", "bound"),
    [
        (POINTS_BOUND + 1, 1, POINTS_BOUND + 1, POINTS_BOUND),
        (-(POINTS_BOUND + 1), 1, POINTS_BOUND + 1, POINTS_BOUND),
        (2**255 - 1, 1, 2**255 - 1, POINTS_BOUND),
        # int256's minimum: its magnitude 2^255 is reported exactly
        (-(2**255), 1, 2**255, POINTS_BOUND),
        (1, VALUE_BOUND + 1, VALUE_BOUND + 1, VALUE_BOUND),
        (1, -(VALUE_BOUND + 1), VALUE_BOUND + 1, VALUE_BOUND),
        (1, -(2**255), 2**255, VALUE_BOUND),
        (POINTS_BOUND + 1, VALUE_BOUND + 1, POINTS_BOUND + 1, POINTS_BOUND),  # points are checked first
    ],
    ids=["points", "-points", "points-int-max", "points-int-min", "value", "-value", "value-int-min", "both"],
)
def test_settlement_magnitudes_are_bounded(
    ledger: Ledger, points: int, value: int, magnitude: int, bound: int
) -> None:
    with reverts("LedgerAmountTooLarge", magnitude, bound):
        ledger.transact(
            "recordSettlement", ACTIVE, points, value, random_ref(), sender=ledger.actors.treasury
        )


def test_settlements_at_the_bounds_and_of_unknown_partners(ledger: Ledger) -> None:
    book = Book()
    for points, value in (
        (POINTS_BOUND, VALUE_BOUND),
        (-POINTS_BOUND, -VALUE_BOUND),
        (-POINTS_BOUND, VALUE_BOUND),
    ):
        settle(ledger, ACTIVE, points, value)
        book.settled(ACTIVE, points, value)
    book.check(ledger)
    with reverts("LedgerPartnerNotFound", UNKNOWN):
        ledger.transact("recordSettlement", UNKNOWN, 1, 1, random_ref(), sender=ledger.actors.treasury)


def test_settlements_are_recorded_while_paused(ledger: Ledger) -> None:
    """Paying partners goes on during an incident; points stand still."""
    ledger.transact("pause", sender=ledger.actors.pauser)
    settle(ledger, ACTIVE, -3, -30)
    assert tuple(ledger.call("partnerOpenPosition", ACTIVE)) == (3, 30)
    assert tuple(ledger.call("coalitionOpenPosition")) == (-3, -30)
