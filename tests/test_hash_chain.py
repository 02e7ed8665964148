"""The numbered, hash-chained ledger, recomputed from raw logs alone.

The interface (``contracts/interfaces/ILoyaltyLedger.sol``) defines: every event carrying a ``seq`` field is
a ledger entry; ``entryHash = keccak256(topic0 ‖ topic1 ‖ … ‖ data)`` of its raw log;
``head = keccak256(head ‖ entryHash)`` starting from 32 zero bytes; ``seq`` numbers the entries 1, 2, 3, …
without gaps. An auditor holding only the logs must be able to reproduce ``ledgerHead()``: these tests do
exactly that after every step of a scenario touching every kind of entry, on both backends, and check that
a mirror missing, reordering or altering an entry does not reproduce the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from chain import ContractRevert, load_artifact
from conftest import ACTIVE, ISSUE_ONLY, SUSPENDED, Ledger, Node, deploy_ledger, new_customer

EPOCH_LENGTH = 3600
VALIDITY = 3
ZERO_HEAD = b"\x00" * 32

LogLike = Mapping[str, Any]


def _entry_events() -> dict[bytes, tuple[str, list[str]]]:
    """topic0 of every entry event (one with an input named ``seq``) -> (name, its data fields in order)."""
    out: dict[bytes, tuple[str, list[str]]] = {}
    for item in load_artifact("LoyaltyLedger").abi:
        if item.get("type") != "event":
            continue
        unindexed = [str(p["name"]) for p in item["inputs"] if not p["indexed"]]
        if "seq" in unindexed:
            out[bytes(event_abi_to_log_topic(cast(ABIEvent, item)))] = (str(item["name"]), unindexed)
    return out


ENTRY_EVENTS = _entry_events()


# --------------------------------------------------------------------------- a mirror from raw bytes only


def entry_hash(log: LogLike) -> bytes:
    """keccak256(topic0 ‖ topic1 ‖ … ‖ data) of one raw log."""
    return keccak(b"".join(bytes(topic) for topic in log["topics"]) + bytes(log["data"]))


def fold(head: bytes, logs: Iterable[LogLike]) -> bytes:
    """Extends the chain ``head`` by the entries ``logs`` (already selected, in log order)."""
    for log in logs:
        head = keccak(head + entry_hash(log))
    return head


def is_entry(log: LogLike) -> bool:
    topics = log["topics"]
    return bool(topics) and bytes(topics[0]) in ENTRY_EVENTS


def entry_logs(logs: Iterable[LogLike], address: str) -> list[LogLike]:
    """The ledger entries among ``logs``: emitted by ``address``, topic0 an entry selector; order kept."""
    return [log for log in logs if str(log["address"]).lower() == address.lower() and is_entry(log)]


def entry_name(log: LogLike) -> str:
    return ENTRY_EVENTS[bytes(log["topics"][0])][0]


def entry_word(log: LogLike, field: str) -> int:
    """A data field of an entry, as an integer (every entry parameter is static: one 32-byte word each)."""
    word = ENTRY_EVENTS[bytes(log["topics"][0])][1].index(field)
    return int.from_bytes(bytes(log["data"])[32 * word : 32 * word + 32], "big")


def entry_seq(log: LogLike) -> int:
    return entry_word(log, "seq")


def test_entry_selectors_cover_every_entry_event() -> None:
    assert sorted(name for name, _ in ENTRY_EVENTS.values()) == sorted(
        [
            "PartnerRegistered",
            "PartnerAllowanceChanged",
            "PartnerStatusChanged",
            "PointsIssued",
            "PointsBatchIssued",
            "PointsIssuedInBatch",
            "PointsRedeemed",
            "PointsExpired",
            "PointsTransferred",
            "SettlementValueChanged",
            "TransfersEnabledChanged",
        ]
    )


def test_fold_of_nothing_is_the_zero_head() -> None:
    assert fold(ZERO_HEAD, []) == ZERO_HEAD


# --------------------------------------------------------------------------- the scenario, step by step


class Mirror:
    """Collects the contract's entry logs from every receipt and checks the chain after each step."""

    def __init__(self, ledger: Ledger, first_block: int) -> None:
        self.ledger = ledger
        self.first_block = first_block
        # the fixture's registrations and suspension happened before any receipt reached us
        self.entries: list[LogLike] = entry_logs(self.get_logs(), ledger.address)
        self.steps = 0

    def get_logs(self) -> list[LogLike]:
        return list(
            self.ledger.w3.eth.get_logs(
                {"fromBlock": self.first_block, "address": self.ledger.contract.address}
            )
        )

    def add(self, receipt: TxReceipt) -> list[LogLike]:
        new = entry_logs(receipt["logs"], self.ledger.address)
        self.entries.extend(new)
        return new

    def step(self, fn: str, *args: Any, sender: str) -> list[LogLike]:
        """Sends one transaction, collects its entries and checks head and numbering; returns its entries."""
        new = self.add(self.ledger.transact(fn, *args, sender=sender))
        self.check()
        return new

    def check(self) -> None:
        self.steps += 1
        head = bytes(self.ledger.call("ledgerHead"))
        sequence = self.ledger.call("ledgerSequence")
        assert fold(ZERO_HEAD, self.entries) == head, f"head diverged at step {self.steps}"
        assert [entry_seq(log) for log in self.entries] == list(range(1, sequence + 1))
        # a batch header announces its items: the next `count` entries, numbered seq + 1 ... seq + count
        for i, log in enumerate(self.entries):
            if entry_name(log) == "PointsBatchIssued":
                items = self.entries[i + 1 : i + 1 + entry_word(log, "count")]
                assert _names(items) == ["PointsIssuedInBatch"] * entry_word(log, "count")
                assert sum(entry_word(item, "amount") for item in items) == entry_word(log, "total")


def _redeem(ledger: Ledger, mirror: Mirror, customer: LocalAccount, amount: int) -> list[LogLike]:
    new = mirror.add(ledger.redeem(customer, amount))
    mirror.check()
    return new


def _names(logs: Sequence[LogLike]) -> list[str]:
    return [entry_name(log) for log in logs]


@pytest.fixture
def short_ledger(node: Node) -> tuple[Ledger, int]:
    """A fresh ledger with one-hour epochs valid for 3 epochs, and the block number it was deployed after."""
    first_block = node.w3.eth.block_number + 1
    return deploy_ledger(node, epoch_length=EPOCH_LENGTH, validity=VALIDITY), first_block


def test_head_is_recomputable_from_raw_logs_after_every_step(short_ledger: tuple[Ledger, int]) -> None:
    ledger, first_block = short_ledger
    node, actors = ledger.node, ledger.actors
    admin, partner = actors.admin, actors.partner
    carol = new_customer()
    mirror = Mirror(ledger, first_block)

    # registrations (4) and the suspension from the fixture
    assert _names(mirror.entries) == ["PartnerRegistered"] * 4 + ["PartnerStatusChanged"]
    mirror.check()

    # epoch 0: an issue and a batch
    assert ledger.call("currentEpoch") == 0
    new = mirror.step("issue", carol.address, 100, b"\x01" * 32, 1, b"\x00" * 32, sender=partner)
    assert _names(new) == ["PointsIssued"]
    new = mirror.step(
        "issueBatch",
        [carol.address, actors.customer, actors.stranger],
        [10, 20, 30],
        b"\x02" * 32,
        2,
        b"\xab" * 32,
        sender=partner,
    )
    assert _names(new) == ["PointsBatchIssued"] + ["PointsIssuedInBatch"] * 3

    # epoch 1: more points for carol, then a redemption spending epoch 0 (110) and part of epoch 1 (10)
    node.advance_time(EPOCH_LENGTH)
    assert ledger.call("currentEpoch") == 1
    mirror.step("issue", carol.address, 50, b"\x03" * 32, 1, b"\x00" * 32, sender=actors.issue_only)
    mirror.step("issue", actors.stranger, 9, b"\x08" * 32, 1, b"\x00" * 32, sender=partner)
    new = _redeem(ledger, mirror, carol, 120)
    assert _names(new) == ["PointsRedeemed", "PointsRedeemed"]

    # epoch 4: epochs 0 and 1 expired. Crediting epoch 4 to an account whose bucket (4 % 3 = 1) still holds
    # epoch-1 points retires them first: before the issue, and before a batch's header (its items follow it).
    node.advance_time(3 * EPOCH_LENGTH)
    assert ledger.call("currentEpoch") == 4
    new = mirror.step("issue", carol.address, 7, b"\x04" * 32, 1, b"\x00" * 32, sender=partner)
    assert _names(new) == ["PointsExpired", "PointsIssued"]  # carol's 40 left of epoch 1
    new = mirror.step(
        "issueBatch",
        [actors.stranger, actors.customer],
        [3, 4],
        b"\x09" * 32,
        2,
        b"\x00" * 32,
        sender=partner,
    )
    assert _names(new) == ["PointsExpired", "PointsBatchIssued", "PointsIssuedInBatch", "PointsIssuedInBatch"]
    new = mirror.step(
        "sweepExpired", [actors.customer, actors.stranger, carol.address], sender=actors.stranger
    )
    assert _names(new) == ["PointsExpired", "PointsExpired"]  # customer's 20 and stranger's 30 of epoch 0
    assert ledger.call("totalExpired") == 40 + 9 + 20 + 30

    # transfers: points of two epochs move oldest first, one entry per epoch
    mirror.step("issue", actors.customer, 5, b"\x05" * 32, 1, b"\x00" * 32, sender=partner)
    node.advance_time(EPOCH_LENGTH)
    mirror.step("issue", actors.customer, 6, b"\x06" * 32, 1, b"\x00" * 32, sender=partner)
    assert _names(mirror.step("setTransfersEnabled", True, sender=admin)) == ["TransfersEnabledChanged"]
    new = mirror.step("transfer", actors.stranger, 12, sender=actors.customer)  # 9 of epoch 4, 3 of epoch 5
    assert _names(new) == ["PointsTransferred", "PointsTransferred"]
    new = mirror.step("transferAtEpoch", 5, carol.address, 2, sender=actors.customer)
    assert _names(new) == ["PointsTransferred"]

    # administration
    assert _names(mirror.step("suspendPartner", ACTIVE, sender=admin)) == ["PartnerStatusChanged"]
    assert _names(mirror.step("reactivatePartner", ACTIVE, sender=admin)) == ["PartnerStatusChanged"]
    assert _names(mirror.step("reactivatePartner", SUSPENDED, sender=admin)) == ["PartnerStatusChanged"]
    assert _names(mirror.step("setPartnerAllowance", ISSUE_ONLY, 777, sender=admin)) == [
        "PartnerAllowanceChanged"
    ]
    assert _names(mirror.step("setSettlementValue", 25, sender=admin)) == ["SettlementValueChanged"]

    # a reverted transaction adds no entry and leaves the head alone
    head_before = bytes(ledger.call("ledgerHead"))
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("issue", carol.address, 0, b"\x07" * 32, 1, b"\x00" * 32, sender=partner)
    assert excinfo.value.name == "LedgerZeroAmount"
    mirror.check()
    assert bytes(ledger.call("ledgerHead")) == head_before

    # the entries collected from receipts are exactly those eth_getLogs returns for the contract
    assert [entry_hash(log) for log in entry_logs(mirror.get_logs(), ledger.address)] == [
        entry_hash(log) for log in mirror.entries
    ]
    # non-entry logs of the contract (Transfer, RoleGranted, ...) exist and are left out of the chain
    assert len(mirror.get_logs()) > len(mirror.entries)

    _assert_tampered_mirrors_diverge(mirror.entries, bytes(ledger.call("ledgerHead")))


def _assert_tampered_mirrors_diverge(entries: list[LogLike], head: bytes) -> None:
    assert fold(ZERO_HEAD, entries) == head
    assert len(entries) > 10

    for i in range(len(entries)):
        dropped = entries[:i] + entries[i + 1 :]
        assert fold(ZERO_HEAD, dropped) != head, f"dropping entry {i} went unnoticed"

    for i in range(len(entries) - 1):
        swapped = list(entries)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        assert fold(ZERO_HEAD, swapped) != head, f"swapping entries {i} and {i + 1} went unnoticed"
    far = list(entries)
    far[0], far[-1] = far[-1], far[0]
    assert fold(ZERO_HEAD, far) != head

    for i, log in enumerate(entries):
        data = bytearray(bytes(log["data"]))
        for position in (0, len(data) - 1):
            altered = bytearray(data)
            altered[position] ^= 0x01
            tampered = [*entries[:i], {**log, "data": bytes(altered)}, *entries[i + 1 :]]
            assert fold(ZERO_HEAD, tampered) != head, f"altering byte {position} of entry {i} went unnoticed"
        # an altered indexed field (topic) is caught as well
        topics = [bytes(t) for t in log["topics"]]
        topics[-1] = topics[-1][:-1] + bytes([topics[-1][-1] ^ 0x01])
        tampered = [*entries[:i], {**log, "topics": topics}, *entries[i + 1 :]]
        assert fold(ZERO_HEAD, tampered) != head, f"altering a topic of entry {i} went unnoticed"
