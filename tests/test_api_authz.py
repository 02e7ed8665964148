"""The authorization matrix: every endpoint x every kind of caller -> the exact status.

Callers (tests/api_scenario.py): anonymous, member_a / member_b (sessions of members enrolled by partner A /
partner B), partner_a / partner_b (keys of partners 1 and 4), auditor, admin, revoked (a revoked partner A
key), expired (member A's expired session). Rows name the resources of A (member A, A's wallet, partner
1): B reading A's is broken object level authorization (BOLA) and must fail; an auditor or partner on an
admin endpoint is broken function level authorization and must fail. A route missing from the matrix fails
the completeness test, so a new endpoint cannot ship without its row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from api_scenario import Service

from api._rulebook import bind_partner
from api._rules import RuleSet, rule_hash

pytestmark = pytest.mark.anvil

CALLERS = (
    "anonymous",
    "member_a",
    "member_b",
    "partner_a",
    "partner_b",
    "auditor",
    "admin",
    "revoked",
    "expired",
)
#: every caller without valid credentials
DEAD = {"revoked": 401, "expired": 401}


def only(allowed: dict[str, int], *, others: int = 403, anonymous: int = 401) -> dict[str, int]:
    """The statuses for ``allowed`` callers, ``others`` for the rest, 401 for anonymous and dead ones."""
    out = {c: others for c in CALLERS} | {"anonymous": anonymous} | DEAD
    return out | allowed


def everyone(status: int, *, dead: int = 401) -> dict[str, int]:
    return {c: status for c in CALLERS} | {"revoked": dead, "expired": dead}


READERS = {"auditor": 200, "admin": 200}
KEYS_ONLY = ("partner_a", "partner_b", "auditor", "admin")


@dataclass(frozen=True)
class Row:
    method: str
    #: a route path with ``{A}`` (member A's id), ``{WA}`` (A's wallet), ``{B}`` (member B's id), ``{KEY}``
    path: str
    expected: dict[str, int]
    body: Callable[[str], Any] | None = None
    #: the route it exercises, when the path has concrete values in place of its parameters
    route: str | None = None


def _member_body(caller: str) -> dict[str, Any]:
    return {"customer_id": f"matrix-{caller}"}


#: partner 1's rule set in the matrix (partner 4 has none: its writes answer 409)
RULES: dict[str, Any] = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}}
RULES_HASH = "0x" + rule_hash(bind_partner(RuleSet.model_validate(RULES), 1)).hex()
CUSTOMER = {"address": "0x" + "7" * 40}


def _order(caller: str) -> dict[str, Any]:
    return {
        "order_id": f"matrix-{caller}",
        "member": CUSTOMER,
        "channel": "pos",
        "currency": "EUR",
        "amount": 500,
    }


ROWS = [
    # ---------------------------------------------------------------- wallets
    Row(
        "GET",
        "/v1/wallets/{WA}",
        only({"member_a": 200, "partner_a": 200} | READERS),
        route="/v1/wallets/{address}",
    ),
    Row(
        "GET",
        "/v1/wallets/{WA}/history",
        only({"member_a": 200, "partner_a": 200} | READERS),
        route="/v1/wallets/{address}/history",
    ),
    # ---------------------------------------------------------------- members
    Row("GET", "/v1/members", only({"partner_a": 200, "partner_b": 200} | READERS)),
    Row(
        "POST",
        "/v1/members",
        only({"partner_a": 201, "partner_b": 201}),
        body=_member_body,
    ),
    Row(
        "GET",
        "/v1/members/by-customer-id/cust-member_a",
        only({"partner_a": 200, "partner_b": 404}),
        route="/v1/members/by-customer-id/{customer_id}",
    ),
    *(
        Row(
            "GET",
            "/v1/members/{A}" + tail,
            only({"member_a": 200, "partner_a": 200} | READERS, others=404),
            route="/v1/members/{member_id}" + tail,
        )
        for tail in ("", "/wallet", "/history")
    ),
    Row(
        "PATCH",
        "/v1/members/{A}",
        only({"partner_a": 200, "partner_b": 404}),
        body=lambda _: {"phone": "+15550001111"},
        route="/v1/members/{member_id}",
    ),
    Row(
        "POST",
        "/v1/members/{A}/enrolment-links",
        # member A holds their own key: no passkey enrolment for them (409), whoever asks may
        only({"partner_a": 409, "partner_b": 404}),
        route="/v1/members/{member_id}/enrolment-links",
    ),
    Row("GET", "/v1/me", only({"member_a": 200, "member_b": 200})),
    Row("POST", "/v1/me/link-codes", only({"member_a": 201, "member_b": 201})),
    Row("GET", "/v1/session", only({"member_a": 200, "member_b": 200})),
    # ---------------------------------------------------------------- sign-in (anyone may try)
    Row("POST", "/v1/auth/siwe/nonce", everyone(200)),
    Row("POST", "/v1/auth/siwe", everyone(401), body=lambda _: {"message": "hello", "signature": "0x00"}),
    Row(
        "POST",
        "/v1/auth/passkeys/registration/options",
        everyone(410),
        body=lambda _: {"enrolment_token": "x" * 43},
    ),
    Row(
        "POST",
        "/v1/auth/passkeys/registration",
        everyone(410),
        body=lambda _: {"enrolment_token": "x" * 43, "challenge": "y" * 43, "credential": {}},
    ),
    Row("POST", "/v1/auth/passkeys/login/options", everyone(200)),
    Row(
        "POST",
        "/v1/auth/passkeys/login",
        everyone(401),
        body=lambda _: {"challenge": "y" * 43, "credential": {}},
    ),
    # ---------------------------------------------------------------- partners (the directory is public)
    Row("GET", "/v1/partners", everyone(200)),
    Row("GET", "/v1/partners/1", everyone(200), route="/v1/partners/{partner_id}"),
    Row(
        "PUT",
        "/v1/partners/1/profile",
        only({"admin": 200}),
        body=lambda _: {"name": "Bean There Coffee", "spend_at": "all stores"},
        route="/v1/partners/{partner_id}/profile",
    ),
    *(
        Row(
            "GET",
            f"/v1/partners/1/{name}",
            only({"partner_a": 200} | READERS),
            route=f"/v1/partners/{{partner_id}}/{name}",
        )
        for name in ("position", "statement", "prices")
    ),
    Row(
        "POST",
        "/v1/partners/1/prices",
        only({"admin": 201}),
        body=lambda c: {
            "effective_from": 4_000_000_000 + len(c),
            "currency": "EUR",
            "issue_price": "0.01",
            "redeem_price": "0.008",
        },
        route="/v1/partners/{partner_id}/prices",
    ),
    Row("GET", "/v1/coalition/position", only(READERS)),
    Row("GET", "/v1/stats", only(READERS)),
    Row("GET", "/v1/stats?partner=1", only({"partner_a": 200} | READERS), route="/v1/stats"),
    # ---------------------------------------------------------------- rules and quotes
    Row(
        "POST",
        "/v1/partners/1/rule-sets",
        # the first writer creates it (201); the same rules again answer the same rule set (200)
        only({"partner_a": 201, "admin": 200}),
        body=lambda _: RULES,
        route="/v1/partners/{partner_id}/rule-sets",
    ),
    Row(
        "GET",
        "/v1/partners/1/rule-sets",
        only({"partner_a": 200} | READERS),
        route="/v1/partners/{partner_id}/rule-sets",
    ),
    Row(
        "POST",
        f"/v1/partners/1/rule-sets/{RULES_HASH}/activate",
        only({"partner_a": 200, "admin": 200}),
        route="/v1/partners/{partner_id}/rule-sets/{hash}/activate",
    ),
    Row("GET", f"/v1/rules/{RULES_HASH}", everyone(200), route="/v1/rules/{hash}"),
    Row(
        "POST",
        "/v1/quotes",
        only({"partner_a": 200, "partner_b": 409, "admin": 200}),
        body=lambda c: (
            {"channel": "pos", "currency": "EUR", "amount": 500} | ({"partner_id": 1} if c == "admin" else {})
        ),
    ),
    # ---------------------------------------------------------------- earning and operations
    Row("POST", "/v1/purchases", only({"partner_a": 201, "partner_b": 409}), body=_order),
    Row(
        "POST",
        "/v1/returns",
        only({"partner_a": 404, "partner_b": 404}),
        body=lambda c: {"order_id": f"none-{c}", "return_id": f"r-{c}", "amount": 1},
    ),
    Row(
        "POST",
        "/v1/engagements",
        only({"partner_a": 201, "partner_b": 409}),
        body=lambda _: {"kind": "newsletter", "member": CUSTOMER},
    ),
    Row(
        "POST",
        "/v1/adjustments",
        only({"partner_a": 201, "partner_b": 201, "admin": 201}),
        body=lambda c: (
            {
                "adjustment_id": f"matrix-{c}",
                "member": CUSTOMER,
                "points": 5,
                "kind": "goodwill",
                "reason": "the matrix",
            }
            | ({"partner_id": 1} if c == "admin" else {})
        ),
    ),
    Row("GET", "/v1/operations", everyone(200) | {"anonymous": 401}),
    Row(
        "GET",
        "/v1/operations/op_1",
        only({"partner_a": 200} | READERS, others=404),
        route="/v1/operations/{operation_id}",
    ),
    # ---------------------------------------------------------------- rewards and redemptions
    Row(
        "POST",
        "/v1/partners/1/rewards",
        only({"partner_a": 201, "admin": 201}),
        body=lambda c: {"name": f"matrix {c}", "points_price": 100},
        route="/v1/partners/{partner_id}/rewards",
    ),
    Row("GET", "/v1/partners/1/rewards", everyone(200), route="/v1/partners/{partner_id}/rewards"),
    Row(
        "GET",
        "/v1/partners/1/rewards/1",
        everyone(200),
        route="/v1/partners/{partner_id}/rewards/{reward_id}",
    ),
    Row(
        "PATCH",
        "/v1/partners/1/rewards/1",
        only({"partner_a": 200, "admin": 200}),
        body=lambda _: {"points_price": 150},
        route="/v1/partners/{partner_id}/rewards/{reward_id}",
    ),
    # ---------------------------------------------------------------- webhooks
    Row(
        "POST",
        "/v1/partners/1/webhooks",
        only({"partner_a": 201, "admin": 201}),
        body=lambda c: {"url": f"https://crm.example/{c}", "events": ["points.issued"]},
        route="/v1/partners/{partner_id}/webhooks",
    ),
    Row(
        "GET",
        "/v1/partners/1/webhooks",
        only({"partner_a": 200} | READERS),
        route="/v1/partners/{partner_id}/webhooks",
    ),
    # no such webhook of partner 1: its readers and owners learn that (404); the others are refused (403)
    *(
        Row(
            method,
            f"/v1/partners/1/webhooks/wh_{'0' * 24}{tail}",
            only({"partner_a": 404, "admin": 404} | ({"auditor": 404} if method == "GET" else {})),
            route="/v1/partners/{partner_id}/webhooks/{webhook_id}" + route,
        )
        for method, tail, route in (
            ("GET", "", ""),
            ("DELETE", "", ""),
            ("POST", "/secret", "/secret"),
            ("GET", "/deliveries", "/deliveries"),
            ("GET", "/deliveries/dlv_1", "/deliveries/{delivery_id}"),
            ("POST", "/deliveries/dlv_1/replay", "/deliveries/{delivery_id}/replay"),
        )
    ),
    # ---------------------------------------------------------------- rewards and redemptions
    Row("GET", "/v1/rewards", everyone(200)),
    # the calling key itself (the pages ask whose figures to show); a partner's own keys
    Row("GET", "/v1/api-key", only({c: 200 for c in KEYS_ONLY})),
    Row(
        "GET",
        "/v1/partners/1/api-keys",
        only({"partner_a": 200} | READERS),
        route="/v1/partners/{partner_id}/api-keys",
    ),
    Row(
        "POST",
        "/v1/redemptions/intents",
        # the typed data to sign (nothing is stored: 200); partner B asks for a member not its own: 404
        only({"partner_a": 200, "partner_b": 404}),
        body=lambda _: {"member": {"customer_id": "cust-member_a"}, "amount": 1},
    ),
    Row(
        "POST",
        "/v1/redemptions",
        # no such code: a partner key alone never spends a member's points
        only({"partner_a": 410, "partner_b": 410}),
        body=lambda _: {"member": {"address": "0x" + "7" * 40}, "code": "0000000000", "amount": 1},
    ),
    Row(
        "POST",
        "/v1/redemptions/op_1/refunds",
        # op_1 is partner A's purchase, not a redemption
        only({"partner_a": 404, "partner_b": 404}),
        body=lambda c: {"refund_id": f"matrix-{c}", "amount": 1},
        route="/v1/redemptions/{operation_id}/refunds",
    ),
    Row("GET", "/v1/me/redemption-codes", only({"member_a": 200, "member_b": 200})),
    Row(
        "POST",
        "/v1/me/redemption-codes",
        # members A and B hold their own keys (SIWE sessions): codes are for custodial members' passkeys
        only({"member_a": 403, "member_b": 403}),
        body=lambda _: {"partner_id": 1, "max_points": 10},
    ),
    Row(
        "DELETE",
        "/v1/me/redemption-codes/0000000000000000",
        only({"member_a": 404, "member_b": 404}),
        route="/v1/me/redemption-codes/{code_id}",
    ),
    Row(
        "POST",
        "/v1/me/consent-revocations",
        # a signature that recovers nobody
        only({"member_a": 422, "member_b": 422}),
        body=lambda _: {"nonce": "1", "signature": "0x" + "11" * 65, "partner_id": 1},
    ),
    # ---------------------------------------------------------------- coalition operations
    # (the scenario's service holds no admin key for the chain: an admin passes and meets 503)
    *(
        Row("POST", f"/v1/admin/{path}", only({"admin": 503}), body=body, route=route)
        for path, body, route in (
            (
                "partners",
                lambda _: {"partner_id": 77, "name": "Matrix", "operator": "0x" + "8" * 40, "allowance": 1},
                None,
            ),
            ("partners/1/allowance", lambda _: {"increase": 1}, "/v1/admin/partners/{partner_id}/allowance"),
            *(
                (f"partners/1/{verb}", None, f"/v1/admin/partners/{{partner_id}}/{verb}")
                for verb in ("suspend", "reactivate", "offboard")
            ),
            (
                "partners/1/operator",
                lambda _: {"new_operator": "0x" + "8" * 40},
                "/v1/admin/partners/{partner_id}/operator",
            ),
            (
                "partners/1/rights",
                lambda _: {"can_issue": True, "can_accept": True},
                "/v1/admin/partners/{partner_id}/rights",
            ),
            (
                "partners/1/settlement-address",
                lambda _: {"settlement_address": "0x" + "8" * 40},
                "/v1/admin/partners/{partner_id}/settlement-address",
            ),
            ("settlement-value", lambda _: {"value": 2}, None),
            ("settlements", lambda _: {"partner_id": 1, "points": 1, "value": 1, "payment_ref": "x"}, None),
            ("transfers", lambda _: {"enabled": True}, None),
            ("pause", None, None),
            ("unpause", None, None),
            ("operations/adm_1/execute", None, "/v1/admin/operations/{operation_id}/execute"),
            ("operations/adm_1/cancel", None, "/v1/admin/operations/{operation_id}/cancel"),
        )
    ),
    Row("GET", "/v1/admin/operations", only({"admin": 503, "auditor": 503})),
    Row(
        "GET",
        "/v1/admin/operations/adm_1",
        only({"admin": 503, "auditor": 503}),
        route="/v1/admin/operations/{operation_id}",
    ),
    # ---------------------------------------------------------------- admin
    Row("GET", "/v1/admin/api-keys", only({"admin": 200})),
    Row(
        "POST",
        "/v1/admin/api-keys",
        only({"admin": 201}),
        body=lambda c: {"role": "auditor", "name": f"matrix {c}"},
    ),
    Row(
        "POST",
        "/v1/admin/api-keys/{KEY}/rotate",
        only({"admin": 201}),
        route="/v1/admin/api-keys/{key_id}/rotate",
    ),
    # ---------------------------------------------------------------- audit
    *(
        Row("GET", f"/v1/audit/{name}", only(READERS))
        for name in (
            "entries",
            "export",
            "supply",
            "head",
            "reconciliation",
            "admin-operations",
            "reference-keys",
        )
    ),
    # ---------------------------------------------------------------- health
    Row("GET", "/healthz", everyone(200, dead=200)),
    Row("GET", "/readyz", everyone(200, dead=200)),
]

#: Rows that end something (run last, in this order): revoking a key, erasing B's data, signing out.
FINAL_ROWS = [
    Row(
        "DELETE",
        "/v1/partners/1/rewards/1",
        only({"partner_a": 200, "admin": 200}),
        route="/v1/partners/{partner_id}/rewards/{reward_id}",
    ),
    Row("DELETE", "/v1/admin/api-keys/{KEY}", only({"admin": 200}), route="/v1/admin/api-keys/{key_id}"),
    Row(
        "DELETE",
        "/v1/members/{B}/personal-data",
        only({"member_b": 200, "partner_b": 200, "admin": 200, "partner_a": 404, "member_a": 404}),
        route="/v1/members/{member_id}/personal-data",
    ),
    Row("DELETE", "/v1/session", only({"member_a": 204, "member_b": 204})),
]


def _concrete(service: Service, path: str, key_id: str) -> str:
    return (
        path.replace("{A}", service.members["member_a"])
        .replace("{B}", service.members["member_b"])
        .replace("{WA}", service.people[1].address)
        .replace("{KEY}", key_id)
    )


def _throwaway_key(service: Service) -> str:
    response = service.post("admin", "/v1/admin/api-keys", json={"role": "auditor", "name": "matrix target"})
    assert response.status_code == 201
    return str(response.json()["id"])


def _check(service: Service, row: Row) -> list[str]:
    wrong = []
    # The admin goes last on rows that use up the key (rotate, revoke), the member sessions last overall.
    order = sorted(CALLERS, key=lambda c: (c == "admin", c.startswith("member")))
    key_id = _throwaway_key(service)
    for caller in order:
        path = _concrete(service, row.path, key_id)
        kwargs: dict[str, Any] = {"headers": service.headers(caller)}
        if row.body is not None:
            kwargs["json"] = row.body(caller)
        response = service.client.request(row.method, path, **kwargs)
        if response.status_code != row.expected[caller]:
            wrong.append(
                f"{row.method} {row.path} as {caller}: {response.status_code} != {row.expected[caller]}"
            )
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", (row.path, caller)
    return wrong


def test_authorization_matrix(api_service: Service) -> None:
    wrong: list[str] = []
    for row in [*ROWS, *FINAL_ROWS]:
        wrong += _check(api_service, row)
    assert not wrong, "\n".join(wrong)


def test_every_route_is_in_the_matrix(api_service: Service) -> None:
    paths = api_service.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    covered = {(row.method, (row.route or row.path).split("?")[0]) for row in [*ROWS, *FINAL_ROWS]}
    assert routes - covered == set(), "routes without a row in the authorization matrix"
    assert covered - routes == set(), "matrix rows for routes that do not exist"


def test_a_revoked_key_is_refused_from_the_next_request_on(api_service: Service) -> None:
    created = api_service.post(
        "admin", "/v1/admin/api-keys", json={"role": "auditor", "name": "soon revoked"}
    )
    token, key_id = created.json()["token"], created.json()["id"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api_service.client.get("/v1/audit/head", headers=bearer).status_code == 200
    listed = api_service.get("admin", "/v1/admin/api-keys").json()["data"]
    assert next(k for k in listed if k["id"] == key_id)["last_used_at"] is not None
    assert token not in api_service.get("admin", "/v1/admin/api-keys").text
    assert (
        api_service.client.delete(
            f"/v1/admin/api-keys/{key_id}", headers=api_service.headers("admin")
        ).status_code
        == 200
    )
    refused = api_service.client.get("/v1/audit/head", headers=bearer)
    assert refused.status_code == 401 and refused.json()["type"] == "/problems/unauthenticated"
    # Rotation: the new key works, the old one stops at once.
    created = api_service.post(
        "admin", "/v1/admin/api-keys", json={"role": "partner", "name": "pos", "partner_id": 1}
    )
    old = {"Authorization": f"Bearer {created.json()['token']}"}
    rotated = api_service.post("admin", f"/v1/admin/api-keys/{created.json()['id']}/rotate").json()
    assert (
        rotated["role"] == "partner"
        and rotated["partner_id"] == 1
        and rotated["rotated_from"] == created.json()["id"]
    )
    assert rotated["token"].startswith(f"lpk_{rotated['id']}_")
    assert api_service.client.get("/v1/members", headers=old).status_code == 401
    new = {"Authorization": f"Bearer {rotated['token']}"}
    assert api_service.client.get("/v1/members", headers=new).status_code == 200


def test_malformed_credentials(api_service: Service) -> None:
    for header in (
        "Basic abc",
        "Bearer",
        "Bearer lpk_short",
        "Bearer lpk_000000000000_" + "x" * 43,
        "Bearer ls_x_y",
    ):
        response = api_service.client.get("/v1/members", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")
