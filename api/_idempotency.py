"""``Idempotency-Key`` on every POST, with Stripe's semantics: a caller's key runs its request at most once.

:class:`IdempotencyMiddleware` (plain ASGI, inside the request-id and body-limit middlewares) handles every
POST that carries the header from an authenticated caller, whatever route it reaches, routes added later
included. The key's scope is the caller: the API key's id, or the member for a member session (any of the
member's sessions; key ids and member ids never collide). For ``(caller, key)``::

    no record, or an expired one    an ``in_flight`` record is committed, then the route runs; its response
                                    is stored (``done``) before it is sent
    done, same request              the stored response (status, body, the headers worth replaying), with
                                    ``Idempotent-Replayed: true``; the route does not run again
    another request                 422 ``idempotency-key-reused`` (method, path with query, or body differ)
    in flight                       409 ``idempotency-key-in-use`` with ``Retry-After: 1``
    in flight for ABANDONED_AFTER_S the process that took it is taken to have died: the next request with
                                    the same key takes the record over and runs the route (the write path's
                                    natural keys make running it again safe)

Two concurrent first requests race on the table's primary key: one INSERT commits, the other sees the
record (409). Taking a record over is an UPDATE conditional on the ``created_at`` its taker read, which
serves as the lease: a request only stores or releases the record it holds (a slow request whose record
was taken over stores nothing). The same on SQLite and PostgreSQL.

**Which responses are kept.** Stripe keeps every result except those of requests refused before they
were executed. Here: every 2xx-4xx response of the route is kept and replayed (a 404, a 410, a 422 for an
invalid body: the same request gets the same answer), except

- 401, 403, 429: the route's authentication, role check or rate limit refused the request before it
  ran (and an anonymous or failed authentication is never recorded at all, see below);
- 409: the request conflicted with the current state, which may change: "try again";
- 5xx and exceptions: the service failed and changed nothing.

Those release the key (the ``in_flight`` record is deleted): a retry with it runs the route again.

**Not covered**: other methods; POSTs without the header; POSTs without valid credentials (anonymous or
refused ones: the header is ignored and the route answers as it would, 401 for a protected route; the
public sign-in routes have no caller to scope a key to, and their challenges are single-use anyway). A
malformed key (not 1-255 printable ASCII characters, or the header twice) is a 422 ``invalid-request``
whoever sends it, before anything else is looked at.

**What is hashed.** ``request_hash`` is SHA-256 over the method, the path with its query string, and the
body's raw bytes: a retry must send the same bytes (a retrying client does); a re-serialised body with
its members in another order is another request.

**At rest.** Responses can carry one-time secrets that the service otherwise keeps only as digests (a
new API key's token, a redemption code). So the record holds the key's SHA-256 (not the key) and the
response body encrypted with AES-256-GCM under a key derived from the caller and the Idempotency-Key
itself: a copy of the database reveals a stored response only to someone who knows or guesses the key.
Clients should use random keys (a UUID v4), as Stripe advises. The replayed headers are an allowlist
(:data:`REPLAYED_HEADERS`: ``Content-Type``, ``Location`` and the like, never ``Set-Cookie``).

**The caller** is found the way :mod:`api._auth` finds it (the same credential lookups), before the route
runs, but without counting the request against a rate limit (the route's own authentication counts it)
and without a second last-use write (one a minute at most). Records live ``settings.idempotency_ttl_s``
(at least a day); :func:`purge_expired` deletes the expired ones (a scheduled job), and a request with an
expired record's key replaces it. Times are the services' clock (``services.now()``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast

from anyio import CancelScope, to_thread
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import ColumnElement, CursorResult, and_, bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._auth import RESOLVED, Principal, _api_key, _bearer, _member_session
from ._errors import (
    ApiError,
    FieldError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    Unauthenticated,
)
from ._services import Services
from ._tables import IdempotencyRecord
from ._tokens import API_KEY_PREFIX, SESSION_PREFIX, parse_token

__all__ = [
    "ABANDONED_AFTER_S",
    "HEADER",
    "RELEASED_STATUSES",
    "REPLAYED_HEADER",
    "REPLAYED_HEADERS",
    "IdempotencyMiddleware",
    "purge_expired",
    "request_hash",
]

HEADER = "Idempotency-Key"
#: Marks a replayed response.
REPLAYED_HEADER = "Idempotent-Replayed"
#: An ``in_flight`` record older than this (seconds) was left by a process that died: it may be taken over.
ABANDONED_AFTER_S = 60
#: The response headers stored and replayed (lower case); the rest (``Set-Cookie`` above all) are not.
REPLAYED_HEADERS = frozenset(
    {
        "cache-control",
        "content-language",
        "content-location",
        "content-type",
        "etag",
        "last-modified",
        "link",
        "location",
    }
)
#: Statuses (below 500) whose response is not kept: the key is released (see the module docstring).
RELEASED_STATUSES = frozenset({401, 403, 409, 429})
PROBLEM_JSON = "application/problem+json"

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_IN_FLIGHT, _DONE = "in_flight", "done"
_HEADER_FIELD = "header.idempotency-key"


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """SHA-256 over the method, the path with its query string and the raw body."""
    return hashlib.sha256(b"%s\0%s\0%s" % (method.encode(), path.encode("latin-1"), body)).digest()


def purge_expired(session: Session, now: int) -> int:
    """Deletes the records expired at ``now`` (done or abandoned); how many were deleted."""
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
    return cast(CursorResult[Any], result).rowcount


# ---------------------------------------------------------------------------------------- at rest


def _key_digest(key: str) -> str:
    """What the record stores instead of the key."""
    return hashlib.sha256(b"loyalty idempotency key\0" + key.encode()).hexdigest()


def _cipher(principal: str, key: str) -> AESGCM:
    return AESGCM(hmac.digest(key.encode(), b"loyalty idempotency response\0" + principal.encode(), "sha256"))


def _seal(principal: str, key: str, aad: bytes, body: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + _cipher(principal, key).encrypt(nonce, body, aad)


def _open(principal: str, key: str, aad: bytes, sealed: bytes) -> bytes:
    return _cipher(principal, key).decrypt(sealed[:12], sealed[12:], aad)


# ---------------------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class _Request:
    principal: str
    #: the Idempotency-Key as sent (never stored)
    key: str
    method: str
    path: str
    hash: bytes

    @property
    def digest(self) -> str:
        return _key_digest(self.key)

    @property
    def aad(self) -> bytes:
        return b"%s\0%s\0%s" % (self.principal.encode(), self.digest.encode(), self.hash)


@dataclass(frozen=True, slots=True)
class _Claim:
    outcome: Literal["run", "replay", "in_flight", "reused"]
    #: run: the record's ``created_at``, the lease its holder stores or releases under
    lease: int = 0
    status: int = 0
    headers: str = "{}"
    body: bytes = b""


#: Every keyed POST runs these two: prebuilt (a tenth of the cost of building a statement per call).
_INSERT = insert(IdempotencyRecord)
_STORE = (
    update(IdempotencyRecord)
    .where(
        IdempotencyRecord.principal == bindparam("b_principal"),
        IdempotencyRecord.key == bindparam("b_key"),
        IdempotencyRecord.state == _IN_FLIGHT,
        IdempotencyRecord.created_at == bindparam("b_lease"),
    )
    .values(
        state=_DONE,
        status_code=bindparam("b_status"),
        response_headers=bindparam("b_headers"),
        response_body=bindparam("b_body"),
    )
)


def _claim(services: Services, request: _Request, now: int, abandoned_after: int) -> _Claim:
    """Inserts the ``in_flight`` record, takes an expired or abandoned one over, or says what is there."""
    ttl = services.settings.idempotency_ttl_s
    fresh = {
        "method": request.method,
        "path": request.path[:300],
        "request_hash": request.hash,
        "state": _IN_FLIGHT,
        "status_code": None,
        "response_headers": None,
        "response_body": None,
        "created_at": now,
        "expires_at": now + ttl,
    }
    for _ in range(3):  # a lost race (a concurrent insert, delete or take-over) is looked at again
        try:  # the usual case, a new key: one INSERT (a prebuilt statement, no unit of work)
            with services.engine.begin() as conn:
                conn.execute(_INSERT, {"principal": request.principal, "key": request.digest, **fresh})
            return _Claim("run", lease=now)
        except IntegrityError:
            pass
        with Session(services.engine) as db:
            record = db.get(IdempotencyRecord, (request.principal, request.digest))
            if record is None:  # released or purged meanwhile
                continue
            expired = record.expires_at <= now
            if not expired and record.request_hash != request.hash:
                return _Claim("reused")
            if not expired and record.state == _DONE:
                assert record.status_code is not None and record.response_body is not None
                return _Claim(
                    "replay",
                    status=record.status_code,
                    headers=record.response_headers or "{}",
                    body=_open(request.principal, request.key, request.aad, record.response_body),
                )
            if not expired and now - record.created_at < abandoned_after:
                return _Claim("in_flight")
            taken = db.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.principal == request.principal,
                    IdempotencyRecord.key == request.digest,
                    IdempotencyRecord.state == record.state,
                    IdempotencyRecord.created_at == record.created_at,
                )
                .values(**fresh)
            )
            db.commit()
            if cast(CursorResult[Any], taken).rowcount == 1:
                return _Claim("run", lease=now)
    return _Claim("in_flight")


def _held(request: _Request, lease: int) -> ColumnElement[bool]:
    """The record ``request`` holds under ``lease`` (not one taken over since)."""
    return and_(
        IdempotencyRecord.principal == request.principal,
        IdempotencyRecord.key == request.digest,
        IdempotencyRecord.state == _IN_FLIGHT,
        IdempotencyRecord.created_at == lease,
    )


def _store(services: Services, request: _Request, lease: int, start: Message, body: bytes) -> None:
    headers: dict[str, str] = {}
    for name, value in start.get("headers", []):
        lowered = name.decode("latin-1").lower()
        if lowered in REPLAYED_HEADERS:
            text = value.decode("latin-1")
            headers[lowered] = f"{headers[lowered]}, {text}" if lowered in headers else text
    with services.engine.begin() as conn:
        conn.execute(
            _STORE,
            {
                "b_principal": request.principal,
                "b_key": request.digest,
                "b_lease": lease,
                "b_status": start["status"],
                "b_headers": json.dumps(headers, sort_keys=True),
                "b_body": _seal(request.principal, request.key, request.aad, body),
            },
        )


def _release(services: Services, request: _Request, lease: int) -> None:
    with Session(services.engine) as db, db.begin():
        db.execute(delete(IdempotencyRecord).where(_held(request, lease)))


def _principal(services: Services, scope: Scope) -> tuple[str, Principal] | None:
    """The caller's bearer token and principal (its scope for keys: an API key's id, a session's
    member), or None for a caller without valid credentials. :func:`api._auth.authenticate`'s lookups,
    without counting a rate limit (the route counts it, with the principal found here)."""
    try:
        token = _bearer(Request(scope))
        parsed = None if token is None else parse_token(token)
        if token is None or parsed is None:
            return None
        prefix, token_id = parsed
        if prefix == API_KEY_PREFIX:
            return token, _api_key(services, token, token_id, services.now())
        if prefix == SESSION_PREFIX:
            return token, _member_session(services, token, token_id, services.now())
    except Unauthenticated:
        return None
    return None


def _scope_of(principal: Principal) -> str:
    scope = principal.member_id if principal.role == "member" else principal.credential_id
    assert scope is not None
    return scope


def _authenticate_and_claim(
    services: Services, scope: Scope, key: str, path: str, digest: bytes, abandoned_after: int
) -> tuple[_Request, _Claim] | None:
    """The caller, then the key's claim: one trip to a worker thread for both (None: no valid caller)."""
    found = _principal(services, scope)
    if found is None:
        return None
    scope.setdefault("state", {})[RESOLVED] = found
    request = _Request(_scope_of(found[1]), key, "POST", path, digest)
    return request, _claim(services, request, services.now(), abandoned_after)


# ---------------------------------------------------------------------------------------- the middleware


class IdempotencyMiddleware:
    """Stripe's ``Idempotency-Key`` for every POST (see the module docstring). Add it inside the request-id
    and body-limit middlewares: ``app.add_middleware(IdempotencyMiddleware, services=services)`` before
    those."""

    def __init__(
        self, app: ASGIApp, *, services: Services, abandoned_after_s: int = ABANDONED_AFTER_S
    ) -> None:
        self.app = app
        self.services = services
        self.abandoned_after_s = abandoned_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        keys = [v for k, v in scope["headers"] if k == b"idempotency-key"]
        if not keys:
            await self.app(scope, receive, send)
            return
        key = keys[0].decode("latin-1")
        if len(keys) > 1 or not _KEY.match(key):  # malformed: refused whoever sends it
            detail = f"{HEADER} must be one value of 1 to 255 printable ASCII characters"
            await _problem(scope, receive, send, InvalidRequest(detail, [FieldError(_HEADER_FIELD, detail)]))
            return
        body = await _read_body(receive)
        if body is None:  # the client went away before sending its body
            return
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"] + (f"?{query}" if query else "")
        claimed = await to_thread.run_sync(
            _authenticate_and_claim,
            self.services,
            scope,
            key,
            path,
            request_hash("POST", path, body),
            self.abandoned_after_s,
        )
        if claimed is None:  # no valid caller: the route answers as it would (its body given back)
            await self.app(scope, _replaying(body, receive), send)
            return
        request, claim = claimed
        if claim.outcome == "replay":
            await _replay(send, claim)
        elif claim.outcome == "reused":
            detail = f"this {HEADER} was used for another request; use a new key for a new request"
            await _problem(
                scope, receive, send, IdempotencyKeyReused(detail, [FieldError(_HEADER_FIELD, detail)])
            )
        elif claim.outcome == "in_flight":
            detail = f"a request with this {HEADER} is still in progress; retry shortly"
            await _problem(scope, receive, send, IdempotencyKeyInUse(detail))
        else:
            await self._run(scope, receive, send, body, request, claim.lease)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, request: _Request, lease: int
    ) -> None:
        """Runs the route on the buffered body; keeps its response (or releases the key) before sending."""
        replay_body = _replaying(body, receive)
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            with CancelScope(shield=True):
                await to_thread.run_sync(_release, self.services, request, lease)
            raise
        if start is None:  # the route sent nothing (the client went away): nothing to keep
            with CancelScope(shield=True):
                await to_thread.run_sync(_release, self.services, request, lease)
            return
        response = b"".join(chunks)
        status = int(start["status"])
        with CancelScope(shield=True):
            if status < 500 and status not in RELEASED_STATUSES:
                await to_thread.run_sync(_store, self.services, request, lease, start, response)
            else:
                await to_thread.run_sync(_release, self.services, request, lease)
        await send(start)
        await send({"type": "http.response.body", "body": response})


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read ``body`` first, then what the client sends next."""
    given = False

    async def replay_body() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_body


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _replay(send: Send, claim: _Claim) -> None:
    headers: dict[str, str] = json.loads(claim.headers)
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    raw += [(b"content-length", str(len(claim.body)).encode()), (REPLAYED_HEADER.lower().encode(), b"true")]
    await send({"type": "http.response.start", "status": claim.status, "headers": raw})
    await send({"type": "http.response.body", "body": claim.body})


async def _problem(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    """``error`` as the app renders problems (``api._app.problem``); this runs outside its handlers."""
    content = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": scope["path"],
        "request_id": scope.get("state", {}).get("request_id", ""),
        **error.extensions,
    }
    response = JSONResponse(
        content, status_code=error.status, headers=error.headers(), media_type=PROBLEM_JSON
    )
    await response(scope, receive, send)
