"""The deployment manifest (version 3): written by deploy_ledger, read back unchanged, and refused by any node
that does not hold what it describes (other chain, other block, other code, no code, other artifact, an
extension entry missing or not the ledger's).

The ledger runs as two code bodies at one address: LoyaltyLedger, whose constructor creates its
LoyaltyLedgerExtension (its first CREATE, nonce 1). The manifest lists both, and records the constructor's
``reversalWindow``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hexbytes import HexBytes

from chain import ContractRevert, load_artifact
from chain._deploy import (
    DEFAULT_ADMIN_DELAY,
    DEFAULT_REVERSAL_WINDOW,
    DeploymentError,
    deploy_contract,
    deploy_ledger,
)
from chain._devnode import fund
from chain._ledger import ZERO_ADDRESS
from chain._ledger import Ledger as ChainLedger
from chain._manifest import (
    MANIFEST_VERSION,
    DeploymentManifest,
    ManifestError,
    ManifestMismatch,
    ManifestNotFound,
    code_matches_artifact,
    extension_address,
    load_manifest,
    sha256_hex,
    verify_manifest,
)
from chain._rpc import Rpc
from chain._sender import Sender
from chain._signer import dev_signers
from chain._types import BlockNumber
from conftest import EPOCH, SETTLEMENT_VALUE, VALIDITY, AnvilNode, EthTesterNode, Node, revert_decoder

PARAMETERS: dict[str, Any] = {
    "name": "Coalition Points",
    "symbol": "PTS",
    "epoch_length": EPOCH,
    "validity": VALIDITY,
    "settlement_value": SETTLEMENT_VALUE,
}


def dev_sender(node: Node) -> Sender:
    """A sender for anvil's dev account 0 (funded on anvil; funded here on eth-tester)."""
    signer = dev_signers(node.w3.eth.chain_id)[0]
    if node.w3.eth.get_balance(signer.address) == 0:
        fund(node.w3, signer.address, 10**21)
    decoder = revert_decoder()
    return Sender(Rpc(node.w3, decoder=decoder), signer, decoder=decoder)


@dataclasses.dataclass
class Deployed:
    node: Node
    sender: Sender
    manifest: DeploymentManifest


@pytest.fixture(scope="module", params=["anvil", "eth-tester"])
def deployed(request: pytest.FixtureRequest) -> Iterator[Deployed]:
    """A ledger deployed through deploy_ledger on each backend (the chain is restored afterwards)."""
    node: Node = request.getfixturevalue("anvil_node" if request.param == "anvil" else "eth_tester_node")
    before = node.snapshot()
    sender = dev_sender(node)
    manifest = deploy_ledger(sender, admin=sender.address, **PARAMETERS)
    yield Deployed(node, sender, manifest)
    node.revert(before)


LEDGER, EXTENSION = "LoyaltyLedger", "LoyaltyLedgerExtension"


def with_ledger(manifest: DeploymentManifest, **changes: Any) -> DeploymentManifest:
    """``manifest`` with fields of its LoyaltyLedger entry changed (its extension entry moved along to the
    address a ledger there would have created, so that the ledger's own entry is what is checked)."""
    ledger = dataclasses.replace(manifest.ledger, **changes)
    extension = dataclasses.replace(manifest.contracts[EXTENSION], address=extension_address(ledger.address))
    return dataclasses.replace(manifest, contracts={LEDGER: ledger, EXTENSION: extension})


def with_extension(manifest: DeploymentManifest, **changes: Any) -> DeploymentManifest:
    """``manifest`` with fields of its LoyaltyLedgerExtension entry changed."""
    extension = dataclasses.replace(manifest.contracts[EXTENSION], **changes)
    return dataclasses.replace(manifest, contracts={**manifest.contracts, EXTENSION: extension})


# --------------------------------------------------------------------------- what deploy_ledger records


def test_deploy_ledger_records_the_deployment(deployed: Deployed) -> None:
    manifest, w3 = deployed.manifest, deployed.node.w3
    ledger = manifest.ledger
    artifact = load_artifact("LoyaltyLedger")
    receipt = w3.eth.get_transaction_receipt(HexBytes(manifest.deployed_at.transaction_hash))

    assert manifest.version == MANIFEST_VERSION
    assert manifest.chain_id == w3.eth.chain_id
    assert manifest.deployer == deployed.sender.address
    assert receipt["contractAddress"] == ledger.address
    assert receipt["blockNumber"] == manifest.deployed_at.block_number
    assert receipt["blockHash"].to_0x_hex() == manifest.deployed_at.block_hash
    assert ledger.artifact_name == "LoyaltyLedger"
    assert ledger.bytecode_sha256 == sha256_hex(artifact.bytecode)
    assert ledger.deployed_bytecode_sha256 == sha256_hex(bytes(w3.eth.get_code(ledger.address)))
    assert dict(ledger.source_hashes) == artifact.source_hashes
    assert manifest.created_at.tzinfo is not None
    params = manifest.parameters
    assert (params.name, params.symbol, params.admin) == ("Coalition Points", "PTS", deployed.sender.address)
    assert (params.epoch_length, params.validity, params.settlement_value) == (
        EPOCH,
        VALIDITY,
        SETTLEMENT_VALUE,
    )
    # Without a timelock, the admin key also holds the roles not given to another key.
    assert (params.treasury, params.pauser, params.admin_delay) == (
        deployed.sender.address,
        deployed.sender.address,
        DEFAULT_ADMIN_DELAY,
    )
    assert params.reversal_window == DEFAULT_REVERSAL_WINDOW == 90 * 24 * 3600
    assert manifest.timelock is None and set(manifest.contracts) == {LEDGER, EXTENSION}

    # the extension: created by the ledger's constructor in the same transaction, at its CREATE address
    contract = w3.eth.contract(address=ledger.address, abi=artifact.abi)
    extension, extension_artifact = manifest.contracts[EXTENSION], load_artifact(EXTENSION)
    assert extension.address == contract.functions.extension().call() == extension_address(ledger.address)
    assert extension.artifact_name == EXTENSION
    assert extension.bytecode_sha256 == sha256_hex(extension_artifact.bytecode)
    assert extension.deployed_bytecode_sha256 == sha256_hex(bytes(w3.eth.get_code(extension.address)))
    assert dict(extension.source_hashes) == extension_artifact.source_hashes
    assert "contracts/LoyaltyLedgerExtension.sol" in extension.source_hashes

    assert contract.functions.reversalWindow().call() == DEFAULT_REVERSAL_WINDOW
    assert contract.functions.epochLength().call() == EPOCH
    assert contract.functions.validityDuration().call() == VALIDITY
    assert contract.functions.name().call() == "Coalition Points"
    assert contract.functions.defaultAdmin().call() == deployed.sender.address
    assert contract.functions.defaultAdminDelay().call() == DEFAULT_ADMIN_DELAY
    for role in ("TREASURY_ROLE", "PAUSER_ROLE"):
        assert contract.functions.hasRole(getattr(contract.functions, role)().call(), params.admin).call()


def test_roles_can_be_other_keys_or_left_unheld(deployed: Deployed) -> None:
    treasury = Account.create().address
    manifest = deploy_ledger(
        deployed.sender,
        admin=deployed.sender.address,
        treasury=treasury,
        pauser=ZERO_ADDRESS,
        admin_delay=60,
        **PARAMETERS,
    )
    params = manifest.parameters
    assert (params.treasury, params.pauser, params.admin_delay) == (treasury, ZERO_ADDRESS, 60)
    reader = ChainLedger(Rpc(deployed.node.w3), manifest.ledger.address)
    assert reader.has_role(reader.treasury_role(), treasury)
    assert not reader.has_role(reader.treasury_role(), deployed.sender.address)
    assert not reader.has_role(reader.pauser_role(), deployed.sender.address)
    assert reader.default_admin_delay() == 60
    # The constructor's entries: the grants (admin, then treasury; no pauser here), then the initial
    # settlement value and admin delay.
    assert reader.ledger_sequence() == 4


def test_the_reversal_window_is_a_recorded_constructor_argument(deployed: Deployed) -> None:
    manifest = deploy_ledger(
        deployed.sender, admin=deployed.sender.address, reversal_window=3600, **PARAMETERS
    )
    assert manifest.parameters.reversal_window == 3600
    assert manifest.to_json()["parameters"]["reversalWindow"] == 3600
    artifact = load_artifact(LEDGER)
    contract = deployed.node.w3.eth.contract(address=manifest.ledger.address, abi=artifact.abi)
    assert contract.functions.reversalWindow().call() == 3600
    verify_manifest(manifest, deployed.node.w3)


def test_immutables_make_the_chain_code_differ_from_the_artifact_but_it_still_matches(
    deployed: Deployed,
) -> None:
    artifact = load_artifact("LoyaltyLedger")
    code = bytes(deployed.node.w3.eth.get_code(deployed.manifest.ledger.address))
    assert code != bytes(HexBytes(artifact.deployed_bytecode))
    assert code_matches_artifact(code, artifact)
    assert code_matches_artifact(bytes(HexBytes(artifact.deployed_bytecode)), artifact)
    # One byte changed outside the immutables' placeholders (the first byte is an opcode, not a placeholder).
    assert not code_matches_artifact(bytes([code[0] ^ 1]) + code[1:], artifact)
    assert not code_matches_artifact(code[:-1], artifact)
    assert not code_matches_artifact(code, load_artifact("ReferenceERC20"))
    # the extension's immutables (its own address, the ledger's clock parameters) likewise
    extension = load_artifact(EXTENSION)
    code = bytes(deployed.node.w3.eth.get_code(deployed.manifest.contracts[EXTENSION].address))
    assert code != bytes(HexBytes(extension.deployed_bytecode))
    assert code_matches_artifact(code, extension)
    assert not code_matches_artifact(code, artifact)


def test_manifest_round_trips_through_its_file(deployed: Deployed, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deployment.json"
    deployed.manifest.write(path)

    assert load_manifest(path) == deployed.manifest
    data = json.loads(path.read_text())
    assert data["version"] == MANIFEST_VERSION == 3
    assert data["chainId"] == deployed.manifest.chain_id
    assert data["contracts"]["LoyaltyLedger"]["address"] == deployed.manifest.ledger.address
    assert data["contracts"]["LoyaltyLedgerExtension"] == {
        "address": deployed.manifest.contracts[EXTENSION].address,
        "artifactName": EXTENSION,
        "bytecodeSha256": deployed.manifest.contracts[EXTENSION].bytecode_sha256,
        "deployedBytecodeSha256": deployed.manifest.contracts[EXTENSION].deployed_bytecode_sha256,
        "sourceHashes": dict(sorted(deployed.manifest.contracts[EXTENSION].source_hashes.items())),
    }
    assert data["parameters"]["reversalWindow"] == DEFAULT_REVERSAL_WINDOW
    assert [p.name for p in path.parent.iterdir()] == ["deployment.json"]  # no temporary file left behind


def test_write_replaces_an_existing_manifest(deployed: Deployed, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text("old")
    deployed.manifest.write(path)
    assert load_manifest(path) == deployed.manifest


def test_verify_accepts_the_manifest_of_the_deployment(deployed: Deployed) -> None:
    verify_manifest(deployed.manifest, deployed.node.w3)
    verify_manifest(deployed.manifest, Rpc(deployed.node.w3))


# --------------------------------------------------------------------------- mismatches


def test_other_chain_id_is_refused_naming_the_chain_id(deployed: Deployed) -> None:
    actual = deployed.manifest.chain_id
    manifest = dataclasses.replace(deployed.manifest, chain_id=1)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    assert (excinfo.value.field, excinfo.value.expected, excinfo.value.actual) == ("chain id", 1, actual)
    assert str(excinfo.value) == f"chain id: manifest 1, node {actual}"


def test_other_bytecode_is_refused_naming_the_contract_and_address(deployed: Deployed) -> None:
    # A second ledger: the same artifact, other immutables (genesis time, epoch length), so other code.
    other = deploy_ledger(
        deployed.sender, admin=deployed.sender.address, **{**PARAMETERS, "epoch_length": 3600}
    )
    verify_manifest(other, deployed.node.w3)
    address = other.ledger.address
    manifest = with_ledger(deployed.manifest, address=address)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    error = excinfo.value
    assert error.field == f"bytecode of LoyaltyLedger at {address}"
    assert error.expected == f"sha256 {deployed.manifest.ledger.deployed_bytecode_sha256}"
    assert error.actual == f"sha256 {other.ledger.deployed_bytecode_sha256}"
    assert str(error).startswith(f"bytecode of LoyaltyLedger at {address}: manifest sha256 ")


def test_another_contracts_code_is_refused_even_when_its_hash_was_recorded(deployed: Deployed) -> None:
    node = deployed.node
    erc20 = deploy_contract(
        node.w3, load_artifact("ReferenceERC20"), node.accounts[0], sender=node.accounts[0]
    )
    code = bytes(node.w3.eth.get_code(erc20.address))
    # A forged manifest: the code hash matches what is there, but that code is not the ledger artifact's.
    manifest = with_ledger(
        deployed.manifest, address=erc20.address, deployed_bytecode_sha256=sha256_hex(code)
    )

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, node.w3)

    assert excinfo.value.field == f"bytecode of LoyaltyLedger at {erc20.address}"
    assert excinfo.value.actual == "other code (not built from it)"


def test_an_address_without_code_is_refused(deployed: Deployed) -> None:
    empty = Account.create().address
    manifest = with_ledger(deployed.manifest, address=empty)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    assert excinfo.value.field == f"bytecode of LoyaltyLedger at {empty}"
    assert excinfo.value.actual == "no code"
    assert str(excinfo.value).endswith("node no code")


def test_a_manifest_without_the_extension_entry_is_refused(deployed: Deployed) -> None:
    contracts = {LEDGER: deployed.manifest.ledger}
    manifest = dataclasses.replace(deployed.manifest, contracts=contracts)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    error, expected = excinfo.value, extension_address(deployed.manifest.ledger.address)
    assert (error.field, error.expected, error.actual, error.source) == (
        "LoyaltyLedgerExtension contract entry",
        expected,
        "none",
        "manifest's contracts",
    )
    assert (
        str(error) == f"LoyaltyLedgerExtension contract entry: manifest {expected}, manifest's contracts none"
    )


def test_an_extension_entry_that_is_not_the_ledgers_extension_is_refused(deployed: Deployed) -> None:
    """Another ledger's extension (the same artifact and code hash, checked fine on its own) is not this
    ledger's: the entry must be at the address this ledger's constructor created."""
    other = deploy_ledger(deployed.sender, admin=deployed.sender.address, **PARAMETERS)
    verify_manifest(other, deployed.node.w3)
    elsewhere = other.contracts[EXTENSION]
    manifest = dataclasses.replace(
        deployed.manifest, contracts={**deployed.manifest.contracts, EXTENSION: elsewhere}
    )

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    error = excinfo.value
    assert (error.field, error.expected, error.actual) == (
        "LoyaltyLedgerExtension contract entry",
        deployed.manifest.contracts[EXTENSION].address,
        elsewhere.address,
    )


def test_the_extensions_code_and_artifact_are_checked_like_the_ledgers(deployed: Deployed) -> None:
    extension = deployed.manifest.contracts[EXTENSION]
    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(
            with_extension(deployed.manifest, deployed_bytecode_sha256="00" * 32), deployed.node.w3
        )
    assert excinfo.value.field == f"bytecode of LoyaltyLedgerExtension at {extension.address}"
    assert excinfo.value.actual == f"sha256 {extension.deployed_bytecode_sha256}"

    forged = with_extension(deployed.manifest, bytecode_sha256="00" * 32)
    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(forged, deployed.node.w3)
    assert excinfo.value.field == "artifact LoyaltyLedgerExtension (creation code sha256)"
    verify_manifest(forged, deployed.node.w3, check_artifacts=False)


def test_other_deployment_block_is_refused(deployed: Deployed) -> None:
    at = deployed.manifest.deployed_at
    forged = dataclasses.replace(at, block_hash="0x" + "ab" * 32)
    manifest = dataclasses.replace(deployed.manifest, deployed_at=forged)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    assert excinfo.value.field == f"hash of deployment block {at.block_number}"
    assert excinfo.value.actual == at.block_hash


def test_a_deployment_block_the_node_does_not_have_is_refused(deployed: Deployed) -> None:
    at = dataclasses.replace(deployed.manifest.deployed_at, block_number=BlockNumber(10**9))
    manifest = dataclasses.replace(deployed.manifest, deployed_at=at)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    assert excinfo.value.actual == "no such block"


def test_a_manifest_of_another_artifact_is_refused_unless_artifacts_are_not_checked(
    deployed: Deployed,
) -> None:
    manifest = with_ledger(deployed.manifest, bytecode_sha256="00" * 32)

    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(manifest, deployed.node.w3)

    assert excinfo.value.field == "artifact LoyaltyLedger (creation code sha256)"
    assert excinfo.value.source == "installed package"
    assert str(excinfo.value).startswith(
        f"artifact LoyaltyLedger (creation code sha256): manifest {'00' * 32}, "
    )
    verify_manifest(manifest, deployed.node.w3, check_artifacts=False)


# --------------------------------------------------------------------------- deploy_ledger refusals


def test_a_constructor_that_would_revert_raises_its_decoded_error(deployed: Deployed) -> None:
    with pytest.raises(ContractRevert) as excinfo:
        deploy_ledger(deployed.sender, admin=deployed.sender.address, **{**PARAMETERS, "validity": 0})
    assert (excinfo.value.name, excinfo.value.arguments) == ("LedgerInvalidConfiguration", (EPOCH, 0))
    with pytest.raises(ContractRevert) as excinfo:
        deploy_ledger(
            deployed.sender, admin=deployed.sender.address, **{**PARAMETERS, "settlement_value": 2**64}
        )
    assert (excinfo.value.name, excinfo.value.arguments) == (
        "LedgerInvalidSettlementValue",
        (2**64, 2**64 - 1),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"validity": -1}, "bad constructor arguments"),
        ({"admin": "not an address"}, "the ledger admin must be an address"),
        ({"admin": None}, "the ledger admin must be an address"),
        ({"treasury": "0x12"}, "the treasury must be an address"),
        ({"pauser": 7}, "the pauser must be an address"),
        ({"admin_delay": 2**48}, "the admin delay must be seconds"),
    ],
)
def test_bad_parameters_are_refused_before_sending(
    deployed: Deployed, change: dict[str, Any], message: str
) -> None:
    nonce = deployed.node.w3.eth.get_transaction_count(deployed.sender.address)
    with pytest.raises(DeploymentError, match=message):
        deploy_ledger(deployed.sender, **{"admin": deployed.sender.address, **PARAMETERS, **change})
    assert deployed.node.w3.eth.get_transaction_count(deployed.sender.address) == nonce


# --------------------------------------------------------------------------- reading manifests


def test_a_missing_manifest_is_manifest_not_found(tmp_path: Path) -> None:
    with pytest.raises(ManifestNotFound) as excinfo:
        load_manifest(tmp_path / "absent.json")
    assert excinfo.value.path == tmp_path / "absent.json"
    assert "loyalty deploy" in str(excinfo.value)


@pytest.mark.parametrize("version", [2, MANIFEST_VERSION + 1])
def test_a_manifest_of_another_version_is_refused(deployed: Deployed, tmp_path: Path, version: int) -> None:
    """Version 2 (a ledger without its extension and reversal window) included."""
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps({**deployed.manifest.to_json(), "version": version}))
    with pytest.raises(ManifestError, match=f"version {version} is not supported \\(expected 3\\)"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("chainId"), r"manifest\.chainId is missing"),
        (
            lambda d: d["deployedAt"].update(blockNumber="7"),
            r"manifest\.deployedAt\.blockNumber must be an integer",
        ),
        (
            lambda d: d["contracts"]["LoyaltyLedger"].update(address="0x12"),
            r"manifest\.contracts\.LoyaltyLedger\.address is not an address",
        ),
        (lambda d: d.update(createdAt="yesterday"), r"manifest\.createdAt is not an ISO 8601 time"),
        (lambda d: d["parameters"].pop("pauser"), r"manifest\.parameters\.pauser is missing"),
        (
            lambda d: d["parameters"].pop("reversalWindow"),
            r"manifest\.parameters\.reversalWindow is missing",
        ),
        (
            lambda d: d["contracts"]["LoyaltyLedgerExtension"].pop("deployedBytecodeSha256"),
            r"manifest\.contracts\.LoyaltyLedgerExtension\.deployedBytecodeSha256 is missing",
        ),
        (
            lambda d: d.update(timelock={"address": "0x12"}),
            r"manifest\.timelock\.address is not an address",
        ),
    ],
)
def test_a_malformed_manifest_names_the_bad_field(
    deployed: Deployed, tmp_path: Path, mutate: Any, message: str
) -> None:
    data = deployed.manifest.to_json()
    mutate(data)
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_a_file_that_is_not_json_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="is not JSON"):
        load_manifest(path)


def test_a_manifest_from_one_backend_is_refused_by_the_other(
    anvil_node: AnvilNode, eth_tester_node: EthTesterNode, tmp_path: Path
) -> None:
    before = anvil_node.snapshot()
    try:
        sender = dev_sender(anvil_node)
        manifest = deploy_ledger(sender, admin=sender.address, **PARAMETERS)
    finally:
        anvil_node.revert(before)
    with pytest.raises(
        ManifestMismatch, match=f"^chain id: manifest 31337, node {eth_tester_node.w3.eth.chain_id}$"
    ):
        verify_manifest(manifest, eth_tester_node.w3)


def test_the_ledger_client_loads_only_a_manifest_the_node_holds(deployed: Deployed) -> None:
    rpc = Rpc(deployed.node.w3)
    ledger = ChainLedger.from_manifest(rpc, deployed.manifest)
    assert ledger.address == deployed.manifest.ledger.address
    assert ledger.epoch_length() == deployed.manifest.parameters.epoch_length

    with pytest.raises(ManifestMismatch) as excinfo:
        ChainLedger.from_manifest(rpc, dataclasses.replace(deployed.manifest, chain_id=1))
    assert "chain id" in str(excinfo.value)
