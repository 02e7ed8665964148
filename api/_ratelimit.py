"""Rate limits per API key and per client, shared by every replica through Redis.

Two budgets, each in the ``limits`` library's notation (``"600/minute"``, ``"10/second;600/minute"``):

- ``per_key``: requests authenticated by a partner's API key, counted by the key's id;
- ``per_client``: everything else (sign-in, member sessions, anonymous reads), counted by client address.

A request over budget raises :class:`api._errors.RateLimited` (429) whose ``retry_after`` is the number of
whole seconds until the oldest counted request leaves the window, at least 1 and at most the window.

**Strategy.** A moving window (``limits.strategies.MovingWindowRateLimiter``): each allowed request's time
is kept for one window and the budget is exact at every instant, so a client cannot fire twice its budget
across a fixed window's boundary. Its cost is one list of at most ``amount`` timestamps per key or client,
small for budgets of this size. Several limits in one string are checked in order, and a request refused
by one still counts against those checked before it (hammering after a refusal is not free).

**Storage.** With ``redis_url`` the counters live in Redis, updated by one atomic Lua script per check, so
every replica draws on the same budget; keys are prefixed with ``namespace`` (``loyalty:LIMITER/...``),
so several services or test runs can share one Redis. The timestamps come from the replicas' clocks,
which should be NTP-synchronised (as for anything else on the chain). Without ``redis_url`` the counters
are in this process's memory.

**When Redis fails** (down, unreachable, timing out after 250 ms) the limiter does not fail the request:
it logs a warning (the URL's password redacted) and counts in memory for the next 5 seconds before it
tries Redis again. During an outage each replica enforces the budget on its own, so a client can get up
to ``replicas x budget``: a degraded limit rather than an outage of the whole API, or no limit at all.

Errors: :class:`api._errors.RateLimited` (429) for a request over budget; :class:`RateLimitConfigError`
(an ``ApiError`` and a ``ValueError``) when a limit string or the Redis URL cannot be used.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from ._errors import ApiError, RateLimited

__all__ = ["RateLimitConfigError", "RateLimiter"]

logger = logging.getLogger(__name__)

#: How long the limiter counts in memory after a Redis failure before it tries Redis again (seconds).
_SHARED_RETRY_AFTER = 5.0
#: Redis connect and read timeout: a slow Redis must not hold requests up (seconds).
_REDIS_TIMEOUT = 0.25
_KEY = "key"
_CLIENT = "client"


class RateLimitConfigError(ApiError, ValueError):
    """A limit string or the Redis URL given to :class:`RateLimiter` cannot be used."""


def _parse(text: str, name: str) -> tuple[RateLimitItem, ...]:
    try:
        items = tuple(parse_many(text))
    except ValueError:
        raise RateLimitConfigError(
            f"{name} is not a rate limit like '600/minute' or '10/second;600/minute': {text!r}"
        ) from None
    if not items or any(item.amount < 1 for item in items):
        raise RateLimitConfigError(f"{name} must allow at least one request per window: {text!r}")
    return items


def _redact(url: str) -> str:
    """``url`` without the password of its user-info part (safe for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _MemoryStorage(MemoryStorage):
    """``limits``' memory storage, whose clean-up of old entries runs at most once a second.

    The library starts a thread (a 10 ms ``threading.Timer``) on every hit when its last one has ended,
    which on a busy server is a thread start per request (a few milliseconds each). The clean-up only frees
    memory: a moving window counts by each entry's timestamp, so the limits stay exact."""

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the private method (name-mangled)
        if not self.timer.is_alive():
            self.timer = threading.Timer(1.0, self._MemoryStorage__expire_events)  # type: ignore[attr-defined]
            self.timer.daemon = True
            self.timer.start()


class RateLimiter:
    """Counts requests per API key and per client; raises :class:`RateLimited` past the budget.

    Thread-safe: the memory storage locks per key, and Redis runs each check as one atomic script.
    """

    def __init__(
        self,
        *,
        per_key: str = "600/minute",
        per_client: str = "120/minute",
        redis_url: str | None = None,
        namespace: str = "loyalty",
    ) -> None:
        self._per_key = _parse(per_key, "per_key")
        self._per_client = _parse(per_client, "per_client")
        if not namespace:
            raise RateLimitConfigError("the namespace must not be empty")
        self._memory = _MemoryStorage()
        self._local = MovingWindowRateLimiter(self._memory)
        self._shared: MovingWindowRateLimiter | None = None
        self._where = "memory"
        if redis_url is not None:
            self._where = _redact(redis_url)
            try:
                storage = storage_from_string(
                    redis_url,
                    key_prefix=namespace,
                    wrap_exceptions=True,
                    socket_connect_timeout=_REDIS_TIMEOUT,
                    socket_timeout=_REDIS_TIMEOUT,
                )
            except (ConfigurationError, ValueError) as exc:
                raise RateLimitConfigError(
                    f"cannot use {self._where} for rate limits ({type(exc).__name__})"
                ) from None
            self._shared = MovingWindowRateLimiter(storage)
        self._lock = threading.Lock()
        self._shared_down_until = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter({self._where})"

    def hit_key(self, key_id: str) -> None:
        """Counts one request of the API key ``key_id``; :class:`RateLimited` if over its budget."""
        self._hit(self._per_key, _KEY, key_id, "this API key")

    def hit_client(self, client: str) -> None:
        """Counts one request from ``client`` (its address); :class:`RateLimited` if over its budget."""
        self._hit(self._per_client, _CLIENT, client, "this client")

    def reset(self) -> None:
        """Forgets every count of this namespace (in Redis too): for tests."""
        self._memory.reset()
        if self._shared is not None:
            self._shared.storage.reset()

    # -- internals

    def _hit(self, items: tuple[RateLimitItem, ...], kind: str, identity: str, who: str) -> None:
        for item in items:
            limiter = self._limiter()
            try:
                allowed = limiter.hit(item, kind, identity)
                stats = None if allowed else limiter.get_window_stats(item, kind, identity)
            except StorageError as exc:
                self._shared_failed(exc)
                limiter = self._local
                allowed = limiter.hit(item, kind, identity)
                stats = None if allowed else limiter.get_window_stats(item, kind, identity)
            if stats is not None:
                window = item.get_expiry()
                retry_after = min(max(math.ceil(stats.reset_time - time.time()), 1), window)
                raise RateLimited(f"too many requests from {who}; the limit is {item}", retry_after)

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared is None or time.monotonic() < self._shared_down_until:
            return self._local
        return self._shared

    def _shared_failed(self, exc: StorageError) -> None:
        with self._lock:
            first = time.monotonic() >= self._shared_down_until
            self._shared_down_until = time.monotonic() + _SHARED_RETRY_AFTER
        if first:
            logger.warning(
                "rate limits: %s failed (%s); counting in memory for %.0f s",
                self._where,
                type(exc.storage_error).__name__,
                _SHARED_RETRY_AFTER,
            )
