"""The independent audit: verify every balance, position and rule of the ledger from the chain alone.

``verify`` rebuilds the ledger from its logs with its own decoder (:mod:`._decode`, not the mirror's) and
holds the contract's views, and optionally the operator's API and mirror database (:mod:`._diff`), against
the rebuild; ``prove_entry`` and ``prove_balance`` (:mod:`._proofs`) tie one entry to its block's
``receiptsRoot`` and one balance to the block's ``stateRoot``. ``loyalty audit verify|prove`` is the command
line (:mod:`._cli`).
"""

from __future__ import annotations

from ._decode import Entry, decode_log
from ._errors import AuditError, CheckpointError, NodeError, ProofError
from ._state import Difference, Rebuild
from ._verify import AuditTarget, Observer, Report, VerifiedBlock, verify

__all__ = [
    "AuditError",
    "AuditTarget",
    "CheckpointError",
    "Difference",
    "Entry",
    "NodeError",
    "Observer",
    "ProofError",
    "Rebuild",
    "Report",
    "VerifiedBlock",
    "decode_log",
    "verify",
]
