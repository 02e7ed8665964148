"""``Idempotency-Key`` on POSTs, Stripe's semantics (``api/_idempotency.py``), on SQLite and PostgreSQL:

- a first request is recorded and its response kept; the same request again gets that response verbatim,
  marked ``Idempotent-Replayed: true``, and the route does not run again (one key created, not two);
- the same key with another body, path or method: 422 ``idempotency-key-reused``;
- the same key while its first request runs: 409 ``idempotency-key-in-use`` with ``Retry-After: 1``
  (a record put in flight, and two real concurrent requests); of many racing first requests one runs;
- an in-flight record abandoned (older than a minute) is taken over; an expired record is replaced;
- 2xx and 4xx are kept, except 401/403/409/429; 5xx and crashes release the key;
- a malformed key: 422; no valid credentials: the route's 401 and nothing recorded;
- keys are per caller (an API key, or a member across their sessions); ``purge_expired``;
- at rest the key is a digest and the body is encrypted (a new API key's token is not in the table).

The probe route (``POST /v1/test/probe``, added to this module's app) stands for any route: it counts
its runs, can be held at a gate, and answers as a test says.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_scenario import Service
from fastapi import Response
from sqlalchemy import func, select, update

from api._auth import Authenticated
from api._errors import ApiError, Conflict, Forbidden, Gone, NotFound, NotReady, RateLimited
from api._idempotency import ABANDONED_AFTER_S, _key_digest, purge_expired
from api._sessions import open_session
from api._tables import ApiKey, IdempotencyRecord

pytestmark = pytest.mark.anvil

KEYS = "/v1/admin/api-keys"
PROBE = "/v1/test/probe"
DAY = 24 * 3600


# --------------------------------------------------------------------------- the probe route


@dataclass
class Probe:
    runs: int = 0
    error: ApiError | Exception | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


PROBE_STATE = Probe()


def probe_route(body: dict[str, Any], caller: Authenticated, response: Response) -> dict[str, Any]:
    with PROBE_STATE.lock:
        PROBE_STATE.runs += 1
        run = PROBE_STATE.runs
    PROBE_STATE.entered.set()
    assert PROBE_STATE.gate.wait(30), "the test never opened the gate"
    if PROBE_STATE.error is not None:
        raise PROBE_STATE.error
    response.status_code = 201
    response.headers["Location"] = f"{PROBE}/{run}"
    response.headers["X-Not-Kept"] = "only on the first response"
    response.set_cookie("probe", "a-cookie")
    return {"run": run, "caller": caller.credential_id, "body": body}


@pytest.fixture
def probe(api_service: Service) -> Iterator[Probe]:
    app: Any = api_service.client.app
    if not any(getattr(route, "path", None) == PROBE for route in app.routes):
        app.add_api_route(PROBE, probe_route, methods=["POST"])
    PROBE_STATE.runs, PROBE_STATE.error = 0, None
    PROBE_STATE.entered.clear()
    PROBE_STATE.gate.set()
    yield PROBE_STATE
    PROBE_STATE.gate.set()


@pytest.fixture
def clock(api_service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The service's clock pinned: ``clock[0] += seconds`` moves it."""
    now = [api_service.services.now()]
    monkeypatch.setattr(api_service.services, "clock", lambda: float(now[0]))
    yield now


# --------------------------------------------------------------------------- helpers


def new_key() -> str:
    return str(uuid.uuid4())


def post(service: Service, caller: str, url: str, key: str | None, body: Any = None, **headers: str) -> Any:
    """POSTs ``body`` as exactly these bytes (the request hash is over the raw body)."""
    sent = dict(headers, **({"Idempotency-Key": key} if key is not None else {}))
    content = b"" if body is None else json.dumps(body).encode()
    return service.post(caller, url, content=content, headers={"Content-Type": "application/json", **sent})


def count(service: Service, table: Any) -> int:
    with service.services.session() as db:
        return int(db.execute(select(func.count()).select_from(table)).scalar_one())


def key_id(service: Service, caller: str) -> str:
    return service.tokens[caller].split("_")[1]


def record(service: Service, principal: str, key: str) -> IdempotencyRecord | None:
    with service.services.session() as db:
        found = db.get(IdempotencyRecord, (principal, _key_digest(key)))
        if found is not None:
            db.expunge(found)
        return found


def set_record(service: Service, principal: str, key: str, **values: Any) -> None:
    with service.services.session() as db:
        db.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.principal == principal, IdempotencyRecord.key == _key_digest(key))
            .values(**values)
        )


def kept_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k in ("content-type", "location")}


# --------------------------------------------------------------------------- replay


def test_a_retry_gets_the_first_response_and_nothing_happens_twice(api_service: Service) -> None:
    key, body = new_key(), {"role": "auditor", "name": "idempotent auditor"}
    keys = count(api_service, ApiKey)
    first = post(api_service, "admin", KEYS, key, body)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    stored = record(api_service, key_id(api_service, "admin"), key)
    assert stored is not None and stored.state == "done" and stored.status_code == 201
    assert stored.expires_at - stored.created_at == api_service.services.settings.idempotency_ttl_s >= DAY
    for _ in range(2):
        again = post(api_service, "admin", KEYS, key, body)
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content  # the same key id and token: verbatim
        assert kept_headers(again) == kept_headers(first)
    assert count(api_service, ApiKey) == keys + 1
    # At rest: the key is a digest, and the token (a secret kept elsewhere only as a digest) is sealed.
    assert stored.key != key and len(stored.key) == 64
    assert stored.response_body is not None
    assert first.json()["token"].encode() not in stored.response_body


def test_without_the_header_every_post_runs(api_service: Service) -> None:
    keys, records = count(api_service, ApiKey), count(api_service, IdempotencyRecord)
    body = {"role": "auditor", "name": "no key"}
    ids = {post(api_service, "admin", KEYS, None, body).json()["id"] for _ in range(2)}
    assert len(ids) == 2 and count(api_service, ApiKey) == keys + 2
    assert count(api_service, IdempotencyRecord) == records


def test_replayed_headers_are_an_allowlist_without_cookies(api_service: Service, probe: Probe) -> None:
    key = new_key()
    first = post(api_service, "partner_a", PROBE, key, {"a": 1})
    assert first.status_code == 201 and first.headers["location"] == f"{PROBE}/1"
    assert "set-cookie" in first.headers and first.headers["x-not-kept"]
    again = post(api_service, "partner_a", PROBE, key, {"a": 1})
    assert again.status_code == 201 and again.content == first.content and probe.runs == 1
    assert again.headers["location"] == f"{PROBE}/1" and again.headers["content-type"] == "application/json"
    assert "set-cookie" not in again.headers and "x-not-kept" not in again.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # each request its own id


def test_a_members_key_spans_their_sessions(api_service: Service) -> None:
    """A member session's key is the member's: another session of theirs gets the same code back."""
    key = new_key()
    first = post(api_service, "member_a", "/v1/me/link-codes", key)
    assert first.status_code == 201, first.text
    member = api_service.members["member_a"]
    with api_service.services.session() as db:
        issued, _ = open_session(db, member, "siwe", now=api_service.services.now(), ttl_s=600)
    api_service.tokens["member_a_again"] = issued.token
    again = post(api_service, "member_a_again", "/v1/me/link-codes", key)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert record(api_service, member, key) is not None
    # Another member's same key is theirs alone.
    other = post(api_service, "member_b", "/v1/me/link-codes", key)
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers
    assert other.json()["code"] != first.json()["code"]


def test_keys_are_per_caller(api_service: Service, probe: Probe) -> None:
    key = new_key()
    a = post(api_service, "partner_a", PROBE, key, {"x": 1})
    b = post(api_service, "partner_b", PROBE, key, {"x": 2})  # another body: another caller's key
    assert a.status_code == b.status_code == 201 and probe.runs == 2
    assert "idempotent-replayed" not in b.headers
    assert a.json()["caller"] == key_id(api_service, "partner_a")
    assert b.json()["caller"] == key_id(api_service, "partner_b")


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"body": {"role": "auditor", "name": "another name"}}, id="body"),
        pytest.param({"body": {"name": "idempotent", "role": "auditor"}}, id="members-reordered"),
        pytest.param({"url": KEYS + "?x=1"}, id="query"),
        pytest.param({"url": PROBE}, id="path"),
    ],
)
def test_the_same_key_for_another_request_is_refused(
    api_service: Service, probe: Probe, change: dict[str, Any]
) -> None:
    key, body = new_key(), {"role": "auditor", "name": "idempotent"}
    assert post(api_service, "admin", KEYS, key, body).status_code == 201
    keys = count(api_service, ApiKey)
    refused = post(api_service, "admin", change.get("url", KEYS), key, change.get("body", body))
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "/problems/idempotency-key-reused" and problem["request_id"]
    assert problem["errors"][0]["field"] == "header.idempotency-key"
    assert count(api_service, ApiKey) == keys and probe.runs == 0
    # The first request's response is still there for its retries.
    assert post(api_service, "admin", KEYS, key, body).headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    "value",
    [b"", b"x" * 256, b"caf\xc3\xa9", b"tab\there"],
    ids=["empty", "too-long", "not-ascii", "control"],
)
def test_a_malformed_key_is_refused(api_service: Service, probe: Probe, value: bytes) -> None:
    records = count(api_service, IdempotencyRecord)
    headers = [(k.encode(), v.encode()) for k, v in api_service.headers("partner_a").items()]
    response = api_service.client.post(PROBE, json={}, headers=[*headers, (b"Idempotency-Key", value)])
    assert response.status_code == 422 and response.json()["type"] == "/problems/invalid-request"
    assert response.json()["errors"][0]["field"] == "header.idempotency-key"
    assert probe.runs == 0 and count(api_service, IdempotencyRecord) == records


def test_two_keys_are_refused(api_service: Service, probe: Probe) -> None:
    headers = [*api_service.headers("partner_a").items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = api_service.client.post(PROBE, json={}, headers=headers)
    assert response.status_code == 422 and probe.runs == 0


@pytest.mark.parametrize("caller", ["anonymous", "revoked", "expired", "bad-token"])
def test_without_valid_credentials_nothing_is_recorded(
    api_service: Service, probe: Probe, caller: str
) -> None:
    records = count(api_service, IdempotencyRecord)
    headers = {"Authorization": "Bearer lpk_000000000000_" + "x" * 43} if caller == "bad-token" else {}
    for _ in range(2):
        response = post(api_service, caller, PROBE, "k-1", {"a": 1}, **headers)
        assert response.status_code == 401 and response.json()["type"] == "/problems/unauthenticated"
        assert "idempotent-replayed" not in response.headers
    # A malformed key is refused whoever sends it (a client error before anything else is looked at).
    assert post(api_service, caller, PROBE, "", {"a": 1}, **headers).status_code == 422
    assert probe.runs == 0 and count(api_service, IdempotencyRecord) == records


# --------------------------------------------------------------------------- in flight


def test_a_key_in_flight_is_a_409_to_retry(api_service: Service, clock: list[int]) -> None:
    key, body = new_key(), {"role": "auditor", "name": "in flight"}
    assert post(api_service, "admin", KEYS, key, body).status_code == 201
    admin = key_id(api_service, "admin")
    # As if the first request were still running.
    set_record(api_service, admin, key, state="in_flight", created_at=clock[0] - 5)
    keys = count(api_service, ApiKey)
    busy = post(api_service, "admin", KEYS, key, body)
    assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
    assert busy.json()["type"] == "/problems/idempotency-key-in-use" and busy.json()["retry_after"] == 1
    assert count(api_service, ApiKey) == keys
    # A different request under the key is still a misuse first.
    assert post(api_service, "admin", KEYS, key, {**body, "name": "other"}).status_code == 422


def test_two_concurrent_requests_one_runs_the_other_is_told_to_retry(
    api_service: Service, probe: Probe
) -> None:
    key, results = new_key(), dict[str, Any]()
    probe.gate.clear()
    first = threading.Thread(
        target=lambda: results.update(a=post(api_service, "partner_a", PROBE, key, {"n": 1}))
    )
    first.start()
    try:
        assert probe.entered.wait(30)
        busy = post(api_service, "partner_a", PROBE, key, {"n": 1})
        assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
        assert post(api_service, "partner_a", PROBE, key, {"n": 2}).status_code == 422
    finally:
        probe.gate.set()
        first.join(30)
    assert results["a"].status_code == 201 and probe.runs == 1
    again = post(api_service, "partner_a", PROBE, key, {"n": 1})
    assert again.headers["idempotent-replayed"] == "true" and again.content == results["a"].content


def test_of_racing_first_requests_exactly_one_runs(api_service: Service) -> None:
    key, body, racers = new_key(), {"role": "auditor", "name": "raced"}, 8
    keys = count(api_service, ApiKey)
    start = threading.Barrier(racers)
    responses: list[Any] = []

    def race() -> None:
        start.wait(30)
        responses.append(post(api_service, "admin", KEYS, key, body))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(responses) == racers
    ran = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(ran) == 1
    for other in responses:
        assert other.status_code == 409 or (other.status_code == 201 and other.content == ran[0].content)
    assert count(api_service, ApiKey) == keys + 1


def test_an_abandoned_request_is_taken_over_and_its_late_response_not_kept(
    api_service: Service, probe: Probe, clock: list[int]
) -> None:
    """The first request's process is taken to have died after ABANDONED_AFTER_S; when it was only slow,
    the record is the taker's: the late response is sent to its own client but not kept."""
    key, results = new_key(), dict[str, Any]()

    def send(name: str) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.update({name: post(api_service, "partner_a", PROBE, key, {"n": 1})})
        )
        thread.start()
        return thread

    probe.gate.clear()
    threads = [send("a")]
    try:
        assert probe.entered.wait(30)
        clock[0] += ABANDONED_AFTER_S - 1
        assert post(api_service, "partner_a", PROBE, key, {"n": 1}).status_code == 409
        clock[0] += 1
        probe.entered.clear()
        threads.append(send("b"))  # takes the record over and runs while the first is still held
        assert probe.entered.wait(30)
    finally:
        probe.gate.set()
        for thread in threads:
            thread.join(30)
    assert results["a"].json()["run"] == 1 and results["b"].json()["run"] == 2 and probe.runs == 2
    again = post(api_service, "partner_a", PROBE, key, {"n": 1})
    assert again.headers["idempotent-replayed"] == "true" and again.json()["run"] == 2


# --------------------------------------------------------------------------- what is kept


@pytest.mark.parametrize(
    ("error", "status", "kept"),
    [
        pytest.param(NotFound("no such thing"), 404, True, id="404-kept"),
        pytest.param(Gone("code used"), 410, True, id="410-kept"),
        pytest.param(Forbidden("not yours"), 403, False, id="403-released"),
        pytest.param(Conflict("try again"), 409, False, id="409-released"),
        pytest.param(RateLimited("slow down", retry_after=3), 429, False, id="429-released"),
        pytest.param(NotReady("mirror lags"), 503, False, id="503-released"),
    ],
)
def test_which_answers_are_kept(
    api_service: Service, probe: Probe, error: ApiError, status: int, kept: bool
) -> None:
    key = new_key()
    probe.error = error
    first = post(api_service, "partner_a", PROBE, key, {"a": 1})
    assert first.status_code == status
    probe.error = None
    again = post(api_service, "partner_a", PROBE, key, {"a": 1})
    if kept:
        assert again.status_code == status and again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content and probe.runs == 1
    else:
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers and probe.runs == 2


def test_an_invalid_body_is_kept_like_any_answer(api_service: Service) -> None:
    key, body = new_key(), {"role": "king", "name": "invalid"}
    first = post(api_service, "admin", KEYS, key, body)
    assert first.status_code == 422 and first.json()["type"] == "/problems/invalid-request"
    again = post(api_service, "admin", KEYS, key, body)
    assert again.status_code == 422 and again.headers["idempotent-replayed"] == "true"


def test_a_route_of_the_wrong_role_releases_the_key(api_service: Service) -> None:
    key, body = new_key(), {"role": "auditor", "name": "not a partner's"}
    refused = post(api_service, "partner_a", KEYS, key, body)
    assert refused.status_code == 403
    assert record(api_service, key_id(api_service, "partner_a"), key) is None


def test_a_crash_releases_the_key(api_service: Service, probe: Probe) -> None:
    key = new_key()
    probe.error = RuntimeError("boom")
    with pytest.raises(RuntimeError):  # the test client re-raises; a server answers 500
        post(api_service, "partner_a", PROBE, key, {"a": 1})
    assert record(api_service, key_id(api_service, "partner_a"), key) is None
    probe.error = None
    retried = post(api_service, "partner_a", PROBE, key, {"a": 1})
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


# --------------------------------------------------------------------------- expiry


def test_an_expired_key_is_a_new_key(api_service: Service, probe: Probe, clock: list[int]) -> None:
    key = new_key()
    assert post(api_service, "partner_a", PROBE, key, {"a": 1}).json()["run"] == 1
    clock[0] += api_service.services.settings.idempotency_ttl_s - 1
    assert post(api_service, "partner_a", PROBE, key, {"a": 1}).headers["idempotent-replayed"] == "true"
    clock[0] += 1
    renewed = post(api_service, "partner_a", PROBE, key, {"a": 2})  # another body is fine now
    assert renewed.status_code == 201 and renewed.json()["run"] == 2
    stored = record(api_service, key_id(api_service, "partner_a"), key)
    assert stored is not None and stored.created_at == clock[0]


def test_purge_expired_deletes_only_expired_records(
    api_service: Service, probe: Probe, clock: list[int]
) -> None:
    old, young = new_key(), new_key()
    assert post(api_service, "partner_b", PROBE, old, {}).status_code == 201
    clock[0] += 10
    assert post(api_service, "partner_b", PROBE, young, {}).status_code == 201
    expiry = clock[0] - 10 + api_service.services.settings.idempotency_ttl_s
    with api_service.services.session() as db:
        before = int(db.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one())
        assert purge_expired(db, expiry - 1) == 0
        purged = purge_expired(db, expiry)
    assert purged >= 1 and count(api_service, IdempotencyRecord) == before - purged
    partner_b = key_id(api_service, "partner_b")
    assert record(api_service, partner_b, old) is None and record(api_service, partner_b, young) is not None
