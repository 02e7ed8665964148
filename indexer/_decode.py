"""The hot path: raw ``eth_getLogs`` results to ledger-entry rows, dispatched on topic0, decoded with eth-abi.

No web3 formatters run per log: a log is the JSON object the node sent (hex strings), its topic0 picks the
event, indexed arguments are read from the topics, the rest is one ``eth_abi`` tuple decode of the data. The
entry hash is computed from the raw bytes (``keccak(topic0 ‖ topics ‖ data)``), as the contract does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import default_codec
from eth_hash.auto import keccak

from chain import load_artifact

from ._errors import UndecodableLog

__all__ = ["ENTRY_EVENTS", "EventSpec", "decode_logs", "entry_topics", "row_template"]

#: Every column of ``ledger_entries`` but the hash-chain head (filled in by the store, which knows the
#: previous head); executemany needs the same keys in every row.
COLUMNS = (
    "seq",
    "block_number",
    "block_hash",
    "block_timestamp",
    "tx_hash",
    "tx_index",
    "log_index",
    "event",
    "partner_id",
    "account",
    "counterparty",
    "epoch",
    "amount",
    "ref",
    "reason",
    "rule_hash",
    "nonce",
    "batch_count",
    "batch_seq",
    "value",
    "previous_value",
    "active",
    "enabled",
    "can_issue",
    "can_accept",
    "entry_hash",
    "head",
)


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
    row["seq"], row["active"] = d


def _issued(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["ref"], row["reason"], row["rule_hash"] = d


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
    ) = d


def _batch_item(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["account"],) = ix
    row["seq"], row["amount"] = d


def _redeemed(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["partner_id"], row["account"] = ix
    row["seq"], row["epoch"], row["amount"], row["ref"], row["nonce"] = d


def _expired(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    (row["account"],) = ix
    row["seq"], row["epoch"], row["amount"] = d


def _transferred(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["account"], row["counterparty"] = ix
    row["seq"], row["epoch"], row["amount"] = d


def _settlement(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["previous_value"], row["value"] = d


def _switch(row: Row, ix: Sequence[Any], d: Sequence[Any]) -> None:
    row["seq"], row["enabled"] = d


_FILLERS: dict[str, Filler] = {
    "PartnerRegistered": _registered,
    "PartnerAllowanceChanged": _allowance,
    "PartnerStatusChanged": _status,
    "PointsIssued": _issued,
    "PointsBatchIssued": _batch,
    "PointsIssuedInBatch": _batch_item,
    "PointsRedeemed": _redeemed,
    "PointsExpired": _expired,
    "PointsTransferred": _transferred,
    "SettlementValueChanged": _settlement,
    "TransfersEnabledChanged": _switch,
}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How to read one ledger event from a raw log."""

    name: str
    topic0: str  # 0x-prefixed lower-case hex, as nodes send it
    indexed: tuple[str, ...]  # ABI types of topics 1..n
    data: tuple[str, ...]  # ABI types of the data
    fill: Filler


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


def decode_logs(logs: Iterable[Mapping[str, Any]], timestamps: Mapping[int, int]) -> list[Row]:
    """Rows for ``ledger_entries`` (``head`` left ``None``), in the order given (the node's on-chain order).

    ``timestamps`` maps block numbers to block timestamps (for logs that do not carry ``blockTimestamp``).
    A batch item takes partner, epoch, reference, reason and rule from the batch header before it, which the
    contract emits in the same transaction, so it is always in the same ``eth_getLogs`` answer.
    """
    rows: list[Row] = []
    decode = default_codec.decode
    template = row_template()
    header: Row | None = None
    for log in logs:
        topics: list[str] = log["topics"]
        spec = ENTRY_EVENTS.get(topics[0].lower()) if topics else None
        if spec is None:
            raise UndecodableLog(log, "topic0 is not a ledger entry event")
        data_hex: str = log["data"]
        data = bytes.fromhex(data_hex[2:])
        try:
            indexed = [_topic_value(t, topic) for t, topic in zip(spec.indexed, topics[1:], strict=True)]
            values = decode(spec.data, data)
        except Exception as exc:  # eth-abi raises several unrelated types for short or malformed data
            raise UndecodableLog(log, f"{spec.name}: {exc}") from exc
        row = template.copy()
        spec.fill(row, indexed, values)
        number = int(log["blockNumber"], 16)
        stamp = log.get("blockTimestamp")
        row["event"] = spec.name
        row["block_number"] = number
        row["block_hash"] = bytes.fromhex(log["blockHash"][2:])
        row["block_timestamp"] = int(stamp, 16) if stamp else timestamps[number]
        row["tx_hash"] = bytes.fromhex(log["transactionHash"][2:])
        row["tx_index"] = int(log["transactionIndex"], 16)
        row["log_index"] = int(log["logIndex"], 16)
        row["entry_hash"] = keccak(b"".join(bytes.fromhex(t[2:]) for t in topics) + data)
        if spec.name == "PointsBatchIssued":
            header = row
        elif spec.name == "PointsIssuedInBatch":
            if header is None or header["tx_hash"] != row["tx_hash"]:
                raise UndecodableLog(log, "batch item without its PointsBatchIssued header")
            for column in ("partner_id", "epoch", "ref", "reason", "rule_hash"):
                row[column] = header[column]
            row["batch_seq"] = header["seq"]
        rows.append(row)
    return rows
