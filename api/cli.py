"""The ``loyalty`` command line.

Every command reads :class:`~api.Settings` (``LOYALTY_*``); flags override a few of them. Failures print
``error: ...`` on stderr and exit 1. Secrets are never taken from the command line: keystore passwords come
from the settings (a file or ``LOYALTY_KEYSTORE_PASSWORD``) or, in a terminal, from a prompt that does not
echo; a private key to import comes from a file or standard input. No command prints a private key or a
password. An API key's token is printed exactly once, on stdout, by the command that makes it (``apikey
create``, ``apikey rotate``; ``run`` prints the two keys of its dev-mode session); listings never show one.

The service: ``migrate`` brings the database's schema (the mirror's branch and the service's) to its heads;
``serve`` runs the API under uvicorn with ``api_workers`` worker processes over the mirror that ``index``
fills (see :mod:`api._serve`); ``run`` is the whole service in one process (what ``make run`` starts): on
the embedded chain it deploys the ledger, then mirrors it, follows new blocks in a thread and serves the API
until Ctrl-C (``--once``: deploy, mirror, reconcile and stop).

Earning rules: ``rules create`` stores a JSON rule set file (validated as ``POST /v1/partners/{id}/rule-sets``
validates one) as the partner's next version (the same rules again: the existing one), ``rules activate``
puts one in force, ``rules list`` and ``rules show`` (the canonical text its hash is of) read them. They need
the database only.

Coalition operations (``partner ...``, ``settlement ...``, ``transfers``, ``pause``, ``unpause``, and
``operations`` to list, execute or cancel them) run through :class:`~api._coalition.Coalition` with the
service's key, exactly as the admin API's routes do: each is recorded as an operation (``adm_<n>``) in the
same table, its input checked by the same request models, sent at once or scheduled on the deployment's
timelock. A command prints the operation's id, state and transaction (or its place on the timelock); one
the ledger refuses prints ``error: <typed reason>: <detail>`` and exits 1. A generated operator key stays in
the keystore: only its address is printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from web3 import Web3

from chain import (
    ChainError,
    PartnerId,
    compile_contracts,
    load_artifact,
    stale_artifacts,
    write_artifacts,
)
from chain._ledger import Ledger
from chain._manifest import LEDGER_EXTENSION, DeploymentManifest, verify_manifest
from chain._rpc import Rpc
from chain._sender import Sender
from chain._signer import InvalidKey
from chain._timelock import OperationState, ScheduledOperation, Timelock, TimelockCall
from indexer import Indexer, IndexerError, MirrorView, reconcile

from ._app import create_app
from ._batcher import Batcher, BatcherConfig
from ._chain_setup import (
    LedgerOverrides,
    Prompt,
    check_deployment_mode,
    deploy_from_settings,
    fund_on_embedded_chain,
    keystore_from_settings,
    keystore_password,
    load_verified_manifest,
    open_chain,
    open_ledger,
    open_timelock,
    revert_decoder,
    sender_from_settings,
    signer_from_settings,
)
from ._coalition import GENERATE, Coalition, CoalitionOperationPublic, parse_operation_id
from ._custody import Custody
from ._db import migrate_all, service_engine
from ._errors import ApiError
from ._index_setup import ProgressBar, indexer_from_settings, mirror_engine
from ._jobs import Jobs
from ._keys import KEY_ROLES, CreatedKey, create_key, list_keys, revoke_key, rotate_key
from ._rulebook import (
    activate,
    bind_partner,
    create_rule_set,
    latest_activation,
    rule_set_by_hash,
    rule_sets_of,
)
from ._rules import RuleSet, RuleSetCreate, rule_hash
from ._serve import (
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
from ._settings import Settings
from ._tables import ApiKey, RuleActivation, RuleSetRecord
from .audit._cli import add_audit_parser, run_audit
from .routers.coalition import (
    AllowanceChange,
    PartnerOnboarding,
    SettlementRecord,
    SettlementValueUpdate,
)

__all__ = ["main"]

logger = logging.getLogger("api.cli")


class CommandError(ChainError):
    """A command cannot do what was asked (bad flags, a manifest already in place)."""


def _prompt() -> Prompt | None:
    """``getpass`` when a person is at the terminal; ``None`` (never ask) in scripts and pipes."""
    return getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None


# --------------------------------------------------------------------------- compile


def _compile(settings: Settings, check: bool) -> int:
    root = settings.project_root.resolve()
    artifacts = compile_contracts(root, settings.solc_binary)
    if check:
        stale = stale_artifacts(artifacts)
        for name, fields in sorted(stale.items()):
            print(f"{name}: committed artifact differs from its sources ({', '.join(fields)})")
        if stale:
            print("run `loyalty compile` and commit chain/artifacts", file=sys.stderr)
            return 1
        print(f"{len(artifacts)} artifacts match their sources")
        return 0
    for path in write_artifacts(artifacts, root / "chain" / "artifacts"):
        print(f"wrote {path.relative_to(root)}")
    return 0


# --------------------------------------------------------------------------- keys


def _keys_new(settings: Settings) -> int:
    keystore = keystore_from_settings(settings)
    address = keystore.create(keystore_password(settings, prompt=_prompt(), confirm=True))
    print(f"created key {address} in {keystore.directory}")
    return 0


def _read_private_key(file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the key file {file}: {type(exc).__name__}") from None
    if sys.stdin is None:
        raise CommandError("no key: pass --file or pipe the key into standard input")
    if sys.stdin.isatty():
        return getpass.getpass("Private key (hex): ").strip()
    return sys.stdin.read().strip()


def _keys_import(settings: Settings, file: Path | None) -> int:
    key = _read_private_key(file)
    if not key:
        raise InvalidKey("no private key given (empty input)")
    keystore = keystore_from_settings(settings)
    address = keystore.import_key(key, keystore_password(settings, prompt=_prompt(), confirm=True))
    del key
    print(f"imported key {address} into {keystore.directory}")
    return 0


def _keys_list(settings: Settings) -> int:
    for address in keystore_from_settings(settings).addresses():
        print(address)
    return 0


# --------------------------------------------------------------------------- deploy and run


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    manifest_path: Path = args.manifest or settings.manifest_path
    if manifest_path.exists() and not args.force:
        raise CommandError(f"{manifest_path} already exists; pass --force to deploy another ledger over it")
    with open_chain(settings) as w3:
        manifest = _deploy_on(settings, w3, args)
        verify_manifest(manifest, w3)
    manifest.write(manifest_path)
    ledger, params, timelock = manifest.ledger, manifest.parameters, manifest.timelock
    print(f"LoyaltyLedger deployed at {ledger.address} on chain {manifest.chain_id}")
    print(f"  block {manifest.deployed_at.block_number} ({manifest.deployed_at.block_hash})")
    print(f"  transaction {manifest.deployed_at.transaction_hash}")
    print(f"  deployer {manifest.deployer}, admin {params.admin}")
    print(f"  treasury {params.treasury}, pauser {params.pauser}, admin delay {params.admin_delay} s")
    extension = manifest.contracts[LEDGER_EXTENSION].address
    print(f"  extension {extension} (run by the ledger's fallback)")
    print(f"  reversal window {params.reversal_window} s")
    if timelock is not None:
        print(
            f"  timelock {timelock.address} (admin and treasury): min delay {timelock.min_delay} s, "
            f"proposers {', '.join(timelock.proposers)}, executors {', '.join(timelock.executors)}"
        )
    print(f"manifest written to {manifest_path}")
    if settings.embedded_chain:
        print("note: the embedded chain (eth-tester://) ended with this command", file=sys.stderr)
    return 0


def _deploy_on(settings: Settings, w3: Web3, args: argparse.Namespace) -> DeploymentManifest:
    """Deploys the ledger on ``w3`` with the settings' parameters and roles, overridden by the flags that
    are set (production mode refuses a deployment without a timelock before any key is touched)."""
    overrides = LedgerOverrides(
        name=getattr(args, "name", None),
        symbol=getattr(args, "symbol", None),
        admin=getattr(args, "admin", None),
        epoch_length=getattr(args, "epoch_length", None),
        validity=getattr(args, "validity", None),
        settlement_value=getattr(args, "settlement_value", None),
    )
    check_deployment_mode(settings)  # before any key is loaded
    sender = _sender(settings, w3)
    logger.info("deploying LoyaltyLedger from %s on chain %d", sender.address, sender.rpc.chain_id())
    return deploy_from_settings(settings, sender, overrides)


def _sender(settings: Settings, w3: Web3) -> Sender:
    """The settings' signing key on ``w3`` (funded on the embedded chain)."""
    chain_id = Rpc(w3).chain_id()
    signer = signer_from_settings(settings, chain_id, prompt=_prompt())
    fund_on_embedded_chain(w3, signer.address)
    return sender_from_settings(settings, w3, signer)


def _run(settings: Settings, once: bool) -> int:
    with open_chain(settings) as w3, tempfile.TemporaryDirectory(prefix="loyalty-mirror-") as scratch:
        if settings.embedded_chain:
            manifest = _deploy_on(settings, w3, argparse.Namespace())
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
    keys: list[_ShownKey] = []
    try:
        # dev mode: keys for this session (the demo); revoked when it ends
        keys = _session_keys(engine) if settings.mode == "dev" else []
        custody = custody_from_settings(settings, create=True)
        if custody is None and settings.embedded_chain:
            custody = Custody.generate()  # custodial members of a chain that ends with the process
        indexer_w3, app_w3, batcher_w3 = thread_safe_web3s(w3, 3)
        coalition = coalition_if_any(settings, app_w3, engine, manifest)
        app = create_app(
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
        with _signals_handled_by(lambda *_: stop.set()):
            serve_in_process(app, sock)
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
        jobs: Jobs | None = Jobs(engine, manifest.ledger.address, sweeper=open_ledger(manifest, rpc, service))
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
                    batcher = _operator_batcher(settings, w3, manifest, engine, partner_id, prompt=None)
                except ChainError as exc:
                    logger.warning("partner %s: its outbox is not sent from here (%s)", partner_id, exc)
                    skipped.add(partner_id)
                    continue
                thread = threading.Thread(
                    target=batcher.run, args=(stop,), name=f"batcher-{partner_id}", daemon=True
                )
                thread.start()
                started[partner_id] = thread
            if jobs is not None and time.monotonic() - last_jobs >= jobs.every_s:
                last_jobs = time.monotonic()
                jobs.run_once()
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


def _session_keys(engine: Engine) -> list[_ShownKey]:
    """An admin and an auditor key for this ``loyalty run`` session."""
    with Session(engine) as db, db.begin():
        now = int(time.time())
        return [
            _ShownKey.of(create_key(db, role=role, name=f"loyalty run ({role})", partner_id=None, now=now))
            for role in ("admin", "auditor")
        ]


def _revoke_session_keys(engine: Engine, keys: list[_ShownKey]) -> None:
    with Session(engine) as db, db.begin():
        for key in keys:
            revoke_key(db, key.id, now=int(time.time()))


def _announce(base: str, keys: list[_ShownKey]) -> None:
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


# --------------------------------------------------------------------------- the mirror


def _open_deployment(settings: Settings, w3: Web3, purpose: str = "index it") -> DeploymentManifest:
    if settings.embedded_chain:
        raise CommandError(
            "the embedded chain (eth-tester://) lives only inside one command; "
            f"set LOYALTY_RPC_URL to a node (e.g. anvil://) to {purpose}"
        )
    return load_verified_manifest(settings, Rpc(w3))


def _index(settings: Settings, once: bool) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = mirror_engine(settings)
        progress = ProgressBar()
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
        print(
            f"mirror at block {block}: {stats.entries} entries added in {stats.batches} batches, "
            f"{stats.reorgs} reorganisations undone, {stats.retries} retries"
        )
    return 0


def _reconcile(settings: Settings, block: int | None) -> int:
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = mirror_engine(settings)
        try:
            differences = reconcile(w3, engine, manifest.ledger.address, block)
            with engine.connect() as conn:
                at = MirrorView(conn, manifest.ledger.address).cursor.block_number
        finally:
            engine.dispose()
    for difference in differences:
        print(difference)
    if differences:
        print(
            f"{len(differences)} differences between the mirror and the chain at block {at}", file=sys.stderr
        )
        return 1
    print(f"the mirror agrees with the chain at block {at}")
    return 0


# --------------------------------------------------------------------------- the batcher and the jobs


def batcher_config(settings: Settings) -> BatcherConfig:
    return BatcherConfig(
        max_items=settings.batch_max_items,
        flush_interval_s=settings.batch_flush_interval_s,
        max_in_flight=settings.batch_max_in_flight,
    )


def _operator_batcher(
    settings: Settings,
    w3: Web3,
    manifest: DeploymentManifest,
    engine: Engine,
    partner_id: int,
    *,
    prompt: Prompt | None = None,
) -> Batcher:
    """The batcher of ``partner_id``, signing with its operator's key (from the keystore; in dev mode an
    anvil dev account's address also works)."""
    rpc = Rpc(w3, decoder=revert_decoder())
    operator = open_ledger(manifest, rpc).partner(PartnerId(partner_id)).operator
    signer = signer_from_settings(
        settings.model_copy(update={"signer_address": operator}), rpc.chain_id(), prompt=prompt
    )
    fund_on_embedded_chain(w3, signer.address)  # dev accounts hold no ether on eth-tester's chain
    sender = sender_from_settings(settings, w3, signer)
    return Batcher(
        engine, open_ledger(manifest, sender.rpc, sender), partner_id, config=batcher_config(settings)
    )


def _batcher(settings: Settings, partners: Sequence[int], once: bool) -> int:
    stop = threading.Event()
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = service_engine(settings)
        try:
            batchers = [
                _operator_batcher(settings, w3, manifest, engine, p, prompt=_prompt()) for p in partners
            ]
            if once:
                for batcher in batchers:
                    batcher.drain(timeout=settings.tx_timeout_s)
                    print(f"partner {batcher.partner_id}: nothing left to send")
                return 0
            threads = [
                threading.Thread(target=b.run, args=(stop,), name=f"batcher-{b.partner_id}", daemon=True)
                for b in batchers
            ]
            names = ", ".join(f"{b.partner_id} ({b.operator})" for b in batchers)
            print(f"sending the outbox of partner {names}; Ctrl-C stops", file=sys.stderr, flush=True)
            with _signals_handled_by(lambda *_: stop.set()):
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


def _jobs(settings: Settings, once: bool, every: float) -> int:
    stop = threading.Event()
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3)
        engine = service_engine(settings)
        try:
            rpc = Rpc(w3, decoder=revert_decoder())
            sender = sender_from_settings(settings, w3, signer_from_settings(settings, rpc.chain_id()))
            ledger = open_ledger(manifest, sender.rpc, sender)
            jobs = Jobs(engine, manifest.ledger.address, ledger.partner_ids(), sweeper=ledger, every_s=every)
            if once:
                print(json.dumps(jobs.run_once()))
                return 0
            with _signals_handled_by(lambda *_: stop.set()):
                jobs.run(stop)
        finally:
            engine.dispose()
    return 0


# --------------------------------------------------------------------------- the database and API keys


def _migrate(settings: Settings) -> int:
    engine = service_engine(settings)
    try:
        migrate_all(engine)
        heads = schema_heads(engine)
    finally:
        engine.dispose()
    print(f"{engine.url!r} is at heads {', '.join(heads)}")
    return 0


@dataclass(frozen=True, slots=True)
class _ShownKey:
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
    def of(cls, key: ApiKey | CreatedKey) -> _ShownKey:
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


@contextmanager
def _service_db(settings: Settings) -> Iterator[Session]:
    """A session on the service's tables (the schema migrated first), committed if the block succeeds."""
    engine = service_engine(settings)
    try:
        migrate_all(engine)
        with Session(engine) as db, db.begin():
            yield db
    finally:
        engine.dispose()


def _show_token(key: _ShownKey, as_json: bool, what: str) -> None:
    assert key.token is not None
    scope = f" for partner {key.partner_id}" if key.partner_id is not None else ""
    print(f"{what} {key.role} key {key.id}{scope} ({key.name})", file=sys.stderr)
    print(
        "warning: the token is shown only this once and cannot be shown again: store it now", file=sys.stderr
    )
    if as_json:
        print(json.dumps({"id": key.id, "role": key.role, "partner_id": key.partner_id, "token": key.token}))
    else:
        print(key.token)


def _apikey_create(settings: Settings, args: argparse.Namespace) -> int:
    if args.role == "partner" and args.partner is None:
        raise CommandError("a partner key needs --partner ID (the partner it acts for)")
    if args.role != "partner" and args.partner is not None:
        raise CommandError(f"--partner is for partner keys; an {args.role} key acts for no partner")
    if not args.name.strip():
        raise CommandError("--name must not be empty")
    with _service_db(settings) as db:
        created = create_key(
            db, role=args.role, name=args.name.strip(), partner_id=args.partner, now=int(time.time())
        )
        shown = _ShownKey.of(created)
    _show_token(shown, args.json, "created")
    return 0


def _when(timestamp: int | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _apikey_list(settings: Settings, show_all: bool) -> int:
    with _service_db(settings) as db:
        keys = [_ShownKey.of(k) for k in list_keys(db, include_revoked=show_all)]
    if not keys:
        print("no API keys" if show_all else "no live API keys (--all lists revoked ones too)")
        return 0
    header = ("id", "role", "partner", "name", "created", "last used", "revoked")
    rows = [
        (
            k.id,
            k.role,
            "-" if k.partner_id is None else str(k.partner_id),
            k.name,
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    _print_table(header, rows)
    return 0


def _apikey_rotate(settings: Settings, args: argparse.Namespace) -> int:
    if args.grace < 0:
        raise CommandError("--grace is a number of seconds, 0 or more")
    with _service_db(settings) as db:
        shown = _ShownKey.of(rotate_key(db, args.id, now=int(time.time()), grace_s=args.grace))
    until = f" in {args.grace} s" if args.grace else " now"
    _show_token(shown, args.json, f"rotated {args.id} (it stops working{until}): new")
    return 0


def _apikey_revoke(settings: Settings, key_id: str) -> int:
    with _service_db(settings) as db:
        shown = _ShownKey.of(revoke_key(db, key_id, now=int(time.time())))
    scope = f" for partner {shown.partner_id}" if shown.partner_id is not None else ""
    print(f"revoked {shown.role} key {shown.id}{scope} ({shown.name}): it is refused from now on")
    return 0


# --------------------------------------------------------------------------- serving


def _serve(settings: Settings, access_log: bool) -> int:
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
    with _signals_handled_by(lambda *_: None):
        serve_workers(settings, access_log=access_log)
    print("stopped", file=sys.stderr)
    return 0


@contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside the block; the previous handlers are back after it."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- the timelock


def _timelock_clients(
    settings: Settings, w3: Web3, *, write: bool
) -> tuple[DeploymentManifest, Ledger, Timelock]:
    """The verified deployment, its ledger and its timelock (signing with the settings' key if ``write``)."""
    manifest = _open_deployment(settings, w3)
    rpc = Rpc(w3, decoder=revert_decoder())
    sender = _sender(settings, w3) if write else None
    return manifest, open_ledger(manifest, rpc), open_timelock(manifest, rpc, sender)


def _first_block(manifest: DeploymentManifest) -> int:
    timelock = manifest.timelock
    assert timelock is not None  # open_timelock refused a deployment without one
    return int(timelock.deployed_at.block_number)


def _describe_call(call: TimelockCall, ledger: Ledger, timelock: Timelock) -> str:
    """``LoyaltyLedger.registerPartner(partnerId=7, ...)`` for a call of the ledger (or the timelock)."""
    if call.target == ledger.address:
        decoded, where = ledger.decode_call(call.data), "LoyaltyLedger"
    elif call.target == timelock.address:
        decoded, where = timelock.decode_call(call.data), "CoalitionTimelock"
    else:
        decoded, where = None, call.target
    value = f" with {call.value} wei" if call.value else ""
    if decoded is None:
        return f"{where}: call with data 0x{call.data.hex()}{value}"
    return f"{where}.{decoded}{value}"


def _eta(ready_at: int | None, now: int) -> str:
    if not ready_at:
        return "eta -"
    when = datetime.fromtimestamp(ready_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if ready_at <= now:
        return f"eta {when} (ready)"
    return f"eta {when} (in {ready_at - now} s)"


_STATE_NAMES = {
    OperationState.WAITING: "waiting",
    OperationState.READY: "ready",
    OperationState.DONE: "executed",
    OperationState.UNSET: "cancelled",
}


def _show_operation(
    op: ScheduledOperation, state: OperationState, ledger: Ledger, timelock: Timelock, now: int
) -> list[str]:
    eta = _eta(op.ready_at, now) if state in (OperationState.WAITING, OperationState.READY) else ""
    calls = [_describe_call(c, ledger, timelock) for c in op.calls]
    head = f"0x{op.id.hex()}  {_STATE_NAMES[state]:<9} {eta:<40} {calls[0] if len(calls) == 1 else ''}"
    lines = [head.rstrip()]
    if len(calls) > 1:
        lines += [f"    {i}. {c}" for i, c in enumerate(calls, start=1)]
    return lines


def _timelock_list(settings: Settings, show_all: bool) -> int:
    with open_chain(settings) as w3:
        manifest, ledger, timelock = _timelock_clients(settings, w3, write=False)
        head = int(timelock.rpc.block_number())
        now = timelock.rpc.timestamp(head)
        operations = timelock.scheduled_operations(from_block=_first_block(manifest), to_block=head)
        lines = [
            line
            for op, state in operations
            if show_all or state in (OperationState.WAITING, OperationState.READY)
            for line in _show_operation(op, state, ledger, timelock, now)
        ]
    if not lines:
        print(f"no {'' if show_all else 'pending '}operations on the timelock {timelock.address}")
        return 0
    print("\n".join(lines))
    return 0


_ROLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_ROLE$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _parse_argument(kind: str, raw: Any, name: str) -> Any:
    """One command-line (or JSON) argument as the ABI type ``kind`` wants it."""
    if kind.endswith("[]"):
        items = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise CommandError(f"{name} ({kind}) must be a JSON list")
        return [_parse_argument(kind[:-2], item, name) for item in items]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise CommandError(f"{name} (bool) must be true or false, not {raw!r}")
    if kind.startswith(("uint", "int")):
        try:
            return raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw), 0)
        except ValueError:
            raise CommandError(f"{name} ({kind}) must be an integer, not {raw!r}") from None
    if kind == "address":
        if not isinstance(raw, str) or not is_address(raw):
            raise CommandError(f"{name} (address) must be a 0x-prefixed 20-byte address, not {raw!r}")
        return to_checksum_address(raw)
    if kind == "bytes32" and isinstance(raw, str) and _ROLE_NAME.match(raw):
        return bytes(32) if raw == "DEFAULT_ADMIN_ROLE" else keccak(text=raw)
    if kind.startswith("bytes"):
        try:
            value = bytes(HexBytes(str(raw))) if str(raw).startswith("0x") else None
        except ValueError:
            value = None
        size = int(kind[5:]) if kind != "bytes" else None
        if value is None or (size is not None and len(value) != size):
            of_size = f" of {size} bytes" if size else ""
            raise CommandError(f"{name} ({kind}) must be 0x-prefixed hex{of_size}")
        return value
    if kind == "string":
        return str(raw)
    raise CommandError(f"{name}: arguments of type {kind} are not supported here")


def _schedule_request(args: argparse.Namespace) -> tuple[str, list[Any]]:
    """The ledger function and its raw arguments, from the positionals or from ``--json``."""
    if args.json is not None:
        if args.function is not None:
            raise CommandError("give the call either as arguments or with --json, not both")
        try:
            request = json.loads(args.json)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--json is not JSON: {exc}") from None
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("function"), str)
            or not isinstance(request.get("args", []), list)
        ):
            raise CommandError('--json must be {"function": "<ledger function>", "args": [...]}')
        return request["function"], list(request.get("args", []))
    if args.function is None:
        raise CommandError("name the ledger function to schedule (or give --json)")
    return args.function, list(args.args)


def _hash32(text: str, what: str) -> bytes:
    """A 32-byte value given as 0x-prefixed hex on the command line (a salt, an operation id)."""
    try:
        value = bytes(HexBytes(text))
    except ValueError:
        value = b""
    if len(value) != 32:
        raise CommandError(f"{what} must be 32 bytes of 0x-prefixed hex, not {text!r}")
    return value


def _timelock_schedule(settings: Settings, args: argparse.Namespace) -> int:
    function, raw = _schedule_request(args)
    with open_chain(settings) as w3:
        _, ledger, timelock = _timelock_clients(settings, w3, write=False)
        abi = ledger.function(function)
        if len(raw) != len(abi.inputs):
            raise CommandError(
                f"{abi.signature} takes {len(abi.inputs)} arguments "
                f"({', '.join(abi.input_names)}), got {len(raw)}"
            )
        values = [
            _parse_argument(kind, value, name)
            for kind, value, name in zip(abi.inputs, raw, abi.input_names, strict=True)
        ]
        call = ledger.call_of(abi.signature, *values)
        if not args.no_check:
            timelock.simulate(call)  # as the timelock would run it now: a mistaken call is refused here
        timelock = timelock.with_sender(_sender(settings, w3))
        op = timelock.schedule(
            call,
            delay=args.delay,
            # a random salt by default: a fresh operation id, even for a call scheduled before
            salt=secrets.token_bytes(32) if args.salt is None else _hash32(args.salt, "--salt"),
        ).wait()
        now = timelock.rpc.timestamp()
        described = _describe_call(op.calls[0], ledger, timelock)
    print(f"scheduled 0x{op.id.hex()}: {described}")
    print(f"  on the timelock {timelock.address} in block {op.block_number}, {_eta(op.ready_at, now)}")
    print(f"  salt 0x{op.salt.hex()}; once ready: loyalty timelock execute 0x{op.id.hex()}")
    return 0


def _timelock_finish(settings: Settings, text: str, *, cancel: bool) -> int:
    op_id = _hash32(text, "an operation id")
    with open_chain(settings) as w3:
        manifest, ledger, timelock = _timelock_clients(settings, w3, write=False)
        op, state = timelock.find_operation(op_id, from_block=_first_block(manifest))
        if state not in (OperationState.WAITING, OperationState.READY):
            raise CommandError(f"operation 0x{op_id.hex()} is {_STATE_NAMES[state]} already")
        now = timelock.rpc.timestamp()
        if not cancel and state is OperationState.WAITING:
            raise CommandError(f"operation 0x{op_id.hex()} is not ready yet: {_eta(op.ready_at, now)}")
        timelock = timelock.with_sender(_sender(settings, w3))
        receipt = (timelock.cancel(op) if cancel else timelock.execute(op)).wait()
        described = "; ".join(_describe_call(c, ledger, timelock) for c in op.calls)
    verb = "cancelled" if cancel else "executed"
    print(f"{verb} 0x{op_id.hex()} in block {receipt.block_number}: {described}")
    return 0


# --------------------------------------------------------------------------- earning rules


def _problems(exc: ValidationError, limit: int = 5) -> str:
    """A validation error on one line: each problem's location and message, never its input."""
    found = [
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def _partner_id(value: int) -> int:
    """A partner id as the ledger takes it (a uint32 above 0)."""
    if not 1 <= value < 2**32:
        raise CommandError(f"a partner id is a number from 1 to {2**32 - 1}, not {value}")
    return value


def _read_rules(file: str, partner_id: int) -> RuleSet:
    """The rule set in the JSON file ``file`` (``-``: standard input), validated as the API validates a
    posted one, as ``partner_id``'s. The text ``loyalty rules show`` prints (it names its partner) works
    too."""
    where = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CommandError(f"cannot read the rule set {where}: {reason}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where} is not JSON: {exc}") from None
    model = RuleSet if isinstance(body, dict) and "partner_id" in body else RuleSetCreate
    try:
        rules = model.model_validate(body)
    except ValidationError as exc:
        raise CommandError(f"{where} is not a valid rule set: {_problems(exc)}") from None
    return bind_partner(rules, partner_id)


@dataclass(frozen=True, slots=True)
class _ShownRuleSet:
    """A rule set as a command shows it (read while its session is open)."""

    hash: str
    partner_id: int
    version: int
    created_at: int
    active: bool
    activated_at: int | None

    @classmethod
    def of(cls, record: RuleSetRecord, current: RuleActivation | None) -> _ShownRuleSet:
        active = current is not None and bytes(current.rule_hash) == bytes(record.hash)
        return cls(
            "0x" + bytes(record.hash).hex(),
            record.partner_id,
            record.version,
            record.created_at,
            active,
            current.activated_at if current is not None and active else None,
        )

    def as_json(self, **extra: Any) -> dict[str, Any]:
        shown = {
            "hash": self.hash,
            "partner_id": self.partner_id,
            "version": self.version,
            "created_at": self.created_at,
            "active": self.active,
            "activated_at": self.activated_at,
        }
        return {**shown, **extra}

    def in_force(self) -> str:
        return f"in force since {_when(self.activated_at)}" if self.active else "not in force"


def _rules_create(settings: Settings, args: argparse.Namespace) -> int:
    partner_id = _partner_id(args.partner)
    rules = _read_rules(args.file, partner_id)
    now = int(time.time())
    with _service_db(settings) as db:
        existing = rule_set_by_hash(db, rule_hash(rules))
        record = existing or create_rule_set(db, partner_id, rules, now=now, created_by=None)
        shown = _ShownRuleSet.of(record, latest_activation(db, partner_id, now))
    if args.json:
        print(json.dumps(shown.as_json(new=existing is None)))
    elif existing is not None:
        print(
            f"partner {partner_id} has these rules already: version {shown.version}, {shown.hash} "
            f"({shown.in_force()})"
        )
    else:
        print(f"created version {shown.version} of partner {partner_id}'s rules: {shown.hash}")
        print(f"  not in force yet: loyalty rules activate --partner {partner_id} {shown.hash}")
    return 0


def _rules_activate(settings: Settings, args: argparse.Namespace) -> int:
    partner_id = _partner_id(args.partner)
    digest = _hash32(args.hash, "a rule hash")
    now = int(time.time())
    with _service_db(settings) as db:
        before = latest_activation(db, partner_id, now)
        already = before is not None and bytes(before.rule_hash) == digest
        activation = activate(db, partner_id, digest, now=now, activated_by=None)
        record = rule_set_by_hash(db, digest)
        assert record is not None  # activate found it
        shown = _ShownRuleSet.of(record, activation)
    if args.json:
        print(json.dumps(shown.as_json(changed=not already)))
        return 0
    what = f"version {shown.version} of partner {partner_id}'s rules ({shown.hash})"
    if already:
        print(f"{what} is in force already, since {_when(shown.activated_at)}")
    else:
        print(f"{what} is in force from {_when(shown.activated_at)}")
    return 0


def _rules_list(settings: Settings, args: argparse.Namespace) -> int:
    partner_id = _partner_id(args.partner)
    now = int(time.time())
    with _service_db(settings) as db:
        current = latest_activation(db, partner_id, now)
        shown = [_ShownRuleSet.of(record, current) for record in rule_sets_of(db, partner_id)]
    if args.json:
        print(json.dumps([s.as_json() for s in shown]))
        return 0
    if not shown:
        print(f"partner {partner_id} has no rule sets (loyalty rules create --partner {partner_id} FILE)")
        return 0
    header = ("version", "hash", "created", "active")
    rows = [
        (str(s.version), s.hash, _when(s.created_at), f"* since {_when(s.activated_at)}" if s.active else "")
        for s in shown
    ]
    _print_table(header, rows)
    return 0


def _rules_show(settings: Settings, text: str) -> int:
    digest = _hash32(text, "a rule hash")
    with _service_db(settings) as db:
        record = rule_set_by_hash(db, digest)
        if record is None:
            raise CommandError(f"no rule set 0x{digest.hex()}")
        canonical = record.canonical
    print(canonical)
    return 0


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --------------------------------------------------------------------------- coalition operations

#: What an action command runs on the coalition, its input checked before the chain is touched.
_Act = Callable[[Coalition], CoalitionOperationPublic]


_Model = TypeVar("_Model", bound=BaseModel)


def _checked(model: type[_Model], what: str, **values: Any) -> _Model:
    """``values`` validated by the API's request model for the same action (the same limits as HTTP)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise CommandError(f"invalid {what}: {_problems(exc)}") from None


def _operator_of(args: argparse.Namespace) -> str:
    if args.generate_operator:
        return GENERATE
    address: str = args.operator
    if not is_address(address):
        raise CommandError(f"--operator must be a 0x-prefixed 20-byte address, not {address!r}")
    return to_checksum_address(address)


def _address_of(text: str, what: str) -> str:
    if not is_address(text):
        raise CommandError(f"{what} must be a 0x-prefixed 20-byte address, not {text!r}")
    return to_checksum_address(text)


def _partner_action(args: argparse.Namespace) -> _Act:
    """The ``loyalty partner ...`` command as a coalition action."""
    command = args.partner_command
    if command == "onboard":
        settlement = None if args.settlement is None else _address_of(args.settlement, "--settlement")
        body = _checked(
            PartnerOnboarding,
            "onboarding",
            partner_id=args.id,
            name=args.name,
            operator=_operator_of(args),
            settlement_address=settlement,
            can_issue=args.issue,
            can_accept=args.accept,
            allowance=args.allowance,
        )
        return lambda c: c.register_partner(
            partner_id=body.partner_id,
            name=body.name,
            operator=body.operator,
            settlement_address=body.settlement_address,
            can_issue=body.can_issue,
            can_accept=body.can_accept,
            allowance=body.allowance,
            by=None,
        )
    partner_id = _partner_id(args.partner_id)
    if command == "allowance":
        change = _checked(AllowanceChange, "allowance change", increase=args.increase, decrease=args.decrease)
        return lambda c: c.change_allowance(
            partner_id, increase=change.increase, decrease=change.decrease, by=None
        )
    if command == "suspend":
        return lambda c: c.set_status(partner_id, "suspend", by=None)
    if command == "reactivate":
        return lambda c: c.set_status(partner_id, "reactivate", by=None)
    if command == "offboard":
        return lambda c: c.set_status(partner_id, "offboard", by=None)
    if command == "rotate":
        operator = _operator_of(args)
        return lambda c: c.rotate_operator(partner_id, operator, by=None)
    if command == "rights":
        return lambda c: c.set_rights(partner_id, can_issue=args.issue, can_accept=args.accept, by=None)
    address = _address_of(args.address, "the settlement address")
    return lambda c: c.set_settlement_address(partner_id, address, by=None)


def _action(args: argparse.Namespace) -> _Act:
    """The coalition action a command asks for (its input checked: nothing has touched the chain yet)."""
    if args.command == "partner":
        return _partner_action(args)
    if args.command == "settlement":
        if args.settlement_command == "value":
            value = _checked(SettlementValueUpdate, "settlement value", value=args.value).value
            return lambda c: c.set_settlement_value(value, by=None)
        record = _checked(
            SettlementRecord,
            "settlement record",
            partner_id=args.partner,
            points=args.points,
            value=args.value,
            payment_ref=args.payment_ref,
        )
        return lambda c: c.record_settlement(
            record.partner_id,
            points=record.points,
            value=record.value,
            payment_ref=record.payment_ref,
            by=None,
        )
    if args.command == "transfers":
        enabled = args.switch == "on"
        return lambda c: c.set_transfers(enabled, by=None)
    if args.command == "pause":
        return lambda c: c.pause(by=None)
    if args.command == "unpause":
        return lambda c: c.unpause(by=None)
    number = _operation_number(args.id)
    if args.operations_command == "execute":
        return lambda c: c.execute(number)
    return lambda c: c.cancel(number)


def _operation_number(text: str) -> int:
    number = parse_operation_id(text) if text.startswith("adm_") else parse_operation_id(f"adm_{text}")
    if number is None:
        raise CommandError(f"an operation id is adm_<number> (loyalty operations list), not {text!r}")
    return number


@contextmanager
def _coalition(settings: Settings, *, write: bool = True) -> Iterator[Coalition]:
    """The service's coalition keys on the deployment (as the API builds them: its operations are recorded
    in the same table), the database's schema migrated first; without ``write``, no key (reading and
    bringing operations up to date needs none)."""
    with open_chain(settings) as w3:
        manifest = _open_deployment(settings, w3, "act on it")
        engine = service_engine(settings)
        try:
            migrate_all(engine)
            if write:
                coalition = Coalition.from_settings(settings, w3, engine, manifest, prompt=_prompt())
                coalition.receipt_timeout = settings.tx_timeout_s
            else:
                rpc = Rpc(w3, decoder=revert_decoder())
                timelock = open_timelock(manifest, rpc) if manifest.timelock is not None else None
                coalition = Coalition(engine, open_ledger(manifest, rpc), timelock)
            yield coalition
        finally:
            engine.dispose()


def _act(settings: Settings, args: argparse.Namespace) -> int:
    act = _action(args)
    generates = getattr(args, "generate_operator", False)
    with _coalition(settings) as coalition:
        prompt = _prompt()
        if generates and coalition.keystore_password is None and prompt is not None:
            password = keystore_password(settings, prompt=prompt, confirm=True)
            coalition.keystore_password = SecretStr(password)
        coalition.operator_funding = getattr(args, "fund_operator", 0)
        operation = act(coalition)
        now = coalition.ledger.rpc.timestamp()
        keystore = coalition.keystore.directory if coalition.keystore is not None else None
    if args.json:
        print(operation.model_dump_json())
    else:
        print("\n".join(_describe_operation(operation, now, keystore)))
    return _exit_status(operation)


def _exit_status(operation: CoalitionOperationPublic) -> int:
    """1 with ``error: <typed reason>: <detail>`` on stderr for a failed operation, else 0."""
    if operation.state != "failed":
        return 0
    failure = operation.failure
    reason = (failure.reason if failure else None) or "failed"
    detail = f": {failure.detail}" if failure is not None and failure.detail else ""
    print(f"error: {reason}{detail}", file=sys.stderr)
    return 1


def _operation_status(operation: CoalitionOperationPublic, now: int) -> str:
    """Where the operation is: its transaction, its place on the timelock, or why it failed."""
    state, timelock = operation.state, operation.timelock
    if state in ("confirmed", "executed"):
        if operation.tx_hash is None:
            return "executed outside the service"
        return f"tx {operation.tx_hash} in block {operation.block_number}"
    if state in ("scheduled", "ready") and timelock is not None:
        return f"timelock operation {timelock.operation_id}, {_eta(timelock.ready_at, now)}"
    if state == "submitted":
        tx = operation.tx_hash or (timelock.schedule_tx_hash if timelock is not None else None)
        return f"tx {tx} not mined yet" if tx else "not sent yet"
    if state == "failed" and operation.failure is not None:
        return operation.failure.reason or ""
    return ""


def _describe_operation(operation: CoalitionOperationPublic, now: int, keystore: Path | None) -> list[str]:
    partner = f" (partner {operation.partner_id})" if operation.partner_id is not None else ""
    status = _operation_status(operation, now) if operation.state != "failed" else ""
    lines = [f"{operation.id} {operation.action}{partner} {operation.state}{': ' + status if status else ''}"]
    params = operation.params
    if "operator" in params:
        made = ""
        if params.get("operator_generated"):
            made = f" (a new key in the keystore {keystore})" if keystore else " (a new key in the keystore)"
        lines.append(f"  operator {params['operator']}{made}")
    if operation.state in ("scheduled", "ready"):
        lines.append(f"  once ready: loyalty operations execute {operation.id}")
    return lines


#: Operations whose state the chain may still change (a failed execution on the timelock may be retried).
_PENDING = frozenset({"submitted", "scheduled", "ready"})


def _operations_list(settings: Settings, args: argparse.Namespace) -> int:
    with _coalition(settings, write=False) as coalition:
        found: list[CoalitionOperationPublic] = []
        before: int | None = None
        while True:
            page, more = coalition.operations(before=before, limit=200, partner_id=args.partner)
            found += page
            if not more or not page:
                break
            before = parse_operation_id(page[-1].id)
        now = coalition.ledger.rpc.timestamp()
    shown = [
        op
        for op in found
        if args.all or op.state in _PENDING or (op.state == "failed" and op.timelock is not None)
    ]
    if args.json:
        print(json.dumps([op.model_dump(mode="json") for op in shown]))
        return 0
    if not shown:
        print("no operations" if args.all else "no pending operations (--all lists every operation)")
        return 0
    header = ("id", "action", "partner", "state", "created", "detail")
    rows = [
        (
            op.id,
            op.action,
            "-" if op.partner_id is None else str(op.partner_id),
            op.state,
            _when(op.created_at),
            _operation_status(op, now),
        )
        for op in shown
    ]
    _print_table(header, rows)
    return 0


# --------------------------------------------------------------------------- entry point


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error never repeats anything that looks like a private key (a key
    mistakenly typed on the command line would otherwise be echoed in "unrecognized arguments: ...")."""

    def error(self, message: str) -> NoReturn:
        super().error(_KEY_LIKE.sub("<redacted>", message))


_KEY_LIKE = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loyalty", description="Coalition loyalty-points ledger.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    add_audit_parser(commands)

    compile_cmd = commands.add_parser("compile", help="compile contracts/ into chain/artifacts")
    compile_cmd.add_argument("--check", action="store_true", help="fail if committed artifacts are stale")

    run = commands.add_parser(
        "run",
        help="the whole service in one process: the ledger (deployed on the embedded chain), the indexer "
        "and the API, until Ctrl-C",
    )
    run.add_argument(
        "--once", action="store_true", help="deploy (embedded chain), mirror and reconcile, then stop: no API"
    )

    keys = commands.add_parser("keys", help="manage the encrypted keystore (LOYALTY_KEYSTORE_DIR)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("new", help="generate a key and store it encrypted")
    import_cmd = key_commands.add_parser(
        "import", help="store an existing private key, read from --file or standard input (never argv)"
    )
    import_cmd.add_argument("--file", type=Path, help="a file holding the private key as hex")
    key_commands.add_parser("list", help="the addresses of the stored keys")

    deploy = commands.add_parser("deploy", help="deploy the ledger and write its deployment manifest")
    deploy.add_argument("--name", help="token name (LOYALTY_TOKEN_NAME)")
    deploy.add_argument("--symbol", help="token symbol (LOYALTY_TOKEN_SYMBOL)")
    deploy.add_argument("--admin", help="admin address (LOYALTY_LEDGER_ADMIN; default: the deployer)")
    deploy.add_argument("--epoch-length", type=int, help="seconds per epoch (LOYALTY_EPOCH_LENGTH_S)")
    deploy.add_argument("--validity", type=int, help="epochs points stay valid (LOYALTY_VALIDITY_EPOCHS)")
    deploy.add_argument("--settlement-value", type=int, help="settlement units per point")
    deploy.add_argument("--manifest", type=Path, help="where to write the manifest (LOYALTY_MANIFEST_PATH)")
    deploy.add_argument("--force", action="store_true", help="overwrite an existing manifest")

    index = commands.add_parser(
        "index", help="mirror the ledger into LOYALTY_DATABASE_URL: backfill, then follow new blocks"
    )
    index.add_argument("--once", action="store_true", help="catch up with the chain, then stop")
    check = commands.add_parser("reconcile", help="compare the mirror with the chain at the mirror's block")
    check.add_argument("--block", type=int, help="the block to compare at (must be the mirror's)")

    commands.add_parser(
        "migrate", help="bring the database's schema (mirror and service tables) to its heads"
    )

    batcher = commands.add_parser(
        "batcher",
        help="send the outbox to the chain: one batcher per partner key (its operator key signs), each "
        "holding that key's lease",
    )
    batcher.add_argument(
        "--partner", type=int, action="append", required=True, help="a partner id (repeat for several)"
    )
    batcher.add_argument("--once", action="store_true", help="send what is due, wait for it, then stop")
    jobs = commands.add_parser(
        "jobs", help="the scheduled jobs: birthday points, the sweeper of expired points, purges"
    )
    jobs.add_argument("--once", action="store_true", help="run each job once, then stop")
    jobs.add_argument("--every", type=float, default=3600.0, help="seconds between rounds (default 3600)")

    serve = commands.add_parser(
        "serve",
        help="the API under uvicorn (LOYALTY_API_HOST, _PORT, _WORKERS); `loyalty index` fills the mirror",
    )
    serve.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="log every request"
    )

    apikey = commands.add_parser("apikey", help="API keys of the HTTP service (admin, partner, auditor)")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_commands.add_parser("create", help="a new key; its token is printed once, never again")
    create.add_argument("--role", required=True, choices=KEY_ROLES)
    create.add_argument("--name", required=True, help="what the key is for (shown in listings)")
    create.add_argument("--partner", type=int, help="the partner a partner key acts for (its partner id)")
    create.add_argument("--json", action="store_true", help="print {id, role, partner_id, token} as JSON")
    keys_listing = apikey_commands.add_parser("list", help="the keys (never their tokens)")
    keys_listing.add_argument("--all", action="store_true", help="revoked keys too")
    rotate = apikey_commands.add_parser(
        "rotate", help="a new key with the same role and scope; the old one is revoked"
    )
    rotate.add_argument("id", help="the key's id (`loyalty apikey list`)")
    rotate.add_argument("--grace", type=int, default=0, help="seconds the old key keeps working (default 0)")
    rotate.add_argument("--json", action="store_true", help="print {id, role, partner_id, token} as JSON")
    revoke = apikey_commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", help="the key's id (`loyalty apikey list`)")

    timelock = commands.add_parser(
        "timelock", help="admin operations through the ledger's timelock (schedule, list, execute, cancel)"
    )
    timelock_commands = timelock.add_subparsers(dest="timelock_command", required=True)
    listing = timelock_commands.add_parser(
        "list", help="pending operations: id, state, when they may execute, the decoded ledger call"
    )
    listing.add_argument("--all", action="store_true", help="executed and cancelled operations too")
    schedule = timelock_commands.add_parser(
        "schedule",
        help="schedule a ledger call, e.g. `schedule registerPartner 7 0xOP 0xOP true true 1000`",
        description="Arguments are read as the function's ABI types: integers (decimal or 0x), true/false, "
        "addresses, 0x-hex bytes, role names such as TREASURY_ROLE for a bytes32 role.",
    )
    schedule.add_argument("function", nargs="?", help="the ledger function (e.g. registerPartner)")
    schedule.add_argument("args", nargs="*", help="its arguments, in order")
    schedule.add_argument(
        "--json", help='the call as JSON instead: {"function": "registerPartner", "args": [7, "0x..", ...]}'
    )
    schedule.add_argument("--delay", type=int, help="seconds before it may execute (default: the minimum)")
    schedule.add_argument("--salt", help="32 bytes of hex that fix the operation id (default: random)")
    schedule.add_argument(
        "--no-check", action="store_true", help="schedule even if the call would revert if executed now"
    )
    for verb in ("execute", "cancel"):
        finish = timelock_commands.add_parser(verb, help=f"{verb} a scheduled operation by its id")
        finish.add_argument("id", help="the operation id (0x + 64 hex digits)")
    _add_rules_commands(commands)
    _add_coalition_commands(commands)
    return parser


def _add_rules_commands(commands: Any) -> None:
    rules = commands.add_parser("rules", help="partners' earning rule sets: create, activate, list, show")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    create = rules_commands.add_parser(
        "create",
        help="store a JSON rule set as the partner's next version (the same rules again: the existing one)",
    )
    create.add_argument("--partner", type=int, required=True, help="the partner's id")
    create.add_argument("file", help="the rule set, a JSON file (- reads standard input)")
    create.add_argument("--json", action="store_true", help="print {hash, version, ..., new} as JSON")
    activate_cmd = rules_commands.add_parser("activate", help="put one of the partner's rule sets in force")
    activate_cmd.add_argument("--partner", type=int, required=True, help="the partner's id")
    activate_cmd.add_argument("hash", help="the rule set's hash (0x + 64 hex digits)")
    activate_cmd.add_argument("--json", action="store_true", help="print the rule set as JSON")
    listing = rules_commands.add_parser("list", help="the partner's rule sets, newest first, * in force")
    listing.add_argument("--partner", type=int, required=True, help="the partner's id")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    show = rules_commands.add_parser("show", help="a rule set's canonical text (what its hash is of)")
    show.add_argument("hash", help="the rule set's hash (0x + 64 hex digits)")


def _add_coalition_commands(commands: Any) -> None:
    """The coalition operations: each recorded as an operation (adm_<n>), as the admin API records it."""
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the operation as the API shows it")

    partner = commands.add_parser(
        "partner",
        help="onboard a partner; its allowance, life cycle, operator key, rights, settlement address",
    )
    partner_commands = partner.add_subparsers(dest="partner_command", required=True)
    onboard = partner_commands.add_parser(
        "onboard", parents=[as_json], help="register a partner on the ledger"
    )
    onboard.add_argument("--id", type=int, required=True, help="its partner id (a new one)")
    onboard.add_argument("--name", required=True, help="its name in the directory")
    _add_operator(onboard)
    onboard.add_argument("--settlement", help="where settlements are paid (default: the operator)")
    onboard.add_argument("--no-issue", dest="issue", action="store_false", help="may not issue points")
    onboard.add_argument("--no-accept", dest="accept", action="store_false", help="may not accept points")
    onboard.add_argument("--allowance", type=int, required=True, help="points it may issue")
    allowance = partner_commands.add_parser(
        "allowance", parents=[as_json], help="top up or cut a partner's remaining allowance"
    )
    allowance.add_argument("partner_id", type=int, help="the partner's id")
    change = allowance.add_mutually_exclusive_group(required=True)
    change.add_argument("--increase", type=int, help="points to add")
    change.add_argument("--decrease", type=int, help="points to take away (refused beyond what remains)")
    for verb, what in (
        ("suspend", ": it may neither issue nor accept until reactivated"),
        ("reactivate", ": a suspended partner may act again"),
        ("offboard", " for good: its allowance drops to 0, its history stays"),
    ):
        status = partner_commands.add_parser(verb, parents=[as_json], help=f"{verb} a partner{what}")
        status.add_argument("partner_id", type=int, help="the partner's id")
    rotate = partner_commands.add_parser(
        "rotate", parents=[as_json], help="move a partner to a new operator key"
    )
    rotate.add_argument("partner_id", type=int, help="the partner's id")
    _add_operator(rotate)
    rights = partner_commands.add_parser("rights", parents=[as_json], help="whether it may issue, and accept")
    rights.add_argument("partner_id", type=int, help="the partner's id")
    rights.add_argument("--issue", action=argparse.BooleanOptionalAction, required=True, help="may issue")
    rights.add_argument("--accept", action=argparse.BooleanOptionalAction, required=True, help="may accept")
    settlement_address = partner_commands.add_parser(
        "settlement-address", parents=[as_json], help="where a partner's settlements are paid"
    )
    settlement_address.add_argument("partner_id", type=int, help="the partner's id")
    settlement_address.add_argument("address", help="the new settlement address")

    settlement = commands.add_parser("settlement", help="the settlement value of a point; settlements paid")
    settlement_commands = settlement.add_subparsers(dest="settlement_command", required=True)
    value = settlement_commands.add_parser(
        "value", parents=[as_json], help="settlement units per point, for entries from now on"
    )
    value.add_argument("value", type=int, help="settlement units per point")
    record = settlement_commands.add_parser(
        "record", parents=[as_json], help="record a settlement paid (its points leave the open position)"
    )
    record.add_argument("--partner", type=int, required=True, help="the partner's id")
    record.add_argument("--points", type=int, required=True, help="points settled (positive: paid to it)")
    record.add_argument("--value", type=int, required=True, help="their value in settlement units")
    record.add_argument(
        "--payment-ref", required=True, help="the payment's reference (once per partner; text or 0x + 64 hex)"
    )

    transfers = commands.add_parser(
        "transfers", parents=[as_json], help="switch member-to-member transfers on or off"
    )
    transfers.add_argument("switch", choices=("on", "off"))
    commands.add_parser(
        "pause", parents=[as_json], help="pause the ledger (the pauser's key, never scheduled)"
    )
    commands.add_parser("unpause", parents=[as_json], help="resume the ledger")

    operations = commands.add_parser(
        "operations", help="the coalition operations: list them, execute or cancel scheduled ones"
    )
    operations_commands = operations.add_subparsers(dest="operations_command", required=True)
    listing = operations_commands.add_parser(
        "list", help="operations the chain may still change (--all: every one), newest first"
    )
    listing.add_argument("--all", action="store_true", help="confirmed, executed, failed, cancelled too")
    listing.add_argument("--partner", type=int, help="only this partner's")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    for verb in ("execute", "cancel"):
        finish = operations_commands.add_parser(
            verb, parents=[as_json], help=f"{verb} an operation scheduled on the timelock"
        )
        finish.add_argument("id", help="the operation's id (adm_<n>)")


def _add_operator(parser: argparse.ArgumentParser) -> None:
    operator = parser.add_mutually_exclusive_group(required=True)
    operator.add_argument("--operator", help="the operator key's address")
    operator.add_argument(
        "--generate-operator",
        action="store_true",
        help="a new key in the keystore (LOYALTY_KEYSTORE_DIR); only its address is shown",
    )
    parser.add_argument(
        "--fund-operator",
        type=int,
        default=0,
        metavar="WEI",
        help="with --generate-operator: wei sent to the new key for its gas once the operation took effect",
    )


def _settings_error(exc: ValidationError) -> str:
    # Only the location and the message: the input may be a secret.
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "invalid settings: " + "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "audit":  # an auditor's tool: the operator's settings play no part
        return run_audit(args)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {_settings_error(exc)}", file=sys.stderr)
        return 1
    try:
        if args.command == "compile":
            return _compile(settings, args.check)
        if args.command == "keys":
            if args.keys_command == "new":
                return _keys_new(settings)
            if args.keys_command == "import":
                return _keys_import(settings, args.file)
            return _keys_list(settings)
        if args.command == "deploy":
            return _deploy(settings, args)
        if args.command == "index":
            return _index(settings, args.once)
        if args.command == "reconcile":
            return _reconcile(settings, args.block)
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "batcher":
            return _batcher(settings, args.partner, args.once)
        if args.command == "jobs":
            return _jobs(settings, args.once, args.every)
        if args.command == "serve":
            return _serve(settings, args.access_log)
        if args.command == "apikey":
            if args.apikey_command == "create":
                return _apikey_create(settings, args)
            if args.apikey_command == "list":
                return _apikey_list(settings, args.all)
            if args.apikey_command == "rotate":
                return _apikey_rotate(settings, args)
            return _apikey_revoke(settings, args.id)
        if args.command == "timelock":
            if args.timelock_command == "list":
                return _timelock_list(settings, args.all)
            if args.timelock_command == "schedule":
                return _timelock_schedule(settings, args)
            return _timelock_finish(settings, args.id, cancel=args.timelock_command == "cancel")
        if args.command == "rules":
            if args.rules_command == "create":
                return _rules_create(settings, args)
            if args.rules_command == "activate":
                return _rules_activate(settings, args)
            if args.rules_command == "list":
                return _rules_list(settings, args)
            return _rules_show(settings, args.hash)
        if args.command == "operations" and args.operations_command == "list":
            return _operations_list(settings, args)
        if args.command in ("partner", "settlement", "transfers", "pause", "unpause", "operations"):
            return _act(settings, args)
        return _run(settings, args.once)
    except (ChainError, IndexerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # the driver's message (never the URL's password: SQLAlchemy hides it), without the SQL statement
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: the database failed ({type(exc).__name__}): {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
