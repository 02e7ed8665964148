"""Attacks on the trust model, each refused with its exact error (both backends).

* No partner operator key (active, suspended, offboarded or rotated away) holds a role, however it is
  tried: a grant, a handover begun to it, a handover accepted by a key registered as operator meanwhile.
* No role holder operates a partner: neither registered nor rotated to.
* A rotated-away key is refused at once (issue, batch, redeem, rotation), can never hold a role nor
  operate again, and the partner keeps its references: the new key cannot reuse an old one.
* Allowances move by deltas: a cut of the full allowance after the partner spent part of it fails
  instead of handing the spent part back; top-ups add up.
* Settlement values apply forward only, are bounded, and positions at the bounds do not overflow.
* The admin alone cannot fake a settlement claim: it redeems nothing, prices nothing, settles nothing,
  and cannot redeem a customer's points without that customer's signature.

(Consent replay, EIP-7702 accounts, ERC-1271 wallets, zero addresses and expiry during a pause are in
test_consent.py and test_expiry.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import STATUS_ACTIVE, ZERO_ADDRESS, keyed, partner_view, send_signed
from eth_account.signers.local import LocalAccount
from test_roles import (
    DEFAULT_ADMIN_ROLE,
    PAUSER_ROLE,
    RULE,
    TREASURY_ROLE,
    assert_entries,
    fresh_address,
    funded_key,
)
from web3 import Web3

from chain import ContractRevert
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ADMIN_DELAY,
    ALLOWANCE,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    SUSPENDED,
    Ledger,
    expect_revert,
    new_customer,
    random_ref,
)

AUDITOR_ROLE = bytes(Web3.keccak(text="AUDITOR_ROLE"))  # any role the admin may make up
ROLES = (TREASURY_ROLE, PAUSER_ROLE, AUDITOR_ROLE)
MAX = 2**64 - 1  # MAX_AMOUNT = MAX_ALLOWANCE = MAX_SETTLEMENT_VALUE
NEW_ID = 7


def refused(
    ledger: Ledger, fn: str, *args: Any, sender: str, error: str, error_args: tuple[Any, ...] = ()
) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact(fn, *args, sender=sender)
    expect_revert(excinfo, error, *error_args)


def refused_signed(
    ledger: Ledger, key: LocalAccount, fn: str, *args: Any, error: str, error_args: tuple[Any, ...]
) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        send_signed(ledger, key, fn, *args)
    expect_revert(excinfo, error, *error_args)


def redemption(ledger: Ledger, customer: LocalAccount, pid: int, amount: int, ref: bytes) -> tuple[Any, ...]:
    """``redeem``'s arguments with ``customer``'s consent at ``pid`` and the next nonce of its key."""
    nonce, deadline = ledger.call("nonces", customer.address, pid), ledger.node.timestamp() + 3600
    signature = ledger.sign_redemption(customer, pid, amount, ref, nonce, deadline)
    return (customer.address, amount, ref, nonce, deadline, signature)


def holding(ledger: Ledger, amount: int) -> LocalAccount:
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


OPERATOR_STATES = ("active", "suspended", "offboarded", "rotated_away")


# --------------------------------------------------------------------------- an operator made a role holder


@pytest.mark.parametrize("state", OPERATOR_STATES)
def test_no_operator_key_can_be_granted_any_role(ledger: Ledger, state: str) -> None:
    operator, pid = operator_in(ledger, state)
    admin = ledger.actors.admin
    for role in ROLES:
        refused(
            ledger,
            "grantRole",
            role,
            operator,
            sender=admin,
            error="LedgerOperatorCannotHoldRole",
            error_args=(operator, pid),
        )
    refused(
        ledger,
        "grantRole",
        DEFAULT_ADMIN_ROLE,
        operator,
        sender=admin,
        error="AccessControlEnforcedDefaultAdminRules",
    )
    refused(
        ledger,
        "beginDefaultAdminTransfer",
        operator,
        sender=admin,
        error="LedgerOperatorCannotHoldRole",
        error_args=(operator, pid),
    )
    assert [ledger.call("hasRole", role, operator) for role in (DEFAULT_ADMIN_ROLE, *ROLES)] == [False] * 4
    assert ledger.call("pendingDefaultAdmin") == [ZERO_ADDRESS, 0]


def test_a_pending_admin_registered_as_operator_meanwhile_cannot_accept(ledger: Ledger) -> None:
    """The handover is begun to a key that holds nothing yet, which the admin then registers as a partner's
    operator: the acceptance, after the delay, is refused, and the old admin stays."""
    admin, node = ledger.actors.admin, ledger.node
    key = funded_key(ledger)
    ledger.transact("beginDefaultAdminTransfer", key.address, sender=admin)
    ledger.transact("registerPartner", NEW_ID, key.address, key.address, True, True, 1, sender=admin)
    node.advance_time(ADMIN_DELAY + 1)
    refused_signed(
        ledger,
        key,
        "acceptDefaultAdminTransfer",
        error="LedgerOperatorCannotHoldRole",
        error_args=(key.address, NEW_ID),
    )
    assert (ledger.call("defaultAdmin"), ledger.call("hasRole", DEFAULT_ADMIN_ROLE, key.address)) == (
        admin,
        False,
    )


# --------------------------------------------------------------------------- a role holder made an operator


def role_holders(ledger: Ledger) -> list[str]:
    """The admin, treasury, pauser, and a key the admin gave a made-up role."""
    actors = ledger.actors
    auditor = fresh_address()
    ledger.transact("grantRole", AUDITOR_ROLE, auditor, sender=actors.admin)
    return [actors.admin, actors.treasury, actors.pauser, auditor]


def test_no_role_holder_can_be_registered_as_operator(ledger: Ledger) -> None:
    admin = ledger.actors.admin
    for holder in role_holders(ledger):
        refused(
            ledger,
            "registerPartner",
            NEW_ID,
            holder,
            holder,
            True,
            True,
            1,
            sender=admin,
            error="LedgerInvalidOperator",
            error_args=(holder,),
        )
    assert ledger.call("partnerIds") == [ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY]


def test_no_partner_can_be_rotated_to_a_role_holder(ledger: Ledger) -> None:
    """Neither by the admin nor by the partner's own operator."""
    actors = ledger.actors
    for holder in role_holders(ledger):
        for sender in (actors.admin, actors.partner):
            refused(
                ledger,
                "rotatePartnerOperator",
                ACTIVE,
                holder,
                sender=sender,
                error="LedgerInvalidOperator",
                error_args=(holder,),
            )
    assert partner_view(ledger, ACTIVE)["operator"] == actors.partner


def test_a_key_that_gave_up_its_roles_may_operate(ledger: Ledger) -> None:
    """The rule is about roles held now: the former pauser, once revoked, can be registered."""
    actors = ledger.actors
    ledger.transact("revokeRole", PAUSER_ROLE, actors.pauser, sender=actors.admin)
    ledger.transact(
        "registerPartner", NEW_ID, actors.pauser, actors.pauser, True, True, 1, sender=actors.admin
    )
    assert ledger.call("partnerIdOf", actors.pauser) == NEW_ID
    refused(
        ledger,
        "grantRole",
        PAUSER_ROLE,
        actors.pauser,
        sender=actors.admin,
        error="LedgerOperatorCannotHoldRole",
        error_args=(actors.pauser, NEW_ID),
    )


# --------------------------------------------------------------------------- rotated-away keys


@pytest.mark.parametrize("by", ["admin", "operator"])
def test_a_rotated_away_key_is_refused_at_once(ledger: Ledger, by: str) -> None:
    """After the rotation (by the admin, or by the operator itself) the old key can neither issue, issue a
    batch, redeem nor rotate; the new key issues in the very next transaction."""
    actors, old, new = ledger.actors, ledger.actors.partner, funded_key(ledger)
    customer = holding(ledger, 50)
    consent = redemption(ledger, customer, ACTIVE, 10, random_ref())
    ledger.transact(
        "rotatePartnerOperator", ACTIVE, new.address, sender=actors.admin if by == "admin" else old
    )

    stale = ("LedgerRotatedOperator", (old, ACTIVE))
    for fn, args in (
        ("issue", (customer.address, 1, random_ref(), 1, RULE)),
        ("issueBatch", ([customer.address], [1], random_ref(), 1, RULE)),
        ("redeem", consent),
    ):
        refused(ledger, fn, *args, sender=old, error=stale[0], error_args=stale[1])
    refused(
        ledger,
        "rotatePartnerOperator",
        ACTIVE,
        fresh_address(),
        sender=old,
        error="LedgerUnauthorizedRotation",
        error_args=(old, ACTIVE),
    )

    send_signed(ledger, new, "issue", customer.address, 1, random_ref(), 1, RULE)
    send_signed(ledger, new, "redeem", *consent)  # the consent names the partner, not its key
    assert ledger.call("balanceOf", customer.address) == 41
    assert (ledger.call("partnerIdOf", old), ledger.call("partnerIdOf", new.address)) == (ACTIVE, ACTIVE)


def test_a_rotated_away_key_can_never_hold_a_role_nor_operate_again(ledger: Ledger) -> None:
    actors, old = ledger.actors, ledger.actors.partner
    admin, current = actors.admin, fresh_address()
    ledger.transact("rotatePartnerOperator", ACTIVE, current, sender=admin)
    refused(
        ledger,
        "grantRole",
        PAUSER_ROLE,
        old,
        sender=admin,
        error="LedgerOperatorCannotHoldRole",
        error_args=(old, ACTIVE),
    )
    refused(
        ledger,
        "beginDefaultAdminTransfer",
        old,
        sender=admin,
        error="LedgerOperatorCannotHoldRole",
        error_args=(old, ACTIVE),
    )
    refused(
        ledger,
        "registerPartner",
        NEW_ID,
        old,
        old,
        True,
        True,
        1,
        sender=admin,
        error="LedgerInvalidOperator",
        error_args=(old,),
    )
    for pid in (ACTIVE, ISSUE_ONLY):  # back to its own partner, or to another one
        refused(
            ledger,
            "rotatePartnerOperator",
            pid,
            old,
            sender=admin,
            error="LedgerInvalidOperator",
            error_args=(old,),
        )
    refused(
        ledger,
        "rotatePartnerOperator",
        ISSUE_ONLY,
        current,
        sender=admin,
        error="LedgerInvalidOperator",
        error_args=(current,),
    )


def test_a_partner_keeps_its_references_across_a_rotation(ledger: Ledger) -> None:
    """An order already paid cannot be issued again under the new key: issue, batch and redemption
    references stay used by the partner."""
    actors, new = ledger.actors, funded_key(ledger)
    customer = holding(ledger, 50)
    order, batch, payment = random_ref(), random_ref(), random_ref()
    ledger.issue(customer.address, 5, ref=order)
    ledger.transact("issueBatch", [customer.address], [5], batch, 1, RULE, sender=actors.partner)
    ledger.redeem(customer, 5, ref=payment)
    before = partner_view(ledger, ACTIVE)

    ledger.transact("rotatePartnerOperator", ACTIVE, new.address, sender=actors.admin)
    for ref, fn, args in (
        (order, "issue", (customer.address, 5, order, 1, RULE)),
        (batch, "issueBatch", ([customer.address], [5], batch, 1, RULE)),
        (order, "issueBatch", ([customer.address], [5], order, 1, RULE)),  # issue and batch share a namespace
        (payment, "redeem", redemption(ledger, customer, ACTIVE, 5, payment)),
    ):
        refused_signed(ledger, new, fn, *args, error="LedgerReferenceUsed", error_args=(ACTIVE, ref))
    assert partner_view(ledger, ACTIVE) == {**before, "operator": new.address}


# --------------------------------------------------------------------------- the allowance race


def test_a_cut_after_the_partner_spent_fails_instead_of_handing_back_what_was_spent(ledger: Ledger) -> None:
    """The admin means to withdraw the partner's whole allowance; the partner spends 300 first. The cut of
    the old full amount fails (LedgerAllowanceExceeded), so the partner cannot end with more than it had;
    the cut of what remains succeeds. Top-ups add to what remains."""
    actors = ledger.actors
    ledger.issue(new_customer().address, 300)
    refused(
        ledger,
        "decreasePartnerAllowance",
        ACTIVE,
        ALLOWANCE,
        sender=actors.admin,
        error="LedgerAllowanceExceeded",
        error_args=(ACTIVE, ALLOWANCE - 300, ALLOWANCE),
    )
    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("decreasePartnerAllowance", ACTIVE, ALLOWANCE - 300, sender=actors.treasury)
    changed = {"partnerId": ACTIVE, "previousAllowance": ALLOWANCE - 300, "allowance": 0}
    assert_entries(ledger, receipt, seq, ("PartnerAllowanceChanged", changed))
    refused(
        ledger,
        "issue",
        fresh_address(),
        1,
        random_ref(),
        1,
        RULE,
        sender=actors.partner,
        error="LedgerAllowanceExceeded",
        error_args=(ACTIVE, 0, 1),
    )

    for previous in (0, 500):
        seq = ledger.call("ledgerSequence")
        receipt = ledger.transact("increasePartnerAllowance", ACTIVE, 500, sender=actors.admin)
        changed = {"partnerId": ACTIVE, "previousAllowance": previous, "allowance": previous + 500}
        assert_entries(ledger, receipt, seq, ("PartnerAllowanceChanged", changed))
    assert partner_view(ledger, ACTIVE)["allowance"] == 1_000


# --------------------------------------------------------------------------- settlement value


def positions(ledger: Ledger, *pids: int) -> list[tuple[int, int]]:
    """The all-time positions of ``pids``, then the coalition's."""
    return [tuple(ledger.call("partnerPosition", pid)) for pid in pids] + [
        tuple(ledger.call("coalitionPosition"))
    ]


def test_a_settlement_value_change_does_not_reprice_history(ledger: Ledger) -> None:
    actors = ledger.actors
    customer = holding(ledger, 100)  # at 10 a point
    ledger.redeem(customer, 40, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    history = [(-100, -1_000), (40, 400), (60, 600)]
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == history

    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("setSettlementValue", 25, sender=actors.treasury)
    assert_entries(
        ledger, receipt, seq, ("SettlementValueChanged", {"previousValue": SETTLEMENT_VALUE, "value": 25})
    )
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == history  # the past keeps its value

    ledger.issue(customer.address, 10)  # at 25 a point
    ledger.redeem(customer, 4, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    assert positions(ledger, ACTIVE, ACCEPT_ONLY) == [(-110, -1_250), (44, 500), (66, 750)]
    view = partner_view(ledger, ACTIVE)
    assert (view["issued"], view["issuedValue"]) == (110, 1_250)


def test_a_settlement_value_above_the_bound_is_refused(ledger: Ledger) -> None:
    treasury = ledger.actors.treasury
    for value in (MAX + 1, 2**256 - 1):
        refused(
            ledger,
            "setSettlementValue",
            value,
            sender=treasury,
            error="LedgerInvalidSettlementValue",
            error_args=(value, MAX),
        )
    ledger.transact("setSettlementValue", MAX, sender=treasury)
    assert ledger.call("settlementValue") == MAX


def test_positions_at_the_bounds_do_not_overflow(ledger: Ledger) -> None:
    """At MAX_SETTLEMENT_VALUE, two partners each issue MAX_AMOUNT (their whole MAX_ALLOWANCE), a third
    redeems MAX_AMOUNT, and the treasury records the largest settlements: every position view answers,
    exactly, and they sum to zero. Then the lifetime counters are full."""
    actors = ledger.actors
    ledger.transact("setSettlementValue", MAX, sender=actors.treasury)
    for pid in (ACTIVE, ISSUE_ONLY):
        ledger.transact("increasePartnerAllowance", pid, MAX - ALLOWANCE, sender=actors.admin)
    customer = holding(ledger, MAX)
    ledger.issue(fresh_address(), MAX, sender=actors.issue_only)
    ledger.redeem(customer, MAX, sender=actors.accept_only, partner_id=ACCEPT_ONLY)
    value = MAX * MAX
    assert positions(ledger, ACTIVE, ISSUE_ONLY, ACCEPT_ONLY) == [
        (-MAX, -value),
        (-MAX, -value),
        (MAX, value),
        (MAX, value),
    ]

    big_points, big_value = 2**96 - 1, 2**160 - 1
    ledger.transact("recordSettlement", ACTIVE, -big_points, -big_value, random_ref(), sender=actors.treasury)
    ledger.transact(
        "recordSettlement", ACCEPT_ONLY, big_points, big_value, random_ref(), sender=actors.treasury
    )
    opened = [tuple(ledger.call("partnerOpenPosition", pid)) for pid in (ACTIVE, ISSUE_ONLY, ACCEPT_ONLY)]
    coalition = tuple(ledger.call("coalitionOpenPosition"))
    assert opened == [
        (-MAX + big_points, -value + big_value),
        (-MAX, -value),
        (MAX - big_points, value - big_value),
    ]
    assert coalition == (MAX, value)
    assert sum(p for p, _ in [*opened, coalition]) == 0 and sum(v for _, v in [*opened, coalition]) == 0

    # the issuer's lifetime count is full: a top-up cannot buy more issuance
    ledger.transact("increasePartnerAllowance", ACTIVE, 1, sender=actors.admin)
    refused(
        ledger,
        "issue",
        fresh_address(),
        1,
        random_ref(),
        1,
        RULE,
        sender=actors.partner,
        error="LedgerAmountTooLarge",
        error_args=(1, 0),
    )


# --------------------------------------------------------------------------- the admin alone


def test_the_admin_alone_cannot_fake_a_settlement_claim(ledger: Ledger) -> None:
    """The admin can neither redeem nor issue, price or settle; a partner it registers with a key it holds
    cannot redeem a customer's points with a consent the admin signed; and a suspended partner cannot
    rotate itself to a fresh key to escape the suspension."""
    actors, admin = ledger.actors, ledger.actors.admin
    customer = holding(ledger, 100)
    consent = redemption(ledger, customer, ACTIVE, 100, random_ref())
    refused(ledger, "redeem", *consent, sender=admin, error="LedgerUnknownPartner", error_args=(admin,))
    refused(
        ledger,
        "issue",
        admin,
        1,
        random_ref(),
        1,
        RULE,
        sender=admin,
        error="LedgerUnknownPartner",
        error_args=(admin,),
    )
    for fn, args in (("setSettlementValue", (10**6,)), ("recordSettlement", (ACTIVE, 1, 1, random_ref()))):
        refused(
            ledger,
            fn,
            *args,
            sender=admin,
            error="AccessControlUnauthorizedAccount",
            error_args=(admin, TREASURY_ROLE),
        )

    fake = funded_key(ledger)
    ledger.transact("registerPartner", NEW_ID, fake.address, fake.address, False, True, 0, sender=admin)
    ref, nonce, deadline = random_ref(), keyed(NEW_ID), ledger.node.timestamp() + 3600
    forged = ledger.sign_redemption(fake, NEW_ID, 100, ref, nonce, deadline)  # signed by the admin's key
    args = (customer.address, 100, ref, nonce, deadline, forged)
    refused_signed(
        ledger,
        fake,
        "redeem",
        *args,
        error="LedgerInvalidSigner",
        error_args=(customer.address, fake.address),
    )
    assert ledger.call("balanceOf", customer.address) == 100

    suspended = actors.suspended
    refused(
        ledger,
        "rotatePartnerOperator",
        SUSPENDED,
        fresh_address(),
        sender=suspended,
        error="LedgerUnauthorizedRotation",
        error_args=(suspended, SUSPENDED),
    )
    assert partner_view(ledger, SUSPENDED)["operator"] == suspended


def test_a_tombstone_keeps_its_partner_id_but_no_rights(ledger: Ledger) -> None:
    """partnerIdOf(old key) still answers the partner (an auditor can attribute its past entries), while
    the partner's record only knows the new key."""
    actors, new = ledger.actors, fresh_address()
    ledger.transact("rotatePartnerOperator", ACCEPT_ONLY, new, sender=actors.admin)
    assert (ledger.call("partnerIdOf", actors.accept_only), ledger.call("partnerIdOf", new)) == (
        ACCEPT_ONLY,
        ACCEPT_ONLY,
    )
    view = partner_view(ledger, ACCEPT_ONLY)
    assert (view["operator"], view["status"], view["canAccept"]) == (new, STATUS_ACTIVE, True)
