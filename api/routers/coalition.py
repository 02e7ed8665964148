"""Coalition operations (admin keys; auditors may read them): onboarding partners, allowances, the partner
life cycle, operator rotation, rights, settlement value and records, the transfer switch, pause/unpause.

Each request is recorded as an operation (``adm_<n>``) and answered with it (201): sent at once with the
role's key (``confirmed``, or ``failed`` with a typed reason when the ledger refuses it: nothing changed), or,
on a deployment behind a timelock, ``scheduled`` and executed with ``POST .../execute`` once ready (pause,
unpause and suspensions stay direct: the pauser is a key). See ``api/_coalition.py``."""

from __future__ import annotations

from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, model_validator

from .._auth import Principal, ServicesDep, allow
from .._coalition import GENERATE, Action, Coalition, CoalitionOperationPublic, State, parse_operation_id
from .._errors import Conflict, Forbidden, NotFound, NotReady, Unauthenticated
from .._models import TEXT, RequestModel, ResponseModel, link, linked_response, problem_responses
from .._pagination import SeqPage

__all__ = [
    "AllowanceChange",
    "CoalitionOperationsPublic",
    "OperatorRotation",
    "PartnerOnboarding",
    "RightsUpdate",
    "SettlementAddressUpdate",
    "SettlementRecord",
    "SettlementValueUpdate",
    "TransfersSwitch",
    "router",
]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(allow("admin"))]
Reader = Annotated[Principal, Depends(allow("admin", "auditor"))]
PartnerIdPath = Annotated[
    int, Path(ge=1, lt=2**32, description="the partner's id on the ledger", examples=[7])
]
OperationIdPath = Annotated[
    str, Path(pattern=r"^adm_[0-9]{1,18}$", description="a coalition operation's id", examples=["adm_7"])
]

ADDRESS = r"^0x[0-9a-fA-F]{40}$"
#: An operator: an address, or ``generate`` for a new key in the service's keystore.
OPERATOR = rf"^(0x[0-9a-fA-F]{{40}}|{GENERATE})$"
#: The ledger's MAX_ALLOWANCE and MAX_SETTLEMENT_VALUE (``type(uint64).max``).
UINT64_MAX = 2**64 - 1
#: A settlement's points and value (``int256`` on chain; a partner's figures fit 128 bits).
INT128 = 2**127


class PartnerOnboarding(RequestModel):
    partner_id: int = Field(ge=1, lt=2**32, examples=[7])
    name: str = Field(min_length=1, max_length=200, pattern=TEXT, examples=["Harbour Hotels"])
    operator: str = Field(
        pattern=OPERATOR,
        description="the operator key's address, or `generate` for a new key in the service's keystore (its "
        "address is in the answer's params; the key never leaves the keystore)",
        examples=[GENERATE],
    )
    settlement_address: str | None = Field(
        default=None, pattern=ADDRESS, description="where settlements are paid (default: the operator)"
    )
    can_issue: bool = True
    can_accept: bool = True
    allowance: int = Field(ge=0, le=UINT64_MAX, description="points it may issue", examples=[1_000_000])


class AllowanceChange(RequestModel):
    """Exactly one of ``increase`` and ``decrease``."""

    increase: int | None = Field(default=None, ge=1, le=UINT64_MAX, examples=[50_000])
    decrease: int | None = Field(default=None, ge=1, le=UINT64_MAX)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.increase is None) == (self.decrease is None):
            raise ValueError("give exactly one of increase and decrease")
        return self


class OperatorRotation(RequestModel):
    new_operator: str = Field(
        pattern=OPERATOR, description="the new operator's address, or `generate`", examples=[GENERATE]
    )


class RightsUpdate(RequestModel):
    can_issue: bool
    can_accept: bool


class SettlementAddressUpdate(RequestModel):
    settlement_address: str = Field(pattern=ADDRESS)


class SettlementValueUpdate(RequestModel):
    value: int = Field(
        ge=0, le=UINT64_MAX, description="settlement units per point, for entries from now on", examples=[12]
    )


class SettlementRecord(RequestModel):
    partner_id: int = Field(ge=1, lt=2**32, examples=[1])
    points: int = Field(
        gt=-INT128, lt=INT128, description="points settled (positive: the coalition paid the partner)"
    )
    value: int = Field(gt=-INT128, lt=INT128, description="their value in settlement units, same sign")
    payment_ref: str = Field(
        min_length=1,
        max_length=200,
        pattern=TEXT,
        description="the payment's reference (usable once per partner): 32 bytes of 0x hex as they are, any "
        "other text by its keccak-256",
        examples=["SEPA 2026-12-0042"],
    )


class TransfersSwitch(RequestModel):
    enabled: bool


class CoalitionOperationsPublic(ResponseModel):
    data: list[CoalitionOperationPublic]
    next_cursor: str | None


def get_coalition(services: ServicesDep) -> Coalition:
    if services.coalition is None:
        raise NotReady("the service has no keys for coalition operations")
    return services.coalition


CoalitionDep = Annotated[Coalition, Depends(get_coalition)]

ACTION_ERRORS = problem_responses(Unauthenticated, Forbidden, Conflict, NotReady)
CREATED = linked_response(
    201,
    "The operation: confirmed, scheduled on the timelock, or failed with a typed reason",
    {
        "GetCoalitionOperation": link(
            "GET",
            "/v1/admin/operations/{operation_id}",
            "follow it",
            operation_id="$response.body#/id",
        ),
        "ExecuteCoalitionOperation": link(
            "POST",
            "/v1/admin/operations/{operation_id}/execute",
            "execute it once the timelock holds it ready",
            operation_id="$response.body#/id",
        ),
    },
)
ACTION: dict[str, Any] = {
    "status_code": 201,
    "response_model": CoalitionOperationPublic,
    "responses": {**CREATED, **ACTION_ERRORS},
}


# --------------------------------------------------------------------------- partners


@router.post("/partners", summary="Onboard a partner", **ACTION)
def onboard_partner(
    body: PartnerOnboarding, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """Registers the partner on the ledger with its operator key (an address, or a new key made in the
    service's keystore), settlement address, rights and allowance; its directory name is written once the
    registration takes effect."""
    return coalition.register_partner(
        partner_id=body.partner_id,
        name=body.name,
        operator=body.operator,
        settlement_address=body.settlement_address,
        can_issue=body.can_issue,
        can_accept=body.can_accept,
        allowance=body.allowance,
        by=admin.credential_id,
    )


@router.post("/partners/{partner_id}/allowance", summary="Top up or cut a partner's allowance", **ACTION)
def change_allowance(
    partner_id: PartnerIdPath, body: AllowanceChange, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """``increase`` tops the remaining allowance up; ``decrease`` cuts it (refused, not clamped, beyond
    what remains)."""
    return coalition.change_allowance(
        partner_id, increase=body.increase, decrease=body.decrease, by=admin.credential_id
    )


@router.post("/partners/{partner_id}/suspend", summary="Suspend a partner", **ACTION)
def suspend_partner(
    partner_id: PartnerIdPath, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """The partner may neither issue nor accept until reactivated (the pauser's key: direct, even behind a
    timelock)."""
    return coalition.set_status(partner_id, "suspend", by=admin.credential_id)


@router.post("/partners/{partner_id}/reactivate", summary="Reactivate a suspended partner", **ACTION)
def reactivate_partner(
    partner_id: PartnerIdPath, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """The partner may act again."""
    return coalition.set_status(partner_id, "reactivate", by=admin.credential_id)


@router.post("/partners/{partner_id}/offboard", summary="Offboard a partner", **ACTION)
def offboard_partner(
    partner_id: PartnerIdPath, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """For good: its allowance drops to 0; its history and positions stay."""
    return coalition.set_status(partner_id, "offboard", by=admin.credential_id)


@router.post("/partners/{partner_id}/operator", summary="Rotate a partner's operator key", **ACTION)
def rotate_operator(
    partner_id: PartnerIdPath, body: OperatorRotation, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """Moves the partner to a new operator key (an address, or a new key in the keystore), keeping its id,
    references and figures; the old key is refused from then on."""
    return coalition.rotate_operator(partner_id, body.new_operator, by=admin.credential_id)


@router.post("/partners/{partner_id}/rights", summary="Set a partner's rights", **ACTION)
def set_rights(
    partner_id: PartnerIdPath, body: RightsUpdate, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """Whether the partner may issue points, and accept them (redemptions)."""
    return coalition.set_rights(
        partner_id, can_issue=body.can_issue, can_accept=body.can_accept, by=admin.credential_id
    )


@router.post(
    "/partners/{partner_id}/settlement-address", summary="Set a partner's settlement address", **ACTION
)
def set_settlement_address(
    partner_id: PartnerIdPath, body: SettlementAddressUpdate, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    return coalition.set_settlement_address(partner_id, body.settlement_address, by=admin.credential_id)


# --------------------------------------------------------------------------- money and switches


@router.post("/settlement-value", summary="Set the settlement value of a point", **ACTION)
def set_settlement_value(
    body: SettlementValueUpdate, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """The treasury's: entries from then on carry the new value."""
    return coalition.set_settlement_value(body.value, by=admin.credential_id)


@router.post("/settlements", summary="Record a settlement with a partner", **ACTION)
def record_settlement(
    body: SettlementRecord, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """The treasury's record of a payment: its points and value leave the partner's open position."""
    return coalition.record_settlement(
        body.partner_id,
        points=body.points,
        value=body.value,
        payment_ref=body.payment_ref,
        by=admin.credential_id,
    )


@router.post("/transfers", summary="Switch member-to-member transfers on or off", **ACTION)
def set_transfers(body: TransfersSwitch, admin: Admin, coalition: CoalitionDep) -> CoalitionOperationPublic:
    return coalition.set_transfers(body.enabled, by=admin.credential_id)


@router.post("/pause", summary="Pause the ledger", **ACTION)
def pause(admin: Admin, coalition: CoalitionDep) -> CoalitionOperationPublic:
    """Stops every movement of points and the ledger's clock (the pauser's key: direct, even behind a
    timelock)."""
    return coalition.pause(by=admin.credential_id)


@router.post("/unpause", summary="Resume the ledger", **ACTION)
def unpause(admin: Admin, coalition: CoalitionDep) -> CoalitionOperationPublic:
    return coalition.unpause(by=admin.credential_id)


# --------------------------------------------------------------------------- the operations


def _number(operation_id: str) -> int:
    number = parse_operation_id(operation_id)
    if number is None:
        raise NotFound(f"no operation {operation_id}")
    return number


@router.get(
    "/operations",
    response_model=CoalitionOperationsPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotReady),
    summary="Coalition operations, newest first",
)
def list_coalition_operations(
    reader: Reader,
    coalition: CoalitionDep,
    page: SeqPage,
    state: Annotated[State | None, Query(description="only operations in this state")] = None,
    action: Annotated[Action | None, Query(description="only operations of this action")] = None,
    partner_id: Annotated[int | None, Query(ge=0, lt=2**32, description="only this partner's")] = None,
) -> CoalitionOperationsPublic:
    """Every coalition operation (admin and auditor keys), each in its state as the chain has it now. The
    cursor is the last operation's number."""
    data, more = coalition.operations(
        before=page.before, limit=page.limit, state=state, action=action, partner_id=partner_id
    )
    return CoalitionOperationsPublic(
        data=data, next_cursor=data[-1].id.removeprefix("adm_") if more and data else None
    )


@router.get(
    "/operations/{operation_id}",
    response_model=CoalitionOperationPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, NotReady),
    summary="One coalition operation and its state",
)
def get_coalition_operation(
    operation_id: OperationIdPath, reader: Reader, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    return coalition.get(_number(operation_id))


@router.post(
    "/operations/{operation_id}/execute",
    response_model=CoalitionOperationPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady),
    summary="Execute a scheduled operation",
)
def execute_coalition_operation(
    operation_id: OperationIdPath, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """Executes an operation the timelock holds ready (409 before its delay has passed: ``ready_at`` says
    when; 409 for one executed, cancelled or never scheduled). A call the ledger refuses when executed ends
    ``failed``; while the timelock still holds it, it may be executed again."""
    return coalition.execute(_number(operation_id))


@router.post(
    "/operations/{operation_id}/cancel",
    response_model=CoalitionOperationPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict, NotReady),
    summary="Cancel a scheduled operation",
)
def cancel_coalition_operation(
    operation_id: OperationIdPath, admin: Admin, coalition: CoalitionDep
) -> CoalitionOperationPublic:
    """Cancels an operation still pending on the timelock (waiting or ready)."""
    return coalition.cancel(_number(operation_id))
