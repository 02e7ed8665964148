"""Deploying compiled artifacts.

:func:`deploy_ledger` is the real path: the creation transaction is signed and sent by a
:class:`~chain.Sender` (any :class:`~chain.Signer`, fees and confirmations from its policies), the code it
left on chain is read back and checked against the artifact, and the result is a
:class:`~chain.DeploymentManifest`. :func:`deploy_contract` is the test helper: an unlocked node account
sends through web3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from ._compile import Artifact, load_artifact
from ._errors import PermanentError, abi_type
from ._manifest import (
    LEDGER,
    ContractDeployment,
    DeployedAt,
    DeploymentManifest,
    LedgerParameters,
    code_matches_artifact,
    sha256_hex,
)
from ._sender import Call, Sender
from ._types import Receipt

__all__ = ["DeploymentError", "creation_data", "deploy_contract", "deploy_ledger"]


class DeploymentError(PermanentError):
    """A deployment cannot be made as asked (bad constructor arguments) or left code not from the artifact."""


def deploy_contract(w3: Web3, artifact: Artifact, *args: Any, sender: ChecksumAddress | str) -> Contract:
    """Deploys ``artifact`` with constructor ``args`` from unlocked ``sender``; waits for the receipt."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise PermanentError(f"deploying {artifact.contract_name} failed (transaction {tx_hash.to_0x_hex()})")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def creation_data(artifact: Artifact, args: Sequence[Any]) -> bytes:
    """The creation transaction's data: the artifact's bytecode followed by the ABI-encoded ``args``."""
    constructor = next((item for item in artifact.abi if item.get("type") == "constructor"), None)
    inputs = constructor.get("inputs", []) if constructor else []
    if len(inputs) != len(args):
        raise DeploymentError(
            f"{artifact.contract_name}'s constructor takes {len(inputs)} arguments, got {len(args)}"
        )
    types = [abi_type(p) for p in inputs]
    try:
        encoded = abi_encode(types, list(args))
    except (EncodingError, TypeError, ValueError) as exc:
        raise DeploymentError(f"bad constructor arguments for {artifact.contract_name}: {exc}") from None
    return bytes(HexBytes(artifact.bytecode)) + encoded


def deploy_ledger(
    sender: Sender,
    *,
    name: str,
    symbol: str,
    admin: str,
    epoch_length: int,
    validity: int,
    settlement_value: int,
    timeout: float | None = None,
    artifact: Artifact | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DeploymentManifest:
    """Deploys a LoyaltyLedger from ``sender``'s account and returns its manifest (not yet written).

    Waits for the receipt under the sender's :class:`~chain.SendPolicy` (its ``confirmations`` and, unless
    ``timeout`` is given, its timeout). A constructor that would revert raises its decoded
    :class:`~chain.ContractRevert` before anything is sent. The runtime code is read back at the deployment
    block: it must be the artifact's with only the immutables filled in (:class:`DeploymentError` if not),
    and its SHA-256 goes into the manifest for :func:`~chain.verify_manifest`.
    """
    artifact = artifact or load_artifact(LEDGER)
    if not is_address(admin):
        raise DeploymentError(f"the ledger admin must be an address, not {admin!r}")
    admin = to_checksum_address(admin)
    data = creation_data(artifact, [name, symbol, admin, epoch_length, validity, settlement_value])
    receipt = sender.transact(Call(to=None, data=data), timeout)
    address = _created_address(receipt, artifact)
    code = sender.rpc.code(address, receipt.block_number)
    if not code_matches_artifact(code, artifact):
        raise DeploymentError(
            f"the code at {address} after deploying {artifact.contract_name} is not the artifact's "
            f"(transaction {HexBytes(receipt.transaction_hash).to_0x_hex()})"
        )
    return DeploymentManifest(
        chain_id=sender.rpc.chain_id(),
        deployer=sender.address,
        deployed_at=DeployedAt(
            block_number=receipt.block_number,
            block_hash=HexBytes(receipt.block_hash).to_0x_hex(),
            transaction_hash=HexBytes(receipt.transaction_hash).to_0x_hex(),
        ),
        contracts={
            LEDGER: ContractDeployment(
                address=address,
                artifact_name=artifact.contract_name,
                bytecode_sha256=sha256_hex(artifact.bytecode),
                deployed_bytecode_sha256=sha256_hex(code),
                source_hashes=dict(artifact.source_hashes),
            )
        },
        parameters=LedgerParameters(
            name=name,
            symbol=symbol,
            admin=admin,
            epoch_length=epoch_length,
            validity=validity,
            settlement_value=settlement_value,
        ),
        created_at=now(),
    )


def _created_address(receipt: Receipt, artifact: Artifact) -> ChecksumAddress:
    if receipt.contract_address is None:
        raise DeploymentError(
            f"deploying {artifact.contract_name} created no contract "
            f"(transaction {HexBytes(receipt.transaction_hash).to_0x_hex()})"
        )
    return receipt.contract_address
