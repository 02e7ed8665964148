"""``loyalty audit verify``: rebuild the ledger from its logs, then hold the chain's own views, and optionally
the operator's API and mirror database, against the rebuild.

The verdict about the chain needs nothing from the operator: an RPC URL and the ledger's address. The run:

1. **Fix the block.** The block verified at is pinned by number and hash before anything is read (the
   latest block unless ``--block``); every later read names that block, so entries arriving meanwhile change
   nothing.
2. **Rebuild from logs.** ``eth_getLogs`` over the ledger's address in ranges that adapt to the node (a
   range refused as too large is split, or cut where the node suggests; an answer that is too large shrinks
   the next range). Retryable failures (timeouts, 429, 5xx, resets) are retried by the transport. A range is
   never skipped: the entries must run on without a gap from one range to the next, and a range whose
   entries do not continue the sequence is read again from the last block that did (a load-balanced node
   that is behind answers "no logs" for blocks it lacks). Each entry is decoded by :mod:`._decode` and
   applied to :class:`._state.Rebuild`, which checks the rules entries obey as they arrive. Block
   timestamps (for the ledger clock) come from headers, fetched in JSON-RPC batches.
3. **Hold the chain's views against the rebuild**, all at the pinned block, in JSON-RPC batches: the head
   and sequence, every total, the supply and pending expiry, the clock, every partner's ``partner(id)``,
   positions and open positions, the coalition's positions (and that all positions sum to zero), every
   account's ``balanceOf``, ``liveBalances`` and ``balanceOfAtEpoch`` of each epoch it holds, each epoch's
   supply, where migrated accounts' points went, and every role holder. A node that refuses state at that
   block (a pruned node, for an old block) leaves those checks *unchecked*, named in the report, while the
   log rebuild still completes.
4. **The timelock.** When an admin of the ledger is a contract (the coalition's timelock), its
   ``CallScheduled`` / ``CallExecuted`` / ``Cancelled`` logs are read too, and every executed call must have
   been scheduled and ready (its delay passed) when it ran.
5. **Observers** (:mod:`._diff`: the mirror database, the API) see every entry as it is applied and add their
   own differences at the end.

A checkpoint file (``--checkpoint``) holds the rebuild after a run, with the block and its hash; a later run
whose chain still has that block resumes after it, so it reads only what is new. A checkpoint whose block
was reorganised away is ignored (the run starts from the deployment block) and the report says so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from web3 import HTTPProvider, Web3

from chain import ChainError, RetryPolicy, Rpc
from chain._rpc import RangeTooLarge, RpcError, suggested_range

from ._decode import Entry, decode_log, keccak, shapes
from ._errors import CheckpointError, NodeError
from ._state import VIEW_FIELDS, Clock, Difference, Rebuild

__all__ = ["AuditTarget", "Observer", "Report", "VerifiedBlock", "verify"]

CHECKPOINT_VERSION = 1
DEFAULT_ADMIN_ROLE = "0x" + "00" * 32
#: topic0 of every ledger entry: the query asks for entries only (not ERC-20 Transfer, Approval, ...)
ENTRY_TOPICS = ["0x" + topic.hex() for topic in shapes()]


@dataclass(frozen=True)
class AuditTarget:
    """What to verify: the node and ledger, and optionally where the operator serves its copy."""

    rpc_url: str
    ledger: str
    from_block: int = 0
    block: int | None = None
    api_url: str | None = None
    api_key: str | None = None
    db_url: str | None = None
    sample: int = 0
    checkpoint: Path | None = None
    #: initial eth_getLogs range in blocks (it adapts to the node's answers)
    log_range: int = 5_000
    request_timeout: float = 60.0


@dataclass(frozen=True)
class VerifiedBlock:
    number: int
    hash: str
    timestamp: int
    current_epoch: int


class Observer(Protocol):
    """A second copy of the ledger held against the rebuild (the mirror database, the API)."""

    name: str
    #: what it could not hold against the rebuild (it ends up in the report's ``unchecked``)
    unchecked: list[str]

    def on_entry(self, entry: Entry) -> None: ...

    def finish(self, state: Rebuild, at: VerifiedBlock) -> list[Difference]: ...

    def close(self) -> None: ...


@dataclass
class Report:
    """The verdict: where it was reached, what was counted, every difference, what could not be checked."""

    ledger: str
    chain_id: int
    block_number: int
    block_hash: str
    entries: int = 0
    head: str = ""
    accounts: int = 0
    partners: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    operations: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No difference and nothing left unchecked."""
        return not self.differences and not self.unchecked

    @property
    def exit_code(self) -> int:
        """0 everything matches; 1 a difference was found; 2 nothing differs but something went unchecked."""
        if self.differences:
            return 1
        return 2 if self.unchecked else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ledger": self.ledger,
            "chain_id": self.chain_id,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "entries": self.entries,
            "head": self.head,
            "accounts": self.accounts,
            "partners": self.partners,
            "counts": self.counts,
            "checks": self.checks,
            "differences": [d.to_json() for d in self.differences],
            "unchecked": self.unchecked,
            "notes": self.notes,
            "admin_operations": self.operations,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> list[str]:
        verdict = "OK" if self.ok else ("DIFFERENCES" if self.differences else "INCOMPLETE")
        lines = [
            f"{verdict}: ledger {self.ledger} on chain {self.chain_id} at block {self.block_number} "
            f"({self.block_hash})",
            f"  entries {self.entries}, head {self.head}, accounts {self.accounts}, partners {self.partners}",
            "  checks: " + ", ".join(f"{k} {v}" for k, v in sorted(self.checks.items())),
        ]
        if self.resumed_from is not None:
            lines.append(f"  resumed from the checkpoint at block {self.resumed_from}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  DIFFERENCE {d.line()}" for d in self.differences[:200]]
        if len(self.differences) > 200:
            lines.append(f"  ... and {len(self.differences) - 200} more differences (see the JSON report)")
        lines += [f"  UNCHECKED {u}" for u in self.unchecked]
        return lines


# --------------------------------------------------------------------------- the node


def _selector(signature: str) -> str:
    return "0x" + keccak(signature.encode())[:4].hex()


def _word(value: int | str) -> str:
    if isinstance(value, str):
        return value[2:].lower().rjust(64, "0")
    return value.to_bytes(32, "big", signed=value < 0).hex()


class Node:
    """The auditor's reads: logs over ranges that adapt, headers and views in batches, at pinned blocks."""

    def __init__(self, url: str, timeout: float) -> None:
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}))
        self.rpc = Rpc(w3, retry=RetryPolicy(attempts=8, initial_delay=0.2, max_delay=5.0))
        self._timestamps: dict[int, int] = {}

    def request(self, method: str, params: Sequence[Any]) -> Any:
        try:
            return self.rpc.request(method, params)
        except ChainError as exc:
            raise NodeError(f"{method}: {exc}") from exc

    def header(self, block: int | str) -> dict[str, Any]:
        tag = hex(block) if isinstance(block, int) else block
        header = self.request("eth_getBlockByNumber", [tag, False])
        if not header:
            raise NodeError(f"the node has no block {block}")
        self._timestamps[int(header["number"], 16)] = int(header["timestamp"], 16)
        return dict(header)

    def prefetch_timestamps(self, blocks: set[int]) -> None:
        missing = sorted(b for b in blocks if b not in self._timestamps)
        if not missing:
            return
        try:
            answers = self.rpc.batch([("eth_getBlockByNumber", [hex(b), False]) for b in missing])
        except ChainError as exc:
            raise NodeError(f"block headers: {exc}") from exc
        for block, header in zip(missing, answers, strict=True):
            if isinstance(header, Exception) or not header:
                header = self.header(block)
            self._timestamps[block] = int(header["timestamp"], 16)

    def timestamp(self, block: int) -> int:
        if block not in self._timestamps:
            self.header(block)
        return self._timestamps[block]

    def logs(
        self, address: str | list[str], first: int, last: int, topics: list[str] | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"address": address, "fromBlock": hex(first), "toBlock": hex(last)}
        if topics is not None:
            query["topics"] = [topics]
        return list(self.request("eth_getLogs", [query]))

    def calls(
        self, ledger: str, calls: Sequence[tuple[str, Sequence[int | str]]], block: int
    ) -> list[bytes | Exception]:
        """``eth_call`` of each (signature, args) on ``ledger`` at ``block``; the return data or its error."""
        requests = [
            (
                "eth_call",
                [{"to": ledger, "data": _selector(sig) + "".join(_word(a) for a in args)}, hex(block)],
            )
            for sig, args in calls
        ]
        try:
            answers = self.rpc.batch(requests)
        except ChainError as exc:
            return [exc for _ in requests]
        return [a if isinstance(a, Exception) else bytes.fromhex(str(a)[2:]) for a in answers]


# --------------------------------------------------------------------------- the run


def verify(
    target: AuditTarget,
    *,
    observers: Sequence[Observer] = (),
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Verifies the ledger at ``target`` (see the module docstring). ``progress(done_block, last_block)`` is
    called after every range of logs. The observers are closed however it ends."""
    try:
        return _verify(target, observers, progress)
    finally:
        for observer in observers:
            observer.close()


def _verify(
    target: AuditTarget, observers: Sequence[Observer], progress: Callable[[int, int], None] | None
) -> Report:
    started = time.perf_counter()
    node = Node(target.rpc_url, target.request_timeout)
    ledger = target.ledger.lower()
    chain_id = int(node.request("eth_chainId", []), 16)
    pinned = node.header(target.block if target.block is not None else "latest")
    number, block_hash = int(pinned["number"], 16), str(pinned["hash"])
    report = Report(ledger=ledger, chain_id=chain_id, block_number=number, block_hash=block_hash)

    clock = _clock(node, ledger, number)
    state, start = _resume(target, node, clock, chain_id, report)
    state.timestamp_of = node.timestamp
    _rebuild(node, ledger, state, start, number, observers, progress)
    state.finish()
    report.differences += state.differences
    timestamp = int(pinned["timestamp"], 16)
    at = VerifiedBlock(number, block_hash, timestamp, state.epoch_at(timestamp))
    report.entries, report.head = state.seq, "0x" + state.head.hex()
    report.accounts, report.partners = len(state.held), len(state.partners)
    report.counts = dict(sorted(state.counts.items()))

    _check_views(node, ledger, state, at, report)
    _check_timelock(node, target.from_block, state, at, report)
    for observer in observers:
        found = observer.finish(state, at)
        report.checks[observer.name] = report.checks.get(observer.name, 0) + 1
        report.differences += found
        report.unchecked += [f"{observer.name}: {what}" for what in observer.unchecked]
    if target.checkpoint is not None:
        _save_checkpoint(target.checkpoint, state, chain_id, ledger)
    report.seconds = time.perf_counter() - started
    return report


def _clock(node: Node, ledger: str, block: int) -> Clock:
    """The ledger's immutable clock parameters: at the pinned block, or at the latest one when the node
    refuses old state (they never change)."""
    signatures = [("genesisTimestamp()", ()), ("epochLength()", ()), ("validityDuration()", ())]
    for at in (block, None):
        answers = node.calls(
            ledger, signatures, at if at is not None else int(node.header("latest")["number"], 16)
        )
        if not any(isinstance(a, Exception) for a in answers):
            genesis, length, validity = (int.from_bytes(a, "big") for a in answers if isinstance(a, bytes))
            if length == 0:
                raise NodeError(f"{ledger} is no loyalty ledger (its epochLength() is 0)")
            return Clock(genesis, length, validity)
    raise NodeError(
        f"{ledger} answers no clock (genesisTimestamp, epochLength, validityDuration): {answers[0]!r}"
    )


def _resume(
    target: AuditTarget, node: Node, clock: Clock, chain_id: int, report: Report
) -> tuple[Rebuild, int]:
    fresh = Rebuild(clock, node.timestamp)
    path = target.checkpoint
    if path is None or not path.exists():
        return fresh, target.from_block
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    if (
        data.get("version") != CHECKPOINT_VERSION
        or data.get("chain_id") != chain_id
        or data.get("ledger") != target.ledger.lower()
    ):
        raise CheckpointError(f"{path} is a checkpoint of another ledger, chain or version")
    state_data = data["state"]
    if state_data["block"] > report.block_number:
        raise CheckpointError(
            f"{path} is at block {state_data['block']}, after the block verified ({report.block_number})"
        )
    if state_data["block"] >= 0:
        canonical = node.header(state_data["block"])["hash"]
        if canonical != state_data["block_hash"]:
            report.notes.append(
                f"the checkpoint's block {state_data['block']} was reorganised away: verified from the start"
            )
            return fresh, target.from_block
    report.resumed_from = state_data["block"]
    return Rebuild.from_json(state_data, clock, node.timestamp), max(
        state_data["block"] + 1, target.from_block
    )


def _save_checkpoint(path: Path, state: Rebuild, chain_id: int, ledger: str) -> None:
    data = {"version": CHECKPOINT_VERSION, "chain_id": chain_id, "ledger": ledger, "state": state.to_json()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


#: entries whose checks need their block's timestamp (the ledger clock at that moment)
_TIMED = frozenset(
    {
        "PointsIssued",
        "PointsBatchIssued",
        "PointsRedeemed",
        "PointsExpired",
        "PointsTransferred",
        "PauseChanged",
    }
)


def _ranges(
    node: Node, ledger: str | list[str], first: int, last: int, span: int, topics: list[str] | None = None
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """(from, to, logs) over [first, last], shrinking a range the node refuses and growing one it answers
    lightly, so that answers stay around ten thousand logs."""
    start = first
    while start <= last:
        end = min(start + span - 1, last)
        try:
            logs = node.logs(ledger, start, end, topics)
        except NodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, RangeTooLarge | RpcError) and end > start:
                suggested = suggested_range(str(cause))
                span = max(
                    1, (suggested[1] - suggested[0] + 1) if suggested and suggested[0] == start else span // 2
                )
                continue
            raise
        yield start, end, logs
        if len(logs) > 20_000 and span > 1:
            span = max(1, span // 2)
        elif len(logs) < 5_000:
            span = min(span * 2, 1_000_000)
        start = end + 1


def _rebuild(
    node: Node,
    ledger: str,
    state: Rebuild,
    first: int,
    last: int,
    observers: Sequence[Observer],
    progress: Callable[[int, int], None] | None,
    *,
    rereads: int = 5,
) -> None:
    start = first
    attempts = 0
    while True:
        resumed = False
        for _, end, logs in _ranges(node, ledger, start, last, 5_000, ENTRY_TOPICS):
            entries = [decode_log(log) for log in logs if not log.get("removed")]
            entries.sort(key=lambda e: (e.block, e.log_index))
            if entries and entries[0].seq > state.seq + 1 and attempts < rereads:
                # entries between the last applied one and this range were not answered: read them again
                attempts += 1
                start = max(first, state.block if state.block >= 0 else first)
                resumed = True
                break
            entries = [e for e in entries if e.seq > state.seq] if attempts else entries
            node.prefetch_timestamps({e.block for e in entries if e.name in _TIMED})
            for entry in entries:
                state.apply(entry)
                for observer in observers:
                    observer.on_entry(entry)
            if progress is not None:
                progress(end, last)
        if resumed:
            continue
        # the last range may have been answered by a node behind the others: the chain's own count says
        answer = node.calls(ledger, [("ledgerSequence()", ())], last)[0]
        if isinstance(answer, bytes) and _int(answer) > state.seq and attempts < rereads:
            attempts += 1
            start = max(first, state.block)
            continue
        return


# --------------------------------------------------------------------------- the chain's views


def _int(data: bytes, signed: bool = False) -> int:
    return int.from_bytes(data[:32], "big", signed=signed)


def _pair(data: bytes) -> tuple[int, int]:
    return _int(data[:32], True), _int(data[32:64], True)


def _check_views(node: Node, ledger: str, state: Rebuild, at: VerifiedBlock, report: Report) -> None:
    current = at.current_epoch
    differences: list[Difference] = []

    def differ(subject: str, name: str, expected: Any, found: Any) -> None:
        if expected != found:
            differences.append(
                Difference(
                    "state", subject, name, expected, found, f"the contract's view at block {at.number}"
                )
            )

    pending = sum(
        amount
        for by_epoch in state.held.values()
        for epoch, amount in by_epoch.items()
        if state.expired(epoch, current)
    )
    partner_ids = sorted(state.partners)
    checks: list[tuple[str, str, Sequence[int | str], Callable[[bytes], Any], Any]] = [
        ("ledger", "ledgerHead()", (), lambda d: "0x" + d[:32].hex(), "0x" + state.head.hex()),
        ("ledger", "ledgerSequence()", (), _int, state.seq),
        ("ledger", "totalIssued()", (), _int, state.totals["issued"]),
        ("ledger", "totalRedeemed()", (), _int, state.totals["redeemed"]),
        ("ledger", "totalExpired()", (), _int, state.totals["expired"]),
        ("ledger", "totalReversed()", (), _int, state.totals["reversed"]),
        ("ledger", "totalRefunded()", (), _int, state.totals["refunded"]),
        ("ledger", "outstandingSupply()", (), _int, state.outstanding(current)),
        ("ledger", "pendingExpiry()", (), _int, pending),
        ("ledger", "currentEpoch()", (), _int, current),
        ("ledger", "paused()", (), lambda d: _int(d) == 1, state.paused),
        ("ledger", "transfersEnabled()", (), lambda d: _int(d) == 1, state.transfers_enabled),
        (
            "ledger",
            "partnerIds()",
            (),
            lambda d: sorted(abi_decode(["uint32[]"], d)[0]),
            partner_ids,
        ),
    ]
    if state.settlement_value is not None:
        checks.append(("ledger", "settlementValue()", (), _int, state.settlement_value))
    coalition_points = (
        state.totals["issued"]
        - state.totals["reversed"]
        - state.totals["redeemed"]
        + state.totals["refunded"]
    )
    coalition_value = -sum(p.position()[1] for p in state.partners.values())
    settled = (
        sum(p.settled_points for p in state.partners.values()),
        sum(p.settled_value for p in state.partners.values()),
    )
    checks.append(("coalition", "coalitionPosition()", (), _pair, (coalition_points, coalition_value)))
    checks.append(
        (
            "coalition",
            "coalitionOpenPosition()",
            (),
            _pair,
            (coalition_points + settled[0], coalition_value + settled[1]),
        )
    )
    for pid in partner_ids:
        partner = state.partners[pid]
        checks.append((f"partner {pid}", "partner(uint32)", (pid,), lambda d: d, partner))
        checks.append((f"partner {pid}", "partnerPosition(uint32)", (pid,), _pair, partner.position()))
        checks.append(
            (f"partner {pid}", "partnerOpenPosition(uint32)", (pid,), _pair, partner.open_position())
        )
    for epoch in sorted(state.epoch_supply):
        checks.append(("ledger", "epochSupply(uint256)", (epoch,), _int, state.epoch_supply[epoch]))
    for account in sorted(state.held):
        held = state.held[account]
        live = [(e, held[e]) for e in state.live_epochs(current) if held.get(e)]
        checks.append((f"account {account}", "balanceOf(address)", (account,), _int, sum(n for _, n in live)))
        checks.append(
            (
                f"account {account}",
                "liveBalances(address)",
                (account,),
                lambda d: list(zip(*abi_decode(["uint256[]", "uint256[]"], d), strict=True)),
                live,
            )
        )
        for epoch, amount in live:
            checks.append(
                (f"account {account}", "balanceOfAtEpoch(uint256,address)", (epoch, account), _int, amount)
            )
    for account in sorted(state.migrated):
        checks.append(
            (
                f"account {account}",
                "holderOf(address)",
                (account,),
                lambda d: "0x" + d[12:32].hex(),
                state.holder_of(account),
            )
        )
    for role, members in sorted(state.roles.items()):
        for member in sorted(members):
            checks.append(
                (f"role {role}", "hasRole(bytes32,address)", (role, member), lambda d: _int(d) == 1, True)
            )

    answers = node.calls(ledger, [(sig, args) for _, sig, args, _, _ in checks], at.number)
    refused: dict[str, int] = {}
    chain_positions: list[tuple[int, int]] = []
    coalition_found: tuple[int, int] | None = None
    for (subject, sig, _, read, expected), answer in zip(checks, answers, strict=True):
        if isinstance(answer, Exception):
            reason = str(answer).split("\n")[0][:160]
            refused[reason] = refused.get(reason, 0) + 1
            continue
        name = sig.split("(")[0]
        report.checks[name] = report.checks.get(name, 0) + 1
        if sig == "partner(uint32)":
            found = abi_decode(
                ["(uint32,address,address,uint8,bool,bool," + ",".join(["uint256"] * 9) + ",int256,int256)"],
                answer,
            )[0]
            for field_name, mine, theirs in zip(VIEW_FIELDS, expected.view(), found, strict=True):
                mine_n = mine.lower() if isinstance(mine, str) else mine
                theirs_n = theirs.lower() if isinstance(theirs, str) else theirs
                differ(subject, field_name, mine_n, theirs_n)
            continue
        value = read(answer)
        if sig == "partnerPosition(uint32)":
            chain_positions.append(value)
        if sig == "coalitionPosition()":
            coalition_found = value
        differ(subject, name, expected, value)
    if coalition_found is not None and len(chain_positions) == len(partner_ids):
        total = (
            coalition_found[0] + sum(p for p, _ in chain_positions),
            coalition_found[1] + sum(v for _, v in chain_positions),
        )
        report.checks["positions-sum"] = 1
        differ("coalition", "positions sum (points, value)", (0, 0), total)
    for reason, count in refused.items():
        report.unchecked.append(f"{count} view call(s) at block {at.number} refused by the node: {reason}")
    report.differences += differences


# --------------------------------------------------------------------------- the timelock

_CALL_SCHEDULED = "0x" + keccak(b"CallScheduled(bytes32,uint256,address,uint256,bytes,bytes32,uint256)").hex()
_CALL_EXECUTED = "0x" + keccak(b"CallExecuted(bytes32,uint256,address,uint256,bytes)").hex()
_CANCELLED = "0x" + keccak(b"Cancelled(bytes32)").hex()


def _has_code(node: Node, account: str, block: int) -> bool:
    """Whether ``account`` is a contract (at ``block``, or now when the node has pruned that block's state:
    the coalition's timelock is never destroyed)."""
    try:
        code = node.request("eth_getCode", [account, hex(block)])
    except NodeError:
        code = node.request("eth_getCode", [account, "latest"])
    return code not in ("0x", "", None)


def _check_timelock(node: Node, first: int, state: Rebuild, at: VerifiedBlock, report: Report) -> None:
    admins = sorted(state.roles.get(DEFAULT_ADMIN_ROLE, set()))
    timelocks = [a for a in admins if _has_code(node, a, at.number)]
    if not timelocks:
        return
    operations: dict[str, dict[str, Any]] = {}
    for _, _, logs in _ranges(node, timelocks, first, at.number, 50_000):
        for log in logs:
            topic0, op_id = log["topics"][0], log["topics"][1] if len(log["topics"]) > 1 else ""
            block = int(log["blockNumber"], 16)
            if topic0 == _CALL_SCHEDULED:
                # CallScheduled(bytes32 indexed id, uint256 indexed index, address target, uint256 value,
                # bytes data, bytes32 predecessor, uint256 delay)
                target, _, data, _, delay = abi_decode(
                    ["address", "uint256", "bytes", "bytes32", "uint256"],
                    bytes.fromhex(log["data"][2:]),
                )
                op = operations.setdefault(
                    op_id, {"id": op_id, "timelock": log["address"], "calls": [], "state": "scheduled"}
                )
                op["ready_at"] = node.timestamp(block) + delay
                op["scheduled_block"] = block
                op["calls"].append({"target": target.lower(), "selector": "0x" + data[:4].hex()})
            elif topic0 == _CALL_EXECUTED:
                executed = operations.get(op_id)
                executed_at = node.timestamp(block)
                if executed is None:
                    report.differences.append(
                        Difference(
                            "timelock",
                            f"operation {op_id}",
                            "scheduled",
                            "scheduled before execution",
                            "never scheduled",
                        )
                    )
                    continue
                if executed_at < executed["ready_at"]:
                    report.differences.append(
                        Difference(
                            "timelock",
                            f"operation {op_id}",
                            "executed_at",
                            f">= {op['ready_at']}",
                            executed_at,
                        )
                    )
                executed["state"], executed["executed_block"] = "executed", block
            elif topic0 == _CANCELLED and op_id in operations:
                operations[op_id]["state"] = "cancelled"
    report.operations = list(operations.values())
    report.checks["timelock-operations"] = len(operations)
