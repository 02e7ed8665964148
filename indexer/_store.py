"""Writes to the mirror: one SQL transaction per batch, entries and derived rows and the cursor together.

Every derived figure is a sum over entries (points held, earned, issued, redeemed, expired, reversed and
refunded, the allowance, the value of what a partner issued, redeemed, reversed and refunded, what was
settled with it) or the value of the last entry of
a kind (a partner's operator, settlement address, status and rights; the settlement value, the transfer
switch, the pause state, a pending admin handover; the hash-chain head). A batch adds its entries'
contributions; a reorganisation subtracts the contributions of the entries it removes (the same code with
the sign flipped) and re-reads the "last value" fields from the entries that remain. Rows of one entry each
(partner history, settlements, pause intervals) are deleted with their entries; role holders and the
timelock's operations are recomputed from what remains. Rows whose sums are all zero are deleted, so the
tables equal a fresh index of the same chain.

Value accrues per entry: an issue, batch or redemption is worth ``amount * value``, the settlement value
per point its entry carries (the one in force when it happened); a reversal takes back ``recovered`` points
and a refund gives back ``amount`` points at the value of the entry they undo, which their headers carry.

Returns and refunds (the contract's rules, mirrored):

* ``IssuanceReversed`` counts ``recovered`` in the partner's ``reversed`` (and ``recovered * value``) and
  the ledger's total; its ``PointsReversed`` parts burn what they name from (account, epoch).
* ``RedemptionRefunded`` counts ``amount`` in the partner's ``refunded`` (live and expired parts alike) and
  the ledger's total; each ``PointsRefunded`` adds its points back to (account, epoch), and the
  ``PointsExpired`` that follows one whose epoch has expired takes them out again (counted as expired), so
  the balance never holds them, as on chain.
* ``AccountMigrated`` changes nothing itself: its ``PointsTransferred`` parts move the epochs.
* Qualifying points (tiers): a reversal takes its ``requested`` points out of what the customer earned in
  the reversed issuance's epoch, whether or not they could still be taken back: a returned purchase keeps
  no qualifying points (spending the points before the return does not keep them either). The store links
  each reversal to the issue or batch item it reverses (``original_seq``, and that issuance's ``epoch`` on
  the reversal's row) and each refund to the redemption's first part, from the entries it holds, before the
  rows are written; a rollback reads them back from the rows it removes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from chain import RetryableError

from ._decode import keccak
from ._schema import (
    AccountEpoch,
    AdminOperation,
    Block,
    Cursor,
    LedgerEntry,
    LedgerState,
    Partner,
    PartnerChange,
    PartnerPeriod,
    PartnerStatus,
    PauseInterval,
    RoleHolder,
    Settlement,
    SupplyPoint,
    Tier,
    TimelockEvent,
)
from ._timelock import decode_timelock_log, fold_operations

__all__ = [
    "BlockRow",
    "CursorState",
    "IncompleteLogs",
    "LedgerParams",
    "PauseState",
    "Store",
    "TierPolicy",
]

ZERO_HASH = bytes(32)
#: OpenZeppelin's DEFAULT_ADMIN_ROLE.
DEFAULT_ADMIN_ROLE = bytes(32)
#: ``ledger_entries`` columns of type BigUint / BigInt: decimal text on SQLite.
_TEXT_COLUMNS = frozenset({"nonce", "value", "previous_value", "settled_points", "settled_value"})
ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]
ACCOUNT_EPOCHS: Table = AccountEpoch.__table__  # type: ignore[assignment]
PARTNERS: Table = Partner.__table__  # type: ignore[assignment]
HISTORY: Table = PartnerChange.__table__  # type: ignore[assignment]
PERIODS: Table = PartnerPeriod.__table__  # type: ignore[assignment]
SETTLEMENTS: Table = Settlement.__table__  # type: ignore[assignment]
ROLES: Table = RoleHolder.__table__  # type: ignore[assignment]
PAUSES: Table = PauseInterval.__table__  # type: ignore[assignment]
OPERATIONS: Table = AdminOperation.__table__  # type: ignore[assignment]
TIMELOCK_EVENTS: Table = TimelockEvent.__table__  # type: ignore[assignment]
SUPPLY: Table = SupplyPoint.__table__  # type: ignore[assignment]
TIERS: Table = Tier.__table__  # type: ignore[assignment]
BLOCKS: Table = Block.__table__  # type: ignore[assignment]
CURSORS: Table = Cursor.__table__  # type: ignore[assignment]
STATE: Table = LedgerState.__table__  # type: ignore[assignment]

#: A partner's summed figures, in the order of ``_Deltas.partners``' lists.
_PARTNER_SUMS = (
    "allowance",
    "issued",
    "redeemed",
    "issued_value",
    "redeemed_value",
    "reversed",
    "refunded",
    "reversed_value",
    "refunded_value",
    "settled_points",
    "settled_value",
)
(
    _ALLOWANCE,
    _ISSUED,
    _REDEEMED,
    _ISSUED_VALUE,
    _REDEEMED_VALUE,
    _REVERSED,
    _REFUNDED,
    _REVERSED_VALUE,
    _REFUNDED_VALUE,
    _SETTLED_POINTS,
    _SETTLED_VALUE,
) = range(len(_PARTNER_SUMS))
#: A partner period's summed figures, in the order of ``_Deltas.periods``' lists.
_PERIOD_SUMS = ("issued", "redeemed", "reversed", "refunded")
#: The entries an original's link is looked up for: the reversal (of an issue or batch item) and the refund
#: (of a redemption).
_ISSUANCES = ("PointsIssued", "PointsIssuedInBatch")
#: Entries that set a partner's "last value" fields.
_PARTNER_CHANGES = (
    "PartnerStatusChanged",
    "PartnerOperatorChanged",
    "PartnerRightsChanged",
    "PartnerSettlementAddressChanged",
)
_HISTORY_EVENTS = frozenset({"PartnerRegistered", "PartnerAllowanceChanged", *_PARTNER_CHANGES})
#: Entries that set the ledger state's switches: the transfer switch, the pause, the admin handover (a
#: change of the default admin role ends a pending handover).
_SWITCHES = ("TransfersEnabledChanged", "PauseChanged", "AdminHandoverChanged")
_HANDOVER_SCHEDULED, _HANDOVER_CANCELLED, _DELAY_SCHEDULED, _DELAY_CANCELLED = 1, 2, 3, 4
#: The ledger state's switches before any entry.
_INITIAL_SWITCHES: dict[str, Any] = {
    "transfers_enabled": False,
    "paused": False,
    "paused_duration": 0,
    "paused_since": None,
    "pending_admin": None,
    "pending_admin_schedule": None,
    "pending_delay": None,
    "pending_delay_schedule": None,
}


class IncompleteLogs(RetryableError):
    """The node's answer skips ledger entries (their ``seq`` is not contiguous with the mirror's): the range
    is fetched again, never committed with a hole. ``before_batch``: the first entry of the answer is not the
    one after the mirror's last, so the hole lies below the cursor."""

    def __init__(self, message: str, *, before_batch: bool = False) -> None:
        super().__init__(message)
        self.before_batch = before_batch


@dataclass(frozen=True, slots=True)
class LedgerParams:
    """The ledger's fixed epoch parameters (set in its constructor). Times are block timestamps; ``paused``
    is the ledger's ``pausedDuration()`` at that time (the clock stands still while paused)."""

    genesis: int
    epoch_length: int
    validity: int

    def clock(self, timestamp: int, paused: int = 0) -> int:
        """``ledgerClock()``: seconds of ledger time since genesis."""
        return max(timestamp - self.genesis - paused, 0)

    def epoch_at(self, timestamp: int, paused: int = 0) -> int:
        return self.clock(timestamp, paused) // self.epoch_length

    def expires_at(self, epoch: int, paused: int = 0) -> int:
        """The first second at which points of ``epoch`` are expired (``epochExpiresAt``), if the ledger is
        not paused again."""
        return self.genesis + paused + (epoch + self.validity) * self.epoch_length

    def first_live_epoch(self, timestamp: int, paused: int = 0) -> int:
        return self.epoch_at(timestamp, paused) - self.validity + 1


@dataclass(frozen=True, slots=True)
class PauseState:
    """The ledger's pause state after some entry: ``duration`` seconds spent in pauses that ended, and the
    start of the ongoing pause (``since``), if any."""

    paused: bool = False
    duration: int = 0
    since: int | None = None

    def seconds_at(self, timestamp: int) -> int:
        """``pausedDuration()`` in a block with ``timestamp`` (no later pause or resume in between)."""
        if self.since is None:
            return self.duration
        return self.duration + max(timestamp - self.since, 0)

    @classmethod
    def of_state(cls, state: Mapping[str, Any]) -> PauseState:
        return cls(bool(state["paused"]), int(state["paused_duration"]), state["paused_since"])


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """Tier names and the qualifying points each needs (ascending), over a rolling window of epochs."""

    thresholds: tuple[tuple[str, int], ...] = (
        ("member", 0),
        ("silver", 1_000),
        ("gold", 5_000),
        ("platinum", 20_000),
    )
    qualifying_epochs: int = 12

    def __post_init__(self) -> None:
        points = [p for _, p in self.thresholds]
        if not self.thresholds or points != sorted(points) or points[0] != 0:
            raise ValueError("tier thresholds must start at 0 and ascend")

    def tier_of(self, points: int) -> str:
        name = self.thresholds[0][0]
        for tier, needed in self.thresholds:
            if points >= needed:
                name = tier
        return name

    def tier_sql(self, points: ColumnElement[Any]) -> ColumnElement[Any]:
        whens = [(points >= needed, literal(tier)) for tier, needed in reversed(self.thresholds[1:])]
        return case(*whens, else_=literal(self.thresholds[0][0])) if whens else literal(self.thresholds[0][0])


@dataclass(frozen=True, slots=True)
class BlockRow:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class CursorState:
    contract: str
    chain_id: int
    deployment_block: int
    block_number: int
    block_hash: bytes | None
    params: LedgerParams
    timelock: str | None = None


@dataclass
class _Deltas:
    """What a list of entries adds to (sign +1) or takes from (sign -1) the summed figures."""

    held: defaultdict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    earned: defaultdict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    # partner -> the figures of _PARTNER_SUMS
    partners: defaultdict[int, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * len(_PARTNER_SUMS))
    )
    # (partner, period) -> the figures of _PERIOD_SUMS
    periods: defaultdict[tuple[int, int], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * len(_PERIOD_SUMS))
    )
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    refunded: int = 0
    # block -> (timestamp, issued, redeemed, expired, reversed, refunded) added in that block (forward only)
    by_block: dict[int, list[int]] = field(default_factory=dict)


def _deltas(rows: Iterable[Mapping[str, Any]], sign: int, params: LedgerParams, *, paused: int) -> _Deltas:
    """The contributions of ``rows`` (in on-chain order), given the time spent in ended pauses before the
    first of them. Points move only while the ledger is not paused, so the ledger clock of an issue,
    redemption, reversal or refund is its block time minus the pauses ended before it."""
    d = _Deltas()
    for r in rows:
        event = r["event"]
        amount = r["amount"]
        if event == "PointsIssuedInBatch" or event == "PointsIssued":
            key = (r["account"], r["epoch"])
            d.held[key] += sign * amount
            d.earned[key] += sign * amount
            if event == "PointsIssuedInBatch":
                continue  # the header counted the partner's figures
        elif event == "PointsRedeemed":
            d.held[(r["account"], r["epoch"])] -= sign * amount
        elif event == "PointsExpired":
            d.held[(r["account"], r["epoch"])] -= sign * amount
            d.expired += sign * amount
            _per_block(d, r)[3] += sign * amount
            continue
        elif event == "PointsTransferred":
            d.held[(r["account"], r["epoch"])] -= sign * amount
            d.held[(r["counterparty"], r["epoch"])] += sign * amount
            continue
        elif event == "PointsReversed":
            d.held[(r["account"], r["epoch"])] -= sign * amount
            continue
        elif event == "PointsRefunded":
            d.held[(r["account"], r["epoch"])] += sign * amount
            continue
        elif event == "IssuanceReversed":
            # Qualifying points: the returned part leaves what was earned in the issuance's epoch (taken
            # back or not; see the module's docstring). The epoch is the linked issuance's.
            if r["epoch"] is not None:
                d.earned[(r["account"], r["epoch"])] -= sign * r["requested"]
        elif event == "PartnerRegistered":
            d.partners[r["partner_id"]][_ALLOWANCE] += sign * r["value"]
            continue
        elif event == "PartnerAllowanceChanged":
            d.partners[r["partner_id"]][_ALLOWANCE] += sign * (r["value"] - r["previous_value"])
            continue
        elif event == "SettlementRecorded":
            partner = d.partners[r["partner_id"]]
            partner[_SETTLED_POINTS] += sign * r["settled_points"]
            partner[_SETTLED_VALUE] += sign * r["settled_value"]
            continue
        elif event == "PauseChanged":
            paused = r["paused_duration"]  # on resume: every pause so far (on pause: no points move)
            continue
        if event == "PointsIssued" or event == "PointsBatchIssued":
            partner = d.partners[r["partner_id"]]
            partner[_ALLOWANCE] -= sign * amount
            partner[_ISSUED] += sign * amount
            partner[_ISSUED_VALUE] += sign * amount * r["value"]
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"], paused))][0] += sign * amount
            d.issued += sign * amount
            _per_block(d, r)[1] += sign * amount
        elif event == "PointsRedeemed":
            partner = d.partners[r["partner_id"]]
            partner[_REDEEMED] += sign * amount
            partner[_REDEEMED_VALUE] += sign * amount * r["value"]
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"], paused))][1] += sign * amount
            d.redeemed += sign * amount
            _per_block(d, r)[2] += sign * amount
        elif event == "IssuanceReversed":
            recovered = r["recovered"]
            partner = d.partners[r["partner_id"]]
            partner[_REVERSED] += sign * recovered
            partner[_REVERSED_VALUE] += sign * recovered * r["value"]
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"], paused))][2] += sign * recovered
            d.reversed += sign * recovered
            _per_block(d, r)[4] += sign * recovered
        elif event == "RedemptionRefunded":
            partner = d.partners[r["partner_id"]]
            partner[_REFUNDED] += sign * amount
            partner[_REFUNDED_VALUE] += sign * amount * r["value"]
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"], paused))][3] += sign * amount
            d.refunded += sign * amount
            _per_block(d, r)[5] += sign * amount
    return d


def _switches(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ledger state's switch columns that ``rows`` (in order) set, with the values they leave."""
    out: dict[str, Any] = {}
    for r in rows:
        event = r["event"]
        if event == "TransfersEnabledChanged":
            out["transfers_enabled"] = r["enabled"]
        elif event == "PauseChanged":
            out["paused"] = r["paused"]
            out["paused_duration"] = r["paused_duration"]
            out["paused_since"] = r["block_timestamp"] if r["paused"] else None
        elif event == "AdminHandoverChanged":
            kind = r["kind"]
            if kind == _HANDOVER_SCHEDULED:
                out["pending_admin"], out["pending_admin_schedule"] = r["account"], r["schedule"]
            elif kind == _HANDOVER_CANCELLED:
                out["pending_admin"] = out["pending_admin_schedule"] = None
            elif kind == _DELAY_SCHEDULED:
                out["pending_delay"], out["pending_delay_schedule"] = r["delay"], r["schedule"]
            elif kind == _DELAY_CANCELLED:
                out["pending_delay"] = out["pending_delay_schedule"] = None
        elif event == "RoleChanged" and bytes(r["role"]) == DEFAULT_ADMIN_ROLE:
            # the handover's acceptance (or the admin renouncing after a handover to the zero address)
            out["pending_admin"] = out["pending_admin_schedule"] = None
    return out


def _partner_changes(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Partner id -> the registry fields that ``rows`` (in order) leave."""
    last: defaultdict[int, dict[str, Any]] = defaultdict(dict)
    for r in rows:
        event = r["event"]
        if event == "PartnerRegistered":
            last[r["partner_id"]].update(
                operator=r["account"],
                settlement=r["counterparty"],
                status=PartnerStatus.ACTIVE.value,
                can_issue=r["can_issue"],
                can_accept=r["can_accept"],
            )
        elif event == "PartnerStatusChanged":
            last[r["partner_id"]]["status"] = r["status"]
        elif event == "PartnerOperatorChanged":
            last[r["partner_id"]]["operator"] = r["account"]
        elif event == "PartnerRightsChanged":
            last[r["partner_id"]].update(can_issue=r["can_issue"], can_accept=r["can_accept"])
        elif event == "PartnerSettlementAddressChanged":
            last[r["partner_id"]]["settlement"] = r["counterparty"]
    return dict(last)


def _history_row(r: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": r["seq"],
        "partner_id": r["partner_id"],
        "event": r["event"],
        "block_number": r["block_number"],
        "block_timestamp": r["block_timestamp"],
        "tx_hash": r["tx_hash"],
        "operator": None,
        "previous_operator": None,
        "settlement": None,
        "status": None,
        "can_issue": None,
        "can_accept": None,
        "allowance": None,
        "previous_allowance": None,
    }
    event = r["event"]
    if event == "PartnerRegistered":
        row.update(
            operator=r["account"],
            settlement=r["counterparty"],
            status=PartnerStatus.ACTIVE.value,
            can_issue=r["can_issue"],
            can_accept=r["can_accept"],
            allowance=r["value"],
        )
    elif event == "PartnerOperatorChanged":
        row.update(operator=r["account"], previous_operator=r["counterparty"])
    elif event == "PartnerRightsChanged":
        row.update(can_issue=r["can_issue"], can_accept=r["can_accept"])
    elif event == "PartnerStatusChanged":
        row["status"] = r["status"]
    elif event == "PartnerSettlementAddressChanged":
        row["settlement"] = r["counterparty"]
    elif event == "PartnerAllowanceChanged":
        row.update(allowance=r["value"], previous_allowance=r["previous_value"])
    return row


def _per_block(d: _Deltas, r: Mapping[str, Any]) -> list[int]:
    entry = d.by_block.get(r["block_number"])
    if entry is None:
        entry = d.by_block[r["block_number"]] = [r["block_timestamp"], 0, 0, 0, 0, 0]
    return entry


def _original_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a reversal or refund and the entry it undoes have in common: (kind, partner, reference,
    customer, item reference, amount); a reversal names its item's leaf (customer, amount issued, item
    reference) and carries the amount issued in ``amount``."""
    event = r["event"]
    if event in _ISSUANCES or event == "IssuanceReversed":
        return ("issuance", r["partner_id"], bytes(r["ref"]), r["account"], bytes(r["item_ref"]), r["amount"])
    return ("redemption", r["partner_id"], bytes(r["ref"]), r["account"], None, None)


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the mirror runs on SQLite and PostgreSQL, not {conn.dialect.name}")


def _upsert_add(conn: Connection, table: Table, keys: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, or add their non-key columns to the existing row with the same key."""
    if not rows:
        return
    stmt = _insert(conn, table)
    adds = {c: table.c[c] + stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=adds), rows)


class Store:
    """The mirror of one ledger contract (and of its timelock, if one is mirrored with it), on one
    connection (the one holding the write lease)."""

    def __init__(
        self,
        conn: Connection,
        contract: str,
        tiers: TierPolicy = TierPolicy(),
        *,
        timelock: str | None = None,
    ) -> None:
        self.conn = conn
        self.contract = contract.lower()
        self.tiers = tiers
        self.timelock = timelock.lower() if timelock else None

    # ------------------------------------------------------------------ reading

    def cursor(self) -> CursorState | None:
        row = self.conn.execute(select(CURSORS).where(CURSORS.c.contract == self.contract)).mappings().first()
        if self.conn.in_transaction():
            self.conn.commit()
        if row is None:
            return None
        return CursorState(
            contract=row["contract"],
            chain_id=row["chain_id"],
            deployment_block=row["deployment_block"],
            block_number=row["block_number"],
            block_hash=row["block_hash"],
            params=LedgerParams(row["genesis_timestamp"], row["epoch_length"], row["validity_epochs"]),
            timelock=row["timelock"],
        )

    def window(self) -> dict[int, bytes]:
        """The stored blocks of the unfinalised window: number -> hash."""
        rows = self.conn.execute(select(BLOCKS.c.number, BLOCKS.c.hash)).all()
        if self.conn.in_transaction():
            self.conn.commit()
        return {number: bytes(h) for number, h in rows}

    # ------------------------------------------------------------------ writing

    def initialise(
        self,
        *,
        chain_id: int,
        deployment_block: int,
        params: LedgerParams,
        settlement_value: int,
        timelock_min_delay: int | None = None,
    ) -> CursorState:
        """The cursor just before the deployment block, and the ledger state the constructor set (its role
        grants are entries of the deployment block). ``timelock_min_delay``: the mirrored timelock's, if it
        was deployed before the ledger (otherwise its constructor's ``MinDelayChange`` sets it)."""
        with self.conn.begin():
            self.conn.execute(
                insert(CURSORS).values(
                    contract=self.contract,
                    chain_id=chain_id,
                    deployment_block=deployment_block,
                    block_number=deployment_block - 1,
                    block_hash=None,
                    genesis_timestamp=params.genesis,
                    epoch_length=params.epoch_length,
                    validity_epochs=params.validity,
                    timelock=self.timelock,
                )
            )
            self.conn.execute(
                insert(STATE).values(
                    contract=self.contract,
                    seq=0,
                    head=ZERO_HASH,
                    total_issued=0,
                    total_redeemed=0,
                    total_expired=0,
                    total_reversed=0,
                    total_refunded=0,
                    settlement_value=settlement_value,
                    tiers_as_of=None,
                    timelock_min_delay=timelock_min_delay,
                    **_INITIAL_SWITCHES,
                )
            )
        state = self.cursor()
        assert state is not None
        return state

    def commit_batch(
        self,
        rows: list[dict[str, Any]],
        *,
        params: LedgerParams,
        to_block: BlockRow,
        blocks: Sequence[BlockRow] = (),
        keep_from: int | None = None,
        chain_seq: int | None = None,
        timelock_rows: Sequence[dict[str, Any]] = (),
    ) -> int:
        """Adds ``rows`` (decoded entries of blocks after the cursor, in order) and ``timelock_rows`` (the
        mirrored timelock's logs of the same blocks), stores ``blocks`` of the window (dropping those below
        ``keep_from``) and moves the cursor to ``to_block``, in one transaction. Entries and timelock logs
        the mirror already holds are skipped, so replaying a range changes nothing. ``chain_seq``, the
        ledger's ``ledgerSequence()`` at ``to_block`` when known, must not exceed the last entry's: a node
        that dropped entries at the end of a range raises :class:`IncompleteLogs`, leaving no hole.
        Returns how many entries were added."""
        conn = self.conn
        with conn.begin():
            state = dict(
                conn.execute(select(STATE).where(STATE.c.contract == self.contract)).mappings().one()
            )
            seq, head = state["seq"], bytes(state["head"])
            fresh = [r for r in rows if r["seq"] > seq]
            for r in fresh:
                seq += 1
                if r["seq"] != seq:
                    raise IncompleteLogs(
                        f"entry {seq} is missing before entry {r['seq']} (block {r['block_number']})",
                        before_batch=r is fresh[0],
                    )
                head = keccak(head + r["entry_hash"])
                r["head"] = head
            if chain_seq is not None and seq < chain_seq:  # (more: a replay of a range the mirror holds)
                raise IncompleteLogs(
                    f"the ledger's sequence at block {to_block.number} is {chain_seq}, the logs end at {seq}"
                )
            if fresh:
                self._link_originals(fresh)
                self._insert_entries(fresh)
                d = _deltas(fresh, +1, params, paused=state["paused_duration"])
                self._insert_registrations(fresh)  # first: the sums add to their rows
                self._apply(d)
                self._update_partners(d.partners, _partner_changes(fresh))
                self._append_supply(d, state)
                self._append_records(fresh)
                self._apply_roles(fresh)
                values = _switches(fresh)
                for r in fresh:
                    if r["event"] == "SettlementValueChanged":
                        values["settlement_value"] = r["value"]
                state.update(values)
                conn.execute(
                    update(STATE)
                    .where(STATE.c.contract == self.contract)
                    .values(
                        seq=seq,
                        head=head,
                        total_issued=STATE.c.total_issued + d.issued,
                        total_redeemed=STATE.c.total_redeemed + d.redeemed,
                        total_expired=STATE.c.total_expired + d.expired,
                        total_reversed=STATE.c.total_reversed + d.reversed,
                        total_refunded=STATE.c.total_refunded + d.refunded,
                        **values,
                    )
                )
            if timelock_rows:
                self._add_timelock_events(timelock_rows)
            if blocks:
                stmt = _insert(conn, BLOCKS)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["number"],
                        set_={
                            "hash": stmt.excluded.hash,
                            "parent_hash": stmt.excluded.parent_hash,
                            "timestamp": stmt.excluded.timestamp,
                        },
                    ),
                    [
                        {
                            "number": b.number,
                            "hash": b.hash,
                            "parent_hash": b.parent_hash,
                            "timestamp": b.timestamp,
                        }
                        for b in blocks
                    ],
                )
            if keep_from is not None:
                conn.execute(delete(BLOCKS).where(BLOCKS.c.number < keep_from))
            paused = PauseState.of_state(state).seconds_at(to_block.timestamp)
            self._refresh_tiers(params.epoch_at(to_block.timestamp, paused), fresh, +1)
            self._move_cursor(to_block)
        return len(fresh)

    def rollback_to(self, ancestor: BlockRow, params: LedgerParams) -> int:
        """Removes every entry and timelock log after block ``ancestor`` and their contributions, in one
        transaction; the cursor moves back to ``ancestor``. Returns how many entries were removed."""
        conn = self.conn
        with conn.begin():
            removed = [
                dict(r)
                for r in conn.execute(
                    select(ENTRIES).where(ENTRIES.c.block_number > ancestor.number).order_by(ENTRIES.c.seq)
                ).mappings()
            ]
            state = dict(
                conn.execute(select(STATE).where(STATE.c.contract == self.contract)).mappings().one()
            )
            if removed:
                first = removed[0]["seq"]
                events = {r["event"] for r in removed}
                # The values in force just before the first removed entry, from the entries that remain.
                values: dict[str, Any] = {}
                changes = [r for r in removed if r["event"] == "SettlementValueChanged"]
                if changes:  # the value the first removed change replaced
                    values["settlement_value"] = changes[0]["previous_value"]
                if events & {*_SWITCHES, "RoleChanged"}:
                    values.update(_INITIAL_SWITCHES)
                    values.update(_switches(self._remaining_switches(first)))
                paused = self.conn.execute(
                    select(ENTRIES.c.paused_duration)
                    .where(ENTRIES.c.event == "PauseChanged", ENTRIES.c.seq < first)
                    .order_by(ENTRIES.c.seq.desc())
                    .limit(1)
                ).scalar()
                d = _deltas(removed, -1, params, paused=paused or 0)
                conn.execute(delete(ENTRIES).where(ENTRIES.c.block_number > ancestor.number))
                self._apply(d)
                conn.execute(delete(PARTNERS).where(PARTNERS.c.registered_seq >= first))
                changed = {r["partner_id"] for r in removed if r["event"] in _PARTNER_CHANGES}
                self._update_partners(d.partners, {p: self._partner_fields(p) for p in changed})
                self._remove_records(first)
                if "RoleChanged" in events:
                    self._recompute_roles()
                state.update(values)
                last = conn.execute(
                    select(ENTRIES.c.seq, ENTRIES.c.head).order_by(ENTRIES.c.seq.desc()).limit(1)
                ).first()
                conn.execute(
                    update(STATE)
                    .where(STATE.c.contract == self.contract)
                    .values(
                        seq=last.seq if last else 0,
                        head=bytes(last.head) if last else ZERO_HASH,
                        total_issued=STATE.c.total_issued + d.issued,
                        total_redeemed=STATE.c.total_redeemed + d.redeemed,
                        total_expired=STATE.c.total_expired + d.expired,
                        total_reversed=STATE.c.total_reversed + d.reversed,
                        total_refunded=STATE.c.total_refunded + d.refunded,
                        **values,
                    )
                )
            self._remove_timelock_events(ancestor.number)
            conn.execute(delete(SUPPLY).where(SUPPLY.c.block_number > ancestor.number))
            conn.execute(delete(BLOCKS).where(BLOCKS.c.number > ancestor.number))
            paused_at = PauseState.of_state(state).seconds_at(ancestor.timestamp)
            self._refresh_tiers(params.epoch_at(ancestor.timestamp, paused_at), removed, -1)
            self._move_cursor(ancestor)
        return len(removed)

    def rewind_to_last_entry(self, floor: int) -> int:
        """Moves the cursor back to the block of the last entry held (``floor`` when there is none), so the
        blocks after it are read again; entries and timelock logs already held are skipped then. Returns the
        new cursor."""
        with self.conn.begin():
            last = self.conn.execute(
                select(ENTRIES.c.block_number, ENTRIES.c.block_hash).order_by(ENTRIES.c.seq.desc()).limit(1)
            ).first()
            number, block_hash = (last.block_number, bytes(last.block_hash)) if last else (floor, None)
            self.conn.execute(
                update(CURSORS)
                .where(CURSORS.c.contract == self.contract)
                .values(block_number=number, block_hash=block_hash)
            )
            self.conn.execute(delete(BLOCKS).where(BLOCKS.c.number > number))
        return int(number)

    # ------------------------------------------------------------------ pieces

    def _link_originals(self, rows: list[dict[str, Any]]) -> None:
        """Links each reversal in ``rows`` to the issue or batch item it reverses (``original_seq``, and that
        issuance's ``epoch``) and each refund to its redemption's first part, found among the rows before it
        or the entries held (an original always comes first; the customer's entries are an index lookup).

        An item is its partner, reference (the issue's, or the batch's root) and leaf (customer, amount,
        item reference); identical items of one batch are one leaf, whose reversals link to the first."""
        links = [r for r in rows if r["event"] == "IssuanceReversed" or r["event"] == "RedemptionRefunded"]
        if not links:
            return
        wanted = {_original_key(r): r for r in links}
        found: dict[tuple[Any, ...], tuple[int, int | None]] = {}
        for r in rows:
            if r["event"] in _ISSUANCES or r["event"] == "PointsRedeemed":
                key = _original_key(r)
                if key in wanted and key not in found:
                    found[key] = (r["seq"], r["epoch"])
        for key in wanted.keys() - found.keys():
            kind, partner_id, ref, account, item_ref, amount = key
            query = select(ENTRIES.c.seq, ENTRIES.c.epoch).where(
                ENTRIES.c.account == account, ENTRIES.c.partner_id == partner_id, ENTRIES.c.ref == ref
            )
            if kind == "issuance":
                query = query.where(
                    ENTRIES.c.event.in_(_ISSUANCES),
                    ENTRIES.c.item_ref == item_ref,
                    ENTRIES.c.amount == amount,
                )
            else:
                query = query.where(ENTRIES.c.event == "PointsRedeemed")
            original = self.conn.execute(query.order_by(ENTRIES.c.seq).limit(1)).first()
            if original is not None:
                found[key] = (original.seq, original.epoch)
        for r in links:
            seq, epoch = found.get(_original_key(r), (None, None))
            r["original_seq"] = seq
            if r["event"] == "IssuanceReversed":
                r["epoch"] = epoch

    def _insert_entries(self, rows: list[dict[str, Any]]) -> None:
        conn = self.conn
        if conn.dialect.name == "postgresql":
            # COPY: the PostgreSQL bulk path (an order of magnitude above INSERT for wide rows).
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            columns = list(rows[0])
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {ENTRIES.name} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for r in rows:
                    copy.write_row([r[c] for c in columns])
            return
        # SQLite: the driver's executemany, one per set of non-NULL columns (in effect one per event kind),
        # without SQLAlchemy's per-row, per-column parameter processing (half the backfill's time otherwise).
        # Every value binds as it is but BigUint's, which is decimal text on SQLite.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(c for c, v in r.items() if v is not None), []).append(r)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for names, group in groups.items():
                get = itemgetter(*names)
                values: list[tuple[Any, ...]] = [get(r) if len(names) > 1 else (get(r),) for r in group]
                text_at = [i for i, c in enumerate(names) if c in _TEXT_COLUMNS]
                if text_at:
                    values = [tuple(str(v) if i in text_at else v for i, v in enumerate(t)) for t in values]
                marks = ", ".join("?" * len(names))
                cursor.executemany(
                    f"INSERT INTO {ENTRIES.name} ({', '.join(names)}) VALUES ({marks})", values
                )
        finally:
            cursor.close()

    def _apply(self, d: _Deltas) -> None:
        conn = self.conn
        # keys whose sums do not change are left alone (a refund's part that expired on arrival: +x, -x)
        keys = [k for k in d.held.keys() | d.earned.keys() if d.held.get(k, 0) or d.earned.get(k, 0)]
        if keys:
            _upsert_add(
                conn,
                ACCOUNT_EPOCHS,
                ("account", "epoch"),
                [
                    {
                        "account": a,
                        "epoch": e,
                        "held": d.held.get((a, e), 0),
                        "earned": d.earned.get((a, e), 0),
                    }
                    for a, e in keys
                ],
            )
            shrunk = [
                {"a": a, "e": e} for a, e in keys if d.held.get((a, e), 0) < 0 or d.earned.get((a, e), 0) < 0
            ]
            if shrunk:
                self._delete_zero(ACCOUNT_EPOCHS, ("account", "epoch"), ("held", "earned"), shrunk)
        if d.periods:
            _upsert_add(
                conn,
                PERIODS,
                ("partner_id", "period"),
                [
                    {"partner_id": p, "period": e, **dict(zip(_PERIOD_SUMS, v, strict=True))}
                    for (p, e), v in d.periods.items()
                ],
            )
            shrunk = [{"a": p, "e": e} for (p, e), v in d.periods.items() if min(v) < 0]
            if shrunk:
                self._delete_zero(PERIODS, ("partner_id", "period"), _PERIOD_SUMS, shrunk)

    def _delete_zero(
        self, table: Table, keys: tuple[str, str], sums: Sequence[str], rows: list[dict[str, Any]]
    ) -> None:
        self.conn.execute(
            delete(table).where(
                and_(
                    table.c[keys[0]] == bindparam("a"),
                    table.c[keys[1]] == bindparam("e"),
                    *(table.c[s] == 0 for s in sums),
                )
            ),
            rows,
        )

    def _insert_registrations(self, rows: list[dict[str, Any]]) -> None:
        """Partner rows for the registrations of a forward batch, with their sums at zero."""
        registered = [r for r in rows if r["event"] == "PartnerRegistered"]
        if not registered:
            return
        self.conn.execute(
            insert(PARTNERS),
            [
                {
                    "partner_id": r["partner_id"],
                    "operator": r["account"],
                    "settlement": r["counterparty"],
                    "status": PartnerStatus.ACTIVE.value,
                    "can_issue": r["can_issue"],
                    "can_accept": r["can_accept"],
                    **dict.fromkeys(_PARTNER_SUMS, 0),  # the registration's allowance is one of the sums
                    "registered_seq": r["seq"],
                }
                for r in registered
            ],
        )

    def _update_partners(
        self, sums: Mapping[int, list[int]], fields: Mapping[int, Mapping[str, Any]]
    ) -> None:
        """Adds ``sums`` to the partners' figures and sets their registry ``fields``. The figures can pass
        2^63 (values reach 2^128), beyond SQLite's integers: they are added here, under the write lease."""
        ids = set(sums) | set(fields)
        if not ids:
            return
        rows = self.conn.execute(
            select(PARTNERS.c.partner_id, *(PARTNERS.c[c] for c in _PARTNER_SUMS)).where(
                PARTNERS.c.partner_id.in_(ids)
            )
        ).all()
        updates = []
        for row in rows:
            pid = row[0]
            delta = sums.get(pid, (0,) * len(_PARTNER_SUMS))
            values: dict[str, Any] = {
                c: v + dv for c, v, dv in zip(_PARTNER_SUMS, row[1:], delta, strict=True)
            }
            values.update(fields.get(pid, {}))
            values["b_pid"] = pid
            updates.append(values)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in updates:  # executemany needs the same columns in every row
            groups.setdefault(tuple(sorted(values)), []).append(values)
        for group in groups.values():
            self.conn.execute(update(PARTNERS).where(PARTNERS.c.partner_id == bindparam("b_pid")), group)

    def _partner_fields(self, partner_id: int) -> dict[str, Any]:
        """A partner's registry fields as the entries held leave them (after a rollback)."""
        rows = self.conn.execute(
            select(ENTRIES)
            .where(
                ENTRIES.c.partner_id == partner_id,
                ENTRIES.c.event.in_(("PartnerRegistered", *_PARTNER_CHANGES)),
            )
            .order_by(ENTRIES.c.seq)
        ).mappings()
        return _partner_changes([dict(r) for r in rows]).get(partner_id, {})

    def _append_records(self, rows: list[dict[str, Any]]) -> None:
        """Partner history, settlements and pause intervals of a forward batch: one row per entry."""
        conn = self.conn
        history = [_history_row(r) for r in rows if r["event"] in _HISTORY_EVENTS]
        if history:
            conn.execute(insert(HISTORY), history)
        settlements = [
            {
                "seq": r["seq"],
                "partner_id": r["partner_id"],
                "points": r["settled_points"],
                "value": r["settled_value"],
                "payment_ref": r["ref"],
                "block_number": r["block_number"],
                "block_timestamp": r["block_timestamp"],
                "tx_hash": r["tx_hash"],
            }
            for r in rows
            if r["event"] == "SettlementRecorded"
        ]
        if settlements:
            conn.execute(insert(SETTLEMENTS), settlements)
        for r in rows:
            if r["event"] != "PauseChanged":
                continue
            if r["paused"]:
                conn.execute(
                    insert(PAUSES).values(
                        started_seq=r["seq"],
                        started_at=r["block_timestamp"],
                        started_block=r["block_number"],
                        paused_before=r["paused_duration"],
                        ended_seq=None,
                        ended_at=None,
                        ended_block=None,
                    )
                )
            else:
                conn.execute(
                    update(PAUSES)
                    .where(PAUSES.c.ended_seq.is_(None))
                    .values(ended_seq=r["seq"], ended_at=r["block_timestamp"], ended_block=r["block_number"])
                )

    def _remove_records(self, first: int) -> None:
        """Undoes :meth:`_append_records` for the entries from ``first`` on."""
        conn = self.conn
        conn.execute(delete(HISTORY).where(HISTORY.c.seq >= first))
        conn.execute(delete(SETTLEMENTS).where(SETTLEMENTS.c.seq >= first))
        conn.execute(delete(PAUSES).where(PAUSES.c.started_seq >= first))
        conn.execute(
            update(PAUSES)
            .where(PAUSES.c.ended_seq >= first)
            .values(ended_seq=None, ended_at=None, ended_block=None)
        )

    def _apply_roles(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """The role holders after ``rows``: a grant adds a holder, a revocation removes it."""
        last: dict[tuple[bytes, str], Mapping[str, Any]] = {}
        for r in rows:
            if r["event"] == "RoleChanged":
                last[(bytes(r["role"]), r["account"])] = r
        if not last:
            return
        self.conn.execute(
            delete(ROLES).where(
                ROLES.c.role == bindparam("b_role"), ROLES.c.account == bindparam("b_account")
            ),
            [{"b_role": role, "b_account": account} for role, account in last],
        )
        holders = [
            {
                "role": role,
                "account": account,
                "granted_seq": r["seq"],
                "granted_by": r["counterparty"],
                "block_number": r["block_number"],
                "block_timestamp": r["block_timestamp"],
            }
            for (role, account), r in last.items()
            if r["granted"]
        ]
        if holders:
            self.conn.execute(insert(ROLES), holders)

    def _recompute_roles(self) -> None:
        """The role holders from every role change held (after a rollback; role changes are few)."""
        self.conn.execute(delete(ROLES))
        changes = self.conn.execute(
            select(ENTRIES).where(ENTRIES.c.event == "RoleChanged").order_by(ENTRIES.c.seq)
        ).mappings()
        self._apply_roles([dict(r) for r in changes])

    def _remaining_switches(self, before: int) -> list[dict[str, Any]]:
        """The held entries before seq ``before`` that set the ledger state's switches, in order."""
        return [
            dict(r)
            for r in self.conn.execute(
                select(ENTRIES)
                .where(
                    ENTRIES.c.seq < before,
                    or_(
                        ENTRIES.c.event.in_(_SWITCHES),
                        and_(ENTRIES.c.event == "RoleChanged", ENTRIES.c.role == DEFAULT_ADMIN_ROLE),
                    ),
                )
                .order_by(ENTRIES.c.seq)
            ).mappings()
        ]

    # ------------------------------------------------------------------ the timelock

    def _timelock(self) -> str:
        if self.timelock is None:
            self.timelock = self.conn.execute(
                select(CURSORS.c.timelock).where(CURSORS.c.contract == self.contract)
            ).scalar()
        if self.timelock is None:
            raise RuntimeError(f"the mirror of {self.contract} mirrors no timelock")
        return self.timelock

    def _add_timelock_events(self, rows: Sequence[dict[str, Any]]) -> None:
        conn = self.conn
        stmt = _insert(conn, TIMELOCK_EVENTS).on_conflict_do_nothing(
            index_elements=["block_number", "log_index"]
        )
        conn.execute(stmt, list(rows))
        self._recompute_operations({r["operation_id"] for r in rows if r["operation_id"] is not None})
        if any(r["event"] == "MinDelayChange" for r in rows):
            last = (
                conn.execute(
                    select(TIMELOCK_EVENTS)
                    .where(TIMELOCK_EVENTS.c.event == "MinDelayChange")
                    .order_by(TIMELOCK_EVENTS.c.block_number.desc(), TIMELOCK_EVENTS.c.log_index.desc())
                    .limit(1)
                )
                .mappings()
                .one()
            )
            self._set_min_delay(decode_timelock_log(dict(last))["newDuration"])

    def _remove_timelock_events(self, after: int) -> None:
        conn = self.conn
        removed = [
            dict(r)
            for r in conn.execute(
                select(TIMELOCK_EVENTS)
                .where(TIMELOCK_EVENTS.c.block_number > after)
                .order_by(TIMELOCK_EVENTS.c.block_number, TIMELOCK_EVENTS.c.log_index)
            ).mappings()
        ]
        if not removed:
            return
        conn.execute(delete(TIMELOCK_EVENTS).where(TIMELOCK_EVENTS.c.block_number > after))
        self._recompute_operations({r["operation_id"] for r in removed if r["operation_id"] is not None})
        changes = [r for r in removed if r["event"] == "MinDelayChange"]
        if changes:  # the delay the first removed change replaced
            self._set_min_delay(decode_timelock_log(changes[0])["oldDuration"])

    def _set_min_delay(self, delay: int) -> None:
        self.conn.execute(
            update(STATE).where(STATE.c.contract == self.contract).values(timelock_min_delay=delay)
        )

    def _recompute_operations(self, ids: set[bytes]) -> None:
        """The ``admin_operations`` rows of operations ``ids`` from every event of theirs held."""
        if not ids:
            return
        conn = self.conn
        events = [
            dict(r)
            for r in conn.execute(
                select(TIMELOCK_EVENTS)
                .where(TIMELOCK_EVENTS.c.operation_id.in_(ids))
                .order_by(TIMELOCK_EVENTS.c.block_number, TIMELOCK_EVENTS.c.log_index)
            ).mappings()
        ]
        conn.execute(delete(OPERATIONS).where(OPERATIONS.c.operation_id.in_(ids)))
        operations = fold_operations(events, timelock=self._timelock(), ledger=self.contract)
        if operations:
            conn.execute(insert(OPERATIONS), operations)

    def _append_supply(self, d: _Deltas, state: Mapping[str, Any]) -> None:
        names = ("total_issued", "total_redeemed", "total_expired", "total_reversed", "total_refunded")
        totals = [state[name] for name in names]
        points = []
        for number in sorted(d.by_block):
            timestamp, *added = d.by_block[number]
            totals = [t + a for t, a in zip(totals, added, strict=True)]
            points.append(
                {"block_number": number, "timestamp": timestamp, **dict(zip(names, totals, strict=True))}
            )
        if points:
            self.conn.execute(insert(SUPPLY), points)

    def _refresh_tiers(self, as_of: int, changed: list[dict[str, Any]], sign: int) -> None:
        """Tiers as of epoch ``as_of``: all of them when the epoch moved, else those of accounts whose
        earnings ``changed`` added to (``sign`` +1) or took from (-1)."""
        conn = self.conn
        previous = conn.execute(select(STATE.c.tiers_as_of).where(STATE.c.contract == self.contract)).scalar()
        low = as_of - self.tiers.qualifying_epochs + 1
        if previous != as_of:
            conn.execute(delete(TIERS))
            qualifying = func.sum(ACCOUNT_EPOCHS.c.earned)
            conn.execute(
                insert(TIERS).from_select(
                    ["account", "qualifying_points", "tier", "as_of_epoch"],
                    select(
                        ACCOUNT_EPOCHS.c.account, qualifying, self.tiers.tier_sql(qualifying), literal(as_of)
                    )
                    .where(ACCOUNT_EPOCHS.c.epoch >= low, ACCOUNT_EPOCHS.c.epoch <= as_of)
                    .group_by(ACCOUNT_EPOCHS.c.account)
                    .having(qualifying > 0),
                )
            )
            conn.execute(update(STATE).where(STATE.c.contract == self.contract).values(tiers_as_of=as_of))
            return
        earned: defaultdict[str, int] = defaultdict(int)
        for r in changed:
            event = r["event"]
            if event in _ISSUANCES and low <= r["epoch"] <= as_of:
                earned[r["account"]] += sign * r["amount"]
            elif event == "IssuanceReversed" and r["epoch"] is not None and low <= r["epoch"] <= as_of:
                earned[r["account"]] -= sign * r["requested"]
        earned = defaultdict(int, {a: p for a, p in earned.items() if p})
        if not earned:
            return
        stmt = _insert(conn, TIERS)
        total = TIERS.c.qualifying_points + stmt.excluded.qualifying_points
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["account"],
                set_={"qualifying_points": total, "tier": self.tiers.tier_sql(total)},
            ),
            [
                {
                    "account": a,
                    "qualifying_points": p,
                    "tier": self.tiers.tier_of(max(p, 0)),
                    "as_of_epoch": as_of,
                }
                for a, p in earned.items()
            ],
        )
        if any(p < 0 for p in earned.values()):
            conn.execute(delete(TIERS).where(TIERS.c.qualifying_points <= 0))

    def _move_cursor(self, block: BlockRow) -> None:
        self.conn.execute(
            update(CURSORS)
            .where(CURSORS.c.contract == self.contract)
            .values(block_number=block.number, block_hash=block.hash)
        )
