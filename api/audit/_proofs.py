"""Proofs an auditor checks against a block hash alone: that an entry is in the chain, and what a balance is.

A mirror, an explorer or this service can each be wrong or lie; a block hash is the one thing a customer, a
partner or a regulator can get from many places and compare. This module turns the node's answers into
Merkle-Patricia proofs that lead from a block's header to the fact in question, and checks them from the proof
nodes alone (the node that produced them is not needed, nor trusted, to verify):

* :func:`prove_entry` / :func:`verify_entry_proof`: a ledger entry (one event log) is in the receipt of
  transaction ``i`` of block ``n``, under the header's ``receiptsRoot``. The prover rebuilds the block's whole
  receipts trie from the node's receipts and checks it against the header before extracting the branch.
* :func:`prove_balance` / :func:`verify_balance_proof`: an account's balance at block ``n``, from the ledger
  account in the state trie (under the header's ``stateRoot``) and the account's live buckets in the ledger's
  storage trie (``eth_getProof``). The epochs read are the live ones at that block (``currentEpoch()`` and
  ``validityDuration()`` by ``eth_call``; the clock depends on the block's time and the ledger's code, which
  the proof does not cover: an auditor who doubts them recomputes them from the deployment's parameters).

Both proofs carry the block's RLP-encoded header when it hashes to the block hash (anvil's Prague headers
and Ethereum's do), which ties the root to the block hash: a verifier given ``block_hash`` checks that too.

Storage: ``mapping(address account => mapping(uint256 slot => Bucket)) _buckets`` is state variable
:data:`BUCKETS_SLOT` of LedgerBase; the bucket of epoch ``e`` is at
``keccak(pad32(e % validity) ‖ keccak(pad32(account) ‖ pad32(BUCKETS_SLOT)))`` and packs
``Bucket { uint64 epoch; uint192 amount; }`` as epoch in the low 64 bits, amount above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import rlp  # type: ignore[import-untyped]
from eth_utils.address import to_checksum_address
from rlp.exceptions import RLPException  # type: ignore[import-untyped]
from trie.exceptions import BadTrieProof, InvalidNode, MissingTrieNode, ValidationError
from trie.hexary import HexaryTrie

from chain import BlockNumber, Epoch, Points, Rpc, RpcError

from ._decode import keccak, shapes
from ._errors import AuditError, NodeError, ProofError

__all__ = [
    "BUCKETS_SLOT",
    "BalanceProof",
    "BucketProof",
    "EntryNotFound",
    "EntryProof",
    "bucket_storage_slot",
    "encode_header",
    "encode_receipt",
    "prove_balance",
    "prove_entry",
    "verify_balance_proof",
    "verify_entry_proof",
]

#: The declared slot of ``_buckets`` in LedgerBase's storage layout (solc's ``storageLayout``; a test checks
#: it against a fresh compile, so a new state variable declared before it cannot go unnoticed).
BUCKETS_SLOT: Final = 10

#: OP Stack deposit transactions (``0x7e``): their receipts add the deposit nonce and receipt version.
_DEPOSIT_TX_TYPE: Final = 0x7E

_LEDGER_SEQUENCE: Final = keccak(b"ledgerSequence()")[:4]
_CURRENT_EPOCH: Final = keccak(b"currentEpoch()")[:4]
_VALIDITY_DURATION: Final = keccak(b"validityDuration()")[:4]
_ENTRY_TOPICS: Final = frozenset(shapes())
_UINT64: Final = (1 << 64) - 1
_FORMAT: Final = 1

# Header fields in RLP order: the 15 of every header, then the ones forks appended (London, Shanghai, Cancun,
# Prague), each present only if all before it are.
_HEADER_FIELDS: Final = (
    ("parentHash", False),
    ("sha3Uncles", False),
    ("miner", False),
    ("stateRoot", False),
    ("transactionsRoot", False),
    ("receiptsRoot", False),
    ("logsBloom", False),
    ("difficulty", True),
    ("number", True),
    ("gasLimit", True),
    ("gasUsed", True),
    ("timestamp", True),
    ("extraData", False),
    ("mixHash", False),
    ("nonce", False),
)
_HEADER_FORK_FIELDS: Final = (
    ("baseFeePerGas", True),
    ("withdrawalsRoot", False),
    ("blobGasUsed", True),
    ("excessBlobGas", True),
    ("parentBeaconBlockRoot", False),
    ("requestsHash", False),
)
_STATE_ROOT, _RECEIPTS_ROOT, _NUMBER = 3, 5, 8  # positions in the header's RLP list


class EntryNotFound(AuditError):
    """No ledger entry answers the request: a sequence number beyond the ledger's head, an unknown
    transaction, or a log that is not one of the ledger's entries."""


# --------------------------------------------------------------------------- the proofs


@dataclass(frozen=True, slots=True)
class EntryProof:
    """A ledger entry and the branch of its block's receipts trie that holds its receipt.

    ``nodes`` are the RLP-encoded trie nodes from the root to the receipt's leaf; ``receipt`` is the receipt
    as the trie stores it (``type ‖ rlp([status, cumulativeGasUsed, logsBloom, logs])``, no type byte for
    legacy receipts); the entry is log ``receipt_log_index`` of it (``log_index`` in the whole block, which
    the proof does not cover: it counts the logs of the other receipts). ``header`` is the block's RLP header,
    or ``None`` when the node's header fields do not hash to its block hash.
    """

    ledger: str
    block_number: BlockNumber
    block_hash: bytes
    receipts_root: bytes
    header: bytes | None
    tx_hash: bytes
    tx_index: int
    log_index: int
    receipt_log_index: int
    receipt: bytes
    nodes: tuple[bytes, ...]
    topics: tuple[bytes, ...]
    data: bytes
    seq: int
    entry_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "entry",
            "format": _FORMAT,
            "ledger": self.ledger,
            "blockNumber": self.block_number,
            "blockHash": _hex(self.block_hash),
            "receiptsRoot": _hex(self.receipts_root),
            "header": None if self.header is None else _hex(self.header),
            "transactionHash": _hex(self.tx_hash),
            "transactionIndex": self.tx_index,
            "logIndex": self.log_index,
            "receiptLogIndex": self.receipt_log_index,
            "receipt": _hex(self.receipt),
            "nodes": [_hex(n) for n in self.nodes],
            "topics": [_hex(t) for t in self.topics],
            "data": _hex(self.data),
            "seq": self.seq,
            "entryHash": _hex(self.entry_hash),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntryProof:
        """The proof :meth:`to_json` wrote; :class:`ProofError` if ``data`` is not one."""
        return _parsing(
            lambda: cls(
                ledger=_address(data, "ledger"),
                block_number=BlockNumber(_count(data, "blockNumber")),
                block_hash=_field(data, "blockHash", 32),
                receipts_root=_field(data, "receiptsRoot", 32),
                header=None if data.get("header") is None else _field(data, "header"),
                tx_hash=_field(data, "transactionHash", 32),
                tx_index=_count(data, "transactionIndex"),
                log_index=_count(data, "logIndex"),
                receipt_log_index=_count(data, "receiptLogIndex"),
                receipt=_field(data, "receipt"),
                nodes=tuple(_unhex(n) for n in data["nodes"]),
                topics=tuple(_unhex(t, 32) for t in data["topics"]),
                data=_field(data, "data"),
                seq=_count(data, "seq"),
                entry_hash=_field(data, "entryHash", 32),
            ),
            "entry",
            data,
        )


@dataclass(frozen=True, slots=True)
class BucketProof:
    """One bucket of the account: the live ``epoch`` it is read for, its storage ``slot``, the slot's
    ``value`` (0 when never written) and the RLP-encoded storage trie nodes from the storage root to it."""

    epoch: Epoch
    slot: bytes
    value: int
    nodes: tuple[bytes, ...]

    @property
    def amount(self) -> Points:
        """The points of :attr:`epoch` the bucket holds (0 if it still holds an older epoch)."""
        return Points(self.value >> 64 if self.value & _UINT64 == self.epoch else 0)


@dataclass(frozen=True, slots=True)
class BalanceProof:
    """An account's balance at a block: the ledger account's branch of the state trie (its ``storage_root``)
    and, for each live epoch, the branch of the ledger's storage trie to the account's bucket."""

    ledger: str
    account: str
    block_number: BlockNumber
    block_hash: bytes
    state_root: bytes
    header: bytes | None
    current_epoch: Epoch
    validity: int
    account_nodes: tuple[bytes, ...]
    storage_root: bytes
    buckets: tuple[BucketProof, ...]
    balance: Points

    @property
    def epochs(self) -> tuple[Epoch, ...]:
        """The live epochs at the block, oldest first."""
        return tuple(b.epoch for b in self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "balance",
            "format": _FORMAT,
            "ledger": self.ledger,
            "account": self.account,
            "blockNumber": self.block_number,
            "blockHash": _hex(self.block_hash),
            "stateRoot": _hex(self.state_root),
            "header": None if self.header is None else _hex(self.header),
            "currentEpoch": self.current_epoch,
            "validity": self.validity,
            "accountNodes": [_hex(n) for n in self.account_nodes],
            "storageRoot": _hex(self.storage_root),
            "buckets": [
                {
                    "epoch": b.epoch,
                    "slot": _hex(b.slot),
                    "value": hex(b.value),
                    "nodes": [_hex(n) for n in b.nodes],
                }
                for b in self.buckets
            ],
            "balance": self.balance,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BalanceProof:
        """The proof :meth:`to_json` wrote; :class:`ProofError` if ``data`` is not one."""
        return _parsing(
            lambda: cls(
                ledger=_address(data, "ledger"),
                account=_address(data, "account"),
                block_number=BlockNumber(_count(data, "blockNumber")),
                block_hash=_field(data, "blockHash", 32),
                state_root=_field(data, "stateRoot", 32),
                header=None if data.get("header") is None else _field(data, "header"),
                current_epoch=Epoch(_count(data, "currentEpoch")),
                validity=_count(data, "validity"),
                account_nodes=tuple(_unhex(n) for n in data["accountNodes"]),
                storage_root=_field(data, "storageRoot", 32),
                buckets=tuple(
                    BucketProof(
                        epoch=Epoch(_count(b, "epoch")),
                        slot=_field(b, "slot", 32),
                        value=int(str(b["value"]), 16),
                        nodes=tuple(_unhex(n) for n in b["nodes"]),
                    )
                    for b in data["buckets"]
                ),
                balance=Points(_count(data, "balance")),
            ),
            "balance",
            data,
        )


# --------------------------------------------------------------------------- entries


def prove_entry(
    rpc: Rpc,
    ledger: str,
    *,
    seq: int | None = None,
    tx_hash: str | None = None,
    log_index: int | None = None,
) -> EntryProof:
    """The receipt proof of ledger entry ``seq``, or of the entry that is log ``log_index`` (its position in
    the block, JSON-RPC's ``logIndex``) of transaction ``tx_hash``. Give ``seq`` or both of the others.

    Finds the entry's block by bisecting ``ledgerSequence()`` over historical state (the first block whose
    sequence reaches ``seq``), rebuilds that block's receipts trie from the node's receipts and checks it
    against the header's ``receiptsRoot`` before taking the branch. The proof is verified before it is
    returned.

    Raises :class:`EntryNotFound` (no such entry), :class:`NodeError` (the node's receipts do not rebuild its
    header's root, or changed between calls) and the chain layer's RPC errors. ``rpc`` must reach a JSON-RPC
    endpoint (raw requests: ``eth_getProof`` and ``eth_getBlockReceipts`` have no web3 method to go through).
    """
    address = to_checksum_address(ledger)
    if (seq is None) == (tx_hash is None) or (tx_hash is None) != (log_index is None):
        raise ValueError("prove_entry takes seq, or tx_hash and log_index")
    if seq is not None:
        number = _block_of_sequence(rpc, address, seq)
    else:
        located = rpc.request("eth_getTransactionReceipt", [tx_hash])
        if located is None:
            raise EntryNotFound(f"the node knows no mined transaction {tx_hash}")
        number = _int(located["blockNumber"])
    block = rpc.request("eth_getBlockByNumber", [hex(number), False])
    receipts = _block_receipts(rpc, block)

    trie = HexaryTrie({})
    found: tuple[int, int, int] | None = None  # (tx index, log index in the block, log index in the receipt)
    position = 0
    for index, receipt in enumerate(receipts):
        trie[rlp.encode(index)] = encode_receipt(receipt)
        for i, log in enumerate(receipt["logs"]):
            if seq is not None:
                wanted = _is_entry(log, address) and int.from_bytes(_bytes(log["data"])[:32]) == seq
            else:
                wanted = position == log_index and _same_hash(receipt["transactionHash"], tx_hash)
            if wanted and found is None:
                found = (index, position, i)
            position += 1
    root = _bytes(block["receiptsRoot"])
    if trie.root_hash != root:
        raise NodeError(f"the node's receipts of block {number} do not rebuild its receiptsRoot {_hex(root)}")
    if found is None:
        what = f"entry {seq}" if seq is not None else f"log {log_index} of transaction {tx_hash}"
        raise EntryNotFound(f"no {what} in block {number}")
    index, position, in_receipt = found
    log = receipts[index]["logs"][in_receipt]
    if not _is_entry(log, address):
        raise EntryNotFound(
            f"log {log_index} of transaction {tx_hash} is not an entry of the ledger {address}"
        )
    topics = tuple(_bytes(t) for t in log["topics"])
    data = _bytes(log["data"])
    key = rlp.encode(index)
    proof = EntryProof(
        ledger=address,
        block_number=BlockNumber(number),
        block_hash=_bytes(block["hash"]),
        receipts_root=root,
        header=_header_if_it_hashes(block),
        tx_hash=_bytes(receipts[index]["transactionHash"]),
        tx_index=index,
        log_index=position,
        receipt_log_index=in_receipt,
        receipt=trie[key],
        nodes=tuple(rlp.encode(node) for node in trie.get_proof(key)),  # type: ignore[no-untyped-call]
        topics=topics,
        data=data,
        seq=int.from_bytes(data[:32]),
        entry_hash=keccak(b"".join(topics) + data),
    )
    verify_entry_proof(proof, root)
    return proof


def verify_entry_proof(proof: EntryProof, receipts_root: bytes, *, block_hash: bytes | None = None) -> None:
    """Checks ``proof`` from its nodes alone: the receipt is the trie's value for transaction ``tx_index``
    under ``receipts_root``, its log ``receipt_log_index`` is the entry (address, topics, data) with ``seq``
    and ``entry_hash``; when the proof carries the header, that it hashes to the block hash and names this
    root. With ``block_hash``, the proof must carry a header of that hash. Raises :class:`ProofError`.
    """
    if proof.receipts_root != receipts_root:
        raise ProofError(
            f"the proof is for receiptsRoot {_hex(proof.receipts_root)}, not {_hex(receipts_root)}"
        )
    _check_header(
        proof.header, proof.block_hash, proof.block_number, _RECEIPTS_ROOT, receipts_root, block_hash
    )
    value = _trie_value(receipts_root, rlp.encode(proof.tx_index), proof.nodes, "receipts")
    if value != proof.receipt:
        raise ProofError(f"the receipts trie holds another receipt for transaction {proof.tx_index}")
    logs = _receipt_logs(proof.receipt)
    if not 0 <= proof.receipt_log_index < len(logs):
        raise ProofError(f"the receipt has {len(logs)} logs, no log {proof.receipt_log_index}")
    expected = [_address_bytes(proof.ledger), list(proof.topics), proof.data]
    if logs[proof.receipt_log_index] != expected:
        raise ProofError(f"log {proof.receipt_log_index} of the receipt is not the proof's entry")
    if not proof.topics or proof.topics[0] not in _ENTRY_TOPICS or len(proof.data) < 32:
        raise ProofError("the proven log is not a ledger entry")
    if int.from_bytes(proof.data[:32]) != proof.seq:
        raise ProofError(f"the entry's seq word is {int.from_bytes(proof.data[:32])}, not {proof.seq}")
    if keccak(b"".join(proof.topics) + proof.data) != proof.entry_hash:
        raise ProofError("the entry hash is not keccak(topics ‖ data) of the proven log")


def encode_receipt(receipt: Mapping[str, Any]) -> bytes:
    """A JSON-RPC receipt as the receipts trie stores it (EIP-2718 ``type ‖ rlp(fields)``, legacy untyped)."""
    kind = _int(receipt.get("type") or 0)
    status = receipt.get("status")
    # Since Byzantium a status; before it the post-transaction state root.
    outcome: int | bytes = _int(status) if status is not None else _bytes(receipt["root"])
    logs = [
        [_bytes(log["address"]), [_bytes(t) for t in log["topics"]], _bytes(log["data"])]
        for log in receipt["logs"]
    ]
    fields: list[Any] = [outcome, _int(receipt["cumulativeGasUsed"]), _bytes(receipt["logsBloom"]), logs]
    if kind == _DEPOSIT_TX_TYPE:  # op-geth: both optional, in this order (Regolith, Canyon)
        for name in ("depositNonce", "depositReceiptVersion"):
            if receipt.get(name) is None:
                break
            fields.append(_int(receipt[name]))
    body: bytes = rlp.encode(fields)
    return body if kind == 0 else bytes([kind]) + body


def _block_of_sequence(rpc: Rpc, ledger: str, seq: int) -> int:
    """The first block whose state has ``ledgerSequence() >= seq``: the block that emitted entry ``seq``."""
    latest = _int(rpc.request("eth_blockNumber", []))
    head = _sequence_at(rpc, ledger, latest)
    if not 1 <= seq <= head:
        raise EntryNotFound(f"the ledger {ledger} has entries 1 to {head} at block {latest}, not {seq}")
    low, high = 0, latest
    while low < high:
        middle = (low + high) // 2
        if _sequence_at(rpc, ledger, middle) >= seq:
            high = middle
        else:
            low = middle + 1
    return low


def _sequence_at(rpc: Rpc, ledger: str, block: int) -> int:
    # Before the ledger's deployment there is no code at its address: the call returns nothing.
    return _call_uint(rpc, ledger, _LEDGER_SEQUENCE, block, default=0)


def _block_receipts(rpc: Rpc, block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The receipts of ``block``'s transactions in order: ``eth_getBlockReceipts``, or one
    ``eth_getTransactionReceipt`` each (in a batch) where the node lacks it."""
    hashes = list(block["transactions"])
    receipts: list[Mapping[str, Any]] | None
    try:
        receipts = list(rpc.request("eth_getBlockReceipts", [block["number"]]) or [])
    except RpcError:  # not supported (method not found, or refused on this node): one by one
        receipts = None
    if receipts is None:
        answers = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]) if hashes else []
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        receipts = list(answers)
    if len(receipts) != len(hashes) or any(
        r is None or not _same_hash(r["transactionHash"], h) or not _same_hash(r["blockHash"], block["hash"])
        for r, h in zip(receipts, hashes, strict=False)
    ):
        raise NodeError(
            f"the node's receipts of block {_int(block['number'])} are not its transactions' receipts"
        )
    return receipts


def _is_entry(log: Mapping[str, Any], ledger: str) -> bool:
    topics = log["topics"]
    return (
        bool(topics)
        and _same_address(log["address"], ledger)
        and _bytes(topics[0]) in _ENTRY_TOPICS
        and len(_bytes(log["data"])) >= 32
    )


def _receipt_logs(receipt: bytes) -> list[Any]:
    """The logs of an encoded receipt (typed: a first byte below 0x80; legacy: an RLP list)."""
    body = receipt[1:] if receipt and receipt[0] < 0x80 else receipt
    try:
        fields = rlp.decode(body)
    except RLPException as exc:
        raise ProofError(f"the receipt is not RLP: {exc}") from exc
    if not isinstance(fields, list) or len(fields) < 4 or not isinstance(fields[3], list):
        raise ProofError("the receipt is not [status, cumulativeGasUsed, logsBloom, logs, ...]")
    return fields[3]


# --------------------------------------------------------------------------- balances


def bucket_storage_slot(account: str, index: int, buckets_slot: int = BUCKETS_SLOT) -> bytes:
    """The storage slot of ``_buckets[account][index]`` (Solidity's mapping layout, one level per key)."""
    outer = keccak(_address_bytes(account).rjust(32, b"\x00") + buckets_slot.to_bytes(32))
    return keccak(index.to_bytes(32) + outer)


def prove_balance(
    rpc: Rpc,
    ledger: str,
    account: str,
    *,
    block: int | None = None,
    buckets_slot: int = BUCKETS_SLOT,
) -> BalanceProof:
    """The proof of ``account``'s balance at ``block`` (default: the latest): the state and storage trie
    branches (``eth_getProof``) of the account's bucket of every live epoch. The proof is verified before it
    is returned. Raises :class:`NodeError` when the node's answers do not agree, and the RPC errors.
    """
    address, holder = to_checksum_address(ledger), to_checksum_address(account)
    header = rpc.request("eth_getBlockByNumber", ["latest" if block is None else hex(block), False])
    if header is None:
        raise NodeError(f"the node has no block {block}")
    number = _int(header["number"])
    current = _call_uint(rpc, address, _CURRENT_EPOCH, number)
    validity = _call_uint(rpc, address, _VALIDITY_DURATION, number)
    if validity == 0:
        raise NodeError(f"{address} answered validityDuration() = 0 at block {number}: is it the ledger?")
    epochs = _live_epochs(current, validity)
    slots = [bucket_storage_slot(holder, e % validity, buckets_slot) for e in epochs]
    answer = rpc.request("eth_getProof", [address, [_hex(s) for s in slots], hex(number)])
    storage = answer["storageProof"]
    if len(storage) != len(slots) or any(
        _int(item["key"]) != int.from_bytes(slot) for item, slot in zip(storage, slots, strict=False)
    ):
        raise NodeError("the node's eth_getProof answered for other storage slots than asked")
    draft = BalanceProof(
        ledger=address,
        account=holder,
        block_number=BlockNumber(number),
        block_hash=_bytes(header["hash"]),
        state_root=_bytes(header["stateRoot"]),
        header=_header_if_it_hashes(header),
        current_epoch=Epoch(current),
        validity=validity,
        account_nodes=tuple(_bytes(n) for n in answer["accountProof"]),
        storage_root=_bytes(answer["storageHash"]),
        buckets=tuple(
            BucketProof(Epoch(e), slot, _int(item["value"]), tuple(_bytes(n) for n in item["proof"]))
            for e, slot, item in zip(epochs, slots, storage, strict=True)
        ),
        balance=Points(0),
    )
    proof = replace(draft, balance=Points(sum(b.amount for b in draft.buckets)))
    verify_balance_proof(proof, proof.state_root, buckets_slot=buckets_slot)
    return proof


def verify_balance_proof(
    proof: BalanceProof,
    state_root: bytes,
    *,
    block_hash: bytes | None = None,
    buckets_slot: int = BUCKETS_SLOT,
) -> Points:
    """Checks ``proof`` from its nodes alone and returns the balance: the ledger's account under
    ``state_root`` has the proof's storage root; every bucket slot is the account's slot of its epoch, and
    its value is what the storage trie holds there (zero when absent); the epochs are the live ones at
    ``current_epoch``; the balance is the sum of the buckets that hold their epoch. When the proof carries the
    header, it must hash to the block hash and name this root; with ``block_hash``, it must be that block's.
    Raises :class:`ProofError`.
    """
    if proof.state_root != state_root:
        raise ProofError(f"the proof is for stateRoot {_hex(proof.state_root)}, not {_hex(state_root)}")
    _check_header(proof.header, proof.block_hash, proof.block_number, _STATE_ROOT, state_root, block_hash)
    encoded = _trie_value(state_root, keccak(_address_bytes(proof.ledger)), proof.account_nodes, "state")
    if not encoded:
        raise ProofError(f"the state trie under {_hex(state_root)} has no account {proof.ledger}")
    account = _decode(encoded, "the ledger's account")
    if not isinstance(account, list) or len(account) != 4 or account[2] != proof.storage_root:
        raise ProofError(f"the ledger's account does not have the storage root {_hex(proof.storage_root)}")
    if proof.validity < 1 or list(proof.epochs) != _live_epochs(proof.current_epoch, proof.validity):
        raise ProofError(
            f"the epochs {list(proof.epochs)} are not the live ones at epoch {proof.current_epoch}"
        )
    for bucket in proof.buckets:
        expected_slot = bucket_storage_slot(proof.account, bucket.epoch % proof.validity, buckets_slot)
        if bucket.slot != expected_slot:
            raise ProofError(
                f"slot {_hex(bucket.slot)} is not {proof.account}'s bucket of epoch {bucket.epoch}"
            )
        stored = _trie_value(proof.storage_root, keccak(bucket.slot), bucket.nodes, "storage")
        value = _storage_word(stored) if stored else 0
        if value != bucket.value:
            raise ProofError(
                f"the storage trie holds {hex(value)} at {_hex(bucket.slot)}, not {hex(bucket.value)}"
            )
    balance = Points(sum(b.amount for b in proof.buckets))
    if balance != proof.balance:
        raise ProofError(f"the buckets hold {balance} points, not the proof's {proof.balance}")
    return balance


def _live_epochs(current: int, validity: int) -> list[int]:
    """``validity`` epochs ending at ``current`` (fewer near genesis), as ``balanceOf`` sums them."""
    return list(range(max(0, current + 1 - validity), current + 1))


def _storage_word(stored: bytes) -> int:
    word = _decode(stored, "a storage value")
    if not isinstance(word, bytes) or not word or word[0] == 0 or len(word) > 32:
        raise ProofError("a storage value is not a canonical RLP-encoded word")
    return int.from_bytes(word)


# --------------------------------------------------------------------------- tries and headers


def _trie_value(root: bytes, key: bytes, nodes: Sequence[bytes], trie_name: str) -> bytes:
    """The value under ``key`` in the trie of ``root`` built from ``nodes`` alone (b"" proves absence)."""
    try:
        raw_nodes = [rlp.decode(node) for node in nodes]
        value = HexaryTrie.get_from_proof(root, key, raw_nodes)  # type: ignore[no-untyped-call]
    except (BadTrieProof, MissingTrieNode, InvalidNode, ValidationError, RLPException) as exc:
        raise ProofError(f"the {trie_name} proof does not lead from root {_hex(root)}: {exc}") from exc
    except (IndexError, TypeError, ValueError) as exc:  # a node of the wrong shape, deep in the trie library
        raise ProofError(f"the {trie_name} proof has a malformed node: {exc}") from exc
    if not isinstance(value, bytes):
        raise ProofError(f"the {trie_name} proof leads to no value")
    return value


def encode_header(block: Mapping[str, Any]) -> bytes | None:
    """The RLP header of a JSON-RPC block, or ``None`` when a fork field is missing before a present one."""
    fields: list[int | bytes] = [_header_field(block, name, numeric) for name, numeric in _HEADER_FIELDS]
    present = [block.get(name) is not None for name, _ in _HEADER_FORK_FIELDS]
    count = present.index(False) if False in present else len(present)
    if any(present[count:]):
        return None
    fields += [_header_field(block, name, numeric) for name, numeric in _HEADER_FORK_FIELDS[:count]]
    header: bytes = rlp.encode(fields)
    return header


def _header_if_it_hashes(block: Mapping[str, Any]) -> bytes | None:
    # anvil (1.7, Prague) and Ethereum's clients hash exactly these fields; a chain whose header has fields
    # this encoding does not know (some L2s) gets no header in its proofs rather than a wrong one.
    header = encode_header(block)
    return header if header is not None and keccak(header) == _bytes(block["hash"]) else None


def _check_header(
    header: bytes | None,
    proven_hash: bytes,
    number: int,
    root_position: int,
    root: bytes,
    block_hash: bytes | None,
) -> None:
    if block_hash is not None and (header is None or proven_hash != block_hash):
        raise ProofError(f"the proof carries no header of block {_hex(block_hash)}")
    if header is None:
        return
    if keccak(header) != proven_hash:
        raise ProofError(f"the proof's header does not hash to its block hash {_hex(proven_hash)}")
    fields = _decode(header, "the header")
    if not isinstance(fields, list) or len(fields) < len(_HEADER_FIELDS):
        raise ProofError("the proof's header is not a block header")
    if fields[root_position] != root:
        raise ProofError(f"block {_hex(proven_hash)}'s header names another root than {_hex(root)}")
    if int.from_bytes(fields[_NUMBER]) != number:
        raise ProofError(f"the proof's header is of block {int.from_bytes(fields[_NUMBER])}, not {number}")


def _header_field(block: Mapping[str, Any], name: str, numeric: bool) -> int | bytes:
    return _int(block[name]) if numeric else _bytes(block[name])


# --------------------------------------------------------------------------- small helpers


T = TypeVar("T")


def _call_uint(rpc: Rpc, ledger: str, selector: bytes, block: int, *, default: int | None = None) -> int:
    result = _bytes(rpc.request("eth_call", [{"to": ledger, "data": _hex(selector)}, hex(block)]))
    if len(result) < 32:
        if default is not None and not result:
            return default
        raise NodeError(f"{ledger} answered {_hex(result)} to {_hex(selector)} at block {block}")
    return int.from_bytes(result[:32])


def _decode(encoded: bytes, what: str) -> Any:
    try:
        return rlp.decode(encoded)
    except RLPException as exc:
        raise ProofError(f"{what} is not RLP: {exc}") from exc


def _parsing(build: Callable[[], T], kind: str, data: Mapping[str, Any]) -> T:
    if not isinstance(data, Mapping) or data.get("kind") != kind or data.get("format") != _FORMAT:
        raise ProofError(f"not a {kind} proof of format {_FORMAT}")
    try:
        return build()
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"a malformed {kind} proof: {type(exc).__name__} {exc}") from exc


def _field(data: Mapping[str, Any], name: str, length: int | None = None) -> bytes:
    return _unhex(data[name], length)


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a non-negative integer")
    return value


def _address(data: Mapping[str, Any], name: str) -> str:
    return str(to_checksum_address(str(data[name])))


def _unhex(value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{value!r} is not a 0x-prefixed hex string")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise ValueError(f"{value} is not {length} bytes long")
    return raw


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value).removeprefix("0x")
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return int.from_bytes(value)
    return int(str(value), 16)


def _address_bytes(address: str) -> bytes:
    return bytes.fromhex(address.removeprefix("0x"))


def _same_address(a: Any, b: str) -> bool:
    return str(a).lower() == b.lower()


def _same_hash(a: Any, b: Any) -> bool:
    return _bytes(a) == _bytes(b)
