"""Deploying compiled artifacts.

:func:`deploy_ledger` is the real path: the creation transactions (the timelock's first, when there is
one, then the ledger's) are signed and sent by a :class:`~chain.Sender` (any :class:`~chain.Signer`, fees
and confirmations from its policies), the code each left on chain is read back and checked against its
artifact, and the result is a :class:`~chain.DeploymentManifest`. :func:`deploy_contract` is the test
helper: an unlocked node account sends through web3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from ._compile import Artifact, load_artifact
from ._errors import PermanentError, abi_type
from ._ledger import ZERO_ADDRESS
from ._manifest import (
    LEDGER,
    LEDGER_EXTENSION,
    TIMELOCK,
    ContractDeployment,
    DeployedAt,
    DeploymentManifest,
    LedgerParameters,
    TimelockDeployment,
    code_matches_artifact,
    extension_address,
    sha256_hex,
)
from ._sender import Call, Sender
from ._timelock import TimelockConfig
from ._types import Address, Receipt

__all__ = [
    "DEFAULT_ADMIN_DELAY",
    "DEFAULT_REVERSAL_WINDOW",
    "DeploymentError",
    "creation_data",
    "deploy_contract",
    "deploy_ledger",
]


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


#: The admin handover delay when none is given: three days to notice and refuse a handover.
DEFAULT_ADMIN_DELAY: Final = 3 * 24 * 3600
#: Seconds after an issuance during which its partner may reverse it (a return window of 90 days).
DEFAULT_REVERSAL_WINDOW: Final = 90 * 24 * 3600
_UINT48: Final = 2**48


def _address(value: str, what: str) -> Address:
    if not isinstance(value, str) or not is_address(value):
        raise DeploymentError(f"{what} must be an address, not {value!r}")
    return to_checksum_address(value)


def deploy_ledger(
    sender: Sender,
    *,
    name: str,
    symbol: str,
    admin: str | None = None,
    treasury: str | None = None,
    pauser: str | None = None,
    admin_delay: int = DEFAULT_ADMIN_DELAY,
    epoch_length: int,
    validity: int,
    settlement_value: int,
    reversal_window: int = DEFAULT_REVERSAL_WINDOW,
    timelock: TimelockConfig | None = None,
    timeout: float | None = None,
    artifact: Artifact | None = None,
    timelock_artifact: Artifact | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DeploymentManifest:
    """Deploys a LoyaltyLedger from ``sender``'s account and returns its manifest (not yet written).

    Roles: without ``timelock``, ``admin`` is required and holds every role not given to another key
    (``treasury`` and ``pauser`` default to it). With a :class:`~chain.TimelockConfig`, a CoalitionTimelock
    is deployed first, with no admin of its own (nobody can bypass its delay), and becomes the ledger's
    admin *and* treasury (``admin`` and ``treasury`` must then be left out); the pauser stays a direct key
    (pausing only removes power): ``pauser``, or by default the deploying key. The zero address leaves a
    role unheld. ``admin_delay`` (seconds, ``uint48``) is the two-step admin handover's delay.

    Waits for each receipt under the sender's :class:`~chain.SendPolicy` (its ``confirmations`` and, unless
    ``timeout`` is given, its timeout). A constructor that would revert raises its decoded
    :class:`~chain.ContractRevert` before anything is sent. Each runtime code is read back at its deployment
    block: it must be the artifact's with only the immutables filled in (:class:`DeploymentError` if not),
    and its SHA-256 goes into the manifest for :func:`~chain.verify_manifest`.
    """
    artifact = artifact or load_artifact(LEDGER)
    if timelock is not None:
        if admin is not None or treasury is not None:
            raise DeploymentError(
                "with a timelock, the timelock is the ledger's admin and treasury: "
                "leave admin and treasury out"
            )
        pauser_address = _address(pauser, "the pauser") if pauser is not None else sender.address
    else:
        if admin is None:
            raise DeploymentError("the ledger admin must be an address, not None (or deploy with a timelock)")
        admin_address = _address(admin, "the ledger admin")
        treasury_address = _address(treasury, "the treasury") if treasury is not None else admin_address
        pauser_address = _address(pauser, "the pauser") if pauser is not None else admin_address
    if isinstance(admin_delay, bool) or not isinstance(admin_delay, int) or not 0 <= admin_delay < _UINT48:
        raise DeploymentError(f"the admin delay must be seconds in [0, 2**48), not {admin_delay!r}")
    ledger_args: list[Any] = [name, symbol, None, None, pauser_address, admin_delay]
    ledger_args += [epoch_length, validity, settlement_value, reversal_window]
    # Bad arguments, and a constructor that would revert (its ContractRevert), cost no timelock deployment.
    trial = creation_data(artifact, [name, symbol, sender.address, sender.address, *ledger_args[4:]])
    if timelock is not None:
        sender.rpc.estimate_gas({"from": sender.address, "data": trial})

    timelock_deployment: TimelockDeployment | None = None
    contracts: dict[str, ContractDeployment] = {}
    if timelock is not None:
        timelock_artifact = timelock_artifact or load_artifact(TIMELOCK)
        args = [timelock.min_delay, list(timelock.proposers), list(timelock.executors), ZERO_ADDRESS]
        receipt, contracts[TIMELOCK] = _deploy(sender, timelock_artifact, args, timeout)
        timelock_deployment = TimelockDeployment(
            address=contracts[TIMELOCK].address,
            min_delay=timelock.min_delay,
            proposers=timelock.proposers,
            executors=timelock.executors,
            deployed_at=_deployed_at(receipt),
        )
        admin_address = treasury_address = timelock_deployment.address
    ledger_args[2:4] = [admin_address, treasury_address]
    receipt, contracts[LEDGER] = _deploy(sender, artifact, ledger_args, timeout)
    contracts[LEDGER_EXTENSION] = _created_extension(sender, contracts[LEDGER].address, receipt)
    return DeploymentManifest(
        chain_id=sender.rpc.chain_id(),
        deployer=sender.address,
        deployed_at=_deployed_at(receipt),
        contracts=contracts,
        parameters=LedgerParameters(
            name=name,
            symbol=symbol,
            admin=admin_address,
            treasury=treasury_address,
            pauser=pauser_address,
            admin_delay=admin_delay,
            epoch_length=epoch_length,
            validity=validity,
            settlement_value=settlement_value,
            reversal_window=reversal_window,
        ),
        timelock=timelock_deployment,
        created_at=now(),
    )


def _deploy(
    sender: Sender, artifact: Artifact, args: Sequence[Any], timeout: float | None
) -> tuple[Receipt, ContractDeployment]:
    """Creates ``artifact`` with ``args`` and checks the code it left on chain."""
    data = creation_data(artifact, args)
    receipt = sender.transact(Call(to=None, data=data), timeout)
    address = _created_address(receipt, artifact)
    code = sender.rpc.code(address, receipt.block_number)
    if not code_matches_artifact(code, artifact):
        raise DeploymentError(
            f"the code at {address} after deploying {artifact.contract_name} is not the artifact's "
            f"(transaction {HexBytes(receipt.transaction_hash).to_0x_hex()})"
        )
    return receipt, ContractDeployment(
        address=address,
        artifact_name=artifact.contract_name,
        bytecode_sha256=sha256_hex(artifact.bytecode),
        deployed_bytecode_sha256=sha256_hex(code),
        source_hashes=dict(artifact.source_hashes),
    )


def _created_extension(sender: Sender, ledger: ChecksumAddress, receipt: Receipt) -> ContractDeployment:
    """The extension the ledger's constructor created (its first CREATE), checked like the ledger."""
    extension = load_artifact(LEDGER_EXTENSION)
    address = extension_address(ledger)
    code = sender.rpc.code(address, receipt.block_number)
    if not code_matches_artifact(code, extension):
        raise DeploymentError(
            f"the code at {address}, the ledger's extension, is not the {LEDGER_EXTENSION} artifact's"
        )
    return ContractDeployment(
        address=address,
        artifact_name=LEDGER_EXTENSION,
        bytecode_sha256=sha256_hex(extension.bytecode),
        deployed_bytecode_sha256=sha256_hex(code),
        source_hashes=dict(extension.source_hashes),
    )


def _deployed_at(receipt: Receipt) -> DeployedAt:
    return DeployedAt(
        block_number=receipt.block_number,
        block_hash=HexBytes(receipt.block_hash).to_0x_hex(),
        transaction_hash=HexBytes(receipt.transaction_hash).to_0x_hex(),
    )


def _created_address(receipt: Receipt, artifact: Artifact) -> ChecksumAddress:
    if receipt.contract_address is None:
        raise DeploymentError(
            f"deploying {artifact.contract_name} created no contract "
            f"(transaction {HexBytes(receipt.transaction_hash).to_0x_hex()})"
        )
    return receipt.contract_address
