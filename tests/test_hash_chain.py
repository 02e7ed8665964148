"""The numbered, hash-chained ledger, recomputed from raw logs alone.

The interface (``contracts/interfaces/ILedgerEntries.sol``) defines: every event carrying a ``seq`` field is
a ledger entry; ``entryHash = keccak256(topic0 ‖ topic1 ‖ … ‖ data)`` of its raw log;
``head = keccak256(head ‖ entryHash)`` starting from 32 zero bytes; ``seq`` numbers the entries 1, 2, 3, …
without gaps. An auditor holding only the logs must be able to reproduce ``ledgerHead()``: these tests do
exactly that after every step of a scenario touching every kind of entry (issuance, redemption, expiry,
transfers, reversals, refunds, migration and recovery, the partner registry, settlements, consent
revocations, roles, the admin handover and pauses), on both backends, and check that a mirror missing,
reordering or altering an entry does not reproduce the head. Entries of the extension's code come from the
ledger's address (delegatecall) and join the same chain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from chain import ContractRevert, load_artifact
from chain._devnode import fund
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ADMIN_DELAY,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    SUSPENDED,
    Ledger,
    Node,
    deploy_ledger,
    new_customer,
)
from contract_helpers import (
    ZERO_ADDRESS,
    IssuanceItem,
    RedemptionRecord,
    issued_item,
    keyed,
    migration_args,
    next_block_at,
    redemption_record,
    send_signed,
    sign_cancellation,
)

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

#: Every ledger entry of ILedgerEntries (v2: the ledger's and its extension's).
ENTRY_NAMES = sorted(
    [
        # points
        "PointsIssued",
        "PointsBatchIssued",
        "PointsIssuedInBatch",
        "PointsRedeemed",
        "PointsExpired",
        "PointsTransferred",
        "ConsentRevoked",
        # returns, refunds, migration and recovery
        "IssuanceReversed",
        "PointsReversed",
        "RedemptionRefunded",
        "PointsRefunded",
        "AccountMigrated",
        # partners and settlement
        "PartnerRegistered",
        "PartnerAllowanceChanged",
        "PartnerStatusChanged",
        "PartnerOperatorChanged",
        "PartnerRightsChanged",
        "PartnerSettlementAddressChanged",
        "SettlementRecorded",
        # governance
        "SettlementValueChanged",
        "TransfersEnabledChanged",
        "RoleChanged",
        "AdminHandoverChanged",
        "PauseChanged",
    ]
)
DEFAULT_ADMIN_ROLE = b"\x00" * 32


def is_static_word(abi_type: str) -> bool:
    """An ABI type encoded as one 32-byte word: uintN/intN, address, bool, bytesN (enums are uint8)."""
    if abi_type in ("address", "bool"):
        return True
    if match := re.fullmatch(r"u?int(\d+)", abi_type):
        return int(match[1]) in range(8, 257, 8)
    if match := re.fullmatch(r"bytes(\d+)", abi_type):
        return 1 <= int(match[1]) <= 32
    return False


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
    assert sorted(name for name, _ in ENTRY_EVENTS.values()) == ENTRY_NAMES


def test_every_entry_event_is_static_with_its_indexed_parameters_first() -> None:
    """What makes ``keccak(topic0 ‖ topics ‖ data)`` of a raw log equal the contract's
    ``keccak(abi.encode(selector, args))``: every parameter is one 32-byte word (static), and the indexed
    ones (the topics) come first."""
    checked = []
    for item in load_artifact("LoyaltyLedger").abi:
        if item.get("type") != "event" or "seq" not in [p["name"] for p in item["inputs"]]:
            continue
        name, inputs = str(item["name"]), item["inputs"]
        assert not item.get("anonymous"), name  # topic0 is the selector
        for param in inputs:
            assert is_static_word(str(param["type"])), f"{name}.{param['name']}: {param['type']}"
        indexed = [bool(p["indexed"]) for p in inputs]
        assert indexed == sorted(indexed, reverse=True), f"{name}: indexed parameters must come first"
        assert sum(indexed) <= 3, name
        seq = next(p for p in inputs if p["name"] == "seq")
        assert (seq["type"], seq["indexed"]) == ("uint64", False), name
        checked.append(name)
    assert sorted(checked) == ENTRY_NAMES


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
        self.receipt = receipt  # the last one
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
            elif entry_name(log) == "IssuanceReversed":
                parts = _parts(self.entries, i, "PointsReversed", entry_word(log, "recovered"))
                assert all(entry_word(p, "returnRef") == entry_word(log, "returnRef") for p in parts)
            elif entry_name(log) == "RedemptionRefunded":
                # each part refunded into an expired epoch is followed at once by its expiry
                parts = _parts(self.entries, i, "PointsRefunded", entry_word(log, "amount"), "PointsExpired")
                restored = entry_word(log, "amount")
                for part in (p for p in parts if entry_name(p) == "PointsRefunded"):
                    after = self.entries[self.entries.index(part) + 1 : self.entries.index(part) + 2]
                    expired = _names(after) == ["PointsExpired"] and all(
                        entry_word(after[0], f) == entry_word(part, f) for f in ("epoch", "amount")
                    )
                    restored -= entry_word(part, "amount") if expired else 0
                assert restored == entry_word(log, "restored")
            elif entry_name(log) == "AccountMigrated":
                _parts(self.entries, i, "PointsTransferred", entry_word(log, "amount"))


def _parts(entries: Sequence[LogLike], header: int, name: str, total: int, *also: str) -> list[LogLike]:
    """The entries ``name`` (and ``also``) right after the header at index ``header`` whose amounts make
    ``total`` (each header announces exactly such parts)."""
    parts: list[LogLike] = []
    left = total
    for log in entries[header + 1 :]:
        if left == 0 or entry_name(log) not in (name, *also):
            break
        parts.append(log)
        if entry_name(log) == name:
            left -= entry_word(log, "amount")
    assert left == 0, f"the parts after entry {header} do not make {total}"
    return parts


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

    # the constructor's role grants (seq 1-3), initial settlement value (4) and admin delay (5), the
    # registrations (6-9) and the suspension from the fixture
    assert _names(mirror.entries) == ["RoleChanged"] * 3 + [
        "SettlementValueChanged",
        "AdminHandoverChanged",
    ] + ["PartnerRegistered"] * 4 + ["PartnerStatusChanged"]
    initial = [_decoded(ledger, log) for log in mirror.entries[3:5]]
    assert initial == [
        {"seq": 4, "previousValue": 0, "value": SETTLEMENT_VALUE},
        {"seq": 5, "kind": 3, "newAdmin": ZERO_ADDRESS, "delay": ADMIN_DELAY, "schedule": 0},
    ]
    grants = [_decoded(ledger, log) for log in mirror.entries[:3]]
    assert grants == [
        {"role": DEFAULT_ADMIN_ROLE, "account": admin, "seq": 1, "granted": True, "sender": admin},
        {
            "role": ledger.call("TREASURY_ROLE"),
            "account": actors.treasury,
            "seq": 2,
            "granted": True,
            "sender": admin,
        },
        {
            "role": ledger.call("PAUSER_ROLE"),
            "account": actors.pauser,
            "seq": 3,
            "granted": True,
            "sender": admin,
        },
    ]
    assert [entry_seq(log) for log in mirror.entries[3:]] == [4, 5, 6, 7, 8, 9, 10]
    mirror.check()

    # epoch 0: an issue and a batch
    assert ledger.call("currentEpoch") == 0
    new = mirror.step("issue", carol.address, 100, b"\x01" * 32, 1, b"\x00" * 32, sender=partner)
    assert _names(new) == ["PointsIssued"]
    new = mirror.step(
        "issueBatch",
        [carol.address, actors.customer, actors.stranger],
        [10, 20, 30],
        [b"\x21" * 32, b"\x22" * 32, b"\x23" * 32],
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
    carols_redemption = redemption_record(ledger, mirror.receipt)

    # epoch 4: epochs 0 and 1 expired. Crediting epoch 4 to an account whose bucket (4 % 3 = 1) still holds
    # epoch-1 points retires them first: before the issue, and before a batch's header (its items follow it).
    node.advance_time(3 * EPOCH_LENGTH)
    assert ledger.call("currentEpoch") == 4
    new = mirror.step("issue", carol.address, 7, b"\x04" * 32, 1, b"\x00" * 32, sender=partner)
    assert _names(new) == ["PointsExpired", "PointsIssued"]  # carol's 40 left of epoch 1
    carols_issue = issued_item(ledger, mirror.receipt)
    new = mirror.step(
        "issueBatch",
        [actors.stranger, actors.customer],
        [3, 4],
        [b"\x91" * 32, b"\x92" * 32],
        2,
        b"\x00" * 32,
        sender=partner,
    )
    assert _names(new) == ["PointsExpired", "PointsBatchIssued", "PointsIssuedInBatch", "PointsIssuedInBatch"]
    customers_item = issued_item(ledger, mirror.receipt, 1)
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
    # status entries carry the PartnerStatus (uint8): 1 Active, 2 Suspended, 3 Offboarded
    assert _decoded(ledger, mirror.entries[9]) == {"partnerId": SUSPENDED, "seq": 10, "status": 2}
    for fn, partner_id, sender, status in (
        ("suspendPartner", ACTIVE, actors.pauser, 2),
        ("reactivatePartner", ACTIVE, admin, 1),
        ("reactivatePartner", SUSPENDED, admin, 1),
    ):
        (entry,) = mirror.step(fn, partner_id, sender=sender)
        assert _decoded(ledger, entry) == {"partnerId": partner_id, "seq": entry_seq(entry), "status": status}
    assert _names(mirror.step("increasePartnerAllowance", ISSUE_ONLY, 777, sender=admin)) == [
        "PartnerAllowanceChanged"
    ]
    assert _names(mirror.step("decreasePartnerAllowance", ISSUE_ONLY, 77, sender=actors.treasury)) == [
        "PartnerAllowanceChanged"
    ]
    assert _names(mirror.step("setSettlementValue", 25, sender=actors.treasury)) == ["SettlementValueChanged"]
    _returns_refunds_and_migrations(ledger, mirror, carol, carols_issue, customers_item, carols_redemption)
    _v2_entries(ledger, mirror, carol)

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
    # the extension's code runs in the ledger's context: no entry ever comes from the extension's address
    # (its only logs are its constructor's, in the ledger's deployment: OpenZeppelin's RoleGranted of its
    # own, never used, storage)
    extension = ledger.call("extension")
    own_logs = list(ledger.w3.eth.get_logs({"fromBlock": first_block, "address": extension}))
    assert entry_logs(own_logs, extension) == []
    assert {log["blockNumber"] for log in own_logs} <= {first_block}

    _assert_tampered_mirrors_diverge(mirror.entries, bytes(ledger.call("ledgerHead")))


def _decoded(ledger: Ledger, log: LogLike) -> dict[str, Any]:
    """An entry log's arguments, decoded with the ABI (to check what the raw words say)."""
    event = getattr(ledger.contract.events, entry_name(log))()
    return dict(event.process_log(log)["args"])


def _returns_refunds_and_migrations(
    ledger: Ledger,
    mirror: Mirror,
    carol: LocalAccount,
    carols_issue: IssuanceItem,
    customers_item: IssuanceItem,
    carols_redemption: RedemptionRecord,
) -> None:
    """Reversals of a single issue and of a batch item, refunds into live and into expired epochs, a signed
    migration and a recovery: each a header entry followed by its parts, all chained like any other.

    In epoch 5 (epochs 3-5 live, the settlement value 25): carol holds 7 of epoch 4 and 2 of epoch 5, the
    customer 1 of epoch 5, the stranger 12 of epoch 4 and 3 of epoch 5."""
    actors = ledger.actors
    assert ledger.call("currentEpoch") == 5
    assert ledger.call("liveBalances", carol.address) == [[4, 5], [7, 2]]
    assert ledger.call("liveBalances", actors.customer) == [[5], [1]]
    assert ledger.call("liveBalances", actors.stranger) == [[4, 5], [12, 3]]

    def decoded(logs: list[LogLike]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (entry_name(log), {k: v for k, v in _decoded(ledger, log).items() if k != "seq"}) for log in logs
        ]

    # a return of 5 of carol's 7 (issued at the value then, 10): taken from the issuance's epoch
    returned = b"\x31" * 32
    new = mirror.step("reverseIssuance", carols_issue, 5, returned, sender=actors.partner)
    reversed_ = {"partnerId": ACTIVE, "customer": carol.address}
    assert decoded(new) == [
        (
            "IssuanceReversed",
            {**reversed_, "ref": b"\x04" * 32, "itemRef": b"\x04" * 32, "issued": 7, "returnRef": returned}
            | {"requested": 5, "recovered": 5, "value": SETTLEMENT_VALUE},
        ),
        ("PointsReversed", {**reversed_, "epoch": 4, "amount": 5, "returnRef": returned}),
    ]
    # a return of the customer's batch item of 4 (epoch 4), of which it still holds 1, of epoch 5
    returned = b"\x32" * 32
    new = mirror.step("reverseIssuance", customers_item, 4, returned, sender=actors.partner)
    reversed_ = {"partnerId": ACTIVE, "customer": actors.customer}
    assert decoded(new) == [
        (
            "IssuanceReversed",
            {**reversed_, "ref": customers_item.ref, "itemRef": b"\x92" * 32, "issued": 4}
            | {"returnRef": returned, "requested": 4, "recovered": 1, "value": SETTLEMENT_VALUE},
        ),
        ("PointsReversed", {**reversed_, "epoch": 5, "amount": 1, "returnRef": returned}),
    ]

    # carol redeems 3 at ACCEPT_ONLY (2 of epoch 4, 1 of epoch 5), refunded in full: newest part first
    new = mirror.add(ledger.redeem(carol, 3, sender=actors.accept_only, partner_id=ACCEPT_ONLY))
    mirror.check()
    assert [(entry_word(log, "epoch"), entry_word(log, "amount")) for log in new] == [(4, 2), (5, 1)]
    redemption, refund = redemption_record(ledger, mirror.receipt), b"\x41" * 32
    new = mirror.step("refundRedemption", redemption, 3, refund, sender=actors.accept_only)
    refunded = {"partnerId": ACCEPT_ONLY, "customer": carol.address}
    assert decoded(new) == [
        (
            "RedemptionRefunded",
            {**refunded, "ref": redemption.ref, "refundRef": refund, "amount": 3, "restored": 3, "value": 25},
        ),
        ("PointsRefunded", {**refunded, "epoch": 5, "amount": 1, "refundRef": refund}),
        ("PointsRefunded", {**refunded, "epoch": 4, "amount": 2, "refundRef": refund}),
    ]
    # carol's redemption of 120 in epoch 1 (110 of epoch 0, 10 of epoch 1), both expired since: refunded
    # in two steps, each part expiring on arrival; the second goes on after what the first took
    refunded = {"partnerId": ACTIVE, "customer": carol.address}
    for refund, amount, parts in ((b"\x42" * 32, 15, ((1, 10), (0, 5))), (b"\x43" * 32, 10, ((0, 10),))):
        new = mirror.step("refundRedemption", carols_redemption, amount, refund, sender=actors.partner)
        header = {"ref": carols_redemption.ref, "refundRef": refund, "amount": amount, "restored": 0}
        expected = [("RedemptionRefunded", {**refunded, **header, "value": SETTLEMENT_VALUE})]
        for epoch, part in parts:
            expected += [
                ("PointsRefunded", {**refunded, "epoch": epoch, "amount": part, "refundRef": refund}),
                ("PointsExpired", {"account": carol.address, "epoch": epoch, "amount": part}),
            ]
        assert decoded(new) == expected
    assert ledger.call("liveBalances", carol.address) == [[4, 5], [2, 2]]
    assert (ledger.call("totalReversed"), ledger.call("totalRefunded")) == (6, 3 + 15 + 10)

    # carol moves to a new key with both keys' signatures; a stranger submits it
    erin = new_customer()
    new = mirror.step("migrateAccount", *migration_args(ledger, carol, erin), sender=actors.stranger)
    moved = {"from": carol.address, "to": erin.address}
    assert decoded(new) == [
        ("AccountMigrated", {**moved, "nonce": 0, "recovery": False, "amount": 4}),
        ("PointsTransferred", {**moved, "epoch": 4, "amount": 2}),
        ("PointsTransferred", {**moved, "epoch": 5, "amount": 2}),
    ]
    # the admin recovers the stranger's points to a new key
    found = new_customer().address
    new = mirror.step("recoverAccount", actors.stranger, found, sender=actors.admin)
    moved = {"from": actors.stranger, "to": found}
    assert decoded(new) == [
        ("AccountMigrated", {**moved, "nonce": 0, "recovery": True, "amount": 15}),
        ("PointsTransferred", {**moved, "epoch": 4, "amount": 12}),
        ("PointsTransferred", {**moved, "epoch": 5, "amount": 3}),
    ]
    assert [ledger.call("balanceOf", a) for a in (carol.address, erin.address, actors.stranger, found)] == [
        0,
        4,
        0,
        15,
    ]


def _v2_entries(ledger: Ledger, mirror: Mirror, carol: LocalAccount) -> None:
    """Settlements, rights, settlement address, rotation, roles, consent revocations, a pause, the admin
    handover's steps and an offboarding: each is an entry that extends the chain."""
    node, actors = ledger.node, ledger.actors
    admin, treasury, pauser = actors.admin, actors.treasury, actors.pauser

    # settlements, positive and negative (two's-complement words hash like any other)
    new = mirror.step("recordSettlement", ACTIVE, 100, 1_000, b"\x0a" * 32, sender=treasury)
    assert _names(new) == ["SettlementRecorded"]
    new = mirror.step("recordSettlement", ACCEPT_ONLY, -3, -30, b"\x0b" * 32, sender=treasury)
    assert _decoded(ledger, new[0])["points"] == -3
    assert entry_word(new[0], "value") == 2**256 - 30

    # the registry
    assert _names(mirror.step("setPartnerRights", ACCEPT_ONLY, True, True, sender=admin)) == [
        "PartnerRightsChanged"
    ]
    new = mirror.step("setPartnerSettlementAddress", ACTIVE, new_customer().address, sender=admin)
    assert _names(new) == ["PartnerSettlementAddressChanged"]
    rotated_to = new_customer().address
    new = mirror.step("rotatePartnerOperator", ISSUE_ONLY, rotated_to, sender=admin)
    assert _names(new) == ["PartnerOperatorChanged"]
    assert _decoded(ledger, new[0])["previousOperator"] == actors.issue_only

    # roles
    pauser_role = ledger.call("PAUSER_ROLE")
    new = mirror.step("grantRole", pauser_role, actors.stranger, sender=admin)
    assert [_decoded(ledger, log)["granted"] for log in new] == [True]
    new = mirror.step("revokeRole", pauser_role, actors.stranger, sender=admin)
    assert [_decoded(ledger, log)["granted"] for log in new] == [False]

    # consent revocations: the customer's own call, and a signed cancellation a stranger submits
    dave = new_customer()
    fund(ledger.w3, dave.address, 10**18)
    new = mirror.add(send_signed(ledger, dave, "revokeConsent", keyed(ACTIVE)))
    mirror.check()
    assert _names(new) == ["ConsentRevoked"]
    nonce = ledger.call("nonces", carol.address, ACTIVE)
    assert nonce == keyed(ACTIVE, 1)  # carol redeemed once at ACTIVE
    signature = sign_cancellation(ledger, carol, nonce)
    new = mirror.step("cancelConsent", carol.address, nonce, signature, sender=actors.stranger)
    assert _decoded(ledger, new[0]) == {"customer": carol.address, "seq": entry_seq(new[0]), "nonce": nonce}

    # a pause of exactly 100 seconds, with a revocation while paused
    (pause,) = mirror.step("pause", sender=pauser)
    assert _decoded(ledger, pause) == {"seq": entry_seq(pause), "paused": True, "pausedDuration": 0}
    paused_at = node.timestamp()
    nonce = keyed(ACTIVE, 2)
    signature = sign_cancellation(ledger, carol, nonce)
    new = mirror.step("cancelConsent", carol.address, nonce, signature, sender=actors.stranger)
    assert _names(new) == ["ConsentRevoked"]
    next_block_at(node, paused_at + 100)
    (resume,) = mirror.step("unpause", sender=pauser)
    assert _decoded(ledger, resume) == {"seq": entry_seq(resume), "paused": False, "pausedDuration": 100}

    # the admin handover's steps: schedule and cancel a handover, schedule and roll back a delay change
    new = mirror.step("beginDefaultAdminTransfer", actors.customer, sender=admin)
    scheduled = _decoded(ledger, new[0])
    assert (scheduled["kind"], scheduled["newAdmin"], scheduled["delay"]) == (1, actors.customer, 0)
    assert scheduled["schedule"] == node.timestamp() + ADMIN_DELAY
    new = mirror.step("cancelDefaultAdminTransfer", sender=admin)
    assert [_decoded(ledger, log)["kind"] for log in new] == [2]
    new = mirror.step("changeDefaultAdminDelay", ADMIN_DELAY - 3600, sender=admin)
    changed = _decoded(ledger, new[0])
    assert (changed["kind"], changed["delay"], changed["schedule"]) == (
        3,
        ADMIN_DELAY - 3600,
        node.timestamp() + 3600,
    )
    new = mirror.step("rollbackDefaultAdminDelay", sender=admin)
    assert [_decoded(ledger, log)["kind"] for log in new] == [4]

    # offboarding drops the remaining allowance (its own entry) before the status entry
    new = mirror.step("offboardPartner", SUSPENDED, sender=admin)
    assert _names(new) == ["PartnerAllowanceChanged", "PartnerStatusChanged"]
    assert entry_word(new[1], "status") == 3  # Offboarded

    # an accepted handover is the pair of role entries: the old admin's revocation, the new admin's grant
    mirror.step("beginDefaultAdminTransfer", actors.customer, sender=admin)
    node.advance_time(ADMIN_DELAY + 1)
    new = mirror.step("acceptDefaultAdminTransfer", sender=actors.customer)
    assert [(_decoded(ledger, log)["account"], _decoded(ledger, log)["granted"]) for log in new] == [
        (admin, False),
        (actors.customer, True),
    ]
    assert all(_decoded(ledger, log)["role"] == DEFAULT_ADMIN_ROLE for log in new)

    # every kind of entry is in the chain now
    assert sorted(set(_names(mirror.entries))) == ENTRY_NAMES


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
