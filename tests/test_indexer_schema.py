"""The schema comes only from the Alembic history, and the history matches the models on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from conftest import mirror_engine
from indexer import Base, migrate


def test_the_migrations_create_exactly_the_models(database: str) -> None:
    engine = mirror_engine(database)
    migrate(engine)
    migrate(engine)  # idempotent: a second start of the indexer changes nothing
    with engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
        tables = set(inspect(conn).get_table_names())
    assert differences == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
