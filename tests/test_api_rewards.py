"""The rewards catalogue over HTTP: a partner manages its own (admin any), anyone reads it, ``/v1/rewards``
shows only what can be redeemed now and where, and the wallet shows the cheapest reward not yet affordable
("you are 10 points away") and how many the balance covers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_scenario import Service

from api.routers import rewards
from conftest import ACTIVE, ISSUE_ONLY

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module", autouse=True)
def _routes(api_service: Service) -> Iterator[None]:
    """The rewards routes, included here until the app registers them."""
    app: Any = api_service.client.app
    if not any(getattr(r, "path", "") == "/v1/rewards" for r in app.routes):
        app.include_router(rewards.router)
    yield


def _create(service: Service, caller: str, partner_id: int = ACTIVE, **body: Any) -> Any:
    return service.post(caller, f"/v1/partners/{partner_id}/rewards", json={"name": "Latte", **body})


def _all_open(service: Service, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = service.get("anonymous", "/v1/rewards", params=query).json()
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def test_a_partner_adds_rewards_to_its_own_catalogue_and_anyone_reads_it(api_service: Service) -> None:
    response = _create(api_service, "partner_a", points_price=120, description="any size", stock=5)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["partner_id"] == ACTIVE and body["partner_name"] == "Bean There Coffee"
    assert body["points_price"] == 120 and body["stock"] == 5 and body["available"] is True
    assert body["retired_at"] is None and body["created_at"] == api_service.services.now()
    listed = api_service.get("anonymous", f"/v1/partners/{ACTIVE}/rewards").json()["data"]
    assert body in listed
    for caller in ("member_a", "auditor", "partner_b"):
        assert api_service.get(caller, f"/v1/partners/{ACTIVE}/rewards/{body['id']}").json() == body
    admin = _create(api_service, "admin", partner_id=ISSUE_ONLY, points_price=400)
    assert admin.status_code == 201 and admin.json()["partner_id"] == ISSUE_ONLY


@pytest.mark.parametrize(
    ("caller", "partner_id", "status"),
    [
        ("partner_b", ACTIVE, 403),
        ("member_a", ACTIVE, 403),
        ("auditor", ACTIVE, 403),
        ("anonymous", ACTIVE, 401),
    ],
)
def test_only_the_owner_or_an_admin_manages_a_catalogue(
    api_service: Service, caller: str, partner_id: int, status: int
) -> None:
    reward = _create(api_service, "partner_a", points_price=50).json()
    assert _create(api_service, caller, partner_id=partner_id, points_price=1).status_code == status
    path = f"/v1/partners/{ACTIVE}/rewards/{reward['id']}"
    headers = api_service.headers(caller)
    assert api_service.client.patch(path, json={"points_price": 1}, headers=headers).status_code == status
    assert api_service.client.delete(path, headers=headers).status_code == status
    assert api_service.get("anonymous", path).json() == reward  # unchanged


@pytest.mark.parametrize(
    "body",
    [
        {"points_price": 0},
        {"points_price": 10**12 + 1},
        {"points_price": "5"},
        {"points_price": 5, "stock": -1},
        {"points_price": 5, "valid_from": 100, "valid_until": 100},
        {"points_price": 5, "name": " "},
        {"points_price": 5, "colour": "red"},
    ],
)
def test_an_invalid_reward_is_refused(api_service: Service, body: dict[str, Any]) -> None:
    response = _create(api_service, "partner_a", **body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unknown_partner_has_no_catalogue(api_service: Service) -> None:
    assert _create(api_service, "admin", partner_id=999, points_price=5).status_code == 404
    assert api_service.get("anonymous", "/v1/partners/999/rewards").status_code == 404


def test_the_owner_changes_and_retires_a_reward(api_service: Service) -> None:
    reward = _create(api_service, "partner_a", points_price=70, stock=2).json()
    path = f"/v1/partners/{ACTIVE}/rewards/{reward['id']}"
    headers = api_service.headers("partner_a")
    changed = api_service.client.patch(path, json={"points_price": 75, "stock": None}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["points_price"] == 75 and changed.json()["stock"] is None
    refused = api_service.client.patch(path, json={"valid_from": 200, "valid_until": 100}, headers=headers)
    assert refused.status_code == 422
    assert api_service.client.patch(path, json={"name": None}, headers=headers).status_code == 422
    retired = api_service.client.delete(path, headers=headers)
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    assert retired.json()["available"] is False
    again = api_service.client.delete(path, headers=headers)
    assert again.json()["retired_at"] == retired.json()["retired_at"]
    assert api_service.client.patch(path, json={"points_price": 1}, headers=headers).status_code == 404
    ids = [r["id"] for r in _all_open(api_service)]
    assert reward["id"] not in ids
    plain = api_service.get("anonymous", f"/v1/partners/{ACTIVE}/rewards", params={"limit": 500}).json()
    assert reward["id"] not in [r["id"] for r in plain["data"]]
    every = api_service.get(
        "anonymous", f"/v1/partners/{ACTIVE}/rewards", params={"limit": 500, "include_retired": True}
    ).json()
    assert reward["id"] in [r["id"] for r in every["data"]]


def test_only_what_can_be_redeemed_now_is_listed_across_partners(api_service: Service) -> None:
    now = api_service.services.now()
    open_ = _create(api_service, "partner_a", points_price=33).json()
    sold_out = _create(api_service, "partner_a", points_price=33, stock=0).json()
    later = _create(api_service, "partner_a", points_price=33, valid_from=now + 3600).json()
    over = _create(api_service, "partner_a", points_price=33, valid_until=now).json()
    # Partner 4 may issue but not accept points: its rewards cannot be redeemed anywhere now.
    not_accepting = _create(api_service, "partner_b", partner_id=ISSUE_ONLY, points_price=33).json()
    listed = _all_open(api_service)
    ids = [r["id"] for r in listed]
    assert open_["id"] in ids
    for hidden in (sold_out, later, over, not_accepting):
        assert hidden["id"] not in ids
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    assert all(r["available"] for r in listed)
    cheap = _all_open(api_service, max_points=33)
    assert all(r["points_price"] <= 33 for r in cheap) and open_["id"] in [r["id"] for r in cheap]
    assert all(r["partner_id"] == ACTIVE for r in _all_open(api_service, partner_id=ACTIVE))


def test_the_wallet_shows_the_next_reward_and_how_far_away_it_is(api_service: Service) -> None:
    address = api_service.people[1].address
    balance = api_service.get("member_a", f"/v1/wallets/{address}").json()["balance"]
    assert balance > 1
    _create(api_service, "partner_a", points_price=balance + 10, name="Croissant")
    _create(api_service, "partner_a", points_price=balance + 10, name="Sold out", stock=0)
    wallet = api_service.get("member_a", f"/v1/wallets/{address}").json()
    # An independent computation from the public catalogue.
    open_ = _all_open(api_service)
    above = sorted((r["points_price"], r["id"]) for r in open_ if r["points_price"] > balance)
    price, reward_id = above[0]
    assert wallet["next_reward"] == {
        "reward_id": reward_id,
        "partner_id": ACTIVE,
        "name": next(r["name"] for r in open_ if r["id"] == reward_id),
        "points_price": price,
        "points_away": price - balance,
    }
    assert wallet["redeemable_count"] == sum(1 for r in open_ if r["points_price"] <= balance)
    assert wallet["rewards_url"] == f"/v1/rewards?max_points={balance}"
    if price == balance + 10:
        assert wallet["next_reward"]["points_away"] == 10  # "you are 10 points away"
    member_view = api_service.get("member_a", f"/v1/members/{api_service.members['member_a']}/wallet").json()
    assert member_view["next_reward"] == wallet["next_reward"]
