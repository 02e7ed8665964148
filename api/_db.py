"""The service's database: the mirror's tables and the service's own, in one database and one Alembic
environment. Importing this module registers the ``service`` branch (``api/migrations/versions``) with the
indexer's environment, so :func:`migrate_all` (``loyalty migrate``, and every start of the service or the
indexer from the ``loyalty`` command) brings both branches to their heads.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from indexer import migrate, register_migrations

from ._index_setup import mirror_engine
from ._settings import Settings

__all__ = ["SERVICE_BRANCH", "SERVICE_MIGRATIONS", "migrate_all", "service_engine"]

SERVICE_MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
SERVICE_BRANCH = "service"
register_migrations(SERVICE_MIGRATIONS)


#: Connections each service process keeps: one per thread of the thread pool that runs the routes (anyio's
#: default limit is 40), so a connection is reused rather than opened per request under load.
SERVICE_POOL_SIZE = 40


def service_engine(settings: Settings) -> Engine:
    return mirror_engine(settings, pool_size=SERVICE_POOL_SIZE)


def migrate_all(engine: Engine) -> None:
    """Both branches (the mirror's and the service's) at their heads."""
    migrate(engine, "heads")
