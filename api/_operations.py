"""How an outbox operation is shown: ``OperationPublic`` (``GET /v1/operations/{id}`` and every write's
answer). Its id is ``op_<n>``; its state moves pending → accepted → submitted → confirmed, or ends failed
(``failure``: a typed reason and the chain's words) or cancelled."""

from __future__ import annotations

import json
from typing import Any

from eth_utils.address import to_checksum_address

from ._models import ResponseModel, hex0x, link
from ._tables import Operation

__all__ = ["OPERATION_LINKS", "FailurePublic", "OperationPublic", "operation_public", "parse_operation_id"]


class FailurePublic(ResponseModel):
    #: allowance-exhausted, partner-suspended, ledger-paused, consent-invalid, insufficient-points, ...
    reason: str | None
    detail: str | None


class OperationPublic(ResponseModel):
    id: str
    kind: str
    state: str
    partner_id: int
    member_id: str | None
    address: str
    #: points it moves now (a return while pending lowers a purchase's)
    points: int
    #: points computed when it was accepted
    original_points: int
    reason: int
    rule_hash: str | None
    #: the reference written on chain (a keyed hash of the order, return or redemption id)
    reference: str
    #: the partner's id of the thing (order id, return id, engagement key)
    natural_key: str
    #: the operation this one acts on (a return's purchase, a refund's redemption)
    parent: str | None
    #: pending until this time (Unix seconds)
    release_at: int
    created_at: int
    updated_at: int
    tx_hash: str | None
    block_number: int | None
    #: the ledger entry (a batch item's own seq) once confirmed
    seq: int | None
    failure: FailurePublic | None
    #: what the caller sent
    request: dict[str, Any]
    #: the line-by-line computation, or what a return did (``effect``)
    detail: dict[str, Any] | None


def parse_operation_id(value: str) -> int | None:
    if value.startswith("op_") and value[3:].isdigit() and len(value) <= 21:
        return int(value[3:])
    return None


_PRIVATE = ("signature",)


def operation_public(op: Operation) -> OperationPublic:
    detail = None if op.detail is None else json.loads(op.detail)
    if isinstance(detail, dict):
        detail = {k: v for k, v in detail.items() if k not in _PRIVATE}
    failed = op.failure is not None or (op.state in ("failed", "cancelled") and op.failure_detail)
    return OperationPublic(
        id=f"op_{op.id}",
        kind=op.kind,
        state=op.state,
        partner_id=op.partner_id,
        member_id=op.member_id,
        address=to_checksum_address(op.member_address),
        points=op.points,
        original_points=op.original_points,
        reason=op.reason,
        rule_hash=hex0x(None if op.rule_hash is None else bytes(op.rule_hash)),
        reference="0x" + bytes(op.ref).hex(),
        natural_key=op.natural_key,
        parent=None if op.parent_id is None else f"op_{op.parent_id}",
        release_at=op.release_at,
        created_at=op.created_at,
        updated_at=op.updated_at,
        tx_hash=hex0x(None if op.tx_hash is None else bytes(op.tx_hash)),
        block_number=op.block_number,
        seq=op.seq,
        failure=FailurePublic(reason=op.failure, detail=op.failure_detail) if failed else None,
        request=json.loads(op.request),
        detail=detail,
    )


#: OpenAPI links from a write's answer to the operation it created.
OPERATION_LINKS: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "The operation, accepted (committed before anything is sent to the chain)",
        "links": {
            "GetOperation": link(
                "GET",
                "/v1/operations/{operation_id}",
                "follow it to confirmed",
                operation_id="$response.body#/id",
            )
        },
    },
    200: {"description": "The same request again: the operation recorded the first time"},
}
