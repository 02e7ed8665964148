"""Alembic environment: the one history that creates and changes every table of the project.

``indexer.migrate(engine)`` passes its connection in ``config.attributes["connection"]``; the ``alembic``
command line takes the database as ``alembic -x url=postgresql://... upgrade head`` (default: the embedded
SQLite database, ``sqlite:///.loyalty/ledger.db``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from indexer._schema import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from indexer._db import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///.loyalty/ledger.db")
    engine = make_engine(url)
    with engine.begin() as conn:
        _run(conn)


_main()
