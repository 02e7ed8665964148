"""The Merkle tree of a batch's items, as the ledger computes it on chain and as OpenZeppelin's
``@openzeppelin/merkle-tree`` ``StandardMerkleTree.of(items, ["address", "uint256", "bytes32"],
{sortLeaves: false})`` builds it: leaf = ``keccak256(keccak256(abi.encode(recipient, amount, itemRef)))``,
nodes hashed as sorted pairs (``MerkleProof``-compatible), the tree kept as an array in which node ``i`` has
children ``2i + 1`` and ``2i + 2`` and leaf ``j`` sits at ``len(tree) - 1 - j``. A single issue is a tree of
one item: its root is its leaf and its proof is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ._errors import PermanentError

__all__ = ["BatchItem", "MerkleTree", "hash_pair", "leaf_hash", "process_proof"]


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One item of an issuance: ``amount`` points to ``to`` for the partner's order ``item_ref``."""

    to: str
    amount: int
    item_ref: bytes

    @property
    def leaf(self) -> bytes:
        return leaf_hash(self.to, self.amount, self.item_ref)


def leaf_hash(to: str, amount: int, item_ref: bytes) -> bytes:
    """The StandardMerkleTree leaf of one item (the double keccak of its ABI encoding)."""
    if len(item_ref) != 32:
        raise PermanentError(f"an item reference is 32 bytes, not {len(item_ref)}")
    encoded = abi_encode(["address", "uint256", "bytes32"], [to_checksum_address(to), amount, item_ref])
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative node hash: keccak256 of the two children, smaller first."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(proof: Sequence[bytes], leaf: bytes) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


class MerkleTree:
    """The tree of ``items`` in their order (leaves unsorted, as the ledger builds it)."""

    __slots__ = ("items", "tree")

    def __init__(self, items: Sequence[BatchItem]) -> None:
        if not items:
            raise PermanentError("a Merkle tree needs at least one item")
        self.items = tuple(items)
        n = len(self.items)
        tree: list[bytes] = [b""] * (2 * n - 1)
        for j, item in enumerate(self.items):
            tree[2 * n - 2 - j] = item.leaf
        for i in range(n - 2, -1, -1):
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
        self.tree = tree

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, index: int) -> list[bytes]:
        """The sibling hashes from item ``index``'s leaf up to the root."""
        if not 0 <= index < len(self.items):
            raise PermanentError(f"no item {index} in a tree of {len(self.items)}")
        proof = []
        i = len(self.tree) - 1 - index
        while i > 0:
            proof.append(self.tree[i + 1] if i % 2 else self.tree[i - 1])
            i = (i - 1) // 2
        return proof

    def verify(self, index: int) -> bool:
        return process_proof(self.proof(index), self.items[index].leaf) == self.root
