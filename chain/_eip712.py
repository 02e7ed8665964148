"""The customer's EIP-712 consent to a redemption (``Redemption`` in LoyaltyLedger)."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

__all__ = ["redemption_typed_data", "sign_redemption"]

REDEMPTION_FIELDS = [
    {"name": "customer", "type": "address"},
    {"name": "partnerId", "type": "uint32"},
    {"name": "amount", "type": "uint256"},
    {"name": "reference", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


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
        "domain": {
            "name": "LoyaltyLedger",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
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
    signed = customer.sign_typed_data(
        domain_data=data["domain"], message_types=data["types"], message_data=data["message"]
    )
    return bytes(signed.signature)
