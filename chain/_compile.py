"""Reproducible compilation of ``contracts/`` into artifacts shipped as package data of ``chain``.

The compiler is solc in standard-JSON mode (py-solc-x checks its version): the npm package ``solc``
(solcjs, from ``node_modules``) by default, or a native ``solc`` of the same version. The version,
optimizer and EVM version are pinned here, so a compile is reproducible and a committed artifact can be
checked against its sources (:func:`stale_artifacts`). Installed copies of the package read artifacts
with :func:`load_artifact` and need neither a compiler nor Node.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from ._errors import ArtifactError, CompilationError, abi_type

__all__ = [
    "SOLC_VERSION",
    "Artifact",
    "compile_contracts",
    "default_solc_binary",
    "load_artifact",
    "stale_artifacts",
    "write_artifacts",
]

SOLC_VERSION: Final = "0.8.37"
EVM_VERSION: Final = "cancun"  # runs on py-evm (eth-tester), anvil and the L2s; solc 0.8.37 defaults to osaka
OPTIMIZER_RUNS: Final = 1

#: The ledger runs as two code bodies at one address (one would exceed EIP-170's size limit): the ledger's
#: fallback delegate-calls its extension in the ledger's storage. The ledger's artifact ABI is therefore the
#: whole surface at the ledger's address (its own ABI plus the extension's functions, events and errors), and
#: the two contracts must have the same storage layout (compile refuses otherwise).
LEDGER_EXTENSIONS: Final = {"LoyaltyLedger": "LoyaltyLedgerExtension"}

#: The contracts whose artifacts are committed, by the source file that defines them.
CONTRACTS: Final = {
    "LoyaltyLedger": "contracts/LoyaltyLedger.sol",
    "LoyaltyLedgerExtension": "contracts/LoyaltyLedgerExtension.sol",
    "ReferenceERC20": "contracts/test/ReferenceERC20.sol",
    "CoalitionTimelock": "contracts/CoalitionTimelock.sol",
    "ERC1271Wallet": "contracts/test/ERC1271Wallet.sol",
    "GasBurningWallet": "contracts/test/GasBurningWallet.sol",
}

_ARTIFACT_PACKAGE: Final = "chain.artifacts"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: everything needed to deploy it and to check it against its sources."""

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, Any]
    source_hashes: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "contractName": self.contract_name,
            "sourceName": self.source_name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
            "compiler": self.compiler,
            "sourceHashes": self.source_hashes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            contract_name=data["contractName"],
            source_name=data["sourceName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler=data["compiler"],
            source_hashes=data["sourceHashes"],
        )


def compiler_settings() -> dict[str, Any]:
    """The pinned solc settings (standard-JSON ``settings`` without the output selection)."""
    return {
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        "viaIR": True,
        "evmVersion": EVM_VERSION,
        "metadata": {"bytecodeHash": "none", "appendCBOR": False},
    }


def default_solc_binary(root: Path) -> Path:
    """The solcjs that ``npm ci`` installs under ``root``."""
    return root / "node_modules" / ".bin" / "solcjs"


def compile_contracts(root: Path, solc_binary: Path | None = None) -> dict[str, Artifact]:
    """Compiles :data:`CONTRACTS` under ``root`` and returns their artifacts by contract name.

    Raises :class:`CompilationError` with solc's formatted messages when solc reports an error, and
    :class:`ArtifactError` when the compiler is missing or is not version :data:`SOLC_VERSION`.
    """
    from solcx.wrapper import get_solc_version

    binary = solc_binary or default_solc_binary(root)
    if not binary.exists():
        raise ArtifactError(f"no solc at {binary}: run `make install` (npm ci) or set SOLC_BINARY")
    version = get_solc_version(binary)
    if str(version) != SOLC_VERSION:
        raise ArtifactError(f"{binary} is solc {version}; the pinned version is {SOLC_VERSION}")

    standard_input = {
        "language": "Solidity",
        "sources": {path: {"urls": [path]} for path in sorted(set(CONTRACTS.values()))},
        "settings": {
            **compiler_settings(),
            "outputSelection": {
                "*": {
                    "*": [
                        "abi",
                        "metadata",
                        "storageLayout",
                        "evm.bytecode.object",
                        "evm.deployedBytecode.object",
                    ]
                }
            },
        },
    }
    command = [
        str(binary),
        "--standard-json",
        "--base-path",
        str(root),
        "--include-path",
        str(root / "node_modules"),
    ]
    # solcjs exits before a piped stdout is drained (its output is cut at 64 KiB), so it writes to a file.
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run(
            command,
            input=json.dumps(standard_input),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0:
        raise CompilationError([f"{binary} exited with {proc.returncode}: {proc.stderr.strip()}"])
    output = _parse_output(stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilationError([e.get("formattedMessage", e.get("message", "")) for e in errors])

    compiler = {"version": SOLC_VERSION, "settings": compiler_settings()}
    compiled_by_name: dict[str, dict[str, Any]] = {}
    for name, source in CONTRACTS.items():
        compiled = output.get("contracts", {}).get(source, {}).get(name)
        if compiled is None:
            raise CompilationError([f"{source}: solc produced no contract named {name}"])
        compiled_by_name[name] = compiled
    abis = {name: list(compiled["abi"]) for name, compiled in compiled_by_name.items()}
    for name, extension in LEDGER_EXTENSIONS.items():
        own, other = _storage_layout(compiled_by_name[name]), _storage_layout(compiled_by_name[extension])
        if own != other:
            raise CompilationError([f"{name} and {extension} differ in storage layout: {own} != {other}"])
        abis[name] = merged_abi(abis[name], abis[extension])
    artifacts: dict[str, Artifact] = {}
    for name, source in CONTRACTS.items():
        compiled = compiled_by_name[name]
        artifacts[name] = Artifact(
            contract_name=name,
            source_name=source,
            abi=abis[name],
            bytecode="0x" + compiled["evm"]["bytecode"]["object"],
            deployed_bytecode="0x" + compiled["evm"]["deployedBytecode"]["object"],
            compiler=compiler,
            source_hashes=_source_hashes(root, json.loads(compiled["metadata"])["sources"]),
        )
    return artifacts


def merged_abi(own: list[dict[str, Any]], extension: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``own`` followed by the functions, events and errors of ``extension`` that ``own`` lacks."""
    seen = {_abi_key(item) for item in own}
    kinds = ("function", "event", "error")
    return own + [item for item in extension if item["type"] in kinds and _abi_key(item) not in seen]


def _abi_key(item: dict[str, Any]) -> tuple[str, str, str]:
    inputs = ",".join(abi_type(p) for p in item.get("inputs", []))
    return (str(item["type"]), str(item.get("name", "")), inputs)


def _storage_layout(compiled: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """(label, slot, offset, type) of every state variable, in order."""
    layout = compiled.get("storageLayout") or {"storage": [], "types": {}}
    types = layout.get("types") or {}
    return [
        (v["label"], v["slot"], v["offset"], types.get(v["type"], {}).get("label", v["type"]))
        for v in layout["storage"]
    ]


def _parse_output(stdout: str) -> dict[str, Any]:
    # solcjs prints a line (">>> Cannot retry compilation with SMT ...") before the JSON document.
    start = stdout.find("{")
    if start < 0:
        raise CompilationError([f"solc printed no JSON output: {stdout[:500]!r}"])
    try:
        parsed: dict[str, Any] = json.loads(stdout[start:])
    except json.JSONDecodeError as exc:
        raise CompilationError([f"solc printed malformed JSON: {exc}"]) from exc
    return parsed


def _source_hashes(root: Path, sources: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of every source a contract is built from: its file and the OpenZeppelin files it imports."""
    hashes: dict[str, str] = {}
    for source in sorted(sources):
        path = root / source
        if not path.exists():
            path = root / "node_modules" / source
        hashes[source] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def write_artifacts(artifacts: dict[str, Artifact], out_dir: Path) -> list[Path]:
    """Writes one ``<ContractName>.json`` per artifact (stable formatting, so diffs stay small)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(artifact.to_json(), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def load_artifact(name: str) -> Artifact:
    """The committed artifact of contract ``name`` from the installed package."""
    try:
        text = resources.files(_ARTIFACT_PACKAGE).joinpath(f"{name}.json").read_text()
    except FileNotFoundError as exc:
        raise ArtifactError(f"no committed artifact for {name}: run `loyalty compile`") from exc
    return Artifact.from_json(json.loads(text))


def stale_artifacts(fresh: dict[str, Artifact]) -> dict[str, list[str]]:
    """Compares freshly compiled artifacts with the committed ones; returns what differs, by contract."""
    stale: dict[str, list[str]] = {}
    for name, artifact in fresh.items():
        try:
            committed = load_artifact(name)
        except ArtifactError:
            stale[name] = ["artifact missing"]
            continue
        differences = [
            field
            for field in ("abi", "bytecode", "deployed_bytecode", "compiler", "source_hashes")
            if getattr(committed, field) != getattr(artifact, field)
        ]
        if differences:
            stale[name] = differences
    return stale
