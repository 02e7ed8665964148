"""Liveness and readiness.

``/healthz``: the process answers (no dependency is checked: a restart would not help with them).
``/readyz``: the database answers, the mirror holds the ledger and, when the service reaches the chain, the
mirror is at most ``ready_max_lag_blocks`` behind the chain's head; 503 (a problem) otherwise, so a load
balancer stops sending traffic to a replica whose figures are stale.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from .._auth import ServicesDep
from .._errors import NotReady
from .._models import AsOfPublic, ResponseModel, problem_responses

__all__ = ["HealthPublic", "ReadyPublic", "router"]

router = APIRouter(tags=["health"])


class HealthPublic(ResponseModel):
    status: str


class ReadyPublic(ResponseModel):
    status: str
    chain_head: int | None
    lag_blocks: int | None
    as_of: AsOfPublic


@router.get("/healthz", response_model=HealthPublic, summary="Liveness")
def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get("/readyz", response_model=ReadyPublic, responses=problem_responses(NotReady), summary="Readiness")
def readyz(services: ServicesDep) -> ReadyPublic:
    try:
        with services.mirror() as (_, as_of):
            pass
    except SQLAlchemyError as exc:
        raise NotReady(f"the database is unreachable ({type(exc).__name__})") from None
    head = lag = None
    if services.w3 is not None:
        try:
            head = int(services.w3.eth.block_number)
        except Exception as exc:  # any failure of the node means: not ready
            raise NotReady(f"the chain is unreachable ({type(exc).__name__})") from None
        lag = max(head - as_of.block_number, 0)
        limit = services.settings.ready_max_lag_blocks
        if lag > limit:
            raise NotReady(f"the mirror is {lag} blocks behind the chain (more than {limit})")
    return ReadyPublic(status="ready", chain_head=head, lag_blocks=lag, as_of=AsOfPublic.of(as_of))
