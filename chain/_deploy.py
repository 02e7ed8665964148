"""Deploying compiled artifacts."""

from __future__ import annotations

from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from ._compile import Artifact
from ._errors import PermanentError

__all__ = ["deploy_contract"]


def deploy_contract(w3: Web3, artifact: Artifact, *args: Any, sender: ChecksumAddress | str) -> Contract:
    """Deploys ``artifact`` with constructor ``args`` from unlocked ``sender``; waits for the receipt."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise PermanentError(f"deploying {artifact.contract_name} failed (transaction {tx_hash.to_0x_hex()})")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
