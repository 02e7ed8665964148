"""API keys: create (the token shown once), list, rotate, revoke. Used by ``loyalty apikey`` and the admin
endpoints alike; each takes an open session (the caller commits).

A partner key is scoped to one partner; admin and auditor keys to none. Rotation issues a new key with the
same role and scope, linked to the old one, and revokes the old one at once (``grace_s`` keeps it working
for a while, for a deployment that swaps keys without downtime). Revocation is immediate: the next request
with the key is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ._errors import Conflict, FieldError, InvalidRequest, NotFound
from ._tables import ApiKey
from ._tokens import API_KEY_PREFIX, issue_token

__all__ = ["KEY_ROLES", "CreatedKey", "KeyRole", "create_key", "list_keys", "revoke_key", "rotate_key"]

KeyRole = Literal["admin", "partner", "auditor"]
KEY_ROLES: tuple[KeyRole, ...] = ("admin", "partner", "auditor")


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    #: the token, to show once
    token: str

    def __repr__(self) -> str:
        return f"CreatedKey(id={self.key.id!r}, role={self.key.role!r})"


def create_key(
    db: Session,
    *,
    role: str,
    name: str,
    partner_id: int | None,
    now: int,
    created_by: str | None = None,
    rotated_from: str | None = None,
) -> CreatedKey:
    if role not in KEY_ROLES:
        raise InvalidRequest(f"unknown role {role!r}", [FieldError("body.role", f"one of {KEY_ROLES}")])
    if (role == "partner") != (partner_id is not None):
        message = (
            "a partner key needs partner_id" if role == "partner" else f"an {role} key takes no partner_id"
        )
        raise InvalidRequest(message, [FieldError("body.partner_id", message)])
    issued = issue_token(API_KEY_PREFIX)
    key = ApiKey(
        id=issued.id,
        role=role,
        partner_id=partner_id,
        name=name,
        secret_hash=issued.digest,
        created_at=now,
        created_by=created_by,
        rotated_from=rotated_from,
    )
    db.add(key)
    db.flush()
    return CreatedKey(key, issued.token)


def list_keys(db: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(db.scalars(query))


def _live_key(db: Session, key_id: str, now: int) -> ApiKey:
    key = db.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is not None and key.revoked_at <= now:
        raise Conflict(f"API key {key_id} is revoked already")
    return key


def revoke_key(db: Session, key_id: str, *, now: int) -> ApiKey:
    key = _live_key(db, key_id, now)
    key.revoked_at = now
    db.flush()
    return key


def rotate_key(
    db: Session, key_id: str, *, now: int, grace_s: int = 0, created_by: str | None = None
) -> CreatedKey:
    old = _live_key(db, key_id, now)
    new = create_key(
        db,
        role=old.role,
        name=old.name,
        partner_id=old.partner_id,
        now=now,
        created_by=created_by,
        rotated_from=old.id,
    )
    old.revoked_at = now + grace_s
    db.flush()
    return new
