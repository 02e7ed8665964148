"""What the typed contract clients share: ABI functions encoded with eth-abi from selectors computed once,
calldata decoded back into named arguments, ``eth_call`` views at any block, and writes through a
:class:`~chain.Sender`. :class:`~chain.Ledger` and :class:`~chain.Timelock` are its subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from ._compile import Artifact, load_artifact
from ._errors import PermanentError, abi_type
from ._rpc import Rpc
from ._sender import Call, Sender
from ._types import Address, BlockNumber

__all__ = ["AbiFunction", "Block", "ContractClient", "DecodedCall", "functions_of"]

Block = BlockNumber | int | str


@dataclass(frozen=True, slots=True)
class DecodedCall:
    """Calldata of one ledger function, decoded: ``function`` and its ``arguments`` by name, in order."""

    function: str
    signature: str
    arguments: tuple[tuple[str, Any], ...]

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(value for _, value in self.arguments)

    def __str__(self) -> str:
        shown = ", ".join(f"{name}={_show_value(value)}" for name, value in self.arguments)
        return f"{self.function}({shown})"


def _show_value(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show_value(v) for v in value) + "]"
    return str(value)


class AbiFunction:
    """Selector, input and output types (and input names) of one ABI function."""

    __slots__ = ("input_names", "inputs", "name", "outputs", "selector", "signature")

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.name = str(item["name"])
        params = item.get("inputs", [])
        self.inputs = [abi_type(p) for p in params]
        self.input_names = [str(p.get("name") or f"arg{i}") for i, p in enumerate(params)]
        self.outputs = [abi_type(p) for p in item.get("outputs", [])]
        self.signature = f"{self.name}({','.join(self.inputs)})"
        self.selector = function_signature_to_4byte_selector(self.signature)

    def encode(self, args: Sequence[Any]) -> bytes:
        if len(args) != len(self.inputs):
            raise PermanentError(f"{self.signature} takes {len(self.inputs)} arguments, got {len(args)}")
        return self.selector + abi_encode(self.inputs, list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        return tuple(abi_decode(self.outputs, data))

    def decode_input(self, data: bytes) -> DecodedCall:
        values = abi_decode(self.inputs, bytes(data[4:]))
        normalized = [
            to_checksum_address(v) if t == "address" else v for t, v in zip(self.inputs, values, strict=True)
        ]
        return DecodedCall(self.name, self.signature, tuple(zip(self.input_names, normalized, strict=True)))


def functions_of(abi: Sequence[Mapping[str, Any]]) -> dict[str, AbiFunction]:
    """The ABI's functions by signature, and by bare name where the name is not overloaded."""
    functions = [AbiFunction(item) for item in abi if item.get("type") == "function"]
    by_key: dict[str, AbiFunction] = {f.signature: f for f in functions}
    names = [f.name for f in functions]
    by_key.update({f.name: f for f in functions if names.count(f.name) == 1})
    return by_key


class ContractClient:
    """One deployed contract of artifact :attr:`contract_name` at ``address``; ``sender`` signs its writes
    (views need none)."""

    contract_name: ClassVar[str]

    def __init__(
        self,
        rpc: Rpc,
        address: str,
        *,
        sender: Sender | None = None,
        artifact: Artifact | None = None,
    ) -> None:
        self.rpc = rpc
        self.address: Address = to_checksum_address(address)
        self.sender = sender
        self.artifact = artifact or load_artifact(self.contract_name)
        self._functions = functions_of(self.artifact.abi)
        self._by_selector = {f.selector: f for f in self._functions.values()}

    def with_sender(self, sender: Sender) -> Self:
        """The same contract, writing with another key (e.g. the treasury's instead of a partner's)."""
        return type(self)(self.rpc, self.address, sender=sender, artifact=self.artifact)

    def __repr__(self) -> str:
        who = self.sender.address if self.sender else "read-only"
        return f"{type(self).__name__}({self.address}, {who})"

    def function(self, function: str) -> AbiFunction:
        """The ABI function ``function`` (a bare name, or a full signature for an overloaded one)."""
        try:
            return self._functions[function]
        except KeyError:
            raise PermanentError(
                f"{self.contract_name} has no function {function!r} (an overloaded one needs its signature)"
            ) from None

    def encode(self, function: str, *args: Any) -> bytes:
        """Calldata for ``function(*args)``."""
        return self.function(function).encode(args)

    def decode(self, function: str, data: bytes) -> tuple[Any, ...]:
        """The return values of ``function`` from an ``eth_call`` answer (for batched reads)."""
        return self.function(function).decode(data)

    def decode_call(self, data: bytes) -> DecodedCall | None:
        """Calldata of one of this contract's functions decoded by its selector (e.g. a timelock
        operation's payload), or ``None`` when no function has that selector or the arguments do not
        decode."""
        fn = self._by_selector.get(bytes(data[:4]))
        if fn is None:
            return None
        try:
            return fn.decode_input(data)
        except Exception:  # malformed arguments: not a call this contract could run
            return None

    def call_of(self, function: str, *args: Any, gas: int | None = None) -> Call:
        """The :class:`Call` that would run ``function(*args)`` (for ``Sender.submit_many`` or to schedule on
        a :class:`~chain.Timelock`)."""
        return Call(to=self.address, data=self.encode(function, *args), gas=gas)

    def sender_or_fail(self, function: str) -> Sender:
        if self.sender is None:
            raise PermanentError(f"{function} needs a sender: this {type(self).__name__} client is read-only")
        return self.sender

    def _view(self, function: str, *args: Any, block: Block = "latest") -> tuple[Any, ...]:
        fn = self.function(function)
        return fn.decode(self.rpc.call({"to": self.address, "data": fn.encode(args)}, block))

    def _one(self, function: str, *args: Any, block: Block = "latest") -> Any:
        return self._view(function, *args, block=block)[0]
