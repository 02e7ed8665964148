"""The one place configuration is read from the environment (prefix ``LOYALTY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Service configuration. Every field can be set as ``LOYALTY_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore", frozen=True)

    mode: Literal["dev", "production"] = "dev"
    #: Where the chain is: ``eth-tester://`` is the embedded in-process chain.
    rpc_url: str = "eth-tester://"
    #: The project checkout (contracts/, node_modules/) used by `loyalty compile`.
    project_root: Path = Path(".")
    #: A native solc of the pinned version; solcjs from node_modules when unset. ``SOLC_BINARY`` also works.
    solc_binary: Path | None = Field(
        default=None, validation_alias=AliasChoices("LOYALTY_SOLC_BINARY", "SOLC_BINARY")
    )
