"""Model-based test: random operation sequences against a pure-Python model of the ledger's rules.

A Hypothesis state machine drives issue / issueBatch / redeem / sweepExpired / time travel / transfer /
transferAtEpoch / suspendPartner / reactivatePartner / setPartnerAllowance / setTransfersEnabled on
eth-tester. The model (:class:`Model`) knows the rules, not the storage layout: epochs by time since genesis,
a validity window of ``VALIDITY`` epochs, per-account per-epoch holdings spent oldest first, expired points
pending until swept (or until the account is credited a live epoch that needs their bucket, as the contract
documents), partner allowances and issued/redeemed counters, suspended partners, references used once per
partner (issue and redemption references apart), nonces. An operation the model predicts to fail must revert
with the predicted custom error and arguments, and change nothing.

Checks (:meth:`LedgerMachine.views_match_model`, after every step): outstandingSupply == Σ balanceOf,
issued - redeemed - expired - pendingExpiry == outstandingSupply, Σ partner issued/redeemed == the totals, no
balance below 0 (or wrapped above totalIssued), ledgerHead moves exactly when ledgerSequence does, and every
view the model predicts equals it: currentEpoch, the totals, ledgerSequence, transfersEnabled, every
partner's active/allowance/issued/redeemed, balanceOf of every account, balanceOfAtEpoch of the live epochs
(and of the epoch that expired last) for the accounts the step involved, all accounts after a time step.
After a reverted step only head, sequence, epoch and the named accounts' balances are read again (the model
did not move, so the next full check would catch anything else); every example ends with a full check of all
views of all accounts and a cross-check of a few of them through web3.

Speed: the ledger is deployed once per module (in practice once per session) with points of three epochs on
every account, and every example starts from an eth-tester snapshot of it. Transactions and views go to
eth-tester without web3's JSON-RPC emulation (:class:`DirectLedger`, compared with web3 by
``test_direct_ledger_agrees_with_web3``); the views after a step are one batch on one py-evm state.

Time: eth-tester stamps a block ``max(parent + 1, wall clock)``, and reverting to a snapshot takes the chain
clock back to the snapshot block. So each example first travels to the start of an epoch ahead of the wall
clock, every time step lands on the start or the middle of an epoch, and the model counts epochs from
``genesisTimestamp()``. An example adds far fewer than ``EPOCH_LENGTH`` blocks or seconds, so nothing lands
in an epoch the model does not expect (``currentEpoch()`` is checked after every step).

Size: ``LOYALTY_HYPOTHESIS_EXAMPLES`` (default 200) examples of up to ``LOYALTY_HYPOTHESIS_STEPS`` (default
30) steps; with the defaults the run must have exercised every outcome in ``REQUIRED_OUTCOMES``.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import pytest
from eth.vm.message import Message
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_typing import Address
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_canonical_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chain import ContractRevert
from chain._errors import abi_type
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    GAS,
    ISSUE_ONLY,
    SUSPENDED,
    EthTesterNode,
    Ledger,
    deploy_ledger,
    new_customer,
)

EXAMPLES = int(os.environ.get("LOYALTY_HYPOTHESIS_EXAMPLES", "200"))
STEPS = int(os.environ.get("LOYALTY_HYPOTHESIS_STEPS", "30"))

EPOCH_LENGTH = 3600
VALIDITY = 3
MAX_AMOUNT = 2**64 - 1
MAX_ALLOWANCE = 2**128 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
NO_PARTNER = 9  # a partner id nobody registered
DEADLINE = 2**40  # redemption consents that do not expire during the run

#: Allowances set before the snapshot, small enough that random issues run out of them.
INITIAL_ALLOWANCE = {ACTIVE: 3000, SUSPENDED: 3000, ACCEPT_ONLY: 0, ISSUE_ONLY: 1500}

N_CUSTOMERS = 2  # runtime keys: they sign redemptions
N_HOLDERS = 3  # unlocked node accounts: they send transfers
N_ACCOUNTS = N_CUSTOMERS + N_HOLDERS
ZERO = N_ACCOUNTS  # account index standing for the zero address (only as a recipient)


# =========================================================================== eth-tester without JSON-RPC


class DirectLedger:
    """The ledger on eth-tester, reached without web3's JSON-RPC emulation: ~3x faster views and reverts.

    Views: eth-tester answers ``eth_call`` at "latest" by executing the message on
    ``chain.get_vm(at_header=<latest header>).state``; :meth:`views` does the same for a whole batch on one
    state. Transactions: :meth:`transact` hands them to ``EthereumTester.send_transaction`` (signed with the
    sender's unlocked key and mined at once, as through web3), and replays a failed one on the latest state
    to decode its revert into the same :class:`ContractRevert` as ``Ledger.transact``.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._tester = ledger.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        self._chain = self._tester.backend.chain
        self._address = ledger.address
        self._to = to_canonical_address(ledger.address)
        self._reader = to_canonical_address(ledger.actors.stranger)
        self._decoder = ledger.decoder
        self._functions: dict[str, tuple[bytes, list[str], list[str]]] = {}
        for item in ledger.artifact.abi:
            if item.get("type") == "function":
                inputs = [abi_type(p) for p in item["inputs"]]
                outputs = [abi_type(p) for p in item["outputs"]]
                selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(inputs)})")
                self._functions[str(item["name"])] = (selector, inputs, outputs)

    def _calldata(self, name: str, args: Sequence[Any]) -> bytes:
        selector, inputs, _ = self._functions[name]
        return selector + abi_encode(inputs, args)

    def _execute(self, state: Any, sender: Address, data: bytes) -> Any:
        message = Message(
            gas=GAS, to=self._to, sender=sender, value=0, data=data, code=state.get_code(self._to)
        )
        context = state.get_transaction_context_class()(gas_price=0, origin=sender)
        return state.computation_class.apply_message(state, message, context)

    def _latest_state(self) -> Any:
        return self._chain.get_vm(at_header=self._chain.get_canonical_head()).state

    def views(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """The decoded results of the view ``calls`` (name, args); a single return value is unwrapped."""
        state = self._latest_state()
        results = []
        for name, args in calls:
            computation = self._execute(state, self._reader, self._calldata(name, args))
            if computation.is_error:
                raise AssertionError(f"view {name}{args} failed: {computation.error!r}")
            values = abi_decode(self._functions[name][2], computation.output)
            results.append(values[0] if len(values) == 1 else values)
        return results

    def transact(self, name: str, *args: Any, sender: str) -> dict[str, Any]:
        """Sends ``name(*args)`` from unlocked ``sender``; raises the decoded :class:`ContractRevert`."""
        data = self._calldata(name, args)
        tx_hash = self._tester.send_transaction(
            {"from": sender, "to": self._address, "data": "0x" + data.hex(), "gas": GAS, "value": 0}
        )
        receipt: dict[str, Any] = self._tester.get_transaction_receipt(tx_hash)
        if receipt["status"] == 1:
            return receipt
        # A reverted transaction changed nothing but the sender's account: the latest state replays it.
        computation = self._execute(self._latest_state(), to_canonical_address(sender), data)
        if not computation.is_error:
            raise AssertionError(f"{name}{args} failed on chain but its replay succeeded")
        raise self._decoder.decode(bytes(computation.error.args[0]))


# =========================================================================== the model


class Rejected(Exception):
    """The model's prediction that an operation reverts with custom error ``name(*args)``."""

    def __init__(self, name: str, *args: Any) -> None:
        super().__init__(name, *args)
        self.name = name
        self.arguments = args


@dataclass
class PartnerModel:
    operator: str
    active: bool
    can_issue: bool
    can_accept: bool
    allowance: int
    issued: int = 0
    redeemed: int = 0


@dataclass
class Model:
    """The ledger's rules. An operation checks everything first (raising :class:`Rejected`), then mutates."""

    epoch: int
    partners: dict[int, PartnerModel]
    seq: int
    transfers_enabled: bool
    #: account -> epoch -> points held (> 0), expired but unswept epochs included
    held: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (partner, reference) pairs used by issues and batches, and by redemptions: two separate namespaces
    used_refs: set[tuple[int, bytes]] = field(default_factory=set)
    used_redemption_refs: set[tuple[int, bytes]] = field(default_factory=set)
    nonces: dict[str, int] = field(default_factory=dict)
    total_issued: int = 0
    total_redeemed: int = 0
    total_expired: int = 0

    # ------------------------------------------------------------ epochs and balances

    def live_epochs(self) -> range:
        return range(max(0, self.epoch - VALIDITY + 1), self.epoch + 1)

    def is_expired(self, epoch: int) -> bool:
        return epoch + VALIDITY <= self.epoch

    def holdings(self, account: str) -> dict[int, int]:
        return self.held.setdefault(account, {})

    def at_epoch(self, account: str, epoch: int) -> int:
        return 0 if self.is_expired(epoch) else self.holdings(account).get(epoch, 0)

    def balance(self, account: str) -> int:
        return sum(self.at_epoch(account, epoch) for epoch in self.live_epochs())

    def outstanding(self) -> int:
        return sum(self.balance(account) for account in self.held)

    def pending_expiry(self) -> int:
        return sum(
            amount for held in self.held.values() for epoch, amount in held.items() if self.is_expired(epoch)
        )

    def _expire(self, account: str, epoch: int) -> None:
        assert self.is_expired(epoch), f"model: expiring live epoch {epoch}"
        self.total_expired += self.holdings(account).pop(epoch)
        self.seq += 1

    def _credit(self, account: str, epoch: int, amount: int) -> None:
        held = self.holdings(account)
        # An account keeps one bucket per epoch residue: a live epoch needing a bucket that still holds an
        # (expired) older epoch retires those points first, as their own ledger entry.
        for old in [e for e in held if e != epoch and e % VALIDITY == epoch % VALIDITY]:
            self._expire(account, old)
        held[epoch] = held.get(epoch, 0) + amount

    def _debit(self, account: str, epoch: int, amount: int) -> None:
        held = self.holdings(account)
        assert held.get(epoch, 0) >= amount, "model: debit beyond holding"
        held[epoch] -= amount
        if held[epoch] == 0:
            del held[epoch]

    def _oldest_first(self, account: str, amount: int) -> list[tuple[int, int]]:
        parts = []
        left = amount
        for epoch in self.live_epochs():
            take = min(self.at_epoch(account, epoch), left)
            if take:
                parts.append((epoch, take))
                left -= take
        assert left == 0
        return parts

    # ------------------------------------------------------------ checks

    def _partner_of(self, operator: str) -> tuple[int, PartnerModel]:
        for pid, partner in self.partners.items():
            if partner.operator == operator:
                return pid, partner
        raise Rejected("LedgerUnknownPartner", operator)

    def _issuer(self, operator: str) -> tuple[int, PartnerModel]:
        pid, partner = self._partner_of(operator)
        if not partner.active:
            raise Rejected("LedgerPartnerSuspended", pid)
        if not partner.can_issue:
            raise Rejected("LedgerPartnerCannotIssue", pid)
        return pid, partner

    def _acceptor(self, operator: str) -> tuple[int, PartnerModel]:
        pid, partner = self._partner_of(operator)
        if not partner.active:
            raise Rejected("LedgerPartnerSuspended", pid)
        if not partner.can_accept:
            raise Rejected("LedgerPartnerCannotAccept", pid)
        return pid, partner

    @staticmethod
    def _check_amount(amount: int) -> None:
        if amount == 0:
            raise Rejected("LedgerZeroAmount")
        if amount > MAX_AMOUNT:
            raise Rejected("LedgerAmountTooLarge", amount, MAX_AMOUNT)

    @staticmethod
    def _check_reference(used: set[tuple[int, bytes]], pid: int, ref: bytes) -> None:
        if (pid, ref) in used:
            raise Rejected("LedgerReferenceUsed", pid, ref)

    def _existing(self, pid: int) -> PartnerModel:
        if pid not in self.partners:
            raise Rejected("LedgerPartnerNotFound", pid)
        return self.partners[pid]

    def _check_transfer(self, to: str) -> None:
        if not self.transfers_enabled:
            raise Rejected("LedgerTransfersDisabled")
        if to == ZERO_ADDRESS:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)

    # ------------------------------------------------------------ operations

    def issue(self, operator: str, to: str, amount: int, ref: bytes) -> None:
        pid, partner = self._issuer(operator)
        self._check_amount(amount)
        self._check_reference(self.used_refs, pid, ref)
        if amount > partner.allowance:
            raise Rejected("LedgerAllowanceExceeded", pid, partner.allowance, amount)
        if to == ZERO_ADDRESS:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)
        self.used_refs.add((pid, ref))
        partner.allowance -= amount
        partner.issued += amount
        self.total_issued += amount
        self._credit(to, self.epoch, amount)
        self.seq += 1

    def issue_batch(self, operator: str, recipients: list[str], amounts: list[int], ref: bytes) -> None:
        pid, partner = self._issuer(operator)
        if not recipients:
            raise Rejected("LedgerEmptyBatch")
        for amount in amounts:
            self._check_amount(amount)
        self._check_reference(self.used_refs, pid, ref)
        total = sum(amounts)
        if total > partner.allowance:
            raise Rejected("LedgerAllowanceExceeded", pid, partner.allowance, total)
        if ZERO_ADDRESS in recipients:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)
        self.used_refs.add((pid, ref))
        partner.allowance -= total
        partner.issued += total
        self.total_issued += total
        self.seq += 1  # the batch header
        for to, amount in zip(recipients, amounts, strict=True):
            self._credit(to, self.epoch, amount)
            self.seq += 1

    def redeem(self, operator: str, customer: str, amount: int, ref: bytes) -> list[tuple[int, int]]:
        """Checks and applies a redemption; returns the (epoch, points) it spends, oldest first."""
        pid, partner = self._acceptor(operator)
        self._check_amount(amount)
        self._check_reference(self.used_redemption_refs, pid, ref)
        balance = self.balance(customer)
        if balance < amount:
            raise Rejected("LedgerInsufficientBalance", customer, balance, amount)
        nonce = self.nonces.get(customer, 0)
        self.nonces[customer] = nonce + 1
        self.used_redemption_refs.add((pid, ref))
        partner.redeemed += amount
        self.total_redeemed += amount
        spent = self._oldest_first(customer, amount)
        for epoch, take in spent:
            self._debit(customer, epoch, take)
            self.seq += 1
        return spent

    def sweep(self, accounts: list[str]) -> int:
        swept = 0
        for account in accounts:
            for epoch in sorted(self.holdings(account)):
                if self.is_expired(epoch):
                    swept += self.holdings(account)[epoch]
                    self._expire(account, epoch)
        return swept

    def _move(self, sender: str, to: str, epoch: int, amount: int) -> None:
        self._debit(sender, epoch, amount)
        self._credit(to, epoch, amount)
        self.seq += 1

    def transfer(self, sender: str, to: str, value: int) -> None:
        self._check_transfer(to)
        balance = self.balance(sender)
        if balance < value:
            raise Rejected("ERC20InsufficientBalance", sender, balance, value)
        for epoch, take in self._oldest_first(sender, value):
            self._move(sender, to, epoch, take)

    def transfer_at_epoch(self, sender: str, epoch: int, to: str, value: int) -> None:
        self._check_transfer(to)
        if self.is_expired(epoch):
            raise Rejected("ERC7818TransferredExpiredToken", sender, epoch)
        if epoch > self.epoch:
            raise Rejected("LedgerFutureEpoch", epoch, self.epoch)
        held = self.at_epoch(sender, epoch)
        if held < value:
            raise Rejected("ERC20InsufficientBalance", sender, held, value)
        if value:
            self._move(sender, to, epoch, value)

    def suspend(self, pid: int) -> None:
        partner = self._existing(pid)
        if not partner.active:
            raise Rejected("LedgerPartnerSuspended", pid)
        partner.active = False
        self.seq += 1

    def reactivate(self, pid: int) -> None:
        partner = self._existing(pid)
        if partner.active:
            raise Rejected("LedgerPartnerNotSuspended", pid)
        partner.active = True
        self.seq += 1

    def set_allowance(self, pid: int, allowance: int) -> None:
        partner = self._existing(pid)
        if allowance > MAX_ALLOWANCE:
            raise Rejected("LedgerAmountTooLarge", allowance, MAX_ALLOWANCE)
        partner.allowance = allowance
        self.seq += 1

    def set_transfers_enabled(self, enabled: bool) -> None:
        self.transfers_enabled = enabled
        self.seq += 1


# =========================================================================== one deployment for all examples


@dataclass
class World:
    """One ledger deployed for the whole module, and the eth-tester snapshot every example starts from."""

    ledger: Ledger
    tester: Any  # eth_tester.EthereumTester
    direct: DirectLedger
    snapshot: int
    genesis: int
    chain_id: int
    customers: list[LocalAccount]
    holders: list[str]
    accounts: list[str]  # customers' addresses, then holders
    baseline: Model  # the ledger at the snapshot

    def model(self, epoch: int) -> Model:
        model = copy.deepcopy(self.baseline)
        model.epoch = epoch
        return model


@pytest.fixture(scope="module")
def world(eth_tester_node: EthTesterNode) -> Iterator[World]:
    """The ledger with points of epochs 0, 1 and 2 on every account, the clock in epoch 2, then a snapshot.

    Examples start in epoch 3: two epochs of live points to spend and move, and expired points to sweep.
    """
    node = eth_tester_node
    tester = node.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    ledger = deploy_ledger(node, epoch_length=EPOCH_LENGTH, validity=VALIDITY)
    actors = ledger.actors
    customers = [new_customer() for _ in range(N_CUSTOMERS)]
    holders = [actors.customer, actors.stranger, node.accounts[7]]
    assert len(holders) == N_HOLDERS
    accounts_ = [c.address for c in customers] + holders

    held: dict[str, dict[int, int]] = {account: {} for account in accounts_}
    used_refs: set[tuple[int, bytes]] = set()
    for epoch in range(VALIDITY):
        if epoch:
            node.advance_time(EPOCH_LENGTH)
        assert ledger.call("currentEpoch") == epoch
        points = [10 * (epoch + 1) + i for i in range(N_ACCOUNTS)]
        ref = f"setup batch {epoch}".encode().ljust(32, b"\x00")
        ledger.transact("issueBatch", accounts_, points, ref, 0, b"\x00" * 32, sender=actors.partner)
        used_refs.add((ACTIVE, ref))
        for account, amount in zip(accounts_, points, strict=True):
            held[account][epoch] = amount
    for pid, allowance in INITIAL_ALLOWANCE.items():
        ledger.transact("setPartnerAllowance", pid, allowance, sender=actors.admin)
    ledger.transact("setTransfersEnabled", True, sender=actors.admin)

    partners = {}
    for pid in INITIAL_ALLOWANCE:
        _, operator, _, active, can_issue, can_accept, allowance, issued, redeemed = ledger.call(
            "partner", pid
        )
        partners[pid] = PartnerModel(operator, active, can_issue, can_accept, allowance, issued, redeemed)
    assert not partners[SUSPENDED].active
    baseline = Model(
        epoch=VALIDITY - 1,
        partners=partners,
        seq=ledger.call("ledgerSequence"),
        transfers_enabled=True,
        held=held,
        used_refs=used_refs,
        total_issued=ledger.call("totalIssued"),
    )
    assert baseline.total_issued == partners[ACTIVE].issued == sum(sum(h.values()) for h in held.values())

    snapshot = tester.take_snapshot()
    yield World(
        ledger=ledger,
        tester=tester,
        direct=DirectLedger(ledger),
        snapshot=snapshot,
        genesis=ledger.call("genesisTimestamp"),
        chain_id=node.w3.eth.chain_id,
        customers=customers,
        holders=holders,
        accounts=accounts_,
        baseline=baseline,
    )
    tester.revert_to_snapshot(snapshot)


# =========================================================================== the state machine

SCALAR_VIEWS = [
    "currentEpoch",
    "outstandingSupply",
    "totalIssued",
    "totalRedeemed",
    "totalExpired",
    "pendingExpiry",
    "ledgerSequence",
    "ledgerHead",
    "transfersEnabled",
]

# Hypothesis shrinks towards the first element, so the common, successful choices come first.
ISSUERS = [ACTIVE, ISSUE_ONLY, ACTIVE, ISSUE_ONLY, ACTIVE, SUSPENDED, ACCEPT_ONLY, 0]  # 0: not an operator
ACCEPTORS = [ACTIVE, ACCEPT_ONLY, ACTIVE, ACCEPT_ONLY, ACTIVE, SUSPENDED, ISSUE_ONLY, 0]
PARTNER_IDS = [SUSPENDED, ACTIVE, ISSUE_ONLY, ACCEPT_ONLY, NO_PARTNER]

accounts = st.integers(0, N_ACCOUNTS - 1)
# customers (who redeem) a little more often than holders, and now and then the zero address
recipients = st.sampled_from([*range(N_ACCOUNTS)] * 2 + [*range(N_CUSTOMERS), ZERO])
holders = st.integers(0, N_HOLDERS - 1)
customers = st.integers(0, N_CUSTOMERS - 1)
# small numbers collide often: references get reused, within and across partners
refs = (st.integers(0, 15) | st.integers(0, 2**64)).map(lambda n: n.to_bytes(32, "big"))
# 1..400, and now and then 0 or MAX_AMOUNT + 1 (Hypothesis favours small draws: 0 maps to 1)
amounts = st.integers(0, 419).map(lambda n: n + 1 if n < 400 else 0 if n < 410 else MAX_AMOUNT + 1)
values = st.integers(0, 500)
# how a redeemed or transferred value relates to what the account holds (see amount_for)
sizes = st.sampled_from(["part", "all", "one more", "any"])


def amount_for(size: str, value: int, available: int) -> int:
    """``value`` cut to a part of ``available`` (1 .. available), all of it, one more than it, or as is."""
    if size == "part":
        return 1 + value % available if available else value
    if size == "all":
        return available
    return available + 1 if size == "one more" else value


class IssueOrder(NamedTuple):
    issuer: int  # a partner id, or 0 for an account that operates no partner
    to: int  # an account index, or ZERO
    amount: int
    ref: bytes


#: What the runs exercised ("issue: ok", "redeem: LedgerInsufficientBalance", "expiry on credit", ...).
OUTCOMES: Counter[str] = Counter()


class LedgerMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        world.tester.revert_to_snapshot(world.snapshot)
        # Start at the first second of an epoch ahead of both the wall clock and the snapshot block.
        latest = int(world.tester.get_block_by_number("latest")["timestamp"])
        epoch = (max(int(time.time()), latest) + 2 - world.genesis) // EPOCH_LENGTH + 1
        self._travel(world.genesis + epoch * EPOCH_LENGTH)
        self.model = world.model(epoch)
        self.head: bytes | None = None
        self.seq = -1
        self.touched = set(world.accounts)  # accounts whose balanceOfAtEpoch the next check reads
        self.verified = False  # whether the invariant has passed since the last step began
        self.rejected = False  # whether the last step was a transaction that reverted

    # ------------------------------------------------------------ helpers

    @property
    def admin(self) -> str:
        return self.world.ledger.actors.admin

    def _travel(self, timestamp: int) -> None:
        # eth-tester's time_travel(t) mines a block stamped t - 1; one more block makes "latest" t.
        self.world.tester.time_travel(timestamp)
        self.world.tester.mine_blocks(1)

    def _account(self, index: int) -> str:
        return ZERO_ADDRESS if index == ZERO else self.world.accounts[index]

    def _operator(self, pid: int) -> str:
        return self.model.partners[pid].operator if pid else self.world.ledger.actors.stranger

    def _expect(self, model_op: Callable[[], object], fn: str, *args: Any, sender: str) -> bool:
        """Applies ``model_op`` to the model and sends ``fn(*args)``: both succeed, or both revert alike.

        Returns whether they succeeded. The invariant then checks that a reverted operation changed nothing.
        """
        self.verified = False
        self.rejected = False
        expired = self.model.total_expired
        try:
            model_op()
            expected: Rejected | None = None
        except Rejected as rejected:
            expected = rejected
        try:
            self.world.direct.transact(fn, *args, sender=sender)
        except ContractRevert as revert:
            assert expected is not None, f"{fn} reverted with {revert}; the model expected success"
            assert (revert.name, revert.arguments) == (expected.name, expected.arguments), (
                f"{fn} reverted with {revert}; the model expected {expected.name}{expected.arguments}"
            )
            OUTCOMES[f"{fn}: {revert.name}"] += 1
            self.rejected = True
            return False
        assert expected is None, f"{fn} succeeded; the model expected {expected.name}{expected.arguments}"
        OUTCOMES[f"{fn}: ok"] += 1
        if self.model.total_expired > expired:
            OUTCOMES["expiry by sweep" if fn == "sweepExpired" else "expiry on credit"] += 1
        return True

    # ------------------------------------------------------------ rules: partners

    # A single argument sorts this rule first among the rules, which Hypothesis picks most often.
    @rule(order=st.builds(IssueOrder, st.sampled_from(ISSUERS), recipients, amounts, refs))
    def issue(self, order: IssueOrder) -> None:
        operator, recipient = self._operator(order.issuer), self._account(order.to)
        self.touched.add(recipient)
        self._expect(
            lambda: self.model.issue(operator, recipient, order.amount, order.ref),
            "issue",
            recipient,
            order.amount,
            order.ref,
            1,
            b"\x00" * 32,
            sender=operator,
        )

    @rule(
        issuer=st.sampled_from(ISSUERS),
        items=st.lists(st.tuples(recipients, st.integers(0, 300)), max_size=4),
        ref=refs,
    )
    def issue_batch(self, issuer: int, items: list[tuple[int, int]], ref: bytes) -> None:
        operator = self._operator(issuer)
        to = [self._account(i) for i, _ in items]
        points = [amount for _, amount in items]
        self.touched.update(to)
        self._expect(
            lambda: self.model.issue_batch(operator, to, points, ref),
            "issueBatch",
            to,
            points,
            ref,
            2,
            b"\x11" * 32,
            sender=operator,
        )

    @rule(acceptor=st.sampled_from(ACCEPTORS), customer=customers, value=values, size=sizes, ref=refs)
    def redeem(self, acceptor: int, customer: int, value: int, size: str, ref: bytes) -> None:
        key = self.world.customers[customer]
        operator = self._operator(acceptor)
        self.touched.add(key.address)
        balance = self.model.balance(key.address)
        amount = amount_for(size, value, balance)
        nonce = self.model.nonces.get(key.address, 0)
        signature = self.world.ledger.sign_redemption(
            key, acceptor, amount, ref, nonce, DEADLINE, chain_id=self.world.chain_id
        )
        spent: list[tuple[int, int]] = []
        if (
            self._expect(
                lambda: spent.extend(self.model.redeem(operator, key.address, amount, ref)),
                "redeem",
                key.address,
                amount,
                ref,
                nonce,
                DEADLINE,
                signature,
                sender=operator,
            )
            and len(spent) > 1
        ):
            OUTCOMES["redeem over several epochs"] += 1

    # ------------------------------------------------------------ rules: anyone, holders, time

    @rule(indices=st.lists(accounts, max_size=4), caller=holders)
    def sweep_expired(self, indices: list[int], caller: int) -> None:
        swept = [self._account(i) for i in indices]
        self.touched.update(swept)
        sender = self.world.holders[caller]  # anyone may sweep
        self._expect(lambda: self.model.sweep(swept), "sweepExpired", swept, sender=sender)

    @rule(holder=holders, to=recipients, value=values, size=sizes)
    def transfer(self, holder: int, to: int, value: int, size: str) -> None:
        sender, recipient = self.world.holders[holder], self._account(to)
        self.touched.update((sender, recipient))
        amount = amount_for(size, value, self.model.balance(sender))
        self._expect(
            lambda: self.model.transfer(sender, recipient, amount),
            "transfer",
            recipient,
            amount,
            sender=sender,
        )

    # age: 0 the current epoch, 1 .. VALIDITY - 1 older live ones, VALIDITY expired, VALIDITY + 1 the next one
    @rule(holder=holders, age=st.integers(0, VALIDITY + 1), to=recipients, value=values, size=sizes)
    def transfer_at_epoch(self, holder: int, age: int, to: int, value: int, size: str) -> None:
        sender, recipient = self.world.holders[holder], self._account(to)
        self.touched.update((sender, recipient))
        epoch = self.model.epoch + 1 if age > VALIDITY else max(0, self.model.epoch - age)
        amount = amount_for(size, value, self.model.at_epoch(sender, epoch))
        self._expect(
            lambda: self.model.transfer_at_epoch(sender, epoch, recipient, amount),
            "transferAtEpoch",
            epoch,
            recipient,
            amount,
            sender=sender,
        )

    @rule(epochs=st.integers(1, VALIDITY + 1), mid_epoch=st.booleans())
    def advance_time(self, epochs: int, mid_epoch: bool) -> None:
        self.verified = self.rejected = False
        self.model.epoch += epochs
        offset = EPOCH_LENGTH // 2 if mid_epoch else 0
        self._travel(self.world.genesis + self.model.epoch * EPOCH_LENGTH + offset)
        self.touched.update(self.world.accounts)
        OUTCOMES["advance time"] += 1

    # ------------------------------------------------------------ rules: administration

    # One rule for all of it, so administration takes about one step in eight, not three in ten.
    @rule(
        action=st.sampled_from(["allowance", "suspend", "reactivate", "transfers"]),
        pid=st.sampled_from(PARTNER_IDS),
        # Half the time a small allowance, so that running out of it (LedgerAllowanceExceeded) happens in
        # every run, not only in most.
        allowance=(st.integers(-1, 2000) | st.integers(0, 30)).map(
            lambda n: MAX_ALLOWANCE + 1 if n < 0 else n
        ),
        enabled=st.booleans(),
    )
    def administer(self, action: str, pid: int, allowance: int, enabled: bool) -> None:
        if action == "allowance":
            self._expect(
                lambda: self.model.set_allowance(pid, allowance),
                "setPartnerAllowance",
                pid,
                allowance,
                sender=self.admin,
            )
        elif action == "suspend":
            self._expect(lambda: self.model.suspend(pid), "suspendPartner", pid, sender=self.admin)
        elif action == "reactivate":
            self._expect(lambda: self.model.reactivate(pid), "reactivatePartner", pid, sender=self.admin)
        else:
            self._expect(
                lambda: self.model.set_transfers_enabled(enabled),
                "setTransfersEnabled",
                enabled,
                sender=self.admin,
            )

    # ------------------------------------------------------------ invariants

    @invariant()
    def views_match_model(self) -> None:
        """The views the model predicts, read in one batch, against the model and against each other.

        After a step that changed the ledger (and at the start): the totals, head and sequence, every partner,
        balanceOf of every account, and balanceOfAtEpoch of the accounts involved since the last such check
        (all of them at the start and after a time step). After a reverted step: head, sequence, epoch and
        balanceOf of the accounts it named, which must be unchanged; the rest is read again by the next full
        check, which would see any change as the model did not move. :meth:`teardown` reads everything.
        """
        if self.rejected:
            self._check_unchanged()
        else:
            self._check(detailed=[account for account in self.world.accounts if account in self.touched])
            self.touched = set()
        self.verified = True

    def teardown(self) -> None:
        if not self.verified:  # the example already failed: keep its error
            return
        self._check(detailed=self.world.accounts)
        # The shortcut must read what an ordinary eth_call through web3 reads.
        richest = max(self.world.accounts, key=self.model.balance)
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("currentEpoch", ()),
            ("outstandingSupply", ()),
            ("ledgerHead", ()),
            ("balanceOf", (richest,)),
            ("balanceOfAtEpoch", (self.model.epoch, richest)),
        ]
        ledger = self.world.ledger
        through_web3 = [
            getattr(ledger.contract.functions, name)(*args).call({"from": self.admin}) for name, args in calls
        ]
        assert self.world.direct.views(calls) == through_web3

    def _check_unchanged(self) -> None:
        """After a reverted step: no entry added, the clock where the model has it, the named accounts'
        balances as they were."""
        named = [account for account in self.world.accounts if account in self.touched]
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("ledgerHead", ()),
            ("ledgerSequence", ()),
            ("currentEpoch", ()),
        ]
        head, seq, epoch, *balances = self.world.direct.views(calls + [("balanceOf", (a,)) for a in named])
        assert (bytes(head), seq, epoch) == (self.head, self.model.seq, self.model.epoch)
        expected = [self.model.balance(account) for account in named]
        assert balances == expected, f"balances of {named} after a reverted step: {balances}, not {expected}"

    def _check(self, *, detailed: list[str]) -> None:
        """Reads the scalar views, every partner, balanceOf of every account and balanceOfAtEpoch of
        ``detailed`` (the live epochs and the one that expired last); checks them against each other and
        against the model."""
        model, everyone = self.model, self.world.accounts
        live = list(model.live_epochs())
        # balanceOfAtEpoch of the live epochs, and of the epoch that expired last (ERC-7818: must read 0)
        probed = live if model.epoch < VALIDITY else [model.epoch - VALIDITY, *live]
        calls: list[tuple[str, tuple[Any, ...]]] = [(name, ()) for name in SCALAR_VIEWS]
        calls += [("partner", (pid,)) for pid in model.partners]
        calls += [("balanceOf", (account,)) for account in everyone]
        calls += [("balanceOfAtEpoch", (epoch, account)) for account in detailed for epoch in probed]
        results = iter(self.world.direct.views(calls))
        chain = {name: next(results) for name in SCALAR_VIEWS}
        partner_views = {pid: next(results) for pid in model.partners}
        balance_of = {account: next(results) for account in everyone}
        at_epoch = {(account, epoch): next(results) for account in detailed for epoch in probed}

        # relations between the chain's own numbers
        assert (
            chain["totalIssued"] - chain["totalRedeemed"] - chain["totalExpired"] - chain["pendingExpiry"]
            == chain["outstandingSupply"]
        )
        assert chain["outstandingSupply"] == sum(balance_of.values())
        assert sum(view[7] for view in partner_views.values()) == chain["totalIssued"]
        assert sum(view[8] for view in partner_views.values()) == chain["totalRedeemed"]
        for account, balance in balance_of.items():  # a negative balance would show as a wrapped huge one
            assert 0 <= balance <= chain["totalIssued"], f"balance of {account}: {balance}"
        for account in detailed:
            assert balance_of[account] == sum(at_epoch[account, epoch] for epoch in live)
        assert all(amount > 0 for held in model.held.values() for amount in held.values())

        # the chain against the model
        expected: dict[str, Any] = {
            "currentEpoch": model.epoch,
            "outstandingSupply": model.outstanding(),
            "totalIssued": model.total_issued,
            "totalRedeemed": model.total_redeemed,
            "totalExpired": model.total_expired,
            "pendingExpiry": model.pending_expiry(),
            "ledgerSequence": model.seq,
            "transfersEnabled": model.transfers_enabled,
        }
        actual = {name: chain[name] for name in expected}
        for pid, view in partner_views.items():
            p = model.partners[pid]
            actual[f"partner({pid})"] = (view[3], view[6], view[7], view[8])
            expected[f"partner({pid})"] = (p.active, p.allowance, p.issued, p.redeemed)
        for account, balance in balance_of.items():
            actual[f"balanceOf({account})"] = balance
            expected[f"balanceOf({account})"] = model.balance(account)
        for (account, epoch), amount in at_epoch.items():
            actual[f"balanceOfAtEpoch({epoch}, {account})"] = amount
            expected[f"balanceOfAtEpoch({epoch}, {account})"] = model.at_epoch(account, epoch)
        mismatches = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
        assert not mismatches, f"chain != model (actual, expected): {mismatches}"

        # the head moves exactly when entries are added
        head = bytes(chain["ledgerHead"])
        if self.head is not None:
            moved, numbered = head != self.head, model.seq != self.seq
            assert moved == numbered, f"ledgerHead moved: {moved}, entries added: {numbered}"
        self.head, self.seq = head, model.seq


#: Outcomes a default-sized run must have exercised, or the model test proves little.
REQUIRED_OUTCOMES = [
    "issue: ok",
    "issueBatch: ok",
    "redeem: ok",
    "redeem over several epochs",
    "sweepExpired: ok",
    "expiry by sweep",
    "expiry on credit",
    "transfer: ok",
    "transferAtEpoch: ok",
    "suspendPartner: ok",
    "reactivatePartner: ok",
    "setPartnerAllowance: ok",
    "issue: LedgerAllowanceExceeded",
    "issue: LedgerPartnerSuspended",
    "issue: LedgerReferenceUsed",
    "redeem: LedgerInsufficientBalance",
    "redeem: LedgerPartnerSuspended",
    "transfer: LedgerTransfersDisabled",
    "transfer: ERC20InsufficientBalance",
    "transferAtEpoch: ERC7818TransferredExpiredToken",
]


def test_ledger_matches_model(world: World) -> None:
    OUTCOMES.clear()
    machine = type("LedgerModelRun", (LedgerMachine,), {"world": world})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    print("model run outcomes:", dict(sorted(OUTCOMES.items())))
    if EXAMPLES >= 100:
        missing = [outcome for outcome in REQUIRED_OUTCOMES if not OUTCOMES[outcome]]
        assert not missing, f"the run never exercised {missing}"


def test_direct_ledger_agrees_with_web3(world: World) -> None:
    """The shortcut the state machine uses reads and sends exactly like web3 and ``Ledger.transact``."""
    world.tester.revert_to_snapshot(world.snapshot)
    ledger, actors, direct = world.ledger, world.ledger.actors, world.direct
    customer = world.accounts[0]
    receipt = direct.transact("issue", customer, 25, b"\x01" * 32, 3, b"\x00" * 32, sender=actors.issue_only)
    assert ledger.w3.eth.get_transaction_receipt(receipt["transaction_hash"])["status"] == 1
    ledger.node.advance_time(EPOCH_LENGTH)
    ledger.issue(customer, 2)
    now = ledger.call("currentEpoch")
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("currentEpoch", ()),
        ("outstandingSupply", ()),
        ("totalIssued", ()),
        ("pendingExpiry", ()),
        ("ledgerHead", ()),
        ("ledgerSequence", ()),
        ("partner", (ACTIVE,)),
        ("partner", (ISSUE_ONLY,)),
        ("balanceOf", (customer,)),
        *[("balanceOfAtEpoch", (epoch, customer)) for epoch in range(now - VALIDITY, now + 2)],
        ("liveBalances", (customer,)),
    ]
    fast = direct.views(calls)
    slow = [getattr(ledger.contract.functions, n)(*a).call({"from": actors.admin}) for n, a in calls]
    assert _plain(fast) == _plain(slow)
    assert fast[0] == VALIDITY == now
    assert fast[6][0] == ACTIVE and _plain(fast[6][1]) == _plain(actors.partner)
    assert fast[7][7] == 25 and fast[3] > 0  # ISSUE_ONLY issued 25; epoch 0 has expired, unswept
    assert fast[-1][1][-1] == 2  # liveBalances: the 2 points of the current epoch come last

    failing = ("issue", customer, 1, b"\x01" * 32, 3, b"\x00" * 32)  # the reference is used
    with pytest.raises(ContractRevert) as through_web3:
        ledger.transact(*failing, sender=actors.issue_only)
    with pytest.raises(ContractRevert) as direct_revert:
        direct.transact(*failing, sender=actors.issue_only)
    assert (direct_revert.value.name, direct_revert.value.arguments) == (
        through_web3.value.name,
        through_web3.value.arguments,
    )
    assert direct_revert.value.name == "LedgerReferenceUsed"
    assert direct.views(calls) == fast


def _plain(value: Any) -> Any:
    """Sequences as tuples, addresses and other strings lower-case: eth_abi and web3 differ only there."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value.lower() if isinstance(value, str) else value
