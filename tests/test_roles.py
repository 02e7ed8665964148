"""Who may change what: the role matrix of the v2 ledger, and every role change as a ledger entry.

The callers (:data:`CALLERS`), each holding exactly what its name says and nothing else:

* ``admin`` DEFAULT_ADMIN_ROLE; ``treasury`` TREASURY_ROLE; ``pauser`` PAUSER_ROLE;
* ``partner`` operates ACTIVE (may issue and accept), ``accept_only`` ACCEPT_ONLY, ``issue_only``
  ISSUE_ONLY, ``suspended`` the suspended SUSPENDED;
* ``offboarded`` operated OFFBOARDED, which left the coalition;
* ``rotated_away`` is ROTATED's former operator key (ROTATED moved to a new key and stays active);
* ``customer`` holds points; ``stranger`` has nothing at all (in the ``acceptDefaultAdminTransfer`` row
  it is the pending admin, so that the row has its one allowed caller).

Every partner that could issue made an issuance under :data:`RETURNED` (its own namespace each) before it
was suspended, rotated or offboarded, and every partner that could accept a redemption under
:data:`REFUNDED`: a return or a refund is of the caller's own partner's (or ACTIVE's, for a caller whose
partner has none).

The tables; each cell is an otherwise valid call that succeeds (its effect and its exact ledger entries
asserted, and the hash-chain head recomputed over them) or reverts with the exact custom error and its
arguments:

* :data:`MATRIX` every state-changing function, by every caller (not paused, transfers off). A call
  that names a partner names the caller's own (``rotated_away``: its former one), or else ACTIVE;
* :data:`STATES` every function that names a partner, against a partner in each state, sent by the
  first role allowed to;
* :data:`PAUSED` every function, sent by its first allowed caller, while the ledger is paused;
* the transfers, once the admin switched them on, by every caller.

The full tables run on anvil, refusals simulated with ``eth_call`` from the caller (the same execution a
transaction gets, without mining one); a sample of cells (:func:`sample`) mines every call on both
backends. Then: the entries of role changes and of every step of the two-step admin handover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, keccak
from web3 import Web3
from web3.types import TxReceipt

from chain import ContractRevert, load_artifact
from chain._devnode import fund
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ADMIN_DELAY,
    ALLOWANCE,
    EPOCH,
    GAS,
    ISSUE_ONLY,
    REVERSAL_WINDOW,
    SETTLEMENT_VALUE,
    SUSPENDED,
    VALIDITY,
    Ledger,
    decode_logs,
    deploy,
    expect_revert,
    new_customer,
    random_ref,
)
from contract_helpers import (
    PARTNER_FIELDS,
    STATUS_ACTIVE,
    STATUS_OFFBOARDED,
    STATUS_SUSPENDED,
    ZERO_ADDRESS,
    IssuanceItem,
    RedemptionRecord,
    batch_root,
    issued_item,
    keyed,
    migration_args,
    partner_view,
    redemption_record,
    send_signed,
    sign_cancellation,
)

DEFAULT_ADMIN_ROLE = b"\x00" * 32
TREASURY_ROLE = bytes(Web3.keccak(text="TREASURY_ROLE"))
PAUSER_ROLE = bytes(Web3.keccak(text="PAUSER_ROLE"))
RULE = b"\x11" * 32
DAY = 24 * 3600

ROTATED, OFFBOARDED, NEW_ID, UNKNOWN = 5, 6, 7, 99
#: The reference of every partner's issuance the world made (to :attr:`World.returning`), and of every
#: partner's redemption (of :attr:`World.refunding`): the same value in each partner's own namespace.
RETURNED, REFUNDED = b"\x7e" * 32, b"\x7f" * 32
#: Points of those issuances and redemptions: ISSUED + partner id, REDEEMED + partner id (so that no two
#: partners' are alike, and another partner's is not found under the caller's id).
ISSUED, REDEEMED = 50, 20
HANDOVER_SCHEDULED, HANDOVER_CANCELLED, DELAY_SCHEDULED, DELAY_CANCELLED = 1, 2, 3, 4

Entry = tuple[str, dict[str, Any]]  # a ledger entry: event name, fields without ``seq``


# --------------------------------------------------------------------------- ledger entries (shared)


def ledger_entries(events: list[dict[str, Any]]) -> list[Entry]:
    """The ledger entries among decoded events (the contract's events that carry a ``seq``)."""
    return [(e["event"], e["args"]) for e in events if "seq" in e["args"]]


def numbered(seq_before: int, expected: tuple[Entry, ...]) -> list[Entry]:
    """``expected`` with their ``seq`` filled in: ``seq_before + 1``, ``+ 2``, …"""
    return [(name, {**fields, "seq": seq_before + i}) for i, (name, fields) in enumerate(expected, 1)]


def assert_entries(ledger: Ledger, receipt: TxReceipt, seq_before: int, *expected: Entry) -> None:
    """The receipt holds exactly the ledger entries ``expected``, numbered on from ``seq_before``."""
    assert ledger_entries(ledger.events(receipt)) == numbered(seq_before, expected)


def entry_hash(log: Any) -> bytes:
    """``keccak256(topic0 ‖ topic1 ‖ … ‖ data)`` of a raw log (see ILoyaltyLedger)."""
    return keccak(b"".join(bytes(topic) for topic in log["topics"]) + bytes(log["data"]))


def fold(head: bytes, events: list[dict[str, Any]]) -> bytes:
    """The hash-chain head after the ledger entries among ``events`` (decoded, with their raw log)."""
    for event in events:
        if "seq" in event["args"]:
            head = keccak(head + entry_hash(event["log"]))
    return head


@contextmanager
def reverts(error: str, *args: Any) -> Iterator[None]:
    """The block's transaction reverts with exactly the custom error ``error(*args)``."""
    with pytest.raises(ContractRevert) as excinfo:
        yield
    expect_revert(excinfo, error, *args)


def funded_key(ledger: Ledger) -> LocalAccount:
    """A key generated for this test, with ether to send its own transactions (:func:`send_signed`)."""
    key: LocalAccount = Account.create()
    fund(ledger.w3, key.address, 10**18)
    return key


def fresh_address() -> str:
    return str(Account.create().address)


def block_time(ledger: Ledger, receipt: TxReceipt) -> int:
    return int(ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


# --------------------------------------------------------------------------- the world of the tables


CALLERS = (
    "admin",
    "treasury",
    "pauser",
    "partner",
    "accept_only",
    "issue_only",
    "suspended",
    "offboarded",
    "rotated_away",
    "customer",
    "stranger",
)


class World:
    """The standard ledger plus ROTATED (rotated to a new key by the admin) and OFFBOARDED, a consenting
    customer key, and points of epoch 0 for every caller.

    The tables' hundreds of calls go through a web3 on the same node without web3's default middleware
    (which asks the node for its chain id before every request), and through contract objects that each
    know one function or event (web3 validates the whole ABI on every call otherwise): the same calls, at
    a third of the cost."""

    def __init__(self, ledger: Ledger, keys: dict[str, LocalAccount], addresses: dict[str, str]) -> None:
        self.ledger = ledger
        self.keys = keys  # address -> key, for the callers that are generated keys
        self.addresses = addresses  # caller -> address
        self.partner_of = {address: 0 for address in addresses.values()}
        self.consenting = new_customer()  # holds 1,000 points, signs consents, cancellations, migrations
        self.holder = ledger.node.accounts[9]  # holds 1,000 points (every caller holds 10)
        self.returning = fresh_address()  # received an issuance of ISSUED from each partner that issued
        self.refunding = new_customer()  # redeemed REDEEMED at each partner that accepted
        self.issuances: dict[int, IssuanceItem] = {}  # by partner, under RETURNED
        self.redemptions: dict[int, RedemptionRecord] = {}  # by partner, under REFUNDED
        self.lean = Web3(ledger.w3.provider, middleware=[])
        self._functions: dict[str, Any] = {}
        self._events: dict[bytes, Any] = {}
        for item in ledger.contract.abi:
            if item["type"] == "event":
                contract = self.lean.eth.contract(address=ledger.contract.address, abi=[item])
                self._events[event_abi_to_log_topic(item)] = contract.events[item["name"]]()

    def function(self, fn: str) -> Any:
        """The contract function ``fn`` on a contract object that knows only it (web3 checks the whole
        ABI on every call otherwise)."""
        if fn not in self._functions:
            abi = [
                item
                for item in self.ledger.contract.abi
                if item.get("name") == fn and item["type"] == "function"
            ]
            contract = self.lean.eth.contract(address=self.ledger.contract.address, abi=abi)
            self._functions[fn] = getattr(contract.functions, fn)
        return self._functions[fn]

    def call(self, fn: str, *args: Any) -> Any:
        return self.function(fn)(*args).call()

    def events(self, receipt: TxReceipt) -> list[dict[str, Any]]:
        """The receipt's logs from the ledger, decoded, in log order (as ``Ledger.events``)."""
        out = []
        for log in receipt["logs"]:
            if log["address"] == self.ledger.contract.address:
                decoded = self._events[bytes(log["topics"][0])].process_log(log)
                out.append({"event": decoded["event"], "args": dict(decoded["args"]), "log": log})
        return out

    def partner(self, pid: int) -> dict[str, Any]:
        return dict(zip(PARTNER_FIELDS, self.call("partner", pid), strict=True))

    def send(self, fn: str, *args: Any, sender: str) -> TxReceipt:
        """Mines ``fn(*args)`` from ``sender``; raises the decoded :class:`ContractRevert` if it reverts."""
        key = self.keys.get(sender)
        if key is not None:
            return send_signed(self.ledger, key, fn, *args)
        call = self.function(fn)(*args)
        tx_hash = call.transact(
            {"from": sender, "gas": GAS, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
        )
        receipt = self.lean.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] == 1:
            return receipt
        raise self.simulate(fn, *args, sender=sender)

    def simulate(self, fn: str, *args: Any, sender: str) -> ContractRevert:
        """The custom error ``fn(*args)`` from ``sender`` reverts with (``eth_call`` on the latest block)."""
        try:
            self.function(fn)(*args).call({"from": sender, "gas": GAS})
        except Exception as exc:
            revert = self.ledger.decoder.from_exception(exc)
            if revert is None:
                raise
            return revert
        raise AssertionError(f"{fn}{args} from {sender} was expected to revert")

    def own_partner(self, caller: str) -> int:
        """The partner ``caller`` operates or operated, else ACTIVE."""
        return self.partner_of[caller] or ACTIVE


@pytest.fixture(scope="module")
def world(deployed: Ledger) -> World:
    """Built once per backend and module on the standard ledger (each test's ``ledger`` snapshot then
    includes it)."""
    ledger, actors = deployed, deployed.actors
    admin = actors.admin
    rotated_away, rotated_to, offboarded = (funded_key(ledger) for _ in range(3))
    for pid, key in ((ROTATED, rotated_away), (OFFBOARDED, offboarded)):
        ledger.transact("registerPartner", pid, key.address, key.address, True, True, ALLOWANCE, sender=admin)
    addresses = {
        "admin": admin,
        "treasury": actors.treasury,
        "pauser": actors.pauser,
        "partner": actors.partner,
        "accept_only": actors.accept_only,
        "issue_only": actors.issue_only,
        "suspended": actors.suspended,
        "offboarded": offboarded.address,
        "rotated_away": rotated_away.address,
        "customer": actors.customer,
        "stranger": actors.stranger,
    }
    keys = {key.address: key for key in (rotated_away, rotated_to, offboarded)}
    w = World(ledger, keys, addresses)
    w.partner_of.update(
        {
            actors.partner: ACTIVE,
            actors.suspended: SUSPENDED,
            actors.accept_only: ACCEPT_ONLY,
            actors.issue_only: ISSUE_ONLY,
            offboarded.address: OFFBOARDED,
            rotated_away.address: ROTATED,
        }
    )
    recipients = [w.consenting.address, w.holder, w.refunding.address, *addresses.values()]
    amounts = [1_000, 1_000, 1_000] + [10] * len(addresses)
    refs = [random_ref() for _ in recipients]
    ledger.transact("issueBatch", recipients, amounts, refs, 1, RULE, sender=actors.partner)

    # each partner's issuance and redemption, while it still may (SUSPENDED is reactivated for them)
    ledger.transact("reactivatePartner", SUSPENDED, sender=admin)
    operators = {ACTIVE: actors.partner, SUSPENDED: actors.suspended, ROTATED: rotated_away.address}
    operators |= {
        OFFBOARDED: offboarded.address,
        ACCEPT_ONLY: actors.accept_only,
        ISSUE_ONLY: actors.issue_only,
    }
    for pid in (ACTIVE, ISSUE_ONLY, SUSPENDED, ROTATED, OFFBOARDED):
        receipt = w.send("issue", w.returning, ISSUED + pid, RETURNED, 1, RULE, sender=operators[pid])
        w.issuances[pid] = issued_item(ledger, receipt)
    deadline = ledger.node.timestamp() + 3600
    for pid in (ACTIVE, ACCEPT_ONLY, SUSPENDED, ROTATED, OFFBOARDED):
        nonce = keyed(pid)
        signature = ledger.sign_redemption(w.refunding, pid, REDEEMED + pid, REFUNDED, nonce, deadline)
        args = (w.refunding.address, REDEEMED + pid, REFUNDED, nonce, deadline, signature)
        w.redemptions[pid] = redemption_record(ledger, w.send("redeem", *args, sender=operators[pid]))
    ledger.transact("suspendPartner", SUSPENDED, sender=admin)
    ledger.transact("rotatePartnerOperator", ROTATED, rotated_to.address, sender=admin)
    ledger.transact("offboardPartner", OFFBOARDED, sender=admin)
    return w


@pytest.fixture
def env(world: World, ledger: Ledger) -> Iterator[World]:
    """The world, restored after each test (``ledger`` reverts the chain to its snapshot)."""
    yield world


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


def row(default: Expect, **cells: Expect) -> dict[str, Expect]:
    """A row of :data:`MATRIX`: ``default`` for every caller not named in ``cells``."""
    assert set(cells) <= set(CALLERS), set(cells) - set(CALLERS)
    return {caller: cells.get(caller, default) for caller in CALLERS}


def unauthorized(role: bytes) -> Reverts:
    return Reverts("AccessControlUnauthorizedAccount", (CALLER, role))


def not_found(pid: int) -> Reverts:
    return Reverts("LedgerPartnerNotFound", (pid,))


def suspended(pid: int) -> Reverts:
    return Reverts("LedgerPartnerSuspended", (pid,))


def offboarded(pid: int) -> Reverts:
    return Reverts("LedgerPartnerOffboarded", (pid,))


def exists(pid: int) -> Reverts:
    return Reverts("LedgerPartnerExists", (pid,))


def not_suspended(pid: int) -> Reverts:
    return Reverts("LedgerPartnerNotSuspended", (pid,))


def unauthorized_rotation(pid: int) -> Reverts:
    return Reverts("LedgerUnauthorizedRotation", (CALLER, pid))


NOT_ADMIN = unauthorized(DEFAULT_ADMIN_ROLE)
NOT_TREASURY = unauthorized(TREASURY_ROLE)
NOT_PAUSER = unauthorized(PAUSER_ROLE)
UNKNOWN_PARTNER = Reverts("LedgerUnknownPartner", (CALLER,))
TRANSFERS_DISABLED = Reverts("LedgerTransfersDisabled")
ENFORCED_PAUSE = Reverts("EnforcedPause")

ADMIN_ONLY = row(NOT_ADMIN, admin=OK)
ANYONE = row(OK)
ISSUERS = row(
    UNKNOWN_PARTNER,
    partner=OK,
    issue_only=OK,
    accept_only=Reverts("LedgerPartnerCannotIssue", (ACCEPT_ONLY,)),
    suspended=suspended(SUSPENDED),
    offboarded=offboarded(OFFBOARDED),
    rotated_away=Reverts("LedgerRotatedOperator", (CALLER, ROTATED)),
)
ACCEPTORS = row(
    UNKNOWN_PARTNER,
    partner=OK,
    accept_only=OK,
    issue_only=Reverts("LedgerPartnerCannotAccept", (ISSUE_ONLY,)),
    suspended=suspended(SUSPENDED),
    offboarded=offboarded(OFFBOARDED),
    rotated_away=Reverts("LedgerRotatedOperator", (CALLER, ROTATED)),
)
TRANSFER_FUNCTIONS = ("transfer", "transferFrom", "transferAtEpoch", "transferFromAtEpoch")

#: Who may call what (not paused, transfers off).
MATRIX: dict[str, dict[str, Expect]] = {
    # the partner registry
    "registerPartner": ADMIN_ONLY,
    "increasePartnerAllowance": ADMIN_ONLY,
    "decreasePartnerAllowance": row(NOT_ADMIN, admin=OK, treasury=OK),
    "rotatePartnerOperator": row(  # the admin, or an active partner's own operator
        unauthorized_rotation(ACTIVE),
        admin=OK,
        partner=OK,
        accept_only=OK,
        issue_only=OK,
        suspended=unauthorized_rotation(SUSPENDED),
        offboarded=unauthorized_rotation(OFFBOARDED),
        rotated_away=unauthorized_rotation(ROTATED),
    ),
    "setPartnerRights": ADMIN_ONLY,
    "setPartnerSettlementAddress": ADMIN_ONLY,
    "suspendPartner": row(NOT_ADMIN, admin=OK, pauser=OK),
    "reactivatePartner": ADMIN_ONLY,
    "offboardPartner": ADMIN_ONLY,
    # money and switches
    "setSettlementValue": row(NOT_TREASURY, treasury=OK),
    "recordSettlement": row(NOT_TREASURY, treasury=OK),
    "setTransfersEnabled": ADMIN_ONLY,
    "pause": row(NOT_PAUSER, pauser=OK),
    "unpause": row(NOT_PAUSER, pauser=OK),
    # roles (PAUSER_ROLE here; DEFAULT_ADMIN_ROLE only through the handover, tested below)
    "grantRole": ADMIN_ONLY,
    "revokeRole": ADMIN_ONLY,
    "renounceRole": row(Reverts("AccessControlBadConfirmation"), pauser=OK),  # the pauser's role
    "beginDefaultAdminTransfer": ADMIN_ONLY,
    "cancelDefaultAdminTransfer": ADMIN_ONLY,
    "acceptDefaultAdminTransfer": row(Reverts("AccessControlInvalidDefaultAdmin", (CALLER,)), stranger=OK),
    "changeDefaultAdminDelay": ADMIN_ONLY,
    "rollbackDefaultAdminDelay": ADMIN_ONLY,
    # partners
    "issue": ISSUERS,
    "issueBatch": ISSUERS,
    "redeem": ACCEPTORS,
    # returns and refunds: the active operator of the partner that issued or accepted (no right needed
    # now); another partner finds no such issuance or redemption under its own id
    "reverseIssuance": row(
        UNKNOWN_PARTNER,
        partner=OK,
        issue_only=OK,
        accept_only=Reverts("LedgerIssuanceNotFound", (ACCEPT_ONLY, RETURNED)),
        suspended=suspended(SUSPENDED),
        offboarded=offboarded(OFFBOARDED),
        rotated_away=Reverts("LedgerRotatedOperator", (CALLER, ROTATED)),
    ),
    "refundRedemption": row(
        UNKNOWN_PARTNER,
        partner=OK,
        accept_only=OK,
        issue_only=Reverts("LedgerRedemptionNotFound", (ISSUE_ONLY, REFUNDED)),
        suspended=suspended(SUSPENDED),
        offboarded=offboarded(OFFBOARDED),
        rotated_away=Reverts("LedgerRotatedOperator", (CALLER, ROTATED)),
    ),
    # customers and anyone
    "revokeConsent": ANYONE,  # the caller's own consent
    "cancelConsent": ANYONE,  # with the customer's signature
    "migrateAccount": ANYONE,  # with both accounts' signatures
    "recoverAccount": ADMIN_ONLY,  # the timelock, in production
    "sweepExpired": ANYONE,
    "approve": ANYONE,
    **{fn: row(TRANSFERS_DISABLED) for fn in TRANSFER_FUNCTIONS},
}

#: The partner a call names, by state: ``rotated`` is ROTATED, active under its new key; ``unknown`` an
#: id never registered.
TARGETS = {
    "active": ACTIVE,
    "suspended": SUSPENDED,
    "offboarded": OFFBOARDED,
    "rotated": ROTATED,
    "unknown": UNKNOWN,
}


def states(default: Expect, **cells: Expect) -> dict[str, Expect]:
    return {state: cells.get(state, default) for state in TARGETS}


#: What the functions that name a partner do, by the state of that partner.
STATES: dict[str, dict[str, Expect]] = {
    "registerPartner": states(  # under that id
        exists(ACTIVE),
        suspended=exists(SUSPENDED),
        offboarded=exists(OFFBOARDED),
        rotated=exists(ROTATED),
        unknown=OK,
    ),
    "increasePartnerAllowance": states(OK, offboarded=offboarded(OFFBOARDED), unknown=not_found(UNKNOWN)),
    "decreasePartnerAllowance": states(  # offboarding dropped the allowance: nothing left to cut
        OK,
        offboarded=Reverts("LedgerAllowanceExceeded", (OFFBOARDED, 0, 100)),
        unknown=not_found(UNKNOWN),
    ),
    "rotatePartnerOperator": states(OK, offboarded=offboarded(OFFBOARDED), unknown=not_found(UNKNOWN)),
    "setPartnerRights": states(OK, offboarded=offboarded(OFFBOARDED), unknown=not_found(UNKNOWN)),
    "setPartnerSettlementAddress": states(OK, unknown=not_found(UNKNOWN)),
    "suspendPartner": states(
        OK, suspended=suspended(SUSPENDED), offboarded=offboarded(OFFBOARDED), unknown=not_found(UNKNOWN)
    ),
    "reactivatePartner": states(
        OK,
        active=not_suspended(ACTIVE),
        rotated=not_suspended(ROTATED),
        offboarded=offboarded(OFFBOARDED),
        unknown=not_found(UNKNOWN),
    ),
    "offboardPartner": states(OK, offboarded=offboarded(OFFBOARDED), unknown=not_found(UNKNOWN)),
    "recordSettlement": states(OK, unknown=not_found(UNKNOWN)),  # offboarded partners are settled too
}

#: While paused what moves points stands still (EnforcedPause() before any other check but the admin
#: role's, for a recovery); governance, settlement records, key rotation and consent revocation go on.
STOPPED_BY_PAUSE = (
    "pause",
    "issue",
    "issueBatch",
    "redeem",
    "reverseIssuance",
    "refundRedemption",
    "migrateAccount",
    "recoverAccount",
    "sweepExpired",
    "approve",
    *TRANSFER_FUNCTIONS,
)
PAUSED: dict[str, Expect] = {fn: ENFORCED_PAUSE if fn in STOPPED_BY_PAUSE else OK for fn in MATRIX}


def first_allowed(fn: str) -> str:
    """The first caller :data:`MATRIX` allows (for the transfers, which it has off: the customer)."""
    return next((caller for caller in CALLERS if MATRIX[fn][caller] is OK), "customer")


# --------------------------------------------------------------------------- calls and their outcome


@dataclass
class Outcome:
    """What a successful call did: its receipt, decoded events, ledger entries, and the state read before."""

    receipt: TxReceipt
    events: list[dict[str, Any]]
    seq: int  # ledgerSequence before the call
    before: Any

    def expect(self, *expected: Entry) -> None:
        """The call added exactly the ledger entries ``expected``, numbered on."""
        assert ledger_entries(self.events) == numbered(self.seq, expected)

    def event(self, name: str) -> dict[str, Any]:
        found = [e["args"] for e in self.events if e["event"] == name]
        assert len(found) == 1, f"expected one {name}, got {found}"
        return found[0]


def _nothing() -> None:
    return None


@dataclass
class Call:
    """One prepared call ``fn(*args)``: ``before()`` reads what ``check(outcome)`` compares with."""

    fn: str
    args: tuple[Any, ...]
    check: Callable[[Outcome], None]
    before: Callable[[], Any] = _nothing


def assert_accepted(w: World, call: Call, caller: str) -> None:
    head, seq, before = w.call("ledgerHead"), w.call("ledgerSequence"), call.before()
    receipt = w.send(call.fn, *call.args, sender=caller)
    events = w.events(receipt)
    call.check(Outcome(receipt, events, seq, before))
    entries = len(ledger_entries(events))
    assert (w.call("ledgerHead"), w.call("ledgerSequence")) == (fold(head, events), seq + entries)


def assert_rejected(w: World, call: Call, caller: str, expected: Reverts, *, mine: bool) -> None:
    """``mine``: the transaction is mined (and reverts); else the call is simulated."""
    if mine:
        with pytest.raises(ContractRevert) as excinfo:
            w.send(call.fn, *call.args, sender=caller)
        revert = excinfo.value
    else:
        revert = w.simulate(call.fn, *call.args, sender=caller)
    want = (expected.error, expected.arguments(caller))
    assert (revert.name, revert.arguments) == want, f"expected {want}, got {revert}"


def assert_cell(w: World, call: Call, caller: str, expected: Expect, *, mine: bool = False) -> None:
    if expected is OK:
        assert_accepted(w, call, caller)
    else:
        assert_rejected(w, call, caller, expected, mine=mine)


# --------------------------------------------------------------------------- one builder per function
# ``builder(w, caller, target)`` prepares what an otherwise valid call needs (sent by the roles that may)
# and returns it; ``target`` is the partner the call names (None: the builder's default).

Builder = Callable[[World, str, int | None], Call]


def register_partner(w: World, caller: str, target: int | None) -> Call:
    pid = target or NEW_ID
    operator, settlement = fresh_address(), fresh_address()

    def check(o: Outcome) -> None:
        fields = {"settlement": settlement, "canIssue": True, "canAccept": False, "allowance": 500}
        o.expect(("PartnerRegistered", {"partnerId": pid, "operator": operator, **fields}))
        view = (pid, operator, settlement, STATUS_ACTIVE, True, False, 500, *[0] * 10)
        assert tuple(w.call("partner", pid)) == view
        assert w.call("partnerIdOf", operator) == pid
        assert w.call("partnerIds") == [*o.before, pid]

    args = (pid, operator, settlement, True, False, 500)
    return Call("registerPartner", args, check, lambda: w.call("partnerIds"))


def change_allowance(fn: str, delta: int) -> Builder:
    def builder(w: World, caller: str, target: int | None) -> Call:
        pid = target or ACTIVE

        def check(o: Outcome) -> None:
            previous, allowance = o.before, o.before + delta
            o.expect(
                (
                    "PartnerAllowanceChanged",
                    {"partnerId": pid, "previousAllowance": previous, "allowance": allowance},
                )
            )
            assert w.partner(pid)["allowance"] == allowance

        return Call(fn, (pid, abs(delta)), check, lambda: w.partner(pid)["allowance"])

    return builder


def rotate_partner_operator(w: World, caller: str, target: int | None) -> Call:
    pid, new = target or w.own_partner(caller), fresh_address()

    def check(o: Outcome) -> None:
        previous = o.before["operator"]
        o.expect(
            ("PartnerOperatorChanged", {"partnerId": pid, "operator": new, "previousOperator": previous})
        )
        assert w.partner(pid) == {**o.before, "operator": new}  # status, rights, counters kept
        assert (w.call("partnerIdOf", new), w.call("partnerIdOf", previous)) == (pid, pid)

    return Call("rotatePartnerOperator", (pid, new), check, lambda: w.partner(pid))


def set_partner_rights(w: World, caller: str, target: int | None) -> Call:
    pid = target or ACTIVE

    def check(o: Outcome) -> None:
        o.expect(("PartnerRightsChanged", {"partnerId": pid, "canIssue": False, "canAccept": True}))
        assert w.partner(pid) == {**o.before, "canIssue": False, "canAccept": True}

    return Call("setPartnerRights", (pid, False, True), check, lambda: w.partner(pid))


def set_partner_settlement_address(w: World, caller: str, target: int | None) -> Call:
    pid, settlement = target or ACTIVE, fresh_address()

    def check(o: Outcome) -> None:
        o.expect(("PartnerSettlementAddressChanged", {"partnerId": pid, "settlement": settlement}))
        assert w.partner(pid) == {**o.before, "settlement": settlement}

    return Call("setPartnerSettlementAddress", (pid, settlement), check, lambda: w.partner(pid))


def set_status(fn: str, default: int, status: int) -> Builder:
    def builder(w: World, caller: str, target: int | None) -> Call:
        pid = target or default

        def check(o: Outcome) -> None:
            o.expect(("PartnerStatusChanged", {"partnerId": pid, "status": status}))
            assert w.partner(pid) == {**o.before, "status": status}

        return Call(fn, (pid,), check, lambda: w.partner(pid))

    return builder


def offboard_partner(w: World, caller: str, target: int | None) -> Call:
    pid = target or ACTIVE

    def check(o: Outcome) -> None:
        allowance = o.before["allowance"]
        assert allowance > 0
        o.expect(
            ("PartnerAllowanceChanged", {"partnerId": pid, "previousAllowance": allowance, "allowance": 0}),
            ("PartnerStatusChanged", {"partnerId": pid, "status": STATUS_OFFBOARDED}),
        )
        assert w.partner(pid) == {**o.before, "status": STATUS_OFFBOARDED, "allowance": 0}

    return Call("offboardPartner", (pid,), check, lambda: w.partner(pid))


def set_settlement_value(w: World, caller: str, target: int | None) -> Call:

    def check(o: Outcome) -> None:
        o.expect(("SettlementValueChanged", {"previousValue": SETTLEMENT_VALUE, "value": 25}))
        assert w.call("settlementValue") == 25

    return Call("setSettlementValue", (25,), check)


def record_settlement(w: World, caller: str, target: int | None) -> Call:
    pid, ref = target or ACTIVE, random_ref()

    def check(o: Outcome) -> None:
        o.expect(("SettlementRecorded", {"partnerId": pid, "points": 40, "value": -400, "paymentRef": ref}))
        assert w.partner(pid) == {**o.before, "settledPoints": 40, "settledValue": -400}
        assert w.call("settlementReferenceUsed", pid, ref) is True

    return Call("recordSettlement", (pid, 40, -400, ref), check, lambda: w.partner(pid))


def set_transfers_enabled(w: World, caller: str, target: int | None) -> Call:

    def check(o: Outcome) -> None:
        o.expect(("TransfersEnabledChanged", {"enabled": True}))
        assert w.call("transfersEnabled") is True

    return Call("setTransfersEnabled", (True,), check)


def pause(w: World, caller: str, target: int | None) -> Call:

    def check(o: Outcome) -> None:
        assert o.event("Paused") == {"account": caller}
        o.expect(("PauseChanged", {"paused": True, "pausedDuration": 0}))
        assert w.call("paused") is True

    return Call("pause", (), check)


def unpause(w: World, caller: str, target: int | None) -> Call:
    if not w.call("paused"):
        w.send("pause", sender=w.ledger.actors.pauser)
    paused_at = w.ledger.node.timestamp()  # the pause's block is the latest one

    def check(o: Outcome) -> None:
        assert o.event("Unpaused") == {"account": caller}
        duration = block_time(w.ledger, o.receipt) - paused_at
        o.expect(("PauseChanged", {"paused": False, "pausedDuration": duration}))
        assert (w.call("paused"), w.call("pausedDuration")) == (False, duration)

    return Call("unpause", (), check)


def role_entry(role: bytes, account: str, granted: bool, sender: str) -> Entry:
    return ("RoleChanged", {"role": role, "account": account, "granted": granted, "sender": sender})


def handover_entry(kind: int, new_admin: str = ZERO_ADDRESS, delay: int = 0, schedule: int = 0) -> Entry:
    return (
        "AdminHandoverChanged",
        {"kind": kind, "newAdmin": new_admin, "delay": delay, "schedule": schedule},
    )


def grant_role(w: World, caller: str, target: int | None) -> Call:
    account = fresh_address()

    def check(o: Outcome) -> None:
        o.expect(role_entry(PAUSER_ROLE, account, True, caller))
        assert w.call("hasRole", PAUSER_ROLE, account) is True

    return Call("grantRole", (PAUSER_ROLE, account), check)


def revoke_role(w: World, caller: str, target: int | None) -> Call:
    pauser = w.ledger.actors.pauser

    def check(o: Outcome) -> None:
        o.expect(role_entry(PAUSER_ROLE, pauser, False, caller))
        assert w.call("hasRole", PAUSER_ROLE, pauser) is False

    return Call("revokeRole", (PAUSER_ROLE, pauser), check)


def renounce_role(w: World, caller: str, target: int | None) -> Call:
    pauser = w.ledger.actors.pauser

    def check(o: Outcome) -> None:
        o.expect(role_entry(PAUSER_ROLE, pauser, False, pauser))
        assert w.call("hasRole", PAUSER_ROLE, pauser) is False

    return Call("renounceRole", (PAUSER_ROLE, pauser), check)


def begin_admin_transfer(w: World, caller: str, target: int | None) -> Call:
    new_admin = fresh_address()

    def check(o: Outcome) -> None:
        schedule = block_time(w.ledger, o.receipt) + ADMIN_DELAY
        o.expect(handover_entry(HANDOVER_SCHEDULED, new_admin, 0, schedule))
        assert w.call("pendingDefaultAdmin") == [new_admin, schedule]

    return Call("beginDefaultAdminTransfer", (new_admin,), check)


def cancel_admin_transfer(w: World, caller: str, target: int | None) -> Call:
    w.send("beginDefaultAdminTransfer", fresh_address(), sender=w.ledger.actors.admin)

    def check(o: Outcome) -> None:
        o.expect(handover_entry(HANDOVER_CANCELLED))
        assert w.call("pendingDefaultAdmin") == [ZERO_ADDRESS, 0]

    return Call("cancelDefaultAdminTransfer", (), check)


def accept_admin_transfer(w: World, caller: str, target: int | None) -> Call:
    """The admin handed over to the stranger, and the delay has passed."""
    admin, stranger = w.ledger.actors.admin, w.ledger.actors.stranger
    w.send("beginDefaultAdminTransfer", stranger, sender=admin)
    w.ledger.node.advance_time(ADMIN_DELAY + 1)

    def check(o: Outcome) -> None:
        o.expect(
            role_entry(DEFAULT_ADMIN_ROLE, admin, False, stranger),
            role_entry(DEFAULT_ADMIN_ROLE, stranger, True, stranger),
        )
        assert w.call("defaultAdmin") == stranger

    return Call("acceptDefaultAdminTransfer", (), check)


def change_admin_delay(w: World, caller: str, target: int | None) -> Call:
    """From 3 days down to 1: in force after the 2 days' difference (OpenZeppelin's rule)."""

    def check(o: Outcome) -> None:
        schedule = block_time(w.ledger, o.receipt) + ADMIN_DELAY - DAY
        o.expect(handover_entry(DELAY_SCHEDULED, ZERO_ADDRESS, DAY, schedule))
        assert w.call("pendingDefaultAdminDelay") == [DAY, schedule]

    return Call("changeDefaultAdminDelay", (DAY,), check)


def rollback_admin_delay(w: World, caller: str, target: int | None) -> Call:
    w.send("changeDefaultAdminDelay", DAY, sender=w.ledger.actors.admin)

    def check(o: Outcome) -> None:
        o.expect(handover_entry(DELAY_CANCELLED))
        assert (w.call("pendingDefaultAdminDelay"), w.call("defaultAdminDelay")) == (
            [0, 0],
            ADMIN_DELAY,
        )

    return Call("rollbackDefaultAdminDelay", (), check)


def issue(w: World, caller: str, target: int | None) -> Call:
    pid = w.own_partner(caller)
    to, ref = fresh_address(), random_ref()

    def check(o: Outcome) -> None:
        fields = {"to": to, "epoch": 0, "amount": 100, "ref": ref, "reason": 7, "ruleHash": RULE}
        o.expect(("PointsIssued", {"partnerId": pid, **fields, "value": SETTLEMENT_VALUE}))
        assert w.call("balanceOf", to) == 100
        assert w.call("referenceUsed", pid, ref) is True
        allowance, issued, value = (o.before[k] for k in ("allowance", "issued", "issuedValue"))
        changed = {"allowance": allowance - 100, "issued": issued + 100, "issuedValue": value + 1_000}
        assert w.partner(pid) == {**o.before, **changed}

    return Call("issue", (to, 100, ref, 7, RULE), check, lambda: w.partner(pid))


def issue_batch(w: World, caller: str, target: int | None) -> Call:
    pid = w.own_partner(caller)
    first, second, refs = fresh_address(), fresh_address(), [random_ref(), random_ref()]
    root = batch_root([first, second], [3, 4], refs)

    def check(o: Outcome) -> None:
        batch = {"epoch": 0, "ref": root, "reason": 7, "ruleHash": RULE, "count": 2, "total": 7}
        o.expect(
            ("PointsBatchIssued", {"partnerId": pid, **batch, "value": SETTLEMENT_VALUE}),
            ("PointsIssuedInBatch", {"to": first, "amount": 3, "itemRef": refs[0]}),
            ("PointsIssuedInBatch", {"to": second, "amount": 4, "itemRef": refs[1]}),
        )
        assert (w.call("balanceOf", first), w.call("balanceOf", second)) == (3, 4)
        assert w.call("referenceUsed", pid, root) is True

    return Call("issueBatch", ([first, second], [3, 4], refs, 7, RULE), check)


def redeem(w: World, caller: str, target: int | None) -> Call:
    """The consenting customer's signature for the caller's partner (or ACTIVE), with that key's nonce."""
    pid, customer, ref = w.own_partner(caller), w.consenting, random_ref()
    nonce, deadline = keyed(pid), w.ledger.node.timestamp() + 3600
    signature = w.ledger.sign_redemption(customer, pid, 20, ref, nonce, deadline)

    def check(o: Outcome) -> None:
        fields = {"customer": customer.address, "epoch": 0, "amount": 20, "ref": ref, "nonce": nonce}
        o.expect(("PointsRedeemed", {"partnerId": pid, **fields, "value": SETTLEMENT_VALUE}))
        assert w.call("balanceOf", customer.address) == 980
        assert w.call("nonces", customer.address, pid) == nonce + 1
        assert w.call("redemptionReferenceUsed", pid, ref) is True
        changed = {"redeemed": o.before["redeemed"] + 20, "redeemedValue": o.before["redeemedValue"] + 200}
        assert w.partner(pid) == {**o.before, **changed}

    args = (customer.address, 20, ref, nonce, deadline, signature)
    return Call("redeem", args, check, lambda: w.partner(pid))


def reverse_issuance(w: World, caller: str, target: int | None) -> Call:
    """The caller's partner (or ACTIVE) reverses 20 of its issuance under RETURNED."""
    pid = w.own_partner(caller)
    item, returned = w.issuances.get(pid, w.issuances[ACTIVE]), random_ref()
    customer = item.customer

    def check(o: Outcome) -> None:
        view, balance, total = o.before
        header = {
            "ref": RETURNED,
            "itemRef": RETURNED,
            "issued": item.amount,
            "returnRef": returned,
            "requested": 20,
            "recovered": 20,
        }
        o.expect(
            (
                "IssuanceReversed",
                {"partnerId": pid, "customer": customer, **header, "value": SETTLEMENT_VALUE},
            ),
            (
                "PointsReversed",
                {"partnerId": pid, "customer": customer, "epoch": 0, "amount": 20, "returnRef": returned},
            ),
        )
        changed = {"reversed": view["reversed"] + 20, "reversedValue": view["reversedValue"] + 200}
        assert w.partner(pid) == {**view, **changed}
        assert (w.call("balanceOf", customer), w.call("totalReversed")) == (balance - 20, total + 20)
        assert w.call("returnReferenceUsed", pid, returned) is True
        assert w.call("reversedOf", pid, RETURNED, customer, item.amount, RETURNED) == 20

    def before() -> Any:
        return w.partner(pid), w.call("balanceOf", customer), w.call("totalReversed")

    return Call("reverseIssuance", (item, 20, returned), check, before)


def refund_redemption(w: World, caller: str, target: int | None) -> Call:
    """The caller's partner (or ACTIVE) refunds 5 of its redemption under REFUNDED."""
    pid = w.own_partner(caller)
    record, refund = w.redemptions.get(pid, w.redemptions[ACTIVE]), random_ref()
    customer = record.customer

    def check(o: Outcome) -> None:
        view, balance, total = o.before
        header = {"ref": REFUNDED, "refundRef": refund, "amount": 5, "restored": 5, "value": SETTLEMENT_VALUE}
        o.expect(
            ("RedemptionRefunded", {"partnerId": pid, "customer": customer, **header}),
            (
                "PointsRefunded",
                {"partnerId": pid, "customer": customer, "epoch": 0, "amount": 5, "refundRef": refund},
            ),
        )
        changed = {"refunded": view["refunded"] + 5, "refundedValue": view["refundedValue"] + 50}
        assert w.partner(pid) == {**view, **changed}
        assert (w.call("balanceOf", customer), w.call("totalRefunded")) == (balance + 5, total + 5)
        assert w.call("refundReferenceUsed", pid, refund) is True
        assert w.call("refundedOf", pid, REFUNDED) == 5

    def before() -> Any:
        return w.partner(pid), w.call("balanceOf", customer), w.call("totalRefunded")

    return Call("refundRedemption", (record, 5, refund), check, before)


def migrate_account(w: World, caller: str, target: int | None) -> Call:
    """The caller submits the consenting customer's move of its 1,000 points to a new key, signed by both."""
    source, new = w.consenting, new_customer()
    args = migration_args(w.ledger, source, new)
    assert args[2] == 0  # the first nonce of key 0

    def check(o: Outcome) -> None:
        moved = {"from": source.address, "to": new.address}
        o.expect(
            ("AccountMigrated", {**moved, "nonce": 0, "recovery": False, "amount": 1_000}),
            ("PointsTransferred", {**moved, "epoch": 0, "amount": 1_000}),
        )
        assert (w.call("balanceOf", source.address), w.call("balanceOf", new.address)) == (0, 1_000)
        assert w.call("nonces", source.address, 0) == 1

    return Call("migrateAccount", args, check)


def recover_account(w: World, caller: str, target: int | None) -> Call:
    """The consenting customer lost its key: its 1,000 points move to a new address, without its signature."""
    lost, found = w.consenting.address, fresh_address()

    def check(o: Outcome) -> None:
        moved = {"from": lost, "to": found}
        o.expect(
            ("AccountMigrated", {**moved, "nonce": 0, "recovery": True, "amount": 1_000}),
            ("PointsTransferred", {**moved, "epoch": 0, "amount": 1_000}),
        )
        assert (w.call("balanceOf", lost), w.call("balanceOf", found)) == (0, 1_000)
        assert w.call("nonces", lost, 0) == 0

    return Call("recoverAccount", (lost, found), check)


def revoke_consent(w: World, caller: str, target: int | None) -> Call:
    """The caller revokes its own next consent of key ACTIVE."""
    nonce = keyed(ACTIVE)

    def check(o: Outcome) -> None:
        o.expect(("ConsentRevoked", {"customer": caller, "nonce": nonce}))
        assert w.call("nonces", caller, ACTIVE) == nonce + 1

    return Call("revokeConsent", (nonce,), check)


def cancel_consent(w: World, caller: str, target: int | None) -> Call:
    """The caller submits the consenting customer's signed cancellation of its next consent at ACTIVE."""
    customer, nonce = w.consenting.address, keyed(ACTIVE)
    signature = sign_cancellation(w.ledger, w.consenting, nonce)

    def check(o: Outcome) -> None:
        o.expect(("ConsentRevoked", {"customer": customer, "nonce": nonce}))
        assert w.call("nonces", customer, ACTIVE) == nonce + 1

    return Call("cancelConsent", (customer, nonce, signature), check)


def sweep_expired(w: World, caller: str, target: int | None) -> Call:
    """Everyone's points of epoch 0 have expired; the call sweeps the holder's."""
    holder = w.holder
    w.ledger.node.advance_time(VALIDITY * EPOCH)

    def check(o: Outcome) -> None:
        o.expect(("PointsExpired", {"account": holder, "epoch": 0, "amount": 1_000}))
        assert (w.call("totalExpired"), w.call("epochSupply", 0)) == (1_000, o.before - 1_000)

    return Call("sweepExpired", ([holder],), check, lambda: w.call("epochSupply", 0))


def approve(w: World, caller: str, target: int | None) -> Call:
    spender = fresh_address()

    def check(o: Outcome) -> None:
        assert o.event("Approval") == {"owner": caller, "spender": spender, "value": 77}
        o.expect()  # not a ledger entry
        assert w.call("allowance", caller, spender) == 77

    return Call("approve", (spender, 77), check)


def transfer(fn: str) -> Builder:
    """The caller moves 4 of its 10 points of epoch 0, or (``…From``) of the holder's, who approved it 6."""

    def builder(w: World, caller: str, target: int | None) -> Call:
        delegated, to = fn.startswith("transferFrom"), fresh_address()
        source = w.holder if delegated else caller
        if delegated:
            w.send("approve", caller, 6, sender=w.holder)
        args: tuple[Any, ...] = (source, to, 4) if delegated else (to, 4)
        if fn.endswith("AtEpoch"):
            args = (0, *args)

        def check(o: Outcome) -> None:
            assert o.event("Transfer") == {"from": source, "to": to, "value": 4}
            o.expect(("PointsTransferred", {"from": source, "to": to, "epoch": 0, "amount": 4}))
            assert (w.call("balanceOf", source), w.call("balanceOf", to)) == (o.before - 4, 4)
            if delegated:
                assert w.call("allowance", source, caller) == 2

        return Call(fn, args, check, lambda: w.call("balanceOf", source))

    return builder


BUILDERS: dict[str, Builder] = {
    "registerPartner": register_partner,
    "increasePartnerAllowance": change_allowance("increasePartnerAllowance", +100),
    "decreasePartnerAllowance": change_allowance("decreasePartnerAllowance", -100),
    "rotatePartnerOperator": rotate_partner_operator,
    "setPartnerRights": set_partner_rights,
    "setPartnerSettlementAddress": set_partner_settlement_address,
    "suspendPartner": set_status("suspendPartner", ACTIVE, STATUS_SUSPENDED),
    "reactivatePartner": set_status("reactivatePartner", SUSPENDED, STATUS_ACTIVE),
    "offboardPartner": offboard_partner,
    "setSettlementValue": set_settlement_value,
    "recordSettlement": record_settlement,
    "setTransfersEnabled": set_transfers_enabled,
    "pause": pause,
    "unpause": unpause,
    "grantRole": grant_role,
    "revokeRole": revoke_role,
    "renounceRole": renounce_role,
    "beginDefaultAdminTransfer": begin_admin_transfer,
    "cancelDefaultAdminTransfer": cancel_admin_transfer,
    "acceptDefaultAdminTransfer": accept_admin_transfer,
    "changeDefaultAdminDelay": change_admin_delay,
    "rollbackDefaultAdminDelay": rollback_admin_delay,
    "issue": issue,
    "issueBatch": issue_batch,
    "redeem": redeem,
    "reverseIssuance": reverse_issuance,
    "refundRedemption": refund_redemption,
    "migrateAccount": migrate_account,
    "recoverAccount": recover_account,
    "revokeConsent": revoke_consent,
    "cancelConsent": cancel_consent,
    "sweepExpired": sweep_expired,
    "approve": approve,
    **{fn: transfer(fn) for fn in TRANSFER_FUNCTIONS},
}


# --------------------------------------------------------------------------- the tables


def sample(table: dict[str, dict[str, Expect]]) -> list[tuple[str, str]]:
    """The cells that also run on eth-tester, every transaction mined: the first cell of each distinct
    refusal (the successes of every function run on both backends in this file's entry tests and in
    test_partners, test_settlement and test_trust_model)."""
    cells, errors = [], set()
    for fn, cells_of_row in table.items():
        for column, expected in cells_of_row.items():
            if expected is not OK and expected.error not in errors:
                errors.add(expected.error)
                cells.append((fn, column))
    return cells


#: The full tables run on anvil only: eth-tester mines some 20-70 transactions a second, and the tables
#: have some 500 cells.
ON_ANVIL = pytest.mark.parametrize("deployed", ["anvil"], indirect=True)


def cells_of(table: dict[str, dict[str, Expect]], cells: list[tuple[str, str]]) -> Any:
    ids = [f"{fn}-{column}-{table[fn][column] or 'ok'}" for fn, column in cells]
    return pytest.mark.parametrize(("fn", "column"), cells, ids=ids)


def test_the_tables_cover_every_state_changing_function() -> None:
    abi = [item for item in load_artifact("LoyaltyLedger").abi if item["type"] == "function"]
    mutating = {item["name"] for item in abi if item["stateMutability"] not in ("view", "pure")}
    assert mutating == set(MATRIX) == set(BUILDERS) == set(PAUSED)
    naming_a_partner = {
        item["name"]
        for item in abi
        if item["name"] in mutating and item["inputs"][:1] and item["inputs"][0]["name"] == "partnerId"
    }
    assert naming_a_partner == set(STATES)


def test_each_caller_holds_exactly_what_its_name_says(env: World) -> None:
    """The configuration the tables assume."""
    ledger, roles = env.ledger, (DEFAULT_ADMIN_ROLE, TREASURY_ROLE, PAUSER_ROLE)
    held = {caller: [r for r in roles if ledger.call("hasRole", r, a)] for caller, a in env.addresses.items()}
    own = {"admin": [DEFAULT_ADMIN_ROLE], "treasury": [TREASURY_ROLE], "pauser": [PAUSER_ROLE]}
    assert held == {caller: own.get(caller, []) for caller in CALLERS}
    operated = {caller: ledger.call("partnerIdOf", a) for caller, a in env.addresses.items()}
    assert operated == {caller: env.partner_of[a] for caller, a in env.addresses.items()}
    assert operated == {
        **dict.fromkeys(CALLERS, 0),
        "partner": ACTIVE,
        "accept_only": ACCEPT_ONLY,
        "issue_only": ISSUE_ONLY,
        "suspended": SUSPENDED,
        "offboarded": OFFBOARDED,
        "rotated_away": ROTATED,
    }
    status = {pid: partner_view(ledger, pid)["status"] for pid in (ACTIVE, SUSPENDED, ROTATED, OFFBOARDED)}
    assert status == {
        ACTIVE: STATUS_ACTIVE,
        SUSPENDED: STATUS_SUSPENDED,
        ROTATED: STATUS_ACTIVE,
        OFFBOARDED: STATUS_OFFBOARDED,
    }
    assert partner_view(ledger, ROTATED)["operator"] != env.addresses["rotated_away"]
    assert (ledger.call("paused"), ledger.call("transfersEnabled"), ledger.call("currentEpoch")) == (
        False,
        False,
        0,
    )


@ON_ANVIL
@cells_of(MATRIX, [(fn, caller) for fn in MATRIX for caller in CALLERS])
def test_role_matrix(env: World, fn: str, column: str) -> None:
    """Caller ``column`` calling ``fn`` succeeds or reverts as :data:`MATRIX` says."""
    address = env.addresses[column]
    assert_cell(env, BUILDERS[fn](env, address, None), address, MATRIX[fn][column])


@cells_of(MATRIX, sample(MATRIX))
def test_role_matrix_sample_on_both_backends(env: World, fn: str, column: str) -> None:
    address = env.addresses[column]
    assert_cell(env, BUILDERS[fn](env, address, None), address, MATRIX[fn][column], mine=True)


@ON_ANVIL
@cells_of(STATES, [(fn, state) for fn in STATES for state in TARGETS])
def test_partner_state_matrix(env: World, fn: str, column: str) -> None:
    """``fn`` naming a partner in state ``column``, by the first role allowed to: as :data:`STATES` says."""
    address = env.addresses[first_allowed(fn)]
    assert_cell(env, BUILDERS[fn](env, address, TARGETS[column]), address, STATES[fn][column])


@cells_of(STATES, sample(STATES))
def test_partner_state_matrix_sample_on_both_backends(env: World, fn: str, column: str) -> None:
    address = env.addresses[first_allowed(fn)]
    assert_cell(env, BUILDERS[fn](env, address, TARGETS[column]), address, STATES[fn][column], mine=True)


@ON_ANVIL
@pytest.mark.parametrize("fn", list(MATRIX), ids=[f"{fn}-{PAUSED[fn] or 'ok'}" for fn in MATRIX])
def test_while_paused(env: World, fn: str) -> None:
    """Sent by the first allowed caller while paused (transfers on for the transfers): as :data:`PAUSED`
    says."""
    ledger = env.ledger
    if fn in TRANSFER_FUNCTIONS:
        ledger.transact("setTransfersEnabled", True, sender=ledger.actors.admin)
    address = env.addresses[first_allowed(fn)]
    call = BUILDERS[fn](env, address, None)
    if not ledger.call("paused"):
        ledger.transact("pause", sender=ledger.actors.pauser)
    assert_cell(env, call, address, PAUSED[fn])


def test_while_paused_a_token_allowance_can_still_be_reduced(env: World) -> None:
    ledger, holder, spender = env.ledger, env.holder, env.addresses["customer"]
    ledger.transact("approve", spender, 6, sender=holder)
    ledger.transact("pause", sender=ledger.actors.pauser)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("approve", spender, 7, sender=holder)
    expect_revert(excinfo, "EnforcedPause")
    for value in (6, 2, 0):  # the same, lower, none
        ledger.transact("approve", spender, value, sender=holder)
        assert ledger.call("allowance", holder, spender) == value


@ON_ANVIL
@pytest.mark.parametrize("caller", ["customer", "partner", "admin", "rotated_away"])
@pytest.mark.parametrize("fn", TRANSFER_FUNCTIONS)
def test_once_transfers_are_on_any_holder_can_transfer(env: World, fn: str, caller: str) -> None:
    """Transfers need no role: any holder (or approved spender), partner keys, former partner keys and
    role holders included."""
    ledger = env.ledger
    ledger.transact("setTransfersEnabled", True, sender=ledger.actors.admin)
    address = env.addresses[caller]
    assert_accepted(env, BUILDERS[fn](env, address, None), address)


# ------------------------------------------------------------------------ whose returns, refunds, migrations


def test_a_partner_reverses_and_refunds_only_its_own(env: World) -> None:
    """Under the same reference, another partner's issuance or redemption is not the caller's: it is not
    found under the caller's id. A rotated partner's new key reverses and refunds what its former key did."""
    ledger = env.ledger
    seq, head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")
    with reverts("LedgerIssuanceNotFound", ISSUE_ONLY, RETURNED):
        env.send("reverseIssuance", env.issuances[ACTIVE], 1, random_ref(), sender=ledger.actors.issue_only)
    with reverts("LedgerRedemptionNotFound", ACTIVE, REFUNDED):
        env.send(
            "refundRedemption", env.redemptions[ACCEPT_ONLY], 1, random_ref(), sender=ledger.actors.partner
        )
    assert (ledger.call("ledgerSequence"), ledger.call("ledgerHead")) == (seq, head)

    rotated_to = partner_view(ledger, ROTATED)["operator"]
    assert rotated_to != env.addresses["rotated_away"]
    assert_accepted(env, reverse_issuance(env, env.addresses["rotated_away"], None), rotated_to)
    assert_accepted(env, refund_redemption(env, env.addresses["rotated_away"], None), rotated_to)


# ------------------------------------------------------------------------ roles and the handover as entries


def deployment_entries(ledger: Ledger, treasury: str, pauser: str, *, sender: str) -> tuple[Any, list[Entry]]:
    """A bare ledger deployed by ``sender``, and the ledger entries of its deployment; its head is checked
    to fold exactly these."""
    actors, w3 = ledger.actors, ledger.w3
    args = (actors.admin, treasury, pauser, ADMIN_DELAY, EPOCH, VALIDITY, SETTLEMENT_VALUE, REVERSAL_WINDOW)
    bare = deploy(ledger.node, "LoyaltyLedger", "P", "P", *args, sender=sender)
    receipt = w3.eth.get_transaction_receipt(w3.eth.get_block("latest")["transactions"][-1])
    events = decode_logs(bare, receipt)
    entries = ledger_entries(events)
    assert bare.functions.ledgerSequence().call() == len(entries)
    assert bare.functions.ledgerHead().call() == fold(b"\x00" * 32, events)
    return bare, entries


def test_the_deployment_records_the_role_grants_the_settlement_value_and_the_admin_delay(
    ledger: Ledger,
) -> None:
    """Entries 1, 2, 3 grant the admin, treasury and pauser roles (sent by the deployer); then the initial
    settlement value and admin delay (kind 3, schedule 0: in force at once) are entries too, so every
    figure can be rebuilt from the logs."""
    actors = ledger.actors
    bare, entries = deployment_entries(ledger, actors.treasury, actors.pauser, sender=actors.stranger)
    assert entries == numbered(
        0,
        (
            role_entry(DEFAULT_ADMIN_ROLE, actors.admin, True, actors.stranger),
            role_entry(TREASURY_ROLE, actors.treasury, True, actors.stranger),
            role_entry(PAUSER_ROLE, actors.pauser, True, actors.stranger),
            ("SettlementValueChanged", {"previousValue": 0, "value": SETTLEMENT_VALUE}),
            handover_entry(DELAY_SCHEDULED, ZERO_ADDRESS, ADMIN_DELAY, 0),
        ),
    )
    assert bare.functions.defaultAdmin().call() == actors.admin
    assert bare.functions.defaultAdminDelay().call() == ADMIN_DELAY


def test_a_zero_treasury_or_pauser_leaves_that_role_unheld(ledger: Ledger) -> None:
    actors = ledger.actors
    bare, entries = deployment_entries(ledger, ZERO_ADDRESS, ZERO_ADDRESS, sender=actors.admin)
    assert [fields["role"] for name, fields in entries if name == "RoleChanged"] == [DEFAULT_ADMIN_ROLE]
    assert bare.functions.hasRole(TREASURY_ROLE, ZERO_ADDRESS).call() is False
    assert bare.functions.hasRole(PAUSER_ROLE, ZERO_ADDRESS).call() is False


class Steps:
    """Sends steps one after another; each must add exactly the entries given, numbered on, and move the
    hash-chain head over exactly them; a refused step adds none."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seq, self.head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")

    def step(
        self,
        fn: str,
        *args: Any,
        sender: str,
        entries: Callable[[TxReceipt], tuple[Entry, ...]] | tuple[Entry, ...] = (),
    ) -> TxReceipt:
        """``entries``: the entries expected, or a function of the receipt giving them."""
        receipt = self.ledger.transact(fn, *args, sender=sender)
        expected = entries(receipt) if callable(entries) else entries
        events = self.ledger.events(receipt)
        assert ledger_entries(events) == numbered(self.seq, expected)
        self.seq, self.head = self.seq + len(expected), fold(self.head, events)
        assert (self.ledger.call("ledgerSequence"), self.ledger.call("ledgerHead")) == (self.seq, self.head)
        return receipt

    def refused(self, fn: str, *args: Any, sender: str, error: str, error_args: tuple[Any, ...] = ()) -> None:
        with pytest.raises(ContractRevert) as excinfo:
            self.ledger.transact(fn, *args, sender=sender)
        expect_revert(excinfo, error, *error_args)
        assert (self.ledger.call("ledgerSequence"), self.ledger.call("ledgerHead")) == (self.seq, self.head)


def scheduled(
    ledger: Ledger, kind: int, wait: int, *, new_admin: str = ZERO_ADDRESS, delay: int = 0
) -> Callable[[TxReceipt], tuple[Entry, ...]]:
    """The entry of a handover step scheduled ``wait`` seconds after its own block."""
    return lambda receipt: (handover_entry(kind, new_admin, delay, block_time(ledger, receipt) + wait),)


def test_grants_revocations_and_renouncing_are_one_entry_each(ledger: Ledger) -> None:
    """An entry for each change of who holds a role, none for a no-op grant, revocation or renouncing."""
    admin, treasury, stranger = ledger.actors.admin, ledger.actors.treasury, ledger.actors.stranger
    steps = Steps(ledger)
    steps.step(
        "grantRole",
        PAUSER_ROLE,
        stranger,
        sender=admin,
        entries=(role_entry(PAUSER_ROLE, stranger, True, admin),),
    )
    steps.step("grantRole", PAUSER_ROLE, stranger, sender=admin)  # already held
    steps.step(
        "grantRole",
        TREASURY_ROLE,
        stranger,
        sender=admin,
        entries=(role_entry(TREASURY_ROLE, stranger, True, admin),),
    )
    steps.step(
        "revokeRole",
        PAUSER_ROLE,
        stranger,
        sender=admin,
        entries=(role_entry(PAUSER_ROLE, stranger, False, admin),),
    )
    steps.step("revokeRole", PAUSER_ROLE, stranger, sender=admin)  # not held
    renounced = role_entry(TREASURY_ROLE, treasury, False, treasury)
    steps.step("renounceRole", TREASURY_ROLE, treasury, sender=treasury, entries=(renounced,))
    steps.step("renounceRole", TREASURY_ROLE, treasury, sender=treasury)  # not held any more
    assert [ledger.call("hasRole", TREASURY_ROLE, a) for a in (treasury, stranger)] == [False, True]
    steps.refused(
        "renounceRole", PAUSER_ROLE, ledger.actors.pauser, sender=admin, error="AccessControlBadConfirmation"
    )


def test_the_default_admin_role_is_never_granted_or_revoked_directly(ledger: Ledger) -> None:
    admin, stranger = ledger.actors.admin, ledger.actors.stranger
    steps = Steps(ledger)
    rules = "AccessControlEnforcedDefaultAdminRules"
    steps.refused("grantRole", DEFAULT_ADMIN_ROLE, stranger, sender=admin, error=rules)
    steps.refused("grantRole", DEFAULT_ADMIN_ROLE, admin, sender=admin, error=rules)
    steps.refused("revokeRole", DEFAULT_ADMIN_ROLE, admin, sender=admin, error=rules)
    # renouncing needs a handover to the zero address whose delay has passed (no schedule: 0)
    delay = "AccessControlEnforcedDefaultAdminDelay"
    steps.refused("renounceRole", DEFAULT_ADMIN_ROLE, admin, sender=admin, error=delay, error_args=(0,))
    assert ledger.call("defaultAdmin") == admin


def test_every_step_of_the_admin_handover_is_one_entry(ledger: Ledger) -> None:
    """Begin, cancel, change the delay, roll it back, begin again, accept too early (refused), accept after
    the delay (the revocation and the grant: the pair of entries that is the handover); then the old admin
    is refused and the new one rules."""
    actors, node = ledger.actors, ledger.node
    admin, new_admin, early = actors.admin, actors.stranger, "AccessControlEnforcedDefaultAdminDelay"
    steps = Steps(ledger)

    receipt = steps.step(
        "beginDefaultAdminTransfer",
        actors.customer,
        sender=admin,
        entries=scheduled(ledger, HANDOVER_SCHEDULED, ADMIN_DELAY, new_admin=actors.customer),
    )
    assert ledger.call("pendingDefaultAdmin") == [actors.customer, block_time(ledger, receipt) + ADMIN_DELAY]
    steps.step("cancelDefaultAdminTransfer", sender=admin, entries=(handover_entry(HANDOVER_CANCELLED),))
    assert ledger.call("pendingDefaultAdmin") == [ZERO_ADDRESS, 0]

    # an increase is in force after the new delay (at most 5 days)
    receipt = steps.step(
        "changeDefaultAdminDelay",
        4 * DAY,
        sender=admin,
        entries=scheduled(ledger, DELAY_SCHEDULED, 4 * DAY, delay=4 * DAY),
    )
    assert ledger.call("pendingDefaultAdminDelay") == [4 * DAY, block_time(ledger, receipt) + 4 * DAY]
    steps.step("rollbackDefaultAdminDelay", sender=admin, entries=(handover_entry(DELAY_CANCELLED),))
    assert (ledger.call("pendingDefaultAdminDelay"), ledger.call("defaultAdminDelay")) == (
        [0, 0],
        ADMIN_DELAY,
    )

    receipt = steps.step(
        "beginDefaultAdminTransfer",
        new_admin,
        sender=admin,
        entries=scheduled(ledger, HANDOVER_SCHEDULED, ADMIN_DELAY, new_admin=new_admin),
    )
    schedule = block_time(ledger, receipt) + ADMIN_DELAY
    steps.refused(
        "acceptDefaultAdminTransfer",
        sender=admin,
        error="AccessControlInvalidDefaultAdmin",
        error_args=(admin,),
    )
    steps.refused("acceptDefaultAdminTransfer", sender=new_admin, error=early, error_args=(schedule,))
    node.advance_time(schedule - node.timestamp() - 30)
    steps.refused("acceptDefaultAdminTransfer", sender=new_admin, error=early, error_args=(schedule,))
    node.advance_time(schedule - node.timestamp() + 1)
    steps.step(
        "acceptDefaultAdminTransfer",
        sender=new_admin,
        entries=(
            role_entry(DEFAULT_ADMIN_ROLE, admin, False, new_admin),
            role_entry(DEFAULT_ADMIN_ROLE, new_admin, True, new_admin),
        ),
    )
    assert (ledger.call("defaultAdmin"), ledger.call("pendingDefaultAdmin")) == (new_admin, [ZERO_ADDRESS, 0])

    steps.refused(
        "setTransfersEnabled",
        True,
        sender=admin,
        error="AccessControlUnauthorizedAccount",
        error_args=(admin, DEFAULT_ADMIN_ROLE),
    )
    steps.step(
        "setTransfersEnabled",
        True,
        sender=new_admin,
        entries=(("TransfersEnabledChanged", {"enabled": True}),),
    )


def test_a_shorter_admin_delay_takes_effect_after_the_difference(ledger: Ledger) -> None:
    """3 days down to 1 day is in force after the 2 days' difference; a handover begun then waits 1 day."""
    admin, new_admin, node = ledger.actors.admin, ledger.actors.stranger, ledger.node
    steps = Steps(ledger)
    receipt = steps.step(
        "changeDefaultAdminDelay",
        DAY,
        sender=admin,
        entries=scheduled(ledger, DELAY_SCHEDULED, ADMIN_DELAY - DAY, delay=DAY),
    )
    node.advance_time(block_time(ledger, receipt) + ADMIN_DELAY - DAY + 1 - node.timestamp())
    assert (ledger.call("defaultAdminDelay"), ledger.call("pendingDefaultAdminDelay")) == (DAY, [0, 0])
    receipt = steps.step(
        "beginDefaultAdminTransfer",
        new_admin,
        sender=admin,
        entries=scheduled(ledger, HANDOVER_SCHEDULED, DAY, new_admin=new_admin),
    )
    node.advance_time(block_time(ledger, receipt) + DAY + 1 - node.timestamp())
    steps.step(
        "acceptDefaultAdminTransfer",
        sender=new_admin,
        entries=(
            role_entry(DEFAULT_ADMIN_ROLE, admin, False, new_admin),
            role_entry(DEFAULT_ADMIN_ROLE, new_admin, True, new_admin),
        ),
    )


def test_the_admin_renounces_only_through_a_handover_to_nobody(ledger: Ledger) -> None:
    admin, node, early = ledger.actors.admin, ledger.node, "AccessControlEnforcedDefaultAdminDelay"
    steps = Steps(ledger)
    receipt = steps.step(
        "beginDefaultAdminTransfer",
        ZERO_ADDRESS,
        sender=admin,
        entries=scheduled(ledger, HANDOVER_SCHEDULED, ADMIN_DELAY, new_admin=ZERO_ADDRESS),
    )
    schedule = block_time(ledger, receipt) + ADMIN_DELAY
    steps.refused(
        "renounceRole", DEFAULT_ADMIN_ROLE, admin, sender=admin, error=early, error_args=(schedule,)
    )
    node.advance_time(ADMIN_DELAY + 1)
    steps.step(
        "renounceRole",
        DEFAULT_ADMIN_ROLE,
        admin,
        sender=admin,
        entries=(role_entry(DEFAULT_ADMIN_ROLE, admin, False, admin),),
    )
    assert ledger.call("defaultAdmin") == ZERO_ADDRESS
    steps.refused(
        "registerPartner",
        NEW_ID,
        fresh_address(),
        admin,
        True,
        True,
        1,
        sender=admin,
        error="AccessControlUnauthorizedAccount",
        error_args=(admin, DEFAULT_ADMIN_ROLE),
    )


def test_only_real_handover_changes_are_entries(ledger: Ledger) -> None:
    """Cancelling or rolling back nothing adds no entry; a handover begun, or a delay change scheduled,
    while another is pending records that one's cancellation first; a rollback once the change took effect
    adds none and keeps the new delay."""
    admin, node = ledger.actors.admin, ledger.node
    first, second = fresh_address(), fresh_address()
    steps = Steps(ledger)
    steps.step("cancelDefaultAdminTransfer", sender=admin)
    steps.step("rollbackDefaultAdminDelay", sender=admin)

    steps.step(
        "beginDefaultAdminTransfer",
        first,
        sender=admin,
        entries=scheduled(ledger, HANDOVER_SCHEDULED, ADMIN_DELAY, new_admin=first),
    )
    receipt = steps.step(
        "beginDefaultAdminTransfer",
        second,
        sender=admin,
        entries=lambda r: (
            handover_entry(HANDOVER_CANCELLED),
            handover_entry(HANDOVER_SCHEDULED, second, 0, block_time(ledger, r) + ADMIN_DELAY),
        ),
    )
    assert ledger.call("pendingDefaultAdmin") == [second, block_time(ledger, receipt) + ADMIN_DELAY]

    steps.step(
        "changeDefaultAdminDelay",
        4 * DAY,
        sender=admin,
        entries=scheduled(ledger, DELAY_SCHEDULED, 4 * DAY, delay=4 * DAY),
    )
    receipt = steps.step(  # down from 3 days to 2: in force after 1 day
        "changeDefaultAdminDelay",
        2 * DAY,
        sender=admin,
        entries=lambda r: (
            handover_entry(DELAY_CANCELLED),
            handover_entry(DELAY_SCHEDULED, ZERO_ADDRESS, 2 * DAY, block_time(ledger, r) + DAY),
        ),
    )
    node.advance_time(block_time(ledger, receipt) + DAY + 1 - node.timestamp())
    assert (ledger.call("defaultAdminDelay"), ledger.call("pendingDefaultAdminDelay")) == (2 * DAY, [0, 0])
    steps.step("rollbackDefaultAdminDelay", sender=admin)
    assert ledger.call("defaultAdminDelay") == 2 * DAY
