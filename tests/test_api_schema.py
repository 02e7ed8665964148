"""The service's tables come from their own Alembic branch (``service``) in the mirror's environment: one
``alembic upgrade heads`` applies both branches, the migrations create exactly the models, the indexer
alone still starts on a database that holds both, and each branch goes down without touching the other."""

from __future__ import annotations

import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from api._db import migrate_all
from api._tables import ServiceBase
from conftest import ROOT, mirror_engine
from indexer import Base, migrate
from indexer._db import _VERSION_LOCATIONS, _config

HEADS = {"0002", "s0004"}


def _both() -> MetaData:
    """The mirror's models and the service's in one metadata (what the database must hold)."""
    both = MetaData()
    for table in (*Base.metadata.tables.values(), *ServiceBase.metadata.tables.values()):
        table.to_metadata(both)
    return both


def _heads(database: str) -> set[str]:
    with mirror_engine(database).connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def test_both_branches_create_exactly_their_models(database: str) -> None:
    engine = mirror_engine(database)
    migrate_all(engine)
    migrate_all(engine)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, _both()) == []
        tables = set(inspect(conn).get_table_names())
    assert tables == set(Base.metadata.tables) | set(ServiceBase.metadata.tables) | {"alembic_version"}
    assert _heads(database) == HEADS


def test_the_indexer_alone_starts_on_a_database_with_both_branches(database: str) -> None:
    engine = mirror_engine(database)
    migrate_all(engine)
    migrate(engine)  # what an indexer does on start: its own branch is current, nothing else is read
    assert _heads(database) == HEADS


def test_the_service_branch_goes_down_and_up_alone(database: str) -> None:
    engine = mirror_engine(database)
    migrate_all(engine)
    config = _config(list(_VERSION_LOCATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "service@base")
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    assert _heads(database) == {"0002"}
    migrate_all(engine)
    assert _heads(database) == HEADS


def test_alembic_upgrade_heads_from_the_command_line(tmp_path: object) -> None:
    database = f"sqlite:///{tmp_path}/cli.db"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ROOT / "alembic.ini"),
            "-x",
            f"url={database}",
            "upgrade",
            "heads",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert _heads(database) == HEADS
