"""A typed client for one deployed LoyaltyLedger (v2: separated roles, partner life cycle, settlements,
pause-stopped clock, keyed and revocable consents, Merkle batches, returns, refunds, migration, recovery).

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
- admin only, in production behind the timelock's delay (scheduled, so visible before it runs):
  ``recover_account`` (a lost key's points to a new account);
- pauser: ``pause``, ``unpause``; admin or pauser: ``suspend_partner``;
- a partner's operator (its partner active): ``issue*``, ``redeem``, ``rotate_partner_operator`` (its own
  key); ``reverse_issuance`` (the issuing partner's, within the reversal window), ``refund_redemption`` (the
  accepting partner's);
- a customer: ``revoke_consent`` (its own key); anyone: ``cancel_consent`` (with the customer's signature),
  ``migrate_account`` (with the signatures of both accounts), ``sweep_expired``.

A reversal or a refund presents the issuance or redemption as its entries recorded it (the contract keeps
only a commitment to it): :meth:`Ledger.issuances_in` / :meth:`Ledger.redemption_in` build the
:class:`IssuanceRecord` / :class:`RedemptionRecord` from the receipt, and :meth:`Ledger.find_issuances` /
:meth:`Ledger.find_redemption` from the logs (from the manifest's deployment block) when it is not at hand.

Calldata is encoded with eth-abi from selectors computed once: ``issue`` is the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, NamedTuple, Self

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from ._compile import Artifact
from ._contract import Block, ContractClient, DecodedCall
from ._eip712 import cancellation_typed_data, migration_typed_data, redemption_typed_data
from ._errors import PermanentError, abi_type
from ._manifest import DeploymentManifest, verify_manifest
from ._merkle import BatchItem, MerkleTree, leaf_hash
from ._rpc import Rpc
from ._sender import Call, PendingTransaction, Sender
from ._signer import Signer
from ._types import Address, BlockNumber, Epoch, Log, NonceKey, PartnerId, Points, ReasonCode, Receipt, Role

__all__ = [
    "NONCE_KEY_BITS",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "ConsentCancellation",
    "DecodedCall",
    "EntryNotFound",
    "EpochBalance",
    "FoundEntry",
    "Issuance",
    "IssuanceRecord",
    "Ledger",
    "Partner",
    "PartnerStatus",
    "PendingAdmin",
    "PendingAdminDelay",
    "Position",
    "RedemptionConsent",
    "RedemptionRecord",
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


@dataclass(frozen=True, slots=True)
class IssuanceRecord:
    """One issued item as its entries recorded it: what :meth:`Ledger.reverse_issuance` presents (the
    contract's ``IssuanceItem``) and checks against the commitment it stored under (``partner_id``, ``ref``).

    A single issue has ``item_ref == ref`` and no proof; an item of a batch has the batch's Merkle root as
    ``ref`` and ``proof`` from its leaf to that root. ``issued_at`` is the issuing block's timestamp (the
    reversal window runs from it), ``epoch`` and ``value`` (settlement units per point) are the entry's."""

    partner_id: PartnerId
    ref: bytes
    customer: Address
    amount: Points
    item_ref: bytes
    epoch: Epoch
    issued_at: int
    value: int
    proof: tuple[bytes, ...] = ()

    @property
    def leaf(self) -> bytes:
        """The item's Merkle leaf (for a single issue, its root too)."""
        return leaf_hash(self.customer, self.amount, self.item_ref)

    def as_struct(self) -> tuple[Any, ...]:
        """The ABI tuple of ``IssuanceItem``."""
        return (
            _bytes32(self.ref, "ref"),
            to_checksum_address(self.customer),
            self.amount,
            _bytes32(self.item_ref, "item_ref"),
            self.epoch,
            self.issued_at,
            self.value,
            [_bytes32(p, "proof node") for p in self.proof],
        )


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    """One redemption as its ``PointsRedeemed`` entries recorded it: the ``(epoch, amount)`` parts in order
    (oldest epoch first), what :meth:`Ledger.refund_redemption` presents (the contract's
    ``RedemptionRecord``). ``value`` is the settlement value per point it was redeemed at."""

    partner_id: PartnerId
    customer: Address
    ref: bytes
    value: int
    nonce: int
    epochs: tuple[Epoch, ...]
    amounts: tuple[Points, ...]

    @property
    def amount(self) -> Points:
        """Points the redemption took in all."""
        return Points(sum(self.amounts))

    def as_struct(self) -> tuple[Any, ...]:
        """The ABI tuple of ``RedemptionRecord``."""
        return (
            to_checksum_address(self.customer),
            _bytes32(self.ref, "ref"),
            self.value,
            list(self.epochs),
            list(self.amounts),
        )


class FoundEntry(NamedTuple):
    """A ledger entry found in the logs: the transaction and block it is in, and its decoded values."""

    tx_hash: bytes
    block_number: int
    log_index: int
    values: dict[str, Any]


class EntryNotFound(PermanentError):
    """No ledger entry of the kind asked for matches (in the receipt, or in the logs of the block range)."""


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


class _Event:
    """One event of the ledger's ABI: its topic0 and how to decode a raw log of it into named values."""

    __slots__ = ("data_names", "data_types", "indexed", "name", "topic0")

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.name = str(item["name"])
        params = list(item.get("inputs", []))
        types = [abi_type(p) for p in params]
        self.topic0 = keccak(text=f"{self.name}({','.join(types)})")
        self.indexed = [(str(p["name"]), t) for p, t in zip(params, types, strict=True) if p.get("indexed")]
        plain = [(str(p["name"]), t) for p, t in zip(params, types, strict=True) if not p.get("indexed")]
        self.data_names = [n for n, _ in plain]
        self.data_types = [t for _, t in plain]

    def decode(self, log: Log) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for (name, kind), topic in zip(self.indexed, log.topics[1:], strict=True):
            values[name] = _normalize(kind, abi_decode([kind], topic)[0])
        decoded = abi_decode(self.data_types, log.data)
        for name, kind, value in zip(self.data_names, self.data_types, decoded, strict=True):
            values[name] = _normalize(kind, value)
        return values


def _normalize(kind: str, value: Any) -> Any:
    return to_checksum_address(value) if kind == "address" else value


def _topic(value: int | str) -> bytes:
    """A ``uint`` or an address as an indexed topic (32 bytes, left-padded)."""
    if isinstance(value, str):
        return bytes(12) + bytes(HexBytes(to_checksum_address(value)))
    return value.to_bytes(32, "big")


class _LoggedEntry(NamedTuple):
    """A ledger entry from the logs: the block it is in, and its raw log."""

    block_number: int
    log: Log


class Ledger(ContractClient):
    """One LoyaltyLedger at ``address``; ``sender`` signs its writes (views need none).

    ``deployment_block`` is where searches of the logs (:meth:`find_issuances`, :meth:`find_redemption`)
    start by default (:meth:`from_manifest` sets it to the manifest's)."""

    contract_name = "LoyaltyLedger"

    def __init__(
        self,
        rpc: Rpc,
        address: str,
        *,
        sender: Sender | None = None,
        artifact: Artifact | None = None,
        deployment_block: int = 0,
    ) -> None:
        super().__init__(rpc, address, sender=sender, artifact=artifact)
        self.deployment_block = BlockNumber(deployment_block)
        self._events = {
            e.name: e for e in (_Event(item) for item in self.artifact.abi if item.get("type") == "event")
        }
        self._by_topic0 = {e.topic0: e for e in self._events.values()}

    @classmethod
    def from_manifest(cls, rpc: Rpc, manifest: DeploymentManifest, *, sender: Sender | None = None) -> Ledger:
        """The ledger a deployment manifest names, once the node is shown to hold it: a manifest of another
        chain, of a deployment block the node does not have, or whose code differs raises ManifestMismatch."""
        verify_manifest(manifest, rpc)
        return cls(
            rpc, manifest.ledger.address, sender=sender, deployment_block=manifest.deployed_at.block_number
        )

    def with_sender(self, sender: Sender) -> Self:
        return type(self)(
            self.rpc,
            self.address,
            sender=sender,
            artifact=self.artifact,
            deployment_block=self.deployment_block,
        )

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
            counts = f"{len(recipients)} recipients, {len(amounts)} amounts and {len(item_refs)} references"
            raise PermanentError(f"a batch of {counts}")
        return MerkleTree(
            [
                BatchItem(to, amount, ref)
                for to, amount, ref in zip(recipients, amounts, item_refs, strict=True)
            ]
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

    # ------------------------------------------------------------------ returns and refunds (partners)

    def reverse_issuance(self, item: IssuanceRecord, amount: Points, return_ref: bytes) -> PendingTransaction:
        """Reverses ``amount`` points of one issued item of the sender's partner (a return under the partner's
        ``return_ref``, usable once), within the reversal window of its block. The contract takes back what
        the customer still holds (the item's epoch first, then oldest first) and reports ``requested`` and
        ``recovered`` in its ``IssuanceReversed`` entry; ``item`` comes from :meth:`issuances_in` or
        :meth:`find_issuances`."""
        return self._send("reverseIssuance", item.as_struct(), amount, _bytes32(return_ref, "return_ref"))

    def refund_redemption(
        self, record: RedemptionRecord, amount: Points, refund_ref: bytes
    ) -> PendingTransaction:
        """Refunds ``amount`` points of one redemption at the sender's partner under ``refund_ref`` (usable
        once): they go back to the epochs they were spent from, newest first; an epoch that expired in
        between takes them as expired at once. ``record`` comes from :meth:`redemption_in` or
        :meth:`find_redemption`."""
        return self._send("refundRedemption", record.as_struct(), amount, _bytes32(refund_ref, "refund_ref"))

    # ------------------------------------------------------------------ migration and recovery

    def migration_message(self, from_account: str, to: str, nonce: int, deadline: int) -> dict[str, Any]:
        """The EIP-712 message both accounts sign to move every live point of ``from_account`` to ``to``."""
        return migration_typed_data(
            chain_id=self.rpc.chain_id(),
            contract=self.address,
            from_account=to_checksum_address(from_account),
            to=to_checksum_address(to),
            nonce=_uint(nonce, 256, "nonce"),
            deadline=_uint(deadline, 256, "deadline"),
        )

    def sign_migration(self, signer: Signer, from_account: str, to: str, nonce: int, deadline: int) -> bytes:
        """``signer``'s signature of the migration (it must be one of the two accounts: both sign the same
        message). ``nonce`` is a keyed nonce of ``from_account``, its next one of its key (e.g.
        ``nonce_of(from_account)`` for key 0); ``deadline`` a timestamp."""
        if to_checksum_address(signer.address) not in (
            to_checksum_address(from_account),
            to_checksum_address(to),
        ):
            raise PermanentError(f"{signer.address} is neither side of the migration {from_account} -> {to}")
        return signer.sign_typed_data(self.migration_message(from_account, to, nonce, deadline))

    def migrate_account(
        self,
        from_account: str,
        to: str,
        nonce: int,
        deadline: int,
        from_signature: bytes,
        to_signature: bytes,
    ) -> PendingTransaction:
        """Moves every live point of ``from_account`` to ``to``, each keeping its epoch, with both accounts'
        signatures (:meth:`sign_migration`); any sender (gasless for the customer), while transfers are off
        too, not while paused."""
        return self._send(
            "migrateAccount",
            to_checksum_address(from_account),
            to_checksum_address(to),
            _uint(nonce, 256, "nonce"),
            _uint(deadline, 256, "deadline"),
            bytes(from_signature),
            bytes(to_signature),
        )

    def recover_account(self, lost: str, to: str) -> PendingTransaction:
        """Moves every live point of the ``lost`` account to ``to`` (admin: in production build it with
        :meth:`call_of` and schedule it on the timelock, so it is visible for the whole delay first)."""
        return self._send("recoverAccount", to_checksum_address(lost), to_checksum_address(to))

    # ------------------------------------------------------------------ records from receipts and logs

    def decode_entry(self, log: Log) -> tuple[str, dict[str, Any]] | None:
        """The ledger entry ``log`` is (its event's name and values), or None for a log of another contract
        or an event the ledger does not have."""
        if log.address != self.address or not log.topics:
            return None
        event = self._by_topic0.get(log.topics[0])
        return None if event is None else (event.name, event.decode(log))

    def find_entries(
        self,
        event: str,
        partner_id: PartnerId,
        *,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[FoundEntry]:
        """Every ``event`` entry of partner ``partner_id`` (an event whose first indexed value is the
        partner id: PointsIssued, PointsBatchIssued, PointsRedeemed, IssuanceReversed, RedemptionRefunded,
        ...) in ``[from_block, to_block]`` (default: from :attr:`deployment_block` to the head), in chain
        order, with the transaction each is in."""
        decoder = self._events[event]
        first, last = self._block_range(from_block, to_block)
        found = []
        for item in self.rpc.logs(self.address, [[decoder.topic0], [_topic(partner_id)]], first, last):
            log = Log(
                address=to_checksum_address(item["address"]),
                topics=tuple(bytes(HexBytes(t)) for t in item["topics"]),
                data=bytes(HexBytes(item["data"])),
                log_index=_as_int(item["logIndex"]),
            )
            found.append(
                FoundEntry(
                    tx_hash=bytes(HexBytes(item["transactionHash"])),
                    block_number=_as_int(item["blockNumber"]),
                    log_index=log.log_index,
                    values=decoder.decode(log),
                )
            )
        return sorted(found, key=lambda e: (e.block_number, e.log_index))

    def issuances_in(self, receipt: Receipt) -> list[IssuanceRecord]:
        """Every item issued in the transaction of ``receipt``: one record for an ``issue``, one per item
        (with its Merkle proof) for an ``issueBatch``, in order."""
        logs = [
            _LoggedEntry(receipt.block_number, log) for log in receipt.logs if log.address == self.address
        ]
        records = self._issuance_records(logs, logs)
        if not records:
            raise EntryNotFound(
                f"no issuance of the ledger {self.address} in transaction 0x{receipt.transaction_hash.hex()}"
            )
        return records

    def redemption_in(self, receipt: Receipt) -> RedemptionRecord:
        """The redemption of the transaction of ``receipt`` (its ``PointsRedeemed`` parts, in order)."""
        logs = [
            _LoggedEntry(receipt.block_number, log) for log in receipt.logs if log.address == self.address
        ]
        redemptions = self._redemption_records(logs)
        if len(redemptions) != 1:
            raise EntryNotFound(
                f"{len(redemptions)} redemptions of the ledger {self.address} in transaction "
                f"0x{receipt.transaction_hash.hex()}, not one"
            )
        return redemptions[0]

    def find_issuances(
        self,
        partner_id: PartnerId,
        ref: bytes,
        *,
        customer: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> list[IssuanceRecord]:
        """The items partner ``partner_id`` issued under ``ref``, from the logs: a single issue's reference
        or a batch's root gives its item (its items, each with its proof); with ``customer``, only the
        customer's, and ``ref`` may also be the item reference of a batch item issued to the customer.

        Searches ``[from_block, to_block]`` (default: from :attr:`deployment_block` to the head) with topic
        filters on the indexed partner id (and recipient); raises :class:`EntryNotFound` when nothing
        matches."""
        ref = _bytes32(ref, "ref")
        first, last = self._block_range(from_block, to_block)
        who = None if customer is None else [_topic(customer)]
        issued, batch = self._events["PointsIssued"], self._events["PointsBatchIssued"]
        headers = self._logs([[issued.topic0, batch.topic0], [_topic(partner_id)]], first, last)
        found: list[IssuanceRecord] = []
        for entry in headers:
            event = self._by_topic0[entry.log.topics[0]]
            if event.decode(entry.log)["ref"] != ref:
                continue
            found.extend(self._records_from_header(entry))
        if customer is not None:
            # a batch item by its own (item) reference: the customer's items, then the batch around each
            item_event = self._events["PointsIssuedInBatch"]
            for entry in self._logs([[item_event.topic0], who], first, last):
                item = item_event.decode(entry.log)
                if item["itemRef"] != ref:
                    continue
                found.extend(
                    r
                    for r in self._batch_of_item(partner_id, entry.block_number, item["seq"])
                    if r.item_ref == ref
                )
            account = to_checksum_address(customer)
            found = [r for r in found if r.customer == account]
        unique = list(dict.fromkeys(found))
        if not unique:
            raise EntryNotFound(
                f"partner {partner_id} issued nothing under 0x{ref.hex()} in blocks {first}..{last}"
            )
        return unique

    def find_redemption(
        self,
        partner_id: PartnerId,
        ref: bytes,
        *,
        customer: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
    ) -> RedemptionRecord:
        """The redemption partner ``partner_id`` accepted under ``ref`` (usable once per partner), from its
        ``PointsRedeemed`` logs (topic filters on the partner id and, if given, the customer); searches as
        :meth:`find_issuances` does and raises :class:`EntryNotFound` when there is none."""
        ref = _bytes32(ref, "ref")
        first, last = self._block_range(from_block, to_block)
        event = self._events["PointsRedeemed"]
        who = None if customer is None else [_topic(customer)]
        logs = [
            e
            for e in self._logs([[event.topic0], [_topic(partner_id)], who], first, last)
            if event.decode(e.log)["ref"] == ref
        ]
        redemptions = self._redemption_records(logs)
        if not redemptions:
            raise EntryNotFound(
                f"partner {partner_id} redeemed nothing under 0x{ref.hex()} in blocks {first}..{last}"
            )
        return redemptions[0]

    def _block_range(self, from_block: int | None, to_block: int | None) -> tuple[int, int]:
        first = self.deployment_block if from_block is None else from_block
        last = int(self.rpc.block_number()) if to_block is None else to_block
        return first, last

    def _records_from_header(self, header: _LoggedEntry) -> list[IssuanceRecord]:
        """The items of the issue or batch whose header entry is ``header`` (a batch's items are the entries
        numbered after it, in its block)."""
        if header.log.topics[0] == self._events["PointsIssued"].topic0:
            return self._issuance_records([header], [header])
        item_event = self._events["PointsIssuedInBatch"]
        same_block = self._logs([[item_event.topic0]], header.block_number, header.block_number)
        return self._issuance_records([header], same_block)

    def _batch_of_item(self, partner_id: PartnerId, block_number: int, seq: int) -> list[IssuanceRecord]:
        """The items of partner ``partner_id``'s batch in ``block_number`` that holds item entry ``seq``."""
        batch = self._events["PointsBatchIssued"]
        for header in self._logs([[batch.topic0], [_topic(partner_id)]], block_number, block_number):
            values = batch.decode(header.log)
            if values["seq"] < seq <= values["seq"] + values["count"]:
                return self._records_from_header(header)
        return []

    def _issuance_records(
        self, headers: Sequence[_LoggedEntry], items: Sequence[_LoggedEntry]
    ) -> list[IssuanceRecord]:
        """Records of the ``PointsIssued`` / ``PointsBatchIssued`` entries among ``headers``; a batch's items
        are looked up by their numbers among ``items``."""
        issued, batch = self._events["PointsIssued"], self._events["PointsBatchIssued"]
        item_event = self._events["PointsIssuedInBatch"]
        by_seq = {
            values["seq"]: values
            for values in (item_event.decode(e.log) for e in items if e.log.topics[0] == item_event.topic0)
        }
        timestamps: dict[int, int] = {}

        def issued_at(block_number: int) -> int:
            if block_number not in timestamps:
                timestamps[block_number] = self.rpc.timestamp(block_number)
            return timestamps[block_number]

        records: list[IssuanceRecord] = []
        for entry in headers:
            topic0 = entry.log.topics[0]
            if topic0 == issued.topic0:
                v = issued.decode(entry.log)
                records.append(
                    IssuanceRecord(
                        partner_id=PartnerId(v["partnerId"]),
                        ref=bytes(v["ref"]),
                        customer=v["to"],
                        amount=Points(v["amount"]),
                        item_ref=bytes(v["ref"]),
                        epoch=Epoch(v["epoch"]),
                        issued_at=issued_at(entry.block_number),
                        value=int(v["value"]),
                    )
                )
            elif topic0 == batch.topic0:
                v = batch.decode(entry.log)
                first = int(v["seq"]) + 1
                try:
                    parts = [by_seq[first + i] for i in range(int(v["count"]))]
                except KeyError:
                    raise EntryNotFound(
                        f"the items of batch 0x{bytes(v['ref']).hex()} are not in the logs"
                    ) from None
                tree = MerkleTree([BatchItem(p["to"], p["amount"], bytes(p["itemRef"])) for p in parts])
                if tree.root != bytes(v["ref"]):
                    raise PermanentError(f"the items of batch 0x{bytes(v['ref']).hex()} lead to another root")
                records.extend(
                    IssuanceRecord(
                        partner_id=PartnerId(v["partnerId"]),
                        ref=bytes(v["ref"]),
                        customer=p["to"],
                        amount=Points(p["amount"]),
                        item_ref=bytes(p["itemRef"]),
                        epoch=Epoch(v["epoch"]),
                        issued_at=issued_at(entry.block_number),
                        value=int(v["value"]),
                        proof=tuple(tree.proof(i)),
                    )
                    for i, p in enumerate(parts)
                )
        return records

    def _redemption_records(self, logs: Iterable[_LoggedEntry]) -> list[RedemptionRecord]:
        """The redemptions whose ``PointsRedeemed`` parts are among ``logs``, grouped by partner and
        reference (a redemption's parts are consecutive entries of one transaction), parts in order."""
        event = self._events["PointsRedeemed"]
        groups: dict[tuple[int, bytes], list[dict[str, Any]]] = {}
        for entry in logs:
            if entry.log.topics[0] == event.topic0:
                v = event.decode(entry.log)
                groups.setdefault((v["partnerId"], bytes(v["ref"])), []).append(v)
        return [
            RedemptionRecord(
                partner_id=PartnerId(partner_id),
                customer=parts[0]["customer"],
                ref=ref,
                value=int(parts[0]["value"]),
                nonce=int(parts[0]["nonce"]),
                epochs=tuple(Epoch(p["epoch"]) for p in parts),
                amounts=tuple(Points(p["amount"]) for p in parts),
            )
            for (partner_id, ref), parts in groups.items()
        ]

    def _logs(
        self, topics: Sequence[Sequence[bytes] | None], from_block: int, to_block: int
    ) -> list[_LoggedEntry]:
        """This ledger's logs under ``topics`` (one list of alternatives per position, ``None``: any) in
        ``[from_block, to_block]``, in chain order."""
        entries = [
            _LoggedEntry(
                _as_int(item["blockNumber"]),
                Log(
                    address=to_checksum_address(item["address"]),
                    topics=tuple(bytes(HexBytes(t)) for t in item["topics"]),
                    data=bytes(HexBytes(item["data"])),
                    log_index=_as_int(item["logIndex"]),
                ),
            )
            for item in self.rpc.logs(self.address, topics, from_block, to_block)
        ]
        return sorted(entries, key=lambda e: (e.block_number, e.log.log_index))

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
        """Expired points not yet swept: issued - (redeemed - refunded) - reversed - expired - outstanding."""
        return Points(self._one("pendingExpiry", block=block))

    def total_reversed(self, *, block: Block = "latest") -> Points:
        """Points taken back by reversals (what was recovered, not what was requested)."""
        return Points(self._one("totalReversed", block=block))

    def total_refunded(self, *, block: Block = "latest") -> Points:
        """Points given back by refunds (live again, or expired on arrival)."""
        return Points(self._one("totalRefunded", block=block))

    # ------------------------------------------------------------------ views: the clock

    def current_epoch(self, *, block: Block = "latest") -> Epoch:
        return Epoch(self._one("currentEpoch", block=block))

    def epoch_length(self, *, block: Block = "latest") -> int:
        return int(self._one("epochLength", block=block))

    def validity_duration(self, *, block: Block = "latest") -> int:
        return int(self._one("validityDuration", block=block))

    def reversal_window(self, *, block: Block = "latest") -> int:
        """Seconds after an issuance's block during which its partner may reverse it."""
        return int(self._one("reversalWindow", block=block))

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

    def return_reference_used(self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("returnReferenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def refund_reference_used(self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest") -> bool:
        return bool(self._one("refundReferenceUsed", partner_id, _bytes32(ref, "ref"), block=block))

    def reversed_of(self, item: IssuanceRecord, *, block: Block = "latest") -> Points:
        """Points of the item reversed so far (requested, whether recovered or not)."""
        return Points(
            self._one(
                "reversedOf",
                item.partner_id,
                _bytes32(item.ref, "ref"),
                to_checksum_address(item.customer),
                item.amount,
                _bytes32(item.item_ref, "item_ref"),
                block=block,
            )
        )

    def refunded_of(self, partner_id: PartnerId, ref: bytes, *, block: Block = "latest") -> Points:
        """Points of partner ``partner_id``'s redemption ``ref`` refunded so far."""
        return Points(self._one("refundedOf", partner_id, _bytes32(ref, "ref"), block=block))

    def holder_of(self, account: str, *, block: Block = "latest") -> Address:
        """The account holding ``account``'s points: itself, or where its migrations led (reversals take back
        from it, refunds go to it)."""
        return to_checksum_address(self._one("holderOf", to_checksum_address(account), block=block))

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

    def extension(self, *, block: Block = "latest") -> Address:
        """The code that runs the ledger's extension functions (by delegatecall, in the ledger's storage)."""
        return to_checksum_address(self._one("extension", block=block))

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

    def migration_digest(
        self, from_account: str, to: str, nonce: int, deadline: int, *, block: Block = "latest"
    ) -> bytes:
        """The EIP-712 digest of a migration (equals the hash of :meth:`migration_message`)."""
        return bytes(
            self._one(
                "migrationDigest",
                to_checksum_address(from_account),
                to_checksum_address(to),
                nonce,
                deadline,
                block=block,
            )
        )


def _as_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)
