"""Wallets over HTTP, cross-checked against the chain after the scripted scenario (tests/api_scenario.py):
balances and points by epoch equal the contract's views at the latest block, the history pages through
every entry exactly once (newest first) with the links between issuances and their returns, and the
service's shape holds (problems, request ids, as-of)."""

from __future__ import annotations

from typing import Any

import pytest
from api_scenario import Service
from eth_utils.address import to_checksum_address
from sqlalchemy import delete

from api._tables import Reward
from conftest import ACTIVE, ISSUE_ONLY
from indexer import MirrorView

pytestmark = pytest.mark.anvil


def _people(service: Service) -> list[str]:
    return [p.address for p in service.people]


def test_every_wallet_equals_the_contract_at_the_latest_block(api_service: Service) -> None:
    views = api_service.ledger.contract.functions
    for address in _people(api_service):
        body = api_service.get("auditor", f"/v1/wallets/{address}").json()
        assert body["address"] == address
        assert body["as_of"]["time"] == api_service.chain_time()
        assert body["balance"] == views.balanceOf(address).call()
        assert sum(e["points"] for e in body["epochs"]) == body["balance"]
        for epoch in body["epochs"]:
            assert epoch["points"] == views.balanceOfAtEpoch(epoch["epoch"], address).call()
            assert epoch["expires_at"] == views.epochExpiresAt(epoch["epoch"]).call()
        # One-day epochs, three valid: every live point expires within 30 days, the first epoch first.
        assert body["expiring_30d"] == body["balance"]
        if body["epochs"]:
            assert body["next_expiry_at"] == body["epochs"][0]["expires_at"]
            assert body["next_expiry_points"] == body["epochs"][0]["points"]


def test_a_swept_wallet_and_an_unknown_one(api_service: Service) -> None:
    swept = api_service.people[3].address
    views = api_service.ledger.contract.functions
    body = api_service.get("auditor", f"/v1/wallets/{swept}").json()
    assert body["balance"] == views.balanceOf(swept).call() > 0
    nobody = "0x" + "ab" * 20
    empty = api_service.get("auditor", f"/v1/wallets/{nobody}").json()
    assert empty["balance"] == 0 and empty["epochs"] == [] and empty["next_expiry_at"] is None
    assert empty["tier"]["name"] == "member" and empty["tier"]["points_to_next_tier"] == 1_000


def test_tier_and_points_to_the_next(api_service: Service) -> None:
    thresholds = api_service.services.settings.tier_thresholds
    for address in _people(api_service):
        tier = api_service.get("auditor", f"/v1/wallets/{address}").json()["tier"]
        reached = [name for name, t in thresholds.items() if t <= tier["qualifying_points"]]
        assert tier["name"] == reached[-1]
        if tier["next_tier"] is not None:
            assert (
                tier["points_to_next_tier"] == thresholds[tier["next_tier"]] - tier["qualifying_points"] > 0
            )


def _walk(service: Service, address: str, limit: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = service.get("auditor", f"/v1/wallets/{address}/history", params=params).json()
        assert len(page["data"]) <= limit
        entries += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


def test_history_pages_through_every_entry_once_newest_first(api_service: Service) -> None:
    with api_service.engine.connect() as conn:
        view = MirrorView(conn, api_service.ledger.address)
        for address in _people(api_service):
            expected = [w.entry.seq for w in view.wallet_history(address)]
            for limit in (1, 3, 500):
                seqs = [e["seq"] for e in _walk(api_service, address, limit)]
                assert seqs == sorted(expected, reverse=True)


def test_history_links_returns_to_their_purchase(api_service: Service) -> None:
    reversals = 0
    for address in _people(api_service):
        entries = {e["seq"]: e for e in _walk(api_service, address, 500)}
        for e in entries.values():
            if e["kind"] == "IssuanceReversed":
                reversals += 1
                original = entries[e["original_seq"]]
                assert original["kind"] in ("PointsIssued", "PointsIssuedInBatch")
                assert e["seq"] in original["undone_by"]
                assert original["order_ref"] == e["order_ref"]
                assert original["returned"] >= e["returned"] >= e["recovered"] > 0
            if e["kind"] == "RedemptionRefunded":
                original = entries[e["original_seq"]]
                assert original["kind"] == "PointsRedeemed" and e["seq"] in original["undone_by"]
                assert original["refunded"] >= e["amount"]
            if e["kind"] in ("PointsIssued", "PointsIssuedInBatch"):
                assert e["partner_id"] is not None and e["order_ref"] and e["tx_hash"].startswith("0x")
                assert e["reason_label"] in ("purchase", "review", "campaign")
    assert reversals == 2  # the scenario reverses a single issue and a batch item


def test_partner_names_in_history(api_service: Service) -> None:
    entries = _walk(api_service, api_service.people[1].address, 500)
    names = {e["partner_id"]: e["partner_name"] for e in entries if e["partner_id"] is not None}
    assert names[1] == "Bean There Coffee"


def test_problems_request_ids_and_validation(api_service: Service) -> None:
    address = api_service.people[0].address
    # A checksum typo: one letter's case flipped (mixed case kept, so the checksum is checked and fails).
    at = next(
        i for i, c in enumerate(address) if i > 1 and c.isalpha() and address[2:].lower() != address[2:]
    )
    wrong = address[:at] + address[at].swapcase() + address[at + 1 :]
    response = api_service.get("auditor", f"/v1/wallets/{wrong}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/invalid-request"
    assert problem["errors"][0]["field"] == "path.address"
    short = api_service.get("auditor", "/v1/wallets/0x1234", headers={"X-Request-Id": "trace-12345678"})
    assert short.status_code == 422 and short.headers["x-request-id"] == "trace-12345678"
    assert short.json()["request_id"] == "trace-12345678"
    lower = api_service.get("auditor", f"/v1/wallets/{address.lower()}")
    assert lower.status_code == 200 and lower.json()["address"] == address
    missing = api_service.get("auditor", "/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    bad_limit = api_service.get("auditor", f"/v1/wallets/{address}/history", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["errors"][0]["field"] == "query.limit"
    assert api_service.client.get("/problems/invalid-request").status_code == 200


def test_huge_or_deep_bodies_are_refused_not_fatal(api_service: Service) -> None:
    headers = api_service.headers("partner_a") | {"content-type": "application/json"}
    deep = api_service.client.post("/v1/members", content=b"[" * 50_000, headers=headers)
    assert deep.status_code == 422 and deep.json()["type"] == "/problems/invalid-request"
    huge = api_service.client.post("/v1/members", content=b"[" * 100_000, headers=headers)
    assert huge.status_code == 413 and huge.json()["type"] == "/problems/too-large"
    assert api_service.client.get("/healthz").json() == {"status": "ok"}


def test_member_reads_own_wallet_only(api_service: Service) -> None:
    a, b = api_service.people[1].address, api_service.people[3].address
    assert api_service.get("member_a", f"/v1/wallets/{a}").status_code == 200
    assert api_service.get("member_a", f"/v1/wallets/{b}").status_code == 403
    assert api_service.get("partner_a", f"/v1/wallets/{a}").status_code == 200
    assert api_service.get("partner_a", f"/v1/wallets/{b}").status_code == 403
    assert api_service.get("anonymous", f"/v1/wallets/{a}").status_code == 401
    assert api_service.get("expired", f"/v1/wallets/{a}").status_code == 401
    assert api_service.get("revoked", f"/v1/wallets/{a}").status_code == 401


def test_rate_limits_per_key_shared_by_replicas_through_redis(api_service: Service) -> None:
    """Two replicas (two apps) share one budget per key through Redis; the third request is a 429 problem
    with Retry-After, whichever replica it reaches; another key has its own budget."""
    import os
    import secrets

    from fastapi.testclient import TestClient

    from api import create_app
    from api._ratelimit import RateLimiter

    redis_url = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    namespace = f"test-{secrets.token_hex(4)}"

    def replica() -> TestClient:
        limiter = RateLimiter(
            per_key="2/minute", per_client="2/minute", redis_url=redis_url, namespace=namespace
        )
        app = create_app(
            api_service.services.settings,
            engine=api_service.engine,
            contract=api_service.ledger.address,
            clock=api_service.services.clock,
            limiter=limiter,
        )
        return TestClient(app)

    one, two = replica(), replica()
    try:
        url = f"/v1/wallets/{api_service.people[1].address}"
        auditor = api_service.headers("auditor")
        assert one.get(url, headers=auditor).status_code == 200
        assert two.get(url, headers=auditor).status_code == 200
        limited = one.get(url, headers=auditor)
        assert limited.status_code == 429
        assert limited.json()["type"] == "/problems/rate-limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert two.get(url, headers=auditor).status_code == 429
        assert two.get(url, headers=api_service.headers("admin")).status_code == 200
    finally:
        one.close()
        two.close()


def test_the_fast_checksum_is_eip55() -> None:
    """The wallet routes' own EIP-55 (one fast Keccak) equals eth-utils' for any case of any address."""
    import secrets

    from api.routers.wallets import eip55

    for _ in range(500):
        address = "0x" + secrets.token_hex(20)
        expected = to_checksum_address(address)
        assert eip55(address) == eip55("0x" + address[2:].upper()) == eip55(expected) == expected


def test_the_wallet_points_to_the_cheapest_reward_not_yet_affordable(api_service: Service) -> None:
    address = api_service.people[1].address
    body = api_service.get("member_a", f"/v1/wallets/{address}").json()
    balance = body["balance"]
    assert balance > 1
    assert body["next_reward"] is None and body["redeemable_count"] == 0
    assert body["rewards_url"] == f"/v1/rewards?max_points={balance}"
    now = api_service.chain_time()
    offers = [
        Reward(partner_id=ACTIVE, name="Croissant", points_price=balance + 10),
        Reward(partner_id=ACTIVE, name="Latte", points_price=balance - 1),
        # Cheaper than the croissant, but none of them can be redeemed now:
        Reward(partner_id=ACTIVE, name="Sold out", points_price=balance + 5, stock=0),
        Reward(partner_id=ACTIVE, name="Retired", points_price=balance + 3, retired_at=now - 1),
        Reward(partner_id=ACTIVE, name="Tomorrow", points_price=balance + 2, valid_from=now + 3600),
        Reward(partner_id=ACTIVE, name="Yesterday", points_price=1, valid_until=now),
        Reward(partner_id=ISSUE_ONLY, name="Accepts no points", points_price=balance + 1),
    ]
    with api_service.services.session() as db:
        for offer in offers:
            offer.created_at = now
            db.add(offer)
        db.flush()
        croissant = offers[0].id
    try:
        wallet = api_service.get("member_a", f"/v1/wallets/{address}").json()
        assert wallet["next_reward"] == {
            "reward_id": croissant,
            "partner_id": ACTIVE,
            "name": "Croissant",
            "points_price": balance + 10,
            "points_away": 10,
        }
        assert wallet["redeemable_count"] == 1
        member = api_service.get("member_a", f"/v1/members/{api_service.members['member_a']}/wallet").json()
        assert member["next_reward"] == wallet["next_reward"]
    finally:
        with api_service.services.session() as db:
            db.execute(delete(Reward))
