"""Observability: ``GET /metrics`` after real traffic says what the database and the chain say (requests
served, the mirror's lag and entries, the outbox's depth and age, confirmation latency, RPC errors by class,
reorganisations), survives an unreachable chain and empty tables; log lines are JSON in production with the
request's id, and no secret of any shape reaches one.

Runs on the scenario service (``tests/api_scenario.py``) over anvil, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from api_scenario import Service
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import HTTPProvider, Web3

from api import Settings, create_app
from api._batcher import Batcher
from api._db import migrate_all
from api._logging import REDACTED, log_format, log_handler, redact
from api._metrics import serve_process_metrics
from api._outbox import OperationDraft, enqueue
from api._tables import Operation
from chain import RetryPolicy, Rpc, RpcError, RpcUnavailable
from conftest import ACTIVE, ISSUE_ONLY, ROOT, AnvilNode, chain_ledger, new_customer
from indexer import Cursor, LedgerState, make_engine

pytestmark = pytest.mark.anvil

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    """``/metrics`` parsed with Prometheus's own parser: every sample by name and labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def dead_url() -> str:
    """An HTTP URL on this machine where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- requests


def test_request_counts_and_latencies_match_the_requests_made(api_service: Service) -> None:
    before = scrape(api_service.client)
    for _ in range(3):
        assert api_service.get("partner_a", "/v1/partners/1/position").status_code == 200
    for _ in range(2):
        assert api_service.get("anonymous", "/v1/partners/1/position").status_code == 401
    assert api_service.get("partner_a", "/v1/no-such-thing").status_code == 404
    after = scrape(api_service.client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/partners/{partner_id}/position"
    assert delta("loyalty_http_requests_total", method="GET", route=route, status="200") == 3
    assert delta("loyalty_http_requests_total", method="GET", route=route, status="401") == 2
    assert delta("loyalty_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # the first scrape is counted once it is answered (a scrape never counts itself)
    assert delta("loyalty_http_requests_total", method="GET", route="/metrics", status="200") == 1
    served = {"method": "GET", "route": route, "status": "200"}
    assert delta("loyalty_http_request_duration_seconds_count", **served) == 3
    assert delta("loyalty_http_request_duration_seconds_bucket", **served, le="+Inf") == 3
    assert delta("loyalty_http_request_duration_seconds_sum", **served) > 0
    assert value(after, "loyalty_http_requests_in_flight") == 1  # the scrape itself


# --------------------------------------------------------------------------- the mirror and the chain


def test_head_lag_and_entries_equal_the_chain_and_the_mirror(
    api_service: Service, anvil_node: AnvilNode
) -> None:
    api_service.sync()
    anvil_node.mine()
    anvil_node.advance_time(30)  # mines a block 30 s later
    anvil_node.mine()
    samples = scrape(api_service.client)
    w3 = api_service.ledger.w3
    with api_service.engine.connect() as conn:
        address = api_service.ledger.address.lower()
        cursor = conn.execute(select(Cursor.block_number).where(Cursor.contract == address)).scalar_one()
        seq = conn.execute(select(LedgerState.seq).where(LedgerState.contract == address)).scalar_one()
    head = w3.eth.get_block("latest")
    assert value(samples, "loyalty_mirror_block") == cursor
    assert value(samples, "loyalty_chain_head_block") == head["number"]
    assert value(samples, "loyalty_mirror_lag_blocks") == head["number"] - cursor >= 3
    lag_s = head["timestamp"] - w3.eth.get_block(cursor)["timestamp"]
    assert value(samples, "loyalty_mirror_lag_seconds") == lag_s >= 30
    assert value(samples, "loyalty_mirror_entries") == seq > 0
    api_service.sync()
    assert value(scrape(api_service.client), "loyalty_mirror_lag_blocks") == 0


# --------------------------------------------------------------------------- the outbox


def _enqueue(service: Service, partner_id: int, *, release_at: int | None = None) -> int:
    with Session(service.engine) as db, db.begin():
        op, created = enqueue(
            db,
            OperationDraft(
                partner_id=partner_id,
                kind="purchase",
                natural_key=f"obs-{secrets.token_hex(6)}",
                member_address=new_customer().address,
                points=10,
                reason=1,
                request={"points": 10},
                release_at=release_at,
            ),
            now=service.services.now(),
        )
        assert created
        return op.id


def _open_operations(service: Service) -> dict[tuple[int, str], list[Operation]]:
    with Session(service.engine) as db:
        ops = db.scalars(select(Operation).where(Operation.state.in_(("pending", "accepted", "submitted"))))
        out: dict[tuple[int, str], list[Operation]] = {}
        for op in ops:
            out.setdefault((op.partner_id, op.state), []).append(op)
        return out


def test_outbox_depth_age_and_confirmation_latency_equal_the_operations(
    api_service: Service, anvil_node: AnvilNode
) -> None:
    before = scrape(api_service.client)
    now = api_service.services.now()
    accepted = [_enqueue(api_service, ACTIVE) for _ in range(3)]
    # one due an hour ago (beyond the scan's horizon: followed by its id until it is confirmed)
    late = _enqueue(api_service, ACTIVE, release_at=now - 3600)
    pending = [_enqueue(api_service, ACTIVE, release_at=now + 86_400) for _ in range(2)]
    other = _enqueue(api_service, ISSUE_ONLY)
    anvil_node.advance_time(100)  # the outbox waits a while
    samples = scrape(api_service.client)
    now = api_service.services.now()
    open_ops = _open_operations(api_service)
    assert len(open_ops[(ACTIVE, "accepted")]) >= 4 and len(open_ops[(ACTIVE, "pending")]) >= 2
    for (partner, state), ops in open_ops.items():
        labels = {"partner": str(partner), "state": state}
        assert value(samples, "loyalty_outbox_operations", **labels) == len(ops)
        since = min(op.created_at if state == "pending" else op.release_at for op in ops)
        assert value(samples, "loyalty_outbox_oldest_age_seconds", **labels) == now - since
    assert value(samples, "loyalty_outbox_oldest_age_seconds", partner="1", state="accepted") >= 3600
    assert value(samples, "loyalty_outbox_operations", partner="1", state="submitted") == 0
    assert ("loyalty_outbox_operations", frozenset({"partner": "1", "state": "submitted"}.items())) in samples
    assert other in {op.id for op in open_ops[(ISSUE_ONLY, "accepted")]}

    ledger = api_service.ledger
    batcher = Batcher(
        api_service.engine,
        chain_ledger(ledger, ledger.actors.partner),
        ACTIVE,
        clock=api_service.services.now,
    )
    batcher.drain()
    after = scrape(api_service.client)
    with Session(api_service.engine) as db:
        confirmed = db.scalars(select(Operation).where(Operation.id.in_([*accepted, late]))).all()
        assert {op.state for op in confirmed} == {"confirmed"}
        assert {op.state for op in db.scalars(select(Operation).where(Operation.id.in_(pending)))} == {
            "pending"
        }
    latencies = [op.updated_at - op.release_at for op in confirmed]
    assert max(latencies) >= 3600

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    latency = "loyalty_confirmation_latency_seconds"
    assert delta(f"{latency}_count", partner="1") == len(confirmed) == 4
    assert delta(f"{latency}_sum", partner="1") == sum(latencies)
    assert delta(f"{latency}_bucket", partner="1", le="60.0") == sum(1 for v in latencies if v <= 60)
    assert delta(f"{latency}_bucket", partner="1", le="+Inf") == 4
    assert value(after, "loyalty_outbox_operations", partner="1", state="accepted") == len(
        _open_operations(api_service).get((ACTIVE, "accepted"), [])
    )
    # counted once: a later scrape adds nothing
    again = scrape(api_service.client)
    assert value(again, f"{latency}_count", partner="1") == value(after, f"{latency}_count", partner="1")


# --------------------------------------------------------------------------- chain errors and reorgs


def _issue_tx(service: Service, amount: int) -> dict[str, Any]:
    ledger = service.ledger
    data = ledger.contract.encode_abi(
        "issue", [new_customer().address, amount, secrets.token_bytes(32), 1, bytes(32)]
    )
    return {"from": ledger.actors.partner, "to": ledger.address, "data": data, "gas": 300_000}


def test_rpc_errors_by_class_and_reorgs_are_counted(api_service: Service, anvil_node: AnvilNode) -> None:
    before = scrape(api_service.client)
    with pytest.raises(RpcError):
        Rpc(api_service.ledger.w3).request("eth_noSuchMethod", [])
    unreachable = Rpc(Web3(HTTPProvider(dead_url())), retry=RetryPolicy(attempts=3), sleep=lambda _: None)
    with pytest.raises(RpcUnavailable):
        unreachable.block_number()
    # a reorganisation of the block holding one issuance, undone by the indexer
    api_service.sync()
    anvil_node.w3.eth.send_transaction(_issue_tx(api_service, 11))  # type: ignore[arg-type]
    api_service.sync()
    other_block = [[_issue_tx(api_service, 12), 0]]
    replaced = anvil_node.w3.provider.make_request("anvil_reorg", [1, other_block])  # type: ignore[arg-type]
    assert "error" not in replaced, replaced
    api_service.sync()
    after = scrape(api_service.client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("loyalty_rpc_errors_total", **{"class": "RpcError", "retryable": "false"}) == 1
    assert delta("loyalty_rpc_errors_total", **{"class": "RpcUnavailable", "retryable": "true"}) == 3
    assert delta("loyalty_reorgs_total") == 1
    assert delta("loyalty_reorg_entries_removed_total") == 1


def test_a_process_without_an_app_serves_its_own_counts(api_service: Service) -> None:
    url, stop = serve_process_metrics("127.0.0.1", 0)
    try:
        with pytest.raises(RpcError):
            Rpc(api_service.ledger.w3).request("eth_noSuchMethod", [])
        answer = httpx.get(url, timeout=10)
    finally:
        stop()
    assert answer.status_code == 200
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert value(samples, "loyalty_rpc_errors_total", **{"class": "RpcError", "retryable": "false"}) >= 1
    assert ("loyalty_reorgs_total", frozenset()) in samples
    assert not any(name.startswith("loyalty_http_") for name, _ in samples)


# --------------------------------------------------------------------------- a scrape never fails


def test_an_unreachable_chain_and_empty_tables_do_not_fail_the_scrape(
    api_service: Service, tmp_path: Any
) -> None:
    dead = Web3(HTTPProvider(dead_url(), request_kwargs={"timeout": 5}))
    app = create_app(
        Settings(database_url=api_service.database_url),
        engine=api_service.engine,
        contract=api_service.ledger.address,
        w3=dead,
    )
    client = TestClient(app)
    first = scrape(client)
    second = scrape(client)
    assert value(first, "loyalty_scrape_errors_total", source="chain") == 1
    assert value(second, "loyalty_scrape_errors_total", source="chain") == 2
    assert value(second, "loyalty_mirror_entries") > 0  # the database's part is still there
    assert ("loyalty_chain_head_block", frozenset()) not in second
    assert all(
        value(second, "loyalty_scrape_errors_total", source=s) == 0 for s in ("mirror", "outbox", "webhooks")
    )
    # its own registry: the scenario app's traffic is not in it
    assert value(second, "loyalty_http_requests_total", method="GET", route="/metrics", status="200") == 1

    url = f"sqlite:///{tmp_path}/empty.db"
    engine = make_engine(url)
    try:
        migrate_all(engine)
        empty = scrape(TestClient(create_app(Settings(database_url=url), engine=engine)))
    finally:
        engine.dispose()
    assert {k[0] for k in empty if k[0].startswith("loyalty_scrape_errors")} == {
        "loyalty_scrape_errors_total"
    }
    assert sum(v for (name, _), v in empty.items() if name == "loyalty_scrape_errors_total") == 0
    assert ("loyalty_mirror_block", frozenset()) not in empty
    assert value(empty, "loyalty_webhook_deliveries", state="pending") == 0


def test_the_metrics_token_is_required_when_set(api_service: Service) -> None:
    token = secrets.token_urlsafe(24)
    app = create_app(
        Settings(database_url=api_service.database_url, metrics_token=SecretStr(token)),
        engine=api_service.engine,
    )
    client = TestClient(app)
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, Authorization=f"Bearer {token}")
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


# --------------------------------------------------------------------------- logs


@contextmanager
def captured(fmt: str) -> Iterator[io.StringIO]:
    """Everything logged meanwhile, as the service's handler writes it (``fmt``: json or text)."""
    stream = io.StringIO()
    handler = log_handler(fmt, stream)  # type: ignore[arg-type]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_lines_carry_the_request_id_and_tx_hashes_but_no_secret(api_service: Service) -> None:
    app = create_app(Settings(database_url=api_service.database_url), engine=api_service.engine)
    route_log = logging.getLogger("tests.observability")
    tx_hash = secrets.token_hex(32)
    key = secrets.token_hex(32)
    api_key = api_service.tokens["partner_a"]

    @app.get("/test/log")
    def log_something() -> dict[str, str]:  # a sync route: it runs in the thread pool
        route_log.info("transaction 0x%s: %s", tx_hash, "confirmed")
        route_log.info("signing with key 0x%s for %s", key, api_key, extra={"password": "hunter2", "op": 7})
        return {}

    client = TestClient(app)
    with captured("json") as stream:
        given = client.get("/test/log", headers={"X-Request-Id": "obs-request-0001"})
        made = client.get("/test/log")
    lines = [line for line in _lines(stream) if line["logger"] in ("tests.observability", "api.access")]
    text = stream.getvalue()
    by_request = {line["request_id"] for line in lines}
    assert by_request == {"obs-request-0001", made.headers["x-request-id"]}
    assert given.headers["x-request-id"] == "obs-request-0001"
    mine = [line for line in lines if line["request_id"] == "obs-request-0001"]
    assert [line["logger"] for line in mine] == ["tests.observability", "tests.observability", "api.access"]
    assert mine[0]["message"] == f"transaction 0x{tx_hash}: confirmed" and mine[0]["level"] == "INFO"
    assert mine[1]["message"] == f"signing with key {REDACTED} for lpk_{api_key.split('_')[1]}_{REDACTED}"
    assert mine[1]["password"] == REDACTED and mine[1]["op"] == 7
    access = mine[2]
    assert (access["method"], access["route"], access["status"]) == ("GET", "/test/log", 200)
    assert access["duration_ms"] >= 0 and access["time"].endswith("Z")
    assert key not in text and api_key not in text and "hunter2" not in text and tx_hash in text


def test_the_batchers_lines_keep_their_tx_hashes() -> None:
    tx_hash = secrets.token_hex(32)
    batcher = logging.getLogger("api._batcher")
    with captured("json") as stream:
        batcher.warning("no receipt yet for 0x%s: checked again next step", tx_hash)
        batcher.warning("transaction 0x%s: %s (checked again next step)", tx_hash, "RpcTimeout")
        batcher.info("batch %s was already issued (0x%s)", 12, tx_hash)
        batcher.info("operation %s was already done (0x%s)", 123456, tx_hash)
    messages = [line["message"] for line in _lines(stream)]
    assert all(f"0x{tx_hash}" in m for m in messages), messages


SECRETS = {
    "api key": "lpk_0123456789ab_" + secrets.token_urlsafe(32),
    "session": "lps_ba9876543210_" + secrets.token_urlsafe(32),
    "webhook secret": "whsec_" + "Kf8pA3n0Qm5sXv2ZbYtR7wLcE1uHgJd9",
    "private key": "0x" + secrets.token_hex(32),
    "bare private key": secrets.token_hex(32),
    "password": "correct-horse-" + secrets.token_urlsafe(8),
    "bearer": "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
}


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_redaction_masks_every_secret_shape(fmt: str) -> None:
    log = logging.getLogger("tests.observability.redaction")
    with captured(fmt) as stream:
        log.info("authenticated with %s", SECRETS["api key"])
        log.info("session %s opened", SECRETS["session"])
        log.info("webhook created, secret shown once: %s", SECRETS["webhook secret"])
        log.info("loaded %s", SECRETS["private key"])
        log.info("%s", SECRETS["bare private key"])
        log.info("settings: password=%s", SECRETS["password"])
        log.info("headers %s", {"authorization": f"Bearer {SECRETS['bearer']}", "accept": "json"})
        log.info("Authorization: Bearer %s", SECRETS["bearer"])
        log.info("%(token)s and %(user)s", {"token": SECRETS["bearer"], "user": "ada"})
        log.info("json body %s", json.dumps({"client_secret": SECRETS["password"], "n": 1}))
        log.info(
            "fields",
            extra={"password": SECRETS["password"], "secret": SECRETS["bearer"], "token": "x", "note": "ok"},
        )
        try:
            raise ValueError(f"could not decrypt {SECRETS['private key']} (password={SECRETS['password']!r})")
        except ValueError:
            log.exception("failed: %s", SECRETS["webhook secret"])
    out = stream.getvalue()
    leaked = [name for name, secret in SECRETS.items() if secret in out]
    assert leaked == [], out
    assert "lpk_0123456789ab_" + REDACTED in out and "lps_ba9876543210_" + REDACTED in out
    assert "whsec_" + REDACTED in out and "ada" in out and "ok" in out and "ValueError" in out
    if fmt == "json":
        lines = _lines(stream)
        assert all(line["logger"] == "tests.observability.redaction" for line in lines)
        fields = next(line for line in lines if line["message"] == "fields")
        assert (fields["password"], fields["secret"], fields["token"], fields["note"]) == (
            REDACTED,
            REDACTED,
            REDACTED,
            "ok",
        )
        assert "Traceback" in lines[-1]["exception"]
    else:
        assert " INFO    tests.observability.redaction: " in out


def test_redact_keeps_what_is_not_a_secret() -> None:
    address = "0x" + secrets.token_hex(20)
    signature = "0x" + secrets.token_hex(65)
    block_hash = "0x" + secrets.token_hex(32)
    assert redact(f"member {address} signed {signature}") == f"member {address} signed {signature}"
    assert redact(f"block 12 hash {block_hash}") == f"block 12 hash {block_hash}"
    # a key beside a transaction hash stays masked
    tx_hash, key = secrets.token_hex(32), secrets.token_hex(32)
    assert redact(f"tx 0x{tx_hash} signed by key 0x{key}") == f"tx 0x{tx_hash} signed by key {REDACTED}"


def test_log_format_follows_the_mode_unless_chosen() -> None:
    assert log_format(Settings()) == "text"
    assert log_format(Settings.model_construct(mode="production", log_format=None)) == "json"
    assert log_format(Settings(log_format="json")) == "json"


def test_configure_logging_sets_up_the_process_as_uvicorn_would_be() -> None:
    """``configure_logging`` (what ``logging_config`` gives uvicorn) in a process of its own: the root
    logger's one handler, uvicorn's lines through it, its access lines off (the service writes its own)."""
    script = (
        "import logging\n"
        "from api import Settings\n"
        "from api._logging import configure_logging, request_context\n"
        "for fmt in ('json', 'text'):\n"
        "    configure_logging(Settings(log_format=fmt))\n"
        "    with request_context('obs-subprocess-1'):\n"
        "        logging.getLogger('api.test').info('issued with %s', 'lpk_0123456789ab_' + 'x' * 43)\n"
        "    logging.getLogger('uvicorn.access').info('GET / 200')\n"
        "    logging.getLogger('uvicorn.error').info('Started server process')\n"
        "    logging.getLogger('api.test').debug('not at INFO')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    json_lines, text_lines = done.stderr.splitlines()[:2], done.stderr.splitlines()[2:]
    lines = [json.loads(line) for line in json_lines]
    assert [(line["logger"], line.get("request_id")) for line in lines] == [
        ("api.test", "obs-subprocess-1"),
        ("uvicorn.error", None),
    ]
    assert lines[0]["message"] == f"issued with lpk_0123456789ab_{REDACTED}"
    assert len(text_lines) == 2
    assert text_lines[0].endswith(
        f" INFO    api.test [obs-subprocess-1]: issued with lpk_0123456789ab_{REDACTED}"
    )
    assert text_lines[1].endswith(" INFO    uvicorn.error: Started server process")
