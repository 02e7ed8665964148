"""Helpers shared by the contract behaviour tests (issue, redeem, expiry, transfers, consent, pause clock).

Kept out of ``conftest.py`` (the fixtures' module): exact clock control, keyed nonces, the customer's
EIP-712 ``ConsentCancellation``, and sending a transaction from a key generated for the test, or one that
is expected to fail, keeping its receipt.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from chain import ContractRevert
from conftest import GAS, Ledger, Node

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# PartnerView.status (ILoyaltyLedger.PartnerStatus)
STATUS_NONE, STATUS_ACTIVE, STATUS_SUSPENDED, STATUS_OFFBOARDED = 0, 1, 2, 3

#: The names of ``partner(id)``'s fields, in ABI order.
PARTNER_FIELDS = (
    "partnerId",
    "operator",
    "settlement",
    "status",
    "canIssue",
    "canAccept",
    "allowance",
    "issued",
    "redeemed",
    "issuedValue",
    "redeemedValue",
    "settledPoints",
    "settledValue",
)


def partner_view(ledger: Ledger, partner_id: int) -> dict[str, Any]:
    """``partner(partner_id)`` as a dict of its named fields."""
    return dict(zip(PARTNER_FIELDS, ledger.call("partner", partner_id), strict=True))


def keyed(key: int, sequence: int = 0) -> int:
    """The keyed nonce ``key << 64 | sequence`` (OpenZeppelin NoncesKeyed)."""
    return key << 64 | sequence


def warp_to(node: Node, timestamp: int) -> None:
    """Mines a block at exactly ``timestamp`` (views then read that block's ``block.timestamp``).

    ``node.advance_time`` is exact on eth-tester, but anvil's ``evm_increaseTime`` counts from the wall clock,
    which may tick between reading the latest timestamp and mining; anvil is pinned with
    ``evm_setNextBlockTimestamp`` instead.
    """
    assert timestamp > node.timestamp()
    if node.kind == "anvil":
        node.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
        node.mine()
    else:
        node.advance_time(timestamp - node.timestamp())
    assert node.timestamp() == timestamp


def next_block_at(node: Node, timestamp: int) -> None:
    """Makes the next mined block (e.g. the next transaction's) carry exactly ``timestamp``."""
    assert timestamp > node.timestamp()
    if node.kind == "anvil":
        node.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
    else:
        node.w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- consent cancellation (EIP-712)


def cancellation_typed_data(*, chain_id: int, contract: str, customer: str, nonce: int) -> dict[str, Any]:
    """The full EIP-712 message a customer signs to revoke the consent it signed with ``nonce``."""
    return {
        "domain": {
            "name": "LoyaltyLedger",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "types": {
            "ConsentCancellation": [
                {"name": "customer", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ]
        },
        "primaryType": "ConsentCancellation",
        "message": {"customer": customer, "nonce": nonce},
    }


def sign_cancellation(
    ledger: Ledger, signer: LocalAccount, nonce: int, *, customer: str | None = None
) -> bytes:
    """``signer``'s signature cancelling ``customer``'s (default: the signer's) consent ``nonce``."""
    data = cancellation_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        customer=customer or signer.address,
        nonce=nonce,
    )
    signed = signer.sign_typed_data(
        domain_data=data["domain"], message_types=data["types"], message_data=data["message"]
    )
    return bytes(signed.signature)


# --------------------------------------------------------------------------- sending


def replay_revert(ledger: Ledger, fn: Any, sender: str, gas: int = GAS) -> ContractRevert:
    """The decoded custom error of ``fn`` called from ``sender`` against the latest block."""
    try:
        fn.call({"from": sender, "gas": gas}, block_identifier="latest")
    except Exception as exc:
        revert = ledger.decoder.from_exception(exc)
        if revert is None:
            raise
        return revert
    raise AssertionError("the call was expected to revert but succeeded")


def send_failing(
    ledger: Ledger, fn_name: str, *args: Any, sender: str, gas: int = GAS
) -> tuple[TxReceipt, ContractRevert]:
    """Mines ``fn_name(*args)`` from ``sender`` expecting it to revert: its failed receipt and its error."""
    fn = getattr(ledger.contract.functions, fn_name)(*args)
    receipt = ledger.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": gas}))
    assert receipt["status"] == 0, f"{fn_name}{args} was expected to revert"
    return receipt, replay_revert(ledger, fn, sender, gas)


def send_signed(ledger: Ledger, account: LocalAccount, fn_name: str, *args: Any, gas: int = GAS) -> TxReceipt:
    """Sends ``fn_name(*args)`` signed by ``account`` (a key generated for the test, funded with ether);
    raises the decoded :class:`ContractRevert` if it reverts."""
    w3 = ledger.w3
    fn = getattr(ledger.contract.functions, fn_name)(*args)
    fee = w3.eth.get_block("latest")["baseFeePerGas"] * 2 + 10**9
    tx = fn.build_transaction(
        {
            "from": account.address,
            "gas": gas,
            "nonce": w3.eth.get_transaction_count(account.address),
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    raw = account.sign_transaction(tx).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    if receipt["status"] == 1:
        return receipt
    raise replay_revert(ledger, fn, account.address, gas)
