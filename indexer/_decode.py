"""The hot path: raw ``eth_getLogs`` results to ledger-entry rows, dispatched on topic0, decoded with eth-abi.

No web3 formatters run per log: a log is the JSON object the node sent (hex strings), its topic0 picks the
event, indexed arguments are read from the topics, the rest is one ``eth_abi`` tuple decode of the data. The
entry hash is computed from the raw bytes (``keccak(topic0 ‖ topics ‖ data)``), as the contract does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chain import load_artifact

from ._errors import UndecodableLog
from ._schema import LedgerEntry

__all__ = ["ENTRY_EVENTS", "EventSpec", "decode_logs", "entry_topics", "keccak", "row_template"]


def _keccak() -> Callable[[bytes], bytes]:
    """Keccak-256 from safe-pysha3 when it is installed (``eth-hash[pysha3]``, which ``eth-tester[py-evm]``
    pulls in): 1.4 us a hash, where ``eth_hash.auto`` picks pycryptodome at 9-10 us. The mirror hashes
    twice per entry (the entry hash here, the hash-chain head in the store)."""
    try:
        from sha3 import keccak_256  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - without safe-pysha3
        from eth_hash.auto import keccak as slow

        return slow
    return lambda data: bytes(keccak_256(data).digest())


keccak = _keccak()

#: Every column of ``ledger_entries`` (the hash-chain head is filled in by the store, which knows the
#: previous head); executemany and COPY need the same keys in every row.
COLUMNS = tuple(column.name for column in LedgerEntry.__table__.columns)


def row_template() -> dict[str, Any]:
    return dict.fromkeys(COLUMNS)


Row = dict[str, Any]
# (row, indexed arguments, data arguments) -> fills the row's argument columns
Filler = Callable[[Row, Sequence[Any], Sequence[Any]], None]


def _registered(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["counterparty"], row["can_issue"], row["can_accept"], row["value"] = d


def _allowance(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    row["seq"], row["previous_value"], row["value"] = d


def _status(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    row["seq"], row["status"] = d


def _operator(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["counterparty"] = d


def _rights(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    row["seq"], row["can_issue"], row["can_accept"] = d


def _settlement_address(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    row["seq"], row["counterparty"] = d


def _settled(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    row["seq"], row["settled_points"], row["settled_value"], row["ref"] = d


def _issued(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["ref"], row["reason"], row["rule_hash"], row["value"] = d
    row["item_ref"] = row["ref"]  # a single issue is an issuance of one item, its reference its own


def _batch(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["partner_id"],) = ix
    (
        row["seq"],
        row["epoch"],
        row["ref"],
        row["reason"],
        row["rule_hash"],
        row["batch_count"],
        row["amount"],
        row["value"],
    ) = d


def _batch_item(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["account"],) = ix
    row["seq"], row["amount"], row["item_ref"] = d


def _redeemed(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["ref"], row["nonce"], row["value"] = d


def _issuance_reversed(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    (
        row["seq"],
        row["ref"],
        row["item_ref"],
        row["amount"],
        row["return_ref"],
        row["requested"],
        row["recovered"],
        row["value"],
    ) = d


def _points_reversed(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["return_ref"] = d


def _redemption_refunded(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["ref"], row["refund_ref"], row["amount"], row["restored"], row["value"] = d


def _points_refunded(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["refund_ref"] = d


def _migrated(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["account"], row["counterparty"] = ix
    row["seq"], row["nonce"], row["recovery"], row["amount"] = d


def _expired(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["account"],) = ix
    row["seq"], row["epoch"], row["amount"] = d


def _transferred(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["account"], row["counterparty"] = ix
    row["seq"], row["epoch"], row["amount"] = d


def _revoked(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["account"],) = ix
    row["seq"], row["nonce"] = d


def _settlement_value(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["previous_value"], row["value"] = d


def _switch(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["enabled"] = d


def _role(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["role"], row["account"] = ix
    row["seq"], row["granted"], row["counterparty"] = d


def _handover(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["kind"], row["account"], row["delay"], row["schedule"] = d


def _pause(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["paused"], row["paused_duration"] = d


_FILLERS: dict[str, Filler] = {
    "PartnerRegistered": _registered,
    "PartnerAllowanceChanged": _allowance,
    "PartnerStatusChanged": _status,
    "PartnerOperatorChanged": _operator,
    "PartnerRightsChanged": _rights,
    "PartnerSettlementAddressChanged": _settlement_address,
    "SettlementRecorded": _settled,
    "PointsIssued": _issued,
    "PointsBatchIssued": _batch,
    "PointsIssuedInBatch": _batch_item,
    "PointsRedeemed": _redeemed,
    "PointsExpired": _expired,
    "PointsTransferred": _transferred,
    "ConsentRevoked": _revoked,
    "SettlementValueChanged": _settlement_value,
    "TransfersEnabledChanged": _switch,
    "RoleChanged": _role,
    "AdminHandoverChanged": _handover,
    "PauseChanged": _pause,
    "IssuanceReversed": _issuance_reversed,
    "PointsReversed": _points_reversed,
    "RedemptionRefunded": _redemption_refunded,
    "PointsRefunded": _points_refunded,
    "AccountMigrated": _migrated,
}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How to read one ledger event from a raw log."""

    name: str
    topic0: str  # 0x-prefixed lower-case hex, as nodes send it
    indexed: tuple[str, ...]  # ABI types of topics 1..n
    data: tuple[str, ...]  # ABI types of the data
    fill: Filler
    #: One reader per 32-byte word of the data: every ledger event's data is static words.
    words: tuple[Callable[[bytes], Any], ...] = ()


def _word_reader(abi_type: str) -> Callable[[bytes], Any]:
    """Decodes one static ABI word as strictly as eth-abi does (padding and ranges checked)."""
    if abi_type == "address":

        def address(word: bytes) -> str:
            if word[:12].strip(b"\0"):
                raise ValueError("address word with non-zero padding")
            return "0x" + word[12:].hex()

        return address
    if abi_type == "bool":

        def boolean(word: bytes) -> bool:
            value = int.from_bytes(word, "big")
            if value > 1:
                raise ValueError(f"bool word is {value}")
            return value == 1

        return boolean
    if abi_type.startswith("uint"):
        limit = 1 << int(abi_type[4:] or 256)

        def uint(word: bytes) -> int:
            value = int.from_bytes(word, "big")
            if value >= limit:
                raise ValueError(f"{abi_type} word is {value}")
            return value

        return uint
    if abi_type.startswith("int"):
        bits = int(abi_type[3:] or 256)
        low, high = -(1 << (bits - 1)), 1 << (bits - 1)

        def sint(word: bytes) -> int:
            value = int.from_bytes(word, "big", signed=True)
            if not low <= value < high:
                raise ValueError(f"{abi_type} word is {value}")
            return value

        return sint
    if abi_type == "bytes32":
        return bytes
    raise RuntimeError(f"ledger event data of type {abi_type} is not a static word")


def _specs() -> dict[str, EventSpec]:
    specs: dict[str, EventSpec] = {}
    for item in load_artifact("LoyaltyLedger").abi:
        if item.get("type") != "event" or not any(i["name"] == "seq" for i in item["inputs"]):
            continue
        name = item["name"]
        types = [i["type"] for i in item["inputs"]]
        signature = f"{name}({','.join(types)})"
        spec = EventSpec(
            name=name,
            topic0="0x" + keccak(signature.encode()).hex(),
            indexed=tuple(i["type"] for i in item["inputs"] if i["indexed"]),
            data=tuple(i["type"] for i in item["inputs"] if not i["indexed"]),
            fill=_FILLERS[name],
            words=tuple(_word_reader(i["type"]) for i in item["inputs"] if not i["indexed"]),
        )
        specs[spec.topic0] = spec
    missing = set(_FILLERS) - {s.name for s in specs.values()}
    if missing:  # the artifact and this module disagree: fail at import, not on the first such log
        raise RuntimeError(f"ledger ABI has no entry events {sorted(missing)}")
    return specs


#: topic0 -> spec, for every ledger entry event of the artifact.
ENTRY_EVENTS: dict[str, EventSpec] = _specs()


def entry_topics() -> list[str]:
    """The topic0 filter of ``eth_getLogs`` that selects ledger entries (and not ERC-20 ``Transfer``s)."""
    return sorted(ENTRY_EVENTS)


def _topic_value(abi_type: str, topic: str) -> Any:
    if abi_type == "address":
        return "0x" + topic[-40:].lower()
    if abi_type.startswith("uint"):
        return int(topic, 16)
    if abi_type == "bool":
        return int(topic, 16) != 0
    return bytes.fromhex(topic[2:])


#: A batch item's columns that come from its header.
_FROM_BATCH_HEADER = ("partner_id", "epoch", "ref", "reason", "rule_hash")
#: Headers of operations of several entries (their parts follow them).
_HEADERS = frozenset({"PointsBatchIssued", "IssuanceReversed", "RedemptionRefunded", "AccountMigrated"})
#: Parts that only ever follow their header (in the same transaction) -> the header.
_PARTS = {"PointsReversed": "IssuanceReversed", "PointsRefunded": "RedemptionRefunded"}


def decode_logs(logs: Iterable[Mapping[str, Any]], timestamps: Mapping[int, int]) -> list[Row]:
    """Rows for ``ledger_entries`` (``head`` left ``None``), in the order given (the node's on-chain order).

    ``timestamps`` maps block numbers to block timestamps (for logs that do not carry ``blockTimestamp``).
    The parts of an operation are linked to its header (``batch_seq``), which the contract emits first in
    the same transaction, so it is always in the same ``eth_getLogs`` answer: a batch item (which also takes
    the header's partner, epoch, reference, reason and rule), a reversal's ``PointsReversed``, a refund's
    ``PointsRefunded`` and the ``PointsExpired`` right after one that expired on arrival (same account, epoch
    and amount), and a migration's ``PointsTransferred`` (as many as move the migration's amount; a transfer
    later in the same transaction is not part of it).
    """
    rows: list[Row] = []
    template = row_template()
    header: Row | None = None
    left = 0  # points of the migration header not yet moved by its parts
    last_block = last_tx = ""
    number = timestamp = tx_index = 0
    block_hash = tx_hash = b""
    for log in logs:
        topics: list[str] = log["topics"]
        spec = ENTRY_EVENTS.get(topics[0].lower()) if topics else None
        if spec is None:
            raise UndecodableLog(log, "topic0 is not a ledger entry event")
        # Topics and data in one conversion: the entry hash is over exactly these bytes.
        raw = bytes.fromhex("".join(t[2:] for t in topics) + log["data"][2:])
        data = raw[32 * len(topics) :]
        try:
            if len(data) != 32 * len(spec.words):
                raise ValueError(f"{len(data)} bytes of data, not {32 * len(spec.words)}")
            indexed = [_topic_value(t, topic) for t, topic in zip(spec.indexed, topics[1:], strict=True)]
            values = [read(data[32 * i : 32 * i + 32]) for i, read in enumerate(spec.words)]
        except Exception as exc:  # short, long or malformed data; a topic too many or too few
            raise UndecodableLog(log, f"{spec.name}: {exc}") from exc
        row = template.copy()
        spec.fill(row, indexed, values)
        # Many logs share a block and a transaction (a batch is hundreds): convert each of those once.
        block_key = log["blockHash"]
        if block_key != last_block:
            last_block = block_key
            number = int(log["blockNumber"], 16)
            block_hash = bytes.fromhex(block_key[2:])
            stamp = log.get("blockTimestamp")
            timestamp = int(stamp, 16) if stamp else timestamps[number]
        tx_key = log["transactionHash"]
        if tx_key != last_tx:
            last_tx = tx_key
            tx_hash = bytes.fromhex(tx_key[2:])
            tx_index = int(log["transactionIndex"], 16)
        name = spec.name
        row["event"] = name
        row["block_number"] = number
        row["block_hash"] = block_hash
        row["block_timestamp"] = timestamp
        row["tx_hash"] = tx_hash
        row["tx_index"] = tx_index
        row["log_index"] = int(log["logIndex"], 16)
        row["entry_hash"] = keccak(raw)
        if name == "PointsIssuedInBatch":  # first: the bulk of a backfill
            if header is None or header["event"] != "PointsBatchIssued" or header["tx_hash"] != tx_hash:
                raise UndecodableLog(log, "batch item without its PointsBatchIssued header")
            for column in _FROM_BATCH_HEADER:
                row[column] = header[column]
            row["batch_seq"] = header["seq"]
        elif name in _HEADERS:
            header = row
            left = row["amount"] if name == "AccountMigrated" else 0
        elif name in _PARTS:
            if header is None or header["event"] != _PARTS[name] or header["tx_hash"] != tx_hash:
                raise UndecodableLog(log, f"{name} without its {_PARTS[name]} header")
            row["batch_seq"] = header["seq"]
        elif name == "PointsTransferred":
            if left > 0 and header is not None and header["tx_hash"] == tx_hash:
                row["batch_seq"] = header["seq"]
                left -= row["amount"]
        elif name == "PointsExpired" and rows:
            previous = rows[-1]
            if (
                previous["event"] == "PointsRefunded"
                and previous["tx_hash"] == tx_hash
                and previous["account"] == row["account"]
                and previous["epoch"] == row["epoch"]
                and previous["amount"] == row["amount"]
            ):
                row["batch_seq"] = previous["batch_seq"]
        rows.append(row)
    return rows
