"""Audit: the whole ledger for the people who check it (auditor and admin keys; nobody else).

- ``GET /v1/audit/entries``: every ledger entry with all its columns, filtered (partner, address, kind,
  reason, block and time ranges, order reference), newest first, a cursor on ``seq``.
- ``GET /v1/audit/export``: the same entries as one CSV or JSON Lines download of any size, oldest first,
  streamed from keyset pages (:mod:`api._export`) and pinned at the mirror's block when it began.
- ``GET /v1/audit/supply``: issued, redeemed, expired, reversed and refunded over time, the outstanding
  points and their liability value, at most ``max_points`` samples of the series.
- ``GET /v1/audit/head``: the mirror's sequence number and rebuilt hash-chain head next to the contract's
  ``ledgerSequence()`` / ``ledgerHead()`` at the mirror's block and at the chain's head.
- ``GET /v1/audit/reconciliation``: :func:`indexer.reconcile`, every figure the mirror serves against
  ``eth_call`` at the mirror's block; computed once per mirrored block (an in-process cache).
- ``GET /v1/audit/admin-operations``: the timelock's operations (scheduled, executed, cancelled).
- ``GET /v1/audit/reference-keys``: each partner's key of the order references written on chain, so every
  entry can be tied to the operation (``GET /v1/operations``: its kind, natural key and inputs) it was for.

Lists and exports answer as of the mirror's block: entries are bounded by the last one of that block, so
entries mirrored while a client pages or downloads never shift a page nor appear half-way through a file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cache
from typing import Annotated, Any, Literal

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy import func, or_, select

from chain import Artifact, ChainError, Ledger, Rpc, load_artifact
from indexer import AdminOperation, BlockNotMirrored, Difference, LedgerEntry, SupplyPoint, reconcile

from .._auth import Principal, ServicesDep, allow
from .._errors import FieldError, Forbidden, InvalidRequest, NotReady, Unauthenticated
from .._export import (
    ENTRY_KINDS,
    EntryFilters,
    encode_csv,
    encode_jsonl,
    entry_query,
    entry_row,
    export_rows,
    mirrored_seq,
)
from .._models import AsOfPublic, ResponseModel, hex0x, problem_responses
from .._pagination import SeqPage
from .._tables import OrderRefKey
from .wallets import checked_address

__all__ = [
    "AdminOperationPublic",
    "AdminOperationsPublic",
    "DifferencePublic",
    "EntriesPublic",
    "EntryPublic",
    "HeadPublic",
    "LedgerHeadPublic",
    "ReconciliationPublic",
    "ReferenceKeyPublic",
    "ReferenceKeysPublic",
    "SupplyNowPublic",
    "SupplyPointPublic",
    "SupplyPublic",
    "entry_filters",
    "router",
]

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(allow("admin", "auditor"))]
ERRORS = problem_responses(Unauthenticated, Forbidden, NotReady)

#: At most this many points of the supply series per answer.
SUPPLY_POINTS_MAX = 1_000
#: Reconciliations kept per app (one per mirrored block).
RECONCILIATIONS_KEPT = 16
_INT63 = 2**63 - 1


# --------------------------------------------------------------------------- filters


def entry_filters(
    partner: Annotated[int | None, Query(ge=0, lt=2**32, description="the partner's id")] = None,
    account: Annotated[
        str | None,
        Query(
            pattern=r"^0x[0-9a-fA-F]{40}$",
            description="entries naming this address in either role (recipient, customer, holder, sender "
            "or recipient of a transfer or migration, operator, settlement address, role holder)",
            examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        Query(
            description="the entry's event (PointsIssued, PointsRedeemed, ...): repeat the parameter or "
            "give a comma-separated list; any of them matches",
            examples=[["PointsIssued", "PointsIssuedInBatch"]],
        ),
    ] = None,
    reason: Annotated[int | None, Query(ge=0, lt=2**16, description="an issue's reason code")] = None,
    from_block: Annotated[int | None, Query(ge=0, le=_INT63, description="first block (inclusive)")] = None,
    to_block: Annotated[int | None, Query(ge=0, le=_INT63, description="last block (inclusive)")] = None,
    from_time: Annotated[
        int | None, Query(ge=0, le=_INT63, description="block time from (Unix seconds, inclusive)")
    ] = None,
    to_time: Annotated[
        int | None, Query(ge=0, le=_INT63, description="block time up to (Unix seconds, inclusive)")
    ] = None,
    order_ref: Annotated[
        str | None,
        Query(
            pattern=r"^0x[0-9a-fA-F]{64}$",
            description="a 32-byte reference: an issue's or batch item's order (item_ref) or an entry's "
            "ref (a batch root, a redemption's reference, a settlement's payment reference)",
        ),
    ] = None,
) -> EntryFilters:
    kinds: list[str] = []
    for given in kind or ():
        kinds.extend(k.strip() for k in given.split(",") if k.strip())
    unknown = sorted(set(kinds) - ENTRY_KINDS)
    if unknown:
        raise InvalidRequest(
            f"unknown entry kind {', '.join(unknown)}",
            [FieldError("query.kind", f"not an entry kind: {', '.join(unknown)} (one of {_kinds()})")],
        )
    _check_range("block", from_block, to_block)
    _check_range("time", from_time, to_time)
    return EntryFilters(
        partner_id=partner,
        account=None if account is None else checked_address(account, "query.account").lower(),
        kinds=tuple(dict.fromkeys(kinds)),
        reason=reason,
        from_block=from_block,
        to_block=to_block,
        from_time=from_time,
        to_time=to_time,
        order_ref=None if order_ref is None else bytes.fromhex(order_ref[2:]),
    )


def _kinds() -> str:
    return ", ".join(sorted(ENTRY_KINDS))


def _check_range(what: str, low: int | None, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise InvalidRequest(
            f"from_{what} {low} is after to_{what} {high}",
            [FieldError(f"query.from_{what}", f"after to_{what}")],
        )


Filters = Annotated[EntryFilters, Depends(entry_filters)]


# --------------------------------------------------------------------------- entries


class EntryPublic(ResponseModel):
    """A ledger entry with every column of the mirror (``indexer.LedgerEntry`` says which are set for which
    kind); null where the kind has no such argument."""

    seq: int = Field(description="the entry's sequence number on the ledger")
    block_number: int
    block_timestamp: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int
    kind: str = Field(description="the entry's event: PointsIssued, PointsRedeemed, IssuanceReversed, ...")
    partner_id: int | None
    account: str | None = Field(description="recipient, customer, holder, sender, operator, role holder")
    counterparty: str | None = Field(
        description="a transfer's or migration's recipient, a settlement address, a previous operator, a "
        "role change's sender"
    )
    epoch: int | None
    amount: int | None
    ref: str | None = Field(description="the entry's reference (a batch's Merkle root)")
    reason: int | None
    rule_hash: str | None
    nonce: int | None
    batch_count: int | None
    batch_seq: int | None = Field(description="the header of the operation the entry is part of")
    item_ref: str | None = Field(description="an issue's or batch item's order reference")
    return_ref: str | None
    refund_ref: str | None
    requested: int | None
    recovered: int | None
    restored: int | None
    recovery: bool | None
    original_seq: int | None = Field(description="a reversal's issuance, a refund's redemption")
    value: int | None = Field(description="settlement units per point; a new allowance or settlement value")
    previous_value: int | None
    status: int | None
    enabled: bool | None
    can_issue: bool | None
    can_accept: bool | None
    settled_points: int | None
    settled_value: int | None
    role: str | None
    granted: bool | None
    handover_kind: int | None = Field(
        description="an admin handover step: 1 scheduled, 2 cancelled, 3 delay change scheduled, 4 cancelled"
    )
    delay: int | None
    schedule: int | None
    paused: bool | None
    paused_duration: int | None
    entry_hash: str = Field(description="keccak of the entry's log (topic0, topics, data)")
    head: str = Field(description="the hash-chain head after this entry: keccak(head before, entry_hash)")


class EntriesPublic(ResponseModel):
    data: list[EntryPublic]
    next_cursor: str | None
    as_of: AsOfPublic


@router.get("/entries", response_model=EntriesPublic, responses=ERRORS, summary="Ledger entries")
def list_entries(auditor: Auditor, filters: Filters, page: SeqPage, services: ServicesDep) -> EntriesPublic:
    """Every ledger entry matching the filters, newest first, up to the mirror's block (``as_of``)."""
    with services.mirror() as (view, as_of):
        upto, _ = mirrored_seq(view.conn, as_of.block_number)
        query = entry_query(filters, upto_seq=upto)
        if page.before is not None:
            query = query.where(LedgerEntry.seq < page.before)
        rows = view.conn.execute(query.order_by(LedgerEntry.seq.desc()).limit(page.limit + 1)).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return EntriesPublic(
        data=[EntryPublic(**entry_row(row)) for row in rows],
        next_cursor=str(rows[-1].seq) if more and rows else None,
        as_of=AsOfPublic.of(as_of),
    )


_EXPORTS = {
    "csv": ("text/csv; charset=utf-8", encode_csv),
    "jsonl": ("application/x-ndjson", encode_jsonl),
}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "the entries, oldest first: CSV with a header row, or JSON Lines",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
    },
    summary="Export entries",
)
def export_entries(
    auditor: Auditor,  # first: who may ask is settled before what was asked is checked
    filters: Filters,
    services: ServicesDep,
    format: Annotated[Literal["csv", "jsonl"], Query(description="CSV or JSON Lines")] = "csv",
) -> StreamingResponse:
    """Every ledger entry matching the filters as one download, oldest first: the columns of
    ``/v1/audit/entries`` (CSV: in the header's order, empty for null). The export is the ledger as of the
    mirror's block when it began (named in the file name and ``X-Mirror-Block``, with the last entry's seq
    and hash-chain head in ``X-Ledger-Seq`` / ``X-Ledger-Head``); entries mirrored meanwhile are left out.
    It streams from pages of 5,000 entries, so its size is not limited by the service's memory."""
    with services.mirror() as (view, as_of):
        upto, head = mirrored_seq(view.conn, as_of.block_number)
    media_type, encode = _EXPORTS[format]
    filename = f"ledger-entries-{as_of.chain_id}-block-{as_of.block_number}.{format}"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Mirror-Block": str(as_of.block_number),
        "X-Ledger-Seq": str(upto),
    }
    if head is not None:
        headers["X-Ledger-Head"] = "0x" + head.hex()
    rows = export_rows(services.engine, filters, upto_seq=upto)
    return StreamingResponse(encode(rows), media_type=media_type, headers=headers)


# --------------------------------------------------------------------------- supply


class SupplyPointPublic(ResponseModel):
    block_number: int
    timestamp: int
    total_issued: int
    total_redeemed: int
    total_expired: int = Field(description="expired points swept (each one a PointsExpired entry)")
    total_reversed: int
    total_refunded: int
    outstanding: int = Field(
        description="issued - redeemed - expired - reversed + refunded: live points plus expired ones not "
        "swept yet"
    )
    liability_value: int = Field(description="outstanding x the current settlement value")


class SupplyNowPublic(ResponseModel):
    """The ledger at ``as_of``: totals at the mirror's block, live figures at ``as_of.time``."""

    total_issued: int
    total_redeemed: int
    total_expired: int
    total_reversed: int
    total_refunded: int
    outstanding: int = Field(description="as in a point: live plus expired but not swept")
    outstanding_supply: int = Field(description="live points at as_of.time (outstandingSupply)")
    pending_expiry: int = Field(description="expired points not swept yet at as_of.time (pendingExpiry)")
    liability_value: int = Field(description="live points x the current settlement value")


class SupplyPublic(ResponseModel):
    settlement_value: int = Field(
        description="the current settlement value per point, which every liability value here uses"
    )
    points: list[SupplyPointPublic] = Field(
        description="the cumulative totals after each block that changed them, oldest first; when the "
        "range holds more than max_points, evenly spaced samples of them (the first and the last always)"
    )
    rows: int = Field(description="blocks in the range that changed the totals (before sampling)")
    sampled: bool
    now: SupplyNowPublic
    as_of: AsOfPublic


def _outstanding(p: Any) -> int:
    return int(p.total_issued - p.total_redeemed - p.total_expired - p.total_reversed + p.total_refunded)


@router.get("/supply", response_model=SupplyPublic, responses=ERRORS, summary="Supply and liability")
def get_supply(
    auditor: Auditor,
    services: ServicesDep,
    from_block: Annotated[int | None, Query(ge=0, le=_INT63, description="first block (inclusive)")] = None,
    to_block: Annotated[int | None, Query(ge=0, le=_INT63, description="last block (inclusive)")] = None,
    from_time: Annotated[int | None, Query(ge=0, le=_INT63, description="from (Unix seconds)")] = None,
    to_time: Annotated[int | None, Query(ge=0, le=_INT63, description="up to (Unix seconds)")] = None,
    max_points: Annotated[
        int, Query(ge=2, le=SUPPLY_POINTS_MAX, description="at most this many points")
    ] = SUPPLY_POINTS_MAX,
) -> SupplyPublic:
    """Points issued, redeemed, expired (swept), reversed and refunded over time, the points outstanding
    and their liability value at the current settlement value (``settlement_value``), and the same now."""
    _check_range("block", from_block, to_block)
    _check_range("time", from_time, to_time)
    s = SupplyPoint
    with services.mirror() as (view, as_of):
        conn = view.conn
        where = [s.block_number <= as_of.block_number]
        for column, low, high in ((s.block_number, from_block, to_block), (s.timestamp, from_time, to_time)):
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
        count = int(conn.execute(select(func.count()).select_from(s).where(*where)).scalar() or 0)
        if count <= max_points:
            rows = conn.execute(select(s.__table__).where(*where).order_by(s.block_number)).all()
        else:
            # Every step-th row and the last: step = ceil((n - 1) / (max - 1)) keeps it to max points.
            step = -(-(count - 1) // (max_points - 1))
            rn = func.row_number().over(order_by=s.block_number).label("rn")
            numbered = select(*s.__table__.columns, rn).where(*where).subquery()
            rows = conn.execute(
                select(*(numbered.c[c.name] for c in s.__table__.columns))
                .where(or_((numbered.c.rn - 1) % step == 0, numbered.c.rn == count))
                .order_by(numbered.c.block_number)
            ).all()
        state = view.state()
        live = view.outstanding_supply(at=as_of.time)
        pending = view.pending_expiry(at=as_of.time)
    value = state.settlement_value
    return SupplyPublic(
        settlement_value=value,
        points=[
            SupplyPointPublic(
                block_number=p.block_number,
                timestamp=p.timestamp,
                total_issued=p.total_issued,
                total_redeemed=p.total_redeemed,
                total_expired=p.total_expired,
                total_reversed=p.total_reversed,
                total_refunded=p.total_refunded,
                outstanding=_outstanding(p),
                liability_value=_outstanding(p) * value,
            )
            for p in rows
        ],
        rows=count,
        sampled=count > max_points,
        now=SupplyNowPublic(
            total_issued=state.total_issued,
            total_redeemed=state.total_redeemed,
            total_expired=state.total_expired,
            total_reversed=state.total_reversed,
            total_refunded=state.total_refunded,
            outstanding=_outstanding(state),
            outstanding_supply=live,
            pending_expiry=pending,
            liability_value=live * value,
        ),
        as_of=AsOfPublic.of(as_of),
    )


# --------------------------------------------------------------------------- the hash chain against the chain


class LedgerHeadPublic(ResponseModel):
    block_number: int
    block_hash: str | None
    seq: int = Field(description="the last entry's sequence number (ledgerSequence)")
    head: str = Field(description="the hash-chain head after it (ledgerHead)")


class HeadPublic(ResponseModel):
    mirror: LedgerHeadPublic = Field(description="rebuilt by the indexer from the entries it mirrored")
    chain_at_mirror_block: LedgerHeadPublic = Field(description="the contract's, read at the mirror's block")
    chain_latest: LedgerHeadPublic = Field(description="the contract's, read at the chain's head")
    matches: bool = Field(description="the mirror's seq, head and block hash equal the chain's at its block")
    mirror_block: int = Field(description="the last block the indexer mirrored")
    chain_block: int = Field(description="the chain's head")
    lag_blocks: int = Field(description="chain_block - mirror_block")
    as_of: AsOfPublic


@cache
def _ledger_artifact() -> Artifact:
    return load_artifact("LoyaltyLedger")


def _chain_head(ledger: Ledger, block: int) -> LedgerHeadPublic:
    return LedgerHeadPublic(
        block_number=block,
        block_hash=hex0x(ledger.rpc.block_hash(block)),
        seq=ledger.ledger_sequence(block=block),
        head="0x" + ledger.ledger_head(block=block).hex(),
    )


@router.get("/head", response_model=HeadPublic, responses=ERRORS, summary="Hash-chain head")
def get_head(auditor: Auditor, services: ServicesDep) -> HeadPublic:
    """The mirror's last sequence number and hash-chain head next to the contract's ``ledgerSequence()``
    and ``ledgerHead()``, read live at the mirror's block and at the chain's head: a mirror that dropped,
    reordered or altered one entry cannot match. 503 without a connection to the chain."""
    w3 = services.require_chain()
    for _ in range(3):
        with services.mirror() as (view, as_of):
            state = view.state()
            contract = view.contract
            # The cursor and the state are two reads: if the indexer committed between them, the state
            # is past the cursor's block (its last entry is not the block's); read both again.
            if mirrored_seq(view.conn, as_of.block_number)[0] == state.seq:
                break
    else:
        raise NotReady("the mirror moved on during each of three reads; try again")
    mirror = LedgerHeadPublic(
        block_number=as_of.block_number,
        block_hash=as_of.block_hash,
        seq=state.seq,
        head="0x" + bytes(state.head).hex(),
    )
    ledger = Ledger(Rpc(w3), to_checksum_address(contract), artifact=_ledger_artifact())
    try:
        at_mirror = _chain_head(ledger, as_of.block_number)
        latest = int(ledger.rpc.block_number())
        at_latest = _chain_head(ledger, latest)
    except ChainError as exc:
        raise NotReady(f"the chain did not answer: {exc}") from None
    return HeadPublic(
        mirror=mirror,
        chain_at_mirror_block=at_mirror,
        chain_latest=at_latest,
        matches=(mirror.seq, mirror.head, mirror.block_hash)
        == (at_mirror.seq, at_mirror.head, at_mirror.block_hash),
        mirror_block=as_of.block_number,
        chain_block=latest,
        lag_blocks=latest - as_of.block_number,
        as_of=AsOfPublic.of(as_of),
    )


# --------------------------------------------------------------------------- reconciliation


class DifferencePublic(ResponseModel):
    what: str = Field(description="the figure (a contract view: balanceOf, totalIssued, partner, ...)")
    key: str | None = Field(description="whose: the account, partner id, role:account, ...")
    mirror: Any = Field(description="what the mirror says")
    chain: Any = Field(description="what the contract says at the block")


class ReconciliationPublic(ResponseModel):
    contract: str
    block_number: int
    block_hash: str | None
    ok: bool = Field(description="no difference")
    differences: list[DifferencePublic]
    checked_at: int = Field(description="when the comparison ran (Unix seconds)")
    cached: bool = Field(description="answered from an earlier comparison at the same block")


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    return value


def _difference(d: Difference) -> DifferencePublic:
    return DifferencePublic(what=d.what, key=d.key, mirror=_json(d.mirror), chain=_json(d.chain))


class _Reconciliations:
    """The last few reconciliations, by (contract, block number, block hash)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple[str, int, str | None], ReconciliationPublic] = OrderedDict()

    def get(self, key: tuple[str, int, str | None]) -> ReconciliationPublic | None:
        with self._lock:
            found = self._done.get(key)
            if found is not None:
                self._done.move_to_end(key)
            return found

    def put(self, key: tuple[str, int, str | None], done: ReconciliationPublic) -> None:
        with self._lock:
            self._done[key] = done
            while len(self._done) > RECONCILIATIONS_KEPT:
                self._done.popitem(last=False)


_CACHE_LOCK = threading.Lock()


def _reconciliations(request: Request) -> _Reconciliations:
    state = request.app.state
    with _CACHE_LOCK:
        found: _Reconciliations | None = getattr(state, "audit_reconciliations", None)
        if found is None:
            found = state.audit_reconciliations = _Reconciliations()
        return found


@router.get(
    "/reconciliation", response_model=ReconciliationPublic, responses=ERRORS, summary="Mirror against chain"
)
def get_reconciliation(request: Request, auditor: Auditor, services: ServicesDep) -> ReconciliationPublic:
    """Every figure the mirror serves (balances, supply and totals, partners and positions, reversals and
    refunds, roles, pause, settlement value, sequence and head, the timelock's operations) compared with the
    contract's views at the mirror's block. Computed once per mirrored block; 503 without the chain."""
    w3 = services.require_chain()
    done = _reconciliations(request)
    for _ in range(3):
        with services.mirror() as (view, as_of):
            contract = to_checksum_address(view.contract)
        key = (contract, as_of.block_number, as_of.block_hash)
        found = done.get(key)
        if found is not None:
            return found.model_copy(update={"cached": True})
        try:
            differences = reconcile(w3, services.engine, contract, as_of.block_number)
        except BlockNotMirrored:  # the indexer moved on meanwhile: compare at its new block
            continue
        except ChainError as exc:
            raise NotReady(f"the chain did not answer: {exc}") from None
        result = ReconciliationPublic(
            contract=contract,
            block_number=as_of.block_number,
            block_hash=as_of.block_hash,
            ok=not differences,
            differences=[_difference(d) for d in differences],
            checked_at=services.now(),
            cached=False,
        )
        done.put(key, result)
        return result
    raise NotReady("the mirror moved on during each of three reconciliations; try again")


# --------------------------------------------------------------------------- governance


class AdminOperationPublic(ResponseModel):
    """One call of a timelock operation (a batch has one per call, under the same id)."""

    operation_id: str
    call_index: int
    timelock: str
    target: str
    value: int
    data: str
    function: str | None = Field(description="the function called, when the target is the ledger or timelock")
    predecessor: str
    salt: str | None
    delay: int
    ready_at: int
    status: Literal["scheduled", "executed", "cancelled"]
    ready: bool = Field(description="scheduled and executable at as_of.time")
    scheduled_block: int
    scheduled_at: int
    scheduled_tx: str
    executed_block: int | None
    executed_tx: str | None
    cancelled_block: int | None
    cancelled_tx: str | None


class AdminOperationsPublic(ResponseModel):
    timelock: str | None = Field(description="the timelock mirrored with the ledger (null: none)")
    min_delay: int | None = Field(description="its minimum delay (seconds)")
    data: list[AdminOperationPublic]
    as_of: AsOfPublic


def _operation(op: AdminOperation, now: int) -> AdminOperationPublic:
    return AdminOperationPublic(
        operation_id="0x" + bytes(op.operation_id).hex(),
        call_index=op.call_index,
        timelock=to_checksum_address(op.timelock),
        target=to_checksum_address(op.target),
        value=op.value,
        data="0x" + bytes(op.data).hex(),
        function=op.function,
        predecessor="0x" + bytes(op.predecessor).hex(),
        salt=hex0x(op.salt),
        delay=op.delay,
        ready_at=op.ready_at,
        status=op.status,  # type: ignore[arg-type]
        ready=op.status == "scheduled" and op.ready_at <= now,
        scheduled_block=op.scheduled_block,
        scheduled_at=op.scheduled_at,
        scheduled_tx="0x" + bytes(op.scheduled_tx).hex(),
        executed_block=op.executed_block,
        executed_tx=hex0x(op.executed_tx),
        cancelled_block=op.cancelled_block,
        cancelled_tx=hex0x(op.cancelled_tx),
    )


@router.get(
    "/admin-operations", response_model=AdminOperationsPublic, responses=ERRORS, summary="Timelock operations"
)
def list_admin_operations(
    auditor: Auditor,
    services: ServicesDep,
    status: Annotated[
        Literal["scheduled", "executed", "cancelled"] | None,
        Query(description="only operations in this state"),
    ] = None,
) -> AdminOperationsPublic:
    """The timelock's operations on the ledger (and on itself), in the order they were scheduled: what will
    change, from when, and what did. Empty for a ledger without a timelock."""
    with services.mirror() as (view, as_of):
        timelock = view.cursor.timelock
        min_delay = view.state().timelock_min_delay
        operations = [_operation(op, as_of.time) for op in view.admin_operations(status)]
    return AdminOperationsPublic(
        timelock=None if timelock is None else to_checksum_address(timelock),
        min_delay=min_delay,
        data=operations,
        as_of=AsOfPublic.of(as_of),
    )


# --------------------------------------------------------------------------- order references


class ReferenceKeyPublic(ResponseModel):
    partner_id: int
    #: the HMAC-SHA256 key: an operation's reference on chain is HMAC(key, "<kind>:<natural key>")
    key: str
    created_at: int


class ReferenceKeysPublic(ResponseModel):
    data: list[ReferenceKeyPublic]


@router.get(
    "/reference-keys",
    response_model=ReferenceKeysPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="The keys of the order references on chain",
)
def list_reference_keys(auditor: Auditor, services: ServicesDep) -> ReferenceKeysPublic:
    """Each partner's key for the references its operations write on chain: with an operation's kind and
    natural key (``GET /v1/operations``), ``HMAC-SHA256(key, "<kind>:<natural key>")`` is the reference of
    its ledger entry (a batch item's ``itemRef``, a redemption's, a return's or a refund's reference), so an
    auditor can tie every entry to the order it was for. Nobody without a key can: the chain shows none."""
    with services.session() as db:
        keys = db.scalars(select(OrderRefKey).order_by(OrderRefKey.partner_id)).all()
        return ReferenceKeysPublic(
            data=[
                ReferenceKeyPublic(
                    partner_id=k.partner_id, key="0x" + bytes(k.key).hex(), created_at=k.created_at
                )
                for k in keys
            ]
        )
