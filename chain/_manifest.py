"""The deployment manifest: which contracts a deployment put where, on which chain, built from what.

``loyalty deploy`` writes one (JSON, with a ``version``); every client loads it and checks it against the
node it talks to (:func:`verify_manifest`) before trusting any address in it. What a manifest pins, and how
it is checked:

- ``chain_id``: must equal the node's ``eth_chainId``.
- ``deployed_at``: the block that holds the ledger's deployment; the node's block of that number must have
  the recorded hash (a restarted dev chain or a reorganisation that dropped the deployment fails here).
- ``parameters``: the ledger's constructor arguments, the roles among them (``admin``, ``treasury``,
  ``pauser``, ``admin_delay``; the zero address for a role left unheld). Recorded for clients and auditors;
  roles change later through ledger entries, so they are not compared with the chain's current state.
- ``timelock`` (``None`` without one): the CoalitionTimelock deployed in front of the ledger (its admin and
  treasury), with its ``min_delay``, ``proposers``, ``executors`` as deployed and its own ``deployed_at``,
  whose block hash is checked like the ledger's. Its code is one more entry of ``contracts``
  (``CoalitionTimelock``), checked like every other one.
- per contract, ``deployed_bytecode_sha256``: the SHA-256 of the runtime code the chain held right after the
  deployment, as read back from the chain. The artifact's ``deployedBytecode`` cannot be compared directly:
  LoyaltyLedger has immutables (genesis time, epoch length, validity; OpenZeppelin's EIP712 cached domain and
  ShortStrings), which solc leaves as 32 zero bytes after a ``PUSH32`` in the artifact and the constructor
  fills in. The on-chain code must hash to the recorded value, and must also be the artifact's code with only
  those placeholders filled in (:func:`code_matches_artifact`): a manifest cannot vouch for foreign code.
- per contract, ``bytecode_sha256``: the SHA-256 of the artifact's creation bytecode. Verification checks it
  against the artifact installed with this package (``load_artifact``): a client built from other sources
  than the deployed contract would speak a possibly different ABI, so it refuses (``check_artifacts=False``
  skips this for tools that only need the addresses). ``source_hashes`` are copied from the artifact for
  auditors; they are covered by ``bytecode_sha256`` and not checked again.

Errors (under ``PermanentError``)::

    ManifestError            the manifest cannot be read, parsed or written
    ├── ManifestNotFound     no manifest at that path
    └── ManifestMismatch     the manifest does not describe what the node (or the installed artifact) holds;
                             ``field``, ``expected`` (the manifest's value), ``actual`` name the difference
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from eth_utils.address import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from ._compile import Artifact, load_artifact
from ._errors import ChainError, PermanentError
from ._rpc import Rpc
from ._types import Address, BlockNumber

__all__ = [
    "LEDGER_EXTENSION",
    "MANIFEST_VERSION",
    "ContractDeployment",
    "DeployedAt",
    "DeploymentManifest",
    "LedgerParameters",
    "ManifestError",
    "ManifestMismatch",
    "ManifestNotFound",
    "TimelockDeployment",
    "code_matches_artifact",
    "extension_address",
    "load_manifest",
    "sha256_hex",
    "verify_manifest",
]

#: The manifest format written by this version; :func:`load_manifest` refuses any other.
MANIFEST_VERSION: Final = 3
#: The name under which the ledger appears in ``DeploymentManifest.contracts``.
LEDGER: Final = "LoyaltyLedger"
#: The name under which the ledger's extension (created by the ledger's constructor) appears there.
LEDGER_EXTENSION: Final = "LoyaltyLedgerExtension"
#: The name under which the timelock (if any) appears in ``DeploymentManifest.contracts``.
TIMELOCK: Final = "CoalitionTimelock"

_PUSH32: Final = 0x7F
_WORD: Final = 32


class ManifestError(PermanentError):
    """A deployment manifest cannot be read, parsed or written."""


class ManifestNotFound(ManifestError):
    """There is no manifest at ``path`` (deploy first: ``loyalty deploy``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"no deployment manifest at {path} (run `loyalty deploy`)")


class ManifestMismatch(ManifestError):
    """The manifest says ``expected`` for ``field``; the node (or the installed artifact) has ``actual``."""

    def __init__(self, field: str, expected: object, actual: object, *, source: str = "node") -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        self.source = source
        super().__init__(f"{field}: manifest {expected}, {source} {actual}")


def sha256_hex(code: bytes | str) -> str:
    """SHA-256 (hex digest) of bytecode given as bytes or 0x-hex text (hashed as bytes, not as text)."""
    raw = bytes(HexBytes(code)) if isinstance(code, str) else bytes(code)
    return hashlib.sha256(raw).hexdigest()


def _immutable_slots(template: bytes) -> list[range]:
    """Byte ranges of the artifact's runtime code the constructor may fill: 32 zero bytes after PUSH32."""
    slots = []
    i = 0
    while i + 1 + _WORD <= len(template):
        if template[i] == _PUSH32 and template[i + 1 : i + 1 + _WORD] == bytes(_WORD):
            slots.append(range(i + 1, i + 1 + _WORD))
            i += 1 + _WORD
        else:
            i += 1
    return slots


def code_matches_artifact(code: bytes, artifact: Artifact) -> bool:
    """Whether ``code`` (read from the chain) is the artifact's runtime code with only immutables filled in.

    solc's artifact has ``PUSH32 0x00..00`` where each immutable is read; every byte of ``code`` outside
    those placeholders must equal the artifact's. (A genuine ``PUSH32 0`` constant is treated as a
    placeholder too, which loosens the check by that one constant and never rejects valid code.)
    """
    template = bytes(HexBytes(artifact.deployed_bytecode))
    if len(code) != len(template):
        return False
    if code == template:
        return True
    start = 0
    for slot in _immutable_slots(template):
        if code[start : slot.start] != template[start : slot.start]:
            return False
        start = slot.stop
    return code[start:] == template[start:]


@dataclass(frozen=True, slots=True)
class DeployedAt:
    """Where the deployment transaction landed."""

    block_number: BlockNumber
    #: 0x-hex block hash and transaction hash.
    block_hash: str
    transaction_hash: str


@dataclass(frozen=True, slots=True)
class ContractDeployment:
    """One deployed contract and the artifact it was built from."""

    address: Address
    artifact_name: str
    #: SHA-256 of the artifact's creation bytecode (identifies the artifact).
    bytecode_sha256: str
    #: SHA-256 of the runtime code read from the chain right after deployment (immutables filled in).
    deployed_bytecode_sha256: str
    #: The artifact's ``sourceHashes``: SHA-256 of every Solidity file it was compiled from.
    source_hashes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LedgerParameters:
    """The ledger's constructor arguments, as deployed (roles: the zero address when unheld)."""

    name: str
    symbol: str
    #: The default admin (the timelock's address when there is one).
    admin: Address
    #: TREASURY_ROLE (the timelock's address when there is one).
    treasury: Address
    #: PAUSER_ROLE: a direct key even behind a timelock (pausing only removes power).
    pauser: Address
    #: Seconds between beginning an admin handover and its acceptance.
    admin_delay: int
    #: Seconds per ERC-7818 epoch.
    epoch_length: int
    #: How many epochs points stay valid.
    validity: int
    #: Settlement units per point.
    settlement_value: int
    #: Seconds after an issuance during which its partner may reverse it.
    reversal_window: int


@dataclass(frozen=True, slots=True)
class TimelockDeployment:
    """The CoalitionTimelock in front of the ledger, as deployed (its roles and delay may change later, only
    through its own scheduled operations)."""

    address: Address
    #: Seconds between scheduling an operation and its earliest execution.
    min_delay: int
    #: May schedule and cancel operations.
    proposers: tuple[Address, ...]
    #: May execute ready operations (the zero address: anyone).
    executors: tuple[Address, ...]
    deployed_at: DeployedAt


@dataclass(frozen=True, slots=True)
class DeploymentManifest:
    """What one ``loyalty deploy`` did; JSON on disk (:meth:`write`, :func:`load_manifest`)."""

    chain_id: int
    deployer: Address
    deployed_at: DeployedAt
    contracts: Mapping[str, ContractDeployment]
    parameters: LedgerParameters
    #: When the manifest was made (UTC).
    created_at: datetime
    #: The timelock that is the ledger's admin and treasury; ``None`` when a key is.
    timelock: TimelockDeployment | None = None
    version: int = MANIFEST_VERSION

    @property
    def ledger(self) -> ContractDeployment:
        """The LoyaltyLedger deployment."""
        try:
            return self.contracts[LEDGER]
        except KeyError:
            raise ManifestError(f"the manifest lists no {LEDGER}") from None

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        timelock = self.timelock
        return {
            "version": self.version,
            "chainId": self.chain_id,
            "deployer": self.deployer,
            "deployedAt": _deployed_at_json(self.deployed_at),
            "contracts": {
                name: {
                    "address": c.address,
                    "artifactName": c.artifact_name,
                    "bytecodeSha256": c.bytecode_sha256,
                    "deployedBytecodeSha256": c.deployed_bytecode_sha256,
                    "sourceHashes": dict(sorted(c.source_hashes.items())),
                }
                for name, c in sorted(self.contracts.items())
            },
            "parameters": {
                "name": self.parameters.name,
                "symbol": self.parameters.symbol,
                "admin": self.parameters.admin,
                "treasury": self.parameters.treasury,
                "pauser": self.parameters.pauser,
                "adminDelay": self.parameters.admin_delay,
                "epochLength": self.parameters.epoch_length,
                "validity": self.parameters.validity,
                "settlementValue": self.parameters.settlement_value,
                "reversalWindow": self.parameters.reversal_window,
            },
            "timelock": None
            if timelock is None
            else {
                "address": timelock.address,
                "minDelay": timelock.min_delay,
                "proposers": list(timelock.proposers),
                "executors": list(timelock.executors),
                "deployedAt": _deployed_at_json(timelock.deployed_at),
            },
            "createdAt": self.created_at.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_json(cls, data: Any) -> DeploymentManifest:
        """Parses :meth:`to_json`'s shape; :class:`ManifestError` names what is missing or malformed."""
        root = _Reader(data, "manifest")
        version = root.integer("version")
        if version != MANIFEST_VERSION:
            raise ManifestError(f"manifest version {version} is not supported (expected {MANIFEST_VERSION})")
        params = root.object("parameters")
        contracts_obj = root.object("contracts")
        contracts = {}
        for name in contracts_obj.names():
            c = contracts_obj.object(name)
            contracts[name] = ContractDeployment(
                address=c.address("address"),
                artifact_name=c.text("artifactName"),
                bytecode_sha256=c.text("bytecodeSha256"),
                deployed_bytecode_sha256=c.text("deployedBytecodeSha256"),
                source_hashes=c.str_map("sourceHashes"),
            )
        created = root.text("createdAt")
        try:
            created_at = datetime.fromisoformat(created)
        except ValueError:
            raise ManifestError(f"manifest.createdAt is not an ISO 8601 time: {created!r}") from None
        return cls(
            version=version,
            chain_id=root.integer("chainId"),
            deployer=root.address("deployer"),
            deployed_at=_deployed_at(root.object("deployedAt")),
            contracts=contracts,
            parameters=LedgerParameters(
                name=params.text("name"),
                symbol=params.text("symbol"),
                admin=params.address("admin"),
                treasury=params.address("treasury"),
                pauser=params.address("pauser"),
                admin_delay=params.integer("adminDelay"),
                epoch_length=params.integer("epochLength"),
                validity=params.integer("validity"),
                settlement_value=params.integer("settlementValue"),
                reversal_window=params.integer("reversalWindow"),
            ),
            timelock=_timelock(root),
            created_at=created_at,
        )

    def write(self, path: Path) -> None:
        """Writes the manifest to ``path`` atomically (a temporary file in the same directory, renamed)."""
        path = Path(path)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ManifestError(f"cannot write the manifest {path}: {exc.strerror or exc}") from exc


def _deployed_at_json(at: DeployedAt) -> dict[str, Any]:
    return {
        "blockNumber": int(at.block_number),
        "blockHash": at.block_hash,
        "transactionHash": at.transaction_hash,
    }


def _deployed_at(at: _Reader) -> DeployedAt:
    return DeployedAt(
        block_number=BlockNumber(at.integer("blockNumber")),
        block_hash=at.text("blockHash"),
        transaction_hash=at.text("transactionHash"),
    )


def _timelock(root: _Reader) -> TimelockDeployment | None:
    if root.get_optional("timelock") is None:
        return None
    timelock = root.object("timelock")
    return TimelockDeployment(
        address=timelock.address("address"),
        min_delay=timelock.integer("minDelay"),
        proposers=timelock.addresses("proposers"),
        executors=timelock.addresses("executors"),
        deployed_at=_deployed_at(timelock.object("deployedAt")),
    )


def load_manifest(path: Path) -> DeploymentManifest:
    """Reads a manifest written by :meth:`DeploymentManifest.write` (not yet checked against any node)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestNotFound(path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not JSON: {exc}") from None
    return DeploymentManifest.from_json(data)


def verify_manifest(manifest: DeploymentManifest, node: Rpc | Web3, *, check_artifacts: bool = True) -> None:
    """Checks ``manifest`` against the node; raises :class:`ManifestMismatch` naming the first difference.

    Checked in this order: the chain id, the hash of the deployment block (and of the timelock's, if any),
    that a recorded timelock is the ``CoalitionTimelock`` entry of ``contracts``, then for each contract
    (the timelock included) that it has code, that the code's SHA-256 is the one recorded at deployment,
    and that the code is its artifact's with only immutables filled in. With ``check_artifacts`` (the
    default), each contract's ``bytecode_sha256`` must also match the artifact installed with this package.
    """
    rpc = node if isinstance(node, Rpc) else Rpc(node)
    chain_id = rpc.chain_id()
    if chain_id != manifest.chain_id:
        raise ManifestMismatch("chain id", manifest.chain_id, chain_id)

    _check_block(rpc, manifest.deployed_at, "deployment block")
    timelock = manifest.timelock
    if timelock is not None:
        _check_block(rpc, timelock.deployed_at, "the timelock's deployment block")
        listed = manifest.contracts.get(TIMELOCK)
        if listed is None or listed.address != timelock.address:
            raise ManifestMismatch(
                f"{TIMELOCK} contract entry",
                timelock.address,
                listed.address if listed else "none",
                source="manifest's contracts",
            )

    ledger, extension = manifest.contracts.get(LEDGER), manifest.contracts.get(LEDGER_EXTENSION)
    if ledger is not None:
        expected = extension_address(ledger.address)
        if extension is None or extension.address != expected:
            raise ManifestMismatch(
                f"{LEDGER_EXTENSION} contract entry",
                expected,
                extension.address if extension else "none",
                source="manifest's contracts",
            )

    for name, contract in sorted(manifest.contracts.items()):
        where = f"bytecode of {name} at {contract.address}"
        code = rpc.code(contract.address)
        if not code:
            raise ManifestMismatch(where, f"sha256 {contract.deployed_bytecode_sha256}", "no code")
        actual = sha256_hex(code)
        if actual != contract.deployed_bytecode_sha256:
            raise ManifestMismatch(where, f"sha256 {contract.deployed_bytecode_sha256}", f"sha256 {actual}")
        if not check_artifacts:
            continue
        artifact = load_artifact(contract.artifact_name)
        installed = sha256_hex(artifact.bytecode)
        if installed != contract.bytecode_sha256:
            raise ManifestMismatch(
                f"artifact {contract.artifact_name} (creation code sha256)",
                contract.bytecode_sha256,
                installed,
                source="installed package",
            )
        if not code_matches_artifact(code, artifact):
            raise ManifestMismatch(
                where, f"code of artifact {contract.artifact_name}", "other code (not built from it)"
            )


def extension_address(ledger: str) -> Address:
    """The address of the extension a ledger at ``ledger`` created: its constructor's one CREATE (nonce 1)."""
    sender = bytes(HexBytes(ledger))
    # RLP of [sender, 1]: a list of a 20-byte string (0x94 + bytes) and the single byte 0x01
    encoded = bytes([0xD6, 0x94]) + sender + b"\x01"
    return to_checksum_address(Web3.keccak(encoded)[12:])


def _check_block(rpc: Rpc, at: DeployedAt, what: str) -> None:
    try:
        block_hash = rpc.block_hash(at.block_number)
    except ChainError:  # eth-tester raises for a block it does not have; JSON-RPC nodes answer null
        block_hash = None
    shown = HexBytes(block_hash).to_0x_hex() if block_hash is not None else "no such block"
    if block_hash is None or shown.lower() != at.block_hash.lower():
        raise ManifestMismatch(f"hash of {what} {at.block_number}", at.block_hash, shown)


class _Reader:
    """Typed access to one JSON object of a manifest; errors name the offending path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ManifestError(f"{path} must be a JSON object, not {type(data).__name__}")
        self._data: dict[str, Any] = data
        self._path = path

    def names(self) -> list[str]:
        return sorted(self._data)

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise ManifestError(f"{self._path}.{key} is missing")
        return self._data[key]

    def get_optional(self, key: str) -> Any:
        return self._data.get(key)

    def object(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self._path}.{key}")

    def integer(self, key: str) -> int:
        value = self._get(key)
        if type(value) is not int:
            raise ManifestError(f"{self._path}.{key} must be an integer, not {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise ManifestError(f"{self._path}.{key} must be a string, not {value!r}")
        return value

    def address(self, key: str) -> Address:
        value = self.text(key)
        if not is_address(value):
            raise ManifestError(f"{self._path}.{key} is not an address: {value!r}")
        return to_checksum_address(value)

    def addresses(self, key: str) -> tuple[Address, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and is_address(v) for v in value):
            raise ManifestError(f"{self._path}.{key} must be a list of addresses")
        return tuple(to_checksum_address(v) for v in value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ManifestError(f"{self._path}.{key} must map strings to strings")
        return dict(value)
