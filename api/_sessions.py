"""Member sessions and the single-use challenges that lead to them.

A session is opened only by a member's own sign-in (Sign-In with Ethereum for self custody, a passkey for
custodial members): ``ls_<id>_<secret>``, stored hashed, short-lived (``session_ttl_s``) and revocable.
A challenge (a SIWE nonce, a WebAuthn challenge) is stored when issued and consumed in the same
transaction that checks it: the row is claimed with a conditional update, so of two concurrent uses of one
nonce exactly one succeeds; a used or expired one answers 410.
"""

from __future__ import annotations

import secrets
import string
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from ._errors import Gone
from ._tables import Challenge, MemberSession
from ._tokens import SESSION_PREFIX, IssuedToken, issue_token

__all__ = [
    "consume_challenge",
    "open_session",
    "revoke_session",
    "store_challenge",
]

_NONCE_ALPHABET = string.ascii_letters + string.digits


def store_challenge(
    db: Session, kind: str, *, now: int, ttl_s: int, value: str | None = None, member_id: str | None = None
) -> str:
    """Stores a challenge (by default a 22-character alphanumeric nonce, 128 bits) and returns it."""
    value = value or "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(22))
    db.add(Challenge(value=value, kind=kind, member_id=member_id, created_at=now, expires_at=now + ttl_s))
    db.flush()
    return value


def consume_challenge(db: Session, kind: str, value: str, *, now: int) -> Challenge:
    """Claims the challenge for this use; 410 when unknown, used, expired or of another kind."""
    result = db.execute(
        update(Challenge)
        .where(
            Challenge.value == value,
            Challenge.kind == kind,
            Challenge.used_at.is_(None),
            Challenge.expires_at > now,
        )
        .values(used_at=now)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise Gone(f"this {kind} challenge is unknown, used or expired: ask for a new one")
    row = db.get(Challenge, value)
    assert row is not None
    return row


def open_session(
    db: Session, member_id: str, method: str, *, now: int, ttl_s: int
) -> tuple[IssuedToken, int]:
    """A new session for ``member_id``: the token (shown once) and when it expires."""
    issued = issue_token(SESSION_PREFIX)
    expires = now + ttl_s
    db.add(
        MemberSession(
            id=issued.id,
            secret_hash=issued.digest,
            member_id=member_id,
            method=method,
            created_at=now,
            expires_at=expires,
        )
    )
    db.flush()
    return issued, expires


def revoke_session(db: Session, session_id: str, *, now: int) -> None:
    db.execute(
        update(MemberSession)
        .where(MemberSession.id == session_id, MemberSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
