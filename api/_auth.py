"""Who is calling: API keys (admin, partner, auditor) and member sessions, as one :class:`Principal`.

Credentials come as ``Authorization: Bearer <token>`` (or, for member sessions from the pages, the
``loyalty_session`` cookie). An API key is ``lpk_<id>_<secret>``, a session ``lps_<id>_<secret>``
(:mod:`api._tokens`); an unknown, revoked or expired one is refused with 401 before anything else happens,
and a revoked key is refused from the next request on (nothing is cached). A key's last use is recorded
(at most once a minute, so reads do not turn into writes).

Roles and what they may do are decided in one place each: a route states the roles it admits with
:func:`allow` (401 for anonymous callers, 403 for the other roles), and scoped reads check
:meth:`Principal.may_see_partner` / :meth:`Principal.may_see_member`. A partner key never acts as a member:
member-only routes admit only ``member`` principals, which only a member's own sign-in creates.

Every authenticated request counts against its key's rate limit, every other one against its client's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select, update

from ._errors import Forbidden, Unauthenticated
from ._services import Services
from ._tables import ApiKey, Member, MemberSession
from ._tokens import API_KEY_PREFIX, SESSION_PREFIX, matches, parse_token

__all__ = [
    "BEARER",
    "ROLES",
    "SESSION_COOKIE",
    "Authenticated",
    "Caller",
    "Principal",
    "Role",
    "ServicesDep",
    "allow",
    "authenticate",
    "get_services",
]

Role = Literal["anonymous", "admin", "partner", "auditor", "member"]
ROLES: tuple[Role, ...] = ("admin", "partner", "auditor", "member")
SESSION_COOKIE = "loyalty_session"
#: seconds between two recordings of a key's last use
LAST_USE_RESOLUTION = 60
#: The bearer scheme as the API document states it, for the routes that need credentials (:func:`allow`).
#: It only declares: :func:`authenticate` reads and checks the credentials (the session cookie too).
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="an API key (lpk_...: admin, partner, auditor) or a member session (lps_...)",
    auto_error=False,
)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    #: an API key's id, or a session's
    credential_id: str | None = None
    #: a partner key's partner
    partner_id: int | None = None
    #: a member session's member and wallet (lower-case address)
    member_id: str | None = None
    address: str | None = None

    @property
    def sees_everything(self) -> bool:
        """Admin and auditor keys read every partner's and member's figures."""
        return self.role in ("admin", "auditor")

    def may_see_partner(self, partner_id: int) -> bool:
        return self.sees_everything or (self.role == "partner" and self.partner_id == partner_id)

    def may_see_member(self, member_id: str, partners: set[int]) -> bool:
        """``partners``: the partners the member is enrolled with."""
        if self.sees_everything:
            return True
        if self.role == "member":
            return self.member_id == member_id
        return self.role == "partner" and self.partner_id in partners


async def get_services(request: Request) -> Services:
    """The app's services (``async``: no I/O, so it runs on the event loop, not in a worker thread)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return token.strip()
    return request.cookies.get(SESSION_COOKIE)


#: Where a caller already authenticated for this request is kept (``scope["state"]``): the Idempotency-Key
#: middleware looks the credential up before the route runs, and the route need not do it again.
RESOLVED = "principal"


def authenticate(request: Request, services: ServicesDep) -> Principal:
    """The caller (``anonymous`` without credentials); counts the request against its rate limit."""
    token = _bearer(request)
    limiter = services.limiter
    assert limiter is not None
    resolved = request.scope.get("state", {}).get(RESOLVED)
    if token is not None and resolved is not None and resolved[0] == token:
        principal: Principal = resolved[1]
        if principal.role == "member":
            limiter.hit_client(request.client.host if request.client else "unknown")
        else:
            assert principal.credential_id is not None
            limiter.hit_key(principal.credential_id)
        return principal
    if token is None:
        limiter.hit_client(request.client.host if request.client else "unknown")
        return Principal("anonymous")
    parsed = parse_token(token)
    if parsed is None:
        raise Unauthenticated("the bearer token is not an API key or session token of this service")
    prefix, token_id = parsed
    now = services.now()
    if prefix == API_KEY_PREFIX:
        principal = _api_key(services, token, token_id, now)
        limiter.hit_key(token_id)
        return principal
    if prefix == SESSION_PREFIX:
        principal = _member_session(services, token, token_id, now)
        limiter.hit_client(request.client.host if request.client else "unknown")
        return principal
    raise Unauthenticated("the bearer token is not an API key or session token of this service")


# Every request reads its credential: prebuilt statements (a tenth of the cost of building one per call).
_KEY = select(
    ApiKey.secret_hash, ApiKey.role, ApiKey.partner_id, ApiKey.revoked_at, ApiKey.last_used_at
).where(ApiKey.id == bindparam("id"))
_KEY_USED = update(ApiKey).where(ApiKey.id == bindparam("key_id")).values(last_used_at=bindparam("now"))
_SESSION = (
    select(
        MemberSession.secret_hash,
        MemberSession.revoked_at,
        MemberSession.expires_at,
        Member.id,
        Member.address,
    )
    .join(Member, Member.id == MemberSession.member_id)
    .where(MemberSession.id == bindparam("id"))
)


def _api_key(services: Services, token: str, token_id: str, now: int) -> Principal:
    with services.engine.connect() as conn:
        key = conn.execute(_KEY, {"id": token_id}).first()
        if key is None or not matches(token, key.secret_hash):
            raise Unauthenticated("unknown API key")
        if key.revoked_at is not None and key.revoked_at <= now:
            raise Unauthenticated("this API key was revoked")
        if key.last_used_at is None or now - key.last_used_at >= LAST_USE_RESOLUTION:
            conn.execute(_KEY_USED, {"key_id": token_id, "now": now})
            conn.commit()
        role: Role = key.role
        return Principal(role, credential_id=token_id, partner_id=key.partner_id)


def _member_session(services: Services, token: str, token_id: str, now: int) -> Principal:
    with services.engine.connect() as conn:
        session = conn.execute(_SESSION, {"id": token_id}).first()
    if session is None or not matches(token, session.secret_hash):
        raise Unauthenticated("unknown session")
    if session.revoked_at is not None:
        raise Unauthenticated("this session was signed out")
    if session.expires_at <= now:
        raise Unauthenticated("this session has expired; sign in again")
    return Principal("member", credential_id=token_id, member_id=session.id, address=session.address)


Caller = Annotated[Principal, Depends(authenticate)]


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only ``roles``: anonymous callers get 401, other roles 403. The route's
    document names the bearer scheme (:data:`BEARER`) as its security requirement."""

    async def check(  # no I/O: on the event loop, not a worker thread
        principal: Caller, _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> Principal:
        if principal.role in roles:
            return principal
        if principal.role == "anonymous":
            raise Unauthenticated("this endpoint needs credentials")
        raise Forbidden(f"a {principal.role} may not do this (allowed: {', '.join(roles)})")

    return check


#: Any authenticated caller (anonymous callers get 401), declared as needing the bearer scheme.
Authenticated = Annotated[Principal, Depends(allow(*ROLES))]
