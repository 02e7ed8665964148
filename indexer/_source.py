"""What the indexer reads from the node: heads, block headers, raw logs and view calls.

On an HTTP node every read is a raw JSON-RPC request or batch (no web3 formatters); on the in-process
eth-tester chain the same reads go through ``w3.eth`` and are turned into the node's JSON shapes, so the
decoder sees one format. Errors are the chain layer's classified ones; this class does not retry (the sync
loop does, and shrinks its ranges while it is at it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from chain import RetryPolicy, Rpc
from chain._rpc import classify_rpc_error

from ._store import BlockRow

__all__ = ["LogSource"]


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, int):
        return hex(value)
    return str(value)


class LogSource:
    def __init__(self, w3: Web3, *, max_batch: int = 200) -> None:
        self.w3 = w3
        # One attempt: the sync loop owns retries (it backs off and shrinks ranges).
        self.rpc = Rpc(w3, retry=RetryPolicy(attempts=1), max_batch=max_batch)

    def _web3(self, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise classify_rpc_error(exc) from exc

    def head(self) -> int:
        return int(self.rpc.block_number())

    def chain_id(self) -> int:
        return self.rpc.chain_id()

    def headers(self, numbers: Sequence[int]) -> list[BlockRow | None]:
        """The node's blocks at ``numbers`` (``None`` where it has none), in one batch."""
        if not numbers:
            return []
        if self.rpc.raw:
            answers = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        else:
            answers = [self._web3(lambda n=n: _block_or_none(self.w3, n)) for n in numbers]
        out: list[BlockRow | None] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            out.append(None if answer is None else _block_row(answer))
        return out

    def logs(
        self, address: str | Sequence[str], topics: Sequence[str], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        """Raw ``eth_getLogs`` of ``address`` (or of any of several addresses) under any of ``topics``
        (topic0), in on-chain order."""
        query = {
            "address": address if isinstance(address, str) else list(address),
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
            "topics": [list(topics)],
        }
        if self.rpc.raw:
            result: list[dict[str, Any]] = self.rpc.request("eth_getLogs", [query])
            return result
        logs = self._web3(
            lambda: self.w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(address)
                    if isinstance(address, str)
                    else [Web3.to_checksum_address(a) for a in address],
                    "fromBlock": from_block,
                    "toBlock": to_block,
                    "topics": [list(topics)],
                }
            )
        )
        return [_log_json(log) for log in logs]

    def call(self, to: str, data: bytes, block: int | str) -> bytes:
        return self.rpc.call({"to": Web3.to_checksum_address(to), "data": data}, block)

    def calls(self, to: str, datas: Sequence[bytes], block: int) -> list[bytes]:
        """Many ``eth_call``s at one block, batched on HTTP nodes."""
        if not self.rpc.raw:
            return [self.call(to, data, block) for data in datas]
        answers = self.rpc.batch(
            [("eth_call", [{"to": to, "data": "0x" + d.hex()}, hex(block)]) for d in datas]
        )
        out = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            out.append(bytes.fromhex(str(answer)[2:]))
        return out


def _block_or_none(w3: Web3, number: int) -> Any:
    from web3.exceptions import BlockNotFound

    try:
        return w3.eth.get_block(number)
    except BlockNotFound:
        return None


def _block_row(block: Mapping[str, Any]) -> BlockRow:
    def raw(name: str) -> Any:
        return block[name]

    number, hash_, parent, stamp = raw("number"), raw("hash"), raw("parentHash"), raw("timestamp")
    return BlockRow(
        number=int(number, 16) if isinstance(number, str) else int(number),
        hash=bytes.fromhex(hash_[2:]) if isinstance(hash_, str) else bytes(hash_),
        parent_hash=bytes.fromhex(parent[2:]) if isinstance(parent, str) else bytes(parent),
        timestamp=int(stamp, 16) if isinstance(stamp, str) else int(stamp),
    )


def _log_json(log: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "address": str(log["address"]),
        "topics": [_hex(HexBytes(t)) for t in log["topics"]],
        "data": _hex(HexBytes(log["data"])),
        "blockNumber": _hex(log["blockNumber"]),
        "blockHash": _hex(HexBytes(log["blockHash"])),
        "transactionHash": _hex(HexBytes(log["transactionHash"])),
        "transactionIndex": _hex(log["transactionIndex"]),
        "logIndex": _hex(log["logIndex"]),
        "removed": bool(log.get("removed", False)),
    }
