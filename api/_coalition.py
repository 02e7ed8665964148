"""Coalition operations: what an admin does to the ledger through the service, each recorded as a
:class:`~api._tables.CoalitionOperation` with its state.

Actions (``action``) and the ledger function each runs::

    register-partner          registerPartner             admin   (the onboarding; the operator may be a
                                                                    new key in the keystore: its address
                                                                    leaves it, never the key)
    allowance-increase        increasePartnerAllowance    admin
    allowance-decrease        decreasePartnerAllowance    admin
    suspend                   suspendPartner              pauser  (direct, even behind a timelock)
    reactivate                reactivatePartner           admin
    offboard                  offboardPartner             admin
    rotate-operator           rotatePartnerOperator       admin
    set-rights                setPartnerRights            admin
    set-settlement-address    setPartnerSettlementAddress admin
    set-settlement-value      setSettlementValue          treasury
    record-settlement         recordSettlement            treasury
    transfers                 setTransfersEnabled         admin
    pause, unpause            pause, unpause              pauser  (direct, even behind a timelock)

Without a timelock the role's key sends the call at once; the receipt is awaited for a short while::

    submitted ──► confirmed                  (tx_hash, block_number)
              └─► failed                     (failure: a typed reason; failure_detail: the decoded revert)

A deployment behind a timelock (the timelock is the admin and the treasury) schedules every action but the
pauser's: the call is first run as the timelock would run it (a call the ledger refuses now fails here and
nothing is scheduled), then scheduled with a random salt; anyone may follow it, and an admin executes it
once its delay has passed (or cancels it)::

    submitted ──► scheduled ──► ready ──► executed       (timelock operation id, salt, ready_at)
                          └──────────┴──► cancelled
                                     └──► failed         (the ledger refused it when executed; while the
                                                          timelock still holds it, it may be executed again)

States change only here: when the service sends, and when an operation is read (a transaction still
unmined after the short wait, an operation that became ready, or that someone executed or cancelled
outside the service, e.g. with ``loyalty timelock``). A refused action changes nothing on chain.

Which key signs: the :class:`Coalition`'s ``ledger`` (the admin's key), ``treasury`` and ``pauser`` (each
defaults to the admin's: in dev one key holds every role), and the ``timelock``'s proposer. A key that does
not hold the role the action needs is a :class:`~api._errors.Conflict` before anything is recorded.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import Field, SecretStr
from sqlalchemy import Engine, and_, or_, select
from sqlalchemy.orm import Session

from chain import (
    Call,
    ChainError,
    ContractRevert,
    Keystore,
    Ledger,
    OperationId,
    OperationState,
    PasswordError,
    PendingTransaction,
    Receipt,
    RetryableError,
    Rpc,
    ScheduledOperation,
    Sender,
    Timelock,
    TransactionFailed,
)
from chain._ledger import ZERO_HASH

from ._chain_setup import (
    fund_on_embedded_chain,
    keystore_from_settings,
    keystore_password,
    open_ledger,
    open_timelock,
    revert_decoder,
    sender_from_settings,
    signer_from_settings,
)
from ._errors import Conflict, NotFound, NotReady
from ._models import ResponseModel, hex0x
from ._operations import FailurePublic
from ._outbox import FAILURES
from ._tables import CoalitionOperation, PartnerProfile

if TYPE_CHECKING:
    from web3 import Web3

    from chain import DeploymentManifest

    from ._chain_setup import Prompt
    from ._settings import Settings

__all__ = [
    "ACTIONS",
    "DIRECT_ACTIONS",
    "GENERATE",
    "STATES",
    "Action",
    "Coalition",
    "CoalitionOperationPublic",
    "KeyRole",
    "State",
    "TimelockOperationPublic",
    "failure_reason",
    "operation_public",
    "parse_operation_id",
]

logger = logging.getLogger("api.coalition")

Action = Literal[
    "register-partner",
    "allowance-increase",
    "allowance-decrease",
    "suspend",
    "reactivate",
    "offboard",
    "rotate-operator",
    "set-rights",
    "set-settlement-address",
    "set-settlement-value",
    "record-settlement",
    "transfers",
    "pause",
    "unpause",
]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
State = Literal["submitted", "scheduled", "ready", "confirmed", "executed", "failed", "cancelled"]
STATES: Final[tuple[State, ...]] = get_args(State)
KeyRole = Literal["admin", "treasury", "pauser"]

#: In a request for an operator key: make a new one in the service's keystore.
GENERATE: Final = "generate"
#: Sent with the pauser's key at once, even behind a timelock: pausing only removes power.
DIRECT_ACTIONS: Final = frozenset({"suspend", "pause", "unpause"})

_FUNCTIONS: Final[dict[Action, tuple[str, KeyRole]]] = {
    "register-partner": ("registerPartner", "admin"),
    "allowance-increase": ("increasePartnerAllowance", "admin"),
    "allowance-decrease": ("decreasePartnerAllowance", "admin"),
    "suspend": ("suspendPartner", "pauser"),
    "reactivate": ("reactivatePartner", "admin"),
    "offboard": ("offboardPartner", "admin"),
    "rotate-operator": ("rotatePartnerOperator", "admin"),
    "set-rights": ("setPartnerRights", "admin"),
    "set-settlement-address": ("setPartnerSettlementAddress", "admin"),
    "set-settlement-value": ("setSettlementValue", "treasury"),
    "record-settlement": ("recordSettlement", "treasury"),
    "transfers": ("setTransfersEnabled", "admin"),
    "pause": ("pause", "pauser"),
    "unpause": ("unpause", "pauser"),
}
#: States from which nothing changes any more (a failed timelock execution may still be retried).
_FINAL: Final = frozenset({"confirmed", "executed", "cancelled"})
#: Typed reasons for refusals the outbox's table does not name (the others: the error's name, kebab-cased).
_ADMIN_FAILURES: Final = {
    "ExpectedPause": "ledger-not-paused",
    "AccessControlUnauthorizedAccount": "role-missing",
    "TimelockUnexpectedOperationState": "timelock-operation-state",
}
_PAYMENT_REF_HEX = re.compile(r"^0x[0-9a-fA-F]{64}$")
#: Rows whose state the chain may still change (at most this many are brought up to date per listing).
_WAITING: Final = (
    select(CoalitionOperation)
    .where(
        or_(
            CoalitionOperation.state.in_(("submitted", "scheduled", "ready")),
            and_(CoalitionOperation.state == "failed", CoalitionOperation.timelock_operation_id.is_not(None)),
        )
    )
    .limit(200)
)


def failure_reason(error: ChainError) -> str:
    """The typed reason of a refusal: the outbox's (:data:`~api._outbox.FAILURES`) where it names the
    ledger error, else the error's name in kebab case without the ``Ledger`` prefix (``LedgerPartnerExists``:
    ``partner-exists``); a chain that cannot be reached: ``chain-unavailable``."""
    if isinstance(error, RetryableError):
        return "chain-unavailable"
    name = error.name if isinstance(error, ContractRevert) else type(error).__name__
    known = FAILURES.get(name) or _ADMIN_FAILURES.get(name)
    if known is not None:
        return known
    bare = name.removeprefix("Ledger") or name
    return re.sub(r"(?<!^)(?=[A-Z])", "-", bare).lower()[:40]


# --------------------------------------------------------------------------- what the API shows


class TimelockOperationPublic(ResponseModel):
    operation_id: str = Field(description="the timelock's operation id (hashOperation)")
    salt: str
    schedule_tx_hash: str | None = Field(description="the transaction that scheduled it")
    ready_at: int | None = Field(description="when it may execute (Unix seconds, the chain's clock)")


class CoalitionOperationPublic(ResponseModel):
    id: str = Field(examples=["adm_7"])
    action: str = Field(examples=["register-partner"])
    state: str = Field(
        description="submitted, scheduled, ready, confirmed (sent directly), executed (through the "
        "timelock), failed or cancelled",
        examples=["confirmed"],
    )
    partner_id: int | None
    params: dict[str, Any] = Field(description="the action's arguments as sent on chain")
    tx_hash: str | None = Field(description="the transaction that made it take effect")
    block_number: int | None
    timelock: TimelockOperationPublic | None = Field(description="set when scheduled through the timelock")
    created_at: int
    created_by: str | None
    updated_at: int
    failure: FailurePublic | None


def parse_operation_id(value: str) -> int | None:
    if value.startswith("adm_") and value[4:].isdigit() and len(value) <= 22:
        return int(value[4:])
    return None


def operation_public(row: CoalitionOperation) -> CoalitionOperationPublic:
    timelock = None
    if row.timelock_operation_id is not None:
        timelock = TimelockOperationPublic(
            operation_id="0x" + bytes(row.timelock_operation_id).hex(),
            salt="0x" + bytes(row.salt or ZERO_HASH).hex(),
            schedule_tx_hash=hex0x(_bytes(row.schedule_tx_hash)),
            ready_at=row.ready_at,
        )
    return CoalitionOperationPublic(
        id=f"adm_{row.id}",
        action=row.action,
        state=row.state,
        partner_id=row.partner_id,
        params=json.loads(row.params),
        tx_hash=hex0x(_bytes(row.tx_hash)),
        block_number=row.block_number,
        timelock=timelock,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        failure=None if row.failure is None else FailurePublic(reason=row.failure, detail=row.failure_detail),
    )


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------- the coalition's keys


@dataclass
class Coalition:
    """The keys that act on the ledger for the service's admins, and where their operations are recorded.

    ``ledger`` signs as the admin (and, unless ``treasury`` / ``pauser`` are given, as those roles too);
    ``timelock``, when the deployment has one, signs as a proposer (schedule, cancel) and executor.
    ``keystore`` and ``keystore_password`` make new operator keys (none given: onboarding needs an address).
    ``operator_funding``: wei sent from the admin's (or proposer's) key to each key made here, so its batcher
    can pay for gas (0: none)."""

    engine: Engine
    ledger: Ledger
    timelock: Timelock | None = None
    treasury: Ledger | None = None
    pauser: Ledger | None = None
    keystore: Keystore | None = None
    keystore_password: SecretStr | None = None
    operator_funding: int = 0
    #: seconds to wait for a receipt before answering (the operation stays ``submitted``; a read updates it)
    receipt_timeout: float = 30.0
    clock: Callable[[], float] = time.time

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        w3: Web3,
        engine: Engine,
        manifest: DeploymentManifest,
        *,
        clock: Callable[[], float] = time.time,
        prompt: Prompt | None = None,
    ) -> Coalition:
        """The service's own key (``signer_from_settings``: the deploying key in dev mode) as the admin, the
        treasury and the pauser, and as the proposer of the manifest's timelock if it has one; the settings'
        keystore for new operator keys (when a password is configured). ``manifest`` must be verified."""
        signer = signer_from_settings(settings, Rpc(w3, decoder=revert_decoder()).chain_id(), prompt=prompt)
        fund_on_embedded_chain(w3, signer.address)
        sender = sender_from_settings(settings, w3, signer)
        try:
            password: SecretStr | None = SecretStr(keystore_password(settings))
        except PasswordError:
            password = None
        return cls(
            engine=engine,
            ledger=open_ledger(manifest, sender.rpc, sender),
            timelock=open_timelock(manifest, sender.rpc, sender) if manifest.timelock is not None else None,
            keystore=keystore_from_settings(settings),
            keystore_password=password,
            clock=clock,
        )

    # ------------------------------------------------------------------ the actions

    def register_partner(
        self,
        *,
        partner_id: int,
        name: str,
        operator: str,
        settlement_address: str | None,
        can_issue: bool,
        can_accept: bool,
        allowance: int,
        by: str | None,
    ) -> CoalitionOperationPublic:
        """Onboards a partner: ``operator`` is an address, or :data:`GENERATE` for a new key in the keystore.
        Its directory name is written once the registration takes effect."""
        address, generated = self._operator(operator)
        settlement = to_checksum_address(settlement_address) if settlement_address else address
        params = {
            "partner_id": partner_id,
            "name": name,
            "operator": address,
            "operator_generated": generated,
            "settlement_address": settlement,
            "can_issue": can_issue,
            "can_accept": can_accept,
            "allowance": allowance,
        }
        args = (partner_id, address, settlement, can_issue, can_accept, allowance)
        return self._funded(self._run("register-partner", partner_id, params, args, by), address, generated)

    def change_allowance(
        self, partner_id: int, *, increase: int | None, decrease: int | None, by: str | None
    ) -> CoalitionOperationPublic:
        """Tops up or cuts the partner's remaining allowance (exactly one of ``increase`` / ``decrease``)."""
        if (increase is None) == (decrease is None):
            raise ValueError("give exactly one of increase and decrease")
        action: Action = "allowance-increase" if increase is not None else "allowance-decrease"
        amount = increase if increase is not None else decrease
        params = {"partner_id": partner_id, "amount": amount}
        return self._run(action, partner_id, params, (partner_id, amount), by)

    def set_status(
        self, partner_id: int, action: Literal["suspend", "reactivate", "offboard"], *, by: str | None
    ) -> CoalitionOperationPublic:
        return self._run(action, partner_id, {"partner_id": partner_id}, (partner_id,), by)

    def rotate_operator(
        self, partner_id: int, new_operator: str, *, by: str | None
    ) -> CoalitionOperationPublic:
        """Moves the partner to ``new_operator`` (an address, or :data:`GENERATE`)."""
        address, generated = self._operator(new_operator)
        params = {"partner_id": partner_id, "operator": address, "operator_generated": generated}
        operation = self._run("rotate-operator", partner_id, params, (partner_id, address), by)
        return self._funded(operation, address, generated)

    def set_rights(
        self, partner_id: int, *, can_issue: bool, can_accept: bool, by: str | None
    ) -> CoalitionOperationPublic:
        params = {"partner_id": partner_id, "can_issue": can_issue, "can_accept": can_accept}
        return self._run("set-rights", partner_id, params, (partner_id, can_issue, can_accept), by)

    def set_settlement_address(
        self, partner_id: int, settlement_address: str, *, by: str | None
    ) -> CoalitionOperationPublic:
        address = to_checksum_address(settlement_address)
        params = {"partner_id": partner_id, "settlement_address": address}
        return self._run("set-settlement-address", partner_id, params, (partner_id, address), by)

    def set_settlement_value(self, value: int, *, by: str | None) -> CoalitionOperationPublic:
        return self._run("set-settlement-value", None, {"value": value}, (value,), by)

    def record_settlement(
        self, partner_id: int, *, points: int, value: int, payment_ref: str, by: str | None
    ) -> CoalitionOperationPublic:
        """Records a settlement paid (positive: the coalition paid the partner). ``payment_ref`` is the
        payment's own reference: 32 bytes of ``0x`` hex as they are, any other text by its keccak-256."""
        ref = (
            bytes.fromhex(payment_ref[2:])
            if _PAYMENT_REF_HEX.fullmatch(payment_ref)
            else keccak(text=payment_ref)
        )
        params = {
            "partner_id": partner_id,
            "points": points,
            "value": value,
            "payment_ref": payment_ref,
            "payment_ref_hash": "0x" + ref.hex(),
        }
        return self._run("record-settlement", partner_id, params, (partner_id, points, value, ref), by)

    def set_transfers(self, enabled: bool, *, by: str | None) -> CoalitionOperationPublic:
        return self._run("transfers", None, {"enabled": enabled}, (enabled,), by)

    def pause(self, *, by: str | None) -> CoalitionOperationPublic:
        return self._run("pause", None, {}, (), by)

    def unpause(self, *, by: str | None) -> CoalitionOperationPublic:
        return self._run("unpause", None, {}, (), by)

    # ------------------------------------------------------------------ the timelock's part

    def execute(self, operation_id: int) -> CoalitionOperationPublic:
        """Executes a scheduled operation once the timelock holds it ready. :class:`Conflict` (409) before
        then (``ready_at`` says when), and for one executed, cancelled or not scheduled at all."""
        row, timelock, op_id = self._scheduled(operation_id)
        state = self._view(lambda: timelock.operation_state(op_id))
        if state is OperationState.WAITING:
            raise Conflict(
                f"operation adm_{operation_id} is not ready until {row.ready_at} (the timelock's delay)",
                ready_at=row.ready_at,
            )
        if state is not OperationState.READY:
            self.get(operation_id)  # records what happened to it
            raise Conflict(f"operation adm_{operation_id} is no longer pending on the timelock")
        scheduled = ScheduledOperation(
            id=op_id,
            target=self.ledger.address,
            value=0,
            data=bytes(row.call_data or b""),
            predecessor=ZERO_HASH,
            salt=bytes(row.salt or ZERO_HASH),
            delay=0,
        )
        try:
            pending = timelock.execute(scheduled)
        except ChainError as refused:
            if self._view(lambda: timelock.operation_state(op_id)) is OperationState.DONE:
                return self.get(operation_id)  # executed by a concurrent request
            return self._fail(operation_id, refused)
        self._update(operation_id, tx_hash=pending.hash)
        return self._await(operation_id, pending, "executed")

    def cancel(self, operation_id: int) -> CoalitionOperationPublic:
        """Cancels a scheduled operation (waiting or ready) on the timelock."""
        _, timelock, op_id = self._scheduled(operation_id)
        state = self._view(lambda: timelock.operation_state(op_id))
        if state not in (OperationState.WAITING, OperationState.READY):
            self.get(operation_id)
            raise Conflict(f"operation adm_{operation_id} is no longer pending on the timelock")
        try:
            timelock.cancel(op_id).wait(self.receipt_timeout)
        except RetryableError as exc:
            raise NotReady(f"the chain did not confirm the cancellation yet: {exc}") from None
        except ChainError as refused:
            raise Conflict(f"the timelock refused the cancellation: {refused}") from None
        return self._update(operation_id, state="cancelled", failure=None, failure_detail=None)

    # ------------------------------------------------------------------ reading

    def get(self, operation_id: int) -> CoalitionOperationPublic:
        """The operation, its state brought up to date with the chain's."""
        with self._session() as db:
            row = db.get(CoalitionOperation, operation_id)
            if row is None:
                raise NotFound(f"no operation adm_{operation_id}")
            self._refresh(db, row)
            return operation_public(row)

    def operations(
        self,
        *,
        before: int | None,
        limit: int,
        state: str | None = None,
        action: str | None = None,
        partner_id: int | None = None,
    ) -> tuple[list[CoalitionOperationPublic], bool]:
        """Operations newest first (ids below ``before``), and whether there are more. Those still waiting on
        the chain are brought up to date first, so ``state`` filters on the chain's state."""
        query = select(CoalitionOperation).order_by(CoalitionOperation.id.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(CoalitionOperation.id < before)
        if state is not None:
            query = query.where(CoalitionOperation.state == state)
        if action is not None:
            query = query.where(CoalitionOperation.action == action)
        if partner_id is not None:
            query = query.where(CoalitionOperation.partner_id == partner_id)
        with self._session() as db:
            for row in db.scalars(_WAITING.order_by(CoalitionOperation.id.desc())):
                self._refresh(db, row)
            db.flush()
            rows = list(db.scalars(query))
            return [operation_public(r) for r in rows[:limit]], len(rows) > limit

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _now(self) -> int:
        return int(self.clock())

    @staticmethod
    def _view(read: Callable[[], Any]) -> Any:
        """A read of the chain; an unreachable node is a 503."""
        try:
            return read()
        except RetryableError as exc:
            raise NotReady(f"the chain cannot be reached: {exc}") from None

    def _operator(self, operator: str) -> tuple[str, bool]:
        if operator != GENERATE:
            return to_checksum_address(operator), False
        if self.keystore is None or self.keystore_password is None:
            raise Conflict(
                "the service has no keystore password configured, so it cannot make a key: give the "
                "operator's address"
            )
        address = self.keystore.create(self.keystore_password.get_secret_value())
        logger.info("made operator key %s in the keystore", address)
        return to_checksum_address(address), True

    def _client(self, role: KeyRole) -> Ledger:
        """The ledger client signing as ``role``; :class:`Conflict` when its key does not hold the role."""
        client = {"admin": self.ledger, "treasury": self.treasury, "pauser": self.pauser}[role] or self.ledger
        if client.sender is None:
            raise Conflict(f"the service has no key for the ledger's {role} role")
        who = client.sender.address
        role_id = {
            "admin": client.admin_role,
            "treasury": client.treasury_role,
            "pauser": client.pauser_role,
        }[role]
        if not self._view(lambda: client.has_role(role_id(), who)):
            raise Conflict(f"the service's key {who} does not hold the ledger's {role} role")
        return client

    def _proposer(self) -> Timelock:
        timelock = self.timelock
        assert timelock is not None
        if timelock.sender is None:
            raise Conflict("the service has no key to schedule operations on the timelock")
        who = timelock.sender.address
        if not self._view(lambda: timelock.has_role(timelock.proposer_role(), who)):
            raise Conflict(f"the service's key {who} is not a proposer of the timelock {timelock.address}")
        return timelock

    def _run(
        self,
        action: Action,
        partner_id: int | None,
        params: dict[str, Any],
        args: tuple[Any, ...],
        by: str | None,
    ) -> CoalitionOperationPublic:
        function, role = _FUNCTIONS[action]
        call = self.ledger.call_of(function, *args)
        scheduled = self.timelock is not None and action not in DIRECT_ACTIONS
        timelock = self._proposer() if scheduled else None
        client = None if scheduled else self._client(role)
        now = self._now()
        with self._session() as db:
            row = CoalitionOperation(
                action=action,
                partner_id=partner_id,
                params=_json(params),
                state="submitted",
                call_data=call.data,
                created_at=now,
                created_by=by,
                updated_at=now,
            )
            db.add(row)
            db.flush()
            operation_id = row.id
        if timelock is not None:
            return self._schedule(operation_id, timelock, call)
        assert client is not None and client.sender is not None
        try:
            pending = client.sender.submit(call)  # a call the ledger refuses raises here: nothing is sent
        except ChainError as refused:
            return self._fail(operation_id, refused)
        self._update(operation_id, tx_hash=pending.hash)
        return self._await(operation_id, pending, "confirmed")

    def _schedule(self, operation_id: int, timelock: Timelock, call: Any) -> CoalitionOperationPublic:
        try:
            timelock.simulate(call)  # as the timelock would run it now: a call refused now is not scheduled
            op = timelock.schedule(call, salt=secrets.token_bytes(32))
        except ChainError as refused:
            return self._fail(operation_id, refused)
        assert op.transaction is not None
        self._update(
            operation_id, timelock_operation_id=op.id, salt=op.salt, schedule_tx_hash=op.transaction.hash
        )
        try:
            op = op.wait(self.receipt_timeout)
        except RetryableError:
            return self.get(operation_id)  # not mined yet: a later read sees it scheduled
        except ChainError as refused:
            return self._fail(operation_id, refused)
        return self._update(operation_id, state="scheduled", ready_at=op.ready_at)

    def _await(self, operation_id: int, pending: PendingTransaction, done: State) -> CoalitionOperationPublic:
        try:
            receipt = pending.wait(self.receipt_timeout)
        except RetryableError:
            return self.get(operation_id)  # not mined yet: a later read finds the receipt
        except ChainError as refused:
            return self._fail(operation_id, refused)
        return self._took_effect(operation_id, done, receipt)

    def _took_effect(self, operation_id: int, state: State, receipt: Receipt) -> CoalitionOperationPublic:
        with self._session() as db:
            row = db.get(CoalitionOperation, operation_id)
            assert row is not None
            self._mark_done(db, row, state, receipt.transaction_hash, receipt.block_number)
            return operation_public(row)

    def _mark_done(
        self, db: Session, row: CoalitionOperation, state: State, tx_hash: bytes | None, block: int | None
    ) -> None:
        now = self._now()
        row.state = state
        row.tx_hash = tx_hash if tx_hash is not None else row.tx_hash
        row.block_number = block
        row.failure = row.failure_detail = None
        row.updated_at = now
        if row.action == "register-partner":  # the directory's name, once the partner exists
            params = json.loads(row.params)
            profile = db.get(PartnerProfile, row.partner_id)
            if profile is None:
                db.add(PartnerProfile(partner_id=row.partner_id, name=params["name"], updated_at=now))
            else:
                profile.name = params["name"]
                profile.updated_at = now

    def _fail(self, operation_id: int, error: ChainError) -> CoalitionOperationPublic:
        reason = failure_reason(error)
        logger.info("coalition operation adm_%d failed: %s", operation_id, reason)
        return self._update(operation_id, state="failed", failure=reason, failure_detail=str(error))

    def _update(self, operation_id: int, **values: Any) -> CoalitionOperationPublic:
        with self._session() as db:
            row = db.get(CoalitionOperation, operation_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self._now()
            return operation_public(row)

    def _scheduled(self, operation_id: int) -> tuple[CoalitionOperation, Timelock, OperationId]:
        """The row of a timelock operation that may still execute or be cancelled, brought up to date."""
        with self._session() as db:
            row = db.get(CoalitionOperation, operation_id)
            if row is None:
                raise NotFound(f"no operation adm_{operation_id}")
            self._refresh(db, row)
        if row.timelock_operation_id is None or self.timelock is None:
            raise Conflict(f"operation adm_{operation_id} was not scheduled through a timelock")
        if row.state in _FINAL:
            raise Conflict(f"operation adm_{operation_id} is {row.state} already")
        if row.state == "submitted":
            raise Conflict(
                f"operation adm_{operation_id} is not scheduled yet (its transaction is not mined)"
            )
        return row, self.timelock, OperationId(bytes(row.timelock_operation_id))

    def _refresh(self, db: Session, row: CoalitionOperation) -> None:
        """Brings a row that waits on the chain up to date (a node that cannot be reached: left as it is)."""
        if row.state in _FINAL or (row.state == "failed" and row.timelock_operation_id is None):
            return
        try:
            if row.timelock_operation_id is None:
                self._refresh_direct(db, row)
            else:
                self._refresh_scheduled(db, row)
        except RetryableError:
            return

    def _refresh_direct(self, db: Session, row: CoalitionOperation) -> None:
        if row.state != "submitted" or row.tx_hash is None:
            return
        [receipt] = self.ledger.rpc.receipts([bytes(row.tx_hash)])
        if receipt is None:
            return
        if receipt.status == 1:
            self._mark_done(db, row, "confirmed", receipt.transaction_hash, receipt.block_number)
        else:
            row.state, row.updated_at = "failed", self._now()
            row.failure, row.failure_detail = failure_reason(TransactionFailed(receipt)), None

    def _refresh_scheduled(self, db: Session, row: CoalitionOperation) -> None:
        timelock = self.timelock
        if timelock is None:
            return
        op_id = bytes(row.timelock_operation_id or b"")
        state = timelock.operation_state(op_id)
        now = self._now()
        if state is OperationState.DONE:
            # executed: by the service (its receipt was not in yet), or by someone else (its tx unknown here)
            receipt = None
            if row.tx_hash is not None:
                [receipt] = timelock.rpc.receipts([bytes(row.tx_hash)])
            if receipt is not None and receipt.status == 1:
                self._mark_done(db, row, "executed", receipt.transaction_hash, receipt.block_number)
            else:
                row.tx_hash = None
                self._mark_done(db, row, "executed", None, None)
        elif state is OperationState.UNSET:
            if row.state == "submitted":  # the scheduling transaction is not mined yet
                return
            row.state, row.updated_at = "cancelled", now
        elif row.state != "failed":
            new: State = "ready" if state is OperationState.READY else "scheduled"
            if row.ready_at is None:
                row.ready_at = timelock.timestamp(op_id)
            if new != row.state:
                row.state, row.updated_at = new, now

    def _funded(
        self, operation: CoalitionOperationPublic, address: str, generated: bool
    ) -> CoalitionOperationPublic:
        """Sends ``operator_funding`` wei to a key made here once its registration or rotation took effect or
        was scheduled (a failure to fund is logged: the operation stands)."""
        if not generated or self.operator_funding <= 0 or operation.state not in ("confirmed", "scheduled"):
            return operation
        sender: Sender | None = self.ledger.sender or (self.timelock.sender if self.timelock else None)
        if sender is None:
            return operation
        try:
            sender.submit(Call(to=to_checksum_address(address), value=self.operator_funding)).wait(
                self.receipt_timeout
            )
        except ChainError as exc:
            logger.warning("could not fund the new operator key %s: %s", address, type(exc).__name__)
        return operation
