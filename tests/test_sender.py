"""The sender: consecutive nonces under concurrency; recovery from dropped and foreign transactions, from its
own restart and the node's; fee-bumped replacement of stuck transactions. All on a spawned anvil."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from chain import ContractRevert
from chain._devnode import AnvilProcess
from chain._ledger import Issuance
from chain._ledger import Ledger as ChainLedger
from chain._rpc import RetryPolicy, Rpc
from chain._sender import Call, FeePolicy, PendingTransaction, Sender, SendPolicy
from chain._signer import LocalSigner
from chain._types import PartnerId, Points, ReasonCode
from conftest import (
    ROOT,
    AnvilNode,
    Ledger,
    deploy_ledger,
    expect_revert,
    new_partner,
    random_ref,
    revert_decoder,
)

PARTNER = PartnerId(10)
PURCHASE = ReasonCode(1)
POINTS_ISSUED = keccak(
    text="PointsIssued(uint32,address,uint64,uint256,uint256,bytes32,uint16,bytes32,uint256)"
)


@pytest.fixture
def anvil_ledger(anvil_node: AnvilNode) -> Iterator[Ledger]:
    """The standard ledger on anvil, reverted after the test (automine back on, whatever the test did)."""
    snapshot = anvil_node.snapshot()
    try:
        yield deploy_ledger(anvil_node)
    finally:
        anvil_node.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        anvil_node.revert(snapshot)


def client(ledger: Ledger, signer: LocalSigner, **policy: Any) -> ChainLedger:
    rpc = Rpc(ledger.w3, decoder=revert_decoder())
    fees = policy.pop("fees", FeePolicy())
    return ChainLedger(
        rpc, ledger.address, sender=Sender(rpc, signer, fees=fees, policy=SendPolicy(**policy))
    )


def issuance(points: int = 5) -> Issuance:
    return Issuance(Account.create().address, Points(points), random_ref(), PURCHASE)


def issued_refs(ledger: Ledger) -> Counter[bytes]:
    """How many ``PointsIssued`` entries each reference has on the chain, from raw logs."""
    logs = ledger.w3.eth.get_logs(
        {"address": ledger.contract.address, "fromBlock": 0, "toBlock": "latest", "topics": [POINTS_ISSUED]}
    )
    # PointsIssued(partnerId, to indexed; seq, epoch, amount, ref, reason, ruleHash, value): ref is data
    # word 3.
    return Counter(bytes(log["data"][96:128]) for log in logs)


def nonce_of(ledger: Ledger, tx_hash: bytes) -> int:
    return int(ledger.w3.eth.get_transaction(HexBytes(tx_hash))["nonce"])


@contextmanager
def mining(node: AnvilNode, interval: float = 0.1, base_fee: int | None = None) -> Iterator[None]:
    """Automine off; a background thread mines a block every ``interval`` (at ``base_fee`` if given)."""
    provider = node.w3.provider
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            if base_fee is not None:
                provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])  # type: ignore[arg-type]
            provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- concurrency


def test_ten_threads_share_one_account_with_consecutive_nonces(anvil_ledger: Ledger) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger))
    sender = partner.sender
    assert sender is not None
    first = anvil_ledger.w3.eth.get_transaction_count(sender.address)
    submitted: list[PendingTransaction] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [partner.issue(i.to, i.amount, i.ref, i.reason) for i in (issuance() for _ in range(100))]
        with lock:
            submitted.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    receipts = sender.wait_all(submitted)
    assert all(not isinstance(r, Exception) and r.succeeded for r in receipts)
    nonces = sorted(p.nonce for p in submitted)
    assert nonces == list(range(first, first + 1000)), (
        "nonces must be consecutive, without gaps or duplicates"
    )
    assert sorted(nonce_of(anvil_ledger, p.hash) for p in submitted) == nonces
    assert anvil_ledger.w3.eth.get_transaction_count(sender.address) == first + 1000
    assert partner.partner(PARTNER).issued == 5 * 1000
    assert (sender.stats.replaced, sender.stats.resynced, sender.stats.resubmitted) == (0, 0, 0)


def test_asyncio_callers_get_consecutive_nonces(anvil_ledger: Ledger) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger))
    sender = partner.sender
    assert sender is not None

    async def run() -> list[PendingTransaction]:
        calls = [
            partner.call_of("issue", i.to, i.amount, i.ref, i.reason, i.rule_hash)
            for i in (issuance() for _ in range(50))
        ]
        pending = await asyncio.gather(*(sender.submit_async(c) for c in calls))
        receipts = await asyncio.gather(*(p.wait_async() for p in pending))
        assert all(r.succeeded for r in receipts)
        return list(pending)

    pending = asyncio.run(run())
    start = min(p.nonce for p in pending)
    assert sorted(p.nonce for p in pending) == list(range(start, start + 50))


# --------------------------------------------------------------------------- recovery


def test_dropped_transactions_are_sent_again_and_mine_once(
    anvil_ledger: Ledger, anvil_node: AnvilNode
) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger), replace_after=0.5, timeout=60)
    sender = partner.sender
    assert sender is not None
    items = [issuance() for _ in range(6)]
    anvil_node.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    pending = partner.issue_many(items)
    for p in pending[1:4]:  # the node loses three of them, the first one of the gap included
        anvil_node.w3.provider.make_request("anvil_dropTransaction", [HexBytes(p.hash).to_0x_hex()])  # type: ignore[arg-type]
    with mining(anvil_node):
        receipts = sender.wait_all(pending)

    assert all(not isinstance(r, Exception) and r.succeeded for r in receipts)
    assert sender.stats.replaced + sender.stats.rebroadcast >= 3
    counts = issued_refs(anvil_ledger)
    assert [counts[i.ref] for i in items] == [1] * 6


def test_foreign_use_of_the_key_is_detected_and_the_sender_resynchronises(anvil_ledger: Ledger) -> None:
    signer = new_partner(anvil_ledger)
    ours = client(anvil_ledger, signer)
    other_process = client(anvil_ledger, signer)  # same key, its own allocator
    first = [ours.issue_many([issuance()])[0]]
    # The other process sends three with the nonces our allocator will hand out next.
    for p in other_process.issue_many([issuance() for _ in range(3)]):
        p.wait()
    items = [issuance() for _ in range(4)]
    pending = first + ours.issue_many(items)
    sender = ours.sender
    assert sender is not None
    assert all(not isinstance(r, Exception) for r in sender.wait_all(pending))
    assert sender.stats.resynced >= 1
    counts = issued_refs(anvil_ledger)
    assert [counts[i.ref] for i in items] == [1] * 4


def test_restarted_sender_replays_intents_and_the_reference_dedupe_stops_doubles(
    anvil_ledger: Ledger, anvil_node: AnvilNode
) -> None:
    """A process sent 10 issues and died before it knew which landed; its successor sends all 10 again."""
    signer = new_partner(anvil_ledger)
    items = [issuance() for _ in range(10)]
    anvil_node.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    first_life = client(anvil_ledger, signer)
    first_life.issue_many(items[:4])
    anvil_node.mine()  # four landed
    first_life.issue_many(items[4:])  # six more are in the node's pool when the process dies

    second_life = client(anvil_ledger, signer)
    sender = second_life.sender
    assert sender is not None
    # Checked against the latest block before sending: the four on chain are refused at once.
    for item in items[:4]:
        with pytest.raises(ContractRevert) as excinfo:
            second_life.issue(item.to, item.amount, item.ref, item.reason)
        expect_revert(excinfo, "LedgerReferenceUsed", PARTNER, item.ref)
    # The six still in the pool pass that check; their doubles reach the chain after them and the ledger
    # refuses them there.
    doubles = second_life.issue_many(items[4:])
    anvil_node.mine()
    outcomes = sender.wait_all(doubles)
    assert [(o.name, o.arguments) for o in outcomes if isinstance(o, ContractRevert)] == [
        ("LedgerReferenceUsed", (PARTNER, i.ref)) for i in items[4:]
    ]
    # Sent blind (not checked at all), all ten doubles reach the chain and revert there.
    blind = sender.submit_many(
        [
            replace(
                second_life.call_of("issue", i.to, i.amount, i.ref, i.reason, i.rule_hash, gas=300_000),
                check=False,
            )
            for i in items
        ]
    )
    anvil_node.mine()
    outcomes = sender.wait_all(blind)
    assert [(o.name, o.arguments) for o in outcomes if isinstance(o, ContractRevert)] == [
        ("LedgerReferenceUsed", (PARTNER, i.ref)) for i in items
    ]
    counts = issued_refs(anvil_ledger)
    assert [counts[i.ref] for i in items] == [1] * 10
    assert second_life.partner(PARTNER).issued == 5 * 10


def test_stuck_transaction_is_replaced_with_higher_fees_and_the_replacement_mines(
    anvil_ledger: Ledger, anvil_node: AnvilNode
) -> None:
    base = 10**9
    fees = FeePolicy(base_fee_multiplier=1.0, priority_fee=1, fee_ttl=0)
    partner = client(anvil_ledger, new_partner(anvil_ledger), fees=fees, replace_after=0.5, timeout=60)
    sender = partner.sender
    assert sender is not None
    anvil_node.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(base)])  # type: ignore[arg-type]
    anvil_node.mine()
    item = issuance()
    with mining(anvil_node, interval=0.2, base_fee=base + base // 10):  # 10 % above what the sender offered
        pending = partner.issue(item.to, item.amount, item.ref, item.reason)
        original = anvil_node.w3.eth.get_transaction(HexBytes(pending.hash))
        receipt = pending.wait()

    assert receipt.succeeded
    assert sender.stats.replaced >= 1
    assert receipt.transaction_hash != bytes(original["hash"])
    mined = anvil_node.w3.eth.get_transaction(HexBytes(receipt.transaction_hash))
    assert mined["nonce"] == original["nonce"]
    assert mined["maxFeePerGas"] * 8 >= original["maxFeePerGas"] * 9
    assert mined["maxPriorityFeePerGas"] * 8 >= original["maxPriorityFeePerGas"] * 9
    assert sender.rpc.receipts([bytes(original["hash"])]) == [None], "the underpriced original never mines"
    assert issued_refs(anvil_ledger)[item.ref] == 1


def test_node_restart_mid_stream_loses_nothing_and_doubles_nothing(tmp_path: Any) -> None:
    """anvil stops (its state saved) and comes back while issues are in flight; every one ends mined once."""
    with AnvilProcess(ROOT, state_path=tmp_path / "state.json", extra_args=("--accounts", "12")) as node:
        from conftest import AnvilNode as TestNode

        ledger = deploy_ledger(TestNode(node.w3))
        signer = new_partner(ledger)
        rpc = Rpc(node.w3, decoder=revert_decoder(), retry=RetryPolicy(attempts=40, max_delay=0.5))
        sender = Sender(rpc, signer, policy=SendPolicy(replace_after=1.0, timeout=120))
        partner = ChainLedger(rpc, ledger.address, sender=sender)
        items = [issuance() for _ in range(200)]
        pending: list[PendingTransaction] = []
        done = threading.Event()

        def stream() -> None:
            for start in range(0, len(items), 10):
                pending.extend(partner.issue_many(items[start : start + 10]))
                time.sleep(0.02)
            done.set()

        thread = threading.Thread(target=stream)
        thread.start()
        while len(pending) < 60:
            time.sleep(0.01)
        node.stop()
        time.sleep(0.5)
        node.restart()
        thread.join()
        outcomes = sender.wait_all(pending)

        counts = issued_refs(ledger)
        assert [counts[i.ref] for i in items] == [1] * 200
        assert all(not isinstance(o, Exception) or isinstance(o, ContractRevert) for o in outcomes)
        assert partner.partner(PARTNER).issued == 5 * 200


# --------------------------------------------------------------------------- errors


def test_a_call_that_would_revert_raises_before_anything_is_sent(anvil_ledger: Ledger) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger))
    sender = partner.sender
    assert sender is not None
    before = anvil_ledger.w3.eth.get_transaction_count(sender.address)
    with pytest.raises(ContractRevert) as excinfo:
        partner.issue(Account.create().address, Points(0), random_ref(), PURCHASE)
    expect_revert(excinfo, "LedgerZeroAmount")
    assert anvil_ledger.w3.eth.get_transaction_count(sender.address) == before
    # The nonce was not used up: the next issue goes out with it.
    item = issuance()
    assert partner.issue(item.to, item.amount, item.ref, item.reason).wait().succeeded
    assert anvil_ledger.w3.eth.get_transaction_count(sender.address) == before + 1


def test_a_transaction_that_reverts_when_mined_raises_the_decoded_error(anvil_ledger: Ledger) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger))
    sender = partner.sender
    assert sender is not None
    call = partner.call_of(
        "issue", Account.create().address, 0, random_ref(), PURCHASE, b"\x00" * 32, gas=200_000
    )
    call = replace(call, check=False)  # sent unchecked: the chain refuses it
    with pytest.raises(ContractRevert) as excinfo:
        sender.submit(call).wait()
    expect_revert(excinfo, "LedgerZeroAmount")
    assert sender.stats.reverted == 1


def test_plain_transfers_and_fees_respect_the_cap(anvil_ledger: Ledger) -> None:
    signer = new_partner(anvil_ledger)
    cap = 3 * 10**9
    partner = client(anvil_ledger, signer, fees=FeePolicy(priority_fee=5 * 10**9, max_fee_cap=cap))
    sender = partner.sender
    assert sender is not None
    receipt = sender.transact(Call(to=anvil_ledger.actors.stranger, value=12345))
    tx = anvil_ledger.w3.eth.get_transaction(HexBytes(receipt.transaction_hash))
    assert tx["maxFeePerGas"] == tx["maxPriorityFeePerGas"] == cap
    assert tx["type"] == 2


def test_submissions_wait_while_too_many_are_in_flight(
    anvil_ledger: Ledger, anvil_node: AnvilNode, caplog: pytest.LogCaptureFixture
) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger), max_in_flight=5, replace_after=0.5)
    sender = partner.sender
    assert sender is not None
    anvil_node.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    first = partner.issue_many([issuance() for _ in range(5)])
    began = time.monotonic()
    one_more = partner.issue_many([issuance()])  # the node mines nothing: it waits, then goes anyway
    assert time.monotonic() - began >= 0.5
    assert "in flight and the node mines none" in caplog.text

    with mining(anvil_node):
        items = [issuance() for _ in range(23)]
        rest = partner.issue_many(items)  # five at a time, each five once the previous ones are mined
        outcomes = sender.wait_all(first + one_more + rest)
    assert all(not isinstance(o, Exception) for o in outcomes)
    blocks = {o.block_number for o in outcomes if not isinstance(o, Exception)}
    assert len(blocks) >= 5, "no more than five of ours were ever waiting to be mined"
    counts = issued_refs(anvil_ledger)
    assert [counts[i.ref] for i in items] == [1] * 23


def test_a_receipt_is_returned_only_at_the_confirmation_depth(
    anvil_ledger: Ledger, anvil_node: AnvilNode
) -> None:
    partner = client(anvil_ledger, new_partner(anvil_ledger), confirmations=2, timeout=30)
    item = issuance()
    pending = partner.issue(item.to, item.amount, item.ref, item.reason)  # automine: in a block at once
    done: list[Any] = []
    waiter = threading.Thread(target=lambda: done.append(pending.wait()))
    waiter.start()
    time.sleep(0.3)
    assert not done, "mined but not yet confirmed"
    anvil_node.mine()
    time.sleep(0.3)
    assert not done, "one block on top is not two"
    anvil_node.mine()
    waiter.join(10)
    (receipt,) = done
    assert anvil_node.w3.eth.block_number - receipt.block_number == 2
