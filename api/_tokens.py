"""Bearer tokens: API keys (``lpk_<id>_<secret>``) and member sessions (``lps_<id>_<secret>``).

A token is a recognisable prefix (secret scanners and people can tell what leaked), a public id (the row's
key: lookups never scan), and 256 random bits. The service stores only the SHA-256 of the whole token: a
random 256-bit secret needs no slow hash, and a database leak reveals no usable token. Comparison is
constant-time. One-time codes (link codes, enrolment links) are random too and stored the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = [
    "API_KEY_PREFIX",
    "SESSION_PREFIX",
    "IssuedToken",
    "digest",
    "issue_token",
    "matches",
    "parse_token",
]

API_KEY_PREFIX = "lpk"
SESSION_PREFIX = "lps"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    #: the whole token, shown once; never stored, logged or put in a ``repr``
    token: str
    digest: bytes

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.id!r})"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def issue_token(prefix: str) -> IssuedToken:
    token_id = secrets.token_hex(6)
    token = f"{prefix}_{token_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(token_id, token, digest(token))


def parse_token(token: str) -> tuple[str, str] | None:
    """``(prefix, id)`` of a well-formed token, else ``None``."""
    parts = token.split("_", 2)
    if len(parts) != 3 or len(parts[1]) != 12 or len(parts[2]) < 32:
        return None
    return parts[0], parts[1]


def matches(token: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(token), stored)
