"""Operations: what became of each write (``GET /v1/operations/{id}``), and a partner's recent ones.

A partner sees its own operations, an admin or auditor every one, a member those for their wallet."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from .._auth import Authenticated, ServicesDep
from .._errors import Forbidden, NotFound, Unauthenticated
from .._models import ResponseModel, problem_responses
from .._operations import OperationPublic, operation_public, parse_operation_id
from .._pagination import SeqPage
from .._tables import Operation

__all__ = ["OperationsPublic", "router"]

router = APIRouter(prefix="/v1", tags=["operations"])

OperationId = Annotated[
    str, Path(pattern=r"^op_[0-9]{1,18}$", description="an operation's id", examples=["op_42"])
]
State = Literal["pending", "accepted", "submitted", "confirmed", "failed", "cancelled"]
Kind = Literal["purchase", "return", "engagement", "adjustment", "redemption", "refund", "revocation"]


class OperationsPublic(ResponseModel):
    data: list[OperationPublic]
    next_cursor: str | None


@router.get(
    "/operations/{operation_id}",
    response_model=OperationPublic,
    responses=problem_responses(Unauthenticated, NotFound),
    summary="One operation and its state",
)
def get_operation(operation_id: OperationId, caller: Authenticated, services: ServicesDep) -> OperationPublic:
    """The operation's state, what it moves, and once confirmed the transaction and ledger entry."""
    number = parse_operation_id(operation_id)
    with services.session() as db:
        op = None if number is None else db.get(Operation, number)
        visible = op is not None and (
            caller.sees_everything
            or (caller.role == "partner" and caller.partner_id == op.partner_id)
            or (caller.role == "member" and caller.address == op.member_address)
        )
        if op is None or not visible:
            raise NotFound(f"no operation {operation_id}")
        return operation_public(op)


@router.get(
    "/operations",
    response_model=OperationsPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="Recent operations, newest first",
)
def list_operations(
    caller: Authenticated,
    services: ServicesDep,
    page: SeqPage,
    state: Annotated[State | None, Query(description="only operations in this state")] = None,
    kind: Annotated[Kind | None, Query(description="only operations of this kind")] = None,
    partner_id: Annotated[int | None, Query(ge=0, lt=2**32, description="admin and auditor keys")] = None,
) -> OperationsPublic:
    """A partner's own operations (an admin or auditor: every partner's, or ``partner_id``'s; a member: their
    wallet's). The cursor is the last operation's number."""
    query = select(Operation).order_by(Operation.id.desc()).limit(page.limit + 1)
    if caller.role == "partner":
        if partner_id not in (None, caller.partner_id):
            raise Forbidden("a partner key lists only its own partner's operations")
        query = query.where(Operation.partner_id == caller.partner_id)
    elif caller.role == "member":
        query = query.where(Operation.member_address == caller.address)
    elif partner_id is not None:
        query = query.where(Operation.partner_id == partner_id)
    if page.before is not None:
        query = query.where(Operation.id < page.before)
    if state is not None:
        query = query.where(Operation.state == state)
    if kind is not None:
        query = query.where(Operation.kind == kind)
    with services.session() as db:
        ops = db.scalars(query).all()
        more = len(ops) > page.limit
        ops = ops[: page.limit]
        return OperationsPublic(
            data=[operation_public(op) for op in ops],
            next_cursor=str(ops[-1].id) if more and ops else None,
        )
