"""One writer per mirror: two indexers against one database, only the lease holder writes; when it is killed
(kill -9) the other takes over and carries on. PostgreSQL: a session advisory lock; SQLite: an exclusive
``flock`` on ``<database>.lock``. Both go away with the process that held them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from indexer_worker import another_database, events_of, kill, spawn, wait_for_event, wait_until, worker_log
from sqlalchemy import Engine, select, text

from chain import Points, ReasonCode
from conftest import Ledger, chain_ledger, ledger_activity, new_customer, random_ref, table_digests
from indexer import Cursor, Indexer, IndexerConfig, Lease, LeaseTimeout, make_engine

FOLLOW = ("--window", "2", "--poll", "0.05")


def cursor_of(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(Cursor.block_number)).scalar()


def lease_holders(engine: Engine, lease: Lease) -> list[int]:
    """The PostgreSQL backends holding the advisory lock of ``lease`` (a bigint key: its high and low 32 bits
    are the lock's classid and objid)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ),
                {"high": (lease.key >> 32) & 0xFFFFFFFF, "low": lease.key & 0xFFFFFFFF},
            ).scalars()
        )


def more_entries(ledger: Ledger, salt: int) -> int:
    """A few new entries, each in a block of its own; the new head."""
    partner = chain_ledger(ledger, ledger.actors.partner)
    for i in range(3):
        partner.issue(new_customer().address, Points(50 + salt + i), random_ref(), ReasonCode(2)).wait()
    return int(ledger.w3.eth.block_number)


def test_two_indexers_one_writes_the_other_takes_over_when_it_dies(
    anvil_ledger: Ledger, database: str, tmp_path: Path
) -> None:
    ledger_activity(anvil_ledger)
    rpc_url = anvil_ledger.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    target = (rpc_url, database, anvil_ledger.address, anvil_ledger.deployment_block)
    engine = make_engine(database)
    probe = Lease(engine, anvil_ledger.address, timeout=0)
    postgres = engine.dialect.name == "postgresql"
    a_events, b_events = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    try:
        a = spawn(*target, a_events, "--mode", "run", *FOLLOW)
        b = None
        try:
            a_lease = wait_for_event(a_events, "leased", a)
            head = anvil_ledger.w3.eth.block_number
            wait_until(lambda: cursor_of(engine) == head, "A to catch up", process=a)

            # B (the command-line worker) starts while A holds the lease: it waits, and writes nothing.
            b = spawn(*target, b_events, "--mode", "run", *FOLLOW, command_line=True)
            wait_for_event(b_events, "waiting", b)
            with pytest.raises(LeaseTimeout):
                probe.acquire()
            if postgres:
                assert lease_holders(engine, probe) == [a_lease["backend"]]

            head = more_entries(anvil_ledger, salt=1)
            wait_until(lambda: cursor_of(engine) == head, "A to follow the new blocks", process=a)
            b_wrote = [e for e in events_of(b_events) if e["event"] in ("leased", "commit")]
            assert b_wrote == [], worker_log(b_events)
            a_commits = [e for e in events_of(a_events) if e["event"] == "commit"]
            assert a_commits and a_commits[-1]["block"] == head

            assert kill(a) == -signal.SIGKILL
            b_lease = wait_for_event(b_events, "leased", b)
            if postgres:
                assert lease_holders(engine, probe) == [b_lease["backend"]]
                assert b_lease["backend"] != a_lease["backend"]
            with pytest.raises(LeaseTimeout):
                probe.acquire()

            head = more_entries(anvil_ledger, salt=2)
            wait_until(lambda: cursor_of(engine) == head, "B to follow the new blocks", process=b)
            b_commits = [e for e in events_of(b_events) if e["event"] == "commit"]
            assert b_commits and b_commits[-1]["block"] == head
            assert b_commits[0]["block"] > a_commits[-1]["block"], "B carries on where A stopped"

            # SIGTERM: B stops following and lets go of the lease.
            assert kill(b, signal.SIGTERM) == 0, worker_log(b_events)
            probe.acquire()
            probe.release()
        finally:
            kill(a)
            if b is not None:
                kill(b)
        digests = table_digests(engine)
    finally:
        engine.dispose()

    with another_database(database, tmp_path) as clean_url:
        clean = make_engine(clean_url)
        fresh = Indexer(
            anvil_ledger.w3,
            clean,
            anvil_ledger.address,
            deployment_block=anvil_ledger.deployment_block,
            config=IndexerConfig(window=2),
        )
        try:
            assert fresh.sync() == head
            assert table_digests(clean) == digests, "the two writers' mirror equals a fresh one"
        finally:
            fresh.close()
            clean.dispose()


def test_the_lease_is_exclusive_and_comes_back_when_released(database: str, tmp_path: Path) -> None:
    """Two leases on one mirror in one process: separate connections (PostgreSQL) or separate open file
    descriptions (SQLite ``flock``) exclude each other just as two processes do. The same contract mirrored
    in another database (or PostgreSQL schema) has a lease of its own."""
    with another_database(database, tmp_path, "elsewhere") as elsewhere_url:
        engines = [make_engine(database), make_engine(database), make_engine(elsewhere_url)]
        first = Lease(engines[0], "0xAbC", timeout=0)
        second = Lease(engines[1], "0xabc", timeout=0)  # the name is case-insensitive: the same lease
        elsewhere = Lease(engines[2], "0xabc", timeout=0)
        try:
            first.acquire()
            with pytest.raises(LeaseTimeout):
                second.acquire()
            elsewhere.acquire()
            first.release()
            second.acquire()
            with pytest.raises(LeaseTimeout):
                first.acquire()
            second.release()
            first.acquire()
        finally:
            for lease in (first, second, elsewhere):
                lease.release()
            for engine in engines:
                engine.dispose()


def test_an_indexer_waits_for_the_lease_then_indexes(
    anvil_ledger: Ledger, database: str, tmp_path: Path
) -> None:
    """``lease_timeout`` bounds the wait: a second indexer gives up while the first holds the lease, and
    syncs once it is released."""
    ledger_activity(anvil_ledger)
    engines = [make_engine(database), make_engine(database)]
    holder, waiter = (
        Indexer(
            anvil_ledger.w3,
            engine,
            anvil_ledger.address,
            deployment_block=anvil_ledger.deployment_block,
            config=IndexerConfig(window=2),
            lease_timeout=0,
        )
        for engine in engines
    )
    try:
        holder.open()
        with pytest.raises(LeaseTimeout):
            waiter.open()
        holder.close()
        assert waiter.sync() == anvil_ledger.w3.eth.block_number
    finally:
        holder.close()
        waiter.close()
        for engine in engines:
            engine.dispose()
