"""Rate limits: budgets per API key and per client, in memory and shared by replicas through a real Redis.

The Redis tests use ``LOYALTY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) and skip only if
nothing answers there; CI runs a Redis server. Each test gets a random namespace, so runs never collide.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import redis

from api._errors import ApiError, RateLimited
from api._ratelimit import RateLimitConfigError, RateLimiter

REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: Nothing listens on port 1: connections are refused at once.
DEAD_REDIS_URL = "redis://:hunter2-{secret}@127.0.0.1:1/0"


def exhaust(hit: Callable[[], None], budget: int) -> None:
    """Spends ``budget`` requests that must all be allowed."""
    for _ in range(budget):
        hit()


def refused(hit: Callable[[], None]) -> RateLimited:
    """The 429 of one request that must be refused."""
    with pytest.raises(RateLimited) as caught:
        hit()
    return caught.value


# --------------------------------------------------------------------------- in memory


def test_a_key_gets_its_budget_then_429_with_a_retry_after_within_the_window() -> None:
    limiter = RateLimiter(per_key="5/minute")
    exhaust(lambda: limiter.hit_key("key-a"), 5)
    error = refused(lambda: limiter.hit_key("key-a"))
    assert isinstance(error, ApiError)
    assert error.status == 429
    assert 1 <= error.retry_after <= 60
    assert error.headers() == {"Retry-After": str(error.retry_after)}
    assert error.extensions["retry_after"] == error.retry_after
    assert "5 per 1 minute" in error.detail
    assert "key-a" not in error.detail  # the problem does not echo identifiers
    # still refused: a refused request does not free anything
    assert refused(lambda: limiter.hit_key("key-a")).retry_after <= 60


def test_a_client_gets_its_budget_then_429() -> None:
    limiter = RateLimiter(per_client="3/minute")
    exhaust(lambda: limiter.hit_client("203.0.113.7"), 3)
    error = refused(lambda: limiter.hit_client("203.0.113.7"))
    assert 1 <= error.retry_after <= 60


def test_keys_clients_and_limiters_do_not_share_budgets() -> None:
    limiter = RateLimiter(per_key="2/minute", per_client="2/minute")
    exhaust(lambda: limiter.hit_key("key-a"), 2)
    refused(lambda: limiter.hit_key("key-a"))
    exhaust(lambda: limiter.hit_key("key-b"), 2)  # another key
    exhaust(lambda: limiter.hit_client("key-a"), 2)  # a client of the same name: another budget
    refused(lambda: limiter.hit_client("key-a"))
    exhaust(lambda: limiter.hit_client("198.51.100.1"), 2)
    exhaust(lambda: RateLimiter(per_key="2/minute").hit_key("key-a"), 1)  # in memory: per process


def test_the_budget_comes_back_when_the_window_moves_on() -> None:
    limiter = RateLimiter(per_key="3/second")
    exhaust(lambda: limiter.hit_key("k"), 3)
    assert refused(lambda: limiter.hit_key("k")).retry_after == 1
    time.sleep(1.05)
    exhaust(lambda: limiter.hit_key("k"), 3)
    refused(lambda: limiter.hit_key("k"))


def test_several_limits_in_one_string_all_apply() -> None:
    limiter = RateLimiter(per_key="2/second;3/minute")
    exhaust(lambda: limiter.hit_key("k"), 2)
    error = refused(lambda: limiter.hit_key("k"))
    assert error.retry_after == 1
    assert "2 per 1 second" in error.detail


def test_reset_forgets_every_count() -> None:
    limiter = RateLimiter(per_key="2/minute", per_client="1/minute")
    exhaust(lambda: limiter.hit_key("k"), 2)
    exhaust(lambda: limiter.hit_client("c"), 1)
    limiter.reset()
    exhaust(lambda: limiter.hit_key("k"), 2)
    exhaust(lambda: limiter.hit_client("c"), 1)


@pytest.mark.parametrize("limit", ["lots", "5 per fortnight", "0/minute", "", "-1/second"])
def test_a_limit_that_cannot_be_used_is_refused(limit: str) -> None:
    with pytest.raises(RateLimitConfigError) as caught:
        RateLimiter(per_key=limit)
    assert isinstance(caught.value, ApiError) and isinstance(caught.value, ValueError)
    with pytest.raises(RateLimitConfigError):
        RateLimiter(per_client=limit)


def test_a_storage_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(RateLimitConfigError) as caught:
        RateLimiter(redis_url="ftp://:s3cret-pw@127.0.0.1/0")
    assert "s3cret-pw" not in str(caught.value)


# --------------------------------------------------------------------------- Redis: shared by replicas


@pytest.fixture(scope="module")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis answers at {REDIS_URL} (set LOYALTY_TEST_REDIS_URL)")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"loyalty-test-{secrets.token_hex(6)}"
    yield name
    RateLimiter(redis_url=redis_url, namespace=name).reset()


def test_two_replicas_share_one_budget(redis_url: str, namespace: str) -> None:
    first = RateLimiter(per_key="5/minute", per_client="2/minute", redis_url=redis_url, namespace=namespace)
    second = RateLimiter(per_key="5/minute", per_client="2/minute", redis_url=redis_url, namespace=namespace)
    exhaust(lambda: first.hit_key("key-a"), 3)
    exhaust(lambda: second.hit_key("key-a"), 2)
    for replica in (first, second):
        assert 1 <= refused(partial(replica.hit_key, "key-a")).retry_after <= 60
    exhaust(lambda: second.hit_key("key-b"), 5)  # another key has its own budget
    first.hit_client("192.0.2.1")
    second.hit_client("192.0.2.1")
    refused(lambda: first.hit_client("192.0.2.1"))


def test_namespaces_do_not_share_and_reset_clears_only_its_own(redis_url: str, namespace: str) -> None:
    other_namespace = f"{namespace}-other"
    ours = RateLimiter(per_key="2/minute", redis_url=redis_url, namespace=namespace)
    theirs = RateLimiter(per_key="2/minute", redis_url=redis_url, namespace=other_namespace)
    try:
        exhaust(lambda: ours.hit_key("k"), 2)
        exhaust(lambda: theirs.hit_key("k"), 2)
        refused(lambda: ours.hit_key("k"))
        ours.reset()
        exhaust(lambda: ours.hit_key("k"), 2)
        refused(lambda: theirs.hit_key("k"))  # untouched by the other namespace's reset
    finally:
        theirs.reset()


def test_counts_live_in_redis_under_the_namespace(redis_url: str, namespace: str) -> None:
    RateLimiter(per_key="5/minute", redis_url=redis_url, namespace=namespace).hit_key("key-a")
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{namespace}:*")]
    finally:
        client.close()
    assert len(keys) == 1 and "key-a" in keys[0]


def test_the_window_moves_on_in_redis_too(redis_url: str, namespace: str) -> None:
    limiter = RateLimiter(per_client="2/second", redis_url=redis_url, namespace=namespace)
    exhaust(lambda: limiter.hit_client("c"), 2)
    assert refused(lambda: limiter.hit_client("c")).retry_after == 1
    time.sleep(1.05)
    exhaust(lambda: limiter.hit_client("c"), 2)


# --------------------------------------------------------------------------- Redis down


def test_without_redis_each_replica_still_limits_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    secret = secrets.token_hex(4)
    limiter = RateLimiter(per_key="3/minute", redis_url=DEAD_REDIS_URL.format(secret=secret))
    assert secret not in repr(limiter)
    with caplog.at_level(logging.WARNING, logger="api._ratelimit"):
        exhaust(lambda: limiter.hit_key("k"), 3)
        error = refused(lambda: limiter.hit_key("k"))
    assert 1 <= error.retry_after <= 60
    warnings = [r for r in caplog.records if r.name == "api._ratelimit"]
    assert len(warnings) == 1  # once per outage, not once per request
    assert "127.0.0.1:1" in warnings[0].getMessage()
    assert secret not in caplog.text


def test_redis_is_tried_again_after_a_pause(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("api._ratelimit._SHARED_RETRY_AFTER", 0.05)  # 5 s in production
    limiter = RateLimiter(per_key="10/minute", redis_url=DEAD_REDIS_URL.format(secret="x"))
    with caplog.at_level(logging.WARNING, logger="api._ratelimit"):
        exhaust(lambda: limiter.hit_key("k"), 3)  # one failure, then memory for the pause
        time.sleep(0.1)
        exhaust(lambda: limiter.hit_key("k"), 1)  # tries Redis again, fails again, counts in memory
    assert len([r for r in caplog.records if r.name == "api._ratelimit"]) == 2
