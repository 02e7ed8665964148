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

Expected answers a check would flag falsely are configured per operation, as schemathesis' configuration
allows, each with its reason (:data:`SEMANTIC_REFUSALS`); nothing in the app is weakened for them.

Bounded for CI: ``LOYALTY_SCHEMATHESIS_EXAMPLES`` examples per operation and phase (default 10), fixed
seed, derandomized, no example database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
SEED = 20240601
CALLERS = ("anonymous", "auditor", "admin", "partner_a", "member_a")
#: How each caller's credentials are made anew: an API key's role and partner, or a member's session.
KEYS: dict[str, tuple[str, int | None]] = {
    "admin": ("admin", None),
    "auditor": ("auditor", None),
    "partner_a": ("partner", MEMBER_A_PARTNER),
}

#: Answers to schema-valid requests that are right although ``positive_data_acceptance`` expects 2xx (or
#: 401/403/404/409/429): what JSON Schema cannot state. Per operation path (a regex), the extra statuses.
SEMANTIC_REFUSALS: dict[str, tuple[str, ...]] = {
    # 422: an address in mixed case with a wrong EIP-55 checksum (a typo) matches ^0x[0-9a-fA-F]{40}$.
    r"^/v1/wallets/": ("422",),
    # 422: self custody needs an address and custodial takes none (or the link code's member has another
    # address); 410: a link code that is unknown, used or expired (a one-time code, not a resource).
    r"^/v1/members$": ("410", "422"),
    # 410: an enrolment token or challenge that is unknown, used or expired.
    r"^/v1/auth/passkeys/registration": ("410",),
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
        parsed = parse_token(token)
        assert parsed is not None
        prefix, token_id = parsed
        now = self.service.services.now()
        with self.service.services.session() as db:
            if prefix == API_KEY_PREFIX:
                key = db.get(ApiKey, token_id)
                return key is not None and key.revoked_at is None
            session = db.get(MemberSession, token_id)
            return session is not None and session.revoked_at is None and session.expires_at > now

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


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"max-steps": 8}},
            "operations": [
                {
                    "include-path-regex": path,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "429", *extra]
                        }
                    },
                }
                for path, extra in SEMANTIC_REFUSALS.items()
            ],
        }
    )


@pytest.fixture
def api_schema(api_service: Service, credentials: Credentials, caller: str) -> Any:
    """The app's API document, calling the app in process, as ``caller``."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_service.client.app, config=config())

    class Bearer:
        def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str | None:
            return credentials.token(caller)

        def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    schema.auth(refresh_interval=None)(Bearer)
    return schema


@pytest.fixture(autouse=True)
def _node_id(request: pytest.FixtureRequest) -> Iterator[None]:
    """schemathesis' pytest loader (4.32) reads and rewrites ``item._nodeid``, which pytest 9 no longer has
    (the node id is computed): give it the attribute it names each operation's subtest with."""
    request.node._nodeid = request.node.nodeid
    yield


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_stateful_scenarios_conform(api_schema: Any) -> None:
    machine = api_schema.as_state_machine()
    machine.run(
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=8,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
