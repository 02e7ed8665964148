"""kill -9 of the indexer process in the middle of a backfill batch's SQL transaction, several times, then a
restart to the end: the cursor is never ahead of the committed rows (every entry up to it is in, none after
it) and the finished mirror is identical, table by table, to an uninterrupted run's.

The indexer runs in ``tests/indexer_worker.py``; ``--kill-at K`` makes it stop inside the transaction of its
K-th batch with entries, after the entries, the derived rows and the cursor move are written, and say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer_worker import another_database, build_chain, events_of, kill, spawn, wait_for_event, worker_log
from sqlalchemy import Engine, func, select

from conftest import Ledger, table_digests
from indexer import Cursor, Indexer, IndexerConfig, LedgerEntry, LedgerState, make_engine
from indexer._store import ENTRIES

#: The worker's ranges: 2 blocks, growing to 4 (dozens of batches over the chain).
WORKER_RANGES = ("--initial-range", "2", "--max-range", "4", "--window", "2")
BLOCK = list(ENTRIES.c.keys()).index("block_number")


def entries_up_to(engine: Engine, block: int | None = None) -> list[tuple[Any, ...]]:
    query = select(ENTRIES).order_by(ENTRIES.c.seq)
    if block is not None:
        query = query.where(ENTRIES.c.block_number <= block)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def mirror_position(engine: Engine) -> tuple[int, int, int | None, int]:
    """The cursor's block, the state's last seq, and the highest block and seq of the stored entries."""
    with engine.connect() as conn:
        cursor = conn.execute(select(Cursor.block_number)).scalar_one()
        seq = conn.execute(select(LedgerState.seq)).scalar_one()
        top_block, top_seq = conn.execute(
            select(func.max(LedgerEntry.block_number), func.max(LedgerEntry.seq))
        ).one()
    return cursor, seq, top_block, top_seq or 0


def test_kill_9_mid_batch_then_restart_ends_identical_to_an_uninterrupted_run(
    anvil_ledger: Ledger, database: str, tmp_path: Path
) -> None:
    head = build_chain(anvil_ledger, batches=24, every=4, gap=6)
    rpc_url = anvil_ledger.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    target = (rpc_url, database, anvil_ledger.address, anvil_ledger.deployment_block)

    # The uninterrupted run, in this process, into a database of the same kind.
    with another_database(database, tmp_path) as clean_url:
        clean = make_engine(clean_url)
        indexer = Indexer(
            anvil_ledger.w3,
            clean,
            anvil_ledger.address,
            deployment_block=anvil_ledger.deployment_block,
            config=IndexerConfig(window=2, backoff_initial=0.01, backoff_max=0.05),
        )
        try:
            assert indexer.sync() == head
            reference = table_digests(clean)
            reference_entries = entries_up_to(clean)
        finally:
            indexer.close()
            clean.dispose()
    assert len(reference_entries) >= 150

    engine = make_engine(database)
    try:
        cursors = [anvil_ledger.deployment_block - 1]
        for life, kill_at in enumerate((2, 3, 4)):
            events = tmp_path / f"life-{life}.jsonl"
            worker = spawn(*target, events, "--kill-at", str(kill_at), *WORKER_RANGES)
            try:
                stopped = wait_for_event(events, "in-batch", worker)
                # Mid-transaction: the worker's own transaction sees the batch; other connections do not.
                during = mirror_position(engine)
            finally:
                status = kill(worker)
            assert status == -9, worker_log(events)
            assert stopped["batch"] == kill_at
            assert stopped["visible_max_seq"] == stopped["last_seq"]
            assert stopped["to_block"] <= head - 2, "a backfill batch (the window is 2 blocks)"

            cursor, seq, top_block, top_seq = mirror_position(engine)
            assert (cursor, seq, top_block, top_seq) == during
            commits = [e for e in events_of(events) if e["event"] == "commit"]
            assert sum(1 for e in commits if e["added"]) == kill_at - 1
            assert cursor == commits[-1]["block"], "the cursor is where the last committed batch left it"
            assert cursor < stopped["first_block"] <= stopped["to_block"]
            assert top_seq == seq < stopped["first_seq"], "nothing of the killed batch is in"
            assert top_block is None or top_block <= cursor, "no entry after the cursor"
            assert entries_up_to(engine) == entries_up_to(engine, cursor)
            expected = [e for e in reference_entries if e[BLOCK] <= cursor]
            assert entries_up_to(engine) == expected, (
                "every entry up to the cursor is in, as the chain has it"
            )
            assert cursor > cursors[-1], "each life commits something before it dies"
            cursors.append(cursor)

        events = tmp_path / "last-life.jsonl"
        worker = spawn(*target, events, *WORKER_RANGES)
        try:
            done = wait_for_event(events, "done", worker)
            assert worker.wait(timeout=60) == 0, worker_log(events)
        finally:
            kill(worker)
        assert done["cursor"] == head
        assert mirror_position(engine)[0] == head
        assert entries_up_to(engine) == reference_entries
        assert table_digests(engine) == reference
    finally:
        engine.dispose()
