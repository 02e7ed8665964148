"""Model-based test: random operation sequences against a pure-Python model of the ledger's rules.

A Hypothesis state machine drives, on anvil, issue / issueBatch (per-item references, the batch under its
Merkle root) / redeem (consents at several nonce keys) / reverseIssuance (a single issue, or a batch item with
its Merkle proof) / refundRedemption / migrateAccount (signed by both accounts) / recoverAccount (the admin) /
sweepExpired / transfer / transferAtEpoch / time travel; the registry (increase and decrease allowances,
rights, suspend, reactivate, offboard, the transfer switch); operator rotation by the admin and by the partner
itself, and role grants; the treasury (settlement value, settlement records); pause and unpause with time
passing; revokeConsent and cancelConsent. The model (:class:`Model`) knows the rules, not the storage layout:
a ledger clock that stands still while paused (epoch = (t - genesis - time paused) / L), a validity window of
``VALIDITY`` epochs, per-account per-epoch holdings spent oldest first, expired points pending until swept (or
until the account is credited a live epoch that needs their bucket, as the contract documents), partner
statuses, operator keys and the tombstones rotation leaves, allowances, issued, redeemed, reversed and
refunded counters in points and in value (each entry at the settlement value in force; a reversal at its
issuance's, a refund at its redemption's), settlements, role holders, keyed nonces (shared by redemption
consents, revocations and migrations); where each account's latest migration or recovery went (reversals and
refunds follow a customer to the account its migrations led to; an account that migrated away is never a
target again); every issuance (its items, Merkle root and proofs, epoch, block time, value) and every
redemption (its parts per epoch), with what was asked back of each item and refunded of each redemption; the
reversal window (seconds from the issuing block, extended by the pauses since); references used once per
partner (issues and batch roots share one namespace; redemptions, settlements, returns and refunds have one
each).

For every operation the model predicts the outcome exactly: the custom error and its arguments, or every
ledger entry the transaction emits, in order and field by field (which epochs a redemption spends, a reversal
takes back, a refund restores or expires at once, a migration moves, which expired buckets a credit retires
first). A predicted failure must revert with that error and change nothing. The operations are tried in their
good form and in every way they may go wrong: reversals of part, all, one more than is left or any amount of
an item, presented as recorded or with its proof, amount, customer, epoch, block time or value changed, by the
issuing partner, another, a suspended or rotated-away key or a stranger, at the last second of the window or
one second after, after the customer moved away the issuance's epoch or spent most or all of its points;
refunds of part, all, one more or any amount of a redemption (after earlier refunds, into epochs live or
expired in between), presented as recorded or changed, by its partner or another, then the same reference
again or another part; migrations with either signature by the wrong key, to an account that migrated away, at
the next, a used or a future nonce of any key, at or after the deadline, to the zero address or to itself,
then replayed or repeated from the emptied account; recoveries by the admin and by others; batches of the same
items again (refused for their partner only) and under a root a single issue took first, single issues under a
batch's root. A change that must take effect at once (a rotation, an allowance cut, transfers switched off, a
pause) is followed within its step by the attempt it must stop, checked against the model like any other.

Checks (:meth:`LedgerMachine.views_match_model`, after every step), on the chain's own views: issued ==
(redeemed - refunded) + reversed + expired + pendingExpiry + outstandingSupply; outstandingSupply == Σ
balanceOf; Σ partner issued, redeemed, reversed, refunded == the totals; no partner's reversals above its
issues nor refunds above its redemptions (points and value); no item's reversals (reversedOf) above what it
issued, no redemption's refunds (refundedOf) above it; no balance below 0 (or wrapped above totalIssued); the
partners' and the coalition's positions sum to zero in points and in value, all-time and open, and every open
position == all-time - settled; ledgerHead == the hash chain rebuilt here from the raw logs of every
transaction (``keccak(head ‖ keccak(topics ‖ data))`` over the entries, from the deployment on), and it moves
exactly when ledgerSequence does; and every view the model predicts equals it: the clock (ledgerClock,
pausedDuration, paused, currentEpoch, epochExpiresAt), the totals, ledgerSequence, transfersEnabled,
settlementValue, every partner's whole record and positions, partnerIdOf of every key that ever operated a
partner, the keyed nonces used, reversedOf of every item and refundedOf of every redemption, holderOf,
balanceOf of every account and its balanceOfAtEpoch of the live epochs and of the epoch that expired last.
After a reverted step only head, sequence, the clock and the balances are read again (the model did not move,
so the next full check would catch anything else); every example ends with a full check, one of every
reference the model used (and the same references with another partner) in all five namespaces, and in one
example in ten a cross-check of a few views through web3.

Speed: the ledger is deployed once per module on an anvil of its own with points of three epochs on every
account and two redemptions (one over three epochs, one of an epoch that has expired by the snapshot), and
every example starts from an ``evm_snapshot`` of it. Transactions and views go to anvil as raw JSON-RPC
(:class:`RawLedger`, compared with web3 by ``test_raw_ledger_agrees_with_web3``); the views after a step are
one JSON-RPC batch at "latest". Consents and migrations are signed over EIP-712 digests computed here from the
type strings (:func:`redemption_digest`, :func:`migration_digest`), independently of the contract and of the
chain layer; Merkle roots and proofs come from ``chain._merkle`` (checked against the roots the contract
computed for the setup batches).

Time: anvil stamps every block exactly one second after its parent (``anvil_setBlockTimestampInterval``), a
time step sets the next block's timestamp, and reverting to the snapshot takes the clock back with it; so the
model knows the timestamp of every block, and predicts the clock from it. The ledger has the fixtures'
reversal window (``REVERSAL_WINDOW``) and epochs of two fifths of it: an issuance's window closes half an
epoch before its points expire; like the ledger clock, a window stands still while the ledger is paused
(it closes later by the time spent paused since the issuance).

Size: the examples written out in ``SCRIPTS`` first (paths that take several rules in a row: returns after the
customer moved or spent its points or migrated, at the window's edge, refunds after a recovery, a batch's
items by another partner, ...), then ``LOYALTY_HYPOTHESIS_EXAMPLES`` (default 300) random examples of up to
``LOYALTY_HYPOTHESIS_STEPS`` (default 30) steps, about 10,000 transactions, some 90 seconds on two cores; a
run at least that large must have exercised every outcome in ``REQUIRED_OUTCOMES``.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, NamedTuple

import pytest
import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chain import ContractRevert, RevertDecoder
from chain._devnode import anvil_binary, start_anvil
from chain._errors import abi_type
from chain._merkle import BatchItem, MerkleTree, leaf_hash, process_proof
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    GAS,
    ISSUE_ONLY,
    REVERSAL_WINDOW,
    ROOT,
    SUSPENDED,
    AnvilNode,
    Ledger,
    deploy_ledger,
    new_customer,
)

DEFAULT_EXAMPLES, DEFAULT_STEPS = 300, 30
EXAMPLES = int(os.environ.get("LOYALTY_HYPOTHESIS_EXAMPLES", str(DEFAULT_EXAMPLES)))
STEPS = int(os.environ.get("LOYALTY_HYPOTHESIS_STEPS", str(DEFAULT_STEPS)))

# The fixtures deploy with a reversal window of REVERSAL_WINDOW: epochs of two fifths of it close an
# issuance's window in the middle of its third epoch, half an epoch before its points expire.
EPOCH_LENGTH = REVERSAL_WINDOW * 2 // 5
VALIDITY = 3
MAX_AMOUNT = 2**64 - 1
MAX_ALLOWANCE = 2**64 - 1
MAX_SETTLEMENT_VALUE = 2**64 - 1
MAX_TOTAL_ISSUED = 2**96 - 1
MAX_SETTLED_POINTS = 2**96 - 1  # per settlement record, in magnitude
MAX_SETTLED_VALUE = 2**160 - 1
INT256_MIN = -(2**255)
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
NO_PARTNER = 9  # a partner id nobody registered
DEADLINE = 2**40  # redemption consents that do not expire during the run
ZERO_HASH = b"\x00" * 32
BATCH_RULE = b"\x11" * 32  # the rule hash of the batches the machine sends

DEFAULT_ADMIN_ROLE = b"\x00" * 32
TREASURY_ROLE = keccak(b"TREASURY_ROLE")
PAUSER_ROLE = keccak(b"PAUSER_ROLE")

#: Allowances set before the snapshot, small enough that random issues run out of them.
INITIAL_ALLOWANCE = {ACTIVE: 1000, SUSPENDED: 1000, ACCEPT_ONLY: 0, ISSUE_ONLY: 500}

N_CUSTOMERS = 2  # keys generated here: they sign consents (and may revoke them themselves)
N_HOLDERS = 3  # node accounts: they send transfers (their dev keys sign migrations)
N_ACCOUNTS = N_CUSTOMERS + N_HOLDERS
ZERO = N_ACCOUNTS  # account index standing for the zero address (only as a recipient)
N_SPARES = 8  # fresh keys a partner may rotate to, or the admin grant a role to
BIG_KEY = 2**191 + 5  # a nonce key far from any partner id
#: anvil's public dev mnemonic: the keys of the node's unlocked accounts (a local chain only)
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


class Status(IntEnum):
    """ILoyaltyLedger.PartnerStatus."""

    NONE = 0
    ACTIVE = 1
    SUSPENDED = 2
    OFFBOARDED = 3


# =========================================================================== EIP-712, from the type strings

_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_REDEMPTION_TYPEHASH = keccak(
    b"Redemption(address customer,uint32 partnerId,uint256 amount,bytes32 reference,uint256 nonce,"
    b"uint256 deadline)"
)
_CANCELLATION_TYPEHASH = keccak(b"ConsentCancellation(address customer,uint256 nonce)")
_MIGRATION_TYPEHASH = keccak(b"Migration(address from,address to,uint256 nonce,uint256 deadline)")


def domain_separator(chain_id: int, contract: str) -> bytes:
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_DOMAIN_TYPEHASH, keccak(b"LoyaltyLedger"), keccak(b"1"), chain_id, contract],
        )
    )


def redemption_digest(
    domain: bytes, customer: str, partner_id: int, amount: int, ref: bytes, nonce: int, deadline: int
) -> bytes:
    fields = abi_encode(
        ["bytes32", "address", "uint32", "uint256", "bytes32", "uint256", "uint256"],
        [_REDEMPTION_TYPEHASH, customer, partner_id, amount, ref, nonce, deadline],
    )
    return keccak(b"\x19\x01" + domain + keccak(fields))


def cancellation_digest(domain: bytes, customer: str, nonce: int) -> bytes:
    fields = abi_encode(["bytes32", "address", "uint256"], [_CANCELLATION_TYPEHASH, customer, nonce])
    return keccak(b"\x19\x01" + domain + keccak(fields))


def migration_digest(domain: bytes, origin: str, to: str, nonce: int, deadline: int) -> bytes:
    fields = abi_encode(
        ["bytes32", "address", "address", "uint256", "uint256"],
        [_MIGRATION_TYPEHASH, origin, to, nonce, deadline],
    )
    return keccak(b"\x19\x01" + domain + keccak(fields))


def sign(key: LocalAccount, digest: bytes) -> bytes:
    return bytes(key.unsafe_sign_hash(digest).signature)


def anvil_keys(count: int) -> dict[str, LocalAccount]:
    """The node's first ``count`` unlocked accounts' keys (``m/44'/60'/0'/0/i`` of the dev mnemonic)."""
    seed = seed_from_mnemonic(ANVIL_MNEMONIC, "")
    keys = [Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{i}")) for i in range(count)]
    return {key.address: key for key in keys}


# =========================================================================== anvil over raw JSON-RPC


class JsonRpc:
    """Plain JSON-RPC to one node over a kept-alive HTTP session, single requests and batches."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy lookup in the environment on every request
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """The result of ``method``; raises :class:`RpcFailure` with the node's error."""
        answer = self._session.post(self._url, json=self._payload(method, params), timeout=60).json()
        if "error" in answer:
            raise RpcFailure(answer["error"])
        return answer["result"]

    def batch(self, requests_: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """The answers (``result`` or ``error``) of ``requests_``, in order, from one HTTP request."""
        payload = [self._payload(method, params) for method, params in requests_]
        answers = self._session.post(self._url, json=payload, timeout=60).json()
        by_id = {answer["id"]: answer for answer in answers}
        return [by_id[item["id"]] for item in payload]

    def _payload(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


class RawLedger:
    """The ledger on anvil, reached with raw JSON-RPC instead of web3's contract layer: ~5x faster.

    Views: one JSON-RPC batch of ``eth_call`` at "latest" (anvil executes them on the latest block, its
    timestamp included). Transactions: ``eth_sendTransactionSync`` (the receipt in the answer) from an
    unlocked or impersonated sender with a fixed gas limit (anvil mines each in a block of its own, a failed
    one too), and, when the receipt says it failed, the same call replayed at "latest" to decode its revert
    into the same :class:`ContractRevert` as ``Ledger.transact``.
    """

    def __init__(
        self, rpc: JsonRpc, address: str, abi: Sequence[dict[str, Any]], decoder: RevertDecoder
    ) -> None:
        self.rpc = rpc
        self.address = address
        self._decoder = decoder
        self._functions: dict[str, tuple[bytes, list[str], list[str]]] = {}
        for item in abi:
            if item.get("type") == "function":
                inputs = [abi_type(p) for p in item["inputs"]]
                outputs = [abi_type(p) for p in item["outputs"]]
                selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(inputs)})")
                self._functions[str(item["name"])] = (selector, inputs, outputs)

    def _call(self, name: str, args: Sequence[Any], sender: str | None = None) -> dict[str, Any]:
        selector, inputs, _ = self._functions[name]
        call = {"to": self.address, "data": "0x" + (selector + abi_encode(inputs, args)).hex()}
        if sender is not None:
            call |= {"from": sender, "gas": hex(GAS)}
        return call

    def views(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """The decoded results of the view ``calls`` (name, args); a single return value is unwrapped."""
        answers = self.rpc.batch([("eth_call", [self._call(name, args), "latest"]) for name, args in calls])
        results = []
        for (name, args), answer in zip(calls, answers, strict=True):
            if "error" in answer:
                raise AssertionError(f"view {name}{args} failed: {answer['error']}")
            values = abi_decode(self._functions[name][2], HexBytes(answer["result"]))
            results.append(values[0] if len(values) == 1 else values)
        return results

    def transact(self, name: str, *args: Any, sender: str) -> list[dict[str, Any]]:
        """Sends ``name(*args)`` from ``sender`` (mined at once); returns the receipt's logs, or raises the
        decoded :class:`ContractRevert`."""
        call = self._call(name, args, sender)
        receipt = self.rpc.request("eth_sendTransactionSync", [call])  # the receipt, once mined
        if int(receipt["status"], 16) == 1:
            return list(receipt["logs"])
        # A reverted transaction changed nothing but the sender's account: the latest state replays it.
        try:
            self.rpc.request("eth_call", [call, "latest"])
        except RpcFailure as failure:
            data = failure.error.get("data")
            if not isinstance(data, str):
                raise AssertionError(f"{name}{args} failed without revert data: {failure.error}") from None
            raise self._decoder.decode(bytes(HexBytes(data))) from None
        raise AssertionError(f"{name}{args} failed on chain but its replay succeeded")

    def travel(self, timestamp: int) -> None:
        """Mines an empty block stamped ``timestamp``: "latest" is then at that time."""
        self.rpc.request("evm_mine", [timestamp])


#: A ledger entry: its event's name and its fields by name.
Entry = tuple[str, dict[str, Any]]


class Entries:
    """The ledger entries of the ABI (the events with a ``seq`` field): decoded from raw logs into
    ``(name, args)`` in declaration order, and folded into the hash chain as the contract keeps it,
    ``head = keccak256(head ‖ keccak256(topic0 ‖ topics ‖ data))``, from the logs alone."""

    def __init__(self, address: str, abi: Sequence[dict[str, Any]]) -> None:
        self._address = address.lower()
        self._events: dict[bytes, tuple[str, list[tuple[str, str, bool]]]] = {}
        for item in abi:
            if item.get("type") != "event" or "seq" not in [p["name"] for p in item["inputs"]]:
                continue
            types = [abi_type(p) for p in item["inputs"]]
            topic = keccak(f"{item['name']}({','.join(types)})".encode())
            inputs = [(p["name"], t, bool(p["indexed"])) for t, p in zip(types, item["inputs"], strict=True)]
            self._events[topic] = (str(item["name"]), inputs)

    def read(self, logs: Sequence[dict[str, Any]], head: bytes) -> tuple[list[Entry], bytes]:
        """The entries among ``logs`` (of this ledger, in log order), and ``head`` with them appended."""
        entries = []
        for log in logs:
            topics = [bytes(HexBytes(topic)) for topic in log["topics"]]
            if str(log["address"]).lower() != self._address or not topics or topics[0] not in self._events:
                continue
            data = bytes(HexBytes(log["data"]))
            head = keccak(head + keccak(b"".join(topics) + data))
            name, inputs = self._events[topics[0]]
            unindexed = iter(abi_decode([t for _, t, indexed in inputs if not indexed], data))
            indexed = iter(topics[1:])
            fields = {
                field: abi_decode([t], next(indexed))[0] if is_indexed else next(unindexed)
                for field, t, is_indexed in inputs
            }
            entries.append((name, fields))
        return entries, head


# =========================================================================== the model


class Rejected(Exception):
    """The model's prediction that an operation reverts with custom error ``name(*args)``."""

    def __init__(self, name: str, *args: Any) -> None:
        super().__init__(name, *args)
        self.name = name
        self.arguments = args


#: Stands for the entry's sequence number in :meth:`Model._emit` (the model numbers its entries).
SEQ: Any = object()

#: The fields of each ledger entry the model predicts, in the order :meth:`Model._emit` takes them (the
#: event's declaration order in ILedgerEntries.sol).
ENTRY_FIELDS: dict[str, tuple[str, ...]] = {
    "AccountMigrated": ("from", "to", "seq", "nonce", "recovery", "amount"),
    "ConsentRevoked": ("customer", "seq", "nonce"),
    "IssuanceReversed": (
        "partnerId",
        "customer",
        "seq",
        "ref",
        "itemRef",
        "issued",
        "returnRef",
        "requested",
        "recovered",
        "value",
    ),
    "PartnerAllowanceChanged": ("partnerId", "seq", "previousAllowance", "allowance"),
    "PartnerOperatorChanged": ("partnerId", "operator", "seq", "previousOperator"),
    "PartnerRightsChanged": ("partnerId", "seq", "canIssue", "canAccept"),
    "PartnerStatusChanged": ("partnerId", "seq", "status"),
    "PauseChanged": ("seq", "paused", "pausedDuration"),
    "PointsBatchIssued": (
        "partnerId",
        "seq",
        "epoch",
        "ref",
        "reason",
        "ruleHash",
        "count",
        "total",
        "value",
    ),
    "PointsExpired": ("account", "seq", "epoch", "amount"),
    "PointsIssued": ("partnerId", "to", "seq", "epoch", "amount", "ref", "reason", "ruleHash", "value"),
    "PointsIssuedInBatch": ("to", "seq", "amount", "itemRef"),
    "PointsRedeemed": ("partnerId", "customer", "seq", "epoch", "amount", "ref", "nonce", "value"),
    "PointsRefunded": ("partnerId", "customer", "seq", "epoch", "amount", "refundRef"),
    "PointsReversed": ("partnerId", "customer", "seq", "epoch", "amount", "returnRef"),
    "PointsTransferred": ("from", "to", "seq", "epoch", "amount"),
    "RedemptionRefunded": ("partnerId", "customer", "seq", "ref", "refundRef", "amount", "restored", "value"),
    "RoleChanged": ("role", "account", "seq", "granted", "sender"),
    "SettlementRecorded": ("partnerId", "seq", "points", "value", "paymentRef"),
    "SettlementValueChanged": ("seq", "previousValue", "value"),
    "TransfersEnabledChanged": ("seq", "enabled"),
}


def same_entries(chain: Sequence[Entry], model: Sequence[Entry]) -> bool:
    """Whether the chain emitted exactly the model's entries, field by field (addresses in any case)."""
    return len(chain) == len(model) and all(
        name == predicted_name and _plain(sorted(fields.items())) == _plain(sorted(predicted.items()))
        for (name, fields), (predicted_name, predicted) in zip(chain, model, strict=False)
    )


class IssuanceItem(NamedTuple):
    """ILedgerEntries.IssuanceItem: one issued item as a reversal presents it."""

    ref: bytes
    customer: str
    amount: int
    item_ref: bytes
    epoch: int
    issued_at: int
    value: int
    proof: tuple[bytes, ...]


class RedemptionRecord(NamedTuple):
    """ILedgerEntries.RedemptionRecord: a redemption as a refund presents it."""

    customer: str
    ref: bytes
    value: int
    epochs: tuple[int, ...]
    amounts: tuple[int, ...]


@dataclass(frozen=True)
class Issuance:
    """An issuance as its entries recorded it: a single issue (one item, its root the item's leaf, ``ref``
    its reference) or a batch (``ref`` its Merkle root)."""

    pid: int
    ref: bytes
    root: bytes
    items: tuple[BatchItem, ...]
    proofs: tuple[tuple[bytes, ...], ...]
    epoch: int
    issued_at: int
    value: int
    batch: bool

    def __deepcopy__(self, memo: dict[int, Any]) -> Issuance:
        return self  # immutable

    def item(self, index: int) -> IssuanceItem:
        """Item ``index`` (modulo the count) presented with its proof, as its partner would reverse it."""
        index %= len(self.items)
        item = self.items[index]
        return IssuanceItem(
            self.ref,
            item.to,
            item.amount,
            item.item_ref,
            self.epoch,
            self.issued_at,
            self.value,
            self.proofs[index],
        )

    @classmethod
    def of(
        cls, pid: int, ref: bytes | None, items: Sequence[BatchItem], epoch: int, issued_at: int, value: int
    ) -> Issuance:
        """A single issue under ``ref``, or (``ref`` None) a batch of ``items`` under their Merkle root."""
        if ref is not None:
            return cls(pid, ref, items[0].leaf, tuple(items), ((),), epoch, issued_at, value, False)
        tree = MerkleTree(items)
        proofs = tuple(tuple(tree.proof(i)) for i in range(len(items)))
        return cls(pid, tree.root, tree.root, tuple(items), proofs, epoch, issued_at, value, True)


class Redemption(NamedTuple):
    """A redemption as its PointsRedeemed entries recorded it: ``parts`` (epoch, points) in order."""

    customer: str
    value: int
    parts: tuple[tuple[int, int], ...]

    def presented(self, ref: bytes) -> RedemptionRecord:
        epochs, amounts = zip(*self.parts, strict=True)
        return RedemptionRecord(self.customer, ref, self.value, tuple(epochs), tuple(amounts))


@dataclass
class PartnerModel:
    operator: str
    settlement: str
    status: Status
    can_issue: bool
    can_accept: bool
    allowance: int
    issued: int = 0
    redeemed: int = 0
    issued_value: int = 0
    redeemed_value: int = 0
    reversed: int = 0
    refunded: int = 0
    reversed_value: int = 0
    refunded_value: int = 0
    settled_points: int = 0
    settled_value: int = 0

    def position(self) -> tuple[int, int]:
        """(redeemed - refunded) - (issued - reversed), in points and in value."""
        return (
            self.redeemed - self.refunded - self.issued + self.reversed,
            self.redeemed_value - self.refunded_value - self.issued_value + self.reversed_value,
        )

    def open_position(self) -> tuple[int, int]:
        points, value = self.position()
        return points - self.settled_points, value - self.settled_value

    def view(self, pid: int) -> tuple[Any, ...]:
        """What ``partner(pid)`` returns (addresses lower-case, as eth_abi decodes them)."""
        return (
            pid,
            self.operator.lower(),
            self.settlement.lower(),
            int(self.status),
            self.can_issue,
            self.can_accept,
            self.allowance,
            self.issued,
            self.redeemed,
            self.issued_value,
            self.redeemed_value,
            self.reversed,
            self.refunded,
            self.reversed_value,
            self.refunded_value,
            self.settled_points,
            self.settled_value,
        )


@dataclass
class Model:
    """The ledger's rules. An operation checks everything first (raising :class:`Rejected`), then mutates,
    appending to ``entries`` every ledger entry the transaction must emit, in order.

    Time: ``now`` is the timestamp of the block the next check reads (and, while an operation is applied,
    of the block that carries it); the clock is ``now - genesis - paused_duration``.
    """

    genesis: int
    now: int
    partners: dict[int, PartnerModel]
    seq: int
    transfers_enabled: bool
    settlement_value: int
    #: role -> accounts holding it
    roles: dict[bytes, set[str]]
    reversal_window: int
    paused_at: int | None = None
    paused_total: int = 0
    #: every finished pause: (when it ended, the time spent paused up to then)
    pauses: list[tuple[int, int]] = field(default_factory=list)
    #: account -> epoch -> points held (> 0), expired but unswept epochs included
    held: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (partner, reference) -> the issuance (single issue or batch root) made under it: one namespace
    issuances: dict[tuple[int, bytes], Issuance] = field(default_factory=dict)
    #: (partner, reference, item's leaf) -> points requested back by reversals so far
    reversed: dict[tuple[int, bytes, bytes], int] = field(default_factory=dict)
    #: (partner, reference) -> the redemption made under it
    redemptions: dict[tuple[int, bytes], Redemption] = field(default_factory=dict)
    #: (partner, reference) -> points of the redemption refunded so far
    refunded: dict[tuple[int, bytes], int] = field(default_factory=dict)
    #: (partner, reference) pairs used by settlements, returns (reversals), refunds: three more namespaces
    used_settlement_refs: set[tuple[int, bytes]] = field(default_factory=set)
    used_return_refs: set[tuple[int, bytes]] = field(default_factory=set)
    used_refund_refs: set[tuple[int, bytes]] = field(default_factory=set)
    #: (customer, key) -> next sequence number of that nonce key
    nonces: dict[tuple[str, int], int] = field(default_factory=dict)
    #: keys rotated away from a partner -> that partner (the contract keeps a tombstone for them)
    former: dict[str, int] = field(default_factory=dict)
    #: account -> the account its latest migration (or recovery) out of it went to: it is retired
    successors: dict[str, str] = field(default_factory=dict)
    total_issued: int = 0
    total_redeemed: int = 0
    total_expired: int = 0
    total_reversed: int = 0
    total_refunded: int = 0
    #: the entries of the operation being applied
    entries: list[Entry] = field(default_factory=list)

    def _emit(self, name: str, *args: Any) -> None:
        """Appends ledger entry ``name(*args)`` (fields as in ``ENTRY_FIELDS``), numbered next (``SEQ`` among
        ``args`` stands for its number)."""
        self.seq += 1
        values = [self.seq if arg is SEQ else arg for arg in args]
        self.entries.append((name, dict(zip(ENTRY_FIELDS[name], values, strict=True))))

    # ------------------------------------------------------------ the clock

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def paused_duration(self) -> int:
        return self.paused_total + (self.now - self.paused_at if self.paused_at is not None else 0)

    @property
    def clock(self) -> int:
        return self.now - self.genesis - self.paused_duration

    @property
    def epoch(self) -> int:
        return self.clock // EPOCH_LENGTH

    def epoch_expires_at(self, epoch: int) -> int:
        return self.genesis + self.paused_duration + (epoch + VALIDITY) * EPOCH_LENGTH

    # ------------------------------------------------------------ epochs and balances

    def live_epochs(self) -> range:
        epoch = self.epoch
        return range(max(0, epoch - VALIDITY + 1), epoch + 1)

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
        amount = self.holdings(account).pop(epoch)
        self.total_expired += amount
        self._emit("PointsExpired", account, SEQ, epoch, amount)

    def _retire_stale(self, account: str, epoch: int) -> None:
        """An account keeps one bucket per epoch residue: a live epoch needing a bucket that still holds an
        (expired) older epoch retires those points first, as their own ledger entry."""
        held = self.holdings(account)
        for old in [e for e in held if e != epoch and e % VALIDITY == epoch % VALIDITY]:
            self._expire(account, old)

    def _credit(self, account: str, epoch: int, amount: int) -> None:
        self._retire_stale(account, epoch)
        held = self.holdings(account)
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

    # ------------------------------------------------------------ positions

    def coalition_position(self) -> tuple[int, int]:
        """(issued - reversed) - (redeemed - refunded); in value, minus the partners' positions' sum."""
        points = self.total_issued - self.total_reversed - self.total_redeemed + self.total_refunded
        return points, -sum(p.position()[1] for p in self.partners.values())

    def coalition_open_position(self) -> tuple[int, int]:
        points, value = self.coalition_position()
        settled_points = sum(p.settled_points for p in self.partners.values())
        settled_value = sum(p.settled_value for p in self.partners.values())
        return points + settled_points, value + settled_value

    # ------------------------------------------------------------ keys and roles

    def operator_ids(self) -> dict[str, int]:
        """partnerIdOf: every key that operates a partner, or did before a rotation."""
        return {**self.former, **{p.operator: pid for pid, p in self.partners.items()}}

    def holds_role(self, account: str) -> bool:
        return any(account in holders for holders in self.roles.values())

    def holder_of(self, account: str, *, shorten: bool = False) -> str:
        """The account holding ``account``'s points: itself, or the end of its chain of migrations (which a
        reversal or a refund that follows it shortens to one link)."""
        holder = account
        while holder in self.successors:
            holder = self.successors[holder]
        if shorten and holder != account:
            self.successors[account] = holder
        return holder

    def nonce(self, customer: str, key: int) -> int:
        """The next full keyed nonce: ``key << 64 | sequence``."""
        return key << 64 | self.nonces.get((customer, key), 0)

    # ------------------------------------------------------------ checks

    def _check_role(self, sender: str, role: bytes, *alternatives: bytes) -> None:
        if not any(sender in self.roles[r] for r in (role, *alternatives)):
            raise Rejected("AccessControlUnauthorizedAccount", sender, role)

    def _not_paused(self) -> None:
        if self.paused:
            raise Rejected("EnforcedPause")

    def _operating(self, caller: str) -> tuple[int, PartnerModel]:
        """The partner ``caller`` operates, which must be active (the caller of an issue, a redemption, a
        reversal, a refund)."""
        pid = self.operator_ids().get(caller)
        if pid is None:
            raise Rejected("LedgerUnknownPartner", caller)
        partner = self.partners[pid]
        if partner.operator != caller:
            raise Rejected("LedgerRotatedOperator", caller, pid)
        self._require_active(pid, partner)
        return pid, partner

    @staticmethod
    def _require_active(pid: int, partner: PartnerModel) -> None:
        if partner.status == Status.SUSPENDED:
            raise Rejected("LedgerPartnerSuspended", pid)
        if partner.status == Status.OFFBOARDED:
            raise Rejected("LedgerPartnerOffboarded", pid)

    def _spend_allowance(self, caller: str, amount: int) -> tuple[int, PartnerModel]:
        pid, partner = self._operating(caller)
        if not partner.can_issue:
            raise Rejected("LedgerPartnerCannotIssue", pid)
        if amount > partner.allowance:
            raise Rejected("LedgerAllowanceExceeded", pid, partner.allowance, amount)
        if amount > MAX_ALLOWANCE - partner.issued:
            raise Rejected("LedgerAmountTooLarge", amount, MAX_ALLOWANCE - partner.issued)
        if amount > MAX_TOTAL_ISSUED - self.total_issued:
            raise Rejected("LedgerAmountTooLarge", amount, MAX_TOTAL_ISSUED - self.total_issued)
        return pid, partner

    def _count_issued(self, partner: PartnerModel, amount: int) -> None:
        partner.allowance -= amount
        partner.issued += amount
        partner.issued_value += amount * self.settlement_value
        self.total_issued += amount

    @staticmethod
    def _check_amount(amount: int) -> None:
        if amount == 0:
            raise Rejected("LedgerZeroAmount")
        if amount > MAX_AMOUNT:
            raise Rejected("LedgerAmountTooLarge", amount, MAX_AMOUNT)

    @staticmethod
    def _check_reference(
        used: set[tuple[int, bytes]] | dict[tuple[int, bytes], Any], pid: int, ref: bytes
    ) -> None:
        if (pid, ref) in used:
            raise Rejected("LedgerReferenceUsed", pid, ref)

    def _existing(self, pid: int) -> PartnerModel:
        if pid not in self.partners:
            raise Rejected("LedgerPartnerNotFound", pid)
        return self.partners[pid]

    def _live(self, pid: int) -> PartnerModel:
        """A partner that exists and is not offboarded (the contract's ``_liveAuth``)."""
        partner = self._existing(pid)
        if partner.status == Status.OFFBOARDED:
            raise Rejected("LedgerPartnerOffboarded", pid)
        return partner

    def _check_new_operator(self, key: str) -> None:
        if key == ZERO_ADDRESS or key in self.operator_ids() or self.holds_role(key):
            raise Rejected("LedgerInvalidOperator", key)

    def _check_transfer(self, to: str) -> None:
        self._not_paused()
        if not self.transfers_enabled:
            raise Rejected("LedgerTransfersDisabled")
        if to == ZERO_ADDRESS:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)

    def _check_nonce(self, customer: str, nonce: int) -> None:
        current = self.nonce(customer, nonce >> 64)
        if nonce != current:
            raise Rejected("InvalidAccountNonce", customer, current)

    def _use_nonce(self, customer: str, nonce: int) -> None:
        self._check_nonce(customer, nonce)
        key = nonce >> 64
        self.nonces[customer, key] = self.nonces.get((customer, key), 0) + 1

    # ------------------------------------------------------------ operations: partners and customers

    def issue(self, operator: str, to: str, amount: int, ref: bytes, reason: int, rule: bytes) -> None:
        self._not_paused()
        self._check_amount(amount)
        pid, partner = self._spend_allowance(operator, amount)
        self._check_reference(self.issuances, pid, ref)
        if to == ZERO_ADDRESS:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)
        epoch, value = self.epoch, self.settlement_value
        self.issuances[pid, ref] = Issuance.of(pid, ref, [BatchItem(to, amount, ref)], epoch, self.now, value)
        self._count_issued(partner, amount)
        self._credit(to, epoch, amount)
        self._emit("PointsIssued", pid, to, SEQ, epoch, amount, ref, reason, rule, value)

    def issue_batch(
        self,
        operator: str,
        recipients: list[str],
        amounts: list[int],
        item_refs: list[bytes],
        reason: int,
        rule: bytes,
    ) -> bytes:
        """Checks and applies a batch; returns its Merkle root (its reference)."""
        self._not_paused()
        if not len(recipients) == len(amounts) == len(item_refs):
            raise Rejected("LedgerBatchLengthMismatch", len(recipients), len(amounts), len(item_refs))
        if not recipients:
            raise Rejected("LedgerEmptyBatch")
        for amount in amounts:
            self._check_amount(amount)
        total = sum(amounts)
        pid, partner = self._spend_allowance(operator, total)
        items = [BatchItem(*item) for item in zip(recipients, amounts, item_refs, strict=True)]
        epoch, value = self.epoch, self.settlement_value
        issuance = Issuance.of(pid, None, items, epoch, self.now, value)
        self._check_reference(self.issuances, pid, issuance.ref)
        if ZERO_ADDRESS in recipients:
            raise Rejected("ERC20InvalidReceiver", ZERO_ADDRESS)
        self.issuances[pid, issuance.ref] = issuance
        self._count_issued(partner, total)
        # every recipient's stale bucket is retired before the header: the items are numbered in a row
        for to in recipients:
            self._retire_stale(to, epoch)
        self._emit("PointsBatchIssued", pid, SEQ, epoch, issuance.ref, reason, rule, len(items), total, value)
        for item in items:
            self._credit(item.to, epoch, item.amount)
            self._emit("PointsIssuedInBatch", item.to, SEQ, item.amount, item.item_ref)
        return issuance.ref

    def redeem(
        self, operator: str, customer: str, amount: int, ref: bytes, nonce: int
    ) -> list[tuple[int, int]]:
        """Checks and applies a redemption (its consent validly signed); returns the (epoch, points) it
        spends, oldest first."""
        self._not_paused()
        pid, partner = self._operating(operator)
        if not partner.can_accept:
            raise Rejected("LedgerPartnerCannotAccept", pid)
        self._check_amount(amount)
        self._check_nonce(customer, nonce)
        self._check_reference(self.redemptions, pid, ref)
        balance = self.balance(customer)
        if balance < amount:
            raise Rejected("LedgerInsufficientBalance", customer, balance, amount)
        if amount > MAX_ALLOWANCE - partner.redeemed:
            raise Rejected("LedgerAmountTooLarge", amount, MAX_ALLOWANCE - partner.redeemed)
        self._use_nonce(customer, nonce)
        value = self.settlement_value
        partner.redeemed += amount
        partner.redeemed_value += amount * value
        self.total_redeemed += amount
        spent = self._oldest_first(customer, amount)
        for epoch, take in spent:
            self._debit(customer, epoch, take)
            self._emit("PointsRedeemed", pid, customer, SEQ, epoch, take, ref, nonce, value)
        self.redemptions[pid, ref] = Redemption(customer, value, tuple(spent))
        return spent

    def reverse(
        self, operator: str, item: IssuanceItem, amount: int, return_ref: bytes
    ) -> list[tuple[int, int]]:
        """Checks and applies a reversal (a return) of ``amount`` points of ``item``; returns the (epoch,
        points) taken back: the issuance's epoch first (if live), then the oldest live epochs, up to what the
        customer holds."""
        self._not_paused()
        pid, partner = self._operating(operator)  # no right to issue needed: a return undoes an issue
        self._check_amount(amount)
        leaf = leaf_hash(item.customer, item.amount, item.item_ref)
        issuance = self.issuances.get((pid, item.ref))
        presented = (process_proof(item.proof, leaf), item.epoch, item.issued_at, item.value)
        if issuance is None or presented != (
            issuance.root,
            issuance.epoch,
            issuance.issued_at,
            issuance.value,
        ):
            raise Rejected("LedgerIssuanceNotFound", pid, item.ref)
        closed_at = self.window_closes_at(item.issued_at)
        if self.now > closed_at:
            raise Rejected("LedgerReversalWindowClosed", item.ref, closed_at)
        key = (pid, item.ref, leaf)
        reversed_ = self.reversed.get(key, 0)
        if amount > item.amount - reversed_:
            raise Rejected("LedgerReversalExceedsIssuance", item.ref, item.amount, reversed_, amount)
        self._check_reference(self.used_return_refs, pid, return_ref)
        self.reversed[key] = reversed_ + amount
        self.used_return_refs.add((pid, return_ref))
        customer = item.customer
        holder = self.holder_of(customer, shorten=True)  # a return follows the customer's migrations
        recovered = min(self.balance(holder), amount)
        partner.reversed += recovered
        partner.reversed_value += recovered * item.value
        self.total_reversed += recovered
        self._emit(
            "IssuanceReversed",
            pid,
            customer,
            SEQ,
            item.ref,
            item.item_ref,
            item.amount,
            return_ref,
            amount,
            recovered,
            item.value,
        )
        order = [] if self.is_expired(item.epoch) else [item.epoch]
        order += [epoch for epoch in self.live_epochs() if epoch != item.epoch]
        taken, left = [], recovered
        for epoch in order:
            take = min(self.at_epoch(holder, epoch), left)
            if take:
                self._debit(holder, epoch, take)
                self._emit("PointsReversed", pid, holder, SEQ, epoch, take, return_ref)
                taken.append((epoch, take))
                left -= take
        assert left == 0
        return taken

    def refund(
        self, operator: str, record: RedemptionRecord, amount: int, refund_ref: bytes
    ) -> list[tuple[int, int]]:
        """Checks and applies a refund of ``amount`` points of the redemption ``record`` presents; returns the
        (epoch, points) given back, newest part first after what earlier refunds took (an expired epoch's
        expire at once)."""
        self._not_paused()
        pid, partner = self._operating(operator)  # no right to accept needed
        self._check_amount(amount)
        redemption = self.redemptions.get((pid, record.ref))
        if (
            len(record.epochs) != len(record.amounts)
            or redemption is None
            or (record.customer, record.value, tuple(zip(record.epochs, record.amounts, strict=True)))
            != redemption
        ):
            raise Rejected("LedgerRedemptionNotFound", pid, record.ref)
        redeemed = sum(record.amounts)
        refunded = self.refunded.get((pid, record.ref), 0)
        if amount > redeemed - refunded:
            raise Rejected("LedgerRefundExceedsRedemption", record.ref, redeemed, refunded, amount)
        self._check_reference(self.used_refund_refs, pid, refund_ref)
        self.refunded[pid, record.ref] = refunded + amount
        self.used_refund_refs.add((pid, refund_ref))
        given, skip, left = [], refunded, amount
        for epoch, part in reversed(redemption.parts):
            take = min(max(part - skip, 0), left)
            skip = max(skip - part, 0)
            if take:
                given.append((epoch, take))
                left -= take
        assert left == 0
        restored = sum(take for epoch, take in given if not self.is_expired(epoch))
        partner.refunded += amount
        partner.refunded_value += amount * record.value
        self.total_refunded += amount
        customer = record.customer
        self._emit(
            "RedemptionRefunded", pid, customer, SEQ, record.ref, refund_ref, amount, restored, record.value
        )
        holder = self.holder_of(customer, shorten=True)  # a refund follows the customer's migrations
        for epoch, take in given:
            if self.is_expired(epoch):  # never reaches the balance: expired on arrival
                self._emit("PointsRefunded", pid, holder, SEQ, epoch, take, refund_ref)
                self.total_expired += take
                self._emit("PointsExpired", holder, SEQ, epoch, take)
            else:
                self._credit(holder, epoch, take)
                self._emit("PointsRefunded", pid, holder, SEQ, epoch, take, refund_ref)
        return given

    def migrate(
        self, origin: str, to: str, nonce: int, deadline: int, origin_signer: str, to_signer: str
    ) -> None:
        """migrateAccount signed by ``origin_signer`` (for ``origin``) and ``to_signer`` (for ``to``)."""
        self._not_paused()
        self._check_accounts(origin, to)  # first: a consent to or from the zero address is never looked at
        self._check_target(origin, to)
        if self.now > deadline:
            raise Rejected("LedgerExpiredSignature", deadline)
        for account, signer in ((origin, origin_signer), (to, to_signer)):
            if signer != account:
                raise Rejected("LedgerInvalidSigner", account, signer)
        self._check_nonce(origin, nonce)
        self._check_holds(origin)
        self._use_nonce(origin, nonce)
        self._migrate(origin, to, nonce, recovery=False)

    def recover(self, sender: str, lost: str, to: str) -> None:
        """recoverAccount by ``sender``."""
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        self._not_paused()
        self._check_accounts(lost, to)
        self._check_target(lost, to)
        self._check_holds(lost)
        self._migrate(lost, to, 0, recovery=True)

    @staticmethod
    def _check_accounts(origin: str, to: str) -> None:
        if ZERO_ADDRESS in (origin, to) or origin == to:
            raise Rejected("LedgerInvalidMigration", origin, to)

    def _check_target(self, origin: str, to: str) -> None:
        if to in self.successors:  # an account that migrated away is retired: never a target (no cycles)
            raise Rejected("LedgerInvalidMigration", origin, to)

    def _check_holds(self, origin: str) -> None:
        if self.balance(origin) == 0:
            raise Rejected("LedgerInsufficientBalance", origin, 0, 1)

    def _migrate(self, origin: str, to: str, nonce: int, *, recovery: bool) -> None:
        self.successors[origin] = to
        self._emit("AccountMigrated", origin, to, SEQ, nonce, recovery, self.balance(origin))
        for epoch in self.live_epochs():
            held = self.at_epoch(origin, epoch)
            if held:
                self._move(origin, to, epoch, held)

    def revoke(self, customer: str, nonce: int) -> None:
        """revokeConsent by the customer itself (works while paused)."""
        self._use_nonce(customer, nonce)
        self._emit("ConsentRevoked", customer, SEQ, nonce)

    def cancel(self, customer: str, nonce: int, signer: str) -> None:
        """cancelConsent with ``signer``'s signature over the customer's cancellation (works while paused)."""
        if signer != customer:
            raise Rejected("LedgerInvalidSigner", customer, signer)
        self.revoke(customer, nonce)

    def sweep(self, accounts: list[str]) -> int:
        self._not_paused()
        swept = 0
        for account in accounts:
            # the contract walks an account's buckets in slot order: epoch % VALIDITY
            for epoch in sorted(self.holdings(account), key=lambda e: e % VALIDITY):
                if self.is_expired(epoch):
                    swept += self.holdings(account)[epoch]
                    self._expire(account, epoch)
        return swept

    def _move(self, sender: str, to: str, epoch: int, amount: int) -> None:
        self._debit(sender, epoch, amount)
        self._credit(to, epoch, amount)
        self._emit("PointsTransferred", sender, to, SEQ, epoch, amount)

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

    # ------------------------------------------------------------ operations: the registry

    def _set_allowance(self, pid: int, partner: PartnerModel, allowance: int) -> None:
        self._emit("PartnerAllowanceChanged", pid, SEQ, partner.allowance, allowance)
        partner.allowance = allowance

    def increase_allowance(self, sender: str, pid: int, amount: int) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        partner = self._live(pid)
        if amount == 0:
            raise Rejected("LedgerZeroAmount")
        room = MAX_ALLOWANCE - partner.allowance
        if amount > room:
            raise Rejected("LedgerAmountTooLarge", amount, room)
        self._set_allowance(pid, partner, partner.allowance + amount)

    def decrease_allowance(self, sender: str, pid: int, amount: int) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE, TREASURY_ROLE)
        partner = self._existing(pid)
        if amount == 0:
            raise Rejected("LedgerZeroAmount")
        if amount > partner.allowance:
            raise Rejected("LedgerAllowanceExceeded", pid, partner.allowance, amount)
        self._set_allowance(pid, partner, partner.allowance - amount)

    def set_rights(self, sender: str, pid: int, can_issue: bool, can_accept: bool) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        partner = self._live(pid)
        partner.can_issue, partner.can_accept = can_issue, can_accept
        self._emit("PartnerRightsChanged", pid, SEQ, can_issue, can_accept)

    def _set_status(self, pid: int, partner: PartnerModel, status: Status) -> None:
        partner.status = status
        self._emit("PartnerStatusChanged", pid, SEQ, int(status))

    def suspend(self, sender: str, pid: int) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE, PAUSER_ROLE)
        partner = self._existing(pid)
        self._require_active(pid, partner)
        self._set_status(pid, partner, Status.SUSPENDED)

    def reactivate(self, sender: str, pid: int) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        partner = self._live(pid)
        if partner.status != Status.SUSPENDED:
            raise Rejected("LedgerPartnerNotSuspended", pid)
        self._set_status(pid, partner, Status.ACTIVE)

    def offboard(self, sender: str, pid: int) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        partner = self._live(pid)
        if partner.allowance:
            self._set_allowance(pid, partner, 0)  # the allowance dropped, its own entry
        self._set_status(pid, partner, Status.OFFBOARDED)

    def set_transfers_enabled(self, sender: str, enabled: bool) -> None:
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        self.transfers_enabled = enabled
        self._emit("TransfersEnabledChanged", SEQ, enabled)

    def rotate(self, sender: str, pid: int, new_operator: str) -> None:
        partner = self._existing(pid)
        by_self = sender == partner.operator and partner.status == Status.ACTIVE
        if not by_self and sender not in self.roles[DEFAULT_ADMIN_ROLE]:
            raise Rejected("LedgerUnauthorizedRotation", sender, pid)
        if partner.status == Status.OFFBOARDED:
            raise Rejected("LedgerPartnerOffboarded", pid)
        self._check_new_operator(new_operator)
        previous = partner.operator
        self.former[previous] = pid
        partner.operator = new_operator
        self._emit("PartnerOperatorChanged", pid, new_operator, SEQ, previous)

    def grant(self, sender: str, role: bytes, account: str) -> bool:
        """grantRole; returns whether it added an entry (granting a role already held does not)."""
        if role == DEFAULT_ADMIN_ROLE:
            raise Rejected("AccessControlEnforcedDefaultAdminRules")
        self._check_role(sender, DEFAULT_ADMIN_ROLE)
        operated = self.operator_ids().get(account)
        if operated is not None:
            raise Rejected("LedgerOperatorCannotHoldRole", account, operated)
        if account in self.roles[role]:
            return False
        self.roles[role].add(account)
        self._emit("RoleChanged", role, account, SEQ, True, sender)
        return True

    # ------------------------------------------------------------ operations: the treasury and the pauser

    def set_settlement_value(self, sender: str, value: int) -> None:
        self._check_role(sender, TREASURY_ROLE)
        if value > MAX_SETTLEMENT_VALUE:
            raise Rejected("LedgerInvalidSettlementValue", value, MAX_SETTLEMENT_VALUE)
        previous, self.settlement_value = self.settlement_value, value
        self._emit("SettlementValueChanged", SEQ, previous, value)

    def record_settlement(self, sender: str, pid: int, points: int, value: int, ref: bytes) -> None:
        self._check_role(sender, TREASURY_ROLE)
        partner = self._existing(pid)
        if points == 0 and value == 0:
            raise Rejected("LedgerZeroAmount")
        for amount, limit in ((points, MAX_SETTLED_POINTS), (value, MAX_SETTLED_VALUE)):
            if abs(amount) > limit:  # type(int256).min too: its magnitude, 2^255, is reported exactly
                raise Rejected("LedgerAmountTooLarge", abs(amount), limit)
        self._check_reference(self.used_settlement_refs, pid, ref)
        self.used_settlement_refs.add((pid, ref))
        partner.settled_points += points
        partner.settled_value += value
        self._emit("SettlementRecorded", pid, SEQ, points, value, ref)

    def pause(self, sender: str) -> None:
        self._check_role(sender, PAUSER_ROLE)
        self._not_paused()
        self.paused_at = self.now
        self._emit("PauseChanged", SEQ, True, self.paused_total)

    def unpause(self, sender: str) -> None:
        self._check_role(sender, PAUSER_ROLE)
        if self.paused_at is None:
            raise Rejected("ExpectedPause")
        self.paused_total += self.now - self.paused_at
        self.paused_at = None
        self.pauses.append((self.now, self.paused_total))
        self._emit("PauseChanged", SEQ, False, self.paused_total)

    def window_closes_at(self, issued_at: int) -> int:
        """The last second of the reversal window of an issuance made at ``issued_at``: the window, extended
        by the time the ledger spent paused since (it stands still while nobody may reverse)."""
        before = max((total for resumed_at, total in self.pauses if resumed_at <= issued_at), default=0)
        return issued_at + self.reversal_window + self.paused_total - before


# =========================================================================== one deployment for all examples


@dataclass
class World:
    """One ledger deployed for the whole module on its own anvil, and the snapshot every example starts
    from (anvil consumes a snapshot when it reverts to it: each example takes the next one)."""

    ledger: Ledger
    raw: RawLedger
    entries: Entries
    snapshot: str
    domain: bytes
    customers: list[LocalAccount]
    holders: list[str]
    accounts: list[str]  # customers' addresses, then holders
    keys: dict[str, LocalAccount]  # every account's key (the holders': the node's dev keys)
    spares: list[str]  # unused keys, impersonated and funded
    baseline: Model  # the ledger at the snapshot
    head: bytes  # the hash chain rebuilt from every log up to the snapshot
    examples: int = 0  # examples started

    def restart(self) -> Model:
        """Reverts the chain to the snapshot (and takes it again); returns the model of that state."""
        self.examples += 1
        assert self.raw.rpc.request("evm_revert", [self.snapshot]) is True
        self.snapshot = self.raw.rpc.request("evm_snapshot")
        return copy.deepcopy(self.baseline)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """The ledger with points of epochs 0, 1 and 2 on every account, two redemptions, and the clock at the
    first second of epoch 3, then a snapshot: two epochs of live points to spend and move, expired points to
    sweep, issuances whose reversal window is open or closed, a redemption to refund partly into an expired
    epoch and one wholly."""
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    with start_anvil(ROOT, extra_args=("--accounts", "12")) as running:
        rpc = JsonRpc(running.url)
        try:
            yield _build_world(AnvilNode(running.w3), rpc)
        finally:
            rpc.close()


def _build_world(node: AnvilNode, rpc: JsonRpc) -> World:
    rpc.request("anvil_setBlockTimestampInterval", [1])  # every block one second after its parent
    ledger = deploy_ledger(node, epoch_length=EPOCH_LENGTH, validity=VALIDITY)
    assert ledger.call("reversalWindow") == REVERSAL_WINDOW
    raw = RawLedger(rpc, ledger.address, ledger.artifact.abi, ledger.decoder)
    actors = ledger.actors
    customers = [new_customer() for _ in range(N_CUSTOMERS)]
    spares = [Account.create().address for _ in range(N_SPARES)]
    for address in [c.address for c in customers] + spares:
        rpc.request("anvil_setBalance", [address, hex(10**24)])
        rpc.request("anvil_impersonateAccount", [address])
    holders = [actors.customer, actors.stranger, node.accounts[9]]
    assert len(holders) == N_HOLDERS
    accounts_ = [c.address for c in customers] + holders
    keys = {c.address: c for c in customers} | {
        a: k for a, k in anvil_keys(len(node.accounts)).items() if a in holders
    }
    assert sorted(keys) == sorted(accounts_), "the node's accounts are not the dev mnemonic's"
    genesis = ledger.call("genesisTimestamp")

    def timestamp(receipt: Any) -> int:
        return int(node.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    issuances: dict[tuple[int, bytes], Issuance] = {}
    for epoch in range(VALIDITY):
        if epoch:
            raw.travel(genesis + epoch * EPOCH_LENGTH)
        assert ledger.call("currentEpoch") == epoch
        points = [10 * (epoch + 1) + i for i in range(N_ACCOUNTS)]
        item_refs = [f"setup {epoch} item {i}".encode().ljust(32, b"\x00") for i in range(N_ACCOUNTS)]
        receipt = ledger.transact(
            "issueBatch", accounts_, points, item_refs, 0, ZERO_HASH, sender=actors.partner
        )
        (header,) = ledger.events(receipt, "PointsBatchIssued")
        items = [BatchItem(*item) for item in zip(accounts_, points, item_refs, strict=True)]
        issuance = Issuance.of(ACTIVE, None, items, epoch, timestamp(receipt), header["args"]["value"])
        assert header["args"]["ref"] == issuance.root, "chain._merkle's root is not the contract's"
        issuances[ACTIVE, issuance.ref] = issuance
    # Two redemptions in epoch 2: over all three epochs at ACTIVE, and of epoch 0 only at ACCEPT_ONLY
    # (expired at the snapshot: a refund of it expires at once).
    redemptions: dict[tuple[int, bytes], Redemption] = {}
    for customer, pid, sender, amount in (
        (customers[0], ACTIVE, actors.partner, 35),
        (customers[1], ACCEPT_ONLY, actors.accept_only, 5),
    ):
        ref = f"setup redemption {pid}".encode().ljust(32, b"\x00")
        receipt = ledger.redeem(customer, amount, sender=sender, partner_id=pid, ref=ref)
        parts = [(e["args"]["epoch"], e["args"]["amount"]) for e in ledger.events(receipt, "PointsRedeemed")]
        value = ledger.events(receipt, "PointsRedeemed")[0]["args"]["value"]
        redemptions[pid, ref] = Redemption(customer.address, value, tuple(parts))
    assert [len(r.parts) for r in redemptions.values()] == [3, 1]
    held: dict[str, dict[int, int]] = {}
    for account in accounts_:
        epochs, amounts = ledger.call("liveBalances", account)  # epochs 0, 1 and 2: all live in epoch 2
        held[account] = dict(zip(epochs, amounts, strict=True))
    for pid, allowance in INITIAL_ALLOWANCE.items():
        cut = ledger.call("partner", pid)[6] - allowance
        ledger.transact("decreasePartnerAllowance", pid, cut, sender=actors.treasury)
    ledger.transact("setTransfersEnabled", True, sender=actors.admin)
    raw.travel(genesis + VALIDITY * EPOCH_LENGTH)

    partners = {}
    for pid in INITIAL_ALLOWANCE:
        view = ledger.call("partner", pid)
        partners[pid] = PartnerModel(view[1], view[2], Status(view[3]), *view[4:])
    assert partners[SUSPENDED].status == Status.SUSPENDED
    roles = {
        DEFAULT_ADMIN_ROLE: {actors.admin},
        TREASURY_ROLE: {actors.treasury},
        PAUSER_ROLE: {actors.pauser},
    }
    baseline = Model(
        genesis=genesis,
        now=genesis + VALIDITY * EPOCH_LENGTH,
        partners=partners,
        seq=ledger.call("ledgerSequence"),
        transfers_enabled=True,
        settlement_value=ledger.call("settlementValue"),
        roles=roles,
        reversal_window=REVERSAL_WINDOW,
        held=held,
        issuances=issuances,
        redemptions=redemptions,
        nonces={(customers[0].address, ACTIVE): 1, (customers[1].address, ACCEPT_ONLY): 1},
        total_issued=ledger.call("totalIssued"),
        total_redeemed=ledger.call("totalRedeemed"),
    )
    assert baseline.total_issued == partners[ACTIVE].issued
    assert baseline.total_issued - baseline.total_redeemed == sum(sum(h.values()) for h in held.values())
    assert baseline.epoch == VALIDITY == ledger.call("currentEpoch")

    # The hash chain from every log since the deployment: it must be the contract's, and number its entries.
    entries = Entries(ledger.address, ledger.artifact.abi)
    logs = rpc.request("eth_getLogs", [{"address": ledger.address, "fromBlock": "0x0", "toBlock": "latest"}])
    decoded, head = entries.read(logs, ZERO_HASH)
    assert head == bytes(ledger.call("ledgerHead"))
    assert [fields["seq"] for _, fields in decoded] == list(range(1, baseline.seq + 1))

    chain_id = node.w3.eth.chain_id
    domain = domain_separator(chain_id, ledger.address)
    probe = (customers[0].address, ACTIVE, 5, b"\x07" * 32, ACTIVE << 64 | 3, DEADLINE)
    assert redemption_digest(domain, *probe) == ledger.call("redemptionDigest", *probe)
    assert cancellation_digest(domain, *probe[0:5:4]) == ledger.call("cancellationDigest", *probe[0:5:4])
    migration = (customers[0].address, holders[0], BIG_KEY << 64 | 3, DEADLINE)
    assert migration_digest(domain, *migration) == ledger.call("migrationDigest", *migration)
    return World(
        ledger=ledger,
        raw=raw,
        entries=entries,
        snapshot=rpc.request("evm_snapshot"),
        domain=domain,
        customers=customers,
        holders=holders,
        accounts=accounts_,
        keys=keys,
        spares=spares,
        baseline=baseline,
        head=head,
    )


# =========================================================================== the state machine

SCALAR_VIEWS = [
    "currentEpoch",
    "ledgerClock",
    "pausedDuration",
    "paused",
    "outstandingSupply",
    "totalIssued",
    "totalRedeemed",
    "totalReversed",
    "totalRefunded",
    "totalExpired",
    "pendingExpiry",
    "ledgerSequence",
    "ledgerHead",
    "transfersEnabled",
    "settlementValue",
    "coalitionPosition",
    "coalitionOpenPosition",
]
PARTNER_VIEWS = ["partner", "partnerPosition", "partnerOpenPosition"]
# partner(id): where its counters sit in the PartnerView
ISSUED, REDEEMED, ISSUED_VALUE, REDEEMED_VALUE, REVERSED, REFUNDED, REVERSED_VALUE, REFUNDED_VALUE = range(
    7, 15
)
SETTLED_POINTS, SETTLED_VALUE = 15, 16

# Hypothesis shrinks towards the first element, so the common, successful choices come first.
FORMER = -1  # issuer or acceptor: a key rotated away from its partner (see LedgerMachine._operator)
# FORMER twice: a key rotated away exists only after a rotation, late in an example
ISSUERS = [ACTIVE, ISSUE_ONLY, ACTIVE, FORMER, ISSUE_ONLY, ACTIVE, SUSPENDED, ACCEPT_ONLY, FORMER, 0]
ACCEPTORS = [ACTIVE, ACCEPT_ONLY, ACTIVE, FORMER, ACCEPT_ONLY, ACTIVE, SUSPENDED, ISSUE_ONLY, FORMER, 0]
PARTNER_IDS = [SUSPENDED, ACTIVE, ISSUE_ONLY, ACCEPT_ONLY, NO_PARTNER]
NONCE_KEYS = [ACTIVE, ACCEPT_ONLY, 0, BIG_KEY]


# Named functions, not lambdas, in the strategies: Hypothesis parses a lambda's source to describe it.
def _as_ref(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _as_amount(n: int) -> int:
    return n + 1 if n < 400 else 0 if n < 410 else MAX_AMOUNT + 1


accounts = st.integers(0, N_ACCOUNTS - 1)
# customers (who redeem) a little more often than holders, and now and then the zero address
recipients = st.sampled_from([*range(N_ACCOUNTS)] * 2 + [*range(N_CUSTOMERS), ZERO])
holders = st.integers(0, N_HOLDERS - 1)
customers = st.integers(0, N_CUSTOMERS - 1)
# small numbers collide often: references get reused, within and across partners and namespaces
refs = (st.integers(0, 15) | st.integers(0, 2**64)).map(_as_ref)
# a batch item's reference: few, so that the same items come again
item_refs = st.integers(0, 3).map(_as_ref)
# 1..400, and now and then 0 or MAX_AMOUNT + 1 (Hypothesis favours small draws: 0 maps to 1)
amounts = st.integers(0, 419).map(_as_amount)
values = st.integers(0, 500)
# how a redeemed or transferred amount relates to what is available (see amount_for)
sizes = st.sampled_from(["part", "all", "one more", "any"])
# how a reversed or refunded amount relates to what is left of the item or the redemption
returned_sizes = st.sampled_from(["part", "all", "part", "all", "one more", "any"])
# which nonce a consent names: the next one of its key, or one already used (a replay), or one ahead
nonce_choices = st.sampled_from(["next", "next", "used", "ahead"])
# the key of a redemption consent: the accepting partner's id (the chain layer's default) or another
consent_keys = st.sampled_from(["partner", "zero", "other partner", "big"])
# an earlier issuance or redemption, counted back from the latest (0): mostly a recent one
backs = st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3, 5, 8, 13])
# who reverses an issuance or refunds a redemption: its partner's current key, or another partner's, or a
# key rotated away (while there is none: the active partner's), or a key that operates no partner
returners = st.sampled_from(["own"] * 7 + ["other", "suspended", "former", "stranger"])
# what a reversal presents otherwise than its issuance recorded (mostly nothing)
issuance_tampers = st.sampled_from(
    ["none"] * 14 + ["proof", "as a single issue", "amount", "customer", "epoch", "issuedAt", "value"]
)
# what a refund presents otherwise than its redemption recorded (mostly nothing)
redemption_tampers = st.sampled_from(["none"] * 10 + ["part", "drop", "length", "value", "customer"])
# when a reversal is sent (see ReturnOrder)
reversal_times = st.sampled_from(
    ["now"] * 4
    + ["now, any", "after a transfer", "after spending", "after spending all"]
    + ["as the window closes", "once it closed"]
)

# who sends an administration call: the admin; "other": the other role that may do it too (the
# treasury cuts allowances, the pauser suspends); "unauthorised": a role holder that may not
whos = st.sampled_from(["usual", "usual", "usual", "other", "unauthorised"])

# a key to rotate to or grant a role to: one never used, a role holder, another partner's operator, a
# key rotated away (while there is none: the partner's own), the zero address, a spare key granted a role
key_choices = st.sampled_from(
    ["spare", "spare", "spare", "role holder", "spare", "operator", "former", "zero", "granted"]
)


def amount_for(size: str, value: int, available: int) -> int:
    """``value`` cut to a part of ``available`` (1 .. available), all of it, one more than it, or as is."""
    if size == "part":
        return 1 + value % available if available else value
    if size == "all":
        return available
    return available + 1 if size == "one more" else value


def nonce_for(choice: str, next_nonce: int) -> int:
    """The next keyed nonce, the one before it (used, or revoked) or the one after it."""
    sequence = next_nonce & (2**64 - 1)
    if choice == "used" and sequence:
        return next_nonce - 1
    return next_nonce if choice == "next" else next_nonce + 1


def tampered_issuance(item: IssuanceItem, how: str, other: str) -> IssuanceItem:
    """``item`` with one field its issuance did not record (``other``: another account)."""
    if how == "proof":  # a sibling dropped, or one too many
        return item._replace(proof=item.proof[:-1] if item.proof else (b"\x05" * 32,))
    if how == "as a single issue":  # a batch item presented under its own reference, without its proof
        return item._replace(ref=item.item_ref, proof=())
    changes: dict[str, Any] = {
        "amount": {"amount": item.amount + 1},
        "customer": {"customer": other},
        "epoch": {"epoch": item.epoch + 1},
        "issuedAt": {"issued_at": item.issued_at + 1},
        "value": {"value": item.value + 1},
    }[how]
    return item._replace(**changes)


def tampered_redemption(record: RedemptionRecord, how: str, other: str) -> RedemptionRecord:
    """``record`` with one thing its redemption did not record (``other``: another account)."""
    if how == "part":
        return record._replace(amounts=(record.amounts[0] + 1, *record.amounts[1:]))
    if how == "drop":  # its last part left out
        return record._replace(epochs=record.epochs[:-1], amounts=record.amounts[:-1])
    if how == "length":  # an epoch more than amounts
        return record._replace(epochs=(*record.epochs, record.epochs[-1] + 1))
    if how == "value":
        return record._replace(value=record.value + 1)
    return record._replace(customer=other)


class IssueOrder(NamedTuple):
    issuer: int  # a partner id, FORMER, or 0 for an account that operates no partner
    to: int  # an account index, or ZERO
    amount: int
    ref: bytes


# The rules of returns, refunds and migrations take their arguments as one tuple: Hypothesis sorts rules with
# fewer arguments first, and picks those more often.
class ReturnOrder(NamedTuple):
    back: int  # which issuance (see backs)
    index: int  # which of its items
    who: str  # who sends it (see returners)
    amount: tuple[int, str]  # (value, size): see amount_for
    tamper: str  # the field presented otherwise than recorded, or "none"
    # "now" (an issuance whose window is open), "now, any"; "after a transfer" (of what the customer holds of
    # the issuance's epoch: the rest comes from its other epochs), "after spending" (most of its points: less
    # is recovered than requested), "after spending all" (nothing is); mined at the window's last second ("as
    # the window closes") or one second after ("once it closed")
    when: str
    return_ref: bytes
    then: str  # what follows a reversal that went through: "nothing", or "same ref" (another point under it)


class RefundOrder(NamedTuple):
    back: int  # which redemption (see backs)
    who: str  # who sends it (see returners)
    amount: tuple[int, str]  # (value, size): see amount_for
    tamper: str  # what is presented otherwise than recorded, or "none"
    refund_ref: bytes
    then: str  # what follows a refund that went through: "nothing", "same ref", "another part"
    moved: bool  # whether the admin first recovers the customer's account to another (the refund follows)


class MigrationOrder(NamedTuple):
    origin: int  # an account index
    dest: int  # an account index, or ZERO
    signed: str  # "both", or which signature is by the wrong key
    consent: tuple[int, str]  # (nonce key, nonce choice)
    deadline: str  # "far", "this block" (the last second it is valid), "last block" (expired)
    then: str  # what follows a migration that went through: "nothing", "replay", "again"
    submitter: int  # the holder who sends it


return_orders = st.builds(
    ReturnOrder,
    backs,
    st.integers(0, 4),
    returners,
    st.tuples(values, returned_sizes),
    issuance_tampers,
    reversal_times,
    refs,
    st.sampled_from(["nothing", "nothing", "nothing", "same ref"]),
)
refund_orders = st.builds(
    RefundOrder,
    backs,
    returners,
    st.tuples(values, returned_sizes),
    redemption_tampers,
    refs,
    st.sampled_from(["nothing", "nothing", "same ref", "another part"]),
    st.sampled_from([False, False, False, True]),
)


#: What the runs exercised ("issue: ok", "redeem: LedgerInsufficientBalance", "expiry on credit", ...).
OUTCOMES: Counter[str] = Counter()


class LedgerMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.model = self.world.restart()
        self.head: bytes | None = None
        self.seq = -1
        self.log_head = self.world.head  # the hash chain rebuilt from the logs of every transaction
        self.verified = False  # whether the invariant has passed since the last step began
        self.rejected = False  # whether the last step was a transaction that reverted

    # ------------------------------------------------------------ helpers

    @property
    def actors(self) -> Any:
        return self.world.ledger.actors

    def _travel(self, timestamp: int) -> None:
        self.world.raw.travel(timestamp)
        self.model.now = timestamp

    def _account(self, index: int) -> str:
        return ZERO_ADDRESS if index == ZERO else self.world.accounts[index]

    def _operator(self, pid: int) -> str:
        if pid == FORMER:  # a key rotated away; while there is none, the active partner's key
            return next(iter(self.model.former), self.model.partners[ACTIVE].operator)
        return self.model.partners[pid].operator if pid else self.actors.stranger

    def _returner(self, who: str, pid: int) -> str:
        """The key that reverses or refunds an entry of partner ``pid`` (see ``returners``)."""
        if who == "own":
            return self.model.partners[pid].operator
        if who == "other":
            return self.model.partners[ACTIVE if pid != ACTIVE else ISSUE_ONLY].operator
        if who == "suspended":  # while it is
            return self.model.partners[SUSPENDED].operator
        return self._operator(FORMER if who == "former" else 0)

    def _expect(self, model_op: Callable[[], object], fn: str, *args: Any, sender: str) -> bool:
        """Applies ``model_op`` to the model (at the time of the block the transaction will be mined in)
        and sends ``fn(*args)``: both succeed with the same ledger entries, or both revert alike.

        Returns whether they succeeded. The invariant then checks that a reverted operation changed nothing.
        """
        self.verified = False
        self.rejected = False
        model = self.model
        expired, seq = model.total_expired, model.seq
        model.entries.clear()
        model.now += 1  # anvil stamps each block one second after its parent
        try:
            model_op()
            expected: Rejected | None = None
        except Rejected as rejected:
            expected = rejected
            assert model.seq == seq and not model.entries, "model: a rejected operation added entries"
        try:
            logs = self.world.raw.transact(fn, *args, sender=sender)
        except ContractRevert as revert:
            assert expected is not None, f"{fn} reverted with {revert}; the model expected success"
            assert (revert.name, revert.arguments) == (expected.name, expected.arguments), (
                f"{fn} reverted with {revert}; the model expected {expected.name}{expected.arguments}"
            )
            OUTCOMES[f"{fn}: {revert.name}"] += 1
            OUTCOMES["a rotated-away key refused"] += revert.name == "LedgerRotatedOperator"
            self.rejected = True
            return False
        assert expected is None, f"{fn} succeeded; the model expected {expected.name}{expected.arguments}"
        entries, self.log_head = self.world.entries.read(logs, self.log_head)
        if not same_entries(entries, model.entries):
            raise AssertionError(
                f"{fn}: the entries emitted are not the model's:\n"
                + "\n".join(
                    f"  chain {a}\n  model {b}" for a, b in itertools.zip_longest(entries, model.entries)
                )
            )
        OUTCOMES[f"{fn}: ok"] += 1
        if model.total_expired > expired:
            OUTCOMES["expiry by sweep" if fn == "sweepExpired" else "expiry on credit"] += 1
        return True

    # ------------------------------------------------------------ rules: partners

    # A single argument sorts this rule first among the rules, which Hypothesis picks most often.
    @rule(order=st.builds(IssueOrder, st.sampled_from(ISSUERS), recipients, amounts, refs))
    def issue(self, order: IssueOrder) -> None:
        self._issue(order.issuer, self._account(order.to), order.amount, order.ref)

    def _issue(self, issuer: int, recipient: str, amount: int, ref: bytes) -> bool:
        operator = self._operator(issuer)
        return self._expect(
            lambda: self.model.issue(operator, recipient, amount, ref, 1, ZERO_HASH),
            "issue",
            recipient,
            amount,
            ref,
            1,
            ZERO_HASH,
            sender=operator,
        )

    @rule(issuer=st.sampled_from(ISSUERS), back=backs, to=recipients, amount=amounts)
    def issue_under_a_batch_root(self, issuer: int, back: int, to: int, amount: int) -> None:
        """A single issue whose reference is an earlier batch's root: refused for that batch's partner (one
        namespace), accepted for another."""
        batches = [issuance for issuance in self.model.issuances.values() if issuance.batch]
        root = batches[-1 - back % len(batches)]
        if not self._issue(issuer, self._account(to), amount, root.ref):
            OUTCOMES["issue: refused under a batch root"] += self.rejected
        else:
            OUTCOMES["issue: ok under another partner's batch root"] += 1

    @rule(
        issuer=st.sampled_from(ISSUERS),
        items=st.lists(st.tuples(recipients, st.integers(0, 300), item_refs), max_size=4),
        how=st.sampled_from(["new"] * 5 + ["again", "again elsewhere", "root taken", "lengths"]),
        back=backs,
    )
    def issue_batch(self, issuer: int, items: list[tuple[int, int, bytes]], how: str, back: int) -> None:
        """A batch of new items; or the items of an earlier batch again (refused for its partner: the same
        root), sent by ``issuer`` or ("elsewhere") by the other partner that issues; or, after a single issue
        under the root a one-item batch will have, that batch (refused); or item references one fewer or one
        more than recipients."""
        operator = self._operator(issuer)
        if how.startswith("again"):
            batches = [issuance for issuance in self.model.issuances.values() if issuance.batch]
            earlier = batches[-1 - back % len(batches)]
            if how == "again elsewhere":
                operator = self.model.partners[ISSUE_ONLY if earlier.pid == ACTIVE else ACTIVE].operator
            to, points = [i.to for i in earlier.items], [i.amount for i in earlier.items]
            refs_ = [i.item_ref for i in earlier.items]
        else:
            to = [self._account(i) for i, _, _ in items]
            points = [amount for _, amount, _ in items]
            refs_ = [ref for _, _, ref in items]
        if how == "root taken":  # one item (at least 1 point), whose leaf is the batch's root
            to, points, refs_ = to[:1] or [self.world.accounts[0]], [max([*points[:1], 1])], refs_[:1]
            refs_ = refs_ or [ZERO_HASH]
            if self._issue(issuer, to[0], points[0], leaf_hash(to[0], points[0], refs_[0])):
                self._check()  # the issue's entries, before an attempt that must change nothing
        if how == "lengths":
            refs_ = refs_[:-1] if back % 2 and refs_ else [*refs_, ZERO_HASH]
        if self._expect(
            lambda: self.model.issue_batch(operator, to, points, refs_, 2, BATCH_RULE),
            "issueBatch",
            to,
            points,
            refs_,
            2,
            BATCH_RULE,
            sender=operator,
        ):
            OUTCOMES["issueBatch: ok, items issued by another partner before"] += how.startswith("again")
        elif how != "new":
            OUTCOMES[f"issueBatch: refused, {how}"] += 1

    @rule(acceptor=st.sampled_from(ACCEPTORS), customer=customers, amount=st.tuples(values, sizes), ref=refs)
    def redeem(self, acceptor: int, customer: int, amount: tuple[int, str], ref: bytes) -> None:
        """A redemption consented at the accepting partner's nonce key with its next nonce (what the chain
        layer signs by default)."""
        self._redeem(acceptor, customer, amount, ref, ("partner", "next"))

    @rule(
        acceptor=st.sampled_from(ACCEPTORS),
        customer=customers,
        amount=st.tuples(values, sizes),
        ref=refs,
        consent=st.tuples(consent_keys, nonce_choices),
    )
    def redeem_keyed(
        self, acceptor: int, customer: int, amount: tuple[int, str], ref: bytes, consent: tuple[str, str]
    ) -> None:
        """A redemption whose consent names another key (0, another partner's id, a large one) or a nonce
        already used or revoked (a replay) or one ahead."""
        self._redeem(acceptor, customer, amount, ref, consent)

    def _redeem(
        self,
        acceptor: int,
        customer: int,
        amount: tuple[int, str] | int,
        ref: bytes,
        consent: tuple[str, str],
    ) -> bool:
        """Redeems ``amount`` points (or (value, size): see amount_for) of customer ``customer``."""
        key = self.world.customers[customer]
        operator = self._operator(acceptor)
        pid = self.model.operator_ids().get(operator, 0)  # the partner the consent is for
        balance = self.model.balance(key.address)
        points = amount if isinstance(amount, int) else amount_for(amount[1], amount[0], balance)
        nonce_key = {
            "partner": pid,
            "zero": 0,
            "other partner": ACTIVE if pid != ACTIVE else ACCEPT_ONLY,
            "big": BIG_KEY,
        }[consent[0]]
        nonce = nonce_for(consent[1], self.model.nonce(key.address, nonce_key))
        signature = sign(
            key, redemption_digest(self.world.domain, key.address, pid, points, ref, nonce, DEADLINE)
        )
        spent: list[tuple[int, int]] = []
        if self._expect(
            lambda: spent.extend(self.model.redeem(operator, key.address, points, ref, nonce)),
            "redeem",
            key.address,
            points,
            ref,
            nonce,
            DEADLINE,
            signature,
            sender=operator,
        ):
            OUTCOMES["redeem over several epochs"] += len(spent) > 1
            OUTCOMES["redeem: ok at a key not the partner's"] += nonce_key != pid
            return True
        return False

    # ------------------------------------------------------------ rules: returns and refunds

    @rule(order=return_orders)
    def reverse_issuance(self, order: ReturnOrder) -> None:
        """The partner reverses part of an earlier issuance (a single issue, or a batch item with its proof):
        a part of what is left of the item, all of it, one more, or any amount; presented as recorded or
        with one field changed; by its own key, another partner's, a suspended partner's, a rotated-away key
        or a stranger; mostly of an issuance whose window is open (while there is one), "now, any": of any
        issuance; after the customer moved or spent its points, or at the edge of the window (see
        ReturnOrder.when); if it went through, then maybe one point more under the same return reference."""
        back, index, who, amount, tamper, when, return_ref, then = order
        model = self.model
        issuances = list(model.issuances.values())
        if when != "now, any":
            is_open = [i for i in issuances if model.window_closes_at(i.issued_at) > model.now]
            issuances = is_open or issuances
        issuance = issuances[-1 - back % len(issuances)]
        item = issuance.item(index)
        other = self.world.accounts[(self.world.accounts.index(item.customer) + 1) % N_ACCOUNTS]
        if tamper != "none":
            item = tampered_issuance(item, tamper, other)
        operator = self._returner(who, issuance.pid)
        left = item.amount - model.reversed.get((issuance.pid, item.ref, leaf_hash(*item[1:4])), 0)
        # after the customer spent its points: all that is left of the item, which it no longer holds whole
        points = left if when.startswith("after") else amount_for(amount[1], amount[0], left)
        if when.endswith("closes") or when.endswith("closed"):  # mined at the window's last second, or after
            at = model.window_closes_at(item.issued_at) + (when == "once it closed")
            if at - 1 > model.now:
                self._travel(at - 1)
        holder = model.holder_of(item.customer)  # the customer, or where its migrations led
        if when == "after a transfer":
            spent = self._spend(holder, item.epoch, of_epoch=True)
        else:
            keep = points // 2 if when == "after spending" else 0
            spent = when.startswith("after spending") and self._spend(holder, keep)
        if spent:
            self._check()  # the spending's entries, before the reversal
        taken: list[tuple[int, int]] = []
        if self._expect(
            lambda: taken.extend(model.reverse(operator, item, points, return_ref)),
            "reverseIssuance",
            item,
            points,
            return_ref,
            sender=operator,
        ):
            recovered = sum(take for _, take in taken)
            OUTCOMES["reversal of a batch item"] += issuance.batch
            OUTCOMES["reversal followed the customer's migration"] += holder != item.customer
            OUTCOMES["reversal recovered less than requested"] += recovered < points
            OUTCOMES["reversal recovered nothing"] += recovered == 0
            OUTCOMES["reversal took from other epochs than the issuance's"] += any(
                e != item.epoch for e, _ in taken
            )
            OUTCOMES["reversal at its window's last second"] += model.now == model.window_closes_at(
                item.issued_at
            )
            if then == "same ref":  # refused: the return reference is used (or nothing is left to reverse)
                self._check()
                self._expect(
                    lambda: model.reverse(operator, item, 1, return_ref),
                    "reverseIssuance",
                    item,
                    1,
                    return_ref,
                    sender=operator,
                )

    @rule(order=refund_orders)
    def refund_redemption(self, order: RefundOrder) -> None:
        """The accepting partner refunds part of an earlier redemption (a part of what is left of it, all of
        it, one more, or any amount), presented as recorded or changed, by its own key or another, maybe
        after the admin recovered the customer's account to another; if it went through, then maybe one
        point more under the same refund reference, or another part under a new one."""
        back, who, amount, tamper, refund_ref, then, moved = order
        model = self.model
        (pid, ref), redemption = list(model.redemptions.items())[-1 - back % len(model.redemptions)]
        record = redemption.presented(ref)
        other = self.world.accounts[(self.world.accounts.index(record.customer) + 1) % N_ACCOUNTS]
        if tamper != "none":
            record = tampered_redemption(record, tamper, other)
        operator = self._returner(who, pid)
        redeemed = sum(take for _, take in redemption.parts)
        if moved and self._recover(model.holder_of(redemption.customer)):
            self._check()  # the recovery's entries, before the refund

        def refund(points: int, refund_ref: bytes) -> bool:
            refunded = model.refunded.get((pid, ref), 0)
            given: list[tuple[int, int]] = []
            if not self._expect(
                lambda: given.extend(model.refund(operator, record, points, refund_ref)),
                "refundRedemption",
                record,
                points,
                refund_ref,
                sender=operator,
            ):
                return False
            OUTCOMES["refund into a live epoch"] += any(not model.is_expired(e) for e, _ in given)
            OUTCOMES["refund into an expired epoch"] += any(model.is_expired(e) for e, _ in given)
            OUTCOMES["refund over several epochs"] += len(given) > 1
            OUTCOMES["refund after an earlier refund"] += refunded > 0
            OUTCOMES["refund followed the customer's migration"] += (
                model.holder_of(record.customer) != record.customer
            )
            return True

        left = redeemed - model.refunded.get((pid, ref), 0)
        if not refund(amount_for(amount[1], amount[0], left), refund_ref) or then == "nothing":
            return
        self._check()
        if then == "same ref":
            refund(1, refund_ref)  # refused: the reference is used (or nothing is left to refund)
        else:
            left = redeemed - model.refunded.get((pid, ref), 0)
            refund(amount_for("part", amount[0], left), b"another part".rjust(32, b"\x00"))

    def _spend(self, account: str, epoch_or_keep: int, *, of_epoch: bool = False) -> bool:
        """Before a reversal: ``account`` moves what it holds of epoch ``epoch_or_keep`` to the next account
        (``of_epoch``), or spends all but ``epoch_or_keep`` points (a customer redeems them at the active
        partner, a holder transfers them). Returns whether that went through."""
        model, everyone = self.model, self.world.accounts
        to = everyone[(everyone.index(account) + 1) % N_ACCOUNTS]
        if of_epoch:
            epoch, held = epoch_or_keep, model.at_epoch(account, epoch_or_keep)
            return self._expect(
                lambda: model.transfer_at_epoch(account, epoch, to, held),
                "transferAtEpoch",
                epoch,
                to,
                held,
                sender=account,
            )
        spend = model.balance(account) - epoch_or_keep
        if spend <= 0:
            return False
        customers_ = [key.address for key in self.world.customers]
        if account in customers_:
            ref = b"spent".rjust(32, b"\x00")
            return self._redeem(ACTIVE, customers_.index(account), spend, ref, ("zero", "next"))
        return self._expect(lambda: model.transfer(account, to, spend), "transfer", to, spend, sender=account)

    # ------------------------------------------------------------ rules: migration and recovery

    def _recover(self, lost: str) -> bool:
        """The admin recovers ``lost`` to the next account that never migrated away."""
        model, everyone = self.model, self.world.accounts
        start = everyone.index(lost)
        targets = [everyone[(start + i) % N_ACCOUNTS] for i in range(1, N_ACCOUNTS)]
        to = next((a for a in targets if a not in model.successors), targets[0])
        admin = self.actors.admin
        return self._expect(lambda: model.recover(admin, lost, to), "recoverAccount", lost, to, sender=admin)

    @rule(
        order=st.builds(
            MigrationOrder,
            accounts,
            recipients,
            st.sampled_from(["both"] * 6 + ["to's by from", "from's by another"]),
            st.tuples(st.sampled_from(NONCE_KEYS), nonce_choices),
            st.sampled_from(["far"] * 5 + ["this block", "last block"]),
            st.sampled_from(["nothing", "nothing", "replay", "again"]),
            holders,
        )
    )
    def migrate_account(self, order: MigrationOrder) -> None:
        """Anyone submits a migration of every live point of one account to another, signed by both (or one
        signature by the wrong key), at a nonce of the origin's (the next of a key, a used one, one ahead),
        before its deadline or just after; if it went through, then maybe the same transaction again (a
        replay) or a new consent from the emptied account."""
        origin, dest, signed, consent, deadline, then, submitter = order
        model, keys = self.model, self.world.keys
        source, to = self.world.accounts[origin], self._account(dest)
        signers = {
            "both": (keys[source], keys.get(to, keys[source])),
            "to's by from": (keys[source], keys[source]),
            "from's by another": (
                keys[self.world.accounts[(origin + 1) % N_ACCOUNTS]],
                keys.get(to, keys[source]),
            ),
        }[signed]
        nonce = nonce_for(consent[1], model.nonce(source, consent[0]))
        until = {"far": DEADLINE, "this block": model.now + 1, "last block": model.now}[deadline]
        sender = self.world.holders[submitter]  # anyone may submit it

        def send(nonce: int, until: int) -> bool:
            digest = migration_digest(self.world.domain, source, to, nonce, until)
            signatures = [sign(key, digest) for key in signers]
            origin_signer, to_signer = (key.address for key in signers)
            return self._expect(
                lambda: model.migrate(source, to, nonce, until, origin_signer, to_signer),
                "migrateAccount",
                source,
                to,
                nonce,
                until,
                *signatures,
                sender=sender,
            )

        if not send(nonce, until):
            return
        OUTCOMES["migrateAccount: ok at a key not 0"] += nonce >> 64 != 0
        if then == "nothing":
            return
        self._check()
        if then == "replay":  # the same consents again: their nonce is used
            send(nonce, until)
        else:  # a fresh consent: the origin holds nothing live any more
            send(model.nonce(source, consent[0]), DEADLINE)

    @rule(
        lost=accounts,
        dest=recipients,
        who=st.sampled_from(["admin", "admin", "admin", "admin", "treasury", "pauser", "partner"]),
    )
    def recover_account(self, lost: int, dest: int, who: str) -> None:
        """The admin moves a lost key's live points to another account (or another role, or a partner,
        tries to)."""
        actors = self.actors
        sender = {
            "admin": actors.admin,
            "treasury": actors.treasury,
            "pauser": actors.pauser,
            "partner": self.model.partners[ACTIVE].operator,
        }[who]
        source, to = self.world.accounts[lost], self._account(dest)
        self._expect(
            lambda: self.model.recover(sender, source, to), "recoverAccount", source, to, sender=sender
        )

    # ------------------------------------------------------------ rules: customers, anyone, holders, time

    @rule(
        customer=customers,
        key=st.sampled_from(NONCE_KEYS),
        how=st.sampled_from(["revoke", "cancel", "revoke", "cancel", "cancel by another's key"]),
        nonce_choice=nonce_choices,
        submitter=holders,
    )
    def revoke_consent(self, customer: int, key: int, how: str, nonce_choice: str, submitter: int) -> None:
        """The customer revokes the consent with a nonce, itself or through anyone with its signature."""
        signer = self.world.customers[customer]
        address = signer.address
        nonce = nonce_for(nonce_choice, self.model.nonce(address, key))
        if how == "revoke":
            self._expect(lambda: self.model.revoke(address, nonce), "revokeConsent", nonce, sender=address)
            return
        if how == "cancel by another's key":
            signer = self.world.customers[1 - customer]
        signature = sign(signer, cancellation_digest(self.world.domain, address, nonce))
        self._expect(
            lambda: self.model.cancel(address, nonce, signer.address),
            "cancelConsent",
            address,
            nonce,
            signature,
            sender=self.world.holders[submitter],  # anyone may submit it
        )

    @rule(indices=st.lists(accounts, max_size=4), caller=holders)
    def sweep_expired(self, indices: list[int], caller: int) -> None:
        swept = [self._account(i) for i in indices]
        sender = self.world.holders[caller]  # anyone may sweep
        self._expect(lambda: self.model.sweep(swept), "sweepExpired", swept, sender=sender)

    @rule(holder=holders, to=recipients, value=values, size=sizes)
    def transfer(self, holder: int, to: int, value: int, size: str) -> None:
        sender, recipient = self.world.holders[holder], self._account(to)
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

    # offset into the target epoch: its last second before it begins (the next block then opens the epoch),
    # its first second, its middle, its last second
    @rule(
        epochs=st.integers(1, VALIDITY + 1),
        offset=st.sampled_from([0, -1, EPOCH_LENGTH // 2, EPOCH_LENGTH - 1]),
    )
    def advance_time(self, epochs: int, offset: int) -> None:
        """Moves the ledger clock to an offset into a later epoch; while paused, the same time passes on
        the wall clock and the ledger clock stands still."""
        self.verified = self.rejected = False
        model = self.model
        if model.paused:
            target = model.now + epochs * EPOCH_LENGTH + offset
            OUTCOMES["time passes while paused"] += 1
        else:
            target = model.now - model.clock + (model.epoch + epochs) * EPOCH_LENGTH + offset
            OUTCOMES["advance time"] += 1
        self._travel(max(target, model.now + 1))

    # ------------------------------------------------------------ rules: administration

    def _sender(self, action: str, who: str) -> str:
        actors = self.actors
        if who == "other":
            return {"decrease": actors.treasury, "suspend": actors.pauser}.get(action, actors.admin)
        if who == "unauthorised":
            return actors.treasury if action == "suspend" else actors.pauser
        return actors.admin

    @rule(
        action=st.sampled_from(["increase", "decrease"]),
        pid=st.sampled_from(PARTNER_IDS),
        # Half the time a small amount, so that running out of allowance (LedgerAllowanceExceeded) happens
        # in every run, not only in most; now and then 0 or the whole room of a 64-bit allowance.
        amount=(st.integers(0, 2000) | st.integers(0, 30) | st.just(MAX_ALLOWANCE)),
        who=whos,
    )
    def allowance(self, action: str, pid: int, amount: int, who: str) -> None:
        """Tops up a partner's allowance by ``amount``, or cuts it (by all that is left, one more, or a
        part); a cut is followed at once by the partner's attempt to issue one point more than it left."""
        model, sender = self.model, self._sender(action, who)
        if action == "increase":
            self._expect(
                lambda: model.increase_allowance(sender, pid, amount),
                "increasePartnerAllowance",
                pid,
                amount,
                sender=sender,
            )
            return
        left = model.partners[pid].allowance if pid in model.partners else 0
        # one more than is left, all of it, or a part (of what is left, or of nothing: 0 or more)
        cut = [left + 1, left, 1 + amount % left if left else amount % 2, 1 + amount % left if left else 1][
            amount % 4
        ]
        if self._expect(
            lambda: model.decrease_allowance(sender, pid, cut),
            "decreasePartnerAllowance",
            pid,
            cut,
            sender=sender,
        ):  # the partner tries to issue one point more than the cut left it
            self._then_issue(model.partners[pid].operator, model.partners[pid].allowance + 1)

    def _then_issue(self, operator: str, amount: int = 1, *, check: bool = True) -> None:
        """After a step's change that must take effect at once: ``operator`` tries to issue ``amount``."""
        if check:
            self._check()  # the change's entries, before an attempt that may change nothing
        to, ref = self.world.accounts[0], b"right after".ljust(32, b"\x00")
        self._expect(
            lambda: self.model.issue(operator, to, amount, ref, 1, ZERO_HASH),
            "issue",
            to,
            amount,
            ref,
            1,
            ZERO_HASH,
            sender=operator,
        )

    @rule(
        action=st.sampled_from(["rights", "suspend", "reactivate", "reactivate", "offboard"]),
        pid=st.sampled_from(PARTNER_IDS),
        # rights given back as often as taken away: (True, True) half the time
        flags=st.sampled_from(
            [(True, True), (True, True), (True, True), (True, False), (False, True), (False, False)]
        ),
        who=whos,
    )
    def registry(self, action: str, pid: int, flags: tuple[bool, bool], who: str) -> None:
        """Rights, suspension and reactivation, offboarding (for good). Half the time a suspension is of an
        active partner and a reactivation of a suspended one, if there is one."""
        model, sender = self.model, self._sender(action, who)
        wanted = {"suspend": Status.ACTIVE, "reactivate": Status.SUSPENDED}.get(action)
        if wanted is not None and flags[1]:
            pid = next((p for p, partner in model.partners.items() if partner.status == wanted), pid)
        if action == "rights":
            self._expect(
                lambda: model.set_rights(sender, pid, *flags), "setPartnerRights", pid, *flags, sender=sender
            )
        elif action == "suspend":
            self._expect(lambda: model.suspend(sender, pid), "suspendPartner", pid, sender=sender)
        elif action == "reactivate":
            self._expect(lambda: model.reactivate(sender, pid), "reactivatePartner", pid, sender=sender)
        else:
            self._expect(lambda: model.offboard(sender, pid), "offboardPartner", pid, sender=sender)

    @rule(enabled=st.booleans(), holder=holders, who=whos)
    def switch_transfers(self, enabled: bool, holder: int, who: str) -> None:
        """The transfer switch; switched off, a holder's transfer is refused at once."""
        model, sender = self.model, self._sender("transfers", who)
        if (
            self._expect(
                lambda: model.set_transfers_enabled(sender, enabled),
                "setTransfersEnabled",
                enabled,
                sender=sender,
            )
            and not enabled
        ):
            self._check()  # the switch's entry, before the attempt that must change nothing
            sender, to = self.world.holders[holder], self.world.accounts[0]
            self._expect(lambda: model.transfer(sender, to, 1), "transfer", to, 1, sender=sender)

    def _key(self, choice: str, pid: int) -> str:
        model, actors = self.model, self.actors
        unused = [s for s in self.world.spares if s not in model.operator_ids() and not model.holds_role(s)]
        granted = [s for s in self.world.spares if model.holds_role(s)]
        return {
            "spare": unused[0] if unused else next(iter(model.former), ZERO_ADDRESS),
            "role holder": actors.treasury,
            "operator": model.partners[ACTIVE if pid != ACTIVE else ISSUE_ONLY].operator,
            "former": next(iter(model.former), model.partners[pid].operator),
            "zero": ZERO_ADDRESS,
            "granted": granted[0] if granted else actors.pauser,
        }[choice]

    @rule(
        pid=st.sampled_from(PARTNER_IDS[:4]),
        by=st.sampled_from(["admin", "itself", "admin", "itself", "its former key", "itself", "treasury"]),
        key_choice=key_choices,
        old_key_issues=st.booleans(),
    )
    def rotate_operator(self, pid: int, by: str, key_choice: str, old_key_issues: bool) -> None:
        """Rotates partner ``pid``'s operator key, by the admin or by the partner's own key (or tried by
        its former key, or the treasury); then, if ``old_key_issues``, the old key tries to issue at once."""
        model, actors = self.model, self.actors
        key, old = self._key(key_choice, pid), model.partners[pid].operator
        former = [old for old, of in model.former.items() if of == pid]
        sender = {
            "admin": actors.admin,
            "itself": model.partners[pid].operator,
            "its former key": former[0] if former else actors.stranger,
            "treasury": actors.treasury,
        }[by]
        if self._expect(
            lambda: model.rotate(sender, pid, key), "rotatePartnerOperator", pid, key, sender=sender
        ):
            OUTCOMES[
                f"rotatePartnerOperator: ok by {'the admin' if sender == actors.admin else 'itself'}"
            ] += 1
            if old_key_issues:
                self._then_issue(old)

    @rule(
        role=st.sampled_from([PAUSER_ROLE, PAUSER_ROLE, TREASURY_ROLE, DEFAULT_ADMIN_ROLE]),
        pid=st.sampled_from(PARTNER_IDS[:4]),
        # more often than in a rotation, a key that operates (or operated) a partner: refused
        key_choice=st.sampled_from(
            ["spare", "operator", "former", "operator", "role holder", "granted", "zero"]
        ),
    )
    def grant_role(self, role: bytes, pid: int, key_choice: str) -> None:
        """The admin grants a role to a key (``pid`` picks which other partner's operator is tried)."""
        model, admin = self.model, self.actors.admin
        key = self._key(key_choice, pid)
        entries = model.seq
        if self._expect(lambda: model.grant(admin, role, key), "grantRole", role, key, sender=admin):
            OUTCOMES["grantRole: ok, already held (no entry)"] += model.seq == entries

    @rule(
        action=st.sampled_from(["settle", "settle", "settle", "value"]),
        pid=st.sampled_from(PARTNER_IDS),
        how=st.sampled_from(["open", "any", "half", "open", "any", "open", "any", "too large"]),
        numbers=st.tuples(st.integers(-50, 50), st.integers(-500, 500)),
        value=st.sampled_from([10, 0, 1, 7, 2**32, MAX_SETTLEMENT_VALUE, MAX_SETTLEMENT_VALUE + 1]),
        ref=refs,
        by_treasury=st.sampled_from([True, True, True, True, False]),
    )
    def treasury(
        self,
        action: str,
        pid: int,
        how: str,
        numbers: tuple[int, int],
        value: int,
        ref: bytes,
        by_treasury: bool,
    ) -> None:
        """Sets the settlement value, or records a settlement with a partner: its open position (a closed
        period), half of it, small numbers of either sign, or magnitudes beyond the limits."""
        model = self.model
        sender = self.actors.treasury if by_treasury else self.actors.admin
        if action == "value":
            self._expect(
                lambda: model.set_settlement_value(sender, value), "setSettlementValue", value, sender=sender
            )
            return
        open_position = model.partners[pid].open_position() if pid in model.partners else (0, 0)
        points, amount = {
            "open": open_position,
            "half": (open_position[0] // 2, open_position[1] // 2),
            "any": numbers,
            # points or value one beyond their bound, or points of type(int256).min (no positive twin)
            "too large": [
                (MAX_SETTLED_POINTS + 1, numbers[1]),
                (numbers[0], -MAX_SETTLED_VALUE - 1),
                (INT256_MIN, numbers[1]),
            ][numbers[0] % 3],
        }[how]
        if self._expect(
            lambda: model.record_settlement(sender, pid, points, amount, ref),
            "recordSettlement",
            pid,
            points,
            amount,
            ref,
            sender=sender,
        ):
            OUTCOMES["recordSettlement: ok, period closed"] += model.partners[pid].open_position() == (0, 0)

    @rule(
        action=st.sampled_from(
            ["brief", "brief", "brief", "brief", "brief", "long", "wrong", "not the pauser"]
        ),
        wait=st.sampled_from([1, EPOCH_LENGTH // 2, EPOCH_LENGTH, VALIDITY * EPOCH_LENGTH]),
    )
    def pause_or_resume(self, action: str, wait: int) -> None:
        """Mostly a pause of ``wait`` seconds within the step, every view checked while paused (the clock
        stands still, nothing expires) and an issue tried (refused); or a pause left on ("long": every
        other rule meets a paused ledger until this rule ends it, after ``wait`` seconds); or the wrong one
        of pause and unpause, or either sent by the admin, who is not the pauser."""
        model, actors = self.model, self.actors
        if action in ("wrong", "not the pauser"):
            sender = actors.admin if action == "not the pauser" else actors.pauser
            if model.paused == (action == "wrong"):
                self._expect(lambda: model.pause(sender), "pause", sender=sender)
            else:
                self._expect(lambda: model.unpause(sender), "unpause", sender=sender)
            return
        if not model.paused:
            if not self._expect(lambda: model.pause(actors.pauser), "pause", sender=actors.pauser):
                return
            if action == "long":
                return
        self._travel(model.now + wait)
        OUTCOMES["time passes while paused"] += 1
        self._check()
        self._then_issue(model.partners[ACTIVE].operator, check=False)  # refused while paused
        if self._expect(lambda: model.unpause(actors.pauser), "unpause", sender=actors.pauser):
            OUTCOMES["resumed after a pause"] += model.paused_total > 0

    # ------------------------------------------------------------ invariants

    @invariant()
    def views_match_model(self) -> None:
        """The views the model predicts, read in one batch, against the model and against each other.

        After a step that changed the ledger (and at the start): everything (:meth:`_check`). After a
        reverted step: head, sequence, the clock and every balance, which must be unchanged; the rest is read
        again by the next full check, which would see any change as the model did not move. :meth:`teardown`
        also reads every reference in every namespace.
        """
        if self.rejected:
            self._check_unchanged()
        else:
            self._check()
        self.verified = True

    def teardown(self) -> None:
        if not self.verified:  # the example already failed: keep its error
            return
        self._check()
        self._check_references()
        if self.world.examples % 10 != 1:  # web3 is slow: one example in ten
            return
        # The shortcut must read what an ordinary eth_call through web3 reads.
        richest = max(self.world.accounts, key=self.model.balance)
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("currentEpoch", ()),
            ("ledgerClock", ()),
            ("outstandingSupply", ()),
            ("ledgerHead", ()),
            ("coalitionOpenPosition", ()),
            ("partner", (ACTIVE,)),
            ("balanceOf", (richest,)),
            ("balanceOfAtEpoch", (self.model.epoch, richest)),
        ]
        ledger = self.world.ledger
        through_web3 = [getattr(ledger.contract.functions, name)(*args).call() for name, args in calls]
        assert _plain(self.world.raw.views(calls)) == _plain(through_web3)

    def _check_references(self) -> None:
        """Every reference the model used, in its namespace, reads as used; the same references in the
        other namespaces, and with another partner, as the model has them."""
        model = self.model
        namespaces: dict[str, Any] = {
            "referenceUsed": model.issuances,
            "redemptionReferenceUsed": model.redemptions,
            "settlementReferenceUsed": model.used_settlement_refs,
            "returnReferenceUsed": model.used_return_refs,
            "refundReferenceUsed": model.used_refund_refs,
        }
        every = {key for used in namespaces.values() for key in used}
        probes = sorted(every | {(ISSUE_ONLY if pid == ACTIVE else ACTIVE, ref) for pid, ref in every})
        calls = [(view, probe) for view in namespaces for probe in probes]
        answers = self.world.raw.views(calls)
        expected = [probe in namespaces[view] for view, probe in calls]
        wrong = [
            (view, probe, a) for (view, probe), a, e in zip(calls, answers, expected, strict=True) if a != e
        ]
        assert not wrong, f"references used on chain, not in the model (or the other way): {wrong}"

    def _check_unchanged(self) -> None:
        """After a reverted step: no entry added, the clock where the model has it, the balances as they
        were."""
        named = self.world.accounts
        model = self.model
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("ledgerHead", ()),
            ("ledgerSequence", ()),
            ("ledgerClock", ()),
            ("pausedDuration", ()),
        ]
        head, seq, clock, paused_for, *balances = self.world.raw.views(
            calls + [("balanceOf", (a,)) for a in named]
        )
        assert (bytes(head), seq) == (self.head, model.seq)
        assert bytes(head) == self.log_head, "ledgerHead is not the hash chain of the logs"
        assert (clock, paused_for) == (model.clock, model.paused_duration)
        expected = [model.balance(account) for account in named]
        assert balances == expected, f"balances of {named} after a reverted step: {balances}, not {expected}"

    def _check(self) -> None:
        """Reads the scalar views, every partner and its positions, every key's partner id, the nonces used,
        what was reversed of every item issued and refunded of every redemption, balanceOf of every account
        and its balanceOfAtEpoch of the live epochs and of the one that expired last; checks them against
        each other and against the model."""
        model, everyone = self.model, self.world.accounts
        live = list(model.live_epochs())
        # balanceOfAtEpoch of the live epochs, and of the epoch that expired last (ERC-7818: must read 0)
        probed = live if model.epoch < VALIDITY else [model.epoch - VALIDITY, *live]
        keys = model.operator_ids()
        nonces = sorted(model.nonces)
        items = [
            (issuance, issuance.item(i))
            for issuance in model.issuances.values()
            for i in range(len(issuance.items))
        ]
        redemptions = list(model.redemptions.items())
        calls: list[tuple[str, tuple[Any, ...]]] = [(name, ()) for name in SCALAR_VIEWS]
        calls.append(("epochExpiresAt", (model.epoch,)))
        calls += [(name, (pid,)) for pid in model.partners for name in PARTNER_VIEWS]
        calls += [("partnerIdOf", (key,)) for key in keys]
        calls += [("nonces", (customer, key)) for customer, key in nonces]
        calls += [
            ("reversedOf", (i.pid, item.ref, item.customer, item.amount, item.item_ref)) for i, item in items
        ]
        calls += [("refundedOf", key) for key, _ in redemptions]
        calls += [("holderOf", (account,)) for account in everyone]
        calls += [("balanceOf", (account,)) for account in everyone]
        calls += [("balanceOfAtEpoch", (epoch, account)) for account in everyone for epoch in probed]
        results = iter(self.world.raw.views(calls))
        chain = {name: next(results) for name in SCALAR_VIEWS}
        expires_at = next(results)
        partner_views = {pid: [next(results) for _ in PARTNER_VIEWS] for pid in model.partners}
        key_ids = {key: next(results) for key in keys}
        nonce_views = {entry: next(results) for entry in nonces}
        reversed_of = [next(results) for _ in items]
        refunded_of = [next(results) for _ in redemptions]
        holder_of = {account: next(results) for account in everyone}
        balance_of = {account: next(results) for account in everyone}
        at_epoch = {(account, epoch): next(results) for account in everyone for epoch in probed}

        # relations between the chain's own numbers
        assert (
            chain["totalIssued"]
            == chain["totalRedeemed"]
            - chain["totalRefunded"]
            + chain["totalReversed"]
            + chain["totalExpired"]
            + chain["pendingExpiry"]
            + chain["outstandingSupply"]
        ), f"supply identity broken: {chain}"
        assert chain["outstandingSupply"] == sum(balance_of.values())
        for index, total in (
            (ISSUED, "totalIssued"),
            (REDEEMED, "totalRedeemed"),
            (REVERSED, "totalReversed"),
            (REFUNDED, "totalRefunded"),
        ):
            assert sum(view[index] for view, _, _ in partner_views.values()) == chain[total], total
        for pid, (view, _, _) in partner_views.items():  # nothing undone beyond what was done
            assert view[REVERSED] <= view[ISSUED] and view[REVERSED_VALUE] <= view[ISSUED_VALUE], pid
            assert view[REFUNDED] <= view[REDEEMED] and view[REFUNDED_VALUE] <= view[REDEEMED_VALUE], pid
        for (_, item), reversed_ in zip(items, reversed_of, strict=True):
            assert reversed_ <= item.amount, f"item {item} reversed by {reversed_}"
        for (_, redemption), refunded in zip(redemptions, refunded_of, strict=True):
            assert refunded <= sum(take for _, take in redemption.parts), (
                f"{redemption} refunded by {refunded}"
            )
        for account, balance in balance_of.items():  # a negative balance would show as a wrapped huge one
            assert 0 <= balance <= chain["totalIssued"], f"balance of {account}: {balance}"
        for account in everyone:
            assert balance_of[account] == sum(at_epoch[account, epoch] for epoch in live)
        assert all(amount > 0 for held in model.held.values() for amount in held.values())
        # positions: all-time from the counters, open == all-time - settled, partners + coalition == 0
        settled = [0, 0]
        for view, position, open_position in partner_views.values():
            assert tuple(position) == (
                view[REDEEMED] - view[REFUNDED] - view[ISSUED] + view[REVERSED],
                view[REDEEMED_VALUE] - view[REFUNDED_VALUE] - view[ISSUED_VALUE] + view[REVERSED_VALUE],
            )
            assert tuple(open_position) == (
                position[0] - view[SETTLED_POINTS],
                position[1] - view[SETTLED_VALUE],
            )
            settled = [settled[0] + view[SETTLED_POINTS], settled[1] + view[SETTLED_VALUE]]
        coalition, coalition_open = chain["coalitionPosition"], chain["coalitionOpenPosition"]
        assert coalition[0] == (
            chain["totalIssued"] - chain["totalReversed"] - chain["totalRedeemed"] + chain["totalRefunded"]
        )
        assert tuple(coalition_open) == (coalition[0] + settled[0], coalition[1] + settled[1])
        for index in (0, 1):  # points, value
            assert coalition[index] + sum(p[index] for _, p, _ in partner_views.values()) == 0
            assert coalition_open[index] + sum(o[index] for _, _, o in partner_views.values()) == 0
        # the clock
        assert chain["ledgerClock"] // EPOCH_LENGTH == chain["currentEpoch"]
        assert (
            expires_at == model.now - chain["ledgerClock"] + (chain["currentEpoch"] + VALIDITY) * EPOCH_LENGTH
        )
        # the hash chain, rebuilt from the logs
        head = bytes(chain["ledgerHead"])
        assert head == self.log_head, "ledgerHead is not the hash chain of the logs"

        # the chain against the model
        expected: dict[str, Any] = {
            "currentEpoch": model.epoch,
            "ledgerClock": model.clock,
            "pausedDuration": model.paused_duration,
            "paused": model.paused,
            "epochExpiresAt": model.epoch_expires_at(model.epoch),
            "outstandingSupply": model.outstanding(),
            "totalIssued": model.total_issued,
            "totalRedeemed": model.total_redeemed,
            "totalReversed": model.total_reversed,
            "totalRefunded": model.total_refunded,
            "totalExpired": model.total_expired,
            "pendingExpiry": model.pending_expiry(),
            "ledgerSequence": model.seq,
            "transfersEnabled": model.transfers_enabled,
            "settlementValue": model.settlement_value,
            "coalitionPosition": model.coalition_position(),
            "coalitionOpenPosition": model.coalition_open_position(),
        }
        actual = {name: _plain(chain.get(name)) for name in expected}
        actual["epochExpiresAt"] = expires_at
        for pid, (view, position, open_position) in partner_views.items():
            p = model.partners[pid]
            actual[f"partner({pid})"] = _plain(view)
            expected[f"partner({pid})"] = p.view(pid)
            actual[f"partnerPosition({pid})"] = _plain(position)
            expected[f"partnerPosition({pid})"] = p.position()
            actual[f"partnerOpenPosition({pid})"] = _plain(open_position)
            expected[f"partnerOpenPosition({pid})"] = p.open_position()
        for key, pid in key_ids.items():
            actual[f"partnerIdOf({key})"] = pid
            expected[f"partnerIdOf({key})"] = keys[key]
        for (customer, key), nonce in nonce_views.items():
            actual[f"nonces({customer}, {key})"] = nonce
            expected[f"nonces({customer}, {key})"] = model.nonce(customer, key)
        for (issuance, item), reversed_ in zip(items, reversed_of, strict=True):
            leaf = leaf_hash(item.customer, item.amount, item.item_ref)
            actual[f"reversedOf({issuance.pid}, {item})"] = reversed_
            expected[f"reversedOf({issuance.pid}, {item})"] = model.reversed.get(
                (issuance.pid, item.ref, leaf), 0
            )
        for (key, _), refunded in zip(redemptions, refunded_of, strict=True):
            actual[f"refundedOf{key}"] = refunded
            expected[f"refundedOf{key}"] = model.refunded.get(key, 0)
        for account, holder in holder_of.items():
            actual[f"holderOf({account})"] = _plain(holder)
            expected[f"holderOf({account})"] = _plain(model.holder_of(account))
        for account, balance in balance_of.items():
            actual[f"balanceOf({account})"] = balance
            expected[f"balanceOf({account})"] = model.balance(account)
        for (account, epoch), amount in at_epoch.items():
            actual[f"balanceOfAtEpoch({epoch}, {account})"] = amount
            expected[f"balanceOfAtEpoch({epoch}, {account})"] = model.at_epoch(account, epoch)
        mismatches = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
        assert not mismatches, f"chain != model (actual, expected): {mismatches}"

        # the head moves exactly when entries are added
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
    "increasePartnerAllowance: ok",
    "decreasePartnerAllowance: ok",
    "setPartnerRights: ok",
    "offboardPartner: ok",
    "rotatePartnerOperator: ok by the admin",
    "rotatePartnerOperator: ok by itself",
    "grantRole: ok",
    "setSettlementValue: ok",
    "recordSettlement: ok",
    "recordSettlement: ok, period closed",
    "pause: ok",
    "unpause: ok",
    "resumed after a pause",
    "time passes while paused",
    "revokeConsent: ok",
    "cancelConsent: ok",
    "issue: LedgerAllowanceExceeded",
    "issue: LedgerPartnerSuspended",
    "issue: LedgerReferenceUsed",
    "a rotated-away key refused",
    "issue: EnforcedPause",
    "redeem: LedgerInsufficientBalance",
    "redeem: LedgerPartnerSuspended",
    "redeem: InvalidAccountNonce",
    "redeem: ok at a key not the partner's",
    "transfer: LedgerTransfersDisabled",
    "transfer: ERC20InsufficientBalance",
    "transferAtEpoch: ERC7818TransferredExpiredToken",
    "rotatePartnerOperator: LedgerInvalidOperator",
    "rotatePartnerOperator: LedgerUnauthorizedRotation",
    "grantRole: LedgerOperatorCannotHoldRole",
    "decreasePartnerAllowance: LedgerAllowanceExceeded",
    "cancelConsent: LedgerInvalidSigner",
    "revokeConsent: InvalidAccountNonce",
    # batches under their Merkle root, one namespace with single issues
    "issueBatch: LedgerReferenceUsed",
    "issueBatch: refused, again",
    "issueBatch: refused, root taken",
    "issueBatch: ok, items issued by another partner before",
    "issueBatch: LedgerBatchLengthMismatch",
    "issue: refused under a batch root",
    "issue: ok under another partner's batch root",
    # returns
    "reverseIssuance: ok",
    "reversal of a batch item",
    "reversal recovered less than requested",
    "reversal recovered nothing",
    "reversal took from other epochs than the issuance's",
    "reversal at its window's last second",
    "reversal followed the customer's migration",
    "reverseIssuance: LedgerIssuanceNotFound",
    "reverseIssuance: LedgerReversalWindowClosed",
    "reverseIssuance: LedgerReversalExceedsIssuance",
    "reverseIssuance: LedgerReferenceUsed",
    "reverseIssuance: LedgerZeroAmount",
    "reverseIssuance: LedgerPartnerSuspended",
    # refunds
    "refundRedemption: ok",
    "refund into a live epoch",
    "refund into an expired epoch",
    "refund over several epochs",
    "refund after an earlier refund",
    "refund followed the customer's migration",
    "refundRedemption: LedgerRedemptionNotFound",
    "refundRedemption: LedgerRefundExceedsRedemption",
    "refundRedemption: LedgerReferenceUsed",
    # migration and recovery
    "migrateAccount: ok",
    "migrateAccount: ok at a key not 0",
    "migrateAccount: InvalidAccountNonce",
    "migrateAccount: LedgerInvalidSigner",
    "migrateAccount: LedgerExpiredSignature",
    "migrateAccount: LedgerInsufficientBalance",
    "migrateAccount: LedgerInvalidMigration",
    "recoverAccount: ok",
    "recoverAccount: AccessControlUnauthorizedAccount",
    "recoverAccount: LedgerInvalidMigration",
]


#: Examples written out, run before the random ones with the same checks: paths that take several rules
#: in a row, so that every run takes them however Hypothesis happens to weigh its rules (a script per
#: example).
SCRIPTS: list[list[tuple[str, dict[str, Any]]]] = [
    # returns: part (then the same return reference again), zero, after the customer moved the issuance's
    # epoch away (the rest from its other epochs, less than asked), after it spent everything (nothing), after
    # its account was recovered to another (followed), at the window's last second, by a suspended partner
    [
        ("issue", {"order": IssueOrder(ACTIVE, 0, 40, _as_ref(100))}),
        (
            "reverse_issuance",
            {"order": ReturnOrder(0, 0, "own", (0, "part"), "none", "now", _as_ref(1), "same ref")},
        ),
        (
            "reverse_issuance",
            {"order": ReturnOrder(0, 0, "own", (0, "any"), "none", "now", _as_ref(2), "nothing")},
        ),
        (
            "reverse_issuance",
            {
                "order": ReturnOrder(
                    0, 0, "own", (0, "all"), "none", "after a transfer", _as_ref(3), "nothing"
                )
            },
        ),
        ("issue", {"order": IssueOrder(ACTIVE, 1, 30, _as_ref(101))}),
        (
            "reverse_issuance",
            {
                "order": ReturnOrder(
                    0, 0, "own", (0, "all"), "none", "after spending all", _as_ref(4), "nothing"
                )
            },
        ),
        ("issue", {"order": IssueOrder(ACTIVE, 2, 30, _as_ref(102))}),
        ("recover_account", {"lost": 2, "dest": 3, "who": "admin"}),
        (
            "reverse_issuance",
            {"order": ReturnOrder(0, 0, "own", (0, "part"), "none", "now", _as_ref(5), "nothing")},
        ),
        (
            "reverse_issuance",
            {"order": ReturnOrder(0, 0, "suspended", (0, "part"), "none", "now", _as_ref(6), "nothing")},
        ),
        (
            "reverse_issuance",
            {
                "order": ReturnOrder(
                    0, 0, "own", (5, "part"), "none", "as the window closes", _as_ref(7), "nothing"
                )
            },
        ),
    ],
    # refunds (another part after a first; after a recovery of the customer's account, then the same refund
    # reference again), a batch's items again by another partner, an issue under another partner's batch root,
    # a migration at a partner's nonce key, a settlement that closes the period, an allowance cut beyond it
    # and a top-up, a partner rotating its own key (its old key refused at once)
    [
        (
            "refund_redemption",
            {"order": RefundOrder(1, "own", (4, "part"), "none", _as_ref(1), "another part", False)},
        ),
        (
            "refund_redemption",
            {"order": RefundOrder(1, "own", (0, "part"), "none", _as_ref(2), "same ref", True)},
        ),
        ("issue_batch", {"issuer": ISSUE_ONLY, "items": [], "how": "again", "back": 0}),
        ("issue_under_a_batch_root", {"issuer": ISSUE_ONLY, "back": 2, "to": 0, "amount": 5}),
        ("migrate_account", {"order": MigrationOrder(3, 4, "both", (ACTIVE, "next"), "far", "nothing", 0)}),
        (
            "treasury",
            {
                "action": "settle",
                "pid": ACTIVE,
                "how": "open",
                "numbers": (0, 0),
                "value": 10,
                "ref": _as_ref(1),
                "by_treasury": True,
            },
        ),
        ("allowance", {"action": "decrease", "pid": ACTIVE, "amount": 0, "who": "usual"}),
        ("allowance", {"action": "increase", "pid": ACTIVE, "amount": 100, "who": "usual"}),
        (
            "rotate_operator",
            {"pid": ISSUE_ONLY, "by": "itself", "key_choice": "spare", "old_key_issues": True},
        ),
    ],
]


def run_scripts(machine: type[LedgerMachine]) -> None:
    """Runs :data:`SCRIPTS` through ``machine`` as Hypothesis runs examples: the invariant after each step."""
    for script in SCRIPTS:
        run = machine()
        run.views_match_model()
        for name, arguments in script:
            getattr(run, name)(**arguments)
            run.views_match_model()
        run.teardown()


def test_ledger_matches_model(world: World) -> None:
    OUTCOMES.clear()
    machine = type("LedgerModelRun", (LedgerMachine,), {"world": world})
    run_scripts(machine)
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
    if EXAMPLES >= DEFAULT_EXAMPLES and STEPS >= DEFAULT_STEPS:
        missing = [outcome for outcome in REQUIRED_OUTCOMES if not OUTCOMES[outcome]]
        assert not missing, f"the run never exercised {missing}"


def test_raw_ledger_agrees_with_web3(world: World) -> None:
    """The shortcut the state machine uses reads and sends exactly like web3 and ``Ledger.transact``."""
    model = world.restart()
    ledger, actors, raw = world.ledger, world.ledger.actors, world.raw
    customer = world.accounts[0]
    raw.transact("issue", customer, 25, b"\x01" * 32, 3, b"\x00" * 32, sender=actors.issue_only)
    raw.travel(model.now + EPOCH_LENGTH)
    ledger.issue(customer, 2)
    now = ledger.call("currentEpoch")
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("currentEpoch", ()),
        ("ledgerClock", ()),
        ("outstandingSupply", ()),
        ("totalIssued", ()),
        ("pendingExpiry", ()),
        ("ledgerHead", ()),
        ("ledgerSequence", ()),
        ("partner", (ACTIVE,)),
        ("partner", (ISSUE_ONLY,)),
        ("partnerOpenPosition", (ISSUE_ONLY,)),
        ("balanceOf", (customer,)),
        *[("balanceOfAtEpoch", (epoch, customer)) for epoch in range(now - VALIDITY, now + 2)],
        ("liveBalances", (customer,)),
        ("nonces", (customer, BIG_KEY)),
    ]
    fast = raw.views(calls)
    slow = [getattr(ledger.contract.functions, n)(*a).call() for n, a in calls]
    assert _plain(fast) == _plain(slow)
    assert fast[0] == VALIDITY + 1 == now
    assert fast[1] == model.clock + EPOCH_LENGTH + 1  # one block after the time step
    assert fast[7][0] == ACTIVE and _plain(fast[7][1]) == _plain(actors.partner)
    assert fast[8][7] == 25 and fast[4] > 0  # ISSUE_ONLY issued 25; epoch 1 has expired, unswept
    assert tuple(fast[9]) == (-25, -25 * model.settlement_value)
    assert fast[-2][1][-1] == 2  # liveBalances: the 2 points of the current epoch come last
    assert fast[-1] == BIG_KEY << 64

    # the reference is used; a reversal (a tuple argument, through the fallback) of an issuance never made
    wrong = IssuanceItem(b"\x01" * 32, customer, 26, b"\x01" * 32, VALIDITY, model.now, 10, ())
    failing = [
        (("issue", customer, 1, b"\x01" * 32, 3, ZERO_HASH), "LedgerReferenceUsed"),
        (("reverseIssuance", wrong, 1, b"\x02" * 32), "LedgerIssuanceNotFound"),
    ]
    for call, error in failing:
        with pytest.raises(ContractRevert) as through_web3:
            ledger.transact(*call, sender=actors.issue_only)
        with pytest.raises(ContractRevert) as raw_revert:
            raw.transact(*call, sender=actors.issue_only)
        assert (raw_revert.value.name, raw_revert.value.arguments) == (
            through_web3.value.name,
            through_web3.value.arguments,
        )
        assert raw_revert.value.name == error
    # four failed transactions: four blocks, four seconds of ledger clock, nothing else
    assert _plain(raw.views(calls[2:])) == _plain(fast[2:])
    assert raw.views([("ledgerClock", ())]) == [fast[1] + 4]


def _plain(value: Any) -> Any:
    """Sequences as tuples, addresses and other strings lower-case: eth_abi and web3 differ only there."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value.lower() if isinstance(value, str) else value
