"""The service against its own API document (schemathesis): every operation, as every kind of caller.

The schema is loaded from the app of ``api_service`` (in process, over ASGI) and every operation is run
through schemathesis' phases (the document's examples, coverage of boundaries and of missing or unexpected
parts, fuzzing) in positive and negative mode, with every check (server errors, status codes, content
types, response schemas and headers, rejection of invalid data, acceptance of valid data, missing
required headers, unsupported methods and ``Allow``, ignored authentication), then as stateful scenarios
that follow the document's links (use after free, availability of what was just created).

Each run is one caller's, so every operation is exercised with access and without: anonymous, auditor,
admin, partner A (its key) and member A (a session). The caller's bearer token is set by an auth provider
on the schema, so schemathesis knows it as explicit authentication: it leaves it out where it tests a
missing ``Authorization`` header and probes the operations that succeed with it again without it and with
a wrong one (``ignored_auth``). A run may revoke its own credentials (an admin revokes or rotates any key,
a member signs out): :class:`Credentials` issues new ones when that happened.

Answers a check would flag falsely are configured per operation, as schemathesis' configuration allows,
each with its reason (:data:`SEMANTIC_REFUSALS`, :data:`CHECKS_OFF`); nothing in the app is weakened for
them.

Bounded for CI (about a minute per database on two cores): ``LOYALTY_SCHEMATHESIS_EXAMPLES`` fuzzed
examples per operation and mode and scenarios per stateful run (default 10), fixed seed, derandomized, no
example database; the methods an operation lacks are tried in one caller's run, and the anonymous run
covers boundaries only where anonymous callers are served (elsewhere it meets 401 before any of them).
"""

from __future__ import annotations

import os
import re
from typing import Any

import hypothesis
import pytest
import schemathesis
from api_scenario import MEMBER_A_PARTNER, Service

from api._keys import create_key
from api._sessions import open_session
from api._tables import ApiKey, MemberSession
from api._tokens import API_KEY_PREFIX, parse_token

pytestmark = pytest.mark.anvil

#: Examples per operation (fuzzing) and scenarios per stateful run; more effort: set it higher.
EXAMPLES = int(os.environ.get("LOYALTY_SCHEMATHESIS_EXAMPLES", "10"))
#: Steps per stateful scenario.
STEPS = 8
#: schemathesis' seed (each operation's derives from it)
SEED = 20240601
CALLERS = ("anonymous", "auditor", "admin", "partner_a", "member_a")
#: The run that tries the methods an operation does not have: routing refuses them before anything looks
#: at the caller, so once, not once per caller.
UNEXPECTED_METHODS_CALLER = "admin"
#: How each caller's credentials are made anew: an API key's role and partner, or a member's session.
KEYS: dict[str, tuple[str, int | None]] = {
    "admin": ("admin", None),
    "auditor": ("auditor", None),
    "partner_a": ("partner", MEMBER_A_PARTNER),
}

#: What ``positive_data_acceptance`` expects by default.
POSITIVE_EXPECTED = ("2xx", "3xx", "401", "403", "404", "409", "429", "5xx")
#: Answers to schema-valid requests that are right although ``positive_data_acceptance`` expects 2xx (or
#: 401/403/404/409/429): rules JSON Schema cannot state. Per operation path (a regex), the extra statuses.
#: An anonymous caller meets none of them: it is refused (401) first, except where anonymous callers are
#: served (sign-in, :data:`ANONYMOUS_ROUTES`).
SEMANTIC_REFUSALS: dict[str, tuple[str, ...]] = {
    # 422: an address in mixed case with a wrong EIP-55 checksum (a typo) matches ^0x[0-9a-fA-F]{40}$.
    r"^/v1/wallets/": ("422",),
    # 422: an integral float (34.0) for an integer field, which the strict request models refuse.
    r"^/v1/partners/\{partner_id\}/webhooks$": ("422",),
    # 422: self custody needs an address and custodial takes none (or the link code's member has another
    # address); 410: a link code that is unknown, used or expired (a one-time code, not a resource).
    r"^/v1/members$": ("410", "422"),
    # 422: a partner key needs a partner_id, an admin or auditor key takes none.
    r"^/v1/admin/api-keys$": ("422",),
    # 410: an enrolment token or challenge that is unknown, used or expired.
    r"^/v1/auth/passkeys/registration": ("410",),
    # 422: a time or block range that ends before it begins, or spans more periods than one answer holds
    # (and, for the audit's account filter, a wrong EIP-55 checksum).
    r"^/v1/(partners/\{partner_id\}/(position|statement)|coalition/position|stats)$": ("422",),
    r"^/v1/audit/(entries|export|supply)$": ("422",),
    # 422: a price that takes effect in the past (past prices are never rewritten).
    r"^/v1/partners/\{partner_id\}/prices$": ("422",),
    # 422: a campaign that ends before it starts, or with both or neither of multiplier and bonus; two
    # campaigns of one name.
    r"^/v1/partners/\{partner_id\}/rule-sets$": ("422",),
    # 422: no rate for the order's currency; an admin key without partner_id; an address with a wrong
    # EIP-55 checksum; an integral float (405828.0) where the document says integer: the API takes JSON
    # integers only (strict), which JSON Schema cannot tell from 405828.
    r"^/v1/(quotes|purchases|returns|engagements|adjustments)$": ("422",),
    # 410: a redemption code that is unknown, used, expired or revoked (a one-time code); 422: a consent
    # whose signature recovers someone else, an expired or mismatched intent, an integral float.
    r"^/v1/redemptions": ("410", "422"),
    # 422: a revocation signature that recovers someone else; an integral float (13.0) for an integer.
    r"^/v1/me/(consent-revocations|redemption-codes)": ("422",),
    # 422: a validity window that ends before it starts; an integral float for an integer.
    r"^/v1/partners/\{partner_id\}/rewards": ("422",),
}
#: Coalition operations act on the chain the module shares (pause, rotate operators): the scenario's service
#: holds no key for them and answers 503, which the checks would read as a server error. They are fuzzed
#: against a live coalition of their own in tests/test_api_coalition.py.
COALITION = r"^/v1/admin/(?!api-keys)"
ANONYMOUS_ROUTES = "^/v1/auth/"
#: The operations an anonymous caller is served by (the others refuse it before reading the request: its
#: run fuzzes them, the boundary cases of the coverage phase would all meet the same 401).
PUBLIC = r"^/v1/auth/|^/v1/rules/|^/(healthz|readyz)$"

#: Checks that misread an operation's answer, per operation path (a regex), with the reason.
CHECKS_OFF: dict[str, tuple[str, ...]] = {
    # Erasing a member's personal data erases the partner's customer id with it, so the lookup by customer
    # id answers 404 afterwards; the check counts only a DELETE of the created resource's own path as its
    # end, and takes the erasure (DELETE /v1/members/{id}/personal-data) for a lost resource.
    r"^/v1/members/by-customer-id/": ("ensure_resource_availability",),
}


class Credentials:
    """The callers' bearer tokens; a revoked key or a closed session is replaced by a new one."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.tokens = dict(service.tokens)

    def token(self, caller: str) -> str | None:
        if caller == "anonymous":
            return None
        token = self.tokens[caller]
        if not self._live(token):
            token = self.tokens[caller] = self._new(caller)
        return token

    def _live(self, token: str) -> bool:
        """Not revoked (the service's clock is the chain's, which stands still here: nothing expires)."""
        parsed = parse_token(token)
        assert parsed is not None
        prefix, token_id = parsed
        with self.service.services.session() as db:
            row = db.get(ApiKey if prefix == API_KEY_PREFIX else MemberSession, token_id)
            return row is not None and getattr(row, "revoked_at", None) is None

    def _new(self, caller: str) -> str:
        now = self.service.services.now()
        with self.service.services.session() as db:
            if caller in KEYS:
                role, partner_id = KEYS[caller]
                return create_key(db, role=role, name=f"{caller} again", partner_id=partner_id, now=now).token
            issued, _ = open_session(db, self.service.members[caller], "siwe", now=now, ttl_s=3600)
            return issued.token


@pytest.fixture(scope="module")
def credentials(api_service: Service) -> Credentials:
    return Credentials(api_service)


@pytest.fixture(params=CALLERS)
def caller(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config(caller: str) -> schemathesis.Config:
    """The run's settings: bounded and reproducible, every check, the refusals above for this caller."""
    refusals = {
        path: statuses
        for path, statuses in SEMANTIC_REFUSALS.items()
        if caller != "anonymous" or path.startswith(ANONYMOUS_ROUTES)
    }
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {
                "stateful": {"max-steps": STEPS},
                "coverage": {} if caller == UNEXPECTED_METHODS_CALLER else {"unexpected-methods": []},
            },
            "operations": [
                {"include-path-regex": COALITION, "enabled": False},
                *(
                    {
                        "include-path-regex": path,
                        "checks": {
                            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, *extra]}
                        },
                    }
                    for path, extra in refusals.items()
                ),
                *(
                    {"include-path-regex": path, "checks": {name: {"enabled": False} for name in checks}}
                    for path, checks in CHECKS_OFF.items()
                ),
                *(
                    [{"exclude-path-regex": PUBLIC, "phases": {"coverage": {"enabled": False}}}]
                    if caller == "anonymous"
                    else []
                ),
            ],
        }
    )


@pytest.fixture
def api_schema(api_service: Service, credentials: Credentials, caller: str) -> Any:
    """The app's API document, calling the app in process, as ``caller``."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_service.client.app, config=config(caller))

    class Bearer:
        def get(self, case: schemathesis.Case[Any], context: schemathesis.AuthContext) -> str | None:
            return credentials.token(caller)

        def set(self, case: schemathesis.Case[Any], data: str, context: schemathesis.AuthContext) -> None:
            case.headers["Authorization"] = f"Bearer {data}"

    schema.auth(refresh_interval=None)(Bearer)
    return schema


@pytest.fixture(autouse=True)
def _node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis' pytest loader (4.32) reads and rewrites ``item._nodeid``, which pytest 9 no longer has
    (the node id is computed): give it the attribute it names each operation's subtest with."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_conforms(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()


#: The workflows the stateful scenarios follow, each an API document of its own (a path regex; None: the
#: whole document). schemathesis starts a scenario only at an operation it judges likely to succeed with
#: generated data, and with a list (``GET /v1/partners``) in the document it would never start one at
#: ``POST /v1/members`` (its ``customer_id`` reads as a reference to a resource nothing returns).
WORKFLOWS: dict[str, str | None] = {
    "enrolment": r"^/v1/(members|wallets)",  # a partner enrols; the member's links; erasure
    "keys": r"^/v1/admin/",  # create, rotate, revoke
    "own": r"^/v1/(me|session)(/|$)|^/v1/members/\{member_id\}",  # a member's own data, link codes, sign-out
    "document": None,
}
#: Who follows which workflow: the callers it is written for, and every caller through the whole document
#: (the others would only meet 401 or 403 at the first step, as every operation's own test does).
SCENARIOS = [
    ("partner_a", "enrolment"),
    ("admin", "enrolment"),
    ("admin", "keys"),
    ("member_a", "own"),
    *((caller, "document") for caller in CALLERS),
]


def only(schema: Any, pattern: str) -> Any:
    """The operations whose path matches ``pattern``. (Not ``include``: with operation settings in the
    configuration, schemathesis 4.32 ORs an include with a filter that admits every operation.)"""
    return schema.exclude(lambda ctx: re.search(pattern, ctx.operation.path) is None)


@pytest.mark.parametrize(("caller", "workflow"), SCENARIOS)
def test_stateful_scenarios_conform(api_schema: Any, workflow: str) -> None:
    pattern = WORKFLOWS[workflow]
    schema = api_schema if pattern is None else only(api_schema, pattern)
    schema.as_state_machine().run(
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
