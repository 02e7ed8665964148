"""API: the FastAPI service (``create_app``), its own tables and sign-in, and the ``loyalty`` command line."""

from ._app import create_app
from ._settings import Settings

__all__ = ["Settings", "create_app"]
