"""A partner over its whole life (both backends): key rotation, rights, settlement address, offboarding,
allowance top-ups and cuts; each change one ledger entry with its exact fields.

A rotation keeps the partner's id, allowance, counters, positions and references; the new key works in
the next transaction and the old one is refused from then on. Offboarding drops the allowance (an
allowance entry, then the status entry), stops issuance, redemption, returns, refunds and rotation for
good, and keeps the history: counters, positions, references, the customers' points, and the settlements
still recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from test_roles import RULE, assert_entries, fresh_address, funded_key, reverts
from web3.types import TxReceipt

from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ALLOWANCE,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    SUSPENDED,
    Ledger,
    new_customer,
    random_ref,
)
from contract_helpers import (
    STATUS_ACTIVE,
    STATUS_OFFBOARDED,
    STATUS_SUSPENDED,
    ZERO_ADDRESS,
    IssuanceItem,
    RedemptionRecord,
    issued_item,
    partner_view,
    redemption_record,
    send_signed,
)

MAX_ALLOWANCE = 2**64 - 1
UNKNOWN = 99


def seq(ledger: Ledger) -> int:
    value: int = ledger.call("ledgerSequence")
    return value


Refs = tuple[bytes, bytes, bytes, bytes, bytes]  # issue, redemption, payment, return and refund references


def history(ledger: Ledger, pid: int, refs: Refs) -> tuple[object, ...]:
    """What a partner's past is made of: its position, open position, and its issue, redemption, payment,
    return and refund references."""
    order, payment, settlement, returned, refund = refs
    return (
        ledger.call("partnerPosition", pid),
        ledger.call("partnerOpenPosition", pid),
        ledger.call("referenceUsed", pid, order),
        ledger.call("redemptionReferenceUsed", pid, payment),
        ledger.call("settlementReferenceUsed", pid, settlement),
        ledger.call("returnReferenceUsed", pid, returned),
        ledger.call("refundReferenceUsed", pid, refund),
    )


@dataclass
class History:
    customer: LocalAccount
    refs: Refs
    issuance: IssuanceItem
    redemption: RedemptionRecord


def with_history(ledger: Ledger) -> History:
    """ACTIVE issues 100 to a customer, redeems 30 of them, takes 10 back on a return and refunds 5 of the
    redemption (it owes 90 - 25 = 65), and pays 50 of what it owes."""
    customer = new_customer()
    refs = (random_ref(), random_ref(), random_ref(), random_ref(), random_ref())
    issuance = issued_item(ledger, ledger.issue(customer.address, 100, ref=refs[0]))
    redemption = redemption_record(ledger, ledger.redeem(customer, 30, ref=refs[1]))
    ledger.transact("reverseIssuance", issuance, 10, refs[3], sender=ledger.actors.partner)
    ledger.transact("refundRedemption", redemption, 5, refs[4], sender=ledger.actors.partner)
    ledger.transact("recordSettlement", ACTIVE, -50, -500, refs[2], sender=ledger.actors.treasury)
    return History(customer, refs, issuance, redemption)


def rotate(ledger: Ledger, pid: int, new: str, *, sender: str) -> TxReceipt:
    """Rotates ``pid`` to ``new``, asserting its one entry."""
    before, previous = seq(ledger), partner_view(ledger, pid)["operator"]
    receipt = ledger.transact("rotatePartnerOperator", pid, new, sender=sender)
    changed = {"partnerId": pid, "operator": new, "previousOperator": previous}
    assert_entries(ledger, receipt, before, ("PartnerOperatorChanged", changed))
    return receipt


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("by", ["admin", "operator"])
def test_a_rotation_keeps_the_partner_and_moves_its_key(ledger: Ledger, by: str) -> None:
    actors, old, new = ledger.actors, ledger.actors.partner, funded_key(ledger)
    made = with_history(ledger)
    customer, refs = made.customer, made.refs
    view, past, ids = partner_view(ledger, ACTIVE), history(ledger, ACTIVE, refs), ledger.call("partnerIds")
    counters = ("allowance", "issued", "redeemed", "reversed", "refunded", "settledPoints")
    assert tuple(view[c] for c in counters) == (ALLOWANCE - 100, 100, 30, 10, 5, -50)
    assert past[:2] == ([-65, -650], [-15, -150])

    rotate(ledger, ACTIVE, new.address, sender=actors.admin if by == "admin" else old)
    assert partner_view(ledger, ACTIVE) == {**view, "operator": new.address}
    assert (history(ledger, ACTIVE, refs), ledger.call("partnerIds")) == (past, ids)

    send_signed(ledger, new, "issue", customer.address, 10, random_ref(), 1, RULE)  # the very next block
    with reverts("LedgerRotatedOperator", old, ACTIVE):
        ledger.issue(customer.address, 10, sender=old)
    changed = {"allowance": view["allowance"] - 10, "issued": 110, "issuedValue": 110 * SETTLEMENT_VALUE}
    assert partner_view(ledger, ACTIVE) == {**view, "operator": new.address, **changed}


def test_a_key_rotates_again_and_again_and_every_former_key_stays_refused(ledger: Ledger) -> None:
    """k0 → k1 by the admin, k1 → k2 by k1 itself: k0 and k1 are refused, all three map to the partner."""
    actors, k0, k1, k2 = ledger.actors, ledger.actors.partner, funded_key(ledger), funded_key(ledger)
    rotate(ledger, ACTIVE, k1.address, sender=actors.admin)
    before = seq(ledger)
    receipt = send_signed(ledger, k1, "rotatePartnerOperator", ACTIVE, k2.address)
    changed = {"partnerId": ACTIVE, "operator": k2.address, "previousOperator": k1.address}
    assert_entries(ledger, receipt, before, ("PartnerOperatorChanged", changed))

    with reverts("LedgerRotatedOperator", k0, ACTIVE):
        ledger.issue(fresh_address(), 1, sender=k0)
    with reverts("LedgerRotatedOperator", k1.address, ACTIVE):
        send_signed(ledger, k1, "issue", fresh_address(), 1, random_ref(), 1, RULE)
    send_signed(ledger, k2, "issue", fresh_address(), 1, random_ref(), 1, RULE)
    assert [ledger.call("partnerIdOf", k) for k in (k0, k1.address, k2.address)] == [ACTIVE] * 3


def test_a_suspended_partner_rotated_by_the_admin_stays_suspended(ledger: Ledger) -> None:
    """The status moves with the key: the new key is suspended too until the admin reactivates."""
    actors, new = ledger.actors, funded_key(ledger)
    rotate(ledger, SUSPENDED, new.address, sender=actors.admin)
    assert partner_view(ledger, SUSPENDED)["status"] == STATUS_SUSPENDED
    with reverts("LedgerPartnerSuspended", SUSPENDED):
        send_signed(ledger, new, "issue", fresh_address(), 1, random_ref(), 1, RULE)
    with reverts("LedgerRotatedOperator", actors.suspended, SUSPENDED):
        ledger.issue(fresh_address(), 1, sender=actors.suspended)
    ledger.transact("reactivatePartner", SUSPENDED, sender=actors.admin)
    send_signed(ledger, new, "issue", fresh_address(), 1, random_ref(), 1, RULE)


def test_a_rotation_needs_a_fresh_key(ledger: Ledger) -> None:
    """Not the zero address, not the partner's own key, not another partner's; and a partner that exists."""
    actors, admin = ledger.actors, ledger.actors.admin
    for key in (ZERO_ADDRESS, actors.partner, actors.accept_only):
        with reverts("LedgerInvalidOperator", key):
            ledger.transact("rotatePartnerOperator", ACTIVE, key, sender=admin)
    with reverts("LedgerPartnerNotFound", UNKNOWN):
        ledger.transact("rotatePartnerOperator", UNKNOWN, fresh_address(), sender=admin)
    with reverts("LedgerUnauthorizedRotation", actors.partner, ISSUE_ONLY):  # its own partner only
        ledger.transact("rotatePartnerOperator", ISSUE_ONLY, fresh_address(), sender=actors.partner)


# --------------------------------------------------------------------------- rights and settlement address


def test_rights_changes_are_entries_and_take_effect_at_once(ledger: Ledger) -> None:
    admin, partner = ledger.actors.admin, ledger.actors.partner
    customer = new_customer()
    ledger.issue(customer.address, 10)
    for can_issue, can_accept in ((False, True), (True, False), (False, False), (True, True)):
        before = seq(ledger)
        receipt = ledger.transact("setPartnerRights", ACTIVE, can_issue, can_accept, sender=admin)
        changed = {"partnerId": ACTIVE, "canIssue": can_issue, "canAccept": can_accept}
        assert_entries(ledger, receipt, before, ("PartnerRightsChanged", changed))
        view = partner_view(ledger, ACTIVE)
        assert (view["canIssue"], view["canAccept"], view["status"]) == (can_issue, can_accept, STATUS_ACTIVE)
        if not can_issue:
            with reverts("LedgerPartnerCannotIssue", ACTIVE):
                ledger.issue(customer.address, 1, sender=partner)
        if not can_accept:
            with reverts("LedgerPartnerCannotAccept", ACTIVE):
                ledger.redeem(customer, 1, sender=partner)
    ledger.issue(customer.address, 1, sender=partner)
    ledger.redeem(customer, 1, sender=partner)


def test_the_settlement_address_changes_with_an_entry_and_is_never_zero(ledger: Ledger) -> None:
    admin, payee = ledger.actors.admin, fresh_address()
    before = seq(ledger)
    receipt = ledger.transact("setPartnerSettlementAddress", ACTIVE, payee, sender=admin)
    assert_entries(
        ledger,
        receipt,
        before,
        ("PartnerSettlementAddressChanged", {"partnerId": ACTIVE, "settlement": payee}),
    )
    assert partner_view(ledger, ACTIVE)["settlement"] == payee
    with reverts("LedgerInvalidSettlementAddress", ZERO_ADDRESS):
        ledger.transact("setPartnerSettlementAddress", ACTIVE, ZERO_ADDRESS, sender=admin)
    with reverts("LedgerInvalidSettlementAddress", ZERO_ADDRESS):
        ledger.transact("registerPartner", 7, fresh_address(), ZERO_ADDRESS, True, True, 1, sender=admin)
    with reverts("LedgerPartnerNotFound", UNKNOWN):
        ledger.transact("setPartnerSettlementAddress", UNKNOWN, payee, sender=admin)


# --------------------------------------------------------------------------- offboarding


def test_offboarding_drops_the_allowance_then_the_status_and_keeps_the_history(ledger: Ledger) -> None:
    actors, admin, operator = ledger.actors, ledger.actors.admin, ledger.actors.partner
    made = with_history(ledger)
    customer, refs = made.customer, made.refs
    view, past = partner_view(ledger, ACTIVE), history(ledger, ACTIVE, refs)

    before = seq(ledger)
    receipt = ledger.transact("offboardPartner", ACTIVE, sender=admin)
    dropped = {"partnerId": ACTIVE, "previousAllowance": view["allowance"], "allowance": 0}
    assert_entries(
        ledger,
        receipt,
        before,
        ("PartnerAllowanceChanged", dropped),
        ("PartnerStatusChanged", {"partnerId": ACTIVE, "status": STATUS_OFFBOARDED}),
    )
    assert partner_view(ledger, ACTIVE) == {**view, "status": STATUS_OFFBOARDED, "allowance": 0}
    assert history(ledger, ACTIVE, refs) == past
    assert ACTIVE in ledger.call("partnerIds")

    # it can do nothing more, and nothing can bring it back
    gone = ("LedgerPartnerOffboarded", ACTIVE)
    with reverts(*gone):
        ledger.issue(customer.address, 1, sender=operator)
    with reverts(*gone):
        ledger.redeem(customer, 1, sender=operator)
    with reverts(*gone):
        ledger.transact("reverseIssuance", made.issuance, 1, random_ref(), sender=operator)
    with reverts(*gone):
        ledger.transact("refundRedemption", made.redemption, 1, random_ref(), sender=operator)
    for fn, args in (
        ("reactivatePartner", (ACTIVE,)),
        ("suspendPartner", (ACTIVE,)),
        ("offboardPartner", (ACTIVE,)),
        ("increasePartnerAllowance", (ACTIVE, 1)),
        ("setPartnerRights", (ACTIVE, True, True)),
        ("rotatePartnerOperator", (ACTIVE, fresh_address())),
    ):
        with reverts(*gone):
            ledger.transact(fn, *args, sender=admin)
    with reverts("LedgerUnauthorizedRotation", operator, ACTIVE):
        ledger.transact("rotatePartnerOperator", ACTIVE, fresh_address(), sender=operator)
    with reverts("LedgerAllowanceExceeded", ACTIVE, 0, 1):
        ledger.transact("decreasePartnerAllowance", ACTIVE, 1, sender=admin)

    # what it issued stays live and is redeemed elsewhere; it still pays what it owes
    assert ledger.call("balanceOf", customer.address) == 65
    ledger.redeem(customer, 65, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    assert tuple(ledger.call("partnerOpenPosition", ACTIVE)) == (-15, -150)
    ledger.transact("recordSettlement", ACTIVE, -15, -150, random_ref(), sender=actors.treasury)
    assert tuple(ledger.call("partnerOpenPosition", ACTIVE)) == (0, 0)
    assert ledger.call("partnerPosition", ACTIVE) == past[0]  # redeeming elsewhere moved ACCEPT_ONLY only


def test_offboarding_without_allowance_left_is_the_status_entry_alone(ledger: Ledger) -> None:
    """Here a suspended partner whose allowance was cut to zero first."""
    admin = ledger.actors.admin
    ledger.transact("decreasePartnerAllowance", SUSPENDED, ALLOWANCE, sender=admin)
    before = seq(ledger)
    receipt = ledger.transact("offboardPartner", SUSPENDED, sender=admin)
    assert_entries(
        ledger,
        receipt,
        before,
        ("PartnerStatusChanged", {"partnerId": SUSPENDED, "status": STATUS_OFFBOARDED}),
    )
    with reverts("LedgerPartnerOffboarded", SUSPENDED):
        ledger.transact("reactivatePartner", SUSPENDED, sender=admin)


# --------------------------------------------------------------------------- allowances


def change_allowance(ledger: Ledger, fn: str, pid: int, amount: int, *, sender: str) -> None:
    """``fn`` by ``amount``, asserting its one entry (previous and new allowance)."""
    previous, before = partner_view(ledger, pid)["allowance"], seq(ledger)
    receipt = ledger.transact(fn, pid, amount, sender=sender)
    allowance = previous + amount if fn == "increasePartnerAllowance" else previous - amount
    changed = {"partnerId": pid, "previousAllowance": previous, "allowance": allowance}
    assert_entries(ledger, receipt, before, ("PartnerAllowanceChanged", changed))
    assert partner_view(ledger, pid)["allowance"] == allowance


def test_allowances_move_by_deltas_within_their_bounds(ledger: Ledger) -> None:
    """Top-ups by the admin up to MAX_ALLOWANCE exactly; cuts by the admin or the treasury down to zero
    exactly; zero, beyond the bound and unknown partners refused."""
    admin, treasury = ledger.actors.admin, ledger.actors.treasury
    up, down = "increasePartnerAllowance", "decreasePartnerAllowance"
    for fn, sender in ((up, admin), (down, admin), (down, treasury)):
        with reverts("LedgerZeroAmount"):
            ledger.transact(fn, ISSUE_ONLY, 0, sender=sender)
        with reverts("LedgerPartnerNotFound", UNKNOWN):
            ledger.transact(fn, UNKNOWN, 1, sender=sender)

    change_allowance(ledger, up, ISSUE_ONLY, 5, sender=admin)
    change_allowance(ledger, up, ISSUE_ONLY, 7, sender=admin)  # adds up
    room = MAX_ALLOWANCE - ALLOWANCE - 12
    for amount in (room + 1, 2**256 - 1):
        with reverts("LedgerAmountTooLarge", amount, room):
            ledger.transact(up, ISSUE_ONLY, amount, sender=admin)
    change_allowance(ledger, up, ISSUE_ONLY, room, sender=admin)
    with reverts("LedgerAmountTooLarge", 1, 0):
        ledger.transact(up, ISSUE_ONLY, 1, sender=admin)

    change_allowance(ledger, down, ISSUE_ONLY, 1, sender=treasury)
    with reverts("LedgerAllowanceExceeded", ISSUE_ONLY, MAX_ALLOWANCE - 1, MAX_ALLOWANCE):
        ledger.transact(down, ISSUE_ONLY, MAX_ALLOWANCE, sender=admin)
    change_allowance(ledger, down, ISSUE_ONLY, MAX_ALLOWANCE - 1, sender=admin)
    with reverts("LedgerAllowanceExceeded", ISSUE_ONLY, 0, 1):
        ledger.issue(fresh_address(), 1, sender=ledger.actors.issue_only)


def test_a_partner_is_registered_with_at_most_max_allowance(ledger: Ledger) -> None:
    admin, operator = ledger.actors.admin, fresh_address()
    with reverts("LedgerAmountTooLarge", MAX_ALLOWANCE + 1, MAX_ALLOWANCE):
        ledger.transact("registerPartner", 7, operator, operator, True, True, MAX_ALLOWANCE + 1, sender=admin)
    ledger.transact("registerPartner", 7, operator, operator, True, True, MAX_ALLOWANCE, sender=admin)
    assert partner_view(ledger, 7)["allowance"] == MAX_ALLOWANCE
