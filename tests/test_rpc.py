"""RPC failures are classified (retryable or permanent, typed) and the retryable ones retried with backoff,
against a real anvil behind a fault-injecting proxy."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from eth_account import Account
from rpc_proxy import FaultProxy
from web3 import HTTPProvider, Web3

from chain import PermanentError, RetryableError
from chain._ledger import Issuance
from chain._ledger import Ledger as ChainLedger
from chain._rpc import (
    InsufficientFunds,
    NonceTooLow,
    RateLimited,
    RetryPolicy,
    Rpc,
    RpcError,
    RpcTimeout,
    RpcUnavailable,
)
from chain._sender import Call, Sender, SendPolicy
from chain._signer import LocalSigner
from chain._types import PartnerId, Points, ReasonCode
from conftest import AnvilNode, Ledger, deploy_ledger, new_partner, random_ref, revert_decoder

FAST = RetryPolicy(attempts=10, initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def proxy(anvil_node: AnvilNode) -> Iterator[FaultProxy]:
    upstream = anvil_node.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    with FaultProxy(upstream).running() as running:
        yield running


def through(proxy: FaultProxy, retry: RetryPolicy = FAST) -> Rpc:
    # web3's own retries are off: the chain layer owns retrying.
    provider = HTTPProvider(proxy.url, request_kwargs={"timeout": 1}, exception_retry_configuration=None)
    return Rpc(Web3(provider), decoder=revert_decoder(), retry=retry)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", RateLimited),
        ("503", RpcUnavailable),
        ("reset", RpcUnavailable),
        ("truncate", RpcUnavailable),
        ("delay:1.5", RpcTimeout),
        ("rpc:-32005:rate limit exceeded", RateLimited),
        ("rpc:-32000:header not found", RpcUnavailable),
    ],
)
def test_transient_faults_are_typed_retryable_and_retried(
    proxy: FaultProxy, anvil_node: AnvilNode, fault: str, error: type[RetryableError]
) -> None:
    proxy.inject([fault])
    with pytest.raises(error):
        through(proxy, RetryPolicy(attempts=1)).block_number()

    proxy.inject([fault, fault, fault])
    before = proxy.requests
    assert through(proxy).block_number() == anvil_node.w3.eth.block_number
    assert proxy.requests - before == 4, "three failures, then the answer"


def test_batches_are_retried_whole_and_keep_their_order(proxy: FaultProxy, anvil_node: AnvilNode) -> None:
    proxy.inject(["429", "truncate", "reset"])
    results = through(proxy).batch([("eth_chainId", []), ("eth_blockNumber", []), ("eth_chainId", [])])
    assert results == [hex(anvil_node.w3.eth.chain_id), hex(anvil_node.w3.eth.block_number), hex(31337)]


def test_permanent_errors_are_not_retried(proxy: FaultProxy) -> None:
    proxy.inject(["rpc:-32602:invalid params"])
    before = proxy.requests
    with pytest.raises(RpcError) as excinfo:
        through(proxy).block_number()
    assert isinstance(excinfo.value, PermanentError)
    assert (excinfo.value.code, excinfo.value.message) == (-32602, "invalid params")
    assert proxy.requests - before == 1


def test_retries_give_up_with_the_last_error() -> None:
    with FaultProxy("http://127.0.0.1:9").running() as dead:  # nothing answers upstream
        dead.inject(["503"] * 5)
        with pytest.raises(RpcUnavailable):
            through(dead, RetryPolicy(attempts=5, initial_delay=0.001)).block_number()
        assert dead.requests == 5


def test_node_refusals_of_transactions_are_typed(anvil_node: AnvilNode) -> None:
    rpc = Rpc(anvil_node.w3, decoder=revert_decoder())
    poor = LocalSigner(Account.create(secrets.token_hex(32)))
    sender = Sender(rpc, poor)
    with pytest.raises(InsufficientFunds):
        sender.submit(Call(to=anvil_node.accounts[0], value=1, gas=21_000))
    assert sender.nonces.next_nonce in (None, 0), "a refused first transaction gives its nonce back"

    rich = Sender(rpc, LocalSigner(Account.create(secrets.token_hex(32))))
    anvil_node.w3.eth.wait_for_transaction_receipt(
        anvil_node.w3.eth.send_transaction(
            {"from": anvil_node.accounts[0], "to": rich.address, "value": 10**18}
        )
    )
    rich.transact(Call(to=anvil_node.accounts[0], value=1))
    raw = rich._sign(Call(to=anvil_node.accounts[0], value=1), 0, 21_000, *rich.current_fees())
    (result,) = rpc.send_raw_many([raw])
    assert isinstance(result, NonceTooLow)


def test_issues_through_a_faulty_connection_all_land_exactly_once(
    proxy: FaultProxy, anvil_node: AnvilNode
) -> None:
    snapshot = anvil_node.snapshot()
    try:
        ledger: Ledger = deploy_ledger(anvil_node)
        signer = new_partner(ledger)
        rpc = through(proxy)
        sender = Sender(rpc, signer, policy=SendPolicy(replace_after=0.5, timeout=60))
        partner = ChainLedger(rpc, ledger.address, sender=sender)
        items = [
            Issuance(Account.create().address, Points(3), random_ref(), ReasonCode(1)) for _ in range(60)
        ]
        pending = []
        faults = ["429", "reset", "truncate", "503", "delay:1.5", "pass", "pass"]
        for start in range(0, 60, 6):
            proxy.inject(faults[start // 6 % len(faults) :] + faults[: start // 6 % len(faults)])
            pending += partner.issue_many(items[start : start + 6])
        outcomes = sender.wait_all(pending)

        assert [o for o in outcomes if isinstance(o, Exception)] == []
        reader = ChainLedger(Rpc(anvil_node.w3), ledger.address)
        assert [reader.balance_of(i.to) for i in items] == [3] * 60
        assert reader.partner(PartnerId(10)).issued == 180
        assert all(reader.reference_used(PartnerId(10), i.ref) for i in items)
    finally:
        anvil_node.revert(snapshot)
