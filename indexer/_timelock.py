"""The mirrored TimelockController: its raw logs and the admin operations they add up to.

A timelock's events are not ledger entries: no ``seq``, dynamic ``bytes data``, and rare (one per scheduled,
executed or cancelled call). They are fetched with the ledger's logs (one ``eth_getLogs`` over both
addresses), stored raw in ``timelock_events`` in the same SQL transaction as the ledger entries of the same
blocks, and decoded with eth-abi only when the ``admin_operations`` rows of the operations they touch are
recomputed (forward, and after a reorganisation removed some of them)::

    CallScheduled(id, index, target, value, data, predecessor, delay)   a call scheduled, ready at t + delay
    CallSalt(id, salt)                                                   the operation's salt (when non-zero)
    CallExecuted(id, index, target, value, data)                         the call was executed
    Cancelled(id)                                                        every call of the operation cancelled
    MinDelayChange(oldDuration, newDuration)                             the timelock's minimum delay
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode

from chain import load_artifact

from ._decode import keccak
from ._errors import UndecodableLog

__all__ = [
    "CANCELLED",
    "EXECUTED",
    "SCHEDULED",
    "TIMELOCK_EVENTS",
    "TimelockSpec",
    "decode_timelock_log",
    "fold_operations",
    "function_names",
    "timelock_rows",
    "timelock_topics",
]

SCHEDULED, EXECUTED, CANCELLED = "scheduled", "executed", "cancelled"
_MIRRORED = ("CallScheduled", "CallSalt", "CallExecuted", "Cancelled", "MinDelayChange")


@dataclass(frozen=True, slots=True)
class TimelockSpec:
    name: str
    topic0: str
    indexed: tuple[str, ...]
    data: tuple[str, ...]
    #: argument names, indexed ones first (as the topics then the data carry them)
    names: tuple[str, ...]


def _specs() -> dict[str, TimelockSpec]:
    specs: dict[str, TimelockSpec] = {}
    for item in load_artifact("CoalitionTimelock").abi:
        if item.get("type") != "event" or item["name"] not in _MIRRORED:
            continue
        inputs = item["inputs"]
        signature = f"{item['name']}({','.join(i['type'] for i in inputs)})"
        indexed = [i for i in inputs if i["indexed"]]
        data = [i for i in inputs if not i["indexed"]]
        spec = TimelockSpec(
            name=item["name"],
            topic0="0x" + keccak(signature.encode()).hex(),
            indexed=tuple(i["type"] for i in indexed),
            data=tuple(i["type"] for i in data),
            names=tuple(i["name"] for i in indexed + data),
        )
        specs[spec.topic0] = spec
    missing = set(_MIRRORED) - {s.name for s in specs.values()}
    if missing:
        raise RuntimeError(f"timelock ABI has no events {sorted(missing)}")
    return specs


#: topic0 -> spec, for the mirrored events of CoalitionTimelock (OpenZeppelin's TimelockController).
TIMELOCK_EVENTS: dict[str, TimelockSpec] = _specs()
_BY_NAME = {spec.name: spec for spec in TIMELOCK_EVENTS.values()}


def timelock_topics() -> list[str]:
    return sorted(TIMELOCK_EVENTS)


def timelock_rows(logs: Iterable[Mapping[str, Any]], timestamps: Mapping[int, int]) -> list[dict[str, Any]]:
    """Rows for ``timelock_events``: the logs as sent (topics 1..n and data as bytes), checked to decode."""
    rows = []
    for log in logs:
        topics: list[str] = log["topics"]
        spec = TIMELOCK_EVENTS.get(topics[0].lower()) if topics else None
        if spec is None:
            raise UndecodableLog(log, "topic0 is not a mirrored timelock event")
        number = int(log["blockNumber"], 16)
        stamp = log.get("blockTimestamp")
        row = {
            "block_number": number,
            "log_index": int(log["logIndex"], 16),
            "block_hash": bytes.fromhex(log["blockHash"][2:]),
            "block_timestamp": int(stamp, 16) if stamp else timestamps[number],
            "tx_hash": bytes.fromhex(log["transactionHash"][2:]),
            "event": spec.name,
            "topics": bytes.fromhex("".join(t[2:] for t in topics[1:])),
            "data": bytes.fromhex(log["data"][2:]),
        }
        try:
            args = decode_timelock_log(row)
        except Exception as exc:  # wrong topic count, malformed data
            raise UndecodableLog(log, f"{spec.name}: {exc}") from exc
        row["operation_id"] = args.get("id")
        rows.append(row)
    return rows


def decode_timelock_log(row: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a ``timelock_events`` row, by their ABI names (``id``, ``index``, ``target``, ...)."""
    spec = _BY_NAME[row["event"]]
    topics = bytes(row["topics"])
    if len(topics) != 32 * len(spec.indexed):
        raise ValueError(f"{len(topics) // 32} indexed topics, not {len(spec.indexed)}")
    values: list[Any] = [abi_decode([t], topics[32 * i : 32 * i + 32])[0] for i, t in enumerate(spec.indexed)]
    values += list(abi_decode(list(spec.data), bytes(row["data"]), strict=True))
    args = dict(zip(spec.names, values, strict=True))
    for name in ("target",):
        if name in args:
            args[name] = str(args[name]).lower()
    return args


def function_names(*artifacts: str) -> dict[bytes, str]:
    """4-byte selector -> function name for the artifacts' functions."""
    from eth_utils.abi import function_signature_to_4byte_selector

    from chain._errors import abi_type

    names: dict[bytes, str] = {}
    for artifact in artifacts:
        for item in load_artifact(artifact).abi:
            if item.get("type") == "function":
                signature = f"{item['name']}({','.join(abi_type(p) for p in item['inputs'])})"
                names.setdefault(function_signature_to_4byte_selector(signature), item["name"])
    return names


_LEDGER_FUNCTIONS = function_names("LoyaltyLedger")
_TIMELOCK_FUNCTIONS = function_names("CoalitionTimelock")


def fold_operations(
    events: Sequence[Mapping[str, Any]], *, timelock: str, ledger: str
) -> list[dict[str, Any]]:
    """The ``admin_operations`` rows that ``events`` (every stored event of some operation ids, in on-chain
    order) leave. A call executed or cancelled without a mirrored schedule (scheduled before the mirror's
    first block) has no row."""
    ops: dict[tuple[bytes, int], dict[str, Any]] = {}
    for event in events:
        args = decode_timelock_log(event)
        name = event["event"]
        if name == "CallScheduled":
            target = args["target"]
            data = bytes(args["data"])
            names = (
                _LEDGER_FUNCTIONS if target == ledger else _TIMELOCK_FUNCTIONS if target == timelock else {}
            )
            ops[(args["id"], args["index"])] = {
                "operation_id": args["id"],
                "call_index": args["index"],
                "timelock": timelock,
                "target": target,
                "value": args["value"],
                "data": data,
                "function": names.get(data[:4]),
                "predecessor": args["predecessor"],
                "salt": None,
                "delay": args["delay"],
                "ready_at": event["block_timestamp"] + args["delay"],
                "status": SCHEDULED,
                "scheduled_block": event["block_number"],
                "scheduled_at": event["block_timestamp"],
                "scheduled_tx": bytes(event["tx_hash"]),
                "executed_block": None,
                "executed_tx": None,
                "cancelled_block": None,
                "cancelled_tx": None,
            }
        elif name == "CallSalt":
            for (op_id, _), op in ops.items():
                if op_id == args["id"] and op["status"] == SCHEDULED:
                    op["salt"] = args["salt"]
        elif name == "CallExecuted":
            executed = ops.get((args["id"], args["index"]))
            if executed is not None:
                executed.update(
                    status=EXECUTED, executed_block=event["block_number"], executed_tx=bytes(event["tx_hash"])
                )
        elif name == "Cancelled":
            for (op_id, _), op in ops.items():
                if op_id == args["id"] and op["status"] == SCHEDULED:
                    op.update(
                        status=CANCELLED,
                        cancelled_block=event["block_number"],
                        cancelled_tx=bytes(event["tx_hash"]),
                    )
    return list(ops.values())
