"""What a command says when it fails: one ``error: ...`` line on stderr, and a ``hint: ...`` line with what to
do about it when the failure is one an operator meets (the node down, a wrong password, an unknown partner,
a paused ledger, invalid settings, the database down); never a traceback.

The command line's own errors (:class:`CommandError` and below) are raised on purpose by ``api.cli``: like
every error of ``api`` they derive from :class:`~api._errors.ApiError`; the others come from the layers the
commands call (``chain``, ``indexer``, the service's routes, SQLAlchemy) and :func:`explain` turns each into
its line and hint::

    CommandError          the command cannot do what was asked (bad input, a manifest already in place)
    ├── SettingsInvalid   the LOYALTY_* settings do not validate (never echoing a value: it may be a secret)
    └── UnknownPartner    the ledger (as mirrored) has no such partner

A usage error (an unknown option, a missing argument) is Typer's, shown with the command's usage line by
:func:`usage_failure`; its text never repeats anything that looks like a private key, in case one was typed
on the command line by mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from chain import ChainError, ContractRevert, RetryableError
from chain._devnode import NodeUnreachable, UnsupportedRpcUrl
from chain._manifest import ManifestMismatch, ManifestNotFound
from chain._rpc import InsufficientFunds, RpcUnavailable
from chain._rpc import RateLimited as NodeRateLimited
from chain._sender import TransactionTimeout
from chain._signer import DevKeyRefused, KeyNotFound, PasswordError, WrongPassword
from indexer import IndexerError
from indexer._errors import LeaseTimeout, MirrorMismatch

from .._custody import SeedNotFound
from .._errors import ApiError, InsufficientPoints, NotReady
from .._serve import ServeError

__all__ = [
    "CommandError",
    "Failure",
    "SettingsInvalid",
    "UnknownPartner",
    "explain",
    "failure_hint",
    "redact",
]


class CommandError(ApiError):
    """A command cannot do what was asked (bad flags, a manifest already in place); ``hint``: what to do."""

    def __init__(self, detail: str, *, hint: str | None = None) -> None:
        super().__init__(detail)
        self.hint = hint


class SettingsInvalid(CommandError):
    """The ``LOYALTY_*`` settings do not validate: each problem's location and message, never its input."""

    def __init__(self, exc: ValidationError) -> None:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        super().__init__(
            "invalid settings: " + "; ".join(problems),
            hint="each setting is the environment variable LOYALTY_<NAME> (see README): fix or unset it",
        )


class UnknownPartner(CommandError):
    """The ledger, as the mirror holds it, has no partner ``partner_id``."""

    def __init__(self, partner_id: int) -> None:
        super().__init__(
            f"the ledger has no partner {partner_id}",
            hint="`loyalty partner onboard` registers a partner; `loyalty index` updates the mirror",
        )
        self.partner_id = partner_id


@dataclass(frozen=True, slots=True)
class Failure:
    """What a command prints for a failure (``error: <message>``, ``hint: <hint>``) and its exit status."""

    message: str
    hint: str | None = None
    code: int = 1

    def lines(self) -> list[str]:
        return [f"error: {self.message}"] + ([f"hint: {self.hint}"] if self.hint else [])


_NODE_DOWN = (
    "is the node running? LOYALTY_RPC_URL names it (http(s)://; anvil:// or eth-tester:// for a local chain)"
)
_PAUSED = "the ledger is paused: `loyalty unpause` resumes it (the pauser's key)"
_UNKNOWN_PARTNER = (
    "`loyalty partner onboard` registers a partner; `loyalty operations list --all` shows what ran"
)

#: Hints for the typed reasons of refused operations (``api._outbox.FAILURES``, ``api._coalition``).
_REASON_HINTS = {
    "ledger-paused": _PAUSED,
    "partner-unknown": _UNKNOWN_PARTNER,
    "partner-suspended": "`loyalty partner reactivate ID` lets a suspended partner act again",
    "allowance-exhausted": "`loyalty partner allowance ID --increase N` tops up a partner's allowance",
    "role-missing": "the signing key (LOYALTY_SIGNER_ADDRESS) lacks the role this needs (see the manifest)",
    "chain-unavailable": _NODE_DOWN,
}
#: Hints for contract errors, by the ledger's error name.
_REVERT_HINTS = {
    "EnforcedPause": _PAUSED,
    "LedgerUnknownPartner": _UNKNOWN_PARTNER,
    "AccessControlUnauthorizedAccount": _REASON_HINTS["role-missing"],
    "LedgerPartnerSuspended": _REASON_HINTS["partner-suspended"],
    "LedgerAllowanceExceeded": _REASON_HINTS["allowance-exhausted"],
}


def failure_hint(reason: str | None, action: str | None = None) -> str | None:
    """The hint for an operation (``action``) refused with the typed ``reason`` (``ledger-paused``, ...), if
    there is one."""
    if action == "allowance-decrease" and reason == "allowance-exhausted":
        return "a cut takes at most what remains of the allowance (the error says: partner, remaining, asked)"
    return _REASON_HINTS.get(reason or "")


def _chain_hint(exc: ChainError) -> str | None:
    if isinstance(exc, (NodeUnreachable, RpcUnavailable)):
        return _NODE_DOWN
    if isinstance(exc, UnsupportedRpcUrl):
        return (
            "LOYALTY_RPC_URL takes http(s)://, anvil:// (a node spawned from node_modules) or eth-tester://"
        )
    if isinstance(exc, NodeRateLimited):
        return "the node limits this client's requests: retry later, or use a node of your own"
    if isinstance(exc, TransactionTimeout):
        return "the node did not mine it within LOYALTY_TX_TIMEOUT_S: check that it mines, then look again"
    if isinstance(exc, RetryableError):
        return _NODE_DOWN
    if isinstance(exc, WrongPassword):
        return (
            "LOYALTY_KEYSTORE_PASSWORD_FILE (or LOYALTY_KEYSTORE_PASSWORD) must hold the password the key "
            "was stored with"
        )
    if isinstance(exc, PasswordError):
        return "put the password in a file named by LOYALTY_KEYSTORE_PASSWORD_FILE, or run in a terminal"
    if isinstance(exc, KeyNotFound):
        return "`loyalty keys list` shows the keys in LOYALTY_KEYSTORE_DIR; LOYALTY_SIGNER_ADDRESS names one"
    if isinstance(exc, DevKeyRefused):
        return "name a keystore key with LOYALTY_SIGNER_ADDRESS (`loyalty keys new` makes one)"
    if isinstance(exc, InsufficientFunds):
        return "the signing key has no ether for gas: fund its address"
    if isinstance(exc, ManifestNotFound):
        return "LOYALTY_MANIFEST_PATH names the manifest of a ledger deployed elsewhere"
    if isinstance(exc, ManifestMismatch):
        return (
            "the manifest is another chain's or deployment's: point LOYALTY_RPC_URL at its node, or "
            "LOYALTY_MANIFEST_PATH at this chain's manifest"
        )
    if isinstance(exc, ContractRevert):
        return _REVERT_HINTS.get(exc.name)
    return None


def _database_hint(exc: SQLAlchemyError) -> str:
    if isinstance(exc, OperationalError):
        return "is the database running, and does LOYALTY_DATABASE_URL name it?"
    return "`loyalty migrate` brings the database's schema to its heads"


def _api_hint(exc: ApiError) -> str | None:
    if isinstance(exc, CommandError):
        return exc.hint
    if isinstance(exc, InsufficientPoints):
        return "`loyalty wallet ADDRESS` shows what the member holds"
    if isinstance(exc, SeedNotFound):
        return "the custody seed is made on first use by `loyalty serve` or `loyalty member enrol`"
    if isinstance(exc, NotReady):
        return "`loyalty index --once` fills the mirror from the chain (`loyalty run` does it too)"
    if isinstance(exc, ServeError) and "cannot listen" in exc.detail:
        return "another process listens there: stop it, or set LOYALTY_API_PORT to a free port"
    return None


def explain(exc: BaseException) -> Failure | None:
    """The line, hint and exit status for an expected failure; ``None`` for anything else (a bug: its
    traceback is the useful report)."""
    if isinstance(exc, (ChainError, IndexerError, OSError)):
        hint: str | None = None
        if isinstance(exc, ChainError):
            hint = _chain_hint(exc)
        elif isinstance(exc, LeaseTimeout):
            hint = "another `loyalty index` (or `loyalty run`) holds this mirror's lease: one per database"
        elif isinstance(exc, MirrorMismatch):
            hint = (
                "LOYALTY_DATABASE_URL holds another ledger's mirror: give this ledger a database of its own"
            )
        return Failure(str(exc), hint)
    if isinstance(exc, ApiError):
        return Failure(exc.detail, _api_hint(exc))
    if isinstance(exc, SQLAlchemyError):
        # the driver's message (never the URL's password: SQLAlchemy hides it), without the SQL statement
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Failure(f"the database failed ({type(exc).__name__}): {reason}", _database_hint(exc))
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", code=130)
    return None


#: 64 hex digits (with or without 0x): a private key, perhaps typed on the command line by mistake.
_KEY_LIKE = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")


def redact(text: str) -> str:
    """``text`` with anything that looks like a private key replaced by ``<redacted>``."""
    return _KEY_LIKE.sub("<redacted>", text)
