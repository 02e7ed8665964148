"""The service's branch (``service``) of the project's one Alembic environment (``indexer/migrations``)."""
