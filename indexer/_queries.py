"""Time-aware reads of the mirror. Expiry needs no event, so "live" depends on the time asked about: a query
takes a timestamp (the chain's clock, e.g. the latest block's) and counts only epochs still live then.

Time is the ledger's clock, as the contract keeps it: pauses stop it, so at block time ``t``

    ledger clock  = t - genesis - (seconds paused up to t)      (a pause still open at t counts up to t)
    epoch         = ledger clock // epoch length
    expires at    = genesis + (seconds paused up to t) + (epoch + validity) * epoch length

with the pauses read from ``pause_intervals`` (mirrored ``PauseChanged`` entries). Every answer is what the
contract's view returns in a block with timestamp ``t`` (``balanceOf``, ``outstandingSupply``,
``pendingExpiry``, ``epochExpiresAt``, ``ledgerClock``, ``pausedDuration``), given the entries mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from chain import Position

from ._errors import IndexerError
from ._schema import (
    AccountEpoch,
    AdminOperation,
    Cursor,
    LedgerState,
    Partner,
    PartnerChange,
    PauseInterval,
    RoleHolder,
    Settlement,
)
from ._store import DEFAULT_ADMIN_ROLE, LedgerParams

__all__ = ["EpochHolding", "MirrorView"]


@dataclass(frozen=True, slots=True)
class EpochHolding:
    epoch: int
    points: int
    expires_at: int


class MirrorView:
    """Reads of one mirrored ledger on ``conn``; every method is keyword-only beyond the account."""

    def __init__(self, conn: Connection, contract: str) -> None:
        self.conn = conn
        self.session = Session(bind=conn)
        self.contract = contract.lower()
        row = self.session.scalars(select(Cursor).where(Cursor.contract == self.contract)).one_or_none()
        if row is None:
            raise IndexerError(f"the database mirrors no ledger at {contract}")
        self.cursor = row
        self.params = LedgerParams(row.genesis_timestamp, row.epoch_length, row.validity_epochs)

    # ------------------------------------------------------------------ the ledger clock

    def paused_duration(self, *, at: int) -> int:
        """Seconds the ledger spent paused up to time ``at`` (``pausedDuration()`` in a block at ``at``)."""
        total = 0
        for started, ended in self.conn.execute(
            select(PauseInterval.started_at, PauseInterval.ended_at).where(PauseInterval.started_at < at)
        ):
            total += min(at if ended is None else ended, at) - started
        return total

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
        rows = self.conn.execute(
            select(AccountEpoch.epoch, AccountEpoch.held)
            .where(
                AccountEpoch.account == account.lower(),
                AccountEpoch.epoch >= low,
                AccountEpoch.epoch <= high,
                AccountEpoch.held > 0,
            )
            .order_by(AccountEpoch.epoch)
        ).all()
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
        """All-time: points redeemed at the partner minus points it issued, and the same in value
        (positive: the coalition owes the partner). ``partnerPosition``."""
        p = self._partner(partner_id)
        return Position(p.redeemed - p.issued, p.redeemed_value - p.issued_value)

    def partner_open_position(self, partner_id: int) -> Position:
        """The all-time position minus what was settled with the partner. ``partnerOpenPosition``."""
        p = self._partner(partner_id)
        return Position(
            p.redeemed - p.issued - p.settled_points, p.redeemed_value - p.issued_value - p.settled_value
        )

    def coalition_position(self) -> Position:
        """The coalition pool's all-time position: minus the sum of the partners'. ``coalitionPosition``."""
        state = self.state()
        value = sum(p.issued_value - p.redeemed_value for p in self.partners())
        return Position(state.total_issued - state.total_redeemed, value)

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
