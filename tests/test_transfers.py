"""Transfers between customers: off by default, switched by the admin, and epoch-preserving when on.

``transfer``/``transferFrom`` move the sender's oldest live epochs first; ``transferAtEpoch``/
``transferFromAtEpoch`` (ERC-7818) move points of one live epoch. Moved points keep their epoch, so they
expire on the schedule they were issued with. The holders that send transactions are the node's unlocked
accounts ``customer`` (holder) and ``stranger`` (spender); recipients are fresh addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chain import ContractRevert
from conftest import EPOCH, VALIDITY, Ledger, expect_revert, new_customer
from contract_helpers import send_failing

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEFAULT_ADMIN_ROLE = b"\x00" * 32
MAX_UINT256 = 2**256 - 1


# --------------------------------------------------------------------------- helpers


def enable(ledger: Ledger, enabled: bool = True) -> Any:
    return ledger.transact("setTransfersEnabled", enabled, sender=ledger.actors.admin)


def holder_with_epochs(ledger: Ledger, *amounts: int) -> str:
    """Issues ``amounts[i]`` points of epoch ``i`` to the customer; leaves the clock in the last epoch."""
    customer = ledger.actors.customer
    for epoch, amount in enumerate(amounts):
        if epoch:
            ledger.node.advance_time(EPOCH)
        ledger.issue(customer, amount)
    assert ledger.call("currentEpoch") == len(amounts) - 1
    return customer


def state(ledger: Ledger, *accounts: str) -> tuple[Any, ...]:
    """Live points per epoch of ``accounts``, their allowances to the stranger, and the ledger sequence."""
    return (
        ledger.call("ledgerSequence"),
        ledger.call("totalSupply"),
        *(ledger.call("liveBalances", a) for a in accounts),
        *(ledger.call("allowance", a, ledger.actors.stranger) for a in accounts),
    )


def rejected(ledger: Ledger, fn: str, *args: Any, sender: str, watch: tuple[str, ...]) -> Any:
    """Sends ``fn(*args)``, expects a revert, and checks nothing changed for the ``watch`` accounts."""
    before = state(ledger, *watch)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact(fn, *args, sender=sender)
    assert state(ledger, *watch) == before
    return excinfo


def entries(ledger: Ledger, receipt: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["args"]) for e in ledger.events(receipt)]


def moved(frm: str, to: str, seq: int, epoch: int, amount: int) -> list[tuple[str, dict[str, Any]]]:
    """The two logs of one epoch's move: the ERC-20 Transfer and the PointsTransferred ledger entry."""
    return [
        ("Transfer", {"from": frm, "to": to, "value": amount}),
        ("PointsTransferred", {"from": frm, "to": to, "seq": seq, "epoch": epoch, "amount": amount}),
    ]


# --------------------------------------------------------------------------- the switch


def test_transfers_are_off_by_default(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100)
    recipient = new_customer().address
    assert ledger.call("transfersEnabled") is False

    for fn, args in (("transfer", (recipient, 10)), ("transferAtEpoch", (0, recipient, 10))):
        excinfo = rejected(ledger, fn, *args, sender=customer, watch=(customer, recipient))
        expect_revert(excinfo, "LedgerTransfersDisabled")


def test_admin_switches_transfers_on_and_off(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100)
    recipient = new_customer().address
    stranger = ledger.actors.stranger
    excinfo = rejected(ledger, "setTransfersEnabled", True, sender=stranger, watch=())
    expect_revert(excinfo, "AccessControlUnauthorizedAccount", stranger, DEFAULT_ADMIN_ROLE)

    seq = ledger.call("ledgerSequence")
    assert entries(ledger, enable(ledger)) == [("TransfersEnabledChanged", {"seq": seq + 1, "enabled": True})]
    assert ledger.call("transfersEnabled") is True
    ledger.transact("transfer", recipient, 10, sender=customer)
    assert ledger.call("balanceOf", recipient) == 10

    assert entries(ledger, enable(ledger, False)) == [
        ("TransfersEnabledChanged", {"seq": seq + 3, "enabled": False})
    ]
    assert ledger.call("transfersEnabled") is False
    excinfo = rejected(ledger, "transfer", recipient, 10, sender=customer, watch=(customer, recipient))
    expect_revert(excinfo, "LedgerTransfersDisabled")


# --------------------------------------------------------------------------- transfer: oldest epochs first


def test_transfer_moves_the_oldest_live_epochs_first_and_keeps_them(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100, 200, 300)  # epochs 0, 1, 2
    recipient = new_customer().address
    enable(ledger)
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact("transfer", recipient, 350, sender=customer)

    assert entries(ledger, receipt) == [
        *moved(customer, recipient, seq + 1, 0, 100),
        *moved(customer, recipient, seq + 2, 1, 200),
        *moved(customer, recipient, seq + 3, 2, 50),
    ]
    assert [ledger.call("balanceOfAtEpoch", e, recipient) for e in (0, 1, 2)] == [100, 200, 50]
    assert ledger.call("liveBalances", recipient) == [[0, 1, 2], [100, 200, 50]]
    assert ledger.call("liveBalances", customer) == [[2], [250]]
    assert ledger.call("totalSupply") == 600
    assert [ledger.call("epochSupply", e) for e in (0, 1, 2)] == [100, 200, 300]

    excinfo = rejected(ledger, "transfer", recipient, 251, sender=customer, watch=(customer, recipient))
    expect_revert(excinfo, "ERC20InsufficientBalance", customer, 250, 251)

    ledger.node.advance_time((VALIDITY - 2) * EPOCH)  # epoch 12: the moved epoch-0 points expire on schedule
    assert ledger.call("currentEpoch") == VALIDITY
    assert ledger.call("liveBalances", recipient) == [[1, 2], [200, 50]]


def test_transfer_counts_only_live_points(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100, 40)  # epochs 0, 1
    recipient = new_customer().address
    enable(ledger)
    ledger.node.advance_time((VALIDITY - 1) * EPOCH)  # epoch 12: epoch 0 expired, 40 live
    assert ledger.call("balanceOf", customer) == 40

    excinfo = rejected(ledger, "transfer", recipient, 41, sender=customer, watch=(customer, recipient))

    expect_revert(excinfo, "ERC20InsufficientBalance", customer, 40, 41)
    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact("transfer", recipient, 40, sender=customer)
    assert entries(ledger, receipt) == moved(customer, recipient, seq + 1, 1, 40)


# --------------------------------------------------------------------------- transferAtEpoch: one epoch


def test_transfer_at_epoch_moves_only_that_epoch(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100, 200)  # epochs 0, 1
    recipient = new_customer().address
    enable(ledger)
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact("transferAtEpoch", 1, recipient, 60, sender=customer)

    assert entries(ledger, receipt) == moved(customer, recipient, seq + 1, 1, 60)
    assert ledger.call("liveBalances", customer) == [[0, 1], [100, 140]]
    assert ledger.call("liveBalances", recipient) == [[1], [60]]


def test_transfer_at_epoch_refuses_future_overdrawn_and_expired_epochs(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100, 200)  # epochs 0, 1
    recipient = new_customer().address
    watch = (customer, recipient)
    enable(ledger)

    excinfo = rejected(ledger, "transferAtEpoch", 2, recipient, 1, sender=customer, watch=watch)
    expect_revert(excinfo, "LedgerFutureEpoch", 2, 1)

    excinfo = rejected(ledger, "transferAtEpoch", 0, recipient, 101, sender=customer, watch=watch)
    expect_revert(excinfo, "ERC20InsufficientBalance", customer, 100, 101)

    ledger.node.advance_time((VALIDITY - 1) * EPOCH)  # epoch 12: epoch 0 expired
    assert ledger.call("currentEpoch") == VALIDITY
    excinfo = rejected(ledger, "transferAtEpoch", 0, recipient, 1, sender=customer, watch=watch)
    expect_revert(excinfo, "ERC7818TransferredExpiredToken", customer, 0)


# --------------------------------------------------------------------------- allowances


def test_transfer_from_spends_the_allowance(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100, 200)  # epochs 0, 1
    spender, recipient = ledger.actors.stranger, new_customer().address
    watch = (customer, recipient)
    enable(ledger)
    receipt = ledger.transact("approve", spender, 150, sender=customer)
    assert entries(ledger, receipt) == [("Approval", {"owner": customer, "spender": spender, "value": 150})]
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact("transferFrom", customer, recipient, 120, sender=spender)

    assert entries(ledger, receipt) == [
        *moved(customer, recipient, seq + 1, 0, 100),
        *moved(customer, recipient, seq + 2, 1, 20),
    ]
    assert ledger.call("allowance", customer, spender) == 30

    excinfo = rejected(ledger, "transferFrom", customer, recipient, 31, sender=spender, watch=watch)
    expect_revert(excinfo, "ERC20InsufficientAllowance", spender, 30, 31)
    excinfo = rejected(ledger, "transferFromAtEpoch", 1, customer, recipient, 31, sender=spender, watch=watch)
    expect_revert(excinfo, "ERC20InsufficientAllowance", spender, 30, 31)

    receipt = ledger.transact("transferFromAtEpoch", 1, customer, recipient, 30, sender=spender)
    assert entries(ledger, receipt) == moved(customer, recipient, seq + 3, 1, 30)
    assert ledger.call("allowance", customer, spender) == 0
    assert ledger.call("liveBalances", customer) == [[1], [150]]
    assert ledger.call("liveBalances", recipient) == [[0, 1], [100, 50]]


def test_unlimited_allowance_is_not_decreased(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100)
    spender, recipient = ledger.actors.stranger, new_customer().address
    enable(ledger)
    ledger.transact("approve", spender, MAX_UINT256, sender=customer)

    ledger.transact("transferFrom", customer, recipient, 10, sender=spender)
    ledger.transact("transferFromAtEpoch", 0, customer, recipient, 20, sender=spender)

    assert ledger.call("allowance", customer, spender) == MAX_UINT256
    assert ledger.call("balanceOf", recipient) == 30


def test_zero_addresses_are_refused(ledger: Ledger) -> None:
    customer = holder_with_epochs(ledger, 100)
    spender = ledger.actors.stranger
    enable(ledger)
    ledger.transact("approve", spender, 50, sender=customer)

    excinfo = rejected(ledger, "approve", ZERO_ADDRESS, 10, sender=customer, watch=(customer,))
    expect_revert(excinfo, "ERC20InvalidSpender", ZERO_ADDRESS)
    for value in (10, 0):  # a zero-value transfer to 0x0 would look like a burn
        for fn, args, sender in (
            ("transfer", (ZERO_ADDRESS, value), customer),
            ("transferAtEpoch", (0, ZERO_ADDRESS, value), customer),
            ("transferFrom", (customer, ZERO_ADDRESS, value), spender),
            ("transferFromAtEpoch", (0, customer, ZERO_ADDRESS, value), spender),
        ):
            excinfo = rejected(ledger, fn, *args, sender=sender, watch=(customer,))
            expect_revert(excinfo, "ERC20InvalidReceiver", ZERO_ADDRESS)


FROM_ZERO: dict[str, Callable[[str, str], tuple[Any, ...]]] = {
    "transferFrom": lambda frm, to: (frm, to, 0),
    "transferFromAtEpoch": lambda frm, to: (0, frm, to, 0),
}


@pytest.mark.parametrize("fn", FROM_ZERO)
def test_a_transfer_from_the_zero_address_is_refused_and_emits_nothing(ledger: Ledger, fn: str) -> None:
    """A zero-value transfer from 0x0 would emit Transfer(0x0, to, 0): a mint out of nothing, to an indexer.
    It is refused as OpenZeppelin's ERC-20 refuses it, before any allowance is looked at, and the failed
    transaction leaves no log."""
    holder_with_epochs(ledger, 100)
    recipient = new_customer().address
    enable(ledger)
    before = state(ledger, recipient)

    receipt, revert = send_failing(
        ledger, fn, *FROM_ZERO[fn](ZERO_ADDRESS, recipient), sender=ledger.actors.stranger
    )

    assert (revert.name, revert.arguments) == ("ERC20InvalidSender", (ZERO_ADDRESS,))
    assert receipt["logs"] == []
    assert state(ledger, recipient) == before
    # from and to both 0x0: the sender is reported first
    excinfo = rejected(
        ledger,
        fn,
        *FROM_ZERO[fn](ZERO_ADDRESS, ZERO_ADDRESS),
        sender=ledger.actors.stranger,
        watch=(recipient,),
    )
    expect_revert(excinfo, "ERC20InvalidSender", ZERO_ADDRESS)


def test_zero_address_checks_come_after_the_transfer_switch(ledger: Ledger) -> None:
    """With transfers off every transfer entry point says so first, whatever its addresses."""
    customer = holder_with_epochs(ledger, 100)
    for fn, args in (
        ("transfer", (ZERO_ADDRESS, 0)),
        ("transferAtEpoch", (0, ZERO_ADDRESS, 0)),
        ("transferFrom", (ZERO_ADDRESS, customer, 0)),
        ("transferFromAtEpoch", (0, ZERO_ADDRESS, customer, 0)),
    ):
        excinfo = rejected(ledger, fn, *args, sender=ledger.actors.stranger, watch=(customer,))
        expect_revert(excinfo, "LedgerTransfersDisabled")


# --------------------------------------------------------------------------- pause


def test_paused_ledger_refuses_transfers_and_raised_approvals(ledger: Ledger) -> None:
    """While paused nothing moves; an approval may still be lowered (a holder limiting a spender in an
    incident), never raised."""
    customer = holder_with_epochs(ledger, 100)
    spender, recipient = ledger.actors.stranger, new_customer().address
    enable(ledger)
    ledger.transact("approve", spender, 50, sender=customer)
    ledger.transact("pause", sender=ledger.actors.pauser)
    watch = (customer, recipient)

    for fn, args, sender in (
        ("transfer", (recipient, 10), customer),
        ("transferAtEpoch", (0, recipient, 10), customer),
        ("transferFrom", (customer, recipient, 10), spender),
        ("transferFromAtEpoch", (0, customer, recipient, 10), spender),
        ("approve", (spender, 51), customer),
    ):
        excinfo = rejected(ledger, fn, *args, sender=sender, watch=watch)
        expect_revert(excinfo, "EnforcedPause")

    for value in (50, 20, 0):  # the same value, then lower
        receipt = ledger.transact("approve", spender, value, sender=customer)
        assert entries(ledger, receipt) == [
            ("Approval", {"owner": customer, "spender": spender, "value": value})
        ]
        assert ledger.call("allowance", customer, spender) == value
    excinfo = rejected(ledger, "approve", spender, 1, sender=customer, watch=watch)
    expect_revert(excinfo, "EnforcedPause")


def test_zero_value_transfers_emit_transfer_and_change_nothing(ledger: Ledger) -> None:
    """ERC-20: a transfer of 0 is a normal transfer and fires Transfer; no ledger entry is written."""
    holder = holder_with_epochs(ledger, 5)
    enable(ledger)
    recipient = new_customer().address
    before = state(ledger, holder, recipient)
    for fn, args in (("transfer", (recipient, 0)), ("transferAtEpoch", (0, recipient, 0))):
        receipt = ledger.transact(fn, *args, sender=holder)
        assert entries(ledger, receipt) == [("Transfer", {"from": holder, "to": recipient, "value": 0})]
    assert state(ledger, holder, recipient) == before


def test_transfer_from_reports_disabled_transfers_before_the_allowance(ledger: Ledger) -> None:
    holder = holder_with_epochs(ledger, 5)
    excinfo = rejected(
        ledger,
        "transferFrom",
        holder,
        ledger.actors.stranger,
        1,
        sender=ledger.actors.stranger,
        watch=(holder,),
    )
    expect_revert(excinfo, "LedgerTransfersDisabled")
