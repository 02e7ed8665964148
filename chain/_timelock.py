"""A typed client for the coalition's CoalitionTimelock (OpenZeppelin ``TimelockController`` as is).

In production the timelock is the ledger's admin and treasury: every change that creates issuing power or
moves money is first *scheduled* here (a ``CallScheduled`` log, visible to every partner and auditor), can
be *cancelled* by a canceller (OpenZeppelin makes every proposer one), and *executes* only once its delay
has passed::

    call = ledger.call_of("registerPartner", 7, operator, operator, True, True, 1_000)
    op = timelock.schedule(call).wait()          # ScheduledOperation: id, ready_at, ...
    timelock.is_pending(op.id)                   # True (waiting, then ready)
    timelock.execute(op).wait()                  # TimelockUnexpectedOperationState before ready_at

Operation ids are computed here exactly as ``hashOperation`` / ``hashOperationBatch`` compute them, so a
proposer knows the id before sending anything. :meth:`Timelock.pending_operations` rebuilds what is
scheduled and not yet executed or cancelled from the raw ``CallScheduled`` / ``CallSalt`` /
``CallExecuted`` / ``Cancelled`` logs alone (no ABI machinery, no filters left on the node).

Reverts are the timelock's typed errors when the RPC's :class:`~chain.RevertDecoder` knows the
CoalitionTimelock ABI (``RevertDecoder.for_contracts()`` does), e.g.
``TimelockUnexpectedOperationState(id, expected_states)`` where ``expected_states`` is
:func:`state_bitmap` of the states the call needed, or ``TimelockInsufficientDelay(delay, min_delay)``.
A scheduled ledger call that reverts when executed surfaces as the ledger's own error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Final, NamedTuple

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from ._contract import Block, ContractClient
from ._errors import PermanentError
from ._ledger import ZERO_ADDRESS, ZERO_HASH
from ._manifest import TIMELOCK, DeploymentManifest, ManifestError, verify_manifest
from ._rpc import Rpc
from ._sender import Call, PendingTransaction, Sender
from ._types import Address, BlockNumber, OperationId, Role

__all__ = [
    "ANYONE",
    "OperationState",
    "ScheduledOperation",
    "Timelock",
    "TimelockCall",
    "TimelockConfig",
    "TimelockError",
    "state_bitmap",
]

#: As an executor: anyone may execute a ready operation (OpenZeppelin's open role).
ANYONE: Address = ZERO_ADDRESS

_CALL_SCHEDULED: Final = keccak(text="CallScheduled(bytes32,uint256,address,uint256,bytes,bytes32,uint256)")
_CALL_EXECUTED: Final = keccak(text="CallExecuted(bytes32,uint256,address,uint256,bytes)")
_CALL_SALT: Final = keccak(text="CallSalt(bytes32,bytes32)")
_CANCELLED: Final = keccak(text="Cancelled(bytes32)")
#: ``getTimestamp`` of an executed operation (OpenZeppelin's ``_DONE_TIMESTAMP``).
DONE_TIMESTAMP: Final = 1


class TimelockError(PermanentError):
    """The timelock cannot do what was asked (no such operation, a bad configuration)."""


class OperationState(IntEnum):
    """``TimelockController.OperationState``."""

    UNSET = 0
    WAITING = 1
    READY = 2
    DONE = 3


def state_bitmap(*states: OperationState) -> bytes:
    """The ``expectedStates`` word of ``TimelockUnexpectedOperationState``: bit ``s`` set for each state."""
    bits = 0
    for state in states:
        bits |= 1 << int(state)
    return bits.to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class TimelockConfig:
    """A timelock to deploy in front of the ledger.

    ``proposers`` may schedule (and cancel) operations; ``executors`` may execute ready ones (``ANYONE``,
    the zero address, lets anyone execute: the operation was public for ``min_delay`` seconds already).
    The timelock gets no admin of its own: its roles change only through its own scheduled operations.
    """

    min_delay: int
    proposers: tuple[Address, ...]
    executors: tuple[Address, ...] = (ANYONE,)

    def __post_init__(self) -> None:
        if isinstance(self.min_delay, bool) or not isinstance(self.min_delay, int) or self.min_delay < 0:
            raise TimelockError(f"the timelock's minimum delay must be seconds >= 0, not {self.min_delay!r}")
        if not self.proposers:
            raise TimelockError("a timelock needs at least one proposer (nobody could ever schedule)")
        if not self.executors:
            raise TimelockError("a timelock needs at least one executor (use ANYONE for anyone)")
        for who in (*self.proposers, *self.executors):
            if not isinstance(who, str) or not is_address(who):
                raise TimelockError(f"a timelock proposer or executor must be an address, not {who!r}")
        if ANYONE in {to_checksum_address(p) for p in self.proposers}:
            raise TimelockError("the zero address cannot be a proposer")
        object.__setattr__(self, "proposers", tuple(to_checksum_address(p) for p in self.proposers))
        object.__setattr__(self, "executors", tuple(to_checksum_address(e) for e in self.executors))


@dataclass(frozen=True, slots=True)
class TimelockCall:
    """One call of an operation: ``data`` sent to ``target`` with ``value`` wei."""

    target: Address
    value: int
    data: bytes


@dataclass(frozen=True)
class ScheduledOperation:
    """An operation on the timelock: one call (``target``, ``value``, ``data``), or a batch (``batch`` holds
    every call; ``target``/``value``/``data`` are its first), with its ``predecessor``, ``salt`` and
    ``delay``.

    ``ready_at`` is the timestamp from which it may execute (known once the scheduling is mined);
    ``block_number`` the block that scheduled it. :meth:`Timelock.schedule` returns one carrying its
    ``transaction``: :meth:`wait` waits for it and fills in ``ready_at`` and ``block_number``.
    """

    id: OperationId
    target: Address
    value: int
    data: bytes
    predecessor: bytes
    salt: bytes
    delay: int
    ready_at: int | None = None
    block_number: BlockNumber | None = None
    batch: tuple[TimelockCall, ...] = ()
    transaction: PendingTransaction | None = field(default=None, compare=False, repr=False)

    @property
    def calls(self) -> tuple[TimelockCall, ...]:
        return self.batch or (TimelockCall(self.target, self.value, self.data),)

    @property
    def is_batch(self) -> bool:
        return bool(self.batch)

    def wait(self, timeout: float | None = None) -> ScheduledOperation:
        """Waits for the scheduling transaction (a revert raises its ContractRevert); the operation with
        ``ready_at`` (that block's timestamp + ``delay``) and ``block_number`` set."""
        if self.transaction is None:
            return self
        receipt = self.transaction.wait(timeout)
        timestamp = self.transaction.sender.rpc.timestamp(receipt.block_number)
        return replace(self, ready_at=timestamp + self.delay, block_number=receipt.block_number)


@dataclass
class _Record:
    """One scheduling of an operation id while its logs are read."""

    predecessor: bytes
    delay: int
    block_number: BlockNumber
    salt: bytes = ZERO_HASH
    calls: list[TimelockCall] = field(default_factory=list)
    executed: int = 0
    state: OperationState | None = None


class _RawLog(NamedTuple):
    block_number: int
    log_index: int
    topics: tuple[bytes, ...]
    data: bytes


def _as_bytes(value: Any) -> bytes:
    return bytes(HexBytes(value))


def _as_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise PermanentError(f"{what} must be 32 bytes, got {value!r}")
    return bytes(value)


class Timelock(ContractClient):
    """One CoalitionTimelock at ``address``; ``sender`` signs schedule, execute, cancel (views need none)."""

    contract_name = TIMELOCK

    @classmethod
    def from_manifest(
        cls, rpc: Rpc, manifest: DeploymentManifest, *, sender: Sender | None = None
    ) -> Timelock:
        """The timelock of a deployment manifest, once the node is shown to hold the deployment."""
        if manifest.timelock is None:
            raise ManifestError("this deployment has no timelock (its admin is a key)")
        verify_manifest(manifest, rpc)
        return cls(rpc, manifest.timelock.address, sender=sender)

    # ------------------------------------------------------------------ plumbing

    def simulate(self, call: Call, *, block: Block = "latest") -> bytes:
        """Runs ``call`` as the timelock would when executing it (``eth_call`` from the timelock's address)
        at ``block``: a call that would revert now raises its ContractRevert. The state at execution time
        may differ; this catches a mistaken call before it is scheduled."""
        if call.to is None:
            raise TimelockError("a timelock operation calls a contract: the call has no target")
        tx = {"from": self.address, "to": call.to, "data": bytes(call.data), "value": call.value}
        return self.rpc.call(tx, block)

    def _send(self, call: Call, function: str) -> PendingTransaction:
        return self.sender_or_fail(function).submit(call)

    # ------------------------------------------------------------------ operation ids

    @staticmethod
    def operation_id(
        target: str, value: int, data: bytes, predecessor: bytes = ZERO_HASH, salt: bytes = ZERO_HASH
    ) -> OperationId:
        """``hashOperation``: ``keccak256(abi.encode(target, value, data, predecessor, salt))``."""
        encoded = abi_encode(
            ["address", "uint256", "bytes", "bytes32", "bytes32"],
            [
                to_checksum_address(target),
                value,
                bytes(data),
                _bytes32(predecessor, "predecessor"),
                _bytes32(salt, "salt"),
            ],
        )
        return OperationId(keccak(encoded))

    @staticmethod
    def batch_operation_id(
        calls: Sequence[TimelockCall], predecessor: bytes = ZERO_HASH, salt: bytes = ZERO_HASH
    ) -> OperationId:
        """``hashOperationBatch``: ``keccak256(abi.encode(targets, values, payloads, predecessor, salt))``."""
        encoded = abi_encode(
            ["address[]", "uint256[]", "bytes[]", "bytes32", "bytes32"],
            [
                [to_checksum_address(c.target) for c in calls],
                [c.value for c in calls],
                [bytes(c.data) for c in calls],
                _bytes32(predecessor, "predecessor"),
                _bytes32(salt, "salt"),
            ],
        )
        return OperationId(keccak(encoded))

    def hash_operation(
        self, target: str, value: int, data: bytes, predecessor: bytes = ZERO_HASH, salt: bytes = ZERO_HASH
    ) -> OperationId:
        """The id the timelock itself computes (a view; :meth:`operation_id` gives the same locally)."""
        args = (to_checksum_address(target), value, bytes(data), predecessor, salt)
        return OperationId(bytes(self._one("hashOperation", *args)))

    def hash_operation_batch(
        self, calls: Sequence[TimelockCall], predecessor: bytes = ZERO_HASH, salt: bytes = ZERO_HASH
    ) -> OperationId:
        """The batch id the timelock computes (:meth:`batch_operation_id` gives the same locally)."""
        args = (
            [to_checksum_address(c.target) for c in calls],
            [c.value for c in calls],
            [bytes(c.data) for c in calls],
            predecessor,
            salt,
        )
        return OperationId(bytes(self._one("hashOperationBatch", *args)))

    # ------------------------------------------------------------------ writes

    def schedule(
        self,
        call: Call,
        *,
        delay: int | None = None,
        salt: bytes = ZERO_HASH,
        predecessor: bytes = ZERO_HASH,
    ) -> ScheduledOperation:
        """Schedules ``call`` (e.g. from :meth:`Ledger.call_of`) to run after ``delay`` seconds (default: the
        minimum delay). A proposer's key must send it. The same call, predecessor and salt make the same
        id: use a fresh ``salt`` to schedule a call again after it executed or was cancelled."""
        if call.to is None:
            raise TimelockError("a timelock operation calls a contract: the call has no target")
        delay = self.min_delay() if delay is None else delay
        op_id = self.operation_id(call.to, call.value, call.data, predecessor, salt)
        fn = self._functions["schedule"]
        data = fn.encode((call.to, call.value, bytes(call.data), predecessor, salt, delay))
        pending = self._send(Call(to=self.address, data=data), "schedule")
        return ScheduledOperation(
            id=op_id,
            target=to_checksum_address(call.to),
            value=call.value,
            data=bytes(call.data),
            predecessor=bytes(predecessor),
            salt=bytes(salt),
            delay=delay,
            transaction=pending,
        )

    def schedule_batch(
        self,
        calls: Sequence[Call],
        *,
        delay: int | None = None,
        salt: bytes = ZERO_HASH,
        predecessor: bytes = ZERO_HASH,
    ) -> ScheduledOperation:
        """Schedules several calls as one operation: they execute together, in order, or not at all."""
        if not calls or any(c.to is None for c in calls):
            raise TimelockError("a batch needs at least one call, each with a target")
        parts = tuple(TimelockCall(to_checksum_address(str(c.to)), c.value, bytes(c.data)) for c in calls)
        delay = self.min_delay() if delay is None else delay
        op_id = self.batch_operation_id(parts, predecessor, salt)
        fn = self._functions["scheduleBatch"]
        data = fn.encode(
            (
                [p.target for p in parts],
                [p.value for p in parts],
                [p.data for p in parts],
                predecessor,
                salt,
                delay,
            )
        )
        pending = self._send(Call(to=self.address, data=data), "scheduleBatch")
        first = parts[0]
        return ScheduledOperation(
            id=op_id,
            target=first.target,
            value=first.value,
            data=first.data,
            predecessor=bytes(predecessor),
            salt=bytes(salt),
            delay=delay,
            batch=parts,
            transaction=pending,
        )

    def execute(self, op: ScheduledOperation) -> PendingTransaction:
        """Executes a ready operation (an executor's key, or any key when anyone may execute); sends the
        calls' value along. Early: ``TimelockUnexpectedOperationState(id, state_bitmap(READY))``."""
        if op.is_batch:
            calls = op.batch
            data = self._functions["executeBatch"].encode(
                (
                    [c.target for c in calls],
                    [c.value for c in calls],
                    [c.data for c in calls],
                    op.predecessor,
                    op.salt,
                )
            )
            value = sum(c.value for c in calls)
        else:
            data = self._functions["execute"].encode((op.target, op.value, op.data, op.predecessor, op.salt))
            value = op.value
        return self._send(Call(to=self.address, data=data, value=value), "execute")

    def cancel(self, op: ScheduledOperation | bytes) -> PendingTransaction:
        """Cancels a pending operation (a canceller's key)."""
        op_id = op.id if isinstance(op, ScheduledOperation) else _bytes32(op, "operation id")
        return self._send(Call(to=self.address, data=self._functions["cancel"].encode((op_id,))), "cancel")

    # ------------------------------------------------------------------ views

    def operation_state(self, op_id: bytes, *, block: Block = "latest") -> OperationState:
        return OperationState(self._one("getOperationState", _bytes32(op_id, "operation id"), block=block))

    def is_operation(self, op_id: bytes, *, block: Block = "latest") -> bool:
        """Whether ``op_id`` was scheduled (and not cancelled): waiting, ready or done."""
        return bool(self._one("isOperation", _bytes32(op_id, "operation id"), block=block))

    def is_pending(self, op_id: bytes, *, block: Block = "latest") -> bool:
        """Scheduled, not executed: waiting or ready."""
        return bool(self._one("isOperationPending", _bytes32(op_id, "operation id"), block=block))

    def is_ready(self, op_id: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("isOperationReady", _bytes32(op_id, "operation id"), block=block))

    def is_done(self, op_id: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("isOperationDone", _bytes32(op_id, "operation id"), block=block))

    def timestamp(self, op_id: bytes, *, block: Block = "latest") -> int:
        """When the operation becomes ready (0: unset or cancelled; :data:`DONE_TIMESTAMP`: executed)."""
        return int(self._one("getTimestamp", _bytes32(op_id, "operation id"), block=block))

    def min_delay(self, *, block: Block = "latest") -> int:
        return int(self._one("getMinDelay", block=block))

    def has_role(self, role: bytes, account: str, *, block: Block = "latest") -> bool:
        return bool(self._one("hasRole", _bytes32(role, "role"), to_checksum_address(account), block=block))

    def proposer_role(self) -> Role:
        return Role(bytes(self._one("PROPOSER_ROLE")))

    def executor_role(self) -> Role:
        return Role(bytes(self._one("EXECUTOR_ROLE")))

    def canceller_role(self) -> Role:
        return Role(bytes(self._one("CANCELLER_ROLE")))

    def admin_role(self) -> Role:
        return Role(bytes(self._one("DEFAULT_ADMIN_ROLE")))

    # ------------------------------------------------------------------ operations from the logs

    def scheduled_operations(
        self, *, from_block: int = 0, to_block: int | None = None
    ) -> list[tuple[ScheduledOperation, OperationState]]:
        """Every operation scheduled between the two blocks (inclusive; ``to_block`` defaults to the head),
        latest scheduling per id, in scheduling order, with its state after ``to_block``: ``UNSET`` when it
        was cancelled, ``DONE`` when executed, else ``WAITING`` / ``READY`` at that block."""
        to = int(self.rpc.block_number()) if to_block is None else to_block
        records: dict[bytes, _Record] = {}  # insertion order = order of (latest) scheduling
        for log in self._logs(from_block, to):
            topic0, op_id = log.topics[0], log.topics[1]
            if topic0 == _CALL_SCHEDULED:
                index = int.from_bytes(log.topics[2], "big")
                target, value, data, predecessor, delay = abi_decode(
                    ["address", "uint256", "bytes", "bytes32", "uint256"], log.data
                )
                if index == 0 or op_id not in records:  # a new scheduling (again, after a cancellation)
                    records.pop(op_id, None)
                    records[op_id] = _Record(bytes(predecessor), delay, BlockNumber(log.block_number))
                call = TimelockCall(to_checksum_address(target), value, bytes(data))
                records[op_id].calls.append(call)
            elif op_id not in records:
                continue  # about a scheduling before from_block
            elif topic0 == _CALL_SALT:
                (salt,) = abi_decode(["bytes32"], log.data)
                records[op_id].salt = bytes(salt)
            elif topic0 == _CALL_EXECUTED:
                record = records[op_id]
                record.executed += 1
                if record.executed >= len(record.calls):
                    record.state = OperationState.DONE
            elif topic0 == _CANCELLED:
                records[op_id].state = OperationState.UNSET
        out: list[tuple[ScheduledOperation, OperationState]] = []
        for op_id, record in records.items():
            first = record.calls[0]
            op = ScheduledOperation(
                id=OperationId(op_id),
                target=first.target,
                value=first.value,
                data=first.data,
                predecessor=record.predecessor,
                salt=record.salt,
                delay=record.delay,
                block_number=record.block_number,
                batch=tuple(record.calls) if len(record.calls) > 1 else (),
            )
            state = record.state
            if state is None:
                op = replace(op, ready_at=self.timestamp(op_id, block=to))
                state = self.operation_state(op_id, block=to)
            out.append((op, state))
        return out

    def pending_operations(
        self, *, from_block: int = 0, to_block: int | None = None
    ) -> list[ScheduledOperation]:
        """Operations scheduled and neither executed nor cancelled (waiting or ready), from the raw
        ``CallScheduled`` logs minus ``CallExecuted`` and ``Cancelled``, each with its ``ready_at``."""
        return [
            op
            for op, state in self.scheduled_operations(from_block=from_block, to_block=to_block)
            if state in (OperationState.WAITING, OperationState.READY)
        ]

    def find_operation(
        self, op_id: bytes, *, from_block: int = 0, to_block: int | None = None
    ) -> tuple[ScheduledOperation, OperationState]:
        """The latest scheduling of ``op_id`` and its state; :class:`TimelockError` if never scheduled."""
        wanted = _bytes32(op_id, "operation id")
        for op, state in reversed(self.scheduled_operations(from_block=from_block, to_block=to_block)):
            if op.id == wanted:
                return op, state
        raise TimelockError(f"no operation 0x{wanted.hex()} was scheduled on the timelock {self.address}")

    def _logs(self, from_block: int, to_block: int) -> list[_RawLog]:
        topics = [[_CALL_SCHEDULED, _CALL_EXECUTED, _CALL_SALT, _CANCELLED]]
        raw = [
            _RawLog(
                block_number=_as_int(item["blockNumber"]),
                log_index=_as_int(item["logIndex"]),
                topics=tuple(_as_bytes(t) for t in item["topics"]),
                data=_as_bytes(item["data"]),
            )
            for item in self.rpc.logs(self.address, topics, from_block, to_block)
        ]
        return sorted(raw, key=lambda log: (log.block_number, log.log_index))
