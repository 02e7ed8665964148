"""Running the service under uvicorn: ``loyalty serve`` (worker processes) and ``loyalty run`` (in process).

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
the app in the process that holds the chain, with one worker (:func:`serve_in_process`).

Errors (:class:`api._errors.ApiError`, as every error raised on purpose in ``api``)::

    ServeError            the service cannot be served as configured (a chain it cannot share, a port taken)
"""

from __future__ import annotations

import logging
import socket
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from urllib.parse import urlsplit

from chain._manifest import DeploymentManifest, load_manifest
from chain._signer import Keystore

from ._chain_setup import keystore_password, open_chain
from ._errors import ApiError
from ._settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from web3 import Web3

    from ._custody import Custody

__all__ = [
    "APP_FACTORY",
    "CUSTODY_KEYSTORE",
    "ServeError",
    "app_from_env",
    "check_servable",
    "custody_from_settings",
    "listen",
    "manifest_if_any",
    "prepare",
    "public_base",
    "serve_in_process",
]

logger = logging.getLogger("api.serve")

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
    from ._custody import custody_from_keystore

    keystore = Keystore(settings.keystore_dir / CUSTODY_KEYSTORE, scrypt_n=settings.keystore_scrypt_n)
    return custody_from_keystore(keystore, keystore_password(settings), create=create)


def prepare(settings: Settings, engine: Engine) -> list[str]:
    """What ``loyalty serve`` does once before the workers start: brings the schema to its heads, checks the
    manifest against the node and makes the custody seed on the first start. Returns the schema's heads."""
    from chain._manifest import verify_manifest

    from ._db import migrate_all

    check_servable(settings)
    migrate_all(engine)
    manifest = manifest_if_any(settings)
    if manifest is not None:
        with open_chain(settings) as w3:
            verify_manifest(manifest, w3)
    custody_from_settings(settings, create=True)
    return schema_heads(engine)


def schema_heads(engine: Engine) -> list[str]:
    """The database's Alembic heads (one per branch: the mirror's and the service's)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def app_from_env() -> FastAPI:
    """The app as a uvicorn worker builds it (``uvicorn.run(APP_FACTORY, factory=True)``): everything from
    the environment's settings. The schema must be at its heads already (``loyalty serve`` sees to it)."""
    from ._app import create_app
    from ._db import service_engine

    settings = Settings()
    check_servable(settings)
    manifest = manifest_if_any(settings)
    # The chain connection lives as long as the worker: the stack is kept with the app, never closed
    # before the process ends.
    resources = ExitStack()
    w3: Web3 = resources.enter_context(open_chain(settings))
    app = create_app(
        settings,
        engine=service_engine(settings),
        contract=None if manifest is None else manifest.ledger.address,
        w3=w3,
        custody=custody_from_settings(settings),
    )
    app.state.resources = resources
    return app


# --------------------------------------------------------------------------- listening


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port), or :class:`ServeError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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
    app: FastAPI, sock: socket.socket, *, access_log: bool = True, **config: Any
) -> None:
    """Serves ``app`` on ``sock`` in this process (one worker) until SIGINT or SIGTERM.

    uvicorn takes the two signals while it runs and, once it has shut down, raises them again for the
    handlers that were in place before: the caller installs its own (which, say, set a stop event) to
    end without a ``KeyboardInterrupt``.
    """
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            access_log=access_log,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            **config,
        )
    )
    if threading.current_thread() is not threading.main_thread():
        raise ServeError("serve_in_process runs in the main thread (signals are delivered there)")
    server.run(sockets=[sock])
