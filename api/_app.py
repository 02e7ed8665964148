"""The app factory: ``create_app(settings)`` builds the FastAPI service, versioned under ``/v1``.

One router per resource (``api/routers``), each route's roles stated with :func:`api._auth.allow`, every
error an RFC 9457 problem (``application/problem+json``) with a stable ``type``, the request's id and, for
validation errors, each offending field. The request id is the caller's ``X-Request-Id`` when it is a
sane token, else a new one; every response carries it, and every log line written while the request is
served (``api/_logging.py``: a context variable the routes' threads inherit). Every request is counted and
timed for ``/metrics`` (``api/_metrics.py``), which also writes its access line.

The factory takes the parts the service runs on (database engine, chain, clock, limiter, custody) as
keyword arguments for tests and for ``loyalty run``; from the settings alone it builds them itself.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import PROBLEMS, ApiError, FieldError, InvalidRequest, NotFound
from ._idempotency import IdempotencyMiddleware
from ._logging import request_context
from ._metrics import Metrics, MetricsMiddleware
from ._ratelimit import RateLimiter
from ._services import Services
from ._settings import Settings

if TYPE_CHECKING:
    from web3 import Web3

    from ._coalition import Coalition
    from ._custody import Custody

__all__ = ["create_app"]

logger = logging.getLogger("api")

PROBLEM_JSON = "application/problem+json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
#: The largest request body taken (every body here is a small JSON object).
MAX_BODY_BYTES = 64 * 1024
#: web3 imports py_ecc, which raises the interpreter's recursion limit to 100000; at that depth a request
#: body of nested JSON arrays overflows the C stack and kills the worker instead of raising RecursionError.
#: The service needs no deep recursion: the app puts a safe limit back.
SAFE_RECURSION_LIMIT = 4000

DESCRIPTION = """\
The coalition's points ledger over HTTP: wallets, members, partners' positions and settlement statements,
and the audit trail, read from the SQL mirror of the on-chain ledger.

**Authentication.** `Authorization: Bearer <token>` with an API key (`lpk_...`: admin, partner or auditor)
or a member session (`lps_...`, from Sign-In with Ethereum or a passkey). Partner keys see only their own
partner's figures and members; auditor keys read everything and change nothing; member sessions read only
their own wallet.

**Errors** are RFC 9457 problems (`application/problem+json`): `type` is stable (`/problems/<slug>`, which
describes it), `request_id` identifies the request in the logs, `errors` names each invalid field.

**Pagination.** Lists are newest first, `{data, next_cursor}`; pass `cursor=<next_cursor>` for the next page.

**Figures** carry `as_of`: the mirror's block and the time live figures (balances, expiries) are computed for.

**Retrying writes.** Every POST takes an `Idempotency-Key` header (1 to 255 printable ASCII characters; use a
UUID v4): the same key with the same request answers the stored response, marked `Idempotent-Replayed: true`,
without doing anything again; the same key with another request is a 422; while the first request is still
in flight, a 409 with `Retry-After`. Keys are kept for at least 24 hours. Beyond the key, a partner's order
id, return id and engagement id are each used once: sending one again answers the operation it created.

**Writes reach the chain later.** A purchase, return, engagement, adjustment or redemption is committed as an
operation (`201`, `Location: /v1/operations/op_<n>`) before anything is sent; `GET /v1/operations/{id}`
follows it from `pending` or `accepted` to `confirmed` (with its transaction and ledger entry) or `failed`
(with a typed reason: `allowance-exhausted`, `partner-suspended`, `ledger-paused`, `consent-invalid`, ...).
"""


class RequestIdMiddleware:
    """Gives every request an id (``scope["state"]["request_id"]``) and echoes it as ``X-Request-Id``
    (plain ASGI: no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        with request_context(request_id):
            await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with a 413 problem before anything reads them (declared
    by ``Content-Length`` or counted as they stream in)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        body = (
            '{"type":"/problems/too-large","title":"Request body too large","status":413,'
            f'"detail":"request bodies are limited to {self.limit} bytes","instance":"{scope["path"]}",'
            f'"request_id":"{request_id}"}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or secrets.token_hex(8)


def problem(request: Request, error: ApiError) -> JSONResponse:
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": request.url.path,
        "request_id": _request_id(request),
        **error.extensions,
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers(), media_type=PROBLEM_JSON)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(request, exc)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(_field(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in exc.errors()]
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return problem(request, InvalidRequest(f"invalid request: {fields}", errors))


_HTTP_PROBLEMS = {405: "/problems/method-not-allowed"}


class _HttpProblem(ApiError):
    """Starlette's own errors (no such route, method not allowed) as problems."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self._status = status

    @property
    def type(self) -> str:
        return _HTTP_PROBLEMS.get(self._status, f"/problems/http-{self._status}")


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def _allowed_methods(request: Request) -> str | None:
    """Every method the API document lists for the request's path (Starlette's 405 names only those of the
    first route whose path matches: ``OPTIONS /v1/session`` would answer ``Allow: GET, HEAD`` without
    ``DELETE``); None for a path the document does not describe."""
    routes: list[tuple[re.Pattern[str], set[str]]] | None = getattr(request.app.state, "routes_allow", None)
    if routes is None:
        routes = []
        for template, operations in request.app.openapi()["paths"].items():
            parts = re.split(r"(\{[^/]+?\})", template)
            pattern = re.compile("".join("[^/]+" if p[:1] == "{" else re.escape(p) for p in parts))
            methods = {method.upper() for method in operations if method.upper() in _HTTP_METHODS}
            routes.append((pattern, methods | ({"HEAD"} if "GET" in methods else set())))
        request.app.state.routes_allow = routes
    allowed = {m for pattern, methods in routes if pattern.fullmatch(request.url.path) for m in methods}
    return ", ".join(sorted(allowed)) or None


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return problem(request, NotFound(f"no such endpoint: {request.method} {request.url.path}"))
    if exc.status_code == 400:  # a body FastAPI cannot decode (not UTF-8): as invalid as malformed JSON (422)
        detail = "the request body is not valid JSON"
        return problem(request, InvalidRequest(detail, [FieldError("body", detail)]))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    error = _HttpProblem(exc.status_code, str(exc.detail))
    body = {
        "type": error.type,
        "title": str(exc.detail),
        "status": exc.status_code,
        "detail": str(exc.detail),
        "instance": request.url.path,
        "request_id": _request_id(request),
    }
    return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=PROBLEM_JSON)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    with request_context(request_id):  # answered outside the middleware that set it
        logger.error("request %s failed: %s", request_id, type(exc).__name__, exc_info=exc)
    return problem(request, ApiError("the service failed; nothing was changed"))


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    contract: str | None = None,
    w3: Web3 | None = None,
    clock: Callable[[], float] | None = None,
    limiter: RateLimiter | None = None,
    custody: Custody | None = None,
    coalition: Coalition | None = None,
) -> FastAPI:
    """The service. Without ``engine`` it opens ``settings.database_url`` (and applies the migrations)."""
    from . import routers
    from ._db import migrate_all, service_engine

    settings = settings or Settings()
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)
    if engine is None:
        engine = service_engine(settings)
        migrate_all(engine)
    services = Services(
        settings=settings,
        engine=engine,
        contract=contract,
        w3=w3,
        limiter=limiter,
        custody=custody,
        clock=clock or time.time,
        coalition=coalition,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Routes run in anyio's thread pool. Its default of 40 threads only adds contention for the GIL and
        # the database here (the work is short and CPU-bound): a few threads per process serve more.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="Coalition loyalty ledger",
        version="1",
        description=DESCRIPTION,
        openapi_tags=routers.TAGS,
    )
    app.state.services = services
    app.state.metrics = metrics = Metrics(services)  # this app's own registry
    app.add_middleware(
        IdempotencyMiddleware,
        services=services,
        abandoned_after_s=settings.idempotency_abandoned_after_s,
    )  # inside the body limit: bodies it buffers
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # counts the refusals of the two inside it too
    app.add_middleware(RequestIdMiddleware)  # the outermost: every response (and log line) carries the id
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)
    for router in routers.ALL:
        app.include_router(router)

    @app.get("/problems/{slug}", include_in_schema=False, response_class=HTMLResponse)
    def describe_problem(slug: str) -> str:
        kind = PROBLEMS.get(slug)
        if kind is None:
            raise NotFound(f"no problem type {slug!r}")
        return f"<h1>{kind.title}</h1><p>HTTP {kind.status}</p><p>{kind.description}</p>"

    return app
