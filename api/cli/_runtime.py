"""What the commands stand on: the settings, the prompt for secrets, the deployment, the database, and the
service's own :class:`~api._services.Services` for the commands that run a route's code in process.

Secrets never come from the command line: a keystore password comes from the settings (a file or
``LOYALTY_KEYSTORE_PASSWORD``) or, in a terminal, from a prompt that does not echo (:func:`prompt`); a
one-time code a member hands over (:func:`read_secret`) from standard input or such a prompt.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hexbytes import HexBytes
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from web3 import Web3

from chain._manifest import DeploymentManifest
from chain._rpc import Rpc
from chain._sender import Sender

from .._auth import Principal
from .._chain_setup import (
    Prompt,
    fund_on_embedded_chain,
    load_verified_manifest,
    sender_from_settings,
    signer_from_settings,
)
from .._db import migrate_all, service_engine
from .._errors import NotReady
from .._ratelimit import RateLimiter
from .._serve import custody_from_settings, manifest_if_any
from .._services import Services
from .._settings import Settings
from ._errors import CommandError, SettingsInvalid, UnknownPartner

__all__ = [
    "ADMIN",
    "as_partner",
    "checked",
    "hash32",
    "load_settings",
    "open_deployment",
    "open_services",
    "partner_id",
    "problems",
    "prompt",
    "read_secret",
    "require_partner",
    "sender",
    "service_db",
]

_Model = TypeVar("_Model", bound=BaseModel)

#: Who the command line acts as when it runs a route's code: an admin, recorded as nobody's key
#: (``created_by`` is ``None``, as for the coalition operations the command line records).
ADMIN = Principal("admin")


def as_partner(partner: int) -> Principal:
    """A partner's till, as the command line plays it (no key: ``created_by`` is ``None``)."""
    return Principal("partner", partner_id=partner)


def load_settings() -> Settings:
    """The ``LOYALTY_*`` settings, or :class:`SettingsInvalid` (locations and messages, never values)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid(exc) from None


def prompt() -> Prompt | None:
    """``getpass`` when a person is at the terminal; ``None`` (never ask) in scripts and pipes."""
    return getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None


def read_secret(what: str) -> str:
    """A secret a person hands over (a one-time code): asked without echo in a terminal, else the first line
    of standard input; never the command line, where the process list would show it."""
    if sys.stdin is None:
        raise CommandError(f"no {what}: pipe it into standard input")
    asked = sys.stdin.isatty()
    value = (getpass.getpass(f"{what[0].upper()}{what[1:]}: ") if asked else sys.stdin.readline()).strip()
    if not value:
        raise CommandError(f"no {what} given (empty input)", hint=f"pipe the {what} into standard input")
    return value


def open_deployment(settings: Settings, w3: Web3, purpose: str = "index it") -> DeploymentManifest:
    """The deployment manifest, verified against the node (refused on the embedded chain, which lives only
    inside one command)."""
    if settings.embedded_chain:
        raise CommandError(
            "the embedded chain (eth-tester://) lives only inside one command; "
            f"set LOYALTY_RPC_URL to a node (e.g. anvil://) to {purpose}",
            hint="`loyalty run` runs the whole service on the embedded chain in one process",
        )
    return load_verified_manifest(settings, Rpc(w3))


def sender(settings: Settings, w3: Web3) -> Sender:
    """The settings' signing key on ``w3`` (funded on the embedded chain)."""
    chain_id = Rpc(w3).chain_id()
    signer = signer_from_settings(settings, chain_id, prompt=prompt())
    fund_on_embedded_chain(w3, signer.address)
    return sender_from_settings(settings, w3, signer)


@contextmanager
def service_db(settings: Settings) -> Iterator[Session]:
    """A session on the service's tables (the schema migrated first), committed if the block succeeds."""
    engine = service_engine(settings)
    try:
        migrate_all(engine)
        with Session(engine) as db, db.begin():
            yield db
    finally:
        engine.dispose()


@contextmanager
def open_services(
    settings: Settings, *, custody: bool = False, create_custody: bool = False
) -> Iterator[Services]:
    """The service's :class:`Services` as a worker of ``loyalty serve`` builds them, for running a route's
    code in this process: the database (schema migrated), the ledger of the deployment manifest if there is
    one (else the one the mirror holds), no chain connection, no rate limit. ``custody``: the custodial
    wallets' seed (``create_custody``: made if there is none yet, as ``loyalty serve`` makes it)."""
    engine = service_engine(settings)
    try:
        migrate_all(engine)
        manifest = manifest_if_any(settings)
        yield Services(
            settings,
            engine,
            contract=None if manifest is None else manifest.ledger.address,
            limiter=RateLimiter(),
            custody=custody_from_settings(settings, create=create_custody) if custody else None,
        )
    finally:
        engine.dispose()


def require_partner(services: Services, partner: int) -> None:
    """:class:`UnknownPartner` unless the mirrored ledger has ``partner``."""
    try:
        with services.mirror() as (view, _):
            known = view.partner(partner) is not None
    except NotReady as exc:
        raise CommandError(
            f"the mirror cannot say whether partner {partner} exists: {exc.detail}",
            hint="`loyalty index --once` fills the mirror from the chain",
        ) from None
    if not known:
        raise UnknownPartner(partner)


def problems(exc: ValidationError, limit: int = 5) -> str:
    """A validation error on one line: each problem's location and message, never its input."""
    found = [
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def checked(model: type[_Model], what: str, **values: Any) -> _Model:
    """``values`` validated by the API's request model for the same action (the same limits as HTTP)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise CommandError(f"invalid {what}: {problems(exc)}") from None


def partner_id(value: int) -> int:
    """A partner id as the ledger takes it (a uint32 above 0)."""
    if not 1 <= value < 2**32:
        raise CommandError(f"a partner id is a number from 1 to {2**32 - 1}, not {value}")
    return value


def hash32(text: str, what: str) -> bytes:
    """A 32-byte value given as 0x-prefixed hex on the command line (a salt, an operation id, a rule hash)."""
    try:
        value = bytes(HexBytes(text))
    except ValueError:
        value = b""
    if len(value) != 32:
        raise CommandError(f"{what} must be 32 bytes of 0x-prefixed hex, not {text!r}")
    return value
