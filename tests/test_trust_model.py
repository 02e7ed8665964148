"""Attacks on the trust model, each refused with its exact error (both backends).

* No partner operator key (active, suspended, offboarded or rotated away) holds a role, however it is
  tried: a grant, a handover begun to it, a handover accepted by a key registered as operator meanwhile.
* No role holder operates a partner: neither registered nor rotated to.
* A rotated-away key is refused at once (issue, batch, redeem, reversal, refund, rotation), can never hold
  a role nor operate again, and the partner keeps its references: the new key cannot reuse an old one, and
  reverses and refunds what the old key issued and accepted.
* Allowances move by deltas: a cut of the full allowance after the partner spent part of it fails
  instead of handing the spent part back; top-ups add up.
* Settlement values apply forward only, are bounded, and positions at the bounds do not overflow.
* The admin alone cannot fake a settlement claim: it redeems, issues, reverses, refunds, prices and settles
  nothing, and a partner it registers with a key it holds cannot redeem a customer's points without that
  customer's signature; a suspended partner cannot rotate itself out of its suspension. Its one power over
  a customer's points is the recovery of a lost key (``recoverAccount``), which moves them without the
  customer's signature: that is a ledger entry marked ``recovery`` (and in production a timelocked call,
  public for the delay before it runs), shown below with what it would allow.

(Consent replay, EIP-7702 accounts, ERC-1271 wallets, zero addresses and expiry during a pause are
covered by the consent and expiry tests.)
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from test_roles import (
    DEFAULT_ADMIN_ROLE,
    PAUSER_ROLE,
    RULE,
    TREASURY_ROLE,
    assert_entries,
    fresh_address,
    funded_key,
    reverts,
)
from web3 import Web3

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
    ZERO_ADDRESS,
    issued_item,
    keyed,
    partner_view,
    redemption_record,
    send_signed,
)

AUDITOR_ROLE = bytes(Web3.keccak(text="AUDITOR_ROLE"))  # any role the admin may make up
ROLES = (TREASURY_ROLE, PAUSER_ROLE, AUDITOR_ROLE)
MAX = 2**64 - 1  # MAX_AMOUNT = MAX_ALLOWANCE = MAX_SETTLEMENT_VALUE
NEW_ID = 7


def redemption(ledger: Ledger, customer: LocalAccount, pid: int, amount: int, ref: bytes) -> tuple[Any, ...]:
    """``redeem``'s arguments with ``customer``'s consent at ``pid`` and the next nonce of its key."""
    nonce, deadline = ledger.call("nonces", customer.address, pid), ledger.node.timestamp() + 3600
    signature = ledger.sign_redemption(customer, pid, amount, ref, nonce, deadline)
    return (customer.address, amount, ref, nonce, deadline, signature)


def holding(ledger: Ledger, amount: int) -> LocalAccount:
    """A customer key holding ``amount`` points issued by ACTIVE."""
    customer = new_customer()
    ledger.issue(customer.address, amount)
    return customer


def operator_in(ledger: Ledger, state: str) -> tuple[str, int]:
    """An operator key in ``state`` and the partner it operates or operated."""
    actors, admin = ledger.actors, ledger.actors.admin
    if state == "active":
        return actors.partner, ACTIVE
    if state == "suspended":
        return actors.suspended, SUSPENDED
    if state == "offboarded":
        ledger.transact("offboardPartner", ISSUE_ONLY, sender=admin)
        return actors.issue_only, ISSUE_ONLY
    ledger.transact("rotatePartnerOperator", ACTIVE, fresh_address(), sender=admin)  # rotated away
    return actors.partner, ACTIVE


def positions(ledger: Ledger, *pids: int) -> list[tuple[int, int]]:
    """The all-time positions of ``pids``, then the coalition's."""
    return [tuple(ledger.call("partnerPosition", pid)) for pid in pids] + [
        tuple(ledger.call("coalitionPosition"))
    ]


# --------------------------------------------------------------------------- an operator made a role holder


@pytest.mark.parametrize("state", ["active", "suspended", "offboarded", "rotated_away"])
def test_no_operator_key_can_be_granted_any_role(ledger: Ledger, state: str) -> None:
    """Neither a role by grantRole (the made-up one too), nor the admin role by grant or handover."""
    operator, pid = operator_in(ledger, state)
    admin = ledger.actors.admin
    for role in ROLES:
        with reverts("LedgerOperatorCannotHoldRole", operator, pid):
            ledger.transact("grantRole", role, operator, sender=admin)
    with reverts("AccessControlEnforcedDefaultAdminRules"):
        ledger.transact("grantRole", DEFAULT_ADMIN_ROLE, operator, sender=admin)
    with reverts("LedgerOperatorCannotHoldRole", operator, pid):
        ledger.transact("beginDefaultAdminTransfer", operator, sender=admin)
    assert [ledger.call("hasRole", role, operator) for role in (DEFAULT_ADMIN_ROLE, *ROLES)] == [False] * 4
    assert ledger.call("pendingDefaultAdmin") == [ZERO_ADDRESS, 0]


def test_the_pending_admin_cannot_be_registered_or_rotated_in_as_operator(ledger: Ledger) -> None:
    """A key a handover is begun to is refused as an operator while the handover is pending (it would
    otherwise block the handover, or become admin and operator at once); once cancelled, it may be one."""
    admin, key = ledger.actors.admin, funded_key(ledger)
    ledger.transact("beginDefaultAdminTransfer", key.address, sender=admin)
    with reverts("LedgerInvalidOperator", key.address):
        ledger.transact("registerPartner", NEW_ID, key.address, key.address, True, True, 1, sender=admin)
    with reverts("LedgerInvalidOperator", key.address):
        ledger.transact("rotatePartnerOperator", ACTIVE, key.address, sender=admin)
    ledger.transact("cancelDefaultAdminTransfer", sender=admin)
    ledger.transact("registerPartner", NEW_ID, key.address, key.address, True, True, 1, sender=admin)
    assert ledger.call("partnerIdOf", key.address) == NEW_ID


# --------------------------------------------------------------------------- a role holder made an operator


def role_holders(ledger: Ledger) -> list[str]:
    """The admin, the treasury, the pauser, and a key the admin gave a made-up role."""
    actors, auditor = ledger.actors, fresh_address()
    ledger.transact("grantRole", AUDITOR_ROLE, auditor, sender=actors.admin)
    return [actors.admin, actors.treasury, actors.pauser, auditor]


def test_no_role_holder_can_be_registered_as_operator(ledger: Ledger) -> None:
    admin = ledger.actors.admin
    for holder in role_holders(ledger):
        with reverts("LedgerInvalidOperator", holder):
            ledger.transact("registerPartner", NEW_ID, holder, holder, True, True, 1, sender=admin)
    assert ledger.call("partnerIds") == [ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY]


def test_no_partner_can_be_rotated_to_a_role_holder(ledger: Ledger) -> None:
    """Neither by the admin nor by the partner's own operator."""
    actors = ledger.actors
    for holder in role_holders(ledger):
        for sender in (actors.admin, actors.partner):
            with reverts("LedgerInvalidOperator", holder):
                ledger.transact("rotatePartnerOperator", ACTIVE, holder, sender=sender)
    assert partner_view(ledger, ACTIVE)["operator"] == actors.partner


def test_a_key_whose_roles_were_revoked_may_operate(ledger: Ledger) -> None:
    """The rule is about roles held now: the former pauser, once revoked, can be registered, and from then
    on can be granted no role."""
    admin, pauser = ledger.actors.admin, ledger.actors.pauser
    ledger.transact("revokeRole", PAUSER_ROLE, pauser, sender=admin)
    ledger.transact("registerPartner", NEW_ID, pauser, pauser, True, True, 1, sender=admin)
    assert ledger.call("partnerIdOf", pauser) == NEW_ID
    with reverts("LedgerOperatorCannotHoldRole", pauser, NEW_ID):
        ledger.transact("grantRole", PAUSER_ROLE, pauser, sender=admin)


# --------------------------------------------------------------------------- rotated-away keys


@pytest.mark.parametrize("by", ["admin", "operator"])
def test_a_rotated_away_key_is_refused_at_once(ledger: Ledger, by: str) -> None:
    """After the rotation (by the admin, or by the operator itself) the old key can neither issue, issue a
    batch, redeem, reverse an issuance, refund a redemption nor rotate; the new key issues, redeems,
    reverses what the old key issued and refunds what it accepted, in the very next transactions."""
    actors, old, new = ledger.actors, ledger.actors.partner, funded_key(ledger)
    customer = new_customer()
    issuance = issued_item(ledger, ledger.issue(customer.address, 50))
    redeemed = redemption_record(ledger, ledger.redeem(customer, 5))
    consent = redemption(ledger, customer, ACTIVE, 10, random_ref())
    ledger.transact(
        "rotatePartnerOperator", ACTIVE, new.address, sender=actors.admin if by == "admin" else old
    )

    for fn, args in (
        ("issue", (customer.address, 1, random_ref(), 1, RULE)),
        ("issueBatch", ([customer.address], [1], [random_ref()], 1, RULE)),
        ("redeem", consent),
        ("reverseIssuance", (issuance, 2, random_ref())),
        ("refundRedemption", (redeemed, 3, random_ref())),
    ):
        with reverts("LedgerRotatedOperator", old, ACTIVE):
            ledger.transact(fn, *args, sender=old)
    with reverts("LedgerUnauthorizedRotation", old, ACTIVE):
        ledger.transact("rotatePartnerOperator", ACTIVE, fresh_address(), sender=old)

    send_signed(ledger, new, "issue", customer.address, 1, random_ref(), 1, RULE)
    send_signed(ledger, new, "redeem", *consent)  # a consent names the partner, not its key
    send_signed(ledger, new, "reverseIssuance", issuance, 2, random_ref())
    send_signed(ledger, new, "refundRedemption", redeemed, 3, random_ref())
    assert ledger.call("balanceOf", customer.address) == 50 - 5 + 1 - 10 - 2 + 3
    view = partner_view(ledger, ACTIVE)
    assert (view["reversed"], view["refunded"]) == (2, 3)
    assert (ledger.call("partnerIdOf", old), ledger.call("partnerIdOf", new.address)) == (ACTIVE, ACTIVE)


def test_a_rotated_away_key_can_never_hold_a_role_nor_operate_again(ledger: Ledger) -> None:
    old, admin, current = ledger.actors.partner, ledger.actors.admin, fresh_address()
    ledger.transact("rotatePartnerOperator", ACTIVE, current, sender=admin)
    with reverts("LedgerOperatorCannotHoldRole", old, ACTIVE):
        ledger.transact("grantRole", PAUSER_ROLE, old, sender=admin)
    with reverts("LedgerOperatorCannotHoldRole", old, ACTIVE):
        ledger.transact("beginDefaultAdminTransfer", old, sender=admin)
    with reverts("LedgerInvalidOperator", old):
        ledger.transact("registerPartner", NEW_ID, old, old, True, True, 1, sender=admin)
    for pid in (ACTIVE, ISSUE_ONLY):  # back to its own partner, or to another one
        with reverts("LedgerInvalidOperator", old):
            ledger.transact("rotatePartnerOperator", pid, old, sender=admin)
    with reverts("LedgerInvalidOperator", current):  # nor can one key operate two partners
        ledger.transact("rotatePartnerOperator", ISSUE_ONLY, current, sender=admin)


def test_a_partner_keeps_its_references_across_a_rotation(ledger: Ledger) -> None:
    """An order already paid cannot be issued again under the new key: the issue, batch (its root),
    redemption, return and refund references stay used by the partner, and its counters carry on."""
    actors, new = ledger.actors, funded_key(ledger)
    customer = holding(ledger, 50)
    order, item, payment, returned, refund = (random_ref() for _ in range(5))
    ledger.issue(customer.address, 5, ref=order)
    batch = ledger.issue_batch([customer.address], [5], [item])
    root = ledger.events(batch, "PointsBatchIssued")[0]["args"]["ref"]
    redeemed = redemption_record(ledger, ledger.redeem(customer, 5, ref=payment))
    issuance = issued_item(ledger, batch)
    ledger.transact("reverseIssuance", issuance, 1, returned, sender=actors.partner)
    ledger.transact("refundRedemption", redeemed, 1, refund, sender=actors.partner)
    before = partner_view(ledger, ACTIVE)

    ledger.transact("rotatePartnerOperator", ACTIVE, new.address, sender=actors.admin)
    for ref, fn, args in (
        (order, "issue", (customer.address, 5, order, 1, RULE)),
        (root, "issueBatch", ([customer.address], [5], [item], 1, RULE)),
        (root, "issue", (customer.address, 5, root, 1, RULE)),  # one namespace for both
        (payment, "redeem", redemption(ledger, customer, ACTIVE, 5, payment)),
        (returned, "reverseIssuance", (issuance, 1, returned)),
        (refund, "refundRedemption", (redeemed, 1, refund)),
    ):
        with reverts("LedgerReferenceUsed", ACTIVE, ref):
            send_signed(ledger, new, fn, *args)
    assert partner_view(ledger, ACTIVE) == {**before, "operator": new.address}


def test_a_rotated_away_key_keeps_its_partner_id_but_no_rights(ledger: Ledger) -> None:
    """partnerIdOf(old key) still answers the partner (an auditor attributes its past entries by it), while
    the partner's record knows only the new key, which has the partner's status and rights."""
    old, new = ledger.actors.accept_only, fresh_address()
    ledger.transact("rotatePartnerOperator", ACCEPT_ONLY, new, sender=ledger.actors.admin)
    assert (ledger.call("partnerIdOf", old), ledger.call("partnerIdOf", new)) == (ACCEPT_ONLY, ACCEPT_ONLY)
    view = partner_view(ledger, ACCEPT_ONLY)
    assert (view["operator"], view["status"], view["canIssue"], view["canAccept"]) == (
        new,
        STATUS_ACTIVE,
        False,
        True,
    )


# --------------------------------------------------------------------------- the allowance race


def test_a_cut_after_the_partner_spent_fails_instead_of_handing_back_what_was_spent(ledger: Ledger) -> None:
    """The admin means to withdraw the partner's whole allowance; the partner spends 300 first. The cut of
    the old full amount fails (LedgerAllowanceExceeded), so the partner cannot end with more than it had;
    the cut of what remains succeeds. Top-ups add to what remains."""
    actors = ledger.actors
    ledger.issue(new_customer().address, 300)
    with reverts("LedgerAllowanceExceeded", ACTIVE, ALLOWANCE - 300, ALLOWANCE):
        ledger.transact("decreasePartnerAllowance", ACTIVE, ALLOWANCE, sender=actors.admin)

    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("decreasePartnerAllowance", ACTIVE, ALLOWANCE - 300, sender=actors.treasury)
    changed = {"partnerId": ACTIVE, "previousAllowance": ALLOWANCE - 300, "allowance": 0}
    assert_entries(ledger, receipt, seq, ("PartnerAllowanceChanged", changed))
    with reverts("LedgerAllowanceExceeded", ACTIVE, 0, 1):
        ledger.issue(fresh_address(), 1)

    for previous in (0, 500):
        seq = ledger.call("ledgerSequence")
        receipt = ledger.transact("increasePartnerAllowance", ACTIVE, 500, sender=actors.admin)
        changed = {"partnerId": ACTIVE, "previousAllowance": previous, "allowance": previous + 500}
        assert_entries(ledger, receipt, seq, ("PartnerAllowanceChanged", changed))
    assert partner_view(ledger, ACTIVE)["allowance"] == 1_000


# --------------------------------------------------------------------------- settlement value


def test_a_settlement_value_change_does_not_reprice_history(ledger: Ledger) -> None:
    actors = ledger.actors
    customer = holding(ledger, 100)  # at 10 a point
    ledger.redeem(customer, 40, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    history = [(-100, -1_000), (40, 400), (60, 600)]
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == history

    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("setSettlementValue", 25, sender=actors.treasury)
    changed = {"previousValue": SETTLEMENT_VALUE, "value": 25}
    assert_entries(ledger, receipt, seq, ("SettlementValueChanged", changed))
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == history  # the past keeps its value

    ledger.issue(customer.address, 10)  # at 25 a point
    ledger.redeem(customer, 4, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == [(-110, -1_250), (44, 500), (66, 750)]
    view = partner_view(ledger, ACTIVE)
    assert (view["issued"], view["issuedValue"]) == (110, 1_250)


def test_a_settlement_value_above_the_bound_is_refused(ledger: Ledger) -> None:
    treasury = ledger.actors.treasury
    for value in (MAX + 1, 2**256 - 1):
        with reverts("LedgerInvalidSettlementValue", value, MAX):
            ledger.transact("setSettlementValue", value, sender=treasury)
    ledger.transact("setSettlementValue", MAX, sender=treasury)
    assert ledger.call("settlementValue") == MAX


def test_positions_at_the_bounds_do_not_overflow(ledger: Ledger) -> None:
    """At MAX_SETTLEMENT_VALUE two partners each issue MAX_AMOUNT (their whole MAX_ALLOWANCE), a third
    redeems MAX_AMOUNT, and the treasury records the largest settlements: every position view answers,
    exactly, and they sum to zero. Then the issuer's lifetime count is full: a top-up buys nothing."""
    actors = ledger.actors
    ledger.transact("setSettlementValue", MAX, sender=actors.treasury)
    for pid in (ACTIVE, ISSUE_ONLY):
        ledger.transact("increasePartnerAllowance", pid, MAX - ALLOWANCE, sender=actors.admin)
    customer = holding(ledger, MAX)
    ledger.issue(fresh_address(), MAX, sender=actors.issue_only)
    ledger.redeem(customer, MAX, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    value = MAX * MAX
    expected = [(-MAX, -value), (-MAX, -value), (MAX, value), (MAX, value)]
    assert positions(ledger, ACTIVE, ISSUE_ONLY, ACCEPT_ONLY) == expected

    points_bound, value_bound = 2**96 - 1, 2**160 - 1
    ledger.transact(
        "recordSettlement", ACTIVE, -points_bound, -value_bound, random_ref(), sender=actors.treasury
    )
    ledger.transact(
        "recordSettlement", ACCEPT_ONLY, points_bound, value_bound, random_ref(), sender=actors.treasury
    )
    opened = [tuple(ledger.call("partnerOpenPosition", pid)) for pid in (ACTIVE, ISSUE_ONLY, ACCEPT_ONLY)]
    opened.append(tuple(ledger.call("coalitionOpenPosition")))
    assert opened == [
        (-MAX + points_bound, -value + value_bound),
        (-MAX, -value),
        (MAX - points_bound, value - value_bound),
        (MAX, value),
    ]
    assert (sum(p for p, _ in opened), sum(v for _, v in opened)) == (0, 0)

    ledger.transact("increasePartnerAllowance", ACTIVE, 1, sender=actors.admin)
    with reverts("LedgerAmountTooLarge", 1, 0):
        ledger.issue(fresh_address(), 1)


# --------------------------------------------------------------------------- the admin alone


def test_the_admin_alone_cannot_fake_a_settlement_claim(ledger: Ledger) -> None:
    """The admin can neither redeem nor issue, reverse, refund, price or settle; a partner it registers with
    a key it holds cannot redeem a customer's points with a consent that key signed; and a suspended
    partner cannot rotate itself to a fresh key to escape its suspension."""
    actors, admin = ledger.actors, ledger.actors.admin
    customer = new_customer()
    issuance = issued_item(ledger, ledger.issue(customer.address, 110))
    redeemed = redemption_record(ledger, ledger.redeem(customer, 10))
    with reverts("LedgerUnknownPartner", admin):
        ledger.transact("redeem", *redemption(ledger, customer, ACTIVE, 100, random_ref()), sender=admin)
    with reverts("LedgerUnknownPartner", admin):
        ledger.issue(admin, 1, sender=admin)
    with reverts("LedgerUnknownPartner", admin):
        ledger.transact("reverseIssuance", issuance, 1, random_ref(), sender=admin)
    with reverts("LedgerUnknownPartner", admin):
        ledger.transact("refundRedemption", redeemed, 1, random_ref(), sender=admin)
    for fn, args in (("setSettlementValue", (10**6,)), ("recordSettlement", (ACTIVE, 1, 1, random_ref()))):
        with reverts("AccessControlUnauthorizedAccount", admin, TREASURY_ROLE):
            ledger.transact(fn, *args, sender=admin)

    fake = funded_key(ledger)
    ledger.transact("registerPartner", NEW_ID, fake.address, fake.address, False, True, 0, sender=admin)
    ref, nonce, deadline = random_ref(), keyed(NEW_ID), ledger.node.timestamp() + 3600
    digest = ledger.call("redemptionDigest", customer.address, NEW_ID, 100, ref, nonce, deadline)
    forged = bytes(fake.unsafe_sign_hash(digest).signature)  # the customer's consent, signed by another key
    with reverts("LedgerInvalidSigner", customer.address, fake.address):
        send_signed(ledger, fake, "redeem", customer.address, 100, ref, nonce, deadline, forged)
    assert ledger.call("balanceOf", customer.address) == 100

    with reverts("LedgerUnauthorizedRotation", actors.suspended, SUSPENDED):
        ledger.transact("rotatePartnerOperator", SUSPENDED, fresh_address(), sender=actors.suspended)
    assert partner_view(ledger, SUSPENDED)["operator"] == actors.suspended


def test_the_admins_recovery_moves_a_customers_points_without_its_signature_as_a_marked_entry(
    ledger: Ledger,
) -> None:
    """What the recovery of a lost key lets the admin alone do, and how it shows: it moves a customer's live
    points to any address it names, without the customer's signature, so with a partner it registers on a
    key it holds it could redeem them there and open a claim on the coalition. The move is an entry marked
    ``recovery`` (nonce 0) that an auditor can single out; in production the admin is the timelock, so the
    call is public for the whole delay before it can run (tests/test_migration.py)."""
    admin = ledger.actors.admin
    customer, held = holding(ledger, 100), funded_key(ledger)
    fake = funded_key(ledger)
    ledger.transact("registerPartner", NEW_ID, fake.address, fake.address, False, True, 0, sender=admin)

    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("recoverAccount", customer.address, held.address, sender=admin)
    moved = {"from": customer.address, "to": held.address}
    assert_entries(
        ledger,
        receipt,
        seq,
        ("AccountMigrated", {**moved, "nonce": 0, "recovery": True, "amount": 100}),
        ("PointsTransferred", {**moved, "epoch": 0, "amount": 100}),
    )
    send_signed(ledger, fake, "redeem", *redemption(ledger, held, NEW_ID, 100, random_ref()))
    assert ledger.call("partnerPosition", NEW_ID) == [100, 100 * SETTLEMENT_VALUE]
