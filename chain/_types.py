"""Names for the chain layer's domain scalars and the shapes it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from eth_typing import BlockNumber, ChecksumAddress, Hash32

__all__ = [
    "Address",
    "BlockNumber",
    "Epoch",
    "Hash32",
    "Log",
    "NonceKey",
    "OperationId",
    "PartnerId",
    "Points",
    "ReasonCode",
    "Receipt",
    "Role",
    "Wei",
]

#: A checksummed account or contract address.
Address = ChecksumAddress
#: A whole number of loyalty points (the ledger has 0 decimals).
Points = NewType("Points", int)
#: An ERC-7818 epoch index (``currentEpoch()`` counts from the ledger's genesis).
Epoch = NewType("Epoch", int)
#: A partner's id in the ledger's registry (``uint32``).
PartnerId = NewType("PartnerId", int)
#: Why points were issued (purchase, review, referral, ...; ``uint16``).
ReasonCode = NewType("ReasonCode", int)
#: An amount of wei (fees, balances of the native coin).
Wei = NewType("Wei", int)
#: An AccessControl role (``bytes32``, e.g. ``keccak256("TREASURY_ROLE")``; the default admin's is zero).
Role = NewType("Role", bytes)
#: The key of a keyed consent nonce (``uint192``): a nonce is ``key << 64 | sequence``.
NonceKey = NewType("NonceKey", int)
#: A TimelockController operation id (``bytes32``: ``hashOperation`` of its call, predecessor and salt).
OperationId = NewType("OperationId", bytes)


@dataclass(frozen=True, slots=True)
class Log:
    """A raw event log as the node returned it (no ABI applied)."""

    address: ChecksumAddress
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """The receipt of a mined transaction, the same shape whichever node produced it."""

    transaction_hash: bytes
    block_number: BlockNumber
    block_hash: bytes
    transaction_index: int
    status: int
    gas_used: int
    effective_gas_price: Wei
    sender: ChecksumAddress
    to: ChecksumAddress | None
    contract_address: ChecksumAddress | None
    logs: tuple[Log, ...]

    @property
    def succeeded(self) -> bool:
        return self.status == 1
