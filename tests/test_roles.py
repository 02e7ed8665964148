"""Who may change what: every state-changing function against every kind of caller, and the pause.

The kinds of caller (:data:`ROLES`):

* ``admin`` holds DEFAULT_ADMIN_ROLE and PAUSER_ROLE (and operates no partner);
* ``partner`` operates the active partner ACTIVE, which may issue and accept;
* ``suspended`` operates the suspended partner SUSPENDED;
* ``without_right`` operates an active partner that lacks the right the function needs: ACCEPT_ONLY (no right
  to issue) everywhere except for ``redeem``, where it is ISSUE_ONLY (no right to accept);
* ``customer`` holds points but has no role;
* ``stranger`` has nothing at all.

Every cell of :data:`MATRIX` says what happens when that caller sends an otherwise valid call: it succeeds
(and the test asserts its effect), or it reverts with the exact custom error and arguments and changes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.types import TxReceipt

from chain import ContractRevert, load_artifact
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ALLOWANCE,
    EPOCH,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    SUSPENDED,
    VALIDITY,
    Ledger,
    expect_revert,
    new_customer,
    random_ref,
)

DEFAULT_ADMIN_ROLE = b"\x00" * 32
SEQ = ("ledgerSequence",)
PAUSER_ROLE = bytes(Web3.keccak(text="PAUSER_ROLE"))
RULE = b"\x11" * 32


# --------------------------------------------------------------------------- expectations


class _Caller:
    """Placeholder for the caller's address in an expected error's arguments."""

    def __repr__(self) -> str:
        return "CALLER"


CALLER = _Caller()


@dataclass(frozen=True)
class Reverts:
    error: str
    args: tuple[Any, ...] = ()

    def arguments(self, caller: str) -> tuple[Any, ...]:
        return tuple(caller if arg is CALLER else arg for arg in self.args)

    def __str__(self) -> str:
        return self.error


OK = None
Expect = Reverts | None

NOT_ADMIN = Reverts("AccessControlUnauthorizedAccount", (CALLER, DEFAULT_ADMIN_ROLE))
NOT_PAUSER = Reverts("AccessControlUnauthorizedAccount", (CALLER, PAUSER_ROLE))
UNKNOWN_PARTNER = Reverts("LedgerUnknownPartner", (CALLER,))
PARTNER_SUSPENDED = Reverts("LedgerPartnerSuspended", (SUSPENDED,))
CANNOT_ISSUE = Reverts("LedgerPartnerCannotIssue", (ACCEPT_ONLY,))
CANNOT_ACCEPT = Reverts("LedgerPartnerCannotAccept", (ISSUE_ONLY,))
TRANSFERS_DISABLED = Reverts("LedgerTransfersDisabled")
ENFORCED_PAUSE = Reverts("EnforcedPause")

ROLES = ("admin", "partner", "suspended", "without_right", "customer", "stranger")


def row(
    *,
    admin: Expect,
    partner: Expect,
    suspended: Expect,
    without_right: Expect,
    customer: Expect,
    stranger: Expect,
) -> dict[str, Expect]:
    return {
        "admin": admin,
        "partner": partner,
        "suspended": suspended,
        "without_right": without_right,
        "customer": customer,
        "stranger": stranger,
    }


ADMIN_ONLY = row(
    admin=OK,
    partner=NOT_ADMIN,
    suspended=NOT_ADMIN,
    without_right=NOT_ADMIN,
    customer=NOT_ADMIN,
    stranger=NOT_ADMIN,
)
ANYONE = row(admin=OK, partner=OK, suspended=OK, without_right=OK, customer=OK, stranger=OK)
NO_ONE_WHILE_TRANSFERS_OFF = row(
    admin=TRANSFERS_DISABLED,
    partner=TRANSFERS_DISABLED,
    suspended=TRANSFERS_DISABLED,
    without_right=TRANSFERS_DISABLED,
    customer=TRANSFERS_DISABLED,
    stranger=TRANSFERS_DISABLED,
)
ACTIVE_ISSUER_ONLY = row(
    admin=UNKNOWN_PARTNER,
    partner=OK,
    suspended=PARTNER_SUSPENDED,
    without_right=CANNOT_ISSUE,
    customer=UNKNOWN_PARTNER,
    stranger=UNKNOWN_PARTNER,
)

#: The role matrix with the default configuration (not paused, transfers off).
MATRIX: dict[str, dict[str, Expect]] = {
    # administration
    "registerPartner": ADMIN_ONLY,
    "setPartnerAllowance": ADMIN_ONLY,
    "suspendPartner": ADMIN_ONLY,
    "reactivatePartner": ADMIN_ONLY,
    "setSettlementValue": ADMIN_ONLY,
    "setTransfersEnabled": ADMIN_ONLY,
    "pause": row(
        admin=OK,
        partner=NOT_PAUSER,
        suspended=NOT_PAUSER,
        without_right=NOT_PAUSER,
        customer=NOT_PAUSER,
        stranger=NOT_PAUSER,
    ),
    "unpause": ADMIN_ONLY,
    # partners
    "issue": ACTIVE_ISSUER_ONLY,
    "issueBatch": ACTIVE_ISSUER_ONLY,
    "redeem": row(
        admin=UNKNOWN_PARTNER,
        partner=OK,
        suspended=PARTNER_SUSPENDED,
        without_right=CANNOT_ACCEPT,
        customer=UNKNOWN_PARTNER,
        stranger=UNKNOWN_PARTNER,
    ),
    # anyone
    "sweepExpired": ANYONE,
    "approve": ANYONE,
    "transfer": NO_ONE_WHILE_TRANSFERS_OFF,
    "transferFrom": NO_ONE_WHILE_TRANSFERS_OFF,
    "transferAtEpoch": NO_ONE_WHILE_TRANSFERS_OFF,
    "transferFromAtEpoch": NO_ONE_WHILE_TRANSFERS_OFF,
}

ADMIN_FUNCTIONS = (
    "registerPartner",
    "setPartnerAllowance",
    "suspendPartner",
    "reactivatePartner",
    "setSettlementValue",
    "setTransfersEnabled",
    "unpause",
)
TRANSFER_FUNCTIONS = ("transfer", "transferFrom", "transferAtEpoch", "transferFromAtEpoch")
#: Everything the pause stops: every change of balances, allowances and references.
PAUSABLE = ("issue", "issueBatch", "redeem", "sweepExpired", "approve", *TRANSFER_FUNCTIONS)
#: Inherited from OpenZeppelin AccessControl, not part of the matrix (see the pauser tests below).
ACCESS_CONTROL = ("grantRole", "revokeRole", "renounceRole")


def caller_address(ledger: Ledger, fn: str, role: str) -> str:
    actors = ledger.actors
    if role == "without_right":
        return actors.issue_only if fn == "redeem" else actors.accept_only
    address: str = getattr(actors, role)
    return address


# --------------------------------------------------------------------------- state that must not change


COUNTERS = (
    ("ledgerSequence",),
    ("ledgerHead",),
    ("paused",),
    ("totalIssued",),
    ("totalRedeemed",),
    ("outstandingSupply",),
)


def read(ledger: Ledger, views: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """The values of ``views`` (``(function, *args)`` tuples); one JSON-RPC batch on anvil."""
    calls = [getattr(ledger.contract.functions, fn)(*args) for fn, *args in views]
    if ledger.node.kind == "anvil":
        with ledger.w3.batch_requests() as batch:
            for call in calls:
                batch.add(call)
            return list(batch.execute())
    return [call.call({"from": ledger.actors.admin}) for call in calls]


def state(ledger: Ledger, watch: tuple[tuple[Any, ...], ...]) -> dict[Any, Any]:
    """The global counters plus the views the call could touch; keyed by ``(function, *args)``."""
    views = COUNTERS + watch
    return dict(zip(views, read(ledger, views), strict=True))


@dataclass
class Call:
    """One prepared call: ``send()`` sends it; ``check(receipt, before)`` asserts the effect of a success."""

    send: Callable[[], TxReceipt]
    check: Callable[[TxReceipt, dict[Any, Any]], None]
    watch: tuple[tuple[Any, ...], ...] = field(default_factory=tuple)


def assert_rejected(ledger: Ledger, call: Call, expected: Reverts, caller: str) -> None:
    """The call reverts with exactly ``expected`` and leaves every watched value unchanged."""
    before = state(ledger, call.watch)
    with pytest.raises(ContractRevert) as excinfo:
        call.send()
    expect_revert(excinfo, expected.error, *expected.arguments(caller))
    assert state(ledger, call.watch) == before


def assert_accepted(ledger: Ledger, call: Call) -> None:
    before = state(ledger, call.watch)
    receipt = call.send()
    call.check(receipt, before)


def entry(ledger: Ledger, receipt: TxReceipt, name: str) -> dict[str, Any]:
    """The one event ``name`` in ``receipt``, as its argument dict."""
    found = ledger.events(receipt, name)
    assert len(found) == 1, f"expected one {name}, got {found}"
    return found[0]["args"]


def plain(ledger: Ledger, fn: str, *args: Any, sender: str) -> Call:
    """A call without preparation, for tests that only expect it to revert."""

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        raise AssertionError(f"{fn} was expected to revert")

    return Call(lambda: ledger.transact(fn, *args, sender=sender), check)


def fresh_address() -> str:
    return str(Account.create().address)


# --------------------------------------------------------------------------- one call builder per function
# Each builder prepares what an otherwise valid call needs (as admin / partner / holder), then returns it.


def register_partner(ledger: Ledger, caller: str) -> Call:
    operator, settlement = fresh_address(), fresh_address()

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        seq = before[SEQ] + 1
        assert entry(ledger, receipt, "PartnerRegistered") == {
            "partnerId": 5,
            "operator": operator,
            "seq": seq,
            "settlement": settlement,
            "canIssue": True,
            "canAccept": False,
            "allowance": 500,
        }
        assert tuple(ledger.call("partner", 5)) == (5, operator, settlement, True, True, False, 500, 0, 0)
        assert ledger.call("partnerIdOf", operator) == 5
        assert ledger.call("partnerIds") == [ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY, 5]
        assert ledger.call("ledgerSequence") == seq

    return Call(
        lambda: ledger.transact("registerPartner", 5, operator, settlement, True, False, 500, sender=caller),
        check,
        (("partnerIdOf", operator), ("partnerIds",)),
    )


def set_partner_allowance(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PartnerAllowanceChanged") == {
            "partnerId": ACTIVE,
            "seq": before[SEQ] + 1,
            "previousAllowance": ALLOWANCE,
            "allowance": 123,
        }
        assert ledger.call("partner", ACTIVE)[6] == 123

    return Call(
        lambda: ledger.transact("setPartnerAllowance", ACTIVE, 123, sender=caller),
        check,
        (("partner", ACTIVE),),
    )


def suspend_partner(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PartnerStatusChanged") == {
            "partnerId": ACTIVE,
            "seq": before[SEQ] + 1,
            "active": False,
        }
        assert ledger.call("partner", ACTIVE)[3] is False

    return Call(
        lambda: ledger.transact("suspendPartner", ACTIVE, sender=caller), check, (("partner", ACTIVE),)
    )


def reactivate_partner(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PartnerStatusChanged") == {
            "partnerId": SUSPENDED,
            "seq": before[SEQ] + 1,
            "active": True,
        }
        assert ledger.call("partner", SUSPENDED)[3] is True

    return Call(
        lambda: ledger.transact("reactivatePartner", SUSPENDED, sender=caller),
        check,
        (("partner", SUSPENDED),),
    )


def set_settlement_value(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "SettlementValueChanged") == {
            "seq": before[SEQ] + 1,
            "previousValue": SETTLEMENT_VALUE,
            "value": 25,
        }
        assert ledger.call("settlementValue") == 25

    return Call(
        lambda: ledger.transact("setSettlementValue", 25, sender=caller), check, (("settlementValue",),)
    )


def set_transfers_enabled(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "TransfersEnabledChanged") == {"seq": before[SEQ] + 1, "enabled": True}
        assert ledger.call("transfersEnabled") is True

    return Call(
        lambda: ledger.transact("setTransfersEnabled", True, sender=caller), check, (("transfersEnabled",),)
    )


def pause(ledger: Ledger, caller: str) -> Call:
    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "Paused") == {"account": caller}
        assert ledger.call("paused") is True
        assert ledger.call("ledgerSequence") == before[SEQ]  # not a ledger entry

    return Call(lambda: ledger.transact("pause", sender=caller), check)


def unpause(ledger: Ledger, caller: str) -> Call:
    if not ledger.call("paused"):
        ledger.transact("pause", sender=ledger.actors.admin)

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "Unpaused") == {"account": caller}
        assert ledger.call("paused") is False
        assert ledger.call("ledgerSequence") == before[SEQ]

    return Call(lambda: ledger.transact("unpause", sender=caller), check)


def issue(ledger: Ledger, caller: str) -> Call:
    to, ref = fresh_address(), random_ref()

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PointsIssued") == {
            "partnerId": ACTIVE,
            "to": to,
            "seq": before[SEQ] + 1,
            "epoch": 0,
            "amount": 100,
            "ref": ref,
            "reason": 7,
            "ruleHash": RULE,
        }
        assert ledger.call("balanceOf", to) == 100
        assert ledger.call("totalIssued") == before[("totalIssued",)] + 100
        assert ledger.call("referenceUsed", ACTIVE, ref) is True

    pid = ledger.call("partnerIdOf", caller)
    return Call(
        lambda: ledger.transact("issue", to, 100, ref, 7, RULE, sender=caller),
        check,
        (("balanceOf", to), ("referenceUsed", pid, ref)),
    )


def issue_batch(ledger: Ledger, caller: str) -> Call:
    first, second, ref = fresh_address(), fresh_address(), random_ref()

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        batch = entry(ledger, receipt, "PointsBatchIssued")
        assert (batch["partnerId"], batch["count"], batch["total"]) == (ACTIVE, 2, 7)
        assert ledger.call("balanceOf", first) == 3
        assert ledger.call("balanceOf", second) == 4
        assert ledger.call("ledgerSequence") == before[SEQ] + 3
        assert ledger.call("referenceUsed", ACTIVE, ref) is True

    pid = ledger.call("partnerIdOf", caller)
    return Call(
        lambda: ledger.transact("issueBatch", [first, second], [3, 4], ref, 7, RULE, sender=caller),
        check,
        (("balanceOf", first), ("balanceOf", second), ("referenceUsed", pid, ref)),
    )


def redeem(ledger: Ledger, caller: str) -> Call:
    customer, ref = new_customer(), random_ref()
    ledger.issue(customer.address, 50)
    pid = ledger.call("partnerIdOf", caller)

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PointsRedeemed") == {
            "partnerId": ACTIVE,
            "customer": customer.address,
            "seq": before[SEQ] + 1,
            "epoch": 0,
            "amount": 20,
            "ref": ref,
            "nonce": 0,
        }
        assert ledger.call("balanceOf", customer.address) == 30
        assert ledger.call("totalRedeemed") == before[("totalRedeemed",)] + 20
        assert ledger.call("partner", ACTIVE)[8] == 20
        assert ledger.call("nonces", customer.address) == 1
        assert ledger.call("redemptionReferenceUsed", ACTIVE, ref) is True

    return Call(
        lambda: ledger.redeem(customer, 20, sender=caller, partner_id=pid or ACTIVE, ref=ref),
        check,
        (
            ("balanceOf", customer.address),
            ("nonces", customer.address),
            ("redemptionReferenceUsed", pid, ref),
        ),
    )


def sweep_expired(ledger: Ledger, caller: str) -> Call:
    holder = fresh_address()
    ledger.issue(holder, 5)
    ledger.node.advance_time(VALIDITY * EPOCH)  # epoch 0 has expired

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        # what the call returned: simulated on the block before the sweep
        sweep = ledger.contract.functions.sweepExpired([holder])
        assert sweep.call({"from": caller}, block_identifier=receipt["blockNumber"] - 1) == 5
        assert entry(ledger, receipt, "PointsExpired") == {
            "account": holder,
            "seq": before[SEQ] + 1,
            "epoch": 0,
            "amount": 5,
        }
        assert ledger.call("totalExpired") == before[("totalExpired",)] + 5
        assert ledger.call("epochSupply", 0) == 0
        assert ledger.call("pendingExpiry") == 0

    return Call(
        lambda: ledger.transact("sweepExpired", [holder], sender=caller),
        check,
        (("totalExpired",), ("epochSupply", 0), ("pendingExpiry",), ("balanceOfAtEpoch", 0, holder)),
    )


def approve(ledger: Ledger, caller: str) -> Call:
    spender = fresh_address()

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "Approval") == {"owner": caller, "spender": spender, "value": 77}
        assert ledger.call("allowance", caller, spender) == 77

    return Call(
        lambda: ledger.transact("approve", spender, 77, sender=caller),
        check,
        (("allowance", caller, spender),),
    )


def _transfer(ledger: Ledger, caller: str, fn: str) -> Call:
    """``caller`` moves 4 of 10 points of epoch 0 held by itself, or (``…From``) by an approving holder."""
    delegated = fn.startswith("transferFrom")
    holder = ledger.node.accounts[7] if delegated else caller
    to = fresh_address()
    ledger.issue(holder, 10)
    if delegated:
        ledger.transact("approve", caller, 6, sender=holder)
    args: tuple[Any, ...] = (holder, to, 4) if delegated else (to, 4)
    if fn.endswith("AtEpoch"):
        args = (0, *args)

    def check(receipt: TxReceipt, before: dict[Any, Any]) -> None:
        assert entry(ledger, receipt, "PointsTransferred") == {
            "from": holder,
            "to": to,
            "seq": before[SEQ] + 1,
            "epoch": 0,
            "amount": 4,
        }
        assert entry(ledger, receipt, "Transfer") == {"from": holder, "to": to, "value": 4}
        assert ledger.call("balanceOf", holder) == 6
        assert ledger.call("balanceOf", to) == 4
        if delegated:
            assert ledger.call("allowance", holder, caller) == 2

    return Call(
        lambda: ledger.transact(fn, *args, sender=caller),
        check,
        (("balanceOf", holder), ("balanceOf", to), ("allowance", holder, caller)),
    )


BUILDERS: dict[str, Callable[[Ledger, str], Call]] = {
    "registerPartner": register_partner,
    "setPartnerAllowance": set_partner_allowance,
    "suspendPartner": suspend_partner,
    "reactivatePartner": reactivate_partner,
    "setSettlementValue": set_settlement_value,
    "setTransfersEnabled": set_transfers_enabled,
    "pause": pause,
    "unpause": unpause,
    "issue": issue,
    "issueBatch": issue_batch,
    "redeem": redeem,
    "sweepExpired": sweep_expired,
    "approve": approve,
    **{fn: (lambda ledger, caller, fn=fn: _transfer(ledger, caller, fn)) for fn in TRANSFER_FUNCTIONS},
}


# --------------------------------------------------------------------------- the matrix


def test_the_matrix_covers_every_state_changing_function() -> None:
    """Every non-view function of the ABI is in the matrix, except AccessControl's own role management."""
    abi = load_artifact("LoyaltyLedger").abi
    mutating = {
        item["name"]
        for item in abi
        if item["type"] == "function" and item["stateMutability"] not in ("view", "pure")
    }
    assert mutating == set(MATRIX) | set(ACCESS_CONTROL)
    assert set(BUILDERS) == set(MATRIX)
    assert all(set(cells) == set(ROLES) for cells in MATRIX.values())


def test_a_new_ledger_is_unpaused_with_transfers_off(ledger: Ledger) -> None:
    """The configuration the matrix below assumes."""
    assert ledger.call("paused") is False
    assert ledger.call("transfersEnabled") is False
    assert ledger.call("hasRole", DEFAULT_ADMIN_ROLE, ledger.actors.admin) is True
    assert ledger.call("hasRole", PAUSER_ROLE, ledger.actors.admin) is True
    for role in ROLES[1:]:
        address = caller_address(ledger, "issue", role)
        assert ledger.call("hasRole", DEFAULT_ADMIN_ROLE, address) is False
        assert ledger.call("hasRole", PAUSER_ROLE, address) is False


@pytest.mark.parametrize(
    ("fn", "role"),
    [(fn, role) for fn in MATRIX for role in ROLES],
    ids=[f"{fn}-{role}-{MATRIX[fn][role] or 'ok'}" for fn in MATRIX for role in ROLES],
)
def test_role_matrix(ledger: Ledger, fn: str, role: str) -> None:
    """``role`` calling ``fn`` (transfers off, not paused) succeeds or reverts as :data:`MATRIX` says."""
    caller = caller_address(ledger, fn, role)
    call = BUILDERS[fn](ledger, caller)
    expected = MATRIX[fn][role]
    if expected is OK:
        assert_accepted(ledger, call)
    else:
        assert_rejected(ledger, call, expected, caller)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("fn", TRANSFER_FUNCTIONS)
def test_once_the_admin_enables_transfers_any_holder_can_transfer(ledger: Ledger, fn: str, role: str) -> None:
    ledger.transact("setTransfersEnabled", True, sender=ledger.actors.admin)
    assert_accepted(ledger, BUILDERS[fn](ledger, caller_address(ledger, fn, role)))


@pytest.mark.parametrize("fn", TRANSFER_FUNCTIONS)
def test_transfers_are_off_again_once_the_admin_disables_them(ledger: Ledger, fn: str) -> None:
    admin = ledger.actors.admin
    ledger.transact("setTransfersEnabled", True, sender=admin)
    call = BUILDERS[fn](ledger, ledger.actors.customer)
    ledger.transact("setTransfersEnabled", False, sender=admin)
    assert_rejected(ledger, call, TRANSFERS_DISABLED, ledger.actors.customer)


# --------------------------------------------------------------------------- the pause


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("fn", PAUSABLE)
def test_while_paused_every_balance_allowance_or_reference_change_reverts(
    ledger: Ledger, fn: str, role: str
) -> None:
    """EnforcedPause() for everybody, before any other check, even for calls that would otherwise succeed."""
    admin = ledger.actors.admin
    ledger.transact("setTransfersEnabled", True, sender=admin)
    caller = caller_address(ledger, fn, role)
    call = BUILDERS[fn](ledger, caller)
    ledger.transact("pause", sender=admin)
    assert_rejected(ledger, call, ENFORCED_PAUSE, caller)


@pytest.mark.parametrize("fn", ADMIN_FUNCTIONS)
def test_administration_goes_on_while_paused(ledger: Ledger, fn: str) -> None:
    """The admin can recover from an incident without unpausing first (and unpause at the end)."""
    ledger.transact("pause", sender=ledger.actors.admin)
    assert_accepted(ledger, BUILDERS[fn](ledger, ledger.actors.admin))


@pytest.mark.parametrize("fn", ADMIN_FUNCTIONS)
def test_while_paused_administration_is_still_admin_only(ledger: Ledger, fn: str) -> None:
    ledger.transact("pause", sender=ledger.actors.admin)
    assert_rejected(ledger, BUILDERS[fn](ledger, ledger.actors.stranger), NOT_ADMIN, ledger.actors.stranger)


def test_pausing_twice_reverts_enforced_pause(ledger: Ledger) -> None:
    ledger.transact("pause", sender=ledger.actors.admin)
    assert_rejected(ledger, pause(ledger, ledger.actors.admin), ENFORCED_PAUSE, ledger.actors.admin)


def test_unpausing_an_unpaused_ledger_reverts_expected_pause(ledger: Ledger) -> None:
    admin = ledger.actors.admin
    assert_rejected(ledger, plain(ledger, "unpause", sender=admin), Reverts("ExpectedPause"), admin)


def test_a_pauser_without_the_admin_role_can_pause_but_not_unpause(ledger: Ledger) -> None:
    admin, stranger = ledger.actors.admin, ledger.actors.stranger
    receipt = ledger.transact("grantRole", PAUSER_ROLE, stranger, sender=admin)
    granted = entry(ledger, receipt, "RoleGranted")
    assert granted == {"role": PAUSER_ROLE, "account": stranger, "sender": admin}
    assert ledger.call("hasRole", PAUSER_ROLE, stranger) is True
    assert ledger.call("hasRole", DEFAULT_ADMIN_ROLE, stranger) is False

    assert_accepted(ledger, pause(ledger, stranger))

    assert_rejected(ledger, plain(ledger, "unpause", sender=stranger), NOT_ADMIN, stranger)
    assert ledger.call("paused") is True

    assert_accepted(ledger, unpause(ledger, admin))


def test_an_admin_without_the_pauser_role_can_unpause_but_not_pause(ledger: Ledger) -> None:
    admin, stranger = ledger.actors.admin, ledger.actors.stranger
    ledger.transact("grantRole", PAUSER_ROLE, stranger, sender=admin)
    ledger.transact("revokeRole", PAUSER_ROLE, admin, sender=admin)

    assert_rejected(ledger, pause(ledger, admin), NOT_PAUSER, admin)

    ledger.transact("pause", sender=stranger)
    assert_accepted(ledger, unpause(ledger, admin))


@pytest.mark.parametrize("role", [role for role in ROLES if role != "admin"])
def test_only_the_admin_grants_the_pauser_role(ledger: Ledger, role: str) -> None:
    caller, stranger = caller_address(ledger, "grantRole", role), ledger.actors.stranger
    call = plain(ledger, "grantRole", PAUSER_ROLE, stranger, sender=caller)
    call.watch = (("hasRole", PAUSER_ROLE, stranger),)
    assert_rejected(ledger, call, NOT_ADMIN, caller)
