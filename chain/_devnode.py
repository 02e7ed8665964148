"""Local development nodes: a spawned anvil from ``node_modules`` or an in-process eth-tester chain."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from web3 import HTTPProvider, Web3
from web3.providers.eth_tester import EthereumTesterProvider

from ._errors import ChainError, RetryableError

__all__ = ["AnvilNode", "anvil_binary", "eth_tester_web3", "start_anvil"]

#: Where ``npm ci`` puts the native anvil binary of the ``@foundry-rs/anvil`` package.
_ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")


def anvil_binary(root: Path) -> Path:
    """The anvil binary installed under the project ``root``."""
    return root / _ANVIL_RELATIVE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class AnvilNode:
    """A running anvil: its URL, its process and a connected ``Web3``."""

    url: str
    process: subprocess.Popen[bytes]
    w3: Web3


@contextmanager
def start_anvil(
    root: Path,
    *,
    chain_id: int = 31337,
    extra_args: tuple[str, ...] = (),
    startup_timeout: float = 20.0,
) -> Iterator[AnvilNode]:
    """Starts anvil on a free loopback port, waits until it answers, and stops it on exit."""
    binary = anvil_binary(root)
    if not binary.exists():
        raise ChainError(f"anvil not found at {binary}: run `make install` (npm ci)")
    port = _free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chain-id",
            str(chain_id),
            "--silent",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise ChainError(f"anvil exited with {process.returncode}: {stderr.strip()}")
            try:
                if w3.eth.chain_id == chain_id:
                    break
            except Exception as exc:  # not listening yet
                if time.monotonic() > deadline:
                    raise RetryableError(f"anvil did not answer on {url} within {startup_timeout}s") from exc
                time.sleep(0.05)
        yield AnvilNode(url=url, process=process, w3=w3)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def eth_tester_web3() -> Web3:
    """A ``Web3`` on a fresh in-process eth-tester (py-evm) chain with funded, unlocked accounts."""
    return Web3(EthereumTesterProvider())
