"""Receipt and balance proofs of the audit tool, against anvil's real tries.

An entry proof leads from a block's ``receiptsRoot`` (and, through the block's header, from its hash) to the
receipt holding the entry; a balance proof leads from the ``stateRoot`` to the ledger's storage root and from
there to the account's buckets. These tests make proofs of every entry of a ledger with single issues, a
batch, a redemption and a block of several transactions, check that each names the very log the node
reports, that a customer's proven balance is ``balanceOf`` at that block (also at an older block after more
activity), and that a changed receipt byte, proof node, value or root is refused with :class:`ProofError`.
eth-tester is left out: its ``eth_getProof`` is not a Merkle proof worth trusting.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from api.audit._errors import NodeError, ProofError
from api.audit._proofs import (
    BUCKETS_SLOT,
    BalanceProof,
    EntryNotFound,
    EntryProof,
    prove_balance,
    prove_entry,
    verify_balance_proof,
    verify_entry_proof,
)
from chain import SOLC_VERSION, Rpc, RpcError
from chain._compile import CONTRACTS, _parse_output, _storage_layout, compiler_settings, default_solc_binary
from conftest import EPOCH, GAS, ROOT, AnvilNode, Ledger, deploy_ledger, new_customer, random_ref

pytestmark = pytest.mark.anvil


@dataclass
class Scenario:
    ledger: Ledger
    rpc: Rpc
    customer: LocalAccount
    single: TxReceipt  # one issue to the customer
    batch: TxReceipt  # a batch of three, the customer's item among them
    redemption: TxReceipt
    crowded: list[TxReceipt]  # three issues mined in one block
    before: int  # a block after the redemption, before the next epoch's activity
    latest: int


def entry_logs(ledger: Ledger, receipt: TxReceipt) -> list[tuple[int, dict[str, Any]]]:
    """(seq, raw log) of every ledger entry in ``receipt``, read with the contract's ABI."""
    return [(e["args"]["seq"], e["log"]) for e in ledger.events(receipt) if "seq" in e["args"]]


def mine_together(ledger: Ledger, calls: list[Any]) -> list[TxReceipt]:
    """Sends ``calls`` with automine off and mines them in one block."""
    provider = ledger.w3.provider
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        hashes = [fn.transact({"from": ledger.actors.partner, "gas": GAS}) for fn in calls]
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    receipts = [ledger.w3.eth.wait_for_transaction_receipt(h) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    assert len({r["blockNumber"] for r in receipts}) == 1
    return receipts


@pytest.fixture(scope="module")
def scenario(anvil_node: AnvilNode) -> Iterator[Scenario]:
    snapshot = anvil_node.snapshot()
    ledger = deploy_ledger(anvil_node)
    customer = new_customer()
    others = [new_customer().address for _ in range(2)]
    single = ledger.issue(customer.address, 70)
    ledger.issue(others[0], 5)
    batch = ledger.issue_batch([others[0], customer.address, others[1]], [11, 12, 13])
    redemption = ledger.redeem(customer, 30)
    before = ledger.w3.eth.block_number
    anvil_node.advance_time(EPOCH)  # a second live epoch: the balance spans two buckets
    issue = ledger.contract.functions.issue
    crowded = mine_together(
        ledger,
        [
            issue(address, amount, random_ref(), 1, b"\x00" * 32)
            for address, amount in [
                (others[1], 3),
                (customer.address, 40),
                (others[0], 4),
            ]
        ],
    )
    yield Scenario(
        ledger,
        Rpc(ledger.w3),
        customer,
        single,
        batch,
        redemption,
        crowded,
        before,
        ledger.w3.eth.block_number,
    )
    anvil_node.revert(snapshot)


def receipts_root(scenario: Scenario, block: int) -> bytes:
    return bytes(scenario.ledger.w3.eth.get_block(block)["receiptsRoot"])


def block_hash(scenario: Scenario, block: int) -> bytes:
    return bytes(scenario.ledger.w3.eth.get_block(block)["hash"])


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --------------------------------------------------------------------------- entries


def test_every_entry_is_proven_by_its_seq_and_names_the_nodes_log(scenario: Scenario) -> None:
    """From the deployment's role grants to the last issue: each proof is of the block and transaction the
    node reports, of the same topics and data, its entry hash keccak(topics ‖ data), and it verifies against
    the block's receiptsRoot and, through the header it carries, the block's hash."""
    ledger = scenario.ledger
    logs = ledger.w3.eth.get_logs({"address": ledger.contract.address, "fromBlock": 0, "toBlock": "latest"})
    by_seq = {}
    for log in logs:
        decoded = [e for e in ledger.events({"logs": [log]}) if "seq" in e["args"]]  # type: ignore[typeddict-item]
        if decoded:
            by_seq[decoded[0]["args"]["seq"]] = log
    head = ledger.call("ledgerSequence")
    assert sorted(by_seq) == list(range(1, head + 1))

    for seq, log in by_seq.items():
        proof = prove_entry(scenario.rpc, ledger.address, seq=seq)
        assert proof.seq == seq
        assert (proof.block_number, proof.block_hash) == (log["blockNumber"], bytes(log["blockHash"]))
        assert (proof.tx_hash, proof.tx_index) == (bytes(log["transactionHash"]), log["transactionIndex"])
        assert proof.log_index == log["logIndex"]
        assert proof.topics == tuple(bytes(t) for t in log["topics"])
        assert proof.data == bytes(log["data"])
        assert proof.entry_hash == keccak(b"".join(proof.topics) + proof.data)
        assert proof.header is not None  # anvil's header hashes as Ethereum's does
        verify_entry_proof(
            proof,
            receipts_root(scenario, proof.block_number),
            block_hash=block_hash(scenario, proof.block_number),
        )


def test_an_entry_of_a_crowded_block_is_proven_by_its_transaction_and_log_index(scenario: Scenario) -> None:
    """The second of three transactions in one block: the proof by transaction hash and log index is the
    proof by seq, its receipt is the trie's value under rlp(1), and it survives a JSON round trip."""
    ledger = scenario.ledger
    receipt = scenario.crowded[1]
    assert receipt["transactionIndex"] == 1
    [(seq, log)] = entry_logs(ledger, receipt)  # PointsIssued (the Transfer beside it is no entry)
    by_tx = prove_entry(
        scenario.rpc,
        ledger.address,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        log_index=log["logIndex"],
    )
    assert by_tx == prove_entry(scenario.rpc, ledger.address, seq=seq)
    assert by_tx.tx_index == 1 and len(by_tx.nodes) >= 2  # a branch node above the leaf
    assert by_tx.receipt[0] == 2  # an EIP-1559 receipt: its type byte, then the RLP
    decoded = EntryProof.from_json(json.loads(json.dumps(by_tx.to_json())))
    assert decoded == by_tx
    verify_entry_proof(decoded, receipts_root(scenario, receipt["blockNumber"]))


@pytest.mark.parametrize("kind", ["single", "batch", "redemption"])
def test_the_proofs_of_a_transactions_entries_name_each_of_them(scenario: Scenario, kind: str) -> None:
    receipt: TxReceipt = getattr(scenario, kind)
    entries = entry_logs(scenario.ledger, receipt)
    assert entries
    if kind == "batch":
        assert len(entries) == 4  # the header and its three items
    root = receipts_root(scenario, receipt["blockNumber"])
    for seq, log in entries:
        proof = prove_entry(
            scenario.rpc,
            scenario.ledger.address,
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            log_index=log["logIndex"],
        )
        assert proof.seq == seq
        verify_entry_proof(proof, root)


def test_a_changed_receipt_node_root_or_entry_is_refused(scenario: Scenario) -> None:
    receipt = scenario.crowded[1]
    proof = prove_entry(
        scenario.rpc,
        scenario.ledger.address,
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        log_index=entry_logs(scenario.ledger, receipt)[0][1]["logIndex"],
    )
    root = receipts_root(scenario, proof.block_number)
    verify_entry_proof(proof, root)

    # One byte of the entry's data inside the receipt: the trie holds another receipt.
    at = proof.receipt.index(proof.data) + len(proof.data) - 1
    with pytest.raises(ProofError, match="another receipt"):
        verify_entry_proof(replace(proof, receipt=flip(proof.receipt, at)), root)
    # The entry's own data, receipt untouched: the receipt holds another log.
    with pytest.raises(ProofError, match="not the proof's entry"):
        verify_entry_proof(replace(proof, data=flip(proof.data, 40)), root)
    # The entry hash or seq claimed for the log.
    with pytest.raises(ProofError, match="entry hash"):
        verify_entry_proof(replace(proof, entry_hash=flip(proof.entry_hash, 0)), root)
    with pytest.raises(ProofError, match="seq"):
        verify_entry_proof(replace(proof, seq=proof.seq + 1), root)
    # A byte of any node of the branch: its hash is no longer the one its parent (or the root) names.
    for index, node in enumerate(proof.nodes):
        nodes = (*proof.nodes[:index], flip(node, len(node) // 2), *proof.nodes[index + 1 :])
        with pytest.raises(ProofError, match="does not lead from root"):
            verify_entry_proof(replace(proof, nodes=nodes), root)
    # Another transaction index: the trie holds another receipt there.
    with pytest.raises(ProofError):
        verify_entry_proof(replace(proof, tx_index=0), root)


def test_a_proof_holds_under_its_own_root_only(scenario: Scenario) -> None:
    proof = prove_entry(scenario.rpc, scenario.ledger.address, seq=scenario.ledger.call("ledgerSequence"))
    other_root = receipts_root(scenario, scenario.redemption["blockNumber"])
    with pytest.raises(ProofError, match="receiptsRoot"):
        verify_entry_proof(proof, other_root)
    # Claiming the other root outright: the branch does not lead from it (and the header no longer matches).
    with pytest.raises(ProofError, match="header"):
        verify_entry_proof(replace(proof, receipts_root=other_root), other_root)
    with pytest.raises(ProofError, match="does not lead from root"):
        verify_entry_proof(replace(proof, receipts_root=other_root, header=None), other_root)
    # The header ties the root to the block hash: another block's hash, or a changed header, is refused.
    root = receipts_root(scenario, proof.block_number)
    with pytest.raises(ProofError, match="no header of block"):
        verify_entry_proof(proof, root, block_hash=block_hash(scenario, scenario.before))
    with pytest.raises(ProofError, match="does not hash"):
        assert proof.header is not None
        verify_entry_proof(replace(proof, header=flip(proof.header, 40)), root)
    with pytest.raises(ProofError, match="no header of block"):
        verify_entry_proof(replace(proof, header=None), root, block_hash=proof.block_hash)


def test_no_proof_of_an_entry_that_does_not_exist(scenario: Scenario) -> None:
    ledger, rpc = scenario.ledger, scenario.rpc
    head = ledger.call("ledgerSequence")
    for seq in (0, head + 1):
        with pytest.raises(EntryNotFound):
            prove_entry(rpc, ledger.address, seq=seq)
    receipt = scenario.single
    # The ERC-20 Transfer beside the entry: its data word may equal a seq, yet it is no entry.
    entries = {log["logIndex"] for _, log in entry_logs(ledger, receipt)}
    transfer = next(log for log in receipt["logs"] if log["logIndex"] not in entries)
    tx = receipt["transactionHash"].to_0x_hex()
    with pytest.raises(EntryNotFound, match="not an entry"):
        prove_entry(rpc, ledger.address, tx_hash=tx, log_index=transfer["logIndex"])
    with pytest.raises(EntryNotFound):
        prove_entry(rpc, ledger.address, tx_hash=tx, log_index=receipt["logs"][-1]["logIndex"] + 1)
    with pytest.raises(EntryNotFound):
        prove_entry(rpc, ledger.address, tx_hash="0x" + "ab" * 32, log_index=0)
    with pytest.raises(ValueError):
        prove_entry(rpc, ledger.address, seq=1, tx_hash=tx, log_index=0)


class NoBlockReceipts(Rpc):
    """A node without ``eth_getBlockReceipts`` (some hosted endpoints): it answers "method not found"."""

    def request(self, method: str, params: Any) -> Any:
        if method == "eth_getBlockReceipts":
            raise RpcError("Method not found", -32601)
        return super().request(method, params)


def test_without_eth_get_block_receipts_the_receipts_are_fetched_one_by_one(scenario: Scenario) -> None:
    receipt = scenario.crowded[2]
    [(seq, _)] = entry_logs(scenario.ledger, receipt)
    proof = prove_entry(NoBlockReceipts(scenario.ledger.w3), scenario.ledger.address, seq=seq)
    assert proof == prove_entry(scenario.rpc, scenario.ledger.address, seq=seq)


class ReorderedReceipts(Rpc):
    """A node whose block receipts come in another order than the block's transactions."""

    def request(self, method: str, params: Any) -> Any:
        answer = super().request(method, params)
        return list(reversed(answer)) if method == "eth_getBlockReceipts" else answer


def test_receipts_that_are_not_the_blocks_are_refused(scenario: Scenario) -> None:
    [(seq, _)] = entry_logs(scenario.ledger, scenario.crowded[0])
    with pytest.raises(NodeError):
        prove_entry(ReorderedReceipts(scenario.ledger.w3), scenario.ledger.address, seq=seq)


# --------------------------------------------------------------------------- balances


def test_a_customers_proven_balance_is_balance_of_at_that_block(scenario: Scenario) -> None:
    """At the latest block the customer holds points of two epochs (two buckets); at an older block, before
    the second epoch's issue, of one. Both proofs verify against their block's stateRoot and hash."""
    ledger, account = scenario.ledger, scenario.customer.address
    for block, epochs_held in ((scenario.latest, 2), (scenario.before, 1)):
        expected = ledger.contract.functions.balanceOf(account).call(block_identifier=block)
        proof = prove_balance(scenario.rpc, ledger.address, account, block=block)
        assert proof.block_number == block
        assert proof.balance == expected > 0
        assert sum(1 for b in proof.buckets if b.amount) == epochs_held
        header = ledger.w3.eth.get_block(block)
        assert proof.state_root == bytes(header["stateRoot"])
        assert verify_balance_proof(proof, proof.state_root, block_hash=bytes(header["hash"])) == expected
        decoded = BalanceProof.from_json(json.loads(json.dumps(proof.to_json())))
        assert decoded == proof
    latest = prove_balance(scenario.rpc, ledger.address, account)
    assert latest.block_number == scenario.latest
    assert latest.balance == 70 + 12 - 30 + 40
    assert latest.epochs == tuple(range(latest.current_epoch + 1))  # near genesis: fewer than validity


def test_an_account_holding_nothing_has_a_proven_balance_of_zero(scenario: Scenario) -> None:
    proof = prove_balance(scenario.rpc, scenario.ledger.address, new_customer().address)
    assert proof.balance == 0
    assert all(b.value == 0 for b in proof.buckets)
    assert verify_balance_proof(proof, proof.state_root) == 0


def test_a_changed_balance_proof_is_refused(scenario: Scenario) -> None:
    ledger, account = scenario.ledger, scenario.customer.address
    proof = prove_balance(scenario.rpc, ledger.address, account)
    older = bytes(ledger.w3.eth.get_block(scenario.before)["stateRoot"])
    with pytest.raises(ProofError, match="stateRoot"):
        verify_balance_proof(proof, older)
    with pytest.raises(ProofError, match="does not lead from root"):
        verify_balance_proof(replace(proof, state_root=older, header=None), older)
    with pytest.raises(ProofError, match="header"):
        verify_balance_proof(replace(proof, state_root=older), older)

    held = next(i for i, b in enumerate(proof.buckets) if b.amount)
    bucket = proof.buckets[held]

    def with_bucket(**changes: Any) -> BalanceProof:
        buckets = list(proof.buckets)
        buckets[held] = replace(bucket, **changes)
        return replace(proof, buckets=tuple(buckets))

    with pytest.raises(ProofError, match="storage trie holds"):
        verify_balance_proof(with_bucket(value=bucket.value + (1 << 64)), proof.state_root)
    with pytest.raises(ProofError, match="points, not"):
        verify_balance_proof(replace(proof, balance=proof.balance + 1), proof.state_root)
    # A byte of the bucket's storage leaf or of the state trie's root node: not the nodes the roots name.
    leaf = bucket.nodes[-1]
    changed_leaf = with_bucket(nodes=(*bucket.nodes[:-1], flip(leaf, len(leaf) - 1)))
    with pytest.raises(ProofError, match="storage proof does not lead from root"):
        verify_balance_proof(changed_leaf, proof.state_root)
    top = proof.account_nodes[0]
    changed_top = replace(proof, account_nodes=(flip(top, 5), *proof.account_nodes[1:]))
    with pytest.raises(ProofError, match="state proof does not lead from root"):
        verify_balance_proof(changed_top, proof.state_root)
    # Another account's slot, or an epoch left out: not this account's live buckets.
    with pytest.raises(ProofError, match="bucket of epoch"):
        verify_balance_proof(replace(proof, account=ledger.actors.stranger), proof.state_root)
    with pytest.raises(ProofError, match="live ones"):
        verify_balance_proof(replace(proof, buckets=proof.buckets[1:]), proof.state_root)
    with pytest.raises(ProofError, match="malformed"):
        BalanceProof.from_json({**proof.to_json(), "stateRoot": "0x1234"})


# --------------------------------------------------------------------------- the storage layout


def compiled_storage_layout(name: str) -> list[tuple[str, str, int, str]]:
    """solc's storage layout of ``name``, compiled as ``loyalty compile`` compiles (its pinned solc, settings,
    sources and layout reader) but asking for the layout only: without code generation solc answers in about
    2 s, where the full compile (``compile_contracts``, which does not return layouts) takes about 20 s."""
    from solcx.wrapper import get_solc_version

    binary = default_solc_binary(ROOT)
    assert str(get_solc_version(binary)) == SOLC_VERSION
    source = CONTRACTS[name]
    standard_input = {
        "language": "Solidity",
        "sources": {source: {"urls": [source]}},
        "settings": {**compiler_settings(), "outputSelection": {source: {name: ["storageLayout"]}}},
    }
    command = [
        str(binary),
        "--standard-json",
        "--base-path",
        str(ROOT),
        "--include-path",
        str(ROOT / "node_modules"),
    ]
    with tempfile.TemporaryFile(mode="w+") as out:
        subprocess.run(command, input=json.dumps(standard_input), stdout=out, text=True, check=True)
        out.seek(0)
        output = _parse_output(out.read())
    assert not [e for e in output.get("errors", []) if e.get("severity") == "error"]
    return _storage_layout(output["contracts"][source][name])


def test_buckets_slot_is_the_compiled_layouts() -> None:
    for name in ("LoyaltyLedger", "LoyaltyLedgerExtension"):
        [(slot, offset, kind)] = [
            (s, o, t) for label, s, o, t in compiled_storage_layout(name) if label == "_buckets"
        ]
        assert (int(slot), offset) == (BUCKETS_SLOT, 0), name
        assert kind == "mapping(address => mapping(uint256 => struct LedgerBase.Bucket))"
