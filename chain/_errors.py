"""The chain layer's errors.

Every error raised on purpose by ``chain`` derives from :class:`ChainError`::

    ChainError
    ├── RetryableError            the same call may succeed later (timeout, rate limit, reset)
    │   ├── RpcUnavailable, RpcTimeout, RateLimited           (_rpc)
    │   ├── TransactionTimeout                                 (_sender)
    │   ├── NodeUnreachable                                    (_devnode)
    │   └── RemoteSignerUnavailable                            (_signer)
    └── PermanentError            retrying the same call cannot help
        ├── CompilationError      solc refused the sources; carries solc's formatted messages
        ├── ArtifactError         a committed artifact is missing or does not match its sources
        ├── ContractRevert        a call or transaction reverted; ``name`` and ``args`` of the
        │   │                     decoded custom error (``"Error"`` / ``"Panic"`` for the builtin ones)
        │   └── UnknownRevert     revert data whose selector is in no known ABI
        ├── RpcError              the node refused a request: NonceTooLow, ReplacementUnderpriced,
        │                         AlreadyKnown, InsufficientFunds                   (_rpc)
        ├── TransactionFailed     mined with status 0 and no revert reason           (_sender)
        ├── SignerError           keystore (WrongPassword, KeyNotFound, ...), DevKeyRefused,
        │                         remote signer refusals                            (_signer)
        ├── ManifestError         ManifestMismatch (names the field), ManifestNotFound (_manifest)
        ├── EntryNotFound         no ledger entry (issuance, redemption) matches a lookup          (_ledger)
        ├── DeploymentError                                                         (_deploy)
        └── DevNodeError          UnsupportedRpcUrl, a local node that would not start (_devnode)

Contract reverts are decoded the same way whichever node produced them: eth-tester raises
``TransactionFailed`` with the raw revert bytes in its message, JSON-RPC nodes reach web3 as
``ContractCustomError`` / ``ContractLogicError`` with the hex data in ``.data``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

__all__ = [
    "ArtifactError",
    "ChainError",
    "CompilationError",
    "ContractRevert",
    "PermanentError",
    "RetryableError",
    "RevertDecoder",
    "UnknownRevert",
]


class ChainError(Exception):
    """Root of every error the chain layer raises on purpose."""


class RetryableError(ChainError):
    """A failure that may go away if the same call is retried (after a backoff)."""


class PermanentError(ChainError):
    """A failure that retrying the same call cannot fix."""


class CompilationError(PermanentError):
    """solc rejected the contracts; ``messages`` holds solc's formatted error messages."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("solc reported errors:\n" + "\n".join(self.messages))


class ArtifactError(PermanentError):
    """A compiled artifact is missing, unreadable, or out of date with respect to its sources."""


class ContractRevert(PermanentError):
    """A contract call reverted with the custom error ``name(args...)``."""

    def __init__(self, name: str, args: Sequence[Any], data: bytes = b"") -> None:
        self.name = name
        #: The error's decoded arguments, in declaration order.
        self.arguments = tuple(args)
        self.data = bytes(data)
        super().__init__(f"{name}({', '.join(_show(a) for a in self.arguments)})")


class UnknownRevert(ContractRevert):
    """Revert data that no known ABI explains (kept raw in ``data``)."""

    def __init__(self, data: bytes) -> None:
        super().__init__("UnknownRevert", [HexBytes(data).to_0x_hex()], data)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return HexBytes(value).to_0x_hex()
    return repr(value)


_BUILTIN = {
    function_signature_to_4byte_selector("Error(string)"): ("Error", ["string"]),
    function_signature_to_4byte_selector("Panic(uint256)"): ("Panic", ["uint256"]),
}


def _normalize(abi_type: str, value: Any) -> Any:
    # Addresses come back checksummed, as web3 returns them everywhere else.
    return to_checksum_address(value) if abi_type == "address" else value


def abi_type(param: Mapping[str, Any]) -> str:
    """The canonical type string of an ABI parameter (tuples spelled out), as used in signatures."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


class RevertDecoder:
    """Turns revert data from any backend into a :class:`ContractRevert` using the errors of ABIs."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str]]] = dict(_BUILTIN)
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [abi_type(p) for p in item.get("inputs", [])]
                signature = f"{item['name']}({','.join(types)})"
                self._errors[function_signature_to_4byte_selector(signature)] = (str(item["name"]), types)

    @classmethod
    def for_contracts(cls, *names: str) -> RevertDecoder:
        """A decoder for the errors of the named committed contracts; by default every one of them (the
        ledger, the CoalitionTimelock in front of it, and the test wallets), so that a timelock's refusal
        decodes as well as the ledger's."""
        from ._compile import CONTRACTS, load_artifact  # _compile imports this module

        return cls(load_artifact(name).abi for name in (names or tuple(CONTRACTS)))

    def decode(self, data: bytes) -> ContractRevert:
        """Decodes raw revert bytes (selector + ABI-encoded arguments)."""
        known = self._errors.get(bytes(data[:4]))
        if known is None:
            return UnknownRevert(data)
        name, types = known
        try:
            args = abi_decode(types, bytes(data[4:]))
        except Exception:  # malformed arguments: report them raw rather than guess
            return UnknownRevert(data)
        return ContractRevert(name, [_normalize(t, a) for t, a in zip(types, args, strict=True)], data)

    def from_exception(self, exc: BaseException) -> ContractRevert | None:
        """The revert carried by a web3 or eth-tester exception, or ``None`` if it carries none."""
        data = revert_data(exc)
        return None if data is None else self.decode(data)


def revert_data(exc: BaseException) -> bytes | None:
    """Extracts raw revert bytes from web3's ``ContractLogicError`` or eth-tester's ``TransactionFailed``."""
    raw = getattr(exc, "data", None)
    if isinstance(raw, dict):
        raw = raw.get("data")
    if isinstance(raw, str) and raw.startswith("0x"):
        return bytes(HexBytes(raw))
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    if type(exc).__name__ == "TransactionFailed" and exc.args:
        first = exc.args[0]
        if isinstance(first, bytes | bytearray):
            return bytes(first)
        if isinstance(first, str):
            return _bytes_from_message(first)
    return None


def _bytes_from_message(message: str) -> bytes | None:
    # eth-tester formats the raw revert output as a bytes literal, e.g. "execution reverted: b'\\x12...'".
    # The literal starts at the first b' or b" (an address byte 0xab before a quote also reads "b'").
    found = [i for i in (message.find("b'"), message.find('b"')) if i >= 0]
    start = min(found, default=-1)
    if start < 0:
        return bytes(HexBytes(message)) if message.startswith("0x") else None
    try:
        value = ast.literal_eval(message[start:])
    except (ValueError, SyntaxError):
        return None
    return bytes(value) if isinstance(value, bytes) else None
