"""API: the FastAPI service, the earning-rules engine and the ``loyalty`` command line."""

from ._settings import Settings

__all__ = ["Settings"]
