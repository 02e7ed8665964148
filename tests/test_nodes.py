"""Local nodes as a library: the RPC URL decides the node, anvil can be stopped, killed and restarted.

``connect(url)`` serves ``eth-tester://`` (in process), ``anvil://?options`` (spawned, stopped on
exit) and ``http(s)://`` (an existing node, asked for its chain id first). Every other URL is refused
with :class:`UnsupportedRpcUrl`, which names the scheme; a node that does not answer is a
:class:`NodeUnreachable`, a retryable error.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.types import Wei

from chain import PermanentError, RetryableError
from chain._devnode import (
    AnvilProcess,
    DevNodeError,
    NodeUnreachable,
    UnsupportedRpcUrl,
    anvil_binary,
    connect,
    fund,
)
from conftest import ROOT, AnvilNode, Node

needs_anvil = pytest.mark.skipif(
    not anvil_binary(ROOT).exists(), reason="anvil is not installed (run `make install`)"
)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def send_value(w3: Web3, value: int = 7) -> HexBytes:
    accounts = list(w3.eth.accounts)
    tx_hash = w3.eth.send_transaction({"from": accounts[0], "to": accounts[1], "value": Wei(value)})
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    return tx_hash


def endpoint(w3: Web3) -> str:
    return str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- connect(url)


def test_eth_tester_url_gives_an_in_process_chain() -> None:
    with connect("eth-tester://", root=ROOT) as w3:
        assert w3.eth.block_number == 0
        send_value(w3)
        assert w3.eth.block_number == 1


@needs_anvil
def test_anvil_url_spawns_anvil_with_the_options_and_stops_it_on_exit() -> None:
    with connect("anvil://?chain_id=4242&accounts=3", root=ROOT) as w3:
        assert w3.eth.chain_id == 4242
        assert len(w3.eth.accounts) == 3
        send_value(w3)
        port = int(endpoint(w3).rsplit(":", 1)[1])
        assert listening(port)
    assert not listening(port)


@needs_anvil
def test_anvil_url_state_option_keeps_the_chain_between_runs(tmp_path: Path) -> None:
    url = f"anvil://?state={tmp_path / 'chain.json'}"
    with connect(url, root=ROOT) as w3:
        tx_hash = send_value(w3)
    with connect(url, root=ROOT) as w3:
        assert w3.eth.block_number == 1
        assert w3.eth.get_transaction_receipt(tx_hash)["status"] == 1


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("anvil://?chian_id=1", "unknown anvil:// option"),
        ("anvil://?chain_id=one", "not an integer"),
        ("anvil://?accounts=2&accounts=3", "given 2 times"),
        ("anvil://localhost:8545", "query string only"),
    ],
)
def test_anvil_url_with_bad_options_is_refused(url: str, complaint: str) -> None:
    with pytest.raises(UnsupportedRpcUrl, match=complaint) as excinfo, connect(url, root=ROOT):
        pass
    assert excinfo.value.scheme == "anvil"


@needs_anvil
def test_http_url_connects_to_a_running_node_without_spawning(anvil_node: AnvilNode) -> None:
    url = endpoint(anvil_node.w3)
    with connect(url, root=ROOT, timeout=5) as w3:
        assert w3.eth.chain_id == 31337
        assert w3.eth.accounts == anvil_node.w3.eth.accounts
        assert w3.eth.block_number == anvil_node.w3.eth.block_number
    assert listening(int(url.rsplit(":", 1)[1])), "connect() must not stop a node it did not start"


@needs_anvil
def test_ws_url_is_refused_because_web3_v8_has_no_sync_websocket_provider(anvil_node: AnvilNode) -> None:
    url = endpoint(anvil_node.w3).replace("http://", "ws://")
    with pytest.raises(UnsupportedRpcUrl, match="websocket") as excinfo, connect(url, root=ROOT):
        pass
    assert excinfo.value.scheme == "ws"
    assert isinstance(excinfo.value, PermanentError)


def test_unknown_scheme_is_a_permanent_error_naming_the_scheme() -> None:
    with pytest.raises(UnsupportedRpcUrl, match="'ftp'") as excinfo, connect("ftp://x", root=ROOT):
        pass
    assert excinfo.value.scheme == "ftp"
    assert isinstance(excinfo.value, PermanentError)


def test_http_url_without_a_node_is_retryable() -> None:
    port = unused_port()
    with pytest.raises(NodeUnreachable) as excinfo, connect(f"http://127.0.0.1:{port}", root=ROOT, timeout=5):
        pass
    assert isinstance(excinfo.value, RetryableError)
    assert excinfo.value.url == f"http://127.0.0.1:{port}"


def test_errors_do_not_repeat_credentials_from_the_url() -> None:
    port = unused_port()
    url = f"http://user:s3cret@127.0.0.1:{port}/v3/APIKEY"
    with pytest.raises(NodeUnreachable) as excinfo, connect(url, root=ROOT, timeout=5):
        pass
    assert "s3cret" not in str(excinfo.value)
    assert "APIKEY" not in str(excinfo.value)


# --------------------------------------------------------------------------- AnvilProcess


@needs_anvil
def test_stopped_and_restarted_anvil_keeps_its_chain(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    with AnvilProcess(ROOT, chain_id=1337, state_path=state) as anvil:
        w3, url = anvil.w3, anvil.url
        tx_hash = send_value(w3)
        height = w3.eth.block_number

        anvil.stop()
        assert not anvil.running
        assert state.exists(), "SIGTERM must let anvil write its --state file"
        assert not listening(anvil.port)

        anvil.restart()
        assert anvil.url == url
        assert anvil.w3 is w3, "the same Web3 keeps working across a restart"
        assert w3.eth.chain_id == 1337
        assert w3.eth.block_number == height
        assert w3.eth.get_transaction_receipt(tx_hash)["blockNumber"] == height
    assert not anvil.running
    assert anvil.process is None


@needs_anvil
def test_killed_anvil_is_gone() -> None:
    with AnvilProcess(ROOT) as anvil:
        process = anvil.process
        assert process is not None
        anvil.kill()
        assert process.returncode == -9
        assert not anvil.running
        assert not listening(anvil.port)


@needs_anvil
def test_anvil_that_exits_early_reports_its_stderr() -> None:
    anvil = AnvilProcess(ROOT, extra_args=("--no-such-flag",))
    with pytest.raises(DevNodeError, match="no-such-flag"):
        anvil.start()
    assert anvil.process is None


@needs_anvil
def test_anvil_on_a_taken_port_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DevNodeError, match="Address already in use"):
            AnvilProcess(ROOT, port=port).start()


# --------------------------------------------------------------------------- fund


def test_fund_credits_a_generated_key(node: Node) -> None:
    key = Account.create()
    fund(node.w3, key.address, 123_456)
    assert node.w3.eth.get_balance(key.address) == 123_456
