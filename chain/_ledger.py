"""A typed client for one deployed LoyaltyLedger.

Writes go through a :class:`~chain.Sender` (the partner's, the admin's or a pauser's key) and return a
:class:`~chain.PendingTransaction` at once, so many can be in flight; ``.wait()`` gives the receipt or raises
the decoded :class:`~chain.ContractRevert`. A call that would revert raises that error before anything is
sent. Views are ``eth_call``s, at ``latest`` or at any block (an auditor's reconciliation reads a fixed one).
Calldata is encoded with eth-abi from selectors computed once: ``issue`` is the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from ._compile import Artifact, load_artifact
from ._eip712 import redemption_typed_data
from ._errors import PermanentError, abi_type
from ._manifest import DeploymentManifest, verify_manifest
from ._rpc import Rpc
from ._sender import Call, PendingTransaction, Sender
from ._signer import Signer
from ._types import Address, BlockNumber, Epoch, PartnerId, Points, ReasonCode

__all__ = [
    "ZERO_HASH",
    "EpochBalance",
    "Issuance",
    "Ledger",
    "Partner",
    "Position",
    "RedemptionConsent",
]

ZERO_HASH = b"\x00" * 32
Block = BlockNumber | int | str


@dataclass(frozen=True, slots=True)
class Partner:
    """A partner as the registry holds it (``partner(id)``)."""

    partner_id: PartnerId
    operator: Address
    settlement: Address
    active: bool
    can_issue: bool
    can_accept: bool
    allowance: Points
    issued: Points
    redeemed: Points


@dataclass(frozen=True, slots=True)
class Position:
    """A net settlement position: points and their value in settlement units (positive: owed to it)."""

    net_points: int
    net_value: int


@dataclass(frozen=True, slots=True)
class EpochBalance:
    """Live points of one account earned in one epoch."""

    epoch: Epoch
    amount: Points


@dataclass(frozen=True, slots=True)
class Issuance:
    """One ``issue``: ``amount`` points to ``to`` under the partner's reference ``ref`` (32 bytes)."""

    to: Address
    amount: Points
    ref: bytes
    reason: ReasonCode
    rule_hash: bytes = ZERO_HASH


@dataclass(frozen=True, slots=True)
class RedemptionConsent:
    """A customer's signed consent to redeem ``amount`` at ``partner_id`` (EIP-712 ``Redemption``)."""

    customer: Address
    partner_id: PartnerId
    amount: Points
    ref: bytes
    nonce: int
    deadline: int
    signature: bytes


class _Function:
    """Selector, input and output types of one ABI function."""

    __slots__ = ("inputs", "name", "outputs", "selector")

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.name = str(item["name"])
        self.inputs = [abi_type(p) for p in item.get("inputs", [])]
        self.outputs = [abi_type(p) for p in item.get("outputs", [])]
        self.selector = function_signature_to_4byte_selector(f"{self.name}({','.join(self.inputs)})")

    def encode(self, args: Sequence[Any]) -> bytes:
        return self.selector + abi_encode(self.inputs, list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        return tuple(abi_decode(self.outputs, data))


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise PermanentError(f"{what} must be 32 bytes, got {value!r}")
    return bytes(value)


class Ledger:
    """One LoyaltyLedger at ``address``; ``sender`` signs its writes (views need none)."""

    def __init__(
        self,
        rpc: Rpc,
        address: str,
        *,
        sender: Sender | None = None,
        artifact: Artifact | None = None,
    ) -> None:
        self.rpc = rpc
        self.address: Address = to_checksum_address(address)
        self.sender = sender
        self.artifact = artifact or load_artifact("LoyaltyLedger")
        self._functions = {
            str(item["name"]): _Function(item) for item in self.artifact.abi if item.get("type") == "function"
        }

    @classmethod
    def from_manifest(cls, rpc: Rpc, manifest: DeploymentManifest, *, sender: Sender | None = None) -> Ledger:
        """The ledger a deployment manifest names, once the node is shown to hold it: a manifest of another
        chain, of a deployment block the node does not have, or whose code differs raises ManifestMismatch."""
        verify_manifest(manifest, rpc)
        return cls(rpc, manifest.ledger.address, sender=sender)

    def with_sender(self, sender: Sender) -> Ledger:
        """The same ledger, writing with another key (e.g. the admin's instead of a partner's)."""
        return Ledger(self.rpc, self.address, sender=sender, artifact=self.artifact)

    def __repr__(self) -> str:
        who = self.sender.address if self.sender else "read-only"
        return f"Ledger({self.address}, {who})"

    # ------------------------------------------------------------------ plumbing

    def encode(self, function: str, *args: Any) -> bytes:
        """Calldata for ``function(*args)``."""
        return self._functions[function].encode(args)

    def decode(self, function: str, data: bytes) -> tuple[Any, ...]:
        """The return values of ``function`` from an ``eth_call`` answer (for batched reads)."""
        return self._functions[function].decode(data)

    def call_of(self, function: str, *args: Any, gas: int | None = None) -> Call:
        """The :class:`Call` that would run ``function(*args)`` (for ``Sender.submit_many``)."""
        return Call(to=self.address, data=self.encode(function, *args), gas=gas)

    def sender_or_fail(self, function: str) -> Sender:
        if self.sender is None:
            raise PermanentError(f"{function} needs a sender: this Ledger client is read-only")
        return self.sender

    def _send(self, function: str, *args: Any) -> PendingTransaction:
        return self.sender_or_fail(function).submit(self.call_of(function, *args))

    def _issue_call(self, i: Issuance) -> Call:
        to = to_checksum_address(i.to)
        args = (to, i.amount, _bytes32(i.ref, "ref"), i.reason, _bytes32(i.rule_hash, "rule_hash"))
        data = self._functions["issue"].encode(args)
        return Call(to=self.address, data=data)

    def _view(self, function: str, *args: Any, block: Block = "latest") -> tuple[Any, ...]:
        fn = self._functions[function]
        return fn.decode(self.rpc.call({"to": self.address, "data": fn.encode(args)}, block))

    def _one(self, function: str, *args: Any, block: Block = "latest") -> Any:
        return self._view(function, *args, block=block)[0]

    # ------------------------------------------------------------------ issuing (partners)

    def issue(
        self,
        to: str,
        amount: Points,
        ref: bytes,
        reason: ReasonCode,
        rule_hash: bytes = ZERO_HASH,
    ) -> PendingTransaction:
        """Issues ``amount`` points to ``to`` under the sender's partner id and the reference ``ref``."""
        issuance = Issuance(to_checksum_address(to), amount, ref, reason, rule_hash)
        return self.sender_or_fail("issue").submit(self._issue_call(issuance))

    def issue_many(
        self, issuances: Sequence[Issuance], *, gas: int | None = None
    ) -> list[PendingTransaction]:
        """Many single ``issue`` transactions, signed together and broadcast in one batch (pipelined).

        ``gas``: a fixed limit for each instead of an estimate (each is still checked with ``eth_call``)."""
        calls = [replace(self._issue_call(i), gas=gas) for i in issuances]
        return self.sender_or_fail("issue").submit_many(calls)

    def issue_batch(
        self,
        recipients: Sequence[str],
        amounts: Sequence[Points],
        batch_ref: bytes,
        reason: ReasonCode,
        rule_hash: bytes = ZERO_HASH,
        *,
        gas: int | None = None,
    ) -> PendingTransaction:
        """Issues to many recipients in one transaction under one batch reference.

        ``gas``: a fixed limit instead of an estimate, which costs the node as much as running the batch
        (the call is still checked with ``eth_call`` before it is sent)."""
        call = self.call_of(
            "issueBatch",
            [to_checksum_address(r) for r in recipients],
            list(amounts),
            _bytes32(batch_ref, "batch_ref"),
            reason,
            _bytes32(rule_hash, "rule_hash"),
            gas=gas,
        )
        return self.sender_or_fail("issueBatch").submit(call)

    # ------------------------------------------------------------------ redeeming (accepting partners)

    def redemption_message(
        self, customer: str, partner_id: PartnerId, amount: Points, ref: bytes, nonce: int, deadline: int
    ) -> dict[str, Any]:
        """The EIP-712 message the customer signs (shown by a wallet; signed here for custodial customers)."""
        return redemption_typed_data(
            chain_id=self.rpc.chain_id(),
            contract=self.address,
            customer=to_checksum_address(customer),
            partner_id=partner_id,
            amount=amount,
            ref=_bytes32(ref, "ref"),
            nonce=nonce,
            deadline=deadline,
        )

    def sign_redemption(
        self,
        customer: Signer,
        partner_id: PartnerId,
        amount: Points,
        ref: bytes,
        *,
        deadline: int | None = None,
        valid_for: int = 3600,
        nonce: int | None = None,
    ) -> RedemptionConsent:
        """Signs a redemption consent with the customer's signer; nonce from the ledger unless given,
        deadline ``valid_for`` seconds after the chain's latest block unless given."""
        nonce = self.nonce_of(customer.address) if nonce is None else nonce
        deadline = self.rpc.timestamp() + valid_for if deadline is None else deadline
        message = self.redemption_message(customer.address, partner_id, amount, ref, nonce, deadline)
        signature = customer.sign_typed_data(message)
        return RedemptionConsent(
            customer=to_checksum_address(customer.address),
            partner_id=partner_id,
            amount=amount,
            ref=bytes(ref),
            nonce=nonce,
            deadline=deadline,
            signature=signature,
        )

    def redeem(self, consent: RedemptionConsent) -> PendingTransaction:
        """Redeems the customer's points at the sender's partner (which must be ``consent.partner_id``)."""
        return self._send(
            "redeem",
            consent.customer,
            consent.amount,
            _bytes32(consent.ref, "ref"),
            consent.nonce,
            consent.deadline,
            consent.signature,
        )

    # ------------------------------------------------------------------ administration

    def register_partner(
        self,
        partner_id: PartnerId,
        operator: str,
        *,
        settlement: str | None = None,
        can_issue: bool = True,
        can_accept: bool = True,
        allowance: Points,
    ) -> PendingTransaction:
        """Registers a partner (admin). ``settlement`` defaults to the operator's address."""
        op = to_checksum_address(operator)
        return self._send(
            "registerPartner",
            partner_id,
            op,
            to_checksum_address(settlement) if settlement else op,
            can_issue,
            can_accept,
            allowance,
        )

    def set_partner_allowance(self, partner_id: PartnerId, allowance: Points) -> PendingTransaction:
        return self._send("setPartnerAllowance", partner_id, allowance)

    def suspend_partner(self, partner_id: PartnerId) -> PendingTransaction:
        return self._send("suspendPartner", partner_id)

    def reactivate_partner(self, partner_id: PartnerId) -> PendingTransaction:
        return self._send("reactivatePartner", partner_id)

    def set_settlement_value(self, value: int) -> PendingTransaction:
        return self._send("setSettlementValue", value)

    def set_transfers_enabled(self, enabled: bool) -> PendingTransaction:
        return self._send("setTransfersEnabled", enabled)

    def pause(self) -> PendingTransaction:
        return self._send("pause")

    def unpause(self) -> PendingTransaction:
        return self._send("unpause")

    def grant_role(self, role: bytes, account: str) -> PendingTransaction:
        return self._send("grantRole", _bytes32(role, "role"), to_checksum_address(account))

    def revoke_role(self, role: bytes, account: str) -> PendingTransaction:
        return self._send("revokeRole", _bytes32(role, "role"), to_checksum_address(account))

    def sweep_expired(self, accounts: Sequence[str]) -> PendingTransaction:
        """Turns the expired points of ``accounts`` into ``PointsExpired`` entries (anyone may call)."""
        return self._send("sweepExpired", [to_checksum_address(a) for a in accounts])

    def transfer(self, to: str, amount: Points) -> PendingTransaction:
        """A customer-to-customer transfer (only while the admin has transfers enabled)."""
        return self._send("transfer", to_checksum_address(to), amount)

    # ------------------------------------------------------------------ views

    def balance_of(self, account: str, *, block: Block = "latest") -> Points:
        return Points(self._one("balanceOf", to_checksum_address(account), block=block))

    def balance_of_at_epoch(self, epoch: Epoch, account: str, *, block: Block = "latest") -> Points:
        return Points(self._one("balanceOfAtEpoch", epoch, to_checksum_address(account), block=block))

    def live_balances(self, account: str, *, block: Block = "latest") -> list[EpochBalance]:
        epochs, amounts = self._view("liveBalances", to_checksum_address(account), block=block)
        return [EpochBalance(Epoch(e), Points(a)) for e, a in zip(epochs, amounts, strict=True)]

    def current_epoch(self, *, block: Block = "latest") -> Epoch:
        return Epoch(self._one("currentEpoch", block=block))

    def epoch_length(self) -> int:
        return int(self._one("epochLength"))

    def validity_duration(self) -> int:
        return int(self._one("validityDuration"))

    def genesis_timestamp(self) -> int:
        return int(self._one("genesisTimestamp"))

    def epoch_expires_at(self, epoch: Epoch) -> int:
        return int(self._one("epochExpiresAt", epoch))

    def is_epoch_expired(self, epoch: Epoch, *, block: Block = "latest") -> bool:
        return bool(self._one("isEpochExpired", epoch, block=block))

    def epoch_supply(self, epoch: Epoch, *, block: Block = "latest") -> Points:
        return Points(self._one("epochSupply", epoch, block=block))

    def outstanding_supply(self, *, block: Block = "latest") -> Points:
        return Points(self._one("outstandingSupply", block=block))

    def total_supply(self, *, block: Block = "latest") -> Points:
        return Points(self._one("totalSupply", block=block))

    def total_issued(self, *, block: Block = "latest") -> Points:
        return Points(self._one("totalIssued", block=block))

    def total_redeemed(self, *, block: Block = "latest") -> Points:
        return Points(self._one("totalRedeemed", block=block))

    def total_expired(self, *, block: Block = "latest") -> Points:
        return Points(self._one("totalExpired", block=block))

    def pending_expiry(self, *, block: Block = "latest") -> Points:
        return Points(self._one("pendingExpiry", block=block))

    def partner(self, partner_id: PartnerId, *, block: Block = "latest") -> Partner:
        (view,) = self._view("partner", partner_id, block=block)
        pid, operator, settlement, active, can_issue, can_accept, allowance, issued, redeemed = view
        return Partner(
            partner_id=PartnerId(pid),
            operator=to_checksum_address(operator),
            settlement=to_checksum_address(settlement),
            active=active,
            can_issue=can_issue,
            can_accept=can_accept,
            allowance=Points(allowance),
            issued=Points(issued),
            redeemed=Points(redeemed),
        )

    def partner_id_of(self, operator: str, *, block: Block = "latest") -> PartnerId:
        return PartnerId(self._one("partnerIdOf", to_checksum_address(operator), block=block))

    def partner_ids(self, *, block: Block = "latest") -> list[PartnerId]:
        return [PartnerId(p) for p in self._one("partnerIds", block=block)]

    def partner_position(self, partner_id: PartnerId, *, block: Block = "latest") -> Position:
        points, value = self._view("partnerPosition", partner_id, block=block)
        return Position(int(points), int(value))

    def coalition_position(self, *, block: Block = "latest") -> Position:
        points, value = self._view("coalitionPosition", block=block)
        return Position(int(points), int(value))

    def settlement_value(self, *, block: Block = "latest") -> int:
        return int(self._one("settlementValue", block=block))

    def ledger_head(self, *, block: Block = "latest") -> bytes:
        return bytes(self._one("ledgerHead", block=block))

    def ledger_sequence(self, *, block: Block = "latest") -> int:
        return int(self._one("ledgerSequence", block=block))

    def nonce_of(self, customer: str, *, block: Block = "latest") -> int:
        """The customer's next redemption nonce."""
        return int(self._one("nonces", to_checksum_address(customer), block=block))

    def reference_used(self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("referenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def redemption_reference_used(
        self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest"
    ) -> bool:
        return bool(self._one("redemptionReferenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def paused(self, *, block: Block = "latest") -> bool:
        return bool(self._one("paused", block=block))

    def transfers_enabled(self, *, block: Block = "latest") -> bool:
        return bool(self._one("transfersEnabled", block=block))

    def has_role(self, role: bytes, account: str, *, block: Block = "latest") -> bool:
        return bool(self._one("hasRole", _bytes32(role, "role"), to_checksum_address(account), block=block))

    def admin_role(self) -> bytes:
        return bytes(self._one("DEFAULT_ADMIN_ROLE"))

    def pauser_role(self) -> bytes:
        return bytes(self._one("PAUSER_ROLE"))

    def max_amount(self) -> Points:
        return Points(self._one("MAX_AMOUNT"))

    def name(self) -> str:
        return str(self._one("name"))

    def symbol(self) -> str:
        return str(self._one("symbol"))

    def decimals(self) -> int:
        return int(self._one("decimals"))

    def domain_separator(self) -> bytes:
        return bytes(self._one("DOMAIN_SEPARATOR"))

    def redemption_digest(
        self, customer: str, partner_id: PartnerId, amount: Points, ref: bytes, nonce: int, deadline: int
    ) -> bytes:
        """The EIP-712 digest the ledger checks (equals the hash of :meth:`redemption_message`)."""
        return bytes(
            self._one(
                "redemptionDigest",
                to_checksum_address(customer),
                partner_id,
                amount,
                _bytes32(ref, "ref"),
                nonce,
                deadline,
            )
        )
