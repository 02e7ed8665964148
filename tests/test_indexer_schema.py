"""The schema comes only from the Alembic history, and the history matches the models on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from conftest import mirror_engine
from indexer import Base, migrate
from indexer._db import MIGRATIONS


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


def _downgrade(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


#: The counters revision 0002 adds to tables that already hold rows.
NEW_COUNTERS = {
    "ledger_state": ("total_reversed", "total_refunded"),
    "partners": ("reversed", "refunded", "reversed_value", "refunded_value"),
    "partner_periods": ("reversed", "refunded"),
    "supply_history": ("total_reversed", "total_refunded"),
}


def test_a_mirror_of_revision_0001_is_upgraded_with_its_new_counters_at_zero(database: str) -> None:
    engine = mirror_engine(database)
    migrate(engine, "0001")
    contract = "0x" + "ab" * 20
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO cursors VALUES (:c, 1, 5, 9, NULL, 1000, 2592000, 12, NULL)"),
            {"c": contract},
        )
        conn.execute(
            text(
                "INSERT INTO ledger_state (contract, seq, head, total_issued, total_redeemed, total_expired,"
                " settlement_value, transfers_enabled, paused, paused_duration)"
                " VALUES (:c, 3, :h, 100, 40, 0, 10, :f, :f, 0)"
            ),
            {"c": contract, "h": bytes(32), "f": False},
        )
        conn.execute(
            text("INSERT INTO partners VALUES (1, :c, :c, 1, :t, :t, 900, 100, 40, 1000, 400, 0, 0, 1)"),
            {"c": contract, "t": True},
        )
        conn.execute(text("INSERT INTO partner_periods VALUES (1, 0, 100, 40)"))
        conn.execute(text("INSERT INTO supply_history VALUES (9, 1000, 100, 40, 0)"))
    migrate(engine)
    with engine.connect() as conn:
        for table, columns in NEW_COUNTERS.items():
            values = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).one()
            assert [int(v) for v in values] == [0] * len(columns), table
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []
    _downgrade(engine, "0001")
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("partners")}
        assert columns.isdisjoint(NEW_COUNTERS["partners"])
        assert conn.execute(text("SELECT issued_value FROM partners")).scalar() in (1000, "1000")
    migrate(engine)  # and up again
