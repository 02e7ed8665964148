"""Running the service: ``run`` (the whole service in one process), ``serve`` (the API under uvicorn),
``migrate``, ``index`` and ``reconcile`` (the mirror), ``batcher`` (the outbox to the chain) and ``jobs``.

``migrate`` brings the database's schema (the mirror's branch and the service's) to its heads; ``serve`` runs
the API with ``api_workers`` worker processes over the mirror that ``index`` fills (see :mod:`api._serve`);
``run`` is the whole service in one process: on the embedded chain it deploys the ledger, then mirrors it,
follows new blocks in a thread and serves the API until Ctrl-C (``--once``: deploy, mirror, reconcile and
stop). ``run`` prints the two keys of its dev-mode session, which stop working when it ends.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from web3 import Web3

from chain import ChainError, load_artifact
from chain._manifest import DeploymentManifest, verify_manifest
from chain._rpc import Rpc
from indexer import Indexer, MirrorView, reconcile

from .._app import create_app
from .._batcher import Batcher
from .._chain_setup import (
    load_verified_manifest,
    open_chain,
    open_ledger,
    revert_decoder,
    sender_from_settings,
    signer_from_settings,
)
from .._custody import Custody
from .._db import migrate_all, service_engine
from .._index_setup import indexer_from_settings, mirror_engine
from .._jobs import Jobs
from .._keys import CreatedKey, create_key, revoke_key
from .._serve import (
    coalition_if_any,
    custody_from_settings,
    listen,
    prepare,
    public_base,
    schema_heads,
    serve_in_process,
    serve_workers,
    thread_safe_web3s,
)
from .._settings import Settings
from .._tables import ApiKey
from .._up import operator_batcher
from ._chain import deploy_on
from ._errors import CommandError
from ._output import BackfillBar, emit_json, working
from ._runtime import load_settings, open_deployment, prompt

__all__ = ["ShownKey", "app"]

logger = logging.getLogger("api.cli")

AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]
PANEL = "Run the service"

app = typer.Typer()


# --------------------------------------------------------------------------- run


@app.command("up", rich_help_panel=PANEL)
def up_command(
    port: Annotated[
        int | None, typer.Option(help="the API's port (default LOYALTY_API_PORT; 0: any free port)")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="where the run's chain, databases and keys are kept (default LOYALTY_UP_STATE_DIR)"
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="start over in the state directory")] = False,
) -> int:
    """The whole coalition in one supervised process group, until Ctrl-C (what `make run` starts).

    On the embedded defaults: a spawned anvil, the ledger deployed, a SQLite mirror, a demo coalition seeded
    (three partners, rule sets, rewards, members, a year of activity), the indexer, the batchers, the jobs
    and the API with its pages. Running it again resumes where it stopped. With LOYALTY_RPC_URL and
    LOYALTY_DATABASE_URL it runs against that node and database instead."""
    from .._up import up

    return up(load_settings(), port=port, state_dir=state_dir, fresh=fresh)


@app.command("run", rich_help_panel=PANEL)
def run(
    once: Annotated[
        bool, typer.Option("--once", help="deploy (embedded chain), mirror and reconcile, then stop: no API")
    ] = False,
) -> int:
    """The whole service in one process, until Ctrl-C (what `make run` starts).

    On the embedded chain it deploys the ledger first; then it mirrors it, follows new blocks in a thread,
    sends the outboxes of the partners whose keys it holds, runs the scheduled jobs and serves the API."""
    settings = load_settings()
    with open_chain(settings) as w3, tempfile.TemporaryDirectory(prefix="loyalty-mirror-") as scratch:
        if settings.embedded_chain:
            manifest = deploy_on(settings, w3)
            verify_manifest(manifest, w3)
            where = "the embedded chain"
            # The embedded chain ends with this process: so does its mirror.
            engine = mirror_engine(settings, f"sqlite:///{Path(scratch) / 'ledger.db'}")
        else:
            manifest = load_verified_manifest(settings, Rpc(w3))
            where = settings.rpc_url
            engine = mirror_engine(settings)
        try:
            ledger = w3.eth.contract(address=manifest.ledger.address, abi=load_artifact("LoyaltyLedger").abi)
            views = ledger.functions
            epoch_length, validity = views.epochLength().call(), views.validityDuration().call()
            epoch, head = views.currentEpoch().call(), views.ledgerHead().call()
            print(f"LoyaltyLedger on {where} (chain id {manifest.chain_id}) at {ledger.address}")
            print(f"  deployed in block {manifest.deployed_at.block_number} by {manifest.deployer}")
            params = manifest.parameters
            behind = (
                f" (the timelock, min delay {manifest.timelock.min_delay} s)" if manifest.timelock else ""
            )
            print(f"  admin {params.admin}{behind}, treasury {params.treasury}, pauser {params.pauser}")
            print(f"  epoch length {epoch_length} s, validity {validity} epochs")
            print(f"  current epoch {epoch}, ledger head 0x{head.hex()}")
            migrate_all(engine)  # the mirror's tables and the service's
            # indexer_from_settings passes timelock=<the manifest's timelock or None>: its operations are
            # mirrored
            with indexer_from_settings(settings, w3, manifest, engine) as indexer:
                block = indexer.sync()
                entries = indexer.stats.entries
            differences = reconcile(w3, engine, manifest.ledger.address)
            print(
                f"  mirror at block {block}: {entries} new entries, {len(differences)} differences from the "
                "chain"
            )
            if once:
                return 0
            return _serve_here(settings, w3, manifest, engine)
        finally:
            engine.dispose()


#: Seconds ``loyalty run`` waits for the indexer to finish its step once asked to stop.
INDEXER_STOP_TIMEOUT_S = 30.0


def _serve_here(settings: Settings, w3: Web3, manifest: DeploymentManifest, engine: Engine) -> int:
    """The whole service in this process until Ctrl-C: the indexer following new blocks in a thread, the
    API under uvicorn (one worker: the embedded chain lives in this process)."""
    sock = listen(settings.api_host, settings.api_port)
    stop = threading.Event()
    indexer: Indexer | None = None
    follower: threading.Thread | None = None
    keys: list[ShownKey] = []
    try:
        # dev mode: keys for this session (the demo); revoked when it ends
        keys = _session_keys(engine) if settings.mode == "dev" else []
        custody = custody_from_settings(settings, create=True)
        if custody is None and settings.embedded_chain:
            custody = Custody.generate()  # custodial members of a chain that ends with the process
        indexer_w3, app_w3, batcher_w3 = thread_safe_web3s(w3, 3)
        coalition = coalition_if_any(settings, app_w3, engine, manifest)
        app_ = create_app(
            settings,
            engine=engine,
            contract=manifest.ledger.address,
            w3=app_w3,
            custody=custody,
            coalition=coalition,
        )
        indexer = indexer_from_settings(settings, indexer_w3, manifest, engine)
        indexer.open()  # here: migrations and the write lease, before the thread starts
        follower = threading.Thread(target=_follow, args=(indexer, stop), name="loyalty-indexer", daemon=True)
        _announce(public_base(sock), keys)
        follower.start()
        writers = threading.Thread(
            target=_send_outboxes,
            args=(settings, batcher_w3, manifest, engine, stop),
            name="loyalty-batchers",
            daemon=True,
        )
        writers.start()
        # uvicorn raises the signal that stopped it again once it is done: this handler ends the command
        # with 0 rather than with a KeyboardInterrupt
        with signals_handled_by(lambda *_: stop.set()):
            serve_in_process(app_, sock)
    finally:
        stop.set()
        if follower is not None and follower.ident is not None:
            follower.join(INDEXER_STOP_TIMEOUT_S)  # Indexer.run releases the lease as it returns
        elif indexer is not None:
            indexer.close()  # opened, never started
        sock.close()
        if keys and not settings.embedded_chain:
            _revoke_session_keys(engine, keys)
    print("stopped: the indexer and the API", file=sys.stderr)
    return 0


#: Seconds between looks for partners whose outbox ``loyalty run`` can send (their operator key at hand).
PARTNER_POLL_S = 2.0


def _send_outboxes(
    settings: Settings, w3: Web3, manifest: DeploymentManifest, engine: Engine, stop: threading.Event
) -> None:
    """``loyalty run``'s batchers: one thread per partner whose operator key this process holds (a dev
    account in dev mode, or a keystore key with its password configured), started as partners appear;
    and the scheduled jobs, signed by the service's key."""
    rpc = Rpc(w3, decoder=revert_decoder())
    ledger = open_ledger(manifest, rpc)
    started: dict[int, threading.Thread] = {}
    skipped: set[int] = set()
    try:
        service = sender_from_settings(settings, w3, signer_from_settings(settings, rpc.chain_id()))
        jobs: Jobs | None = Jobs(
            engine, manifest.ledger.address, sweeper=open_ledger(manifest, rpc, service), settings=settings
        )
    except ChainError as exc:
        logger.warning("no scheduled jobs: %s", exc)
        jobs = None
    last_jobs = 0.0
    while not stop.is_set():
        try:
            for partner_id in ledger.partner_ids():
                if partner_id in started or partner_id in skipped:
                    continue
                try:
                    batcher_ = operator_batcher(settings, w3, manifest, engine, partner_id, prompt=None)
                except ChainError as exc:
                    logger.warning("partner %s: its outbox is not sent from here (%s)", partner_id, exc)
                    skipped.add(partner_id)
                    continue
                thread = threading.Thread(
                    target=batcher_.run, args=(stop,), name=f"batcher-{partner_id}", daemon=True
                )
                thread.start()
                started[partner_id] = thread
            if jobs is not None and time.monotonic() - last_jobs >= jobs.every_s:
                last_jobs = time.monotonic()
                jobs.run_once()
            elif jobs is not None:  # webhook deliveries go out between the hourly rounds
                jobs.deliver()
        except Exception:  # the API keeps serving; the next round tries again
            logger.exception("sending the outboxes")
        stop.wait(PARTNER_POLL_S)
    for thread in started.values():
        thread.join(INDEXER_STOP_TIMEOUT_S)


def _follow(indexer: Indexer, stop: threading.Event) -> None:
    try:
        block = indexer.run(stop)
    except Exception as exc:  # the thread's last word: the API keeps serving what the mirror holds
        logger.error("the indexer stopped", exc_info=exc)
        print(f"error: the indexer stopped: {exc}; the API serves the mirror as it is", file=sys.stderr)
        return
    logger.info("the indexer stopped at block %d", block)


@dataclass(frozen=True, slots=True)
class ShownKey:
    """A key as a command shows it, read while its session is open (``token``: only when just made)."""

    id: str
    role: str
    partner_id: int | None
    name: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, key: ApiKey | CreatedKey) -> ShownKey:
        row, token = (key.key, key.token) if isinstance(key, CreatedKey) else (key, None)
        return cls(
            row.id,
            row.role,
            row.partner_id,
            row.name,
            row.created_at,
            row.last_used_at,
            row.revoked_at,
            token,
        )


def _session_keys(engine: Engine) -> list[ShownKey]:
    """An admin and an auditor key for this ``loyalty run`` session."""
    with Session(engine) as db, db.begin():
        now = int(time.time())
        return [
            ShownKey.of(create_key(db, role=role, name=f"loyalty run ({role})", partner_id=None, now=now))
            for role in ("admin", "auditor")
        ]


def _revoke_session_keys(engine: Engine, keys: list[ShownKey]) -> None:
    with Session(engine) as db, db.begin():
        for key in keys:
            revoke_key(db, key.id, now=int(time.time()))


def _announce(base: str, keys: list[ShownKey]) -> None:
    print(f"Serving on {base} (Ctrl-C stops):")
    print(f"  {base}/docs          the API, interactive")
    print(f"  {base}/v1/partners   the coalition's partners")
    print(f"  {base}/readyz        readiness: the mirror's block and its lag behind the chain")
    if keys:
        print("API keys for this session (dev mode; they stop working when it ends):")
        for key in keys:
            print(f"  {key.role:<8} {key.token}")
        print(f'  e.g. curl -H "Authorization: Bearer <admin key>" {base}/v1/admin/api-keys')
    sys.stdout.flush()


@contextmanager
def signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block; the previous handlers are back after it."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- serve and migrate


@app.command("serve", rich_help_panel=PANEL)
def serve(
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = True,
) -> int:
    """The API under uvicorn (LOYALTY_API_HOST, _PORT, _WORKERS) over the mirror `loyalty index` fills."""
    settings = load_settings()
    engine = service_engine(settings)
    try:
        prepared = prepare(settings, engine)
    finally:
        engine.dispose()
    if prepared.ledger is None:
        served = "the ledger the mirror will hold (none yet: /readyz answers 503 until `loyalty index` runs)"
    elif prepared.source == "manifest":
        served = f"the ledger {prepared.ledger} (deployment manifest {settings.manifest_path})"
    else:
        served = f"the ledger {prepared.ledger} (the one in the mirror)"
    workers = settings.api_workers
    print(f"serving {served}")
    print(f"  database {engine.url!r} at heads {', '.join(prepared.heads)}; chain {settings.rpc_url}")
    plural = "s" if workers > 1 else ""
    where = f"http://{settings.api_host}:{settings.api_port}"
    print(f"  on {where} with {workers} worker{plural} (Ctrl-C stops)", flush=True)
    # uvicorn raises the signal that stopped it again once it is done: a quiet handler ends the command
    # with 0 rather than with a KeyboardInterrupt
    with signals_handled_by(lambda *_: None):
        serve_workers(settings, access_log=access_log)
    print("stopped", file=sys.stderr)
    return 0


@app.command("migrate", rich_help_panel=PANEL)
def migrate(as_json: AsJson = False) -> int:
    """Bring the database's schema (the mirror's tables and the service's) to its heads."""
    settings = load_settings()
    engine = service_engine(settings)
    try:
        with working("migrating the database"):
            migrate_all(engine)
        heads = schema_heads(engine)
    finally:
        engine.dispose()
    if as_json:
        emit_json({"database": repr(engine.url), "heads": heads})
    else:
        print(f"{engine.url!r} is at heads {', '.join(heads)}")
    return 0


# --------------------------------------------------------------------------- the mirror


@app.command("index", rich_help_panel=PANEL)
def index(
    once: Annotated[bool, typer.Option("--once", help="catch up with the chain, then stop")] = False,
    as_json: AsJson = False,
) -> int:
    """Mirror the ledger into LOYALTY_DATABASE_URL: backfill with a progress bar, then follow new blocks."""
    settings = load_settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_chain(settings) as w3:
        manifest = open_deployment(settings, w3)
        engine = mirror_engine(settings)
        progress = BackfillBar()
        indexer = indexer_from_settings(settings, w3, manifest, engine, progress=progress)
        try:
            if once:
                block = indexer.sync()
            else:
                print(
                    f"indexing {manifest.ledger.address} into {engine.url!r}; Ctrl-C stops", file=sys.stderr
                )
                block = indexer.run(stop)
        finally:
            progress.finish()
            indexer.close()
            engine.dispose()
        stats = indexer.stats
    if as_json:
        emit_json(
            {
                "block": block,
                "entries": stats.entries,
                "batches": stats.batches,
                "reorgs": stats.reorgs,
                "retries": stats.retries,
            }
        )
        return 0
    print(
        f"mirror at block {block}: {stats.entries} entries added in {stats.batches} batches, "
        f"{stats.reorgs} reorganisations undone, {stats.retries} retries"
    )
    return 0


@app.command("reconcile", rich_help_panel=PANEL)
def reconcile_command(
    block: Annotated[int | None, typer.Option(help="the block to compare at (must be the mirror's)")] = None,
    as_json: AsJson = False,
) -> int:
    """Compare the mirror with the chain at the mirror's block; exit 1 if they differ."""
    settings = load_settings()
    with open_chain(settings) as w3:
        manifest = open_deployment(settings, w3)
        engine = mirror_engine(settings)
        try:
            differences = reconcile(w3, engine, manifest.ledger.address, block)
            with engine.connect() as conn:
                at = MirrorView(conn, manifest.ledger.address).cursor.block_number
        finally:
            engine.dispose()
    if as_json:
        emit_json({"block": at, "agrees": not differences, "differences": [str(d) for d in differences]})
    else:
        for difference in differences:
            print(difference)
    if differences:
        print(
            f"{len(differences)} differences between the mirror and the chain at block {at}", file=sys.stderr
        )
        return 1
    if not as_json:
        print(f"the mirror agrees with the chain at block {at}")
    return 0


# --------------------------------------------------------------------------- the batcher and the jobs


@app.command("batcher", rich_help_panel=PANEL)
def batcher(
    partners: Annotated[
        list[int], typer.Option("--partner", metavar="ID", help="a partner id (repeat for several)")
    ],
    once: Annotated[bool, typer.Option("--once", help="send what is due, wait for it, then stop")] = False,
    as_json: AsJson = False,
) -> int:
    """Send partners' outboxes to the chain, signed by each partner's operator key.

    One batcher per partner key, each holding that key's lease (a second batcher for the same key waits)."""
    settings = load_settings()
    stop = threading.Event()
    with open_chain(settings) as w3:
        manifest = open_deployment(settings, w3)
        engine = service_engine(settings)
        try:
            batchers = [
                operator_batcher(settings, w3, manifest, engine, p, prompt=prompt()) for p in partners
            ]
            if once:
                return _drain(settings, batchers, as_json)
            threads = [
                threading.Thread(target=b.run, args=(stop,), name=f"batcher-{b.partner_id}", daemon=True)
                for b in batchers
            ]
            names = ", ".join(f"{b.partner_id} ({b.operator})" for b in batchers)
            print(f"sending the outbox of partner {names}; Ctrl-C stops", file=sys.stderr, flush=True)
            with signals_handled_by(lambda *_: stop.set()):
                for thread in threads:
                    thread.start()
                while not stop.wait(0.5):
                    if not any(t.is_alive() for t in threads):
                        raise CommandError("every batcher stopped (see the log)")
            for thread in threads:
                thread.join(settings.tx_timeout_s)
        finally:
            engine.dispose()
    print("stopped: the batchers", file=sys.stderr)
    return 0


def _drain(settings: Settings, batchers: Sequence[Batcher], as_json: bool) -> int:
    for batcher_ in batchers:
        with working(f"sending partner {batcher_.partner_id}'s outbox"):
            batcher_.drain(timeout=settings.tx_timeout_s)
        if not as_json:
            print(f"partner {batcher_.partner_id}: nothing left to send")
    if as_json:
        emit_json([{"partner_id": b.partner_id, "operator": b.operator, "drained": True} for b in batchers])
    return 0


@app.command("jobs", rich_help_panel=PANEL)
def jobs(
    once: Annotated[
        bool, typer.Option("--once", help="run each job once, print what it did, then stop")
    ] = False,
    every: Annotated[float, typer.Option(help="seconds between rounds")] = 3600.0,
) -> int:
    """The scheduled jobs: birthday points, the sweeper of expired points, the purge of old records."""
    settings = load_settings()
    stop = threading.Event()
    with open_chain(settings) as w3:
        manifest = open_deployment(settings, w3)
        engine = service_engine(settings)
        try:
            rpc = Rpc(w3, decoder=revert_decoder())
            sender = sender_from_settings(settings, w3, signer_from_settings(settings, rpc.chain_id()))
            ledger = open_ledger(manifest, sender.rpc, sender)
            scheduled = Jobs(
                engine,
                manifest.ledger.address,
                ledger.partner_ids(),
                sweeper=ledger,
                every_s=every,
                settings=settings,
            )
            if once:
                print(json.dumps(scheduled.run_once()))
                return 0
            with signals_handled_by(lambda *_: stop.set()):
                scheduled.run(stop)
        finally:
            engine.dispose()
    return 0
