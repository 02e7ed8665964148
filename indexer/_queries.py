"""Time-aware reads of the mirror. Expiry needs no event, so "live" depends on the time asked about: a query
takes a timestamp (the chain's clock, e.g. the latest block's) and counts only epochs still live then."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from ._errors import IndexerError
from ._schema import AccountEpoch, Cursor, LedgerState, Partner
from ._store import LedgerParams

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

    def _live(self, at: int) -> tuple[int, int]:
        return self.params.first_live_epoch(at), self.params.epoch_at(at)

    def holdings(self, account: str, *, at: int) -> list[EpochHolding]:
        """``account``'s live points per epoch at time ``at``, oldest (first to expire, first spent) first."""
        low, high = self._live(at)
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
        return [EpochHolding(e, int(h), self.params.expires_at(e)) for e, h in rows]

    def balance(self, account: str, *, at: int) -> int:
        """The live balance at time ``at`` (what ``balanceOf`` returns in a block with that timestamp)."""
        return sum(h.points for h in self.holdings(account, at=at))

    def balances(self, *, at: int) -> dict[str, int]:
        """Every account's live balance at ``at`` (accounts that hold only expired points map to 0)."""
        low, high = self._live(at)
        live = func.sum(AccountEpoch.held).filter(AccountEpoch.epoch >= low, AccountEpoch.epoch <= high)
        rows = self.conn.execute(
            select(AccountEpoch.account, live).where(AccountEpoch.held > 0).group_by(AccountEpoch.account)
        ).all()
        return {account: int(points or 0) for account, points in rows}

    def expiring(self, account: str, *, at: int, by: int) -> int:
        """Points live at ``at`` that expire at or before ``by``."""
        return sum(h.points for h in self.holdings(account, at=at) if h.expires_at <= by)

    def outstanding_supply(self, *, at: int) -> int:
        low, high = self._live(at)
        total = self.conn.execute(
            select(func.sum(AccountEpoch.held)).where(AccountEpoch.epoch >= low, AccountEpoch.epoch <= high)
        ).scalar()
        return int(total or 0)

    def pending_expiry(self, *, at: int) -> int:
        """Expired points not yet swept."""
        low, _ = self._live(at)
        total = self.conn.execute(
            select(func.sum(AccountEpoch.held)).where(AccountEpoch.epoch < low)
        ).scalar()
        return int(total or 0)

    def state(self) -> LedgerState:
        return self.session.scalars(select(LedgerState).where(LedgerState.contract == self.contract)).one()

    def partners(self) -> list[Partner]:
        return list(self.session.scalars(select(Partner).order_by(Partner.partner_id)))
