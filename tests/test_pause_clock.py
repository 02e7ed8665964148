"""Expiry that respects pauses: the ledger's clock stands still while the ledger is paused.

``ledgerClock() = block.timestamp - genesis - pausedDuration()`` (the ongoing pause included), epochs are
counted on that clock, and ``epochExpiresAt(e) = genesis + pausedDuration() + (e + validity) * epochLength``.
So no point expires while paused (nobody could spend it), and a pause of length d moves every later expiry
and epoch boundary by exactly d. Every ERC-7818 view is checked against a small model of that clock
(:class:`Clock`) before, during and after pauses, with every block pinned to an exact timestamp.

While paused nothing is issued, redeemed, reversed, refunded, transferred, migrated, recovered or swept
(``EnforcedPause()``); an approval can only be lowered; a customer can still revoke a consent. Ledger:
one-hour epochs valid for 3 epochs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from chain import ContractRevert
from chain._devnode import fund
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    Ledger,
    Node,
    deploy_ledger,
    expect_revert,
    new_customer,
    random_ref,
)
from contract_helpers import (
    issued_item,
    keyed,
    migration_args,
    next_block_at,
    redemption_record,
    send_signed,
    sign_cancellation,
    warp_to,
)

L = 3600  # epoch length (seconds)
V = 3  # validity (epochs)
MIGRATION_KEY = 99  # the nonce key of the migration signed below (key 0's next nonce is cancelled there)


# --------------------------------------------------------------------------- the model of the clock


@dataclass
class Clock:
    """What the ledger's clock views must say at block time ``t``, given the pauses so far."""

    genesis: int
    pauses: list[tuple[int, int | None]] = field(default_factory=list)  # (start, end or None if ongoing)

    def paused_duration(self, t: int) -> int:
        return sum((t if end is None else end) - start for start, end in self.pauses if start <= t)

    def ledger_clock(self, t: int) -> int:
        return t - self.genesis - self.paused_duration(t)

    def epoch(self, t: int) -> int:
        return self.ledger_clock(t) // L

    def expires_at(self, epoch: int, t: int) -> int:
        return self.genesis + self.paused_duration(t) + (epoch + V) * L

    def expired(self, epoch: int, t: int) -> bool:
        return epoch + V <= self.epoch(t)

    def paused(self, at: int) -> None:
        self.pauses.append((at, None))

    def resumed(self, at: int) -> None:
        start, end = self.pauses[-1]
        assert end is None
        self.pauses[-1] = (start, at)


def views(ledger: Ledger, account: str, epochs: tuple[int, ...]) -> dict[str, Any]:
    """Every clock-dependent view, for ``account`` and ``epochs``, at the latest block."""
    return {
        "ledgerClock": ledger.call("ledgerClock"),
        "pausedDuration": ledger.call("pausedDuration"),
        "currentEpoch": ledger.call("currentEpoch"),
        "epochExpiresAt": [ledger.call("epochExpiresAt", e) for e in epochs],
        "isEpochExpired": [ledger.call("isEpochExpired", e) for e in epochs],
        "balanceOfAtEpoch": [ledger.call("balanceOfAtEpoch", e, account) for e in epochs],
        "balanceOf": ledger.call("balanceOf", account),
        "outstandingSupply": ledger.call("outstandingSupply"),
        "pendingExpiry": ledger.call("pendingExpiry"),
    }


def expected(clock: Clock, t: int, holdings: dict[int, int]) -> dict[str, Any]:
    """What :func:`views` must return at time ``t`` for an account holding ``holdings`` (epoch -> points),
    the only holder, nothing swept."""
    epochs = tuple(holdings)
    live = {e: (0 if clock.expired(e, t) else amount) for e, amount in holdings.items()}
    return {
        "ledgerClock": clock.ledger_clock(t),
        "pausedDuration": clock.paused_duration(t),
        "currentEpoch": clock.epoch(t),
        "epochExpiresAt": [clock.expires_at(e, t) for e in epochs],
        "isEpochExpired": [clock.expired(e, t) for e in epochs],
        "balanceOfAtEpoch": [live[e] for e in epochs],
        "balanceOf": sum(live.values()),
        "outstandingSupply": sum(live.values()),
        "pendingExpiry": sum(holdings.values()) - sum(live.values()),
    }


def check(ledger: Ledger, clock: Clock, holder: str, holdings: dict[int, int]) -> dict[str, Any]:
    seen = views(ledger, holder, tuple(holdings))
    assert seen == expected(clock, ledger.node.timestamp(), holdings)
    return seen


def pause_at(ledger: Ledger, clock: Clock, timestamp: int) -> dict[str, Any]:
    """Pauses in a block at exactly ``timestamp``; returns the PauseChanged entry's arguments."""
    next_block_at(ledger.node, timestamp)
    receipt = ledger.transact("pause", sender=ledger.actors.pauser)
    assert ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == timestamp
    clock.paused(timestamp)
    (entry,) = ledger.events(receipt, "PauseChanged")
    return entry["args"]


def resume_at(ledger: Ledger, clock: Clock, timestamp: int) -> dict[str, Any]:
    next_block_at(ledger.node, timestamp)
    receipt = ledger.transact("unpause", sender=ledger.actors.pauser)
    assert ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == timestamp
    clock.resumed(timestamp)
    (entry,) = ledger.events(receipt, "PauseChanged")
    return entry["args"]


def issued_epoch(ledger: Ledger, to: str, amount: int) -> int:
    """Issues ``amount`` to ``to``; returns the epoch the points were credited to."""
    (entry,) = ledger.events(ledger.issue(to, amount), "PointsIssued")
    return int(entry["args"]["epoch"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["eth-tester", "anvil"])
def short_deployed(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    node: Node = request.getfixturevalue("eth_tester_node" if request.param == "eth-tester" else "anvil_node")
    before = node.snapshot()
    yield deploy_ledger(node, epoch_length=L, validity=V)
    node.revert(before)


@pytest.fixture
def short(short_deployed: Ledger) -> Iterator[Ledger]:
    """The standard partners on a ledger with one-hour epochs valid for 3 epochs, reverted after the test."""
    snapshot = short_deployed.node.snapshot()
    yield short_deployed
    short_deployed.node.revert(snapshot)


# --------------------------------------------------------------------------- no expiry while paused


def test_no_point_expires_while_paused_and_the_pause_delays_expiry_by_its_length(short: Ledger) -> None:
    ledger, node = short, short.node
    genesis = ledger.call("genesisTimestamp")
    clock, holder = Clock(genesis), ledger.actors.customer
    assert issued_epoch(ledger, holder, 100) == 0
    holdings = {0: 100}
    before = check(ledger, clock, holder, holdings)
    assert before["epochExpiresAt"] == [genesis + V * L]
    assert before["pausedDuration"] == 0

    assert pause_at(ledger, clock, genesis + 10_000) == {
        "seq": ledger.call("ledgerSequence"),
        "paused": True,
        "pausedDuration": 0,
    }
    # the moment epoch 0 would have expired without the pause, and long after it: still live
    for t in (genesis + V * L, genesis + V * L + 1, genesis + 30_000):
        warp_to(node, t)
        during = check(ledger, clock, holder, holdings)
        assert during["balanceOf"] == 100 and during["isEpochExpired"] == [False]
        assert during["ledgerClock"] == 10_000  # the clock stands still
        assert during["currentEpoch"] == 10_000 // L
        assert during["epochExpiresAt"] == [t + (V * L - 10_000)]  # "as if the pause ended now"
    assert ledger.call("liveBalances", holder) == [[0], [100]]

    d = 30_000
    assert resume_at(ledger, clock, genesis + 10_000 + d) == {
        "seq": ledger.call("ledgerSequence"),
        "paused": False,
        "pausedDuration": d,
    }
    expires = genesis + d + V * L  # exactly d later than without the pause
    assert ledger.call("epochExpiresAt", 0) == expires
    warp_to(node, expires - 1)
    assert check(ledger, clock, holder, holdings)["balanceOf"] == 100
    warp_to(node, expires)
    after = check(ledger, clock, holder, holdings)
    assert (after["balanceOf"], after["isEpochExpired"], after["pendingExpiry"]) == (0, [True], 100)
    assert (after["currentEpoch"], after["ledgerClock"], after["pausedDuration"]) == (V, V * L, d)

    receipt = ledger.transact("sweepExpired", [holder], sender=ledger.actors.stranger)
    assert [e["args"]["amount"] for e in ledger.events(receipt, "PointsExpired")] == [100]


def test_a_pause_across_an_epoch_boundary_moves_the_boundary_by_its_length(short: Ledger) -> None:
    ledger, node = short, short.node
    genesis = ledger.call("genesisTimestamp")
    clock, holder = Clock(genesis), ledger.actors.customer
    assert issued_epoch(ledger, holder, 100) == 0

    pause_at(ledger, clock, genesis + L - 100)  # 100 seconds before epoch 1 would begin
    warp_to(node, genesis + L + 1_000)
    assert check(ledger, clock, holder, {0: 100})["currentEpoch"] == 0  # the boundary has not come

    d = 2_100
    resume_at(ledger, clock, genesis + L - 100 + d)
    assert issued_epoch(ledger, holder, 7) == 0  # issued after the resumption, still in epoch 0
    warp_to(node, genesis + L + d - 1)
    assert check(ledger, clock, holder, {0: 107})["currentEpoch"] == 0
    warp_to(node, genesis + L + d)  # epoch 1 begins d seconds late
    assert check(ledger, clock, holder, {0: 107})["currentEpoch"] == 1
    assert issued_epoch(ledger, holder, 5) == 1
    holdings = {0: 107, 1: 5}
    assert check(ledger, clock, holder, holdings)["epochExpiresAt"] == [
        genesis + d + V * L,
        genesis + d + (V + 1) * L,
    ]

    warp_to(node, genesis + d + V * L - 1)
    assert check(ledger, clock, holder, holdings)["balanceOf"] == 112
    warp_to(node, genesis + d + V * L)
    assert check(ledger, clock, holder, holdings)["balanceOfAtEpoch"] == [0, 5]
    warp_to(node, genesis + d + (V + 1) * L)
    assert check(ledger, clock, holder, holdings)["pendingExpiry"] == 112


def test_two_pauses_delay_expiry_by_their_sum_and_their_entries_carry_the_durations(short: Ledger) -> None:
    ledger, node = short, short.node
    genesis = ledger.call("genesisTimestamp")
    clock, holder = Clock(genesis), ledger.actors.customer
    ledger.issue(holder, 100)
    holdings = {0: 100}
    d1, d2 = 600, 2_000

    entries = [pause_at(ledger, clock, genesis + 1_000)]
    warp_to(node, genesis + 1_300)
    assert check(ledger, clock, holder, holdings)["pausedDuration"] == 300
    entries.append(resume_at(ledger, clock, genesis + 1_000 + d1))
    warp_to(node, genesis + 4_000)
    assert check(ledger, clock, holder, holdings)["epochExpiresAt"] == [genesis + d1 + V * L]

    entries.append(pause_at(ledger, clock, genesis + 5_000))
    warp_to(node, genesis + 6_000)
    assert check(ledger, clock, holder, holdings)["pausedDuration"] == d1 + 1_000  # the ongoing pause counts
    entries.append(resume_at(ledger, clock, genesis + 5_000 + d2))
    assert [(e["paused"], e["pausedDuration"]) for e in entries] == [
        (True, 0),  # on pause: the time spent paused before it
        (False, d1),  # on resume: including it
        (True, d1),
        (False, d1 + d2),
    ]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)

    expires = genesis + d1 + d2 + V * L
    assert ledger.call("epochExpiresAt", 0) == expires
    warp_to(node, expires - 1)
    assert check(ledger, clock, holder, holdings)["balanceOf"] == 100
    warp_to(node, expires)
    assert check(ledger, clock, holder, holdings)["balanceOf"] == 0


# --------------------------------------------------------------------------- what a pause stops


def refused(ledger: Ledger, fn: str, *args: Any, sender: str, watch: tuple[str, ...] = ()) -> None:
    """``fn(*args)`` reverts with exactly ``EnforcedPause()`` and changes no ledger entry or balance."""
    before = (ledger.call("ledgerHead"), [ledger.call("liveBalances", a) for a in watch])
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact(fn, *args, sender=sender)
    expect_revert(excinfo, "EnforcedPause")
    assert (ledger.call("ledgerHead"), [ledger.call("liveBalances", a) for a in watch]) == before


def funded_customer(ledger: Ledger, points: int) -> LocalAccount:
    customer = new_customer()
    fund(ledger.w3, customer.address, 10**18)
    ledger.issue(customer.address, points)
    return customer


def test_while_paused_no_points_move_but_approvals_can_shrink_and_consents_be_revoked(short: Ledger) -> None:
    ledger, actors = short, short.actors
    holder, spender, recipient = actors.customer, actors.stranger, new_customer().address
    ledger.issue(holder, 40)  # epoch 0: expired by epoch V, unswept
    warp_to(ledger.node, ledger.call("genesisTimestamp") + (V + 1) * L + 60)
    ledger.issue(holder, 50)  # epoch V + 1 (bucket 1: epoch 0's bucket keeps its expired points)
    alice = funded_customer(ledger, 100)
    issuance = issued_item(ledger, ledger.issue(alice.address, 10))
    redeemed = redemption_record(ledger, ledger.redeem(alice, 10))
    assert ledger.call("pendingExpiry") == 40
    ledger.transact("setTransfersEnabled", True, sender=actors.admin)
    ledger.transact("approve", spender, 50, sender=holder)
    ref, deadline = random_ref(), ledger.node.timestamp() + 10 * L
    nonce = ledger.call("nonces", alice.address, ACTIVE)
    consent = ledger.sign_redemption(alice, ACTIVE, 30, ref, nonce, deadline)
    bob = new_customer()
    migration = migration_args(ledger, alice, bob, nonce=keyed(MIGRATION_KEY), deadline=deadline)

    ledger.transact("pause", sender=actors.pauser)
    assert ledger.call("paused") is True
    watch = (holder, alice.address, recipient)
    zero = b"\x00" * 32
    for fn, args, sender in (
        ("issue", (recipient, 1, random_ref(), 1, zero), actors.partner),
        ("issueBatch", ([recipient], [1], [random_ref()], 1, zero), actors.partner),
        ("redeem", (alice.address, 30, ref, nonce, deadline, consent), actors.partner),
        ("reverseIssuance", (issuance, 4, random_ref()), actors.partner),
        ("refundRedemption", (redeemed, 3, random_ref()), actors.partner),
        ("migrateAccount", migration, actors.stranger),
        ("recoverAccount", (holder, recipient), actors.admin),
        ("transfer", (recipient, 1), holder),
        ("transferAtEpoch", (V + 1, recipient, 1), holder),
        ("transferFrom", (holder, recipient, 1), spender),
        ("transferFromAtEpoch", (V + 1, holder, recipient, 1), spender),
        ("sweepExpired", ([holder],), actors.stranger),
        ("approve", (spender, 51), holder),  # a raise
        ("pause", (), actors.pauser),  # already paused
    ):
        refused(ledger, fn, *args, sender=sender, watch=watch)
    assert ledger.call("pendingExpiry") == 40  # nothing swept, nothing newly expired
    assert ledger.call("nonces", alice.address, ACTIVE) == nonce  # the consent was not used up
    assert ledger.call("nonces", alice.address, MIGRATION_KEY) == keyed(MIGRATION_KEY)  # nor the migration

    # approvals: the same value or lower
    for value in (50, 10):
        ledger.transact("approve", spender, value, sender=holder)
        assert ledger.call("allowance", holder, spender) == value

    # revocations: the customer's own call (key ACCEPT_ONLY) and a stranger submitting its signed
    # cancellation (key 0)
    receipt = send_signed(ledger, alice, "revokeConsent", keyed(ACCEPT_ONLY))
    assert [e["args"]["nonce"] for e in ledger.events(receipt, "ConsentRevoked")] == [keyed(ACCEPT_ONLY)]
    signature = sign_cancellation(ledger, alice, 0)
    receipt = ledger.transact("cancelConsent", alice.address, 0, signature, sender=actors.stranger)
    assert [e["args"]["nonce"] for e in ledger.events(receipt, "ConsentRevoked")] == [0]
    assert ledger.call("nonces", alice.address) == 1
    assert ledger.call("nonces", alice.address, ACCEPT_ONLY) == keyed(ACCEPT_ONLY, 1)

    # administration goes on; only the pauser resumes
    ledger.transact("increasePartnerAllowance", ACTIVE, 5, sender=actors.admin)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("unpause", sender=actors.admin)
    expect_revert(excinfo, "AccessControlUnauthorizedAccount", actors.admin, ledger.call("PAUSER_ROLE"))

    ledger.transact("unpause", sender=actors.pauser)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("unpause", sender=actors.pauser)
    expect_revert(excinfo, "ExpectedPause")
    # the consent signed before the pause still redeems, the return, the refund and the migration signed
    # before it go through, and so does the sweep
    ledger.transact("redeem", alice.address, 30, ref, nonce, deadline, consent, sender=actors.partner)
    ledger.transact("reverseIssuance", issuance, 4, random_ref(), sender=actors.partner)
    ledger.transact("refundRedemption", redeemed, 3, random_ref(), sender=actors.partner)
    assert ledger.call("balanceOf", alice.address) == 110 - 10 - 30 - 4 + 3
    ledger.transact("migrateAccount", *migration, sender=actors.stranger)
    assert (ledger.call("balanceOf", alice.address), ledger.call("balanceOf", bob.address)) == (0, 69)
    receipt = ledger.transact("sweepExpired", [holder], sender=actors.stranger)
    assert [e["args"]["amount"] for e in ledger.events(receipt, "PointsExpired")] == [40]
    ledger.transact("transferFrom", holder, recipient, 10, sender=spender)
    assert ledger.call("balanceOf", recipient) == 10
