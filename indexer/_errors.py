"""The indexer's errors. RPC failures keep the chain layer's classes (retryable ones are retried, with
backoff, without skipping a range); what is left is permanent and stops the indexer::

    IndexerError
    ├── UndecodableLog        a log under a ledger topic that does not decode (wrong ABI, corrupt node)
    ├── ReorgTooDeep          the chain replaced blocks below the unfinalised window the mirror keeps
    ├── MirrorMismatch        the database mirrors another contract or chain than the one asked for
    ├── LeaseTimeout          another indexer kept the write lease for longer than we were told to wait
    └── BlockNotMirrored      reconcile was asked about a block the mirror is not at
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BlockNotMirrored",
    "IndexerError",
    "LeaseTimeout",
    "MirrorMismatch",
    "ReorgTooDeep",
    "UndecodableLog",
]


class IndexerError(Exception):
    """Root of the indexer's own errors; all of them are permanent (a restart will not fix them)."""


class UndecodableLog(IndexerError):
    def __init__(self, log: Mapping[str, Any], reason: str) -> None:
        self.log = dict(log)
        self.reason = reason
        where = f"block {log.get('blockNumber')} log {log.get('logIndex')} tx {log.get('transactionHash')}"
        super().__init__(f"cannot decode ledger log at {where}: {reason}")


class ReorgTooDeep(IndexerError):
    """The node's chain no longer contains any block of the mirror's window: refusing to diverge."""

    def __init__(self, cursor: int, lowest_kept: int, window: int) -> None:
        self.cursor = cursor
        self.lowest_kept = lowest_kept
        self.window = window
        super().__init__(
            f"reorganisation deeper than the {window}-block window: none of the blocks "
            f"{lowest_kept}..{cursor} "
            "the mirror holds is on the node's chain any more. The mirror is left as it was; re-index from "
            "the deployment block (drop the database) or raise the window"
        )


class MirrorMismatch(IndexerError):
    def __init__(self, field: str, expected: object, actual: object) -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        super().__init__(f"the database mirrors {field} {actual}, not {expected}")


class LeaseTimeout(IndexerError):
    def __init__(self, waited: float) -> None:
        self.waited = waited
        super().__init__(f"another indexer held the write lease for all of {waited:.1f}s")


class BlockNotMirrored(IndexerError):
    def __init__(self, block: int, cursor: int) -> None:
        self.block = block
        self.cursor = cursor
        super().__init__(
            f"the mirror is at block {cursor}, not {block}: reconcile compares the mirror as it is with the "
            "chain at the mirror's block"
        )
