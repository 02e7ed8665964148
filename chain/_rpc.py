"""Raw JSON-RPC for the sending hot path: failures classified, retryable ones retried with backoff.

The sender talks to the node through :class:`Rpc`, never through web3's per-call formatters: on an HTTP node
every call is a raw request (and many calls one JSON-RPC batch), on the in-process eth-tester chain the same
operations go through ``w3.eth``. Either way a failure comes out as one of the chain layer's errors::

    RetryableError
    ├── RpcUnavailable           connection refused or reset, HTTP 5xx, node restarting
    ├── RpcTimeout               the request or the node timed out
    └── RateLimited              HTTP 429 or a JSON-RPC "limit exceeded"
    PermanentError
    └── RpcError                 the node refused the request; ``code`` and ``message`` as it sent them
        ├── RangeTooLarge        an ``eth_getLogs`` range with too many results or blocks
        ├── NonceTooLow          the nonce is already used on chain
        ├── ReplacementUnderpriced  a pending transaction has the nonce and the new fees are not high enough
        ├── AlreadyKnown         this exact transaction is already in the pool
        └── InsufficientFunds    the account cannot pay for gas

Every failed attempt's classified error is also handed to the callables in :data:`RPC_ERROR_OBSERVERS`
(the service counts them by class for its metrics). The chain layer knows nothing of who listens: an
observer is a plain callable, and one that raises is ignored, so counting can never break a call.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3RPCError,
)

from ._errors import ChainError, ContractRevert, PermanentError, RetryableError, RevertDecoder, revert_data
from ._types import BlockNumber, Log, Receipt, Wei

__all__ = [
    "RPC_ERROR_OBSERVERS",
    "AlreadyKnown",
    "InsufficientFunds",
    "NonceTooLow",
    "RangeTooLarge",
    "RateLimited",
    "ReplacementUnderpriced",
    "RetryPolicy",
    "Rpc",
    "RpcError",
    "RpcTimeout",
    "RpcUnavailable",
    "classify_rpc_error",
]

logger = logging.getLogger("chain.rpc")
T = TypeVar("T")

#: Called with every error a node call ended in (each failed attempt of a retried call, each failed item
#: of a batch), after classification. Registered once per process by whoever wants to count them.
RPC_ERROR_OBSERVERS: list[Callable[[ChainError], None]] = []


def _observed(error: ChainError) -> ChainError:
    """``error``, after telling the observers about it (an observer's own failure is not the call's)."""
    for observer in tuple(RPC_ERROR_OBSERVERS):
        try:
            observer(error)
        except Exception:  # an observer must never turn a node's answer into another error
            logger.debug("RPC error observer %r failed", observer, exc_info=True)
    return error


class RpcUnavailable(RetryableError):
    """The node could not be reached (connection refused or reset, HTTP 5xx)."""


class RpcTimeout(RetryableError):
    """The request timed out."""


class RateLimited(RetryableError):
    """The node or its gateway asked us to slow down (HTTP 429, JSON-RPC "limit exceeded")."""


class RpcError(PermanentError):
    """The node answered with a JSON-RPC error that retrying the same request cannot fix."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{message} (code {code})" if code is not None else message)


class RangeTooLarge(RpcError):
    """An ``eth_getLogs`` query asked for too many blocks or results (Infura, Alchemy, QuickNode, geth and
    Erigon phrase it differently). ``suggested`` is the ``(from, to)`` range the node proposed, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message, code)
        self.suggested = suggested_range(message)


_RANGE_IN_TEXT = re.compile(r"\[\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\]")


def suggested_range(message: str) -> tuple[int, int] | None:
    """The ``[from, to]`` block range an error message proposes (hex or decimal), if any."""
    match = _RANGE_IN_TEXT.search(message)
    if match is None:
        return None
    low, high = (int(v, 0) for v in match.groups())
    return (low, high) if low <= high else None


class NonceTooLow(RpcError):
    """The transaction's nonce has already been used on chain."""


class ReplacementUnderpriced(RpcError):
    """A pending transaction holds this nonce and the new fees do not outbid it."""


class AlreadyKnown(RpcError):
    """The node already has this exact transaction."""


class InsufficientFunds(RpcError):
    """The sending account cannot pay for the gas."""


# Substrings of node error messages (geth, anvil, reth, erigon, nethermind, besu) and what they mean.
_MESSAGE_CLASSES: tuple[tuple[tuple[str, ...], type[ChainError]], ...] = (
    (
        (
            "query returned more than",
            "too many results",
            "response size exceeded",
            "block range",
            "range too large",
            "range is too large",
            "exceed maximum block range",
            "max results",
            "logs matched by query exceeds",
        ),
        RangeTooLarge,
    ),
    (("nonce too low", "nonce is too low", "oldnonce", "already been used"), NonceTooLow),
    (("replacement transaction underpriced", "underpriced"), ReplacementUnderpriced),
    (("already known", "known transaction", "already imported", "already exists"), AlreadyKnown),
    (("insufficient funds",), InsufficientFunds),
    (("rate limit", "too many requests", "limit exceeded", "exceeded the quota"), RateLimited),
    (("timeout", "timed out"), RpcTimeout),
    # "header not found": a load-balanced node behind the one that answered has not seen the block yet.
    (("connection reset", "unavailable", "try again", "header not found"), RpcUnavailable),
)
# JSON-RPC codes that mean "slow down" or "temporarily unavailable" whatever the message says.
_RETRYABLE_CODES = {-32005: RateLimited, 429: RateLimited, -32603: RpcUnavailable}


def _from_rpc_error(error: Mapping[str, Any]) -> ChainError:
    message = str(error.get("message", ""))
    code = error.get("code")
    lowered = message.lower()
    for needles, cls in _MESSAGE_CLASSES:
        if any(n in lowered for n in needles):
            if issubclass(cls, RpcError):
                return cls(message, code)
            return cls(f"{message} (code {code})")
    retryable = _RETRYABLE_CODES.get(code) if isinstance(code, int) else None
    if retryable is not None and "revert" not in lowered:
        return retryable(f"{message} (code {code})")
    return RpcError(message, code if isinstance(code, int) else None)


def classify_rpc_error(exc: BaseException, decoder: RevertDecoder | None = None) -> ChainError:
    """The chain-layer error for anything a provider raised (transport, JSON-RPC, eth-tester, revert)."""
    if isinstance(exc, ChainError):
        return exc
    if decoder is not None:
        data = revert_data(exc)
        if data is not None or isinstance(exc, ContractLogicError):
            return decoder.decode(data or b"")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 429:
            return RateLimited(f"HTTP 429 from {exc.response.url}")
        if status >= 500:
            return RpcUnavailable(f"HTTP {status} from {exc.response.url}")
        return RpcError(f"HTTP {status} from {exc.response.url}")
    if isinstance(exc, TooManyRequests):
        return RateLimited(str(exc))
    if isinstance(exc, requests.Timeout | RequestTimedOut | TimeExhausted | TimeoutError):
        return RpcTimeout(str(exc) or type(exc).__name__)
    if isinstance(exc, requests.ConnectionError | ProviderConnectionError | ConnectionError):
        return RpcUnavailable(str(exc) or type(exc).__name__)
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error")
        if isinstance(error, dict):
            return _from_rpc_error(error)
    if isinstance(exc, ValueError) and exc.args and isinstance(exc.args[0], dict):
        return _from_rpc_error(exc.args[0])
    unreadable = "json" in str(exc).lower() or "decode" in str(exc).lower()
    if isinstance(exc, requests.RequestException | ValueError) and unreadable:
        # A response that is not JSON (a truncated body, an HTML error page): a transient transport fault.
        return RpcUnavailable(f"unreadable response: {exc}")
    return _from_rpc_error({"message": f"{type(exc).__name__}: {exc}"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for retryable failures: ``attempts`` tries in all."""

    attempts: int = 6
    initial_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_delay
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * self.factor, self.max_delay)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16)
    return int(HexBytes(value).hex() or "0", 16)


def _bytes(value: Any) -> bytes:
    return bytes(HexBytes(value)) if value is not None else b""


def _address(value: Any) -> Any:
    return to_checksum_address(value) if value else None


@functools.lru_cache(maxsize=1024)
def _checksummed(address: str) -> ChecksumAddress:
    # Every log of a receipt comes from a handful of contracts: checksum each address once.
    return to_checksum_address(address)


def _first(fields: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present: JSON-RPC's camelCase or web3's snake_case spelling."""
    return next((fields[name] for name in names if name in fields), None)


def _tag(block: int | str) -> str:
    """A block number as JSON-RPC spells it (hex), or a tag such as ``latest`` as it is."""
    return hex(block) if isinstance(block, int) else block


def receipt_from_rpc(raw: Mapping[str, Any]) -> Receipt:
    """A :class:`Receipt` from a JSON-RPC receipt object (hex fields) or web3's formatted ``TxReceipt``."""

    def get(*names: str) -> Any:
        return _first(raw, *names)

    logs = tuple(
        Log(
            address=_checksummed(str(log["address"])),
            topics=tuple(_bytes(t) for t in log["topics"]),
            data=_bytes(log["data"]),
            log_index=_int(_first(log, "logIndex", "log_index") or 0),
        )
        for log in raw.get("logs", ())
    )
    price = get("effectiveGasPrice", "effective_gas_price")
    return Receipt(
        transaction_hash=_bytes(get("transactionHash", "transaction_hash")),
        block_number=BlockNumber(_int(get("blockNumber", "block_number"))),
        block_hash=_bytes(get("blockHash", "block_hash")),
        transaction_index=_int(get("transactionIndex", "transaction_index")),
        status=_int(get("status")),
        gas_used=_int(get("gasUsed", "gas_used")),
        effective_gas_price=Wei(_int(price) if price is not None else 0),
        sender=to_checksum_address(get("from")),
        to=_address(get("to")),
        contract_address=_address(get("contractAddress", "contract_address")),
        logs=logs,
    )


class Rpc:
    """The node operations the sender needs, each retried on retryable failures.

    ``w3``'s provider decides the transport: an :class:`~web3.HTTPProvider` is driven with raw requests and
    JSON-RPC batches; any other provider (eth-tester in process, WebSocket) through ``w3.eth``.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        decoder: RevertDecoder | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        max_batch: int = 200,
    ) -> None:
        self.w3 = w3
        #: Requests per JSON-RPC batch; longer lists go out as several batches (anvil stalls on batches of
        #: a thousand raw transactions, and hosted nodes cap batch sizes).
        self.max_batch = max_batch
        self.decoder = decoder
        self.retry = retry
        self._sleep = sleep
        self._provider = w3.provider if isinstance(w3.provider, HTTPProvider) else None
        self._chain_id: int | None = None

    @property
    def raw(self) -> bool:
        """Whether requests go straight to a JSON-RPC endpoint (batches are real batches)."""
        return self._provider is not None

    # ------------------------------------------------------------------ plumbing

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        delays = self.retry.delays()
        while True:
            try:
                return fn()
            except Exception as exc:
                error = _observed(classify_rpc_error(exc, self.decoder))
                if not isinstance(error, RetryableError):
                    raise error from exc
                delay = next(delays, None)
                if delay is None:
                    raise error from exc
                logger.warning("%s failed (%s); retrying in %.2fs", what, error, delay)
                self._sleep(delay)

    def request(self, method: str, params: Sequence[Any]) -> Any:
        """One raw JSON-RPC request (HTTP nodes only); the ``result`` or a classified error."""
        provider = self._provider
        if provider is None:
            kind = type(self.w3.provider).__name__
            raise PermanentError(f"raw {method} needs a JSON-RPC endpoint, not {kind}")

        def once() -> Any:
            response = provider.make_request(method, list(params))
            if "error" in response:
                raise _with_revert(_from_rpc_error(response["error"]), response["error"], self.decoder)
            return response.get("result")

        return self._retrying(method, once)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many raw requests in one JSON-RPC batch; each item is its ``result`` or its classified error.

        Transport failures of the whole batch are retried; an error for one item is returned in its place.
        """
        provider = self._provider
        if provider is None:
            raise PermanentError("JSON-RPC batches need a JSON-RPC endpoint")
        if len(calls) > self.max_batch:  # nodes cap batch sizes (anvil refuses large ones outright)
            return [
                result
                for start in range(0, len(calls), self.max_batch)
                for result in self.batch(calls[start : start + self.max_batch])
            ]
        if not calls:
            return []

        def once() -> list[Any]:
            responses = provider.make_batch_request([(m, list(p)) for m, p in calls])  # type: ignore[misc]
            if isinstance(responses, dict):  # the whole batch was refused
                raise _from_rpc_error(responses.get("error") or {"message": str(responses)})
            by_id = sorted(responses, key=lambda r: int(r.get("id") or 0))  # some nodes reorder
            if len(by_id) != len(calls):
                raise RpcUnavailable(f"batch of {len(calls)} answered with {len(by_id)} responses")
            out: list[Any] = []
            for response in by_id:
                if "error" in response:
                    error = response["error"]
                    out.append(_observed(_with_revert(_from_rpc_error(error), error, self.decoder)))
                else:
                    out.append(response.get("result"))
            return out

        return self._retrying("batch", once)

    # ------------------------------------------------------------------ operations

    def chain_id(self) -> int:
        if self._chain_id is None:
            if self.raw:
                self._chain_id = _int(self.request("eth_chainId", []))
            else:
                self._chain_id = self._retrying("eth_chainId", lambda: self.w3.eth.chain_id)
        return self._chain_id

    def block_number(self) -> BlockNumber:
        if self.raw:
            return BlockNumber(_int(self.request("eth_blockNumber", [])))
        return self._retrying("eth_blockNumber", lambda: self.w3.eth.block_number)

    def transaction_count(self, address: str, block: str = "pending") -> int:
        if self.raw:
            return _int(self.request("eth_getTransactionCount", [address, block]))
        return self._retrying(
            "eth_getTransactionCount",
            lambda: int(self.w3.eth.get_transaction_count(to_checksum_address(address), block)),  # type: ignore[arg-type]
        )

    def base_fee(self) -> Wei:
        """The base fee of the latest block (0 on a chain without EIP-1559)."""
        if self.raw:
            block = self.request("eth_getBlockByNumber", ["latest", False])
            return Wei(_int(block.get("baseFeePerGas") or 0))
        block = self._retrying("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))
        return Wei(int(block.get("baseFeePerGas") or 0))

    def timestamp(self, block: int | str = "latest") -> int:
        """The timestamp of ``block``: the chain's clock, which is what the contracts compare with."""
        tag = _tag(block)
        if self.raw:
            return _int(self.request("eth_getBlockByNumber", [tag, False])["timestamp"])
        return int(self._retrying("eth_getBlockByNumber", lambda: self.w3.eth.get_block(block))["timestamp"])  # type: ignore[arg-type]

    def max_priority_fee(self) -> Wei:
        if self.raw:
            return Wei(_int(self.request("eth_maxPriorityFeePerGas", [])))
        return Wei(self._retrying("eth_maxPriorityFeePerGas", lambda: int(self.w3.eth.max_priority_fee)))

    def estimate_gas(self, tx: Mapping[str, Any]) -> int:
        """Gas for ``tx`` (``from``, ``to``, ``data``, ``value``); a revert raises its ContractRevert."""
        return self.estimate_gas_many([tx])[0]

    def estimate_gas_many(self, txs: Sequence[Mapping[str, Any]]) -> list[int]:
        """Gas for each of ``txs`` at the latest block (one batch on HTTP); the first revert raises its
        ContractRevert. Not at "pending", anvil's default, which re-runs the whole pool for every estimate."""
        if self.raw:
            results = self.batch([("eth_estimateGas", [_rpc_tx(tx), "latest"]) for tx in txs])
            for result in results:
                if isinstance(result, ChainError):
                    raise result
            return [_int(r) for r in results]
        return [
            self._retrying("eth_estimateGas", lambda tx=tx: int(self.w3.eth.estimate_gas(_web3_tx(tx))))  # type: ignore[misc]
            for tx in txs
        ]

    def check_many(self, txs: Sequence[Mapping[str, Any]]) -> None:
        """Runs each of ``txs`` with ``eth_call`` at the latest block (one batch on HTTP); the first revert
        raises its ContractRevert. Cheaper than an estimate when the gas limit is known."""
        if self.raw:
            for result in self.batch([("eth_call", [_rpc_tx(tx), "latest"]) for tx in txs]):
                if isinstance(result, ChainError):
                    raise result
            return
        for tx in txs:
            self.call(tx)

    def call(self, tx: Mapping[str, Any], block: int | str = "latest") -> bytes:
        """``eth_call``; a revert raises its :class:`ContractRevert`."""
        tag = _tag(block)
        if self.raw:
            return _bytes(self.request("eth_call", [_rpc_tx(tx), tag]))
        return bytes(self._retrying("eth_call", lambda: self.w3.eth.call(_web3_tx(tx), block)))  # type: ignore[arg-type]

    def code(self, address: str, block: int | str = "latest") -> bytes:
        tag = _tag(block)
        if self.raw:
            return _bytes(self.request("eth_getCode", [address, tag]))
        return bytes(
            self._retrying("eth_getCode", lambda: self.w3.eth.get_code(to_checksum_address(address), block))  # type: ignore[arg-type]
        )

    def send_raw_many(self, raws: Sequence[bytes]) -> list[bytes | ChainError]:
        """Broadcasts signed transactions (one batch on HTTP): each item is the hash or the node's error."""
        if self.raw:
            results = self.batch([("eth_sendRawTransaction", [HexBytes(r).to_0x_hex()]) for r in raws])
            return [r if isinstance(r, ChainError) else _bytes(r) for r in results]
        out: list[bytes | ChainError] = []
        for raw in raws:
            try:
                sent = self._retrying(
                    "eth_sendRawTransaction",
                    lambda raw=raw: bytes(self.w3.eth.send_raw_transaction(raw)),  # type: ignore[misc]
                )
                out.append(sent)
            except ChainError as exc:
                out.append(exc)
        return out

    def receipts(self, hashes: Sequence[bytes]) -> list[Receipt | None]:
        """The receipt of each transaction, or ``None`` while it is not mined (one batch on HTTP)."""
        if not hashes:
            return []
        if self.raw:
            results = self.batch([("eth_getTransactionReceipt", [HexBytes(h).to_0x_hex()]) for h in hashes])
            out: list[Receipt | None] = []
            for result in results:
                if isinstance(result, ChainError):
                    raise result
                out.append(None if result is None else receipt_from_rpc(result))
            return out
        return [self._receipt_via_web3(h) for h in hashes]

    def _receipt_via_web3(self, tx_hash: bytes) -> Receipt | None:
        from web3.exceptions import TransactionNotFound

        def once() -> Receipt | None:
            try:
                return receipt_from_rpc(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                return None

        return self._retrying("eth_getTransactionReceipt", once)

    def logs(
        self, address: str, topics: Sequence[Sequence[bytes] | None], from_block: int, to_block: int
    ) -> list[Mapping[str, Any]]:
        """``eth_getLogs`` of ``address`` under ``topics`` (one list of alternatives per position, ``None``:
        any) over ``[from_block, to_block]``, as the node answered (removed logs left out); a range the node
        finds too large is halved until it answers."""
        if from_block > to_block:
            return []
        try:
            answer = self._get_logs(address, topics, from_block, to_block)
        except RangeTooLarge:
            if from_block == to_block:
                raise
            middle = (from_block + to_block) // 2
            return [
                *self.logs(address, topics, from_block, middle),
                *self.logs(address, topics, middle + 1, to_block),
            ]
        return [item for item in answer if not item.get("removed")]

    def _get_logs(
        self, address: str, topics: Sequence[Sequence[bytes] | None], from_block: int, to_block: int
    ) -> list[Mapping[str, Any]]:
        # Topics as 0x-hex text on both paths: eth-tester's filter matches no HexBytes topic.
        hex_topics = [None if group is None else [HexBytes(t).to_0x_hex() for t in group] for group in topics]
        if self.raw:
            query = {
                "address": address,
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "topics": hex_topics,
            }
            return list(self.request("eth_getLogs", [query]) or [])
        try:
            return list(
                self.w3.eth.get_logs(
                    {
                        "address": to_checksum_address(address),
                        "fromBlock": from_block,
                        "toBlock": to_block,
                        "topics": hex_topics,
                    }
                )
            )
        except ChainError as exc:
            _observed(exc)
            raise
        except Exception as exc:
            raise _observed(classify_rpc_error(exc, self.decoder)) from exc

    def block_hash(self, number: int) -> bytes | None:
        if self.raw:
            block = self.request("eth_getBlockByNumber", [hex(number), False])
            return None if block is None else _bytes(block["hash"])
        block = self._retrying("eth_getBlockByNumber", lambda: self.w3.eth.get_block(number))
        return bytes(block["hash"])


def _with_revert(error: ChainError, raw: Mapping[str, Any], decoder: RevertDecoder | None) -> ChainError:
    """A JSON-RPC error that carries revert data becomes the decoded :class:`ContractRevert`."""
    data = raw.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if decoder is not None and isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        return decoder.decode(bytes(HexBytes(data)))
    if decoder is not None and "revert" in str(raw.get("message", "")).lower():
        revert: ContractRevert = decoder.decode(b"")
        return revert
    return error


def _rpc_tx(tx: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tx.items():
        if isinstance(value, bytes | bytearray):
            out[key] = HexBytes(value).to_0x_hex()
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = hex(value)
        else:
            out[key] = value
    return out


def _web3_tx(tx: Mapping[str, Any]) -> Any:
    out = dict(tx)
    for key in ("from", "to"):
        if out.get(key):
            out[key] = to_checksum_address(out[key])
    if isinstance(out.get("data"), bytes | bytearray):
        out["data"] = HexBytes(out["data"]).to_0x_hex()
    return out
