"""Running the service under uvicorn: ``loyalty serve`` (worker processes), ``loyalty run`` and ``loyalty up``
(in process; ``up`` is supervised in ``api/_up.py``).

``loyalty serve`` runs ``settings.api_workers`` uvicorn worker processes. uvicorn starts each worker from an
import string, so the app is built in the worker by :func:`app_from_env` (``api._serve:app_from_env`` with
``factory=True``), from the environment's :class:`~api.Settings` alone:

- the database at ``database_url`` (the mirror's tables and the service's own): its schema is brought to
  its heads once, by the command, before any worker starts (:func:`prepare`), never by the workers at
  once;
- the ledger: the deployment manifest's when there is one at ``manifest_path``, else the one ledger the
  mirror holds (:class:`~api._services.Services` finds it on first use);
- the chain at ``rpc_url`` for live reads (readiness, the audit head): each worker has its own connection;
- the custody of members' keys when a keystore password is configured: the seed is the one key of
  ``<keystore_dir>/custody`` (:func:`api._custody.custody_from_keystore`), made on the first start by the
  command, read by every worker; without a password, custodial enrolment is off (``custody=None``).

A chain that lives inside one process (the embedded ``eth-tester://``, a throwaway ``anvil://``) cannot be
shared by several processes: :func:`check_servable` refuses it and points to ``loyalty run``, which serves
the app in the process that holds the chain, with one worker (:func:`serve_in_process`, which a supervisor
can also stop, and which says when it has started); there the indexer's thread and the app's threadpool reach
the embedded chain through :func:`web3_factory` / :func:`thread_safe_web3s`, whose requests take one lock
(py-evm is not made for concurrent use).

Errors (:class:`api._errors.ApiError`, as every error raised on purpose in ``api``)::

    ServeError            the service cannot be served as configured (a chain it cannot share, a port taken)
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import Engine, select
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chain import ChainError
from chain._manifest import DeploymentManifest, load_manifest, verify_manifest
from chain._signer import Keystore
from indexer import Cursor

from ._app import create_app
from ._chain_setup import keystore_password, open_chain
from ._coalition import Coalition
from ._custody import custody_from_keystore
from ._db import migrate_all, service_engine
from ._errors import ApiError
from ._logging import logging_config
from ._settings import Settings

if TYPE_CHECKING:
    from web3.types import RPCEndpoint, RPCResponse

    from ._custody import Custody

__all__ = [
    "APP_FACTORY",
    "CUSTODY_KEYSTORE",
    "Prepared",
    "ServeError",
    "app_from_env",
    "check_servable",
    "coalition_if_any",
    "custody_from_settings",
    "listen",
    "manifest_if_any",
    "prepare",
    "public_base",
    "schema_heads",
    "serve_in_process",
    "serve_workers",
    "thread_safe_web3s",
    "web3_factory",
]

logger = logging.getLogger(__name__)


#: What uvicorn imports in each worker (``factory=True``: it calls it for the app).
APP_FACTORY = "api._serve:app_from_env"
#: The custody seed's keystore directory, inside ``keystore_dir`` (a directory of its own: see api._custody).
CUSTODY_KEYSTORE = "custody"
#: Seconds uvicorn waits for requests in flight once asked to stop.
GRACEFUL_SHUTDOWN_S = 10


class ServeError(ApiError):
    """The service cannot be served as configured (a chain it cannot share, an address already in use)."""


# --------------------------------------------------------------------------- what the app runs on


def check_servable(settings: Settings) -> None:
    """Refuses a chain that lives inside one process: separate worker processes cannot share it."""
    scheme = urlsplit(settings.rpc_url).scheme.lower()
    if scheme in ("eth-tester", "anvil"):
        raise ServeError(
            f"the chain at {scheme}:// lives inside one process and cannot be shared by uvicorn's workers; "
            "`loyalty run` serves the whole service (chain, indexer, API) in one process, or set "
            "LOYALTY_RPC_URL to a node's http(s):// URL"
        )


def manifest_if_any(settings: Settings) -> DeploymentManifest | None:
    """The deployment manifest at ``manifest_path``, or ``None`` when there is none (the service then
    serves the one ledger the mirror holds)."""
    path: Path = settings.manifest_path
    return load_manifest(path) if path.exists() else None


def _password_configured(settings: Settings) -> bool:
    return settings.keystore_password is not None or settings.keystore_password_file is not None


def custody_from_settings(settings: Settings, *, create: bool = False) -> Custody | None:
    """The custody whose seed is kept in ``<keystore_dir>/custody`` under the keystore password, or ``None``
    when no password is configured (custodial members cannot be enrolled then). ``create``: make the seed
    if there is none yet (the command does, once, before the workers start)."""
    if not _password_configured(settings):
        return None
    keystore = Keystore(settings.keystore_dir / CUSTODY_KEYSTORE, scrypt_n=settings.keystore_scrypt_n)
    return custody_from_keystore(keystore, keystore_password(settings), create=create)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :func:`prepare` found: the schema's heads and the ledger the service will serve."""

    heads: list[str]
    #: the ledger's address; ``None``: the mirror holds none yet (``/readyz`` answers 503 until it does)
    ledger: str | None
    #: where the ledger comes from: ``"manifest"`` or ``"mirror"``
    source: str


def prepare(settings: Settings, engine: Engine) -> Prepared:
    """What ``loyalty serve`` does once before the workers start: brings the schema to its heads, checks the
    node answers and the manifest (if any) against it, finds the ledger, and makes the custody seed on the
    first start (when a keystore password is configured)."""
    check_servable(settings)
    migrate_all(engine)
    manifest = manifest_if_any(settings)
    with open_chain(settings) as w3:
        if manifest is not None:
            verify_manifest(manifest, w3)
    custody_from_settings(settings, create=True)
    if manifest is not None:
        return Prepared(schema_heads(engine), manifest.ledger.address, "manifest")
    with engine.connect() as conn:
        ledgers = conn.execute(select(Cursor.contract)).scalars().all()
    if len(ledgers) > 1:
        raise ServeError(
            f"the mirror holds {len(ledgers)} ledgers and there is no deployment manifest at "
            f"{settings.manifest_path} to say which one to serve"
        )
    return Prepared(schema_heads(engine), ledgers[0] if ledgers else None, "mirror")


def schema_heads(engine: Engine) -> list[str]:
    """The database's Alembic heads (one per branch: the mirror's and the service's)."""
    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def app_from_env() -> FastAPI:
    """The app as a uvicorn worker builds it (``uvicorn.run(APP_FACTORY, factory=True)``): everything from
    the environment's settings. The schema must be at its heads already (``loyalty serve`` sees to it)."""
    settings = Settings()
    check_servable(settings)
    manifest = manifest_if_any(settings)
    # The chain connection lives as long as the worker: the stack is kept with the app, never closed
    # before the process ends.
    resources = ExitStack()
    w3: Web3 = resources.enter_context(open_chain(settings))
    engine = service_engine(settings)
    app = create_app(
        settings,
        engine=engine,
        contract=None if manifest is None else manifest.ledger.address,
        w3=w3,
        custody=custody_from_settings(settings),
        coalition=None if manifest is None else coalition_if_any(settings, w3, engine, manifest),
    )
    app.state.resources = resources
    return app


def coalition_if_any(
    settings: Settings, w3: Web3, engine: Engine, manifest: DeploymentManifest
) -> Coalition | None:
    """The coalition operations' keys when the service has its signing key (the admin's: a keystore key
    with its password configured, or a dev account in dev mode); otherwise those routes answer 503."""
    try:
        return Coalition.from_settings(settings, w3, engine, manifest)
    except (ChainError, OSError) as exc:
        logger.warning("coalition operations unavailable (%s): their routes answer 503", exc)
        return None


# --------------------------------------------------------------------------- one process: `loyalty run`


class _SerialisedTester(EthereumTesterProvider):
    """An eth-tester provider whose requests take a lock shared with other such providers of one chain."""

    def __init__(self, tester: Any, lock: threading.RLock) -> None:
        super().__init__(ethereum_tester=tester)
        self._lock = lock

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            return super().make_request(method, params)


def thread_safe_web3s(w3: Web3, count: int) -> list[Web3]:
    """``count`` Web3s on ``w3``'s chain for as many threads (the indexer's, the app's): see
    :func:`web3_factory`."""
    make = web3_factory(w3)
    return [make() for _ in range(count)]


def web3_factory(w3: Web3) -> Callable[[], Web3]:
    """Makes a Web3 on ``w3``'s chain for each thread that asks. On the embedded chain each is a provider of
    the same in-process chain whose requests take one lock shared by all of them (py-evm is not made for
    concurrent use); stop using ``w3`` itself then. Other chains: ``w3`` itself (an HTTP node takes
    concurrent requests)."""
    provider = w3.provider
    if not isinstance(provider, EthereumTesterProvider):
        return lambda: w3
    lock = threading.RLock()
    tester = provider.ethereum_tester
    return lambda: Web3(_SerialisedTester(tester, lock))


# --------------------------------------------------------------------------- listening


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port), or :class:`ServeError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it every response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def public_base(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket, as a local browser reaches it."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_in_process(
    app: FastAPI,
    sock: socket.socket,
    *,
    access_log: bool = True,
    stop: threading.Event | None = None,
    started: Callable[[], None] | None = None,
) -> bool:
    """Serves ``app`` on ``sock`` in this process (one worker) until SIGINT or SIGTERM, or until ``stop``
    is set (by whoever supervises the process: ``loyalty up`` when a part of it failed). ``started`` is
    called (in another thread) once the server accepts requests. Returns whether the server started
    (``False``: its startup failed, and uvicorn's log says why).

    uvicorn takes the two signals while it runs and, once it has shut down, raises them again for the
    handlers that were in place before: the caller installs its own (which, say, set a stop event) to
    end without a ``KeyboardInterrupt``.
    """
    # The process's logging (api._logging.configure_logging, set up by the command line) stays in charge:
    # uvicorn configures none of its own, and its access lines are replaced by the service's (api.access,
    # with the request id and the route), which ``access_log`` turns on or off.
    logging.getLogger("api.access").setLevel(logging.INFO if access_log else logging.WARNING)
    config = uvicorn.Config(
        app, access_log=False, log_config=None, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
    server = uvicorn.Server(config)
    if stop is not None or started is not None:
        watcher = threading.Thread(
            target=_watch, args=(server, stop, started), name="uvicorn-watch", daemon=True
        )
        watcher.start()
    server.run(sockets=[sock])
    return bool(server.started)


def _watch(server: uvicorn.Server, stop: threading.Event | None, started: Callable[[], None] | None) -> None:
    """Calls ``started`` once ``server`` has started; then sets its ``should_exit`` (which uvicorn reads on
    every tick of its main loop, a tenth of a second) when ``stop`` is set."""
    while not server.started:
        if server.should_exit or (stop is not None and stop.is_set()):
            break
        time.sleep(0.02)
    else:
        if started is not None:
            started()
    if stop is not None:
        stop.wait()
        server.should_exit = True


def _worker_logging(settings: Settings, *, access_log: bool) -> dict[str, Any]:
    config = logging_config(settings, level=logging.INFO)
    if not access_log:
        config["loggers"]["api.access"] = {"level": logging.WARNING}
    return config


def serve_workers(settings: Settings, *, access_log: bool = True) -> None:
    """Serves :data:`APP_FACTORY` with ``settings.api_workers`` uvicorn workers on ``api_host:api_port``
    until SIGINT or SIGTERM (see :func:`serve_in_process` about the signals). Call :func:`prepare` first."""
    # uvicorn reports an address in use by logging it and exiting: try it here first for a clear error.
    listen(settings.api_host, settings.api_port).close()
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.api_host,
            port=settings.api_port,
            workers=settings.api_workers,
            # each worker process applies this logging configuration (JSON lines in production, redacted,
            # with request ids); the service writes its own access line per request (api.access)
            log_config=_worker_logging(settings, access_log=access_log),
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    except SystemExit:
        raise ServeError("the server did not start (uvicorn's log above says why)") from None
