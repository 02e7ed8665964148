"""The compile pipeline: pinned, reproducible, committed artifacts that match their sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chain import SOLC_VERSION, CompilationError, compile_contracts, load_artifact, stale_artifacts
from chain._compile import CONTRACTS, EVM_VERSION
from conftest import ROOT

EIP170_MAX_CODE_SIZE = 24_576  # bytes of deployed code a contract may have on Ethereum mainnet and L2s


@pytest.fixture(scope="module")
def fresh() -> dict[str, object]:
    return dict(compile_contracts(ROOT))


def test_committed_artifacts_match_the_sources(fresh: dict[str, object]) -> None:
    assert sorted(fresh) == sorted(
        ["LoyaltyLedger", "ReferenceERC20", "CoalitionTimelock", "ERC1271Wallet", "GasBurningWallet"]
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
    assert len(bytes.fromhex(artifact.deployed_bytecode[2:])) > 10_000  # hex, and the real contract
    assert len(bytes.fromhex(artifact.deployed_bytecode[2:])) <= EIP170_MAX_CODE_SIZE  # deployable
    assert len(bytes.fromhex(artifact.bytecode[2:])) > len(bytes.fromhex(artifact.deployed_bytecode[2:]))


def _copy_project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    return tmp_path


def test_a_changed_source_is_reported_stale_by_contract_name(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    source = root / CONTRACTS["LoyaltyLedger"]
    original = source.read_text()
    changed = original.replace(
        "uint256 public constant MAX_AMOUNT = type(uint64).max;",
        "uint256 public constant MAX_AMOUNT = type(uint64).max - 1;",
    )
    assert changed != original
    source.write_text(changed)
    stale = stale_artifacts(compile_contracts(root))
    assert set(stale) == {"LoyaltyLedger"}
    assert "bytecode" in stale["LoyaltyLedger"] and "source_hashes" in stale["LoyaltyLedger"]


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
    assert "chain/py.typed" in names
    assert shipped["bytecode"] == load_artifact("LoyaltyLedger").bytecode
