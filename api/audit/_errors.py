"""The audit tool's errors: one tree under :class:`AuditError`, so the command line turns any of them into one
line and a non-zero exit instead of a traceback."""

from __future__ import annotations

__all__ = ["AuditError", "CheckpointError", "NodeError", "ProofError"]


class AuditError(Exception):
    """Something kept the audit from reaching a verdict (not a difference it found: those are reported)."""


class NodeError(AuditError):
    """The node did not answer what the audit needs (after retries), or answered something inconsistent."""


class CheckpointError(AuditError):
    """The checkpoint file is unreadable, of another ledger, or its block is no longer on the chain."""


class ProofError(AuditError):
    """A proof does not hold: a node, a root or a value does not lead where the proof says it does."""
