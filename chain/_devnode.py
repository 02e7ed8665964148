"""Local development nodes and the one place an RPC URL becomes a ``Web3``.

:func:`connect` turns the RPC URL from the settings into a connected ``Web3``:

=====================  ==================================================================
``eth-tester://``      an in-process eth-tester (py-evm) chain with funded, unlocked accounts
``anvil://?opts``      a fresh anvil from ``node_modules`` on a free loopback port, stopped on exit
``http(s)://host...``  an existing node over HTTP; nothing is spawned
``ws(s)://host...``    refused: web3 v8 has no synchronous websocket provider (see below)
=====================  ==================================================================

``anvil://`` options, all optional, in the query string
(``anvil://?chain_id=31337&accounts=12&block_time=1``):

``chain_id``    the chain id (default 31337)
``accounts``    how many funded dev accounts (anvil's default: 10)
``block_time``  seconds between blocks (interval mining); without it every transaction is mined at once
``port``        a fixed port instead of a free one
``state``       a state file (relative to ``root``): loaded at start if it exists, written on exit

:class:`AnvilProcess` is the anvil underneath, for tests that stop, kill and restart a node.
:func:`fund` sends native coin from a node's first unlocked account to a generated key.

Errors, besides those of :mod:`chain._errors`::

    PermanentError
    ├── UnsupportedRpcUrl     an RPC URL connect() cannot serve; ``scheme`` names its scheme
    └── DevNodeError          anvil missing, exited early (its stderr tail in the message),
                              answered with another chain id; no unlocked account to fund from
    RetryableError
    └── NodeUnreachable       the node at ``url`` did not answer (refused, timed out, HTTP error)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import parse_qs, urlsplit

import requests
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import Wei

from ._errors import PermanentError, RetryableError

__all__ = [
    "AnvilNode",
    "AnvilProcess",
    "DevNodeError",
    "NodeUnreachable",
    "UnsupportedRpcUrl",
    "anvil_binary",
    "connect",
    "eth_tester_web3",
    "fund",
    "start_anvil",
]

#: Where ``npm ci`` puts the native anvil binary of the ``@foundry-rs/anvil`` package.
_ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")

#: How much of anvil's stderr to quote when it exits before answering.
_STDERR_TAIL = 2000

_ANVIL_OPTIONS = ("accounts", "block_time", "chain_id", "port", "state")


# --------------------------------------------------------------------------- errors


class UnsupportedRpcUrl(PermanentError):
    """An RPC URL :func:`connect` cannot serve: unknown scheme, websocket, or a bad ``anvil://`` option."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = _redact(url)
        self.scheme = urlsplit(url).scheme
        super().__init__(f"cannot connect to {self.url}: {reason}")


class DevNodeError(PermanentError):
    """A local node could not be started or used as asked (retrying the same call will not help)."""


class NodeUnreachable(RetryableError):
    """The node at ``url`` did not answer; it may be starting, restarting or rate limiting."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = _redact(url)
        super().__init__(f"no answer from the node at {self.url}: {detail}")


def _redact(url: str) -> str:
    """``scheme://host:port`` only: provider URLs often carry an API key in the path or userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # a port that is not a number
        port = ""
    return f"{parts.scheme}://{host}{port}"


# --------------------------------------------------------------------------- anvil


def anvil_binary(root: Path) -> Path:
    """The anvil binary installed under the project ``root``."""
    return root / _ANVIL_RELATIVE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AnvilProcess:
    """An anvil child process that can be started, stopped, killed and restarted on the same port.

    With ``state_path`` anvil runs with ``--state``: it loads the file at start if it exists and
    writes the chain to it when it exits on SIGTERM (:meth:`stop`), so :meth:`restart` keeps the
    chain. :meth:`kill` (SIGKILL) loses everything since the last write; add
    ``extra_args=("--state-interval", "1")`` to write it every second as well.

    :attr:`w3` is one ``Web3`` for the node's lifetime and keeps working across restarts.
    anvil's stderr goes to a temporary file (a pipe nobody reads could fill and block it);
    its tail is quoted in the error when anvil exits before answering.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        chain_id: int = 31337,
        state_path: Path | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.binary = anvil_binary(root)
        self.host = host
        self._port_chosen = port is not None
        self.port = port if port is not None else _free_port()
        self.chain_id = chain_id
        self.state_path = state_path
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._session = requests.Session()
        self._w3: Web3 | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AnvilProcess {self.url} chain_id={self.chain_id} {state}>"

    @property
    def url(self) -> str:
        """The HTTP JSON-RPC endpoint."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The websocket endpoint anvil serves on the same port (for ``AsyncWeb3``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running child process, or ``None`` when stopped."""
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def w3(self) -> Web3:
        """A ``Web3`` on :attr:`url`; the same object before and after a restart."""
        if self._w3 is None:
            provider = HTTPProvider(
                self.url, request_kwargs={"timeout": self.request_timeout}, session=self._session
            )
            self._w3 = Web3(provider)
        return self._w3

    def start(self) -> Self:
        """Spawns anvil and returns once it answers with the expected chain id (no-op if running)."""
        if self.running:
            return self
        if self._process is not None:  # it died on its own since the last start
            self._process.wait()
            self._release()
        if not self.binary.exists():
            raise DevNodeError(f"anvil not found at {self.binary}: run `make install` (npm ci)")
        # A port picked by _free_port() can be taken by someone else before anvil binds it;
        # only then, and only before the first successful start, try another one.
        attempts = 1 if self._port_chosen else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except _AddressInUse as exc:
                if attempt == attempts - 1:
                    raise DevNodeError(str(exc)) from None
                self.port = _free_port()
                self._w3 = None  # it would still point at the old port
            else:
                break
        self._port_chosen = True  # a restart must come back on the same port
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, so anvil writes ``--state``; waits for it to exit (SIGKILL after ``timeout``)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._release()

    def kill(self) -> None:
        """SIGKILL: the node dies at once, as in a crash; nothing is written to the state file."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._release()

    def restart(self) -> Self:
        """:meth:`stop` then :meth:`start`: same port, same state file."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        command = [
            str(self.binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
        ]
        if self.state_path is not None:
            command += ["--state", str(self.state_path)]
        return [*command, *self.extra_args]

    def _spawn_and_wait(self) -> None:
        # Outlives this call (read when anvil dies, closed in _release), hence no ``with``.
        self._stderr = tempfile.TemporaryFile(prefix="anvil-", suffix=".stderr")  # noqa: SIM115
        self._process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        try:
            self._wait_until_answering()
        except BaseException:
            self.kill()
            raise

    def _wait_until_answering(self) -> None:
        process = self._process
        assert process is not None
        with requests.Session() as session:
            # One attempt per probe (no retry backoff) with a short timeout: the loop is the retry.
            probe = Web3(
                HTTPProvider(
                    self.url,
                    request_kwargs={"timeout": 1.0},
                    session=session,
                    exception_retry_configuration=None,
                )
            )
            deadline = time.monotonic() + self.startup_timeout
            while True:
                if process.poll() is not None:
                    self._raise_exited(process.returncode)
                try:
                    answered = probe.eth.chain_id
                except requests.RequestException as exc:
                    if time.monotonic() > deadline:
                        raise NodeUnreachable(
                            self.url, f"anvil did not answer within {self.startup_timeout}s"
                        ) from exc
                    time.sleep(0.05)
                    continue
                if process.poll() is not None:  # someone else's node answered on our port
                    self._raise_exited(process.returncode)
                if answered != self.chain_id:
                    raise DevNodeError(
                        f"anvil at {self.url} answered chain id {answered}, not {self.chain_id}"
                    )
                return

    def _raise_exited(self, returncode: int) -> None:
        tail = self._stderr_tail()
        message = (
            f"anvil exited with code {returncode} before answering on {self.url}: {tail or '(no stderr)'}"
        )
        if "Address already in use" in tail:
            raise _AddressInUse(message)
        raise DevNodeError(message)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0, 2)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        return self._stderr.read().decode(errors="replace").strip()

    def _release(self) -> None:
        self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        # Drops kept-alive connections to the old process; the session reconnects on next use.
        self._session.close()


class _AddressInUse(DevNodeError):
    """anvil could not bind its port (internal: triggers a retry on another free port)."""


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
    with AnvilProcess(
        root, chain_id=chain_id, extra_args=extra_args, startup_timeout=startup_timeout
    ) as anvil:
        assert anvil.process is not None
        yield AnvilNode(url=anvil.url, process=anvil.process, w3=anvil.w3)


# --------------------------------------------------------------------------- eth-tester


def eth_tester_web3() -> Web3:
    """A ``Web3`` on a fresh in-process eth-tester (py-evm) chain with funded, unlocked accounts."""
    return Web3(EthereumTesterProvider())


# --------------------------------------------------------------------------- RPC URLs


@contextmanager
def connect(url: str, *, root: Path, timeout: float = 30.0) -> Iterator[Web3]:
    """A ``Web3`` for the RPC ``url`` (see the module docstring), released on exit.

    ``root`` is the project root (where ``node_modules`` is, and what an ``anvil://`` ``state``
    path is relative to). ``timeout`` bounds each HTTP request and anvil's start.
    For an existing node the chain id is asked once: :class:`NodeUnreachable` if it does not answer.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "eth-tester":
        yield eth_tester_web3()
    elif scheme == "anvil":
        with _anvil_from_url(url, root=root, timeout=timeout) as anvil:
            yield anvil.w3
    elif scheme in ("http", "https"):
        with requests.Session() as session:
            # Retrying is the chain layer's (``Rpc``, with typed errors), not web3's hidden backoff.
            provider = HTTPProvider(
                url, request_kwargs={"timeout": timeout}, session=session, exception_retry_configuration=None
            )
            _check_answers(url, session, timeout)
            yield Web3(provider)
    elif scheme in ("ws", "wss"):
        raise UnsupportedRpcUrl(
            url,
            "web3 v8 has no synchronous websocket provider (LegacyWebSocketProvider was removed); "
            "use the node's http(s):// URL, or AsyncWeb3(WebSocketProvider(...)) in async code",
        )
    else:
        raise UnsupportedRpcUrl(
            url,
            f"unsupported scheme {scheme!r}; expected one of anvil, eth-tester, http, https",
        )


def _check_answers(url: str, session: requests.Session, timeout: float) -> None:
    # A single attempt: web3's default retry backoff would only delay the error the caller retries on.
    probe = Web3(
        HTTPProvider(
            url, request_kwargs={"timeout": timeout}, session=session, exception_retry_configuration=None
        )
    )
    try:
        _ = probe.eth.chain_id
    except requests.RequestException as exc:
        raise NodeUnreachable(url, type(exc).__name__) from exc


def _anvil_from_url(url: str, *, root: Path, timeout: float) -> AnvilProcess:
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise UnsupportedRpcUrl(
            url, "anvil:// takes its options in the query string only, e.g. anvil://?chain_id=1"
        )
    try:
        raw = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise UnsupportedRpcUrl(url, f"malformed query string: {exc}") from None
    unknown = sorted(set(raw) - set(_ANVIL_OPTIONS))
    if unknown:
        raise UnsupportedRpcUrl(url, f"unknown anvil:// option(s) {unknown}; known: {list(_ANVIL_OPTIONS)}")
    options: dict[str, str] = {}
    for name, values in raw.items():
        if len(values) != 1:
            raise UnsupportedRpcUrl(url, f"anvil:// option {name!r} given {len(values)} times")
        options[name] = values[0]

    def number(name: str) -> int | None:
        if name not in options:
            return None
        try:
            value = int(options[name])
        except ValueError:
            raise UnsupportedRpcUrl(
                url, f"anvil:// option {name}={options[name]!r} is not an integer"
            ) from None
        if value < 0:
            raise UnsupportedRpcUrl(url, f"anvil:// option {name}={value} is negative")
        return value

    chain_id, accounts, block_time, port = (number(n) for n in ("chain_id", "accounts", "block_time", "port"))
    extra: list[str] = []
    if accounts is not None:
        extra += ["--accounts", str(accounts)]
    if block_time is not None:
        extra += ["--block-time", str(block_time)]
    state = options.get("state")
    return AnvilProcess(
        root,
        port=port,
        chain_id=31337 if chain_id is None else chain_id,
        state_path=None if not state else root / state,
        extra_args=extra,
        startup_timeout=timeout,
        request_timeout=timeout,
    )


# --------------------------------------------------------------------------- funding


def fund(w3: Web3, address: str, wei: int, *, timeout: float = 30.0) -> None:
    """Sends ``wei`` of native coin to ``address`` from the node's first unlocked account and waits
    until it is mined (eth-tester and anvil both have unlocked, funded accounts)."""
    accounts = w3.eth.accounts
    if not accounts:
        raise DevNodeError("the node has no unlocked account to fund from")
    tx_hash = w3.eth.send_transaction(
        {"from": accounts[0], "to": to_checksum_address(address), "value": Wei(wei)}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise DevNodeError(f"funding {address} with {wei} wei failed: {tx_hash.to_0x_hex()}")
