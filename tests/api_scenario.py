"""The service over a real ledger: a scripted scenario on anvil, mirrored by the indexer, served by the app.

:func:`build_service` deploys the ledger (one-day epochs, three valid) on the session's anvil, runs
:func:`conftest.ledger_activity` (single and batch issues, a redemption, reversals, a refund, settlements, a
rotation, a migration and a recovery, a pause, ...), then lets time pass so the oldest points expire, sweeps
one wallet and issues again; indexes the chain into the given database; and builds the app with real keys
and sessions for every kind of caller:

    admin, auditor              API keys
    partner_a, partner_b        partner keys of ACTIVE (1) and ISSUE_ONLY (4)
    revoked                     a partner key of ACTIVE, revoked
    member_a, member_b          sessions of two self-custody members (A enrolled by partner A, B by B)
    expired                     a session of member A that has expired

The app's clock is the chain's (the latest block's timestamp), so live figures are the contract's views
at the latest block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api import Settings, create_app
from api._custody import Custody
from api._db import migrate_all
from api._keys import create_key, revoke_key
from api._ratelimit import RateLimiter
from api._services import Services
from api._sessions import open_session
from api._tables import Member, Membership, PartnerProfile
from chain import Points, ReasonCode
from conftest import (
    ACTIVE,
    ISSUE_ONLY,
    AnvilNode,
    Ledger,
    chain_ledger,
    deploy_ledger,
    ledger_activity,
    mirror,
    random_ref,
)
from indexer import make_engine

__all__ = ["DAY", "Service", "build_service", "scenario_chain"]

DAY = 24 * 3600
MEMBER_A_PARTNER, MEMBER_B_PARTNER = ACTIVE, ISSUE_ONLY


@dataclass
class Service:
    ledger: Ledger
    people: list[LocalAccount]
    engine: Engine
    client: TestClient
    services: Services
    database_url: str
    #: bearer tokens by caller name (see the module docstring); "anonymous" has none
    tokens: dict[str, str] = field(default_factory=dict)
    #: member ids: "member_a", "member_b"
    members: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def get(self, caller: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.client.get(url, headers=self.headers(caller) | (headers or {}), **kwargs)

    def post(self, caller: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers(caller) | (headers or {}), **kwargs)

    def sync(self) -> None:
        """Mirror what happened on chain since the last sync."""
        with mirror(self.ledger, self.database_url) as indexer:
            indexer.sync()

    def chain_time(self) -> int:
        return int(self.ledger.w3.eth.get_block("latest")["timestamp"])


def scenario_chain(node: AnvilNode) -> tuple[Ledger, list[LocalAccount]]:
    """The ledger and the scenario's customers, on ``node`` (revert the node yourself afterwards)."""
    first = node.w3.eth.block_number + 1
    ledger = deploy_ledger(node, epoch_length=DAY, validity=3)
    ledger.deployment_block = first
    people = ledger_activity(ledger, customers=4)
    # Time passes: the points of the first days expire; one wallet is swept; points are issued again.
    node.advance_time(3 * DAY)
    partner = chain_ledger(ledger, ledger.actors.partner)
    partner.issue(people[1].address, Points(40), random_ref(), ReasonCode(1)).wait()
    partner.sweep_expired([people[3].address]).wait()
    partner.issue_batch(
        [people[1].address, people[3].address],
        [Points(15), Points(25)],
        [random_ref(), random_ref()],
        ReasonCode(6),
    ).wait()
    issuer = chain_ledger(ledger, ledger.actors.issue_only)
    issuer.issue(people[3].address, Points(60), random_ref(), ReasonCode(2)).wait()
    return ledger, people


@contextmanager
def build_service(node: AnvilNode, database_url: str, **settings: Any) -> Iterator[Service]:
    ledger, people = scenario_chain(node)
    engine = make_engine(database_url)  # the service's own: disposed when the service is done
    migrate_all(engine)
    with mirror(ledger, database_url) as indexer:
        indexer.sync()
    config = Settings(database_url=database_url, public_url="http://testserver", **settings)
    custody = Custody.generate()

    def clock() -> float:
        return float(ledger.w3.eth.get_block("latest")["timestamp"])

    app = create_app(
        config,
        engine=engine,
        contract=ledger.address,
        w3=ledger.w3,
        clock=clock,
        custody=custody,
        limiter=RateLimiter(per_key="100000/minute", per_client="100000/minute"),
    )
    services: Services = app.state.services
    now = int(clock())
    service = Service(ledger, people, engine, TestClient(app), services, database_url)
    with services.session() as db:
        for name, role, partner_id in (
            ("admin", "admin", None),
            ("auditor", "auditor", None),
            ("partner_a", "partner", ACTIVE),
            ("partner_b", "partner", ISSUE_ONLY),
            ("revoked", "partner", ACTIVE),
        ):
            created = create_key(db, role=role, name=name, partner_id=partner_id, now=now)
            service.tokens[name] = created.token
            if name == "revoked":
                revoke_key(db, created.key.id, now=now)
        db.add(
            PartnerProfile(partner_id=ACTIVE, name="Bean There Coffee", spend_at="all stores", updated_at=now)
        )
        db.add(PartnerProfile(partner_id=ISSUE_ONLY, name="Skyline Air", spend_at=None, updated_at=now))
        for name, person, partner_id in (
            ("member_a", people[1], MEMBER_A_PARTNER),
            ("member_b", people[3], MEMBER_B_PARTNER),
        ):
            member_id = f"mem_{person.address[2:34].lower()}"
            db.add(Member(id=member_id, address=person.address.lower(), custody="self", created_at=now))
            db.add(
                Membership(
                    partner_id=partner_id,
                    member_id=member_id,
                    customer_id=f"cust-{name}",
                    email=f"{name}@example.com",
                    enrolled_at=now,
                    linked=False,
                )
            )
            db.flush()
            issued, _ = open_session(db, member_id, "siwe", now=now, ttl_s=3600)
            service.tokens[name] = issued.token
            service.members[name] = member_id
        expired, _ = open_session(db, service.members["member_a"], "siwe", now=now - 7200, ttl_s=3600)
        service.tokens["expired"] = expired.token
    try:
        yield service
    finally:
        service.client.close()
        engine.dispose()
