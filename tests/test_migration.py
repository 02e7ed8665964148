"""Account migration and recovery: every live point of one account moves to another, keeping its epoch.

``migrateAccount(from, to, nonce, deadline, fromSignature, toSignature)`` carries the EIP-712 ``Migration``
consent of both accounts (the same message, signed by each) under a keyed nonce of ``from``; anyone may submit
it, transfers on or off. ``recoverAccount(lost, to)`` is the coalition's recovery of a lost key: the admin
only, which in production is the timelock, so a recovery is scheduled (visible on chain) for the whole delay
before it runs. Either emits ``AccountMigrated`` (``recovery`` true for a recovery) followed by one
``PointsTransferred`` per live epoch, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD
from web3.types import TxReceipt

from chain import ANYONE, ContractRevert, OperationState, PartnerId, Points, ReasonCode, TimelockConfig
from chain._deploy import deploy_ledger as deploy_chain_ledger
from chain._eip712 import typed_data_digest
from chain._ledger import Ledger as ChainLedger
from chain._rpc import Rpc
from chain._sender import Sender
from chain._signer import LocalSigner
from chain._timelock import Timelock, state_bitmap
from conftest import (
    EPOCH,
    SETTLEMENT_VALUE,
    VALIDITY,
    Ledger,
    Node,
    expect_revert,
    new_customer,
    node_signer,
    random_ref,
    revert_decoder,
)
from contract_helpers import (
    chain_reader,
    entries,
    holding,
    issued_items,
    keyed,
    redemption_record,
    to_epoch,
)

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DELAY = 3600


# --------------------------------------------------------------------------- helpers


def deadline(ledger: Ledger) -> int:
    return ledger.node.timestamp() + 3600


def signed(
    ledger: Ledger,
    source: LocalAccount,
    target: LocalAccount,
    *,
    nonce: int | None = None,
    until: int | None = None,
    from_signer: LocalAccount | None = None,
    to_signer: LocalAccount | None = None,
) -> tuple[Any, ...]:
    """The arguments of ``migrateAccount(source, target, ...)`` with both signatures (by the accounts
    themselves unless other signers are given), at ``source``'s next nonce of key 0."""
    client = chain_reader(ledger)
    nonce = client.nonce_of(source.address) if nonce is None else nonce
    until = deadline(ledger) if until is None else until
    message = client.migration_message(source.address, target.address, nonce, until)
    from_signature = LocalSigner(from_signer or source).sign_typed_data(message)
    to_signature = LocalSigner(to_signer or target).sign_typed_data(message)
    return (source.address, target.address, nonce, until, from_signature, to_signature)


def migrate(ledger: Ledger, args: tuple[Any, ...]) -> TxReceipt:
    """Submits a migration as a stranger (anyone may: the customers need no gas)."""
    return ledger.transact("migrateAccount", *args, sender=ledger.actors.stranger)


def refused(ledger: Ledger, function: str, *args: Any, sender: str) -> pytest.ExceptionInfo[ContractRevert]:
    before = (ledger.call("ledgerSequence"), ledger.call("ledgerHead"))
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact(function, *args, sender=sender)
    assert (ledger.call("ledgerSequence"), ledger.call("ledgerHead")) == before
    return excinfo


def per_epoch(ledger: Ledger, account: str, epochs: range) -> list[int]:
    return [ledger.call("balanceOfAtEpoch", e, account) for e in epochs]


# --------------------------------------------------------------------------- the message


def test_the_migration_digest_is_the_typed_data_both_accounts_sign(ledger: Ledger) -> None:
    source, target = new_customer(), new_customer()
    client = chain_reader(ledger)
    message = client.migration_message(source.address, target.address, 7, 2**40)
    assert message["primaryType"] == "Migration"
    assert message["message"] == {"from": source.address, "to": target.address, "nonce": 7, "deadline": 2**40}
    digest = client.migration_digest(source.address, target.address, 7, 2**40)
    assert digest == typed_data_digest(message)
    assert client.sign_migration(LocalSigner(source), source.address, target.address, 7, 2**40) == (
        LocalSigner(source).sign_typed_data(message)
    )


# --------------------------------------------------------------------------- what a migration does


def test_a_migration_moves_every_live_epoch_with_transfers_off(ledger: Ledger) -> None:
    source, target = holding(ledger, [10, 0, 30, 5]), new_customer()
    ledger.issue(target.address, 4)  # the target's own points of epoch 3 stay and add up
    assert ledger.call("transfersEnabled") is False
    epochs = range(4)
    before = per_epoch(ledger, source.address, epochs)
    seq = ledger.call("ledgerSequence")
    args = signed(ledger, source, target)

    receipt = migrate(ledger, args)

    s, t = source.address, target.address
    assert entries(ledger, receipt) == [
        (
            "AccountMigrated",
            {"from": s, "to": t, "seq": seq + 1, "nonce": 0, "recovery": False, "amount": 45},
        ),
        ("Transfer", {"from": s, "to": t, "value": 10}),
        ("PointsTransferred", {"from": s, "to": t, "seq": seq + 2, "epoch": 0, "amount": 10}),
        ("Transfer", {"from": s, "to": t, "value": 30}),
        ("PointsTransferred", {"from": s, "to": t, "seq": seq + 3, "epoch": 2, "amount": 30}),
        ("Transfer", {"from": s, "to": t, "value": 5}),
        ("PointsTransferred", {"from": s, "to": t, "seq": seq + 4, "epoch": 3, "amount": 5}),
    ]
    assert per_epoch(ledger, t, epochs) == [10, 0, 30, 5 + 4]
    assert before == [10, 0, 30, 5]
    assert per_epoch(ledger, s, epochs) == [0, 0, 0, 0]
    assert ledger.call("balanceOf", s) == 0
    assert ledger.call("nonces", s) == 1  # key 0's sequence moved on
    assert ledger.call("totalSupply") == 49  # nothing minted or burnt


def test_only_live_epochs_move_and_a_stale_target_bucket_expires_first(short_ledger: Ledger) -> None:
    """With 3 valid epochs, at epoch 4: the source's epoch-0 points have expired and stay behind (pending
    expiry); the target's bucket for epoch 4 still holds its expired epoch-1 points, which expire first."""
    ledger = short_ledger
    source, target = new_customer(), new_customer()
    ledger.issue(source.address, 8)  # epoch 0, bucket 0
    to_epoch(ledger, 1)
    ledger.issue(target.address, 6)  # epoch 1, bucket 1
    to_epoch(ledger, 4)
    ledger.issue(source.address, 7)  # epoch 4, bucket 1
    assert ledger.call("pendingExpiry") == 14
    seq = ledger.call("ledgerSequence")

    receipt = migrate(ledger, signed(ledger, source, target))

    shown = [(name, args.get("seq"), args.get("epoch")) for name, args in entries(ledger, receipt)]
    assert shown == [
        ("AccountMigrated", seq + 1, None),
        ("Transfer", None, None),  # the target's stale epoch-1 points burnt
        ("PointsExpired", seq + 2, 1),
        ("Transfer", None, None),
        ("PointsTransferred", seq + 3, 4),
    ]
    assert ledger.call("liveBalances", target.address) == [[4], [7]]
    assert ledger.call("pendingExpiry") == 8  # the source's expired points, still to sweep
    assert ledger.call("totalExpired") == 6


# --------------------------------------------------------------------------- refusals


def test_a_consent_is_used_once(ledger: Ledger) -> None:
    source, target = holding(ledger, [50]), new_customer()
    args = signed(ledger, source, target)
    migrate(ledger, args)
    ledger.issue(source.address, 20)  # points again: the old consent still cannot move them
    excinfo = refused(ledger, "migrateAccount", *args, sender=ledger.actors.stranger)
    expect_revert(excinfo, "InvalidAccountNonce", source.address, keyed(0, 1))


def test_a_keyed_nonce_of_another_key_works_and_must_be_the_next(ledger: Ledger) -> None:
    source, target = holding(ledger, [50]), new_customer()
    skipped = signed(ledger, source, target, nonce=keyed(9, 1))
    excinfo = refused(ledger, "migrateAccount", *skipped, sender=ledger.actors.stranger)
    expect_revert(excinfo, "InvalidAccountNonce", source.address, keyed(9))
    receipt = migrate(ledger, signed(ledger, source, target, nonce=keyed(9)))
    assert ledger.events(receipt, "AccountMigrated")[0]["args"]["nonce"] == keyed(9)


@pytest.mark.parametrize("side", ["from", "to"])
def test_both_accounts_must_sign(ledger: Ledger, side: str) -> None:
    source, target, impostor = holding(ledger, [50]), new_customer(), new_customer()
    forged = {"from_signer": impostor} if side == "from" else {"to_signer": impostor}
    args = signed(ledger, source, target, **forged)
    excinfo = refused(ledger, "migrateAccount", *args, sender=ledger.actors.stranger)
    account = source.address if side == "from" else target.address
    expect_revert(excinfo, "LedgerInvalidSigner", account, impostor.address)
    # the other side's signature in its place is refused too
    s, t, nonce, until, from_signature, to_signature = signed(ledger, source, target)
    swapped = (s, t, nonce, until, to_signature, from_signature)
    excinfo = refused(ledger, "migrateAccount", *swapped, sender=ledger.actors.stranger)
    expect_revert(excinfo, "LedgerInvalidSigner", s, t)


def test_an_expired_consent_is_refused(ledger: Ledger) -> None:
    source, target = holding(ledger, [50]), new_customer()
    until = ledger.node.timestamp() + 60
    args = signed(ledger, source, target, until=until)
    ledger.node.advance_time(120)
    excinfo = refused(ledger, "migrateAccount", *args, sender=ledger.actors.stranger)
    expect_revert(excinfo, "LedgerExpiredSignature", until)


def test_to_the_same_account_is_refused(ledger: Ledger) -> None:
    source = holding(ledger, [50])
    args = signed(ledger, source, source)
    excinfo = refused(ledger, "migrateAccount", *args, sender=ledger.actors.stranger)
    expect_revert(excinfo, "LedgerInvalidMigration", source.address, source.address)


@pytest.mark.parametrize("side", ["from", "to"])
def test_a_zero_account_is_an_invalid_migration(ledger: Ledger, side: str) -> None:
    """The zero address signs nothing: whatever signature stands for it, the migration is invalid. (The
    message signed is the one submitted; the real account's signature is valid.)"""
    source, target = holding(ledger, [50]), new_customer()
    accounts = (ZERO_ADDRESS, target.address) if side == "from" else (source.address, ZERO_ADDRESS)
    until = deadline(ledger)
    message = chain_reader(ledger).migration_message(*accounts, 0, until)
    signatures = (LocalSigner(source).sign_typed_data(message), LocalSigner(target).sign_typed_data(message))
    excinfo = refused(
        ledger, "migrateAccount", *accounts, 0, until, *signatures, sender=ledger.actors.stranger
    )
    expect_revert(excinfo, "LedgerInvalidMigration", *accounts)


def test_an_account_without_live_points_is_refused(short_ledger: Ledger) -> None:
    ledger = short_ledger
    empty, target = new_customer(), new_customer()
    excinfo = refused(ledger, "migrateAccount", *signed(ledger, empty, target), sender=ledger.actors.stranger)
    expect_revert(excinfo, "LedgerInsufficientBalance", empty.address, 0, 1)
    expired = holding(ledger, [10])
    to_epoch(ledger, 3)  # its only points expired
    excinfo = refused(
        ledger, "migrateAccount", *signed(ledger, expired, target), sender=ledger.actors.stranger
    )
    expect_revert(excinfo, "LedgerInsufficientBalance", expired.address, 0, 1)


def test_no_migration_while_paused(ledger: Ledger) -> None:
    source, target = holding(ledger, [50]), new_customer()
    ledger.transact("pause", sender=ledger.actors.pauser)
    excinfo = refused(
        ledger, "migrateAccount", *signed(ledger, source, target), sender=ledger.actors.stranger
    )
    expect_revert(excinfo, "EnforcedPause")


# --------------------------------------------------------------------------- recovery


def test_only_the_admin_recovers_an_account(ledger: Ledger) -> None:
    a = ledger.actors
    lost, target = holding(ledger, [50]), new_customer()
    for who in (a.stranger, a.treasury, a.pauser, a.partner):
        excinfo = refused(ledger, "recoverAccount", lost.address, target.address, sender=who)
        expect_revert(excinfo, "AccessControlUnauthorizedAccount", who, bytes(32))
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact("recoverAccount", lost.address, target.address, sender=a.admin)

    assert entries(ledger, receipt)[0] == (
        "AccountMigrated",
        {
            "from": lost.address,
            "to": target.address,
            "seq": seq + 1,
            "nonce": 0,
            "recovery": True,
            "amount": 50,
        },
    )
    assert (ledger.call("balanceOf", lost.address), ledger.call("balanceOf", target.address)) == (0, 50)
    assert ledger.call("nonces", lost.address) == 0  # no consent was used
    for args, error in (
        ((target.address, ZERO_ADDRESS), (target.address, ZERO_ADDRESS)),
        ((target.address, target.address), (target.address, target.address)),
        ((ZERO_ADDRESS, target.address), (ZERO_ADDRESS, target.address)),
    ):
        expect_revert(
            refused(ledger, "recoverAccount", *args, sender=a.admin), "LedgerInvalidMigration", *error
        )
    excinfo = refused(ledger, "recoverAccount", lost.address, target.address, sender=a.admin)
    expect_revert(excinfo, "LedgerInsufficientBalance", lost.address, 0, 1)


@pytest.fixture
def governed(node: Node) -> Iterator[tuple[Node, ChainLedger, Timelock, ChainLedger]]:
    """A ledger behind a CoalitionTimelock (admin and treasury; a proposer, anyone executes), with partner 1
    registered through it: the node, the partner's client, the proposer's timelock client, and a
    read-only ledger client."""
    snapshot = node.snapshot()
    deployer, proposer, operator = (node_signer(node, a) for a in node.accounts[:3])
    rpc = Rpc(node.w3, decoder=revert_decoder())
    manifest = deploy_chain_ledger(
        Sender(rpc, deployer),
        name="Coalition Points",
        symbol="PTS",
        epoch_length=EPOCH,
        validity=VALIDITY,
        settlement_value=SETTLEMENT_VALUE,
        timelock=TimelockConfig(min_delay=DELAY, proposers=(proposer.address,), executors=(ANYONE,)),
    )
    assert manifest.timelock is not None
    timelock = Timelock(rpc, manifest.timelock.address, sender=Sender(rpc, proposer))
    ledger = ChainLedger.from_manifest(rpc, manifest)
    assert ledger.deployment_block == manifest.deployed_at.block_number  # where its log searches start
    register = ledger.call_of("registerPartner", 1, operator.address, operator.address, True, True, 10**6)
    op = timelock.schedule(register).wait()
    node.advance_time(DELAY)
    timelock.execute(op).wait()
    yield node, ledger.with_sender(Sender(rpc, operator)), timelock, ledger
    node.revert(snapshot)


def test_a_recovery_behind_the_timelock_is_visible_first_and_runs_after_the_delay(
    governed: tuple[Node, ChainLedger, Timelock, ChainLedger],
) -> None:
    node, partner, timelock, ledger = governed
    lost, target = new_customer().address, new_customer().address
    partner.issue(lost, Points(70), random_ref(), ReasonCode(1)).wait()
    call = ledger.call_of("recoverAccount", lost, target)

    op = timelock.schedule(call).wait()

    [pending] = timelock.pending_operations(from_block=ledger.deployment_block)
    assert pending.id == op.id
    decoded = ledger.decode_call(pending.data)
    assert decoded is not None and str(decoded) == f"recoverAccount(lost={lost}, to={target})"
    with pytest.raises(ContractRevert) as early:
        timelock.execute(op)
    expect_revert(early, "TimelockUnexpectedOperationState", op.id, state_bitmap(OperationState.READY))
    assert ledger.balance_of(lost) == 70

    node.advance_time(DELAY)
    receipt = timelock.execute(op).wait()

    contract = node.w3.eth.contract(address=ledger.address, abi=ledger.artifact.abi)
    tx_receipt = node.w3.eth.get_transaction_receipt(receipt.transaction_hash)  # type: ignore[arg-type]
    # the entry is the ledger's (from the ledger's address), in the timelock's transaction
    [migrated] = contract.events.AccountMigrated().process_receipt(tx_receipt, errors=DISCARD)
    assert dict(migrated["args"]) == {
        "from": lost,
        "to": target,
        "seq": migrated["args"]["seq"],
        "nonce": 0,
        "recovery": True,
        "amount": 70,
    }
    assert (ledger.balance_of(lost), ledger.balance_of(target)) == (0, 70)
    assert timelock.is_done(op.id)
    # the deployer holds no power: only the timelock recovers
    deployer = node.accounts[0]
    assert not ledger.has_role(ledger.admin_role(), deployer)
    with pytest.raises(ContractRevert) as direct:
        partner.with_sender(Sender(ledger.rpc, node_signer(node, deployer))).recover_account(target, lost)
    expect_revert(direct, "AccessControlUnauthorizedAccount", deployer, bytes(32))
    assert PartnerId(1) in ledger.partner_ids()


# --------------------------------------------------------------------------- returns follow the customer


def test_a_return_follows_the_customer_to_the_account_it_migrated_to(ledger: Ledger) -> None:
    """Migrating does not get a customer out of a return: the reversal takes back at the new account."""
    source, target = new_customer(), new_customer()
    [item] = issued_items(ledger, ledger.issue(source.address, 80))
    migrate(ledger, signed(ledger, source, target))
    assert ledger.call("holderOf", source.address) == target.address

    receipt = ledger.transact("reverseIssuance", item, 30, random_ref(), sender=ledger.actors.partner)

    [header] = ledger.events(receipt, "IssuanceReversed")
    assert (header["args"]["customer"], header["args"]["recovered"]) == (source.address, 30)
    parts = ledger.events(receipt, "PointsReversed")
    assert [(e["args"]["customer"], e["args"]["amount"]) for e in parts] == [(target.address, 30)]
    assert ledger.call("balanceOf", target.address) == 50


def test_a_refund_after_a_recovery_reaches_the_new_key(ledger: Ledger) -> None:
    """A refund of what the lost key redeemed goes to the key its recovery moved the points to, not to the
    lost key, where nobody could spend it."""
    lost, target = holding(ledger, [100]), new_customer()
    record = redemption_record(ledger, ledger.redeem(lost, 40))
    ledger.transact("recoverAccount", lost.address, target.address, sender=ledger.actors.admin)

    refund_ref = random_ref()
    receipt = ledger.transact("refundRedemption", record, 40, refund_ref, sender=ledger.actors.partner)

    [part] = ledger.events(receipt, "PointsRefunded")
    assert part["args"]["customer"] == target.address
    assert (ledger.call("balanceOf", lost.address), ledger.call("balanceOf", target.address)) == (0, 100)


def test_a_retired_account_is_never_a_target_and_chains_shorten(ledger: Ledger) -> None:
    """An account that migrated away cannot receive a migration (no cycle of links); a chain of migrations
    is followed to its end and shortened to one link by the first return that follows it."""
    a, b, c = holding(ledger, [60]), new_customer(), new_customer()
    [item] = issued_items(ledger, ledger.issue(a.address, 10))
    migrate(ledger, signed(ledger, a, b))
    ledger.issue(c.address, 5)
    excinfo = refused(ledger, "migrateAccount", *signed(ledger, c, a), sender=ledger.actors.stranger)
    expect_revert(excinfo, "LedgerInvalidMigration", c.address, a.address)
    migrate(ledger, signed(ledger, b, c))
    assert ledger.call("holderOf", a.address) == c.address

    receipt = ledger.transact("reverseIssuance", item, 10, random_ref(), sender=ledger.actors.partner)

    assert [e["args"]["customer"] for e in ledger.events(receipt, "PointsReversed")] == [c.address]
    assert ledger.call("balanceOf", c.address) == 60 + 5
    assert ledger.call("holderOf", a.address) == c.address
