"""Chain layer: compiles, deploys and talks to the ledger contracts. Knows nothing of SQL or HTTP."""

from ._compile import (
    SOLC_VERSION,
    Artifact,
    compile_contracts,
    default_solc_binary,
    load_artifact,
    stale_artifacts,
    write_artifacts,
)
from ._errors import (
    ArtifactError,
    ChainError,
    CompilationError,
    ContractRevert,
    PermanentError,
    RetryableError,
    RevertDecoder,
    UnknownRevert,
)

__all__ = [
    "SOLC_VERSION",
    "Artifact",
    "ArtifactError",
    "ChainError",
    "CompilationError",
    "ContractRevert",
    "PermanentError",
    "RetryableError",
    "RevertDecoder",
    "UnknownRevert",
    "compile_contracts",
    "default_solc_binary",
    "load_artifact",
    "stale_artifacts",
    "write_artifacts",
]
