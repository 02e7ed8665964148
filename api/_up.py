"""``loyalty up``: the whole coalition on its embedded defaults, in one supervised process, resumable.

One command starts a local chain (``loyalty up``'s own anvil unless ``LOYALTY_RPC_URL`` names another),
deploys the ledger when there is no deployment manifest, brings the database's schema to its heads, seeds the
demo coalition (dev mode, once: ``api/_demo.py``), then runs the indexer, a batcher for every partner whose
operator key is in the keystore, the scheduled jobs and the API, and prints the URLs, the demo's keys and what
to try. Ctrl-C (SIGINT) or SIGTERM stops everything and exits 0; the next ``loyalty up`` resumes.

What it runs, one process group::

    anvil             a child process in a session of its own (a Ctrl-C in the terminal reaches only this
                      process, which stops anvil last, after everything that talks to it); it gets SIGTERM
                      if this process dies, even by SIGKILL (Linux's parent-death signal), and SIGTERM is
                      when anvil writes its chain to the state directory
    indexer           a thread: follows the chain into the mirror
    batcher-<id>      a thread per partner whose operator key the keystore holds (partners onboarded later
                      through the admin API are picked up within seconds)
    jobs              a thread: birthdays, the sweeper of expired points, the purges
    the API           uvicorn in the main thread (one worker: an embedded chain lives in this process)

Supervision: a worker thread that raises is restarted after a pause that doubles from one second up to
thirty; each is crash-safe on its own (the indexer resumes from its committed cursor, a batcher re-sends what
it stored and the ledger's references make that a no-op, the jobs are idempotent). A worker that fails more
than :data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW_S`, the chain's process exiting, or the API
server failing brings the whole group down cleanly instead: the server stops, the workers are asked to stop
and joined, anvil is stopped (its state written), and ``up`` returns 1 with the reason.

The state directory (``--state-dir``, else ``LOYALTY_UP_STATE_DIR``, default ``.loyalty/up``) keeps, unless
the setting of each names another place:

    chain.json          anvil's chain (``anvil --state``: loaded at start, written when anvil stops)
    ledger.db           the SQLite database (the mirror and the service's tables)
    keystore/           the keystore: partners' operator keys, the custody seed of custodial members
    keystore-password   dev mode without a configured password: a random one made on the first run (the
                        keys it protects are a local demo's; their scrypt factor is lowered to match)
    deployment.json     the deployment manifest
    demo.json           the demo's keys and members (dev mode; readable by its owner only)
    up.lock             held while a run uses the directory (a second ``loyalty up`` on it is refused)

Running again resumes: the same chain (anvil reloads it; its clock goes on from the present), the same ledger,
the same mirror, the demo not seeded twice. ``--fresh`` starts over (it removes those files only). A run
whose demo seeding was interrupted starts over by itself: a half-seeded timeline cannot be resumed (the
chain's clock only moves forward). A state directory whose chain was lost (a machine crash before anvil
wrote it) is refused with the hint to start over.

Other chains and databases. ``LOYALTY_RPC_URL`` set: that chain, and ``LOYALTY_DATABASE_URL`` set: that
database (PostgreSQL in production); the ledger is deployed only when there is no manifest, the demo seeded
only in dev mode and only when this state directory's ``demo.json`` says it was not (and the ledger has no
partners yet). A chain that ends with the process (``eth-tester://``, a throwaway ``anvil://``) has nothing
to resume: its database, keystore and manifest go in a temporary directory, removed at the end.

Time. ``up``'s own anvil starts, when it seeds the demo, with its genesis as many months in the past as the
demo's timeline is long, so that the seeded year ends at the present and the service runs on the wall clock.
On any other chain the demo moves the chain's clock ahead of the wall clock; the service's clock then runs
that far ahead too (the offset is read from the chain at each start), so consent deadlines, release times
and expiry agree with the chain's blocks.

Errors (an :class:`~api._errors.ApiError`, as every error raised on purpose in ``api``)::

    UpError     the state directory or the settings do not allow a run (a lost chain, --fresh with an
                external database); the message says what to do
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from web3 import Web3
from web3.exceptions import BlockNotFound

from chain import ChainError, PartnerId
from chain._devnode import AnvilProcess
from chain._manifest import DeploymentManifest, load_manifest, verify_manifest
from chain._rpc import Rpc
from chain._signer import LOCAL_CHAIN_IDS
from indexer import Cursor, Indexer

from ._app import create_app
from ._batcher import Batcher, BatcherConfig
from ._chain_setup import (
    Prompt,
    check_deployment_mode,
    deploy_from_settings,
    fund_on_embedded_chain,
    open_chain,
    open_ledger,
    revert_decoder,
    sender_from_settings,
    signer_from_settings,
)
from ._coalition import Coalition
from ._custody import Custody
from ._db import migrate_all, service_engine
from ._demo import (
    OPERATOR_FUNDING,
    ChainClock,
    DemoRuntime,
    DemoState,
    MemberSignIn,
    demo_months,
    demo_span,
    seed_demo,
    sign_in_members,
)
from ._errors import ApiError
from ._index_setup import indexer_from_settings
from ._jobs import Jobs
from ._ratelimit import RateLimiter
from ._serve import coalition_if_any, custody_from_settings, listen, serve_in_process, web3_factory
from ._settings import Settings

__all__ = [
    "CHAIN_STATE",
    "DEMO_FILE",
    "UpError",
    "UpInfo",
    "announce",
    "main",
    "up",
]

logger = logging.getLogger("api.up")

CHAIN_STATE: Final = "chain.json"
DATABASE_FILE: Final = "ledger.db"
KEYSTORE_DIR: Final = "keystore"
PASSWORD_FILE: Final = "keystore-password"
MANIFEST_FILE: Final = "deployment.json"
DEMO_FILE: Final = "demo.json"
LOCK_FILE: Final = "up.lock"
#: scrypt's work factor for the keys of ``up``'s own keystore, whose password file lies beside it: a stronger
#: factor would protect nothing and cost a second of CPU each time a key is made or loaded.
UP_SCRYPT_N: Final = 2**14
#: Seconds of margin before the demo's timeline starts when ``up``'s own anvil begins in the past.
GENESIS_MARGIN_S: Final = 3600
#: A worker that fails this often within the window brings the group down.
MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 600.0
#: The pause before a failed worker's restart doubles from the first to the last.
RESTART_BACKOFF_S: Final = (1.0, 30.0)
#: Seconds between two looks at the workers and the chain's process.
WATCH_INTERVAL_S: Final = 0.25
#: Seconds between looks for partners whose batcher could be started (their key newly in the keystore).
PARTNER_POLL_S: Final = 5.0
#: Seconds each worker has to stop once asked; anvil has to write its state.
WORKER_STOP_TIMEOUT_S: Final = 30.0
ANVIL_STOP_TIMEOUT_S: Final = 60.0

#: Run by the Python interpreter as anvil's parent-to-be (Linux): a session of its own, SIGTERM when its
#: parent (this process) dies, then ``exec`` anvil, which keeps both and the pid.
_DETACH = (
    "import ctypes, os, signal, sys\n"
    "os.setsid()\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"  # the parent died before the prctl
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class UpError(ApiError):
    """The state directory or the settings do not allow ``loyalty up`` to run as asked (the message says what
    to do)."""


# --------------------------------------------------------------------------- what a run looks like


@dataclass(frozen=True, slots=True)
class UpInfo:
    """What ``up`` runs, once it serves (handed to ``ready``; :func:`announce` prints it)."""

    #: the pages and the API, as a browser reaches them (``public_url``: a host name, which passkeys need)
    base_url: str
    #: where the API listens
    host: str
    port: int
    ledger: str
    chain_id: int
    #: the chain, described without secrets (``anvil (pid 123) at http://127.0.0.1:8545``, a redacted URL)
    chain: str
    #: ``up``'s own anvil's pid (``None``: another chain)
    anvil_pid: int | None
    #: the database's URL, its password hidden
    database: str
    #: ``None``: a chain that ends with the process (nothing is kept)
    state_dir: Path | None
    #: whether this run deployed the ledger, and seeded the demo
    deployed: bool
    seeded: bool
    #: the demo (dev mode) and how its members sign in; ``None``: no demo
    demo: DemoState | None = field(default=None, repr=False)
    sign_ins: tuple[MemberSignIn, ...] = field(default=(), repr=False)
    #: seconds from the call to ``up`` to serving
    elapsed_s: float = 0.0
    #: what the run could not do, one line each (e.g. no demo on a ledger that has partners)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Plan:
    settings: Settings
    state_dir: Path
    #: False: a temporary directory for a chain that ends with the process
    kept: bool
    #: ``up``'s own anvil, its chain in ``state_dir/chain.json``
    spawn: bool
    #: the database is the SQLite file in ``state_dir`` (``--fresh`` may remove it)
    owns_database: bool

    @property
    def chain_state(self) -> Path:
        return self.state_dir / CHAIN_STATE

    @property
    def demo_file(self) -> Path:
        return self.state_dir / DEMO_FILE


def _plan(settings: Settings, *, port: int, state_dir: Path, kept: bool) -> _Plan:
    """The settings this run uses: every path left at its default moves into the state directory."""
    given = settings.model_fields_set
    spawn = "rpc_url" not in given
    update: dict[str, Any] = {"api_port": port}
    owns_database = not kept or "database_url" not in given
    if owns_database:
        update["database_url"] = f"sqlite:///{state_dir / DATABASE_FILE}"
    if "keystore_dir" not in given:
        update["keystore_dir"] = state_dir / KEYSTORE_DIR
    if "manifest_path" not in given:
        update["manifest_path"] = state_dir / MANIFEST_FILE
    if "public_url" not in given:
        update["public_url"] = f"http://localhost:{port}"
    if (
        settings.mode == "dev"
        and settings.keystore_password is None
        and settings.keystore_password_file is None
    ):
        update["keystore_password_file"] = state_dir / PASSWORD_FILE
        if "keystore_scrypt_n" not in given:
            update["keystore_scrypt_n"] = UP_SCRYPT_N
    return _Plan(settings.model_copy(update=update), state_dir, kept, spawn, owns_database)


def _kept(settings: Settings) -> bool:
    """Whether the chain outlives the process: ``up``'s own anvil, or a node at an http(s) URL."""
    if "rpc_url" not in settings.model_fields_set:
        return True
    return urlsplit(settings.rpc_url).scheme.lower() in ("http", "https")


def _reset(state_dir: Path) -> None:
    """Removes what ``up`` keeps in ``state_dir`` (its own files only, whatever else the directory holds)."""
    for name in (CHAIN_STATE, DEMO_FILE, DEMO_FILE + ".tmp", MANIFEST_FILE, PASSWORD_FILE):
        (state_dir / name).unlink(missing_ok=True)
    for path in state_dir.glob(DATABASE_FILE + "*"):
        path.unlink(missing_ok=True)
    shutil.rmtree(state_dir / KEYSTORE_DIR, ignore_errors=True)


@contextmanager
def _only_run(state_dir: Path) -> Iterator[None]:
    """Holds ``state_dir``'s lock for the run (a second ``up`` on the same directory would start a second
    anvil on the same chain file and wait for the mirror's lease forever): :class:`UpError` when another
    process holds it. The lock goes with the process, however it ends."""
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UpError(f"another `loyalty up` (pid {holder}) runs on {state_dir}: stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _prepare(plan: _Plan, *, fresh: bool, notes: list[str]) -> None:
    """The state directory as this run needs it: reset when asked (or when a seeding was interrupted), the
    password file made; refuses a directory whose chain was lost."""
    state_dir = plan.state_dir
    settings = plan.settings
    if fresh and plan.kept:
        if not plan.owns_database:
            raise UpError(
                "--fresh starts over in the state directory only; LOYALTY_DATABASE_URL names a database of "
                "its own: drop or empty it yourself (and remove its deployment manifest), then run again"
            )
        _reset(state_dir)
    demo = DemoState.read(plan.demo_file)
    if demo is not None and demo.state == "seeding":
        if plan.spawn and plan.owns_database:
            notes.append("the previous run's demo seeding was interrupted: started over")
            _reset(state_dir)
        else:
            raise UpError(
                f"the demo seeding recorded in {plan.demo_file} was interrupted and cannot be resumed on "
                "this chain: deploy a new ledger (remove the manifest and the database) and run again"
            )
    if plan.spawn and not plan.chain_state.exists() and settings.manifest_path.exists():
        raise UpError(
            f"{state_dir} holds a deployment but not its chain ({CHAIN_STATE}: the previous run did not stop "
            "cleanly, and anvil could not write it): `loyalty up --fresh` starts over"
        )
    password = settings.keystore_password_file
    if password is not None and password.parent == state_dir and not password.exists():
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(32) + "\n")


# --------------------------------------------------------------------------- the chain


class _DetachedAnvil(AnvilProcess):
    """``up``'s anvil: in a session of its own, and sent SIGTERM when this process dies (Linux)."""

    def _command(self) -> list[str]:
        command = super()._command()
        if not sys.platform.startswith("linux"):
            return command
        return [sys.executable, "-I", "-S", "-c", _DETACH, str(os.getpid()), *command]


@dataclass(slots=True)
class _Node:
    w3: Web3
    description: str
    anvil: AnvilProcess | None = None

    @property
    def alive(self) -> bool:
        return self.anvil is None or self.anvil.running

    @property
    def pid(self) -> int | None:
        process = None if self.anvil is None else self.anvil.process
        return None if process is None else process.pid


@contextmanager
def _open_node(plan: _Plan, *, genesis: int | None) -> Iterator[_Node]:
    settings = plan.settings
    if plan.spawn:
        extra = ("--timestamp", str(genesis)) if genesis is not None else ()
        anvil = _DetachedAnvil(settings.project_root.resolve(), state_path=plan.chain_state, extra_args=extra)
        anvil.start()
        try:
            yield _Node(
                anvil.w3, f"anvil (pid {anvil.process.pid if anvil.process else '?'}) at {anvil.url}", anvil
            )
        finally:
            anvil.stop(timeout=ANVIL_STOP_TIMEOUT_S)
        return
    scheme = urlsplit(settings.rpc_url).scheme.lower()
    if scheme == "eth-tester":
        description = "the embedded chain (eth-tester; it ends with this process)"
    elif scheme == "anvil":
        description = "a throwaway anvil (it ends with this process)"
    else:
        parts = urlsplit(settings.rpc_url)
        description = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    with open_chain(settings) as w3:
        yield _Node(w3, description)


def _deployment(settings: Settings, w3: Web3) -> tuple[DeploymentManifest, bool]:
    """The manifest's ledger, checked against the chain; deployed first when there is no manifest."""
    path = settings.manifest_path
    if path.exists():
        manifest = load_manifest(path)
        try:
            verify_manifest(manifest, w3)
        except ChainError as exc:
            raise UpError(
                f"the deployment in {path} is not on this chain ({exc}); `loyalty up --fresh` starts over"
            ) from None
        return manifest, False
    check_deployment_mode(settings)
    chain_id = Rpc(w3).chain_id()
    signer = signer_from_settings(settings, chain_id)
    fund_on_embedded_chain(w3, signer.address)
    manifest = deploy_from_settings(settings, sender_from_settings(settings, w3, signer))
    verify_manifest(manifest, w3)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest.write(path)
    return manifest, True


def _check_mirror(engine: Engine, manifest: DeploymentManifest, w3: Web3) -> None:
    """Refuses a mirror that is ahead of the chain or on another branch of it (the chain lost its last
    blocks): the indexer could undo a short reorganisation, but the outbox would hold operations confirmed
    by blocks that are gone."""
    with engine.connect() as conn:
        cursor = conn.execute(
            select(Cursor).where(Cursor.contract == manifest.ledger.address.lower())
        ).first()
    if cursor is None or cursor.block_hash is None:
        return
    number, expected = cursor.block_number, "0x" + bytes(cursor.block_hash).hex()
    try:
        found: str | None = "0x" + bytes(w3.eth.get_block(number)["hash"]).hex()
    except BlockNotFound:
        found = None
    if found != expected:
        raise UpError(
            f"the database has mirrored the chain up to block {number}, which this chain does not hold "
            "(the chain lost its last blocks: a run that did not stop cleanly, or another chain); start "
            "over: `loyalty up --fresh` (a database of your own: empty it and remove the manifest)"
        )


def _ledger_has_partners(w3: Web3, manifest: DeploymentManifest) -> bool:
    return bool(open_ledger(manifest, Rpc(w3, decoder=revert_decoder())).partner_ids())


# --------------------------------------------------------------------------- the parts


def batcher_config(settings: Settings) -> BatcherConfig:
    return BatcherConfig(
        max_items=settings.batch_max_items,
        flush_interval_s=settings.batch_flush_interval_s,
        max_in_flight=settings.batch_max_in_flight,
    )


def operator_batcher(
    settings: Settings,
    w3: Web3,
    manifest: DeploymentManifest,
    engine: Engine,
    partner_id: int,
    *,
    clock: Callable[[], float] = time.time,
    prompt: Prompt | None = None,
) -> Batcher:
    """The batcher of ``partner_id``, signing with its operator's key (from the keystore, its password
    asked with ``prompt`` when none is configured; in dev mode an anvil dev account's address also works);
    :class:`~chain.ChainError` when the key is not at hand. ``loyalty up``, ``loyalty run`` and ``loyalty
    batcher`` all build theirs here."""
    rpc = Rpc(w3, decoder=revert_decoder())
    operator = open_ledger(manifest, rpc).partner(PartnerId(partner_id)).operator
    signer = signer_from_settings(
        settings.model_copy(update={"signer_address": operator}), rpc.chain_id(), prompt=prompt
    )
    fund_on_embedded_chain(w3, signer.address)  # dev accounts hold no ether on eth-tester's chain
    sender = sender_from_settings(settings, w3, signer)
    return Batcher(
        engine,
        open_ledger(manifest, sender.rpc, sender),
        partner_id,
        config=batcher_config(settings),
        clock=clock,
    )


def _coalition(
    settings: Settings, w3: Web3, engine: Engine, manifest: DeploymentManifest, clock: Callable[[], float]
) -> Coalition | None:
    coalition = coalition_if_any(settings, w3, engine, manifest)
    if coalition is not None:
        coalition.clock = clock
        if manifest.chain_id in LOCAL_CHAIN_IDS:  # a new operator key's gas, from the dev admin's ether
            coalition.operator_funding = OPERATOR_FUNDING
    return coalition


def _app(
    settings: Settings,
    w3: Web3,
    engine: Engine,
    manifest: DeploymentManifest,
    clock: Callable[[], float],
    custody: Custody | None,
    *,
    limiter: RateLimiter | None = None,
) -> FastAPI:
    """The service on ``clock``, with the coalition's keys when the settings give them (the demo's seeding
    and the run build theirs here)."""
    return create_app(
        settings,
        engine=engine,
        contract=manifest.ledger.address,
        w3=w3,
        clock=clock,
        custody=custody,
        coalition=_coalition(settings, w3, engine, manifest, clock),
        limiter=limiter,
    )


def _jobs(
    settings: Settings, w3: Web3, engine: Engine, manifest: DeploymentManifest, clock: Callable[[], float]
) -> Jobs:
    rpc = Rpc(w3, decoder=revert_decoder())
    try:
        sender = sender_from_settings(settings, w3, signer_from_settings(settings, rpc.chain_id()))
        sweeper = open_ledger(manifest, sender.rpc, sender)
    except ChainError as exc:
        logger.warning("the sweeper does not run: %s", exc)
        sweeper = None
    return Jobs(engine, manifest.ledger.address, sweeper=sweeper, clock=clock, settings=settings)


# --------------------------------------------------------------------------- supervision


@dataclass(slots=True)
class _Worker:
    name: str
    target: Callable[[threading.Event], object]
    thread: threading.Thread | None = None
    error: BaseException | None = None
    failures: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class _Supervisor:
    """Runs the workers in threads and watches them (see the module docstring for the policy)."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        node_alive: Callable[[], bool],
        discover: Callable[[], Sequence[tuple[str, Callable[[threading.Event], object]]]] = lambda: (),
    ) -> None:
        self.stop = stop
        self.node_alive = node_alive
        self.discover = discover
        self.workers: dict[str, _Worker] = {}
        #: why the group was brought down (``None``: it was not)
        self.failure: str | None = None
        self._thread: threading.Thread | None = None

    def add(self, name: str, target: Callable[[threading.Event], object]) -> None:
        worker = _Worker(name, target)
        self.workers[name] = worker
        self._start(worker)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="loyalty-supervisor", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        threads = [w.thread for w in self.workers.values() if w.thread is not None]
        if self._thread is not None:
            threads.append(self._thread)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
            if thread.is_alive():
                logger.warning("%s did not stop within %.0f s", thread.name, timeout)

    def _start(self, worker: _Worker) -> None:
        worker.error, worker.restart_at = None, None

        def run() -> None:
            try:
                worker.target(self.stop)
            except BaseException as exc:  # the thread's last word: the supervisor decides what follows
                worker.error = exc
                logger.error("%s failed", worker.name, exc_info=exc)

        worker.thread = threading.Thread(target=run, name=worker.name, daemon=True)
        worker.thread.start()

    def _watch(self) -> None:
        last_discovery = time.monotonic()
        while not self.stop.wait(WATCH_INTERVAL_S):
            if not self.node_alive():
                self._bring_down("the chain's process (anvil) exited")
                return
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if self._check(worker, now):
                    return
            if now - last_discovery >= PARTNER_POLL_S:
                last_discovery = now
                try:
                    for name, target in self.discover():
                        if name not in self.workers:
                            self.add(name, target)
                except Exception as exc:  # a node's hiccup: look again next round
                    logger.warning("looking for new partners: %s", exc)

    def _check(self, worker: _Worker, now: float) -> bool:
        """Restarts ``worker`` when it is due; True when the group was brought down."""
        thread = worker.thread
        if thread is None or thread.is_alive() or self.stop.is_set():
            return False
        if worker.restart_at is None:
            why = repr(worker.error) if worker.error is not None else "it returned"
            worker.failures.append(now)
            while worker.failures and worker.failures[0] < now - RESTART_WINDOW_S:
                worker.failures.popleft()
            if len(worker.failures) > MAX_RESTARTS:
                self._bring_down(
                    f"{worker.name} failed {len(worker.failures)} times in {RESTART_WINDOW_S:.0f} s "
                    f"(last: {why})"
                )
                return True
            first, last = RESTART_BACKOFF_S
            pause = min(first * 2 ** (len(worker.failures) - 1), last)
            worker.restart_at = now + pause
            print(f"warning: {worker.name} stopped ({why}); restarting in {pause:.0f} s", file=sys.stderr)
        elif now >= worker.restart_at:
            self._start(worker)
        return False

    def _bring_down(self, reason: str) -> None:
        self.failure = reason
        print(f"error: {reason}; stopping everything", file=sys.stderr, flush=True)
        self.stop.set()


# --------------------------------------------------------------------------- up


class _Signals:
    """What SIGINT and SIGTERM do during a run: while it starts, they interrupt it (a ``KeyboardInterrupt``
    unwinds what started); while it serves, they stop it (``serving``: the run's stop event); while it stops,
    nothing (anvil must get to write its chain; SIGKILL still ends everything, and anvil gets SIGTERM)."""

    def __init__(self) -> None:
        self.serving: threading.Event | None = None
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self.serving is not None:
            self.serving.set()
            return
        self.stopping = True
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handles both signals inside the block (main thread only); the previous handlers after it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def up(
    settings: Settings,
    *,
    port: int | None = None,
    state_dir: Path | None = None,
    fresh: bool = False,
    ready: Callable[[UpInfo], None] | None = None,
    progress: Callable[[str], None] = _progress,
) -> int:
    """Runs the whole coalition until SIGINT or SIGTERM (see the module docstring); returns the exit code.

    ``port``: the API's port (default ``settings.api_port``; 0: a free one). ``state_dir``: where the run's
    state is kept (default ``settings.up_state_dir``). ``fresh``: start over in the state directory.
    ``ready``: called once everything serves, with what runs (default: :func:`announce` on stdout).
    ``progress``: one short line at a time while starting (default: stderr).

    Returns 0 after a stop by signal, 1 when a failure brought the group down (the reason is printed); a
    failure before serving raises (:class:`UpError`, :class:`~chain.ChainError`, :class:`~api._errors.
    ApiError`, ...), everything started so far stopped. Call it from the main thread (signals).
    """
    started = time.monotonic()
    signals = _Signals()
    try:
        with signals.installed(), ExitStack() as stack:
            return _up(settings, port, state_dir, fresh, ready, progress, started, signals, stack)
    except KeyboardInterrupt:
        print("interrupted: stopped what had started", file=sys.stderr)
        return 130


def _up(
    settings: Settings,
    port: int | None,
    state_dir: Path | None,
    fresh: bool,
    ready: Callable[[UpInfo], None] | None,
    progress: Callable[[str], None],
    started: float,
    signals: _Signals,
    stack: ExitStack,
) -> int:
    notes: list[str] = []
    kept = _kept(settings)
    if kept:
        directory = (state_dir or settings.up_state_dir).resolve()
    else:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loyalty-up-")))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stack.enter_context(_only_run(directory))
    sock = listen(settings.api_host, settings.api_port if port is None else port)
    stack.callback(sock.close)
    plan = _plan(settings, port=sock.getsockname()[1], state_dir=directory, kept=kept)
    _prepare(plan, fresh=fresh, notes=notes)
    settings = plan.settings
    demo = DemoState.read(plan.demo_file)
    months = demo_months(settings.epoch_length_s, settings.validity_epochs)
    # a new chain that the demo will fill starts that far in the past, so the demo ends at the present
    will_seed = settings.mode == "dev" and demo is None
    genesis = None
    if plan.spawn and will_seed and not plan.chain_state.exists():
        span = demo_span(settings.epoch_length_s, settings.validity_epochs)
        genesis = int(time.time()) - span - GENESIS_MARGIN_S
    progress(f"starting the chain ({'anvil' if plan.spawn else settings.rpc_url.split(':', 1)[0]})")
    node = stack.enter_context(_open_node(plan, genesis=genesis))
    if node.anvil is not None:
        settings = settings.model_copy(update={"rpc_url": node.anvil.url})
    web3s = web3_factory(node.w3)
    w3 = web3s()  # this thread's
    engine = service_engine(settings)
    stack.callback(engine.dispose)
    migrate_all(engine)
    manifest, deployed = _deployment(settings, w3)
    if deployed:
        progress(f"deployed the ledger at {manifest.ledger.address}")
    else:
        _check_mirror(engine, manifest, w3)
    indexer = indexer_from_settings(settings, web3s(), manifest, engine)
    indexer.open()  # migrations and the mirror's write lease
    try:
        indexer.sync()
        if will_seed and not deployed and _ledger_has_partners(w3, manifest):
            will_seed = False
            notes.append("the ledger has partners that are not this state directory's demo: no demo seeded")
        custody = custody_from_settings(settings, create=True)
        seeded = False
        if will_seed:
            demo = _seed(settings, plan, web3s, engine, manifest, indexer, custody, months, genesis, progress)
            seeded = True
    finally:
        indexer.close()
    # the service's clock: the wall clock, or the chain's when the demo moved it ahead (another chain)
    offset = max(0.0, ChainClock(w3)() - time.time())

    def clock() -> float:
        return time.time() + offset

    app = _app(settings, web3s(), engine, manifest, clock, custody)
    sign_ins: tuple[MemberSignIn, ...] = ()
    if demo is not None and demo.state == "seeded" and settings.mode == "dev":
        with TestClient(app) as console:
            sign_ins = tuple(sign_in_members(console, engine, demo, now=int(clock())))
    stop = threading.Event()
    # from here a signal stops the run: uvicorn takes the signals while it runs and raises the one that
    # stopped it again once it is done, and the handler sets the stop event (the run ends with 0)
    signals.serving = stop
    discover = _partner_discovery(settings, web3s, manifest, engine, clock)
    supervisor = _Supervisor(stop, node_alive=lambda: node.alive, discover=discover)
    info = UpInfo(
        base_url=settings.public_url.rstrip("/"),
        host=sock.getsockname()[0],
        port=settings.api_port,
        ledger=manifest.ledger.address,
        chain_id=manifest.chain_id,
        chain=node.description,
        anvil_pid=node.pid,
        database=repr(engine.url),
        state_dir=plan.state_dir if kept else None,
        deployed=deployed,
        seeded=seeded,
        demo=demo if settings.mode == "dev" else None,
        sign_ins=sign_ins,
        notes=tuple(notes),
    )

    def serving() -> None:
        shown = dataclasses.replace(info, elapsed_s=time.monotonic() - started)
        try:
            (ready or announce)(shown)
        except Exception:  # the service runs on; the announcement is the caller's
            logger.exception("announcing the service")

    def follow(event: threading.Event) -> object:
        return indexer_from_settings(settings, web3s(), manifest, engine).run(event)

    served = False
    try:
        supervisor.add("indexer", follow)
        supervisor.add("jobs", _jobs(settings, web3s(), engine, manifest, clock).run)
        for name, target in discover():
            supervisor.add(name, target)
        supervisor.start()
        served = serve_in_process(app, sock, stop=stop, started=serving)
    finally:
        signals.stopping = True
        stop.set()
        supervisor.join(WORKER_STOP_TIMEOUT_S)
    if not served and supervisor.failure is None:
        supervisor.failure = "the API server did not start (uvicorn's log above says why)"
    stopping = "stopped: the API, the indexer, the batchers and the jobs"
    if node.anvil is not None:
        stopping += f"; anvil writes its chain to {plan.chain_state}"
    print(stopping, file=sys.stderr, flush=True)
    if supervisor.failure is not None:
        print(f"error: {supervisor.failure}", file=sys.stderr)
        return 1
    return 0


def _seed(
    settings: Settings,
    plan: _Plan,
    web3s: Callable[[], Web3],
    engine: Engine,
    manifest: DeploymentManifest,
    indexer: Indexer,
    custody: Custody | None,
    months: int,
    genesis: int | None,
    progress: Callable[[str], None],
) -> DemoState:
    """Seeds the demo through an app on the chain's clock (``api/_demo.py``)."""
    chain_clock = ChainClock(web3s())
    # the seeding writes a year of a coalition's activity in seconds: no rate limit stands in its way
    unlimited = RateLimiter(per_key="1000000/second", per_client="1000000/second")
    app = _app(settings, web3s(), engine, manifest, chain_clock, custody, limiter=unlimited)
    batcher_w3 = web3s()
    jobs = _jobs(settings, web3s(), engine, manifest, chain_clock)
    with TestClient(app) as client:
        runtime = DemoRuntime(
            client=client,
            engine=engine,
            clock=chain_clock,
            ledger=manifest.ledger.address,
            chain_id=manifest.chain_id,
            batcher=lambda pid: operator_batcher(
                settings, batcher_w3, manifest, engine, pid, clock=chain_clock
            ),
            sync=indexer.sync,
            jobs=jobs.run_once,
            session_ttl_s=settings.session_ttl_s,
            progress=progress,
        )
        return seed_demo(
            runtime,
            scale=settings.demo_scale,
            months=months,
            ends_now=genesis is not None,
            state_file=plan.demo_file,
        )


def _partner_discovery(
    settings: Settings,
    web3s: Callable[[], Web3],
    manifest: DeploymentManifest,
    engine: Engine,
    clock: Callable[[], float],
) -> Callable[[], list[tuple[str, Callable[[threading.Event], object]]]]:
    """Finds the partners whose batcher can run here (their operator key in the keystore), each once."""
    seen: set[int] = set()
    w3 = web3s()

    def discover() -> list[tuple[str, Callable[[threading.Event], object]]]:
        found: list[tuple[str, Callable[[threading.Event], object]]] = []
        for partner_id in open_ledger(manifest, Rpc(w3, decoder=revert_decoder())).partner_ids():
            if partner_id in seen:
                continue
            seen.add(partner_id)
            try:
                batcher = operator_batcher(settings, web3s(), manifest, engine, partner_id, clock=clock)
            except (ChainError, OSError) as exc:
                logger.warning("partner %s: its outbox is not sent from here (%s)", partner_id, exc)
                continue
            found.append((f"batcher-{partner_id}", batcher.run))
        return found

    return discover


# --------------------------------------------------------------------------- the announcement


def announce(info: UpInfo, out: TextIO | None = None) -> None:
    """Prints the URLs, the demo's keys and members' sign-in (dev mode) and what to try."""
    out = out or sys.stdout
    base = info.base_url
    write = out.write
    how = (
        "seeded the demo coalition"
        if info.seeded
        else ("deployed the ledger" if info.deployed else "resumed")
    )
    write(f"\nThe coalition runs ({how}):\n")
    for path, what in (
        ("/", "the coalition's pages: the member wallet, the partner dashboard, the auditor explorer"),
        ("/wallet", "members sign in (a passkey, or Sign-In with Ethereum)"),
        ("/partner", "partners (a partner key below)"),
        ("/explorer", "auditors (the auditor key below)"),
        ("/docs", "the API, interactive"),
    ):
        write(f"  {base + path:<40} {what}\n")
    write(
        f"  (the API listens on {info.host}:{info.port}; passkeys need the host name "
        f"{urlsplit(base).hostname})\n"
    )
    write(f"Chain     {info.chain}, chain id {info.chain_id}; ledger {info.ledger}\n")
    write(f"Database  {info.database}\n")
    if info.state_dir is not None:
        write(
            f"State     {info.state_dir} (the next `loyalty up` resumes; `loyalty up --fresh` starts over)\n"
        )
    else:
        write("State     none kept: the chain ends with this process\n")
    for note in info.notes:
        write(f"Note      {note}\n")
    demo = info.demo
    if demo is not None and demo.state == "seeded":
        write("Demo keys (dev mode: this is a local demo's; API keys go in `Authorization: Bearer <key>`):\n")
        write(f"  {'admin':<26} {demo.admin_key}\n")
        write(f"  {'auditor':<26} {demo.auditor_key}\n")
        for partner in demo.partners:
            write(f"  {f'{partner.name} ({partner.id})':<26} {partner.key}\n")
        write("Demo members:\n")
        for sign_in in info.sign_ins:
            member = sign_in.member
            custody = "self custody" if member.custody == "self" else "custodial"
            write(f"  {member.name:<4} {custody}, wallet {member.address}\n")
            if sign_in.private_key is not None:
                write(
                    f"       Sign-In with Ethereum with anvil dev account {member.dev_account}, private key "
                    f"{sign_in.private_key} (a public test key: import it in a browser wallet)\n"
                )
            if sign_in.session is not None:
                write(f"       a session for curl (1 h): {sign_in.session}\n")
            if sign_in.enrolment_url is not None:
                write(f"       register a passkey: {sign_in.enrolment_url}\n")
            if sign_in.has_passkey:
                write("       signs in with the passkey registered earlier\n")
        _what_to_try(out, base, demo, info.sign_ins)
    write(f"\nloyalty up: ready at {base}/ in {info.elapsed_s:.1f} s (Ctrl-C stops)\n")
    out.flush()


def _what_to_try(out: TextIO, base: str, demo: DemoState, sign_ins: Sequence[MemberSignIn]) -> None:
    coffee = demo.partner_key(demo.partners[0].id)
    write = out.write
    write("What to try:\n")
    write(f"  curl -s {base}/v1/partners\n")
    write(
        f'  curl -s -H "Authorization: Bearer {coffee}" {base}/v1/partners/{demo.partners[0].id}/position\n'
    )
    body = (
        '{"order_id": "try-1", "member": {"customer_id": "ada"}, "channel": "pos", "currency": "EUR", '
        '"amount": 1250, "lines": [{"sku": "LATTE", "category": "coffee", "quantity": 2, "unit_price": 625}]}'
    )
    write(
        f'  curl -s -H "Authorization: Bearer {coffee}" -H "Content-Type: application/json" '
        f"-d '{body}' {base}/v1/purchases\n"
    )
    write(f'  curl -s -H "Authorization: Bearer {coffee}" {base}/v1/operations/<id from the answer>\n')
    session = next((s for s in sign_ins if s.session is not None), None)
    if session is not None:
        write(
            f'  curl -s -H "Authorization: Bearer {session.session}" '
            f"{base}/v1/wallets/{session.member.address}\n"
        )
    write(
        f'  curl -s -H "Authorization: Bearer {demo.auditor_key}" '
        f'"{base}/v1/audit/entries?kind=PointsExpired"\n'
    )
    write(f'  curl -s -H "Authorization: Bearer {demo.auditor_key}" {base}/v1/audit/head\n')


# --------------------------------------------------------------------------- a module entry


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m api._up [--port N] [--state-dir DIR] [--fresh]``: ``loyalty up`` (the command line's
    error handling, hints and logging included)."""
    from .cli import main as cli_main

    return cli_main(["up", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
