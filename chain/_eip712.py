"""The customer's EIP-712 messages to LoyaltyLedger, all in the domain ``LoyaltyLedger`` / ``1``: consent to a
redemption (``Redemption``), the revocation of a consent (``ConsentCancellation``), and the consent to move
every live point of one account to another (``Migration``), which both accounts sign.

A consent's ``nonce`` is keyed (OpenZeppelin ``NoncesKeyed``): ``key << 64 | sequence``, where the chain
layer's default key for a redemption is the partner id. A cancellation names that full nonce; it consumes
it (so the consent signed with it can never be redeemed), exactly as a redemption would. A migration uses a
nonce of its ``from`` account (any key; the chain layer's default is key 0), consumed by the migration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

__all__ = [
    "CANCELLATION_FIELDS",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "MIGRATION_FIELDS",
    "REDEMPTION_FIELDS",
    "cancellation_typed_data",
    "domain",
    "migration_typed_data",
    "redemption_typed_data",
    "sign_cancellation",
    "sign_migration",
    "sign_redemption",
    "typed_data_digest",
]

DOMAIN_NAME: Final = "LoyaltyLedger"
DOMAIN_VERSION: Final = "1"

REDEMPTION_FIELDS = [
    {"name": "customer", "type": "address"},
    {"name": "partnerId", "type": "uint32"},
    {"name": "amount", "type": "uint256"},
    {"name": "reference", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]

CANCELLATION_FIELDS = [
    {"name": "customer", "type": "address"},
    {"name": "nonce", "type": "uint256"},
]

MIGRATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


def domain(*, chain_id: int, contract: str) -> dict[str, Any]:
    """The ledger's EIP-712 domain on chain ``chain_id`` at ``contract``."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": contract,
    }


def redemption_typed_data(
    *,
    chain_id: int,
    contract: str,
    customer: str,
    partner_id: int,
    amount: int,
    ref: bytes,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The full EIP-712 message (domain, types, message) a customer signs to consent to a redemption."""
    return {
        "domain": domain(chain_id=chain_id, contract=contract),
        "types": {"Redemption": REDEMPTION_FIELDS},
        "primaryType": "Redemption",
        "message": {
            "customer": customer,
            "partnerId": partner_id,
            "amount": amount,
            "reference": ref,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def cancellation_typed_data(*, chain_id: int, contract: str, customer: str, nonce: int) -> dict[str, Any]:
    """The full EIP-712 message a customer signs to revoke the consent it signed with ``nonce``."""
    return {
        "domain": domain(chain_id=chain_id, contract=contract),
        "types": {"ConsentCancellation": CANCELLATION_FIELDS},
        "primaryType": "ConsentCancellation",
        "message": {"customer": customer, "nonce": nonce},
    }


def migration_typed_data(
    *, chain_id: int, contract: str, from_account: str, to: str, nonce: int, deadline: int
) -> dict[str, Any]:
    """The full EIP-712 message both ``from_account`` and ``to`` sign to move every live point of
    ``from_account`` to ``to`` (the same message, so the same digest, for both)."""
    return {
        "domain": domain(chain_id=chain_id, contract=contract),
        "types": {"Migration": MIGRATION_FIELDS},
        "primaryType": "Migration",
        "message": {"from": from_account, "to": to, "nonce": nonce, "deadline": deadline},
    }


def typed_data_digest(full_message: Mapping[str, Any]) -> bytes:
    """``keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(message))``: what the ledger's
    ``redemptionDigest`` / ``cancellationDigest`` / ``migrationDigest`` return for the same values."""
    signable = encode_typed_data(full_message=dict(full_message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def _sign(customer: LocalAccount, data: Mapping[str, Any]) -> bytes:
    signed = customer.sign_typed_data(
        domain_data=data["domain"], message_types=data["types"], message_data=data["message"]
    )
    return bytes(signed.signature)


def sign_redemption(
    customer: LocalAccount,
    *,
    chain_id: int,
    contract: str,
    partner_id: int,
    amount: int,
    ref: bytes,
    nonce: int,
    deadline: int,
) -> bytes:
    """Signs the redemption consent with the customer's key (custodial customers and tests)."""
    data = redemption_typed_data(
        chain_id=chain_id,
        contract=contract,
        customer=customer.address,
        partner_id=partner_id,
        amount=amount,
        ref=ref,
        nonce=nonce,
        deadline=deadline,
    )
    return _sign(customer, data)


def sign_cancellation(customer: LocalAccount, *, chain_id: int, contract: str, nonce: int) -> bytes:
    """Signs the revocation of the consent signed with ``nonce`` (anyone may then submit it)."""
    data = cancellation_typed_data(
        chain_id=chain_id, contract=contract, customer=customer.address, nonce=nonce
    )
    return _sign(customer, data)


def sign_migration(
    account: LocalAccount,
    *,
    chain_id: int,
    contract: str,
    from_account: str,
    to: str,
    nonce: int,
    deadline: int,
) -> bytes:
    """Signs the migration of ``from_account``'s points to ``to`` with ``account``'s key (either side's)."""
    data = migration_typed_data(
        chain_id=chain_id, contract=contract, from_account=from_account, to=to, nonce=nonce, deadline=deadline
    )
    return _sign(account, data)
