"""A typed client for one deployed LoyaltyLedger (v2: separated roles, partner life cycle, settlements,
pause-stopped clock, keyed and revocable consents).

Writes go through a :class:`~chain.Sender` (the partner's, the admin's, the treasury's, the pauser's or a
customer's key) and return a :class:`~chain.PendingTransaction` at once, so many can be in flight;
``.wait()`` gives the receipt or raises the decoded :class:`~chain.ContractRevert`. A call that would revert
raises that error before anything is sent. Views are ``eth_call``s, at ``latest`` or at any block (an
auditor's reconciliation reads a fixed one): every view takes ``block=``.

Who may send what (see contracts/README.md for the whole trust table):

- admin (a :class:`~chain.Timelock` in production: build the call with :meth:`Ledger.call_of` and
  schedule it): ``register_partner``, ``increase_partner_allowance``, ``rotate_partner_operator``,
  ``set_partner_rights``, ``set_partner_settlement_address``, ``reactivate_partner``, ``offboard_partner``,
  ``set_transfers_enabled``, ``grant_role`` / ``revoke_role``, the admin handover steps;
- treasury: ``set_settlement_value``, ``record_settlement``; admin or treasury:
  ``decrease_partner_allowance``;
- pauser: ``pause``, ``unpause``; admin or pauser: ``suspend_partner``;
- a partner's operator: ``issue*``, ``redeem``, ``rotate_partner_operator`` (its own key, while active);
- a customer: ``revoke_consent`` (its own key); anyone: ``cancel_consent`` (with the customer's signature),
  ``sweep_expired``.

Calldata is encoded with eth-abi from selectors computed once: ``issue`` is the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, NamedTuple

from eth_utils.address import to_checksum_address

from ._contract import Block, ContractClient, DecodedCall
from ._eip712 import cancellation_typed_data, redemption_typed_data
from ._errors import PermanentError
from ._manifest import DeploymentManifest, verify_manifest
from ._merkle import BatchItem, MerkleTree
from ._rpc import Rpc
from ._sender import Call, PendingTransaction, Sender
from ._signer import Signer
from ._types import Address, Epoch, NonceKey, PartnerId, Points, ReasonCode, Role

__all__ = [
    "NONCE_KEY_BITS",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "ConsentCancellation",
    "DecodedCall",
    "EpochBalance",
    "Issuance",
    "Ledger",
    "Partner",
    "PartnerStatus",
    "PendingAdmin",
    "PendingAdminDelay",
    "Position",
    "RedemptionConsent",
    "nonce_key",
    "nonce_sequence",
]

ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS: Address = to_checksum_address("0x" + "00" * 20)
#: The low bits of a keyed nonce that count its sequence; the key is the rest (``uint192``).
NONCE_KEY_BITS = 64


def nonce_key(nonce: int) -> NonceKey:
    """The key of a keyed nonce (``nonce >> 64``; a redemption's default key is its partner id)."""
    return NonceKey(nonce >> NONCE_KEY_BITS)


def nonce_sequence(nonce: int) -> int:
    """The sequence number of a keyed nonce within its key (its low 64 bits)."""
    return nonce & ((1 << NONCE_KEY_BITS) - 1)


class PartnerStatus(IntEnum):
    """A partner's life cycle (``ILoyaltyLedger.PartnerStatus``). ``NONE`` is a rotated-away key's tombstone,
    never the status of a registered partner."""

    NONE = 0
    ACTIVE = 1
    SUSPENDED = 2
    OFFBOARDED = 3


@dataclass(frozen=True, slots=True)
class Partner:
    """A partner as the registry holds it (``partner(id)``). Values are in settlement units, each entry at
    the settlement value in force when it happened; ``settled_*`` are what the treasury recorded as paid."""

    partner_id: PartnerId
    operator: Address
    settlement: Address
    status: PartnerStatus
    can_issue: bool
    can_accept: bool
    allowance: Points
    issued: Points
    redeemed: Points
    issued_value: int
    redeemed_value: int
    #: Points taken back by its returns (reversals) and given back by its refunds, with their values (at the
    #: original entry's settlement value).
    reversed: Points
    refunded: Points
    reversed_value: int
    refunded_value: int
    settled_points: int
    settled_value: int

    @property
    def active(self) -> bool:
        """Whether the partner may act now (neither suspended nor offboarded)."""
        return self.status is PartnerStatus.ACTIVE


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
    """A customer's signed consent to redeem ``amount`` at ``partner_id`` (EIP-712 ``Redemption``).
    ``nonce`` is keyed: ``key << 64 | sequence`` (the key defaults to the partner id)."""

    customer: Address
    partner_id: PartnerId
    amount: Points
    ref: bytes
    nonce: int
    deadline: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class ConsentCancellation:
    """A customer's signed revocation of the consent it signed with ``nonce`` (EIP-712
    ``ConsentCancellation``); anyone may submit it with :meth:`Ledger.cancel_consent`."""

    customer: Address
    nonce: int
    signature: bytes


class PendingAdmin(NamedTuple):
    """A scheduled admin handover: ``new_admin`` may accept from ``schedule`` (a timestamp; 0: none)."""

    new_admin: Address
    schedule: int


class PendingAdminDelay(NamedTuple):
    """A scheduled change of the admin handover delay to ``new_delay``, effective at ``schedule``
    (0: none)."""

    new_delay: int
    schedule: int


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise PermanentError(f"{what} must be 32 bytes, got {value!r}")
    return bytes(value)


def _uint(value: int, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise PermanentError(f"{what} must be an integer in [0, 2**{bits}), got {value!r}")
    return value


class Ledger(ContractClient):
    """One LoyaltyLedger at ``address``; ``sender`` signs its writes (views need none)."""

    contract_name = "LoyaltyLedger"

    @classmethod
    def from_manifest(cls, rpc: Rpc, manifest: DeploymentManifest, *, sender: Sender | None = None) -> Ledger:
        """The ledger a deployment manifest names, once the node is shown to hold it: a manifest of another
        chain, of a deployment block the node does not have, or whose code differs raises ManifestMismatch."""
        verify_manifest(manifest, rpc)
        return cls(rpc, manifest.ledger.address, sender=sender)

    # ------------------------------------------------------------------ plumbing

    def _send(self, function: str, *args: Any) -> PendingTransaction:
        return self.sender_or_fail(function).submit(self.call_of(function, *args))

    def _issue_call(self, i: Issuance) -> Call:
        to = to_checksum_address(i.to)
        args = (to, i.amount, _bytes32(i.ref, "ref"), i.reason, _bytes32(i.rule_hash, "rule_hash"))
        data = self._functions["issue"].encode(args)
        return Call(to=self.address, data=data)

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
        item_refs: Sequence[bytes],
        reason: ReasonCode,
        rule_hash: bytes = ZERO_HASH,
        *,
        gas: int | None = None,
    ) -> PendingTransaction:
        """Issues ``amounts[i]`` to ``recipients[i]`` for the partner's order ``item_refs[i]``, in one
        transaction. The batch's reference is the Merkle root of its items, which the contract computes
        (:meth:`batch_tree` gives the same tree and each item's proof).

        ``gas``: a fixed limit instead of an estimate, which costs the node as much as running the batch
        (the call is still checked with ``eth_call`` before it is sent)."""
        call = self.call_of(
            "issueBatch",
            [to_checksum_address(r) for r in recipients],
            list(amounts),
            [_bytes32(r, "item_ref") for r in item_refs],
            reason,
            _bytes32(rule_hash, "rule_hash"),
            gas=gas,
        )
        return self.sender_or_fail("issueBatch").submit(call)

    @staticmethod
    def batch_tree(
        recipients: Sequence[str], amounts: Sequence[Points], item_refs: Sequence[bytes]
    ) -> MerkleTree:
        """The Merkle tree of a batch (its root is the batch's reference on chain)."""
        if not len(recipients) == len(amounts) == len(item_refs):
            raise PermanentError(
                f"a batch of {len(recipients)} recipients, {len(amounts)} amounts and {len(item_refs)} references"
            )
        return MerkleTree(
            [BatchItem(to, amount, ref) for to, amount, ref in zip(recipients, amounts, item_refs, strict=True)]
        )

    # ------------------------------------------------------------------ consents (customers, acceptors)

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
        nonce_key: NonceKey | int | None = None,
    ) -> RedemptionConsent:
        """Signs a redemption consent with the customer's signer.

        The nonce is keyed: unless ``nonce`` is given, it is the customer's next nonce of ``nonce_key``
        (default: the partner id, so outstanding consents at one partner never block another). A ``nonce``
        given together with a ``nonce_key`` must belong to that key. The deadline is ``valid_for`` seconds
        after the chain's latest block unless given.
        """
        key = partner_id if nonce_key is None else _uint(nonce_key, 192, "nonce_key")
        if nonce is None:
            nonce = self.nonce_of(customer.address, NonceKey(key))
        elif nonce_key is not None and nonce >> NONCE_KEY_BITS != key:
            raise PermanentError(f"nonce {nonce} belongs to key {nonce >> NONCE_KEY_BITS}, not to key {key}")
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

    def cancellation_message(self, customer: str, nonce: int) -> dict[str, Any]:
        """The EIP-712 message a customer signs to revoke the consent it signed with ``nonce``."""
        return cancellation_typed_data(
            chain_id=self.rpc.chain_id(),
            contract=self.address,
            customer=to_checksum_address(customer),
            nonce=_uint(nonce, 256, "nonce"),
        )

    def sign_cancellation(self, customer: Signer, nonce: int) -> ConsentCancellation:
        """Signs the revocation of the customer's consent with ``nonce`` (e.g. ``consent.nonce``): once
        submitted, that nonce is consumed and the consent can never be redeemed."""
        signature = customer.sign_typed_data(self.cancellation_message(customer.address, nonce))
        return ConsentCancellation(to_checksum_address(customer.address), nonce, signature)

    def cancel_consent(self, cancellation: ConsentCancellation) -> PendingTransaction:
        """Submits a customer's signed cancellation (any sender; works while paused)."""
        return self._send("cancelConsent", cancellation.customer, cancellation.nonce, cancellation.signature)

    def revoke_consent(self, nonce: int) -> PendingTransaction:
        """Revokes the sender's own consent signed with ``nonce`` (a self-custody customer's direct call)."""
        return self._send("revokeConsent", _uint(nonce, 256, "nonce"))

    # ------------------------------------------------------------------ the partner registry (admin)

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

    def increase_partner_allowance(self, partner_id: PartnerId, amount: Points) -> PendingTransaction:
        """Tops up the partner's remaining allowance by ``amount`` (admin)."""
        return self._send("increasePartnerAllowance", partner_id, amount)

    def decrease_partner_allowance(self, partner_id: PartnerId, amount: Points) -> PendingTransaction:
        """Cuts the partner's remaining allowance by ``amount`` (admin or treasury); refused rather than
        clamped when the partner already spent part of it."""
        return self._send("decreasePartnerAllowance", partner_id, amount)

    def rotate_partner_operator(self, partner_id: PartnerId, new_operator: str) -> PendingTransaction:
        """Moves the partner to a new operator key, keeping its id, references and counters (admin, or the
        partner's own active operator). The old key is refused from then on."""
        return self._send("rotatePartnerOperator", partner_id, to_checksum_address(new_operator))

    def set_partner_rights(
        self, partner_id: PartnerId, *, can_issue: bool, can_accept: bool
    ) -> PendingTransaction:
        return self._send("setPartnerRights", partner_id, can_issue, can_accept)

    def set_partner_settlement_address(self, partner_id: PartnerId, settlement: str) -> PendingTransaction:
        return self._send("setPartnerSettlementAddress", partner_id, to_checksum_address(settlement))

    def suspend_partner(self, partner_id: PartnerId) -> PendingTransaction:
        """Suspends an active partner (admin or pauser)."""
        return self._send("suspendPartner", partner_id)

    def reactivate_partner(self, partner_id: PartnerId) -> PendingTransaction:
        return self._send("reactivatePartner", partner_id)

    def offboard_partner(self, partner_id: PartnerId) -> PendingTransaction:
        """Offboards the partner for good: its allowance drops to 0; history and positions stay (admin)."""
        return self._send("offboardPartner", partner_id)

    # ------------------------------------------------------------------ money and switches

    def set_settlement_value(self, value: int) -> PendingTransaction:
        """The settlement value of one point for entries from now on (treasury)."""
        return self._send("setSettlementValue", value)

    def record_settlement(
        self, partner_id: PartnerId, *, points: int, value: int, payment_ref: bytes
    ) -> PendingTransaction:
        """Records a settlement with the partner (treasury): ``points`` and ``value`` leave its open position,
        positive when the coalition paid the partner; ``payment_ref`` is usable once per partner."""
        return self._send("recordSettlement", partner_id, points, value, _bytes32(payment_ref, "payment_ref"))

    def set_transfers_enabled(self, enabled: bool) -> PendingTransaction:
        return self._send("setTransfersEnabled", enabled)

    def pause(self) -> PendingTransaction:
        """Pauses the ledger and stops its clock (pauser)."""
        return self._send("pause")

    def unpause(self) -> PendingTransaction:
        return self._send("unpause")

    # ------------------------------------------------------------------ roles and the admin handover

    def grant_role(self, role: bytes, account: str) -> PendingTransaction:
        """Grants ``role`` (admin); the default admin role is only handed over in two steps."""
        return self._send("grantRole", _bytes32(role, "role"), to_checksum_address(account))

    def revoke_role(self, role: bytes, account: str) -> PendingTransaction:
        return self._send("revokeRole", _bytes32(role, "role"), to_checksum_address(account))

    def renounce_role(self, role: bytes, account: str) -> PendingTransaction:
        """Gives up the sender's own ``role`` (``account`` must be the sender: a confirmation)."""
        return self._send("renounceRole", _bytes32(role, "role"), to_checksum_address(account))

    def begin_admin_transfer(self, new_admin: str) -> PendingTransaction:
        """Schedules the handover of the default admin role to ``new_admin`` after the admin delay."""
        return self._send("beginDefaultAdminTransfer", to_checksum_address(new_admin))

    def accept_admin_transfer(self) -> PendingTransaction:
        """Accepts a scheduled handover (sent by the new admin, once the delay has passed)."""
        return self._send("acceptDefaultAdminTransfer")

    def cancel_admin_transfer(self) -> PendingTransaction:
        return self._send("cancelDefaultAdminTransfer")

    def change_admin_delay(self, seconds: int) -> PendingTransaction:
        """Schedules a new admin handover delay (``uint48`` seconds)."""
        return self._send("changeDefaultAdminDelay", _uint(seconds, 48, "the admin delay"))

    def rollback_admin_delay(self) -> PendingTransaction:
        return self._send("rollbackDefaultAdminDelay")

    # ------------------------------------------------------------------ anyone, customers

    def sweep_expired(self, accounts: Sequence[str]) -> PendingTransaction:
        """Turns the expired points of ``accounts`` into ``PointsExpired`` entries (anyone may call)."""
        return self._send("sweepExpired", [to_checksum_address(a) for a in accounts])

    def transfer(self, to: str, amount: Points) -> PendingTransaction:
        """A customer-to-customer transfer (only while the admin has transfers enabled)."""
        return self._send("transfer", to_checksum_address(to), amount)

    # ------------------------------------------------------------------ views: balances and supply

    def balance_of(self, account: str, *, block: Block = "latest") -> Points:
        return Points(self._one("balanceOf", to_checksum_address(account), block=block))

    def balance_of_at_epoch(self, epoch: Epoch, account: str, *, block: Block = "latest") -> Points:
        return Points(self._one("balanceOfAtEpoch", epoch, to_checksum_address(account), block=block))

    def live_balances(self, account: str, *, block: Block = "latest") -> list[EpochBalance]:
        epochs, amounts = self._view("liveBalances", to_checksum_address(account), block=block)
        return [EpochBalance(Epoch(e), Points(a)) for e, a in zip(epochs, amounts, strict=True)]

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

    # ------------------------------------------------------------------ views: the clock

    def current_epoch(self, *, block: Block = "latest") -> Epoch:
        return Epoch(self._one("currentEpoch", block=block))

    def epoch_length(self, *, block: Block = "latest") -> int:
        return int(self._one("epochLength", block=block))

    def validity_duration(self, *, block: Block = "latest") -> int:
        return int(self._one("validityDuration", block=block))

    def genesis_timestamp(self, *, block: Block = "latest") -> int:
        return int(self._one("genesisTimestamp", block=block))

    def ledger_clock(self, *, block: Block = "latest") -> int:
        """Seconds of ledger clock since genesis: wall time minus the time spent paused."""
        return int(self._one("ledgerClock", block=block))

    def paused_duration(self, *, block: Block = "latest") -> int:
        """Seconds the ledger has spent paused, the ongoing pause included."""
        return int(self._one("pausedDuration", block=block))

    def epoch_expires_at(self, epoch: Epoch, *, block: Block = "latest") -> int:
        return int(self._one("epochExpiresAt", epoch, block=block))

    def is_epoch_expired(self, epoch: Epoch, *, block: Block = "latest") -> bool:
        return bool(self._one("isEpochExpired", epoch, block=block))

    # ------------------------------------------------------------------ views: partners and positions

    def partner(self, partner_id: PartnerId, *, block: Block = "latest") -> Partner:
        (view,) = self._view("partner", partner_id, block=block)
        (
            pid,
            operator,
            settlement,
            status,
            can_issue,
            can_accept,
            allowance,
            issued,
            redeemed,
            issued_value,
            redeemed_value,
            reversed_,
            refunded,
            reversed_value,
            refunded_value,
            settled_points,
            settled_value,
        ) = view
        return Partner(
            partner_id=PartnerId(pid),
            operator=to_checksum_address(operator),
            settlement=to_checksum_address(settlement),
            status=PartnerStatus(status),
            can_issue=can_issue,
            can_accept=can_accept,
            allowance=Points(allowance),
            issued=Points(issued),
            redeemed=Points(redeemed),
            issued_value=int(issued_value),
            redeemed_value=int(redeemed_value),
            reversed=Points(reversed_),
            refunded=Points(refunded),
            reversed_value=int(reversed_value),
            refunded_value=int(refunded_value),
            settled_points=int(settled_points),
            settled_value=int(settled_value),
        )

    def partner_id_of(self, operator: str, *, block: Block = "latest") -> PartnerId:
        """The partner ``operator`` operates, or operated before a rotation; 0 for none."""
        return PartnerId(self._one("partnerIdOf", to_checksum_address(operator), block=block))

    def partner_ids(self, *, block: Block = "latest") -> list[PartnerId]:
        return [PartnerId(p) for p in self._one("partnerIds", block=block)]

    def _position(self, function: str, *args: Any, block: Block) -> Position:
        points, value = self._view(function, *args, block=block)
        return Position(int(points), int(value))

    def partner_position(self, partner_id: PartnerId, *, block: Block = "latest") -> Position:
        """All-time: redeemed at the partner minus issued by it (points, value)."""
        return self._position("partnerPosition", partner_id, block=block)

    def partner_open_position(self, partner_id: PartnerId, *, block: Block = "latest") -> Position:
        """Open since the settlements so far: the all-time position minus what was settled."""
        return self._position("partnerOpenPosition", partner_id, block=block)

    def coalition_position(self, *, block: Block = "latest") -> Position:
        return self._position("coalitionPosition", block=block)

    def coalition_open_position(self, *, block: Block = "latest") -> Position:
        return self._position("coalitionOpenPosition", block=block)

    def settlement_value(self, *, block: Block = "latest") -> int:
        return int(self._one("settlementValue", block=block))

    # ------------------------------------------------------------------ views: hash chain, references, nonces

    def ledger_head(self, *, block: Block = "latest") -> bytes:
        return bytes(self._one("ledgerHead", block=block))

    def ledger_sequence(self, *, block: Block = "latest") -> int:
        return int(self._one("ledgerSequence", block=block))

    def nonce_of(self, customer: str, key: NonceKey | int = 0, *, block: Block = "latest") -> int:
        """The customer's next full keyed nonce of ``key`` (``key << 64 | sequence``)."""
        return int(
            self._one(
                "nonces(address,uint192)", to_checksum_address(customer), _uint(key, 192, "key"), block=block
            )
        )

    def reference_used(self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("referenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def redemption_reference_used(
        self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest"
    ) -> bool:
        return bool(self._one("redemptionReferenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def settlement_reference_used(
        self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest"
    ) -> bool:
        return bool(self._one("settlementReferenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    # ------------------------------------------------------------------ views: switches and roles

    def paused(self, *, block: Block = "latest") -> bool:
        return bool(self._one("paused", block=block))

    def transfers_enabled(self, *, block: Block = "latest") -> bool:
        return bool(self._one("transfersEnabled", block=block))

    def has_role(self, role: bytes, account: str, *, block: Block = "latest") -> bool:
        return bool(self._one("hasRole", _bytes32(role, "role"), to_checksum_address(account), block=block))

    def admin_role(self, *, block: Block = "latest") -> Role:
        return Role(bytes(self._one("DEFAULT_ADMIN_ROLE", block=block)))

    def treasury_role(self, *, block: Block = "latest") -> Role:
        return Role(bytes(self._one("TREASURY_ROLE", block=block)))

    def pauser_role(self, *, block: Block = "latest") -> Role:
        return Role(bytes(self._one("PAUSER_ROLE", block=block)))

    def default_admin(self, *, block: Block = "latest") -> Address:
        """The current holder of the default admin role (the zero address once renounced)."""
        return to_checksum_address(self._one("defaultAdmin", block=block))

    def pending_default_admin(self, *, block: Block = "latest") -> PendingAdmin:
        new_admin, schedule = self._view("pendingDefaultAdmin", block=block)
        return PendingAdmin(to_checksum_address(new_admin), int(schedule))

    def default_admin_delay(self, *, block: Block = "latest") -> int:
        """Seconds between beginning an admin handover and its acceptance."""
        return int(self._one("defaultAdminDelay", block=block))

    def pending_default_admin_delay(self, *, block: Block = "latest") -> PendingAdminDelay:
        new_delay, schedule = self._view("pendingDefaultAdminDelay", block=block)
        return PendingAdminDelay(int(new_delay), int(schedule))

    # ------------------------------------------------------------------ views: constants and metadata

    def max_amount(self, *, block: Block = "latest") -> Points:
        return Points(self._one("MAX_AMOUNT", block=block))

    def max_allowance(self, *, block: Block = "latest") -> Points:
        return Points(self._one("MAX_ALLOWANCE", block=block))

    def max_settlement_value(self, *, block: Block = "latest") -> int:
        return int(self._one("MAX_SETTLEMENT_VALUE", block=block))

    def max_validity(self, *, block: Block = "latest") -> int:
        return int(self._one("MAX_VALIDITY", block=block))

    def name(self, *, block: Block = "latest") -> str:
        return str(self._one("name", block=block))

    def symbol(self, *, block: Block = "latest") -> str:
        return str(self._one("symbol", block=block))

    def decimals(self, *, block: Block = "latest") -> int:
        return int(self._one("decimals", block=block))

    def domain_separator(self, *, block: Block = "latest") -> bytes:
        return bytes(self._one("DOMAIN_SEPARATOR", block=block))

    def redemption_digest(
        self,
        customer: str,
        partner_id: PartnerId,
        amount: Points,
        ref: bytes,
        nonce: int,
        deadline: int,
        *,
        block: Block = "latest",
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
                block=block,
            )
        )

    def cancellation_digest(self, customer: str, nonce: int, *, block: Block = "latest") -> bytes:
        """The EIP-712 digest of a cancellation (equals the hash of :meth:`cancellation_message`)."""
        return bytes(self._one("cancellationDigest", to_checksum_address(customer), nonce, block=block))
