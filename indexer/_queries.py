"""Time-aware reads of the mirror. Expiry needs no event, so "live" depends on the time asked about: a query
takes a timestamp (the chain's clock, e.g. the latest block's) and counts only epochs still live then.

Time is the ledger's clock, as the contract keeps it: pauses stop it, so at block time ``t``

    ledger clock  = t - genesis - (seconds paused up to t)      (a pause still open at t counts up to t)
    epoch         = ledger clock // epoch length
    expires at    = genesis + (seconds paused up to t) + (epoch + validity) * epoch length

with the pauses read from ``pause_intervals`` (mirrored ``PauseChanged`` entries). Every answer is what the
contract's view returns in a block with timestamp ``t`` (``balanceOf``, ``outstandingSupply``,
``pendingExpiry``, ``epochExpiresAt``, ``ledgerClock``, ``pausedDuration``), given the entries mirrored.

A wallet's history (:meth:`MirrorView.wallet_history`) shows each issue, batch item and redemption with
what its returns and refunds took back and gave back, through the links the store keeps
(``original_seq``: a reversal's issuance, a refund's redemption).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from sqlalchemy import Connection, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from chain import Epoch, IssuanceRecord, PartnerId, Points, Position, RedemptionRecord
from chain._merkle import BatchItem, MerkleTree

from ._errors import IndexerError
from ._schema import (
    AccountEpoch,
    AdminOperation,
    Cursor,
    LedgerEntry,
    LedgerState,
    Partner,
    PartnerChange,
    PauseInterval,
    RoleHolder,
    Settlement,
)
from ._store import DEFAULT_ADMIN_ROLE, LedgerParams

__all__ = ["EpochHolding", "MirrorView", "WalletEntry"]

# Statements of the hot paths (a wallet's live balance), built once: a prebuilt statement with bound
# parameters costs SQLAlchemy a tenth of building one per call.
_CURSOR = select(*Cursor.__table__.columns).where(Cursor.contract == bindparam("contract"))
_PAUSES = select(PauseInterval.started_at, PauseInterval.ended_at).order_by(PauseInterval.started_at)
_HOLDINGS = (
    select(AccountEpoch.epoch, AccountEpoch.held)
    .where(
        AccountEpoch.account == bindparam("account"),
        AccountEpoch.epoch >= bindparam("low"),
        AccountEpoch.epoch <= bindparam("high"),
        AccountEpoch.held > 0,
    )
    .order_by(AccountEpoch.epoch)
)

#: Entries a reversal (an issue, a batch item) or a refund (a redemption's first part) can undo part of.
_UNDOABLE = ("PointsIssued", "PointsIssuedInBatch", "PointsRedeemed")


@dataclass(frozen=True, slots=True)
class EpochHolding:
    epoch: int
    points: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class WalletEntry:
    """One entry of a wallet's history, with what undid part of it.

    ``value``: settlement units per point (a batch item's is its header's). For an issue or batch item,
    ``returned`` is what its reversals asked back (the returned part of the purchase) and ``recovered`` what
    they took back; for a redemption (on its first part, which refunds link to) ``refunded`` is what its
    refunds gave back and ``restored`` the part of that which was live again (the rest expired on arrival).
    ``undone_by``: the seqs of those reversals and refunds, oldest first."""

    entry: LedgerEntry
    value: int | None
    returned: int = 0
    recovered: int = 0
    refunded: int = 0
    restored: int = 0
    undone_by: tuple[int, ...] = ()


class MirrorView:
    """Reads of one mirrored ledger on ``conn``; every method is keyword-only beyond the account."""

    def __init__(self, conn: Connection, contract: str) -> None:
        self.conn = conn
        self.session = Session(bind=conn)
        self.contract = contract.lower()
        row = self.conn.execute(_CURSOR, {"contract": self.contract}).first()
        if row is None:
            raise IndexerError(f"the database mirrors no ledger at {contract}")
        #: the cursor as read (a detached row: the view reads, never writes it)
        self.cursor = Cursor(**row._asdict())
        self._pauses: tuple[tuple[int, int | None], ...] | None = None
        self.params = LedgerParams(row.genesis_timestamp, row.epoch_length, row.validity_epochs)

    # ------------------------------------------------------------------ the ledger clock

    def pauses(self) -> tuple[tuple[int, int | None], ...]:
        """Every pause as (began, ended or None while it lasts), read once per view. The list changes only
        with mirrored entries, so a caller may keep it per mirrored block (cursor block and hash) and hand
        it to the next view of that block with :meth:`use_pauses`."""
        if self._pauses is None:
            self._pauses = tuple(
                (int(b), None if e is None else int(e)) for b, e in self.conn.execute(_PAUSES)
            )
        return self._pauses

    def use_pauses(self, pauses: tuple[tuple[int, int | None], ...]) -> None:
        self._pauses = pauses

    def paused_duration(self, *, at: int) -> int:
        """Seconds the ledger spent paused up to time ``at`` (``pausedDuration()`` in a block at ``at``)."""
        return sum(
            min(at if ended is None else ended, at) - began for began, ended in self.pauses() if began < at
        )

    def paused(self, *, at: int) -> bool:
        """Whether the ledger is paused at ``at`` (a pause begun in the block at ``at`` counts)."""
        open_at = self.conn.execute(
            select(func.count()).where(
                PauseInterval.started_at <= at,
                (PauseInterval.ended_at.is_(None)) | (PauseInterval.ended_at > at),
            )
        ).scalar()
        return bool(open_at)

    def ledger_clock(self, *, at: int) -> int:
        """``ledgerClock()``: seconds of ledger time since genesis at ``at``."""
        return self.params.clock(at, self.paused_duration(at=at))

    def current_epoch(self, *, at: int) -> int:
        return self.params.epoch_at(at, self.paused_duration(at=at))

    def epoch_expires_at(self, epoch: int, *, at: int) -> int:
        """``epochExpiresAt(epoch)`` asked at ``at``: assumes no further pause."""
        return self.params.expires_at(epoch, self.paused_duration(at=at))

    def _live(self, at: int) -> tuple[int, int, int]:
        paused = self.paused_duration(at=at)
        return self.params.first_live_epoch(at, paused), self.params.epoch_at(at, paused), paused

    # ------------------------------------------------------------------ balances and supply

    def holdings(self, account: str, *, at: int) -> list[EpochHolding]:
        """``account``'s live points per epoch at time ``at``, oldest (first to expire, first spent) first."""
        low, high, paused = self._live(at)
        rows = self.conn.execute(_HOLDINGS, {"account": account.lower(), "low": low, "high": high}).all()
        return [EpochHolding(e, int(h), self.params.expires_at(e, paused)) for e, h in rows]

    def balance(self, account: str, *, at: int) -> int:
        """The live balance at time ``at`` (what ``balanceOf`` returns in a block with that timestamp)."""
        return sum(h.points for h in self.holdings(account, at=at))

    def balances(self, *, at: int) -> dict[str, int]:
        """Every account's live balance at ``at`` (accounts that hold only expired points map to 0)."""
        low, high, _ = self._live(at)
        live = func.sum(AccountEpoch.held).filter(AccountEpoch.epoch >= low, AccountEpoch.epoch <= high)
        rows = self.conn.execute(
            select(AccountEpoch.account, live).where(AccountEpoch.held > 0).group_by(AccountEpoch.account)
        ).all()
        return {account: int(points or 0) for account, points in rows}

    def expiring(self, account: str, *, at: int, by: int) -> int:
        """Points live at ``at`` that expire at or before ``by`` (if the ledger is not paused again)."""
        return sum(h.points for h in self.holdings(account, at=at) if h.expires_at <= by)

    def outstanding_supply(self, *, at: int) -> int:
        low, high, _ = self._live(at)
        total = self.conn.execute(
            select(func.sum(AccountEpoch.held)).where(AccountEpoch.epoch >= low, AccountEpoch.epoch <= high)
        ).scalar()
        return int(total or 0)

    def pending_expiry(self, *, at: int) -> int:
        """Expired points not yet swept."""
        low, _, _ = self._live(at)
        total = self.conn.execute(
            select(func.sum(AccountEpoch.held)).where(AccountEpoch.epoch < low)
        ).scalar()
        return int(total or 0)

    # ------------------------------------------------------------------ the ledger and its partners

    def state(self) -> LedgerState:
        return self.session.scalars(select(LedgerState).where(LedgerState.contract == self.contract)).one()

    def partners(self) -> list[Partner]:
        return list(self.session.scalars(select(Partner).order_by(Partner.partner_id)))

    def partner(self, partner_id: int) -> Partner | None:
        return self.session.get(Partner, partner_id)

    def partner_position(self, partner_id: int) -> Position:
        """All-time: points redeemed at the partner (less its refunds) minus points it issued (less its
        reversals), and the same in value, each at its entry's value (positive: the coalition owes the
        partner). ``partnerPosition``."""
        return _position(self._partner(partner_id))

    def partner_open_position(self, partner_id: int) -> Position:
        """The all-time position minus what was settled with the partner. ``partnerOpenPosition``."""
        p = self._partner(partner_id)
        position = _position(p)
        return Position(position.net_points - p.settled_points, position.net_value - p.settled_value)

    def coalition_position(self) -> Position:
        """The coalition pool's all-time position: points issued (less reversals) minus points redeemed (less
        refunds); in value, minus the sum of the partners'. ``coalitionPosition``."""
        state = self.state()
        points = state.total_issued - state.total_reversed - state.total_redeemed + state.total_refunded
        return Position(points, -sum(_position(p).net_value for p in self.partners()))

    def coalition_open_position(self) -> Position:
        """Minus the sum of the partners' open positions. ``coalitionOpenPosition``."""
        position = self.coalition_position()
        partners = self.partners()
        return Position(
            position.net_points + sum(p.settled_points for p in partners),
            position.net_value + sum(p.settled_value for p in partners),
        )

    def _partner(self, partner_id: int) -> Partner:
        partner = self.partner(partner_id)
        if partner is None:
            raise IndexerError(f"the mirror has no partner {partner_id}")
        return partner

    def partner_history(self, partner_id: int) -> list[PartnerChange]:
        """The partner's registration and every change of its registry entry, oldest first."""
        return list(
            self.session.scalars(
                select(PartnerChange)
                .where(PartnerChange.partner_id == partner_id)
                .order_by(PartnerChange.seq)
            )
        )

    def settlements(self, partner_id: int | None = None) -> list[Settlement]:
        query = select(Settlement).order_by(Settlement.seq)
        if partner_id is not None:
            query = query.where(Settlement.partner_id == partner_id)
        return list(self.session.scalars(query))

    # ------------------------------------------------------------------ returns, refunds, wallet history

    def entry(self, seq: int) -> LedgerEntry | None:
        return self.session.get(LedgerEntry, seq)

    def returns_of(self, seq: int) -> list[LedgerEntry]:
        """The reversals (``IssuanceReversed``) of the issue or batch item ``seq``, or the refunds
        (``RedemptionRefunded``) of the redemption whose first part is ``seq``, oldest first (their parts
        are the entries whose ``batch_seq`` is theirs)."""
        original = self.entry(seq)
        if original is None or original.account is None:
            return []
        return list(
            self.session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.account == original.account, LedgerEntry.original_seq == seq)
                .order_by(LedgerEntry.seq)
            )
        )

    def issuance(self, seq: int) -> IssuanceRecord:
        """The issue or batch item ``seq`` as ``reverseIssuance`` takes it: the chain layer's record, read
        from the mirror (a batch item's proof comes from the tree of its batch's items)."""
        entry = self.entry(seq)
        if entry is None or entry.event not in ("PointsIssued", "PointsIssuedInBatch"):
            raise IndexerError(f"the mirror holds no issue or batch item {seq}")
        assert entry.ref is not None and entry.item_ref is not None and entry.account is not None
        assert entry.amount is not None and entry.epoch is not None
        value, partner_id = entry.value, entry.partner_id
        proof: tuple[bytes, ...] = ()
        if entry.event == "PointsIssuedInBatch":
            header = self.entry(entry.batch_seq or 0)
            assert header is not None and header.batch_count is not None
            value, partner_id = header.value, header.partner_id
            # Its items are the entries right after the header (the batch retires stale buckets first).
            items = list(
                self.session.scalars(
                    select(LedgerEntry)
                    .where(
                        LedgerEntry.seq.between(header.seq + 1, header.seq + header.batch_count),
                        LedgerEntry.batch_seq == header.seq,
                    )
                    .order_by(LedgerEntry.seq)
                )
            )
            if len(items) != header.batch_count:
                raise IndexerError(f"the mirror holds {len(items)} of batch {header.seq}'s items")
            tree = MerkleTree([BatchItem(i.account or "", i.amount or 0, i.item_ref or b"") for i in items])
            proof = tuple(tree.proof([i.seq for i in items].index(seq)))
        assert value is not None and partner_id is not None
        return IssuanceRecord(
            partner_id=PartnerId(partner_id),
            ref=bytes(entry.ref),
            customer=to_checksum_address(entry.account),
            amount=Points(entry.amount),
            item_ref=bytes(entry.item_ref),
            epoch=Epoch(entry.epoch),
            issued_at=entry.block_timestamp,
            value=value,
            proof=proof,
        )

    def redemption(self, seq: int) -> RedemptionRecord:
        """The redemption whose part (any of them) is ``seq``, as ``refundRedemption`` takes it (the chain
        layer's record, its parts in order, read from the mirror)."""
        entry = self.entry(seq)
        if entry is None or entry.event != "PointsRedeemed":
            raise IndexerError(f"the mirror holds no redemption part {seq}")
        parts = list(
            self.session.scalars(
                select(LedgerEntry)
                .where(
                    LedgerEntry.account == entry.account,
                    LedgerEntry.partner_id == entry.partner_id,
                    LedgerEntry.ref == entry.ref,
                    LedgerEntry.event == "PointsRedeemed",
                )
                .order_by(LedgerEntry.seq)
            )
        )
        assert entry.account is not None and entry.ref is not None and entry.value is not None
        assert entry.partner_id is not None and entry.nonce is not None
        return RedemptionRecord(
            partner_id=PartnerId(entry.partner_id),
            customer=to_checksum_address(entry.account),
            ref=bytes(entry.ref),
            value=entry.value,
            nonce=entry.nonce,
            epochs=tuple(Epoch(p.epoch or 0) for p in parts),
            amounts=tuple(Points(p.amount or 0) for p in parts),
        )

    def wallet_history(
        self, account: str, *, before: int | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[WalletEntry]:
        """Every entry that names ``account`` (issued to it, its redemptions, expiries, reversals, refunds
        and their parts, transfers and migrations from or to it, its consent revocations), oldest first
        (``newest_first``: newest first), each issue, batch item and redemption with what its reversals and
        refunds undid. A page: at most ``limit`` entries with a ``seq`` below ``before``."""
        account = account.lower()
        query = select(LedgerEntry).where(
            or_(
                LedgerEntry.account == account,
                and_(
                    LedgerEntry.counterparty == account,
                    LedgerEntry.event.in_(("PointsTransferred", "AccountMigrated")),
                ),
            )
        )
        if before is not None:
            query = query.where(LedgerEntry.seq < before)
        query = query.order_by(LedgerEntry.seq.desc() if newest_first else LedgerEntry.seq)
        if limit is not None:
            query = query.limit(limit)
        entries: Sequence[LedgerEntry] = list(self.session.scalars(query))
        # A batch item's value is its header's (one read for all of them).
        headers = {
            e.batch_seq for e in entries if e.event == "PointsIssuedInBatch" and e.batch_seq is not None
        }
        batch_values: dict[int, int | None] = {}
        if headers:
            rows = self.conn.execute(
                select(LedgerEntry.seq, LedgerEntry.value).where(LedgerEntry.seq.in_(headers))
            )
            batch_values = {seq: value for seq, value in rows}
        # A reversal or refund names the same customer as its original; on a page it may be on another
        # page, so they are read by their link.
        undone: dict[int, list[LedgerEntry]] = {}
        originals = [e.seq for e in entries if e.event in _UNDOABLE]
        for chunk in (originals[i : i + 500] for i in range(0, len(originals), 500)):
            for u in self.session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.account == account, LedgerEntry.original_seq.in_(chunk))
                .order_by(LedgerEntry.seq)
            ):
                assert u.original_seq is not None
                undone.setdefault(u.original_seq, []).append(u)
        history = []
        for e in entries:
            value = e.value
            if e.event == "PointsIssuedInBatch" and e.batch_seq is not None:
                value = batch_values.get(e.batch_seq)
            by = undone.get(e.seq, [])
            history.append(
                WalletEntry(
                    entry=e,
                    value=value,
                    returned=sum(u.requested or 0 for u in by),
                    recovered=sum(u.recovered or 0 for u in by),
                    refunded=sum(u.amount or 0 for u in by if u.event == "RedemptionRefunded"),
                    restored=sum(u.restored or 0 for u in by),
                    undone_by=tuple(u.seq for u in by),
                )
            )
        return history

    # ------------------------------------------------------------------ governance

    def role_holders(self, role: bytes | None = None) -> list[RoleHolder]:
        query = select(RoleHolder).order_by(RoleHolder.role, RoleHolder.account)
        if role is not None:
            query = query.where(RoleHolder.role == role)
        return list(self.session.scalars(query))

    def default_admin(self) -> str | None:
        holders = self.role_holders(DEFAULT_ADMIN_ROLE)
        return holders[0].account if holders else None

    def pause_intervals(self) -> list[PauseInterval]:
        return list(self.session.scalars(select(PauseInterval).order_by(PauseInterval.started_seq)))

    def admin_operations(self, status: str | None = None) -> list[AdminOperation]:
        """The mirrored timelock's operations (one row per call), in the order they were scheduled;
        ``status``: only ``scheduled``, ``executed`` or ``cancelled`` ones."""
        query = select(AdminOperation).order_by(
            AdminOperation.scheduled_block, AdminOperation.operation_id, AdminOperation.call_index
        )
        if status is not None:
            query = query.where(AdminOperation.status == status)
        return list(self.session.scalars(query))


def _position(p: Partner) -> Position:
    """``partnerPosition``: (redeemed - refunded) - (issued - reversed), in points and in value."""
    return Position(
        (p.redeemed - p.refunded) - (p.issued - p.reversed),
        (p.redeemed_value - p.refunded_value) - (p.issued_value - p.reversed_value),
    )
