"""Engines, migrations and the write lease.

The schema is created and changed only by the Alembic history in ``indexer/migrations`` (``migrate``);
``alembic upgrade heads`` with the repository's ``alembic.ini`` runs the same scripts. The mirror's
revisions are the ``mirror`` branch; a package that keeps its own tables in the same database (the API's
``service`` branch) registers its versions folder with :func:`register_migrations`, and
``migrate(engine, "heads")`` then applies every branch. The indexer itself brings only its own branch to
its head: a database whose other branches it does not know about (the API's, when only the indexer runs)
is left as it is.

Only one indexer writes a mirror at a time. On PostgreSQL the writer holds a session advisory lock on the
connection it writes with: if the process dies its connection closes, the lock goes with it and a waiting
indexer takes over. On SQLite (one machine) the writer holds an exclusive ``flock`` on ``<database>.lock``,
which the kernel also releases when the process dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from ._errors import LeaseTimeout

__all__ = ["MIRROR_BRANCH", "Lease", "make_engine", "migrate", "register_migrations", "scratch_schema"]

logger = logging.getLogger("indexer.db")
MIGRATIONS = Path(__file__).parent / "migrations"
#: The branch label of the mirror's revisions.
MIRROR_BRANCH = "mirror"
#: Folders of revisions in this Alembic environment: the mirror's, then registered branches'.
_VERSION_LOCATIONS: list[Path] = [MIGRATIONS / "versions"]


def register_migrations(versions: Path) -> None:
    """Adds a folder of revisions (another branch, e.g. the API's tables) to the environment ``migrate``
    runs; idempotent."""
    if versions not in _VERSION_LOCATIONS:
        _VERSION_LOCATIONS.append(versions)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine for a ``sqlite:///path`` or ``postgresql://`` URL (PostgreSQL through psycopg 3). A server
    with many threads reading at once (the API) asks for a pool as large as its threads: a connection
    beyond ``pool_size`` is closed when returned, and opening one costs more than most reads."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(parsed, **({} if in_memory else pool))

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (the API) never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every checkpoint, atomic always
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: index inserts in random order
            cursor.close()

        return engine
    return create_engine(parsed, pool_pre_ping=True, **pool)


@contextmanager
def scratch_schema(url: str, *, prefix: str = "scratch") -> Iterator[str]:
    """A URL of ``url``'s PostgreSQL database whose connections work in a new schema ``<prefix>_<random>``,
    dropped with everything in it on exit (tests and benchmarks: a mirror of their own, side by side)."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = make_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            yield (
                make_url(url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


def _config(locations: list[Path]) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    return config


def migrate(engine: Engine, revision: str = f"{MIRROR_BRANCH}@head") -> None:
    """Brings the database's schema to ``revision`` with the Alembic history: by default the mirror's
    branch to its head (what the indexer needs); ``"heads"`` brings every registered branch to its head.
    Revisions of registered branches are known either way, so a database holding them upgrades cleanly."""
    locations = list(_VERSION_LOCATIONS)
    config = _config(locations)
    with engine.begin() as conn:
        if revision == f"{MIRROR_BRANCH}@head" and _mirror_current(conn):
            return
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def _mirror_current(conn: Connection) -> bool:
    """Whether the mirror's branch is at its head already (then nothing is read of other branches, which
    may not be registered in this process: the indexer alone on the API's database)."""
    head = ScriptDirectory.from_config(_config([MIGRATIONS / "versions"])).get_current_head()
    return head in MigrationContext.configure(conn).get_current_heads()


class Lease:
    """The right to write one mirror. ``acquire`` waits (polling every ``poll`` seconds, at most ``timeout``)
    and returns the connection to write with, which holds the lease until ``release`` or process death.

    Other single-writer roles use it too (the API's batcher, one per partner key): on PostgreSQL the lock is
    keyed by ``name``; on SQLite, ``tag`` names the lock file (``<database>.<tag>.lock``; the mirror's, with
    no tag, is ``<database>.lock``)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tag: str | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.tag = tag
        self.poll = poll
        self.timeout = timeout
        self._sleep = sleep
        self._conn: Connection | None = None
        self._fd: int | None = None
        #: the PostgreSQL advisory lock key (set when first tried)
        self.key = 0

    def acquire(self) -> Connection:
        started = time.monotonic()
        waiting_logged = False
        while not self._try():
            waited = time.monotonic() - started
            if self.timeout is not None and waited >= self.timeout:
                raise LeaseTimeout(waited)
            if not waiting_logged:
                logger.info("another process holds the lease for %s; waiting", self.name)
                waiting_logged = True
            self._sleep(self.poll)
        logger.info("holding the lease for %s", self.name)
        assert self._conn is not None
        return self._conn

    def _try(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            # Keyed by schema and contract: mirrors in other schemas of the database do not contend.
            self.key = conn.execute(
                text("SELECT hashtext(current_schema() || ':' || :name)"), {"name": self.name.lower()}
            ).scalar_one()
            locked = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            conn.commit()
            if not locked:
                conn.close()
                return False
            self._conn = conn
            return True
        database = self.engine.url.database
        if database and database != ":memory:":
            lock_file = f"{database}.lock" if self.tag is None else f"{database}.{self.tag}.lock"
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
        self._conn = self.engine.connect()
        return True

    def release(self) -> None:
        if self._conn is not None:
            if self.engine.dialect.name == "postgresql":
                try:
                    if self._conn.in_transaction():
                        self._conn.rollback()
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    self._conn.commit()
                except Exception:  # the connection is gone: so is the lock
                    logger.debug("lease connection already closed", exc_info=True)
            self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> Connection:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
