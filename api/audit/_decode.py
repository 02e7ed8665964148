"""The auditor's own reading of the ledger's logs: event signatures written out by hand, words sliced by hand.

The mirror decodes with the contract's ABI artifact and eth-abi (``indexer._decode``); this module uses
neither, so that a mistake in one reading shows up as a difference against the other. Every ledger entry
is a static event (ILedgerEntries.sol says so and the contract hashes it that way): each argument is one
32-byte word, the indexed ones in the topics, the others in the data, in declaration order. The entry hash
is ``keccak(topic0 ‖ topic1 ‖ … ‖ data)``, the head ``keccak(head ‖ entryHash)``.

``tests/test_audit.py`` checks these signatures against the compiled ABI, so the hand-written table cannot
drift from the contract unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import AuditError

__all__ = ["ENTRY_SIGNATURES", "Entry", "EntryShape", "UnknownEntry", "decode_log", "keccak", "shapes"]


def _keccak() -> Callable[[bytes], bytes]:
    try:
        from sha3 import keccak_256  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - without safe-pysha3
        from eth_hash.auto import keccak as slow

        return slow
    return lambda data: bytes(keccak_256(data).digest())


keccak = _keccak()

#: Every ledger entry, as declared in contracts/interfaces/ILedgerEntries.sol: (name, [(type, argument)]),
#: indexed arguments first, their count after the name.
ENTRY_SIGNATURES: tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...] = (
    (
        "PartnerRegistered",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "operator"),
            ("uint64", "seq"),
            ("address", "settlement"),
            ("bool", "canIssue"),
            ("bool", "canAccept"),
            ("uint256", "allowance"),
        ),
    ),
    (
        "PartnerAllowanceChanged",
        1,
        (
            ("uint32", "partnerId"),
            ("uint64", "seq"),
            ("uint256", "previousAllowance"),
            ("uint256", "allowance"),
        ),
    ),
    ("PartnerStatusChanged", 1, (("uint32", "partnerId"), ("uint64", "seq"), ("uint8", "status"))),
    (
        "PartnerOperatorChanged",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "operator"),
            ("uint64", "seq"),
            ("address", "previousOperator"),
        ),
    ),
    (
        "PartnerRightsChanged",
        1,
        (("uint32", "partnerId"), ("uint64", "seq"), ("bool", "canIssue"), ("bool", "canAccept")),
    ),
    (
        "PartnerSettlementAddressChanged",
        1,
        (("uint32", "partnerId"), ("uint64", "seq"), ("address", "settlement")),
    ),
    (
        "SettlementRecorded",
        1,
        (
            ("uint32", "partnerId"),
            ("uint64", "seq"),
            ("int256", "points"),
            ("int256", "value"),
            ("bytes32", "paymentRef"),
        ),
    ),
    (
        "PointsIssued",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "to"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("uint256", "amount"),
            ("bytes32", "ref"),
            ("uint16", "reason"),
            ("bytes32", "ruleHash"),
            ("uint256", "value"),
        ),
    ),
    (
        "PointsBatchIssued",
        1,
        (
            ("uint32", "partnerId"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("bytes32", "ref"),
            ("uint16", "reason"),
            ("bytes32", "ruleHash"),
            ("uint256", "count"),
            ("uint256", "total"),
            ("uint256", "value"),
        ),
    ),
    (
        "PointsIssuedInBatch",
        1,
        (("address", "to"), ("uint64", "seq"), ("uint256", "amount"), ("bytes32", "itemRef")),
    ),
    (
        "PointsRedeemed",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "customer"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("uint256", "amount"),
            ("bytes32", "ref"),
            ("uint256", "nonce"),
            ("uint256", "value"),
        ),
    ),
    (
        "IssuanceReversed",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "customer"),
            ("uint64", "seq"),
            ("bytes32", "ref"),
            ("bytes32", "itemRef"),
            ("uint256", "issued"),
            ("bytes32", "returnRef"),
            ("uint256", "requested"),
            ("uint256", "recovered"),
            ("uint256", "value"),
        ),
    ),
    (
        "PointsReversed",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "customer"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("uint256", "amount"),
            ("bytes32", "returnRef"),
        ),
    ),
    (
        "RedemptionRefunded",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "customer"),
            ("uint64", "seq"),
            ("bytes32", "ref"),
            ("bytes32", "refundRef"),
            ("uint256", "amount"),
            ("uint256", "restored"),
            ("uint256", "value"),
        ),
    ),
    (
        "PointsRefunded",
        2,
        (
            ("uint32", "partnerId"),
            ("address", "customer"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("uint256", "amount"),
            ("bytes32", "refundRef"),
        ),
    ),
    (
        "AccountMigrated",
        2,
        (
            ("address", "from"),
            ("address", "to"),
            ("uint64", "seq"),
            ("uint256", "nonce"),
            ("bool", "recovery"),
            ("uint256", "amount"),
        ),
    ),
    (
        "PointsExpired",
        1,
        (("address", "account"), ("uint64", "seq"), ("uint256", "epoch"), ("uint256", "amount")),
    ),
    (
        "PointsTransferred",
        2,
        (
            ("address", "from"),
            ("address", "to"),
            ("uint64", "seq"),
            ("uint256", "epoch"),
            ("uint256", "amount"),
        ),
    ),
    ("ConsentRevoked", 1, (("address", "customer"), ("uint64", "seq"), ("uint256", "nonce"))),
    ("SettlementValueChanged", 0, (("uint64", "seq"), ("uint256", "previousValue"), ("uint256", "value"))),
    ("TransfersEnabledChanged", 0, (("uint64", "seq"), ("bool", "enabled"))),
    (
        "RoleChanged",
        2,
        (
            ("bytes32", "role"),
            ("address", "account"),
            ("uint64", "seq"),
            ("bool", "granted"),
            ("address", "sender"),
        ),
    ),
    (
        "AdminHandoverChanged",
        0,
        (
            ("uint64", "seq"),
            ("uint8", "kind"),
            ("address", "newAdmin"),
            ("uint48", "delay"),
            ("uint48", "schedule"),
        ),
    ),
    ("PauseChanged", 0, (("uint64", "seq"), ("bool", "paused"), ("uint256", "pausedDuration"))),
)


class UnknownEntry(AuditError):
    """A log of the ledger's address that is no entry this auditor knows, or is malformed for its event."""


def _dirty(abi_type: str) -> UnknownEntry:
    return UnknownEntry(f"a {abi_type} word with bits beyond its type (the contract never writes one)")


def _word_reader(abi_type: str) -> Callable[[bytes], Any]:
    """Reads one 32-byte word as ``abi_type``, refusing a word the contract cannot have written: an address
    or a narrow integer with non-zero padding, a bool other than 0 or 1."""
    if abi_type == "address":

        def address(word: bytes) -> str:
            if any(word[:12]):
                raise _dirty(abi_type)
            return "0x" + word[12:].hex()

        return address
    if abi_type == "bytes32":
        return bytes
    if abi_type == "int256":
        return lambda word: int.from_bytes(word, "big", signed=True)
    bits = 1 if abi_type == "bool" else int(abi_type.removeprefix("uint"))
    limit = 1 << bits

    def number(word: bytes) -> int:
        value = int.from_bytes(word, "big")
        if value >= limit:
            raise _dirty(abi_type)
        return value

    if abi_type == "bool":
        return lambda word: number(word) == 1
    return number


@dataclass(frozen=True, slots=True)
class EntryShape:
    """One entry event: its topic0, name, the argument names of its topics and of its data words."""

    topic0: bytes
    name: str
    indexed: tuple[tuple[str, Callable[[bytes], Any]], ...]
    data: tuple[tuple[str, Callable[[bytes], Any]], ...]

    @property
    def signature(self) -> str:
        return self.name


def shapes() -> dict[bytes, EntryShape]:
    out: dict[bytes, EntryShape] = {}
    for name, n_indexed, args in ENTRY_SIGNATURES:
        signature = f"{name}({','.join(t for t, _ in args)})"
        readers = tuple((arg, _word_reader(t)) for t, arg in args)
        topic0 = keccak(signature.encode())
        out[topic0] = EntryShape(topic0, name, readers[:n_indexed], readers[n_indexed:])
    return out


_SHAPES = shapes()


@dataclass(slots=True)
class Entry:
    """One ledger entry as this auditor read it: where it is, its arguments by name, its entry hash."""

    name: str
    seq: int
    block: int
    block_hash: str
    tx: str
    log_index: int
    args: dict[str, Any]
    entry_hash: bytes


def decode_log(log: Mapping[str, Any]) -> Entry:
    """A raw ``eth_getLogs`` item (hex strings, as the node sent it) to an :class:`Entry`."""
    topics = log["topics"]
    try:
        shape = _SHAPES[bytes.fromhex(topics[0][2:])]
    except (KeyError, IndexError, ValueError) as exc:
        raise UnknownEntry(
            f"log {log.get('transactionHash')}:{log.get('logIndex')} is no ledger entry"
        ) from exc
    raw_topics = [bytes.fromhex(t[2:]) for t in topics]
    data = bytes.fromhex(log["data"][2:])
    if len(raw_topics) != 1 + len(shape.indexed) or len(data) != 32 * len(shape.data):
        raise UnknownEntry(f"{shape.name} at {log.get('transactionHash')} has the wrong number of words")
    args: dict[str, Any] = {}
    for (arg, read), topic in zip(shape.indexed, raw_topics[1:], strict=True):
        args[arg] = read(topic)
    for i, (arg, read) in enumerate(shape.data):
        args[arg] = read(data[32 * i : 32 * i + 32])
    return Entry(
        name=shape.name,
        seq=args["seq"],
        block=int(log["blockNumber"], 16),
        block_hash=log["blockHash"],
        tx=log["transactionHash"],
        log_index=int(log["logIndex"], 16),
        args=args,
        entry_hash=keccak(b"".join(raw_topics) + data),
    )
