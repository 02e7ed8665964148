"""An indexer in its own process, for the tests that kill it (``test_indexer_crash``, ``test_indexer_lease``),
and the helpers those tests share with ``test_indexer_faults``.

Run as::

    python tests/indexer_worker.py RPC_URL DB_URL ADDRESS DEPLOYMENT_BLOCK EVENTS_FILE
        [--mode sync|run] [--kill-at K] [--initial-range N] [--max-range N] [--window N] [--poll S]

``sync`` catches up once and exits 0; ``run`` follows the chain until SIGTERM. The worker appends one JSON
object per line to ``EVENTS_FILE`` (flushed and fsynced) as things happen::

    {"event": "waiting"}                  another indexer holds the write lease (once)
    {"event": "leased", "backend": PID}   it holds the lease (PID: its PostgreSQL backend, else null)
    {"event": "commit", "block": N, "added": A}   a batch is committed: the cursor is at N
    {"event": "in-batch", ...}            see ``--kill-at``
    {"event": "done", "cursor": N}        ``sync`` finished

``--kill-at K`` is fault injection for the crash test: ``Store`` is patched so that in the K-th batch that
adds entries, once its entries, derived rows and cursor move are written but before its transaction commits,
the worker reports ``in-batch`` (the batch's blocks and entry numbers, and the highest entry its own
uncommitted transaction sees) and then sleeps, waiting for the test's SIGKILL.

The tests start workers with :func:`spawn`: by default forked from a ``multiprocessing`` fork server that
has done the imports once (they take seconds: web3, eth-account) and running the same :func:`main`, with
output to ``<EVENTS_FILE>.log``; ``command_line=True`` runs the script as above.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.process
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "indexer_worker.py"

# --------------------------------------------------------------------------- the worker process


def _emitter(path: Path) -> Callable[..., None]:
    lock = threading.Lock()

    def emit(event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}) + "\n"
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    return emit


def _arm_kill(at: int, emit: Callable[..., None]) -> None:
    """Stops the worker inside the transaction of the ``at``-th batch that adds entries."""
    from sqlalchemy import func, select

    from indexer import _store
    from indexer._store import ENTRIES, Store

    commit_batch = Store.commit_batch
    move_cursor = Store._move_cursor
    seen = {"batches": 0}
    current: dict[str, Any] = {}

    def patched_commit(self: Store, rows: list[dict[str, Any]], **kwargs: Any) -> int:
        current["rows"] = rows
        return commit_batch(self, rows, **kwargs)

    def patched_move(self: Store, block: _store.BlockRow) -> None:
        move_cursor(self, block)
        rows = current.get("rows") or []
        if not rows:
            return
        seen["batches"] += 1
        if seen["batches"] < at:
            return
        assert self.conn.in_transaction()
        visible = self.conn.execute(select(func.max(ENTRIES.c.seq))).scalar()
        emit(
            "in-batch",
            batch=seen["batches"],
            to_block=block.number,
            first_block=rows[0]["block_number"],
            first_seq=rows[0]["seq"],
            last_seq=rows[-1]["seq"],
            visible_max_seq=visible,
        )
        while True:  # mid-transaction: wait for SIGKILL
            time.sleep(3600)

    Store.commit_batch = patched_commit  # type: ignore[method-assign]
    Store._move_cursor = patched_move  # type: ignore[method-assign]


def _report_waiting(emit: Callable[..., None]) -> None:
    from indexer._db import Lease

    try_once = Lease._try
    reported = {"waiting": False}

    def patched_try(self: Lease) -> bool:
        got = try_once(self)
        if not got and not reported["waiting"]:
            reported["waiting"] = True
            emit("waiting")
        return got

    Lease._try = patched_try  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rpc_url")
    parser.add_argument("db_url")
    parser.add_argument("address")
    parser.add_argument("deployment_block", type=int)
    parser.add_argument("events", type=Path)
    parser.add_argument("--mode", choices=("sync", "run"), default="sync")
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--initial-range", type=int, default=2)
    parser.add_argument("--max-range", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.05)
    args = parser.parse_args(argv)

    import logging

    from sqlalchemy import text

    from chain import connect
    from indexer import Indexer, IndexerConfig, make_engine

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    emit = _emitter(args.events)
    _report_waiting(emit)
    if args.kill_at is not None:
        _arm_kill(args.kill_at, emit)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    config = IndexerConfig(
        window=args.window,
        initial_range=args.initial_range,
        max_range=args.max_range,
        poll_interval=args.poll,
        backoff_initial=0.01,
        backoff_max=0.2,
    )
    engine = make_engine(args.db_url)
    try:
        with connect(args.rpc_url, root=HERE.parent, timeout=10) as w3:
            indexer = Indexer(
                w3,
                engine,
                args.address,
                deployment_block=args.deployment_block,
                config=config,
                on_commit=lambda block, added: emit("commit", block=block, added=added),
            )
            indexer.open()
            backend = None
            if engine.dialect.name == "postgresql":
                backend = indexer.store.conn.execute(text("SELECT pg_backend_pid()")).scalar()
                indexer.store.conn.commit()
            emit("leased", backend=backend)
            try:
                if args.mode == "sync":
                    emit("done", cursor=indexer.sync())
                else:
                    indexer.run(stop)
            finally:
                indexer.close()
    finally:
        engine.dispose()
    return 0


# --------------------------------------------------------------------------- helpers for the tests


class Forked:
    """A worker forked from a server process that has done the (slow: seconds) imports once: the same
    ``main`` as the command line, in a process of its own. The handful of ``Popen`` members the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
            self._process.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._process.join(timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(str(WORKER), timeout or 0)
        return code


def _forked_main(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.exit(main(argv))


def _forkserver() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["indexer", "chain", "sqlalchemy", "psycopg", "alembic.command"])
    return context


def spawn(
    rpc_url: str,
    db_url: str,
    address: str,
    deployment_block: int,
    events: Path,
    *options: str,
    command_line: bool = False,
) -> Forked | subprocess.Popen[bytes]:
    """Starts a worker (``python tests/indexer_worker.py ...`` if ``command_line``, else forked from a
    server that has the imports done); its output goes to ``<events>.log``."""
    argv = [rpc_url, db_url, address, str(deployment_block), str(events), *options]
    log = events.with_suffix(".log")
    if not command_line:
        process = _forkserver().Process(target=_forked_main, args=(argv, str(log)), daemon=True)
        process.start()
        return Forked(process)
    with open(log, "ab") as output:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *argv], stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )


def events_of(path: Path) -> list[dict[str, Any]]:
    """The complete lines a worker has written so far."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def worker_log(events: Path) -> str:
    log = events.with_suffix(".log")
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def wait_until(
    condition: Callable[[], Any],
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    guard: float = 60,
) -> Any:
    """Polls ``condition`` until it returns something truthy (and returns that). ``guard`` only stops a hung
    test; ``process`` (and its log) is reported if it exits first."""
    deadline = time.monotonic() + guard
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            value = condition()
            if value:
                return value
            raise AssertionError(f"the worker exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def wait_for_event(events: Path, name: str, process: Forked | subprocess.Popen[bytes]) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in events_of(events) if e["event"] == name), None)

    try:
        result: dict[str, Any] = wait_until(found, f"its {name!r} event", process=process)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{worker_log(events)}") from None
    return result


def kill(process: Forked | subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
    """Sends ``sig`` (SIGKILL: kill -9) and reaps the process; its exit status."""
    if process.poll() is None:
        os.kill(process.pid, sig)
    return process.wait(timeout=60)


def build_chain(ledger: Any, *, batches: int = 40, recipients: int = 5, every: int = 5, gap: int = 15) -> int:
    """A few hundred entries over many blocks: ``ledger_activity`` (one of every entry kind), then ``batches``
    issue batches of ``recipients`` each (one block each), with ``gap`` empty blocks after every ``every`` of
    them. Returns the head block."""
    from eth_account import Account

    from chain import Points, ReasonCode
    from conftest import chain_ledger, ledger_activity, random_ref

    ledger_activity(ledger)
    partner = chain_ledger(ledger, ledger.actors.partner)
    people = [Account.create().address for _ in range(3 * recipients)]
    for i in range(batches):
        chosen = [people[(i + k) % len(people)] for k in range(recipients)]
        amounts = [Points(1 + (i * 7 + k) % 50) for k in range(recipients)]
        item_refs = [random_ref() for _ in chosen]
        partner.issue_batch(chosen, amounts, item_refs, ReasonCode(1 + i % 5)).wait()
        if (i + 1) % every == 0:
            ledger.w3.provider.make_request("anvil_mine", [hex(gap)])
    return int(ledger.w3.eth.block_number)


@contextmanager
def another_database(like: str, tmp_path: Path, name: str = "reference") -> Iterator[str]:
    """An empty database of the same kind as the URL ``like`` (SQLite file, or a fresh PostgreSQL schema)."""
    from conftest import POSTGRES_URL
    from indexer import scratch_schema

    if like.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    assert POSTGRES_URL is not None
    with scratch_schema(POSTGRES_URL, prefix="test") as url:
        yield url


if __name__ == "__main__":
    sys.exit(main())
