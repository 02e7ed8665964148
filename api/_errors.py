"""The service's errors, each an RFC 9457 problem (``application/problem+json``) with a stable ``type``.

Every error raised on purpose by ``api`` derives from :class:`ApiError`; its class names the problem::

    ApiError                      500 internal           (never raised on purpose; the fallback)
    ├── InvalidRequest            422 invalid-request    a field fails validation; ``errors`` names each
    │   └── IdempotencyKeyReused  422 idempotency-key-reused  the Idempotency-Key came with another request
    ├── Unauthenticated           401 unauthenticated    no credentials, or unknown, revoked or expired ones
    │   ├── SignInFailed          401 sign-in-failed     a SIWE message or passkey assertion was refused
    │   │   ├── SiweError         (_siwe)              ``reason``: which check failed
    │   │   └── PasskeyError      (_passkeys)          ``reason``: which check failed
    ├── Forbidden                 403 forbidden          authenticated, but not allowed this
    ├── NotFound                  404 not-found          no such resource (or not one the caller may see)
    ├── MethodNotAllowed          405 method-not-allowed the path does not take this method
    ├── Conflict                  409 conflict           the request contradicts the current state
    │   ├── IdempotencyKeyInUse   409 idempotency-key-in-use  its first request is still running
    │   └── InsufficientPoints    409 insufficient-points     the member cannot spend that many points
    ├── Gone                      410 gone               a one-time code or challenge already used or expired
    ├── RateLimited               429 rate-limited       ``retry_after`` seconds
    └── NotReady                  503 not-ready          the mirror is unreachable or lags the chain

A problem's ``type`` is ``/problems/<slug>``, resolved against the service's base URL; the service answers it
with the problem's description.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "PROBLEMS",
    "ApiError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "Gone",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "InsufficientPoints",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "NotReady",
    "RateLimited",
    "SignInFailed",
    "Unauthenticated",
]


class ApiError(Exception):
    """Root of every error the service raises on purpose; rendered as an RFC 9457 problem."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    #: what the problem means, served at ``/problems/<slug>``
    description: ClassVar[str] = (
        "The service failed; nothing was changed. The request id identifies it in the logs."
    )

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        #: extra members of the problem object (``errors``, ``reason``, ``retry_after``, ...)
        self.extensions = extensions

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def headers(self) -> dict[str, str]:
        return {}


class FieldError(dict[str, str]):
    """One failed field of a request: ``{"field": "body.amount", "message": "..."}``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field=field, message=message)


class InvalidRequest(ApiError):
    status = 422
    slug = "invalid-request"
    title = "Invalid request"
    description = (
        "A parameter or body field failed validation, or the body named a field the endpoint does not take. "
        "``errors`` lists each offending field (``body.x``, ``query.limit``, ``path.address``) with the "
        "reason. "
        "Nothing was changed."
    )

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail, errors=errors)
        self.errors = errors


class IdempotencyKeyReused(InvalidRequest):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"
    description = (
        "This ``Idempotency-Key`` was used with another request (method, path or body) within the time keys "
        "are kept (at least 24 hours). Use a new key for a new request. Nothing was changed."
    )


class Unauthenticated(ApiError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"
    description = (
        "The request carries no credentials, or an API key or session that is unknown, revoked or expired. "
        "Send ``Authorization: Bearer <api key or session token>``."
    )

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="loyalty"'}


class SignInFailed(Unauthenticated):
    slug = "sign-in-failed"
    title = "Sign-in refused"
    description = (
        "A Sign-In with Ethereum message or a passkey assertion was refused; ``reason`` says which check "
        "failed (nonce, domain, chain id, expiry, signer, origin, RP id, counter, ...). No session was "
        "created."
    )

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.extensions["reason"] = reason
        self.reason = reason


class Forbidden(ApiError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"
    description = "The credentials are valid, but their role or scope does not allow this request."


class NotFound(ApiError):
    status = 404
    slug = "not-found"
    title = "Not found"
    description = "No such resource, or none the caller may see (a partner sees only its own members)."


class MethodNotAllowed(ApiError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"
    description = "The path exists but not with this method; ``Allow`` lists the methods it takes."


class Conflict(ApiError):
    status = 409
    slug = "conflict"
    title = "Conflict"
    description = "The request contradicts the current state (a customer id already enrolled, a key revoked)."


class IdempotencyKeyInUse(Conflict):
    slug = "idempotency-key-in-use"
    title = "Idempotency key in use"
    description = (
        "A request with this ``Idempotency-Key`` is still being processed. Retry after ``Retry-After`` "
        "seconds: the same request then gets the first one's response."
    )

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=1)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class InsufficientPoints(Conflict):
    """The member's spendable points do not cover the amount (``needed``, ``spendable``)."""

    slug = "insufficient-points"
    title = "Insufficient points"
    description = (
        "The member's live balance, less what their redemptions not yet on the ledger take, does not cover "
        "the amount. ``needed`` and ``spendable`` give both. Nothing was changed."
    )

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"the member can spend {available} points, {needed} were asked",
            needed=needed,
            spendable=available,
        )


class Gone(ApiError):
    status = 410
    slug = "gone"
    title = "Used or expired"
    description = "A one-time code, nonce or challenge was already used or has expired; ask for a new one."


class RateLimited(ApiError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"
    description = "The key or client exceeded its rate limit; retry after ``Retry-After`` seconds."

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotReady(ApiError):
    status = 503
    slug = "not-ready"
    title = "Not ready"
    description = "The database is unreachable, or the mirror has no ledger yet or lags the chain too far."


#: Every problem type the service can answer with, by slug (served at ``/problems/<slug>``).
PROBLEMS: dict[str, type[ApiError]] = {
    cls.slug: cls
    for cls in (
        ApiError,
        InvalidRequest,
        IdempotencyKeyReused,
        Unauthenticated,
        SignInFailed,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        IdempotencyKeyInUse,
        InsufficientPoints,
        Gone,
        RateLimited,
        NotReady,
    )
}
