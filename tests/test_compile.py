"""The compile pipeline: pinned, reproducible, committed artifacts that match their sources; and the ledger's
split into two code bodies at one address (LoyaltyLedger, whose fallback delegate-calls the
LoyaltyLedgerExtension its constructor created): both within the size limits, one storage layout, one merged
ABI, and an extension that refuses to run on its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import function_abi_to_4byte_selector
from web3.exceptions import ContractLogicError

from chain import (
    SOLC_VERSION,
    CompilationError,
    ContractRevert,
    compile_contracts,
    load_artifact,
    stale_artifacts,
)
from chain._compile import CONTRACTS, EVM_VERSION
from chain._errors import abi_type
from conftest import GAS, ROOT, Ledger, expect_revert, send

EIP170_MAX_CODE_SIZE = 24_576  # bytes of deployed code a contract may have on Ethereum mainnet and L2s
EIP3860_MAX_INITCODE_SIZE = (
    2 * EIP170_MAX_CODE_SIZE
)  # bytes of creation code (initcode) a deployment may send
LEDGER, EXTENSION = "LoyaltyLedger", "LoyaltyLedgerExtension"
REVERTED = (ContractLogicError, TransactionFailed)  # a reverted eth_call: anvil, eth-tester


def size(hex_code: str) -> int:
    return len(bytes.fromhex(hex_code.removeprefix("0x")))


def signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(abi_type(p) for p in item.get('inputs', []))})"


def abi_signatures(name: str, kind: str) -> set[str]:
    """The ``kind`` entries (function, event, error) of artifact ``name``'s ABI, by signature."""
    return {signature(item) for item in load_artifact(name).abi if item["type"] == kind}


@pytest.fixture(scope="module")
def fresh() -> dict[str, object]:
    return dict(compile_contracts(ROOT))


def test_committed_artifacts_match_the_sources(fresh: dict[str, object]) -> None:
    assert sorted(fresh) == sorted(
        [LEDGER, EXTENSION, "ReferenceERC20", "CoalitionTimelock", "ERC1271Wallet", "GasBurningWallet"]
    )
    assert sorted(fresh) == sorted(CONTRACTS)
    stale = stale_artifacts(fresh)  # type: ignore[arg-type]
    assert not stale, "stale artifacts (run `loyalty compile`): " + ", ".join(
        f"{name} ({', '.join(fields)})" for name, fields in sorted(stale.items())
    )


def test_artifacts_record_compiler_settings_and_source_hashes() -> None:
    artifact = load_artifact("LoyaltyLedger")
    assert artifact.compiler["version"] == SOLC_VERSION
    assert artifact.compiler["settings"]["evmVersion"] == EVM_VERSION
    # via-IR, optimised for size (runs 1): the ledger's code is close to EIP-170's limit
    assert artifact.compiler["settings"]["viaIR"] is True
    assert artifact.compiler["settings"]["optimizer"] == {"enabled": True, "runs": 1}
    assert "contracts/LoyaltyLedger.sol" in artifact.source_hashes
    assert any(path.startswith("@openzeppelin/contracts/") for path in artifact.source_hashes)
    assert size(artifact.deployed_bytecode) > 10_000  # hex, and the real contract
    assert size(artifact.bytecode) > size(artifact.deployed_bytecode)
    extension = load_artifact(EXTENSION)
    assert extension.compiler == artifact.compiler
    assert "contracts/LoyaltyLedgerExtension.sol" in artifact.source_hashes  # the ledger creates it
    assert {"contracts/LedgerBase.sol", "contracts/LoyaltyLedgerExtension.sol"} <= set(
        extension.source_hashes
    )


def test_both_halves_of_the_ledger_are_deployable() -> None:
    """EIP-170 bounds each runtime code; EIP-3860 bounds the ledger's creation code, which carries the
    extension's creation code (its constructor creates the extension)."""
    ledger, extension = load_artifact(LEDGER), load_artifact(EXTENSION)
    for artifact in (ledger, extension):
        assert 10_000 < size(artifact.deployed_bytecode) <= EIP170_MAX_CODE_SIZE, artifact.contract_name
    assert size(ledger.bytecode) > size(extension.bytecode)
    assert size(ledger.bytecode) <= EIP3860_MAX_INITCODE_SIZE


def test_the_ledgers_abi_is_the_whole_surface_at_its_address() -> None:
    """The committed LoyaltyLedger ABI is merged: every function, event and error of the extension is in it
    (clients, decoders and the indexer load only it); the extension has no function of its own outside it."""
    for kind in ("function", "event", "error"):
        extension = abi_signatures(EXTENSION, kind)
        assert extension, kind
        assert extension <= abi_signatures(LEDGER, kind), kind
    functions = abi_signatures(LEDGER, "function")
    for name in (
        "reverseIssuance",
        "refundRedemption",
        "migrateAccount",
        "recoverAccount",
        "registerPartner",
    ):
        assert any(f.startswith(f"{name}(") for f in functions), name
    assert "extension()" in functions
    # one entry per signature: the merge added none twice
    abi = [item for item in load_artifact(LEDGER).abi if item["type"] in ("function", "event", "error")]
    assert len(abi) == len({(item["type"], signature(item)) for item in abi})


def own_mutating_functions() -> list[dict[str, Any]]:
    """The state-changing functions declared in LoyaltyLedgerExtension.sol itself (not those it inherits
    from OpenZeppelin's AccessControlDefaultAdminRules)."""
    declared = set(re.findall(r"function (\w+)\(", (ROOT / CONTRACTS[EXTENSION]).read_text()))
    abi = load_artifact(EXTENSION).abi
    own = [
        item
        for item in abi
        if item["type"] == "function" and item["name"] in declared and item["stateMutability"] != "view"
    ]
    assert len(own) >= 18
    return own


def test_the_extension_refuses_to_run_outside_the_ledger(ledger: Ledger) -> None:
    """Called at its own address (not by the ledger's delegatecall), every state-changing function of the
    extension reverts with LedgerExtensionOnly() before anything else, whoever calls; through the ledger the
    same call works."""
    extension = ledger.call("extension")
    assert extension != ledger.address and ledger.w3.eth.get_code(extension)
    actors = ledger.actors
    for item in own_mutating_functions():
        data = function_abi_to_4byte_selector(item) + bytes(32 * 40)  # zero arguments, decodable
        for caller in (actors.admin, actors.partner, actors.stranger):
            with pytest.raises(REVERTED) as excinfo:
                ledger.w3.eth.call({"from": caller, "to": extension, "data": data, "gas": GAS})
            revert = ledger.decoder.from_exception(excinfo.value)
            assert revert is not None and (revert.name, revert.arguments) == ("LedgerExtensionOnly", ()), item
    # mined, by the admin: refused at the extension, done at the ledger
    direct = ledger.w3.eth.contract(address=extension, abi=load_artifact(EXTENSION).abi)
    args = (9, actors.stranger, actors.stranger, True, True, 1)
    with pytest.raises(ContractRevert) as reverted:
        send(ledger.node, ledger.decoder, direct.functions.registerPartner(*args), actors.admin)
    expect_revert(reverted, "LedgerExtensionOnly")
    assert 9 not in ledger.call("partnerIds")
    ledger.transact("registerPartner", *args, sender=actors.admin)
    assert ledger.call("partnerIds")[-1] == 9


def test_the_extensions_inherited_role_functions_give_nobody_any_power(ledger: Ledger) -> None:
    """The extension inherits OpenZeppelin's role functions, which act on its own storage, never read: there
    the ledger (its creator) is the only admin, and it never calls the extension but by delegatecall."""
    extension = ledger.w3.eth.contract(address=ledger.call("extension"), abi=load_artifact(EXTENSION).abi)
    admin_role = b"\x00" * 32
    assert extension.functions.defaultAdmin().call() == ledger.address
    assert extension.functions.hasRole(admin_role, ledger.actors.admin).call() is False
    fn = extension.functions.grantRole(ledger.call("PAUSER_ROLE"), ledger.actors.stranger)
    with pytest.raises(ContractRevert) as excinfo:
        send(ledger.node, ledger.decoder, fn, ledger.actors.admin)
    expect_revert(excinfo, "AccessControlUnauthorizedAccount", ledger.actors.admin, admin_role)


def test_a_call_the_ledger_does_not_know_reverts(ledger: Ledger) -> None:
    """An unknown selector falls through the ledger's fallback into the extension, which has no fallback:
    the call reverts (no silent success for a typo'd or foreign function)."""
    with pytest.raises(REVERTED):
        ledger.w3.eth.call({"from": ledger.actors.admin, "to": ledger.address, "data": b"\xde\xad\xbe\xef"})


def _copy_project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    return tmp_path


def test_a_changed_source_is_reported_stale_by_contract_name(tmp_path: Path) -> None:
    """A change to the storage and internals both halves share makes both stale (and nothing else)."""
    root = _copy_project(tmp_path)
    source = root / "contracts/LedgerBase.sol"
    original = source.read_text()
    changed = original.replace(
        "uint256 public constant MAX_AMOUNT = type(uint64).max;",
        "uint256 public constant MAX_AMOUNT = type(uint64).max - 1;",
    )
    assert changed != original
    source.write_text(changed)
    stale = stale_artifacts(compile_contracts(root))
    assert set(stale) == {LEDGER, EXTENSION}
    for name in (LEDGER, EXTENSION):
        assert "bytecode" in stale[name] and "source_hashes" in stale[name]


def test_halves_with_different_storage_layouts_are_refused(tmp_path: Path) -> None:
    """The extension runs in the ledger's storage: a state variable declared in one half only would make
    them read each other's slots wrong, so compile refuses to produce the artifacts."""
    root = _copy_project(tmp_path)
    source = root / CONTRACTS[EXTENSION]
    original = source.read_text()
    anchor = "    address private immutable _self = address(this);\n"
    assert anchor in original
    source.write_text(original.replace(anchor, anchor + "    uint256 private _stray;\n"))
    with pytest.raises(CompilationError) as excinfo:
        compile_contracts(root)
    (message,) = excinfo.value.messages
    assert message.startswith("LoyaltyLedger and LoyaltyLedgerExtension differ in storage layout")
    assert "_stray" in message


def test_a_compile_error_carries_solcs_formatted_messages(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    source = root / CONTRACTS["ReferenceERC20"]
    original = source.read_text()
    assert "_mint(to, value);" in original
    source.write_text(original.replace("_mint(to, value);", "_mint(to, value)"))
    with pytest.raises(CompilationError) as excinfo:
        compile_contracts(root)
    assert len(excinfo.value.messages) == 1
    message = excinfo.value.messages[0]
    assert message.startswith("ParserError: Expected ';'")
    assert "contracts/test/ReferenceERC20.sol" in message


def test_a_wrong_compiler_version_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "solc"
    fake.write_text("#!/bin/sh\necho 'solc, the solidity compiler'\necho 'Version: 0.8.20+commit.a1b79de6'\n")
    fake.chmod(0o755)
    with pytest.raises(Exception, match=r"0\.8\.20.*pinned version is 0\.8\.37"):
        compile_contracts(ROOT, fake)


def test_the_wheel_ships_the_artifacts(tmp_path: Path) -> None:
    """A pip install needs neither a compiler nor Node: the artifacts are package data."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("loyalty_ledger-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = json.loads(archive.read("chain/artifacts/LoyaltyLedger.json"))
    assert {f"chain/artifacts/{name}.json" for name in CONTRACTS} <= names
    assert "chain/artifacts/LoyaltyLedgerExtension.json" in names
    assert "chain/py.typed" in names
    assert shipped["bytecode"] == load_artifact("LoyaltyLedger").bytecode
