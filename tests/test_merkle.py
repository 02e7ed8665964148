"""The batch Merkle tree (``chain._merkle``) is OpenZeppelin's, and the ledger's.

Three sources must agree on every batch: our :class:`~chain.MerkleTree`, OpenZeppelin's JavaScript
``StandardMerkleTree.of(values, ["address", "uint256", "bytes32"], {sortLeaves: false})`` (run with node
on the same items), and the root the contract computes in ``issueBatch`` (the batch's reference in
``PointsBatchIssued``). A proof from our tree is accepted on chain: a reversal of the item with it succeeds.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Sequence

import pytest
from eth_account import Account
from web3.types import TxReceipt

from chain import BatchItem, MerkleTree, PermanentError
from chain._ledger import Ledger as ChainLedger
from chain._merkle import hash_pair, leaf_hash, process_proof
from chain._rpc import Rpc, receipt_from_rpc
from conftest import ACTIVE, ROOT, Ledger, random_ref

TYPES = ["address", "uint256", "bytes32"]
#: Builds StandardMerkleTree.of for each list of values read from stdin, and prints roots and every proof.
OZ_SCRIPT = r"""
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const batches = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = batches.map((values) => {
  const tree = StandardMerkleTree.of(values, ["address", "uint256", "bytes32"], { sortLeaves: false });
  return { root: tree.root, proofs: values.map((_, i) => tree.getProof(i)) };
});
process.stdout.write(JSON.stringify(out));
"""
FIXED_SIZES = [1, 2, 3, 7, 100]


def random_items(rng: random.Random, size: int) -> list[BatchItem]:
    """``size`` items with random recipients, amounts (from 1 to near 2**256) and item references; some
    recipients and amounts repeat, as in a real batch (the same customer twice, a flat reward)."""
    items: list[BatchItem] = []
    for _ in range(size):
        if items and rng.random() < 0.2:
            to, amount = items[rng.randrange(len(items))].to, rng.choice([1, 7, 100])
        else:
            to = Account.create(rng.randbytes(32).hex()).address
            amount = rng.choice([1, rng.randrange(1, 2**64), rng.randrange(1, 2**256)])
        items.append(BatchItem(to, amount, rng.randbytes(32)))
    return items


def openzeppelin_trees(batches: Sequence[Sequence[BatchItem]]) -> list[tuple[bytes, list[list[bytes]]]]:
    """Root and proofs of each batch as ``@openzeppelin/merkle-tree`` builds them (one node process)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (run `make install`)")
    values = [[[i.to, str(i.amount), "0x" + i.item_ref.hex()] for i in batch] for batch in batches]
    done = subprocess.run(
        [node, "-e", OZ_SCRIPT],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [
        (bytes.fromhex(t["root"][2:]), [[bytes.fromhex(h[2:]) for h in proof] for proof in t["proofs"]])
        for t in json.loads(done.stdout)
    ]


RNG = random.Random(0x5EED)
BATCHES = {f"{n} items": random_items(RNG, n) for n in FIXED_SIZES} | {
    f"random {n} items": random_items(RNG, n) for n in (RNG.randrange(4, 64) for _ in range(6))
}


@pytest.fixture(scope="module")
def openzeppelin() -> dict[str, tuple[bytes, list[list[bytes]]]]:
    return dict(zip(BATCHES, openzeppelin_trees(list(BATCHES.values())), strict=True))


@pytest.mark.parametrize("name", list(BATCHES))
def test_root_and_every_proof_equal_openzeppelins(
    name: str, openzeppelin: dict[str, tuple[bytes, list[list[bytes]]]]
) -> None:
    items = BATCHES[name]
    tree = MerkleTree(items)
    oz_root, oz_proofs = openzeppelin[name]

    assert tree.root == oz_root
    assert [tree.proof(i) for i in range(len(items))] == oz_proofs
    assert all(tree.verify(i) for i in range(len(items)))
    assert all(process_proof(tree.proof(i), item.leaf) == tree.root for i, item in enumerate(items))


def test_a_tree_of_one_item_is_its_leaf_and_leaves_keep_their_order() -> None:
    item = BatchItem(Account.create().address, 5, random_ref())
    assert MerkleTree([item]).root == item.leaf == leaf_hash(item.to, item.amount, item.item_ref)
    assert MerkleTree([item]).proof(0) == []
    a, b = item, BatchItem(Account.create().address, 6, random_ref())
    assert MerkleTree([a, b]).root == hash_pair(a.leaf, b.leaf) == hash_pair(b.leaf, a.leaf)
    # three items: leaves are not sorted, so the order of the items decides the tree
    c = BatchItem(Account.create().address, 7, random_ref())
    assert MerkleTree([a, b, c]).root != MerkleTree([c, b, a]).root


def test_refusals() -> None:
    with pytest.raises(PermanentError, match="at least one item"):
        MerkleTree([])
    with pytest.raises(PermanentError, match="no item 3 in a tree of 3"):
        MerkleTree([BatchItem(Account.create().address, 1, random_ref()) for _ in range(3)]).proof(3)
    with pytest.raises(PermanentError, match="32 bytes"):
        leaf_hash(Account.create().address, 1, b"\x01" * 31)


# --------------------------------------------------------------------------- the contract's root


def _issue_batch(ledger: Ledger, items: Sequence[BatchItem]) -> tuple[bytes, TxReceipt]:
    """Issues ``items`` as partner ACTIVE; the contract's root from ``eth_call`` and the mined receipt."""
    args = ([i.to for i in items], [i.amount for i in items], [i.item_ref for i in items], 1, b"\x00" * 32)
    fn = ledger.contract.functions.issueBatch(*args)
    returned = bytes(fn.call({"from": ledger.actors.partner}))
    return returned, ledger.transact("issueBatch", *args, sender=ledger.actors.partner)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_the_contract_computes_the_same_root_and_accepts_the_proofs(ledger: Ledger, size: int) -> None:
    rng = random.Random(size)
    items = [
        BatchItem(Account.create(rng.randbytes(32).hex()).address, rng.randrange(1, 10**6), rng.randbytes(32))
        for _ in range(size)
    ]
    tree = MerkleTree(items)

    returned, receipt = _issue_batch(ledger, items)

    [header] = ledger.events(receipt, "PointsBatchIssued")
    assert returned == header["args"]["ref"] == tree.root
    assert ledger.call("referenceUsed", ACTIVE, tree.root) is True
    # the chain layer rebuilds the same items, each with our proof
    client = ChainLedger(Rpc(ledger.w3, decoder=ledger.decoder), ledger.address)
    records = client.issuances_in(receipt_from_rpc(receipt))
    assert [(r.customer, r.amount, r.item_ref) for r in records] == [
        (i.to, i.amount, i.item_ref) for i in items
    ]
    assert [list(r.proof) for r in records] == [tree.proof(i) for i in range(size)]
    # a proof verifies on chain: reversing the first, the middle and the last item with theirs succeeds
    for index in sorted({0, size // 2, size - 1}):
        record = records[index]
        reversal = ledger.transact(
            "reverseIssuance", record.as_struct(), 1, random_ref(), sender=ledger.actors.partner
        )
        [entry] = ledger.events(reversal, "IssuanceReversed")
        assert (entry["args"]["ref"], entry["args"]["itemRef"], entry["args"]["recovered"]) == (
            tree.root,
            items[index].item_ref,
            1,
        )
