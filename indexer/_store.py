"""Writes to the mirror: one SQL transaction per batch, entries and derived rows and the cursor together.

Every derived figure is a sum over entries (points held, earned, issued, redeemed, expired, the allowance)
or the value of the last entry of a kind (partner status, settlement value, transfer switch, the hash-chain
head). A batch adds its entries' contributions; a reorganisation subtracts the contributions of the entries
it removes (the same code with the sign flipped) and re-reads the "last value" fields from the entries that
remain. Rows whose sums are all zero are deleted, so the tables equal a fresh index of the same chain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import Connection, Table, and_, bindparam, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from chain import RetryableError

from ._decode import keccak
from ._schema import (
    AccountEpoch,
    Block,
    Cursor,
    LedgerEntry,
    LedgerState,
    Partner,
    PartnerPeriod,
    SupplyPoint,
    Tier,
)

__all__ = ["BlockRow", "CursorState", "IncompleteLogs", "LedgerParams", "Store", "TierPolicy"]

ZERO_HASH = bytes(32)
#: ``ledger_entries`` columns of type BigUint: decimal text on SQLite.
_TEXT_COLUMNS = frozenset({"nonce", "value", "previous_value"})
ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]
ACCOUNT_EPOCHS: Table = AccountEpoch.__table__  # type: ignore[assignment]
PARTNERS: Table = Partner.__table__  # type: ignore[assignment]
PERIODS: Table = PartnerPeriod.__table__  # type: ignore[assignment]
SUPPLY: Table = SupplyPoint.__table__  # type: ignore[assignment]
TIERS: Table = Tier.__table__  # type: ignore[assignment]
BLOCKS: Table = Block.__table__  # type: ignore[assignment]
CURSORS: Table = Cursor.__table__  # type: ignore[assignment]
STATE: Table = LedgerState.__table__  # type: ignore[assignment]


class IncompleteLogs(RetryableError):
    """The node's answer skips ledger entries (their ``seq`` is not contiguous with the mirror's): the range
    is fetched again, never committed with a hole. ``before_batch``: the first entry of the answer is not the
    one after the mirror's last, so the hole lies below the cursor."""

    def __init__(self, message: str, *, before_batch: bool = False) -> None:
        super().__init__(message)
        self.before_batch = before_batch


@dataclass(frozen=True, slots=True)
class LedgerParams:
    """The ledger's fixed epoch parameters (set in its constructor)."""

    genesis: int
    epoch_length: int
    validity: int

    def epoch_at(self, timestamp: int) -> int:
        return max(timestamp - self.genesis, 0) // self.epoch_length

    def expires_at(self, epoch: int) -> int:
        """The first second at which points of ``epoch`` are expired."""
        return self.genesis + (epoch + self.validity) * self.epoch_length

    def first_live_epoch(self, timestamp: int) -> int:
        return self.epoch_at(timestamp) - self.validity + 1


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


@dataclass
class _Deltas:
    """What a list of entries adds to (sign +1) or takes from (sign -1) the summed figures."""

    held: defaultdict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    earned: defaultdict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    # partner -> [allowance, issued, redeemed]
    partners: defaultdict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    # (partner, period) -> [issued, redeemed]
    periods: defaultdict[tuple[int, int], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    # block -> (timestamp, issued, redeemed, expired) added in that block (forward only)
    by_block: dict[int, list[int]] = field(default_factory=dict)


def _deltas(rows: Iterable[Mapping[str, Any]], sign: int, params: LedgerParams) -> _Deltas:
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
        elif event == "PartnerRegistered":
            d.partners[r["partner_id"]][0] += sign * r["value"]
            continue
        elif event == "PartnerAllowanceChanged":
            d.partners[r["partner_id"]][0] += sign * (r["value"] - r["previous_value"])
            continue
        if event in ("PointsIssued", "PointsBatchIssued"):
            partner = d.partners[r["partner_id"]]
            partner[0] -= sign * amount
            partner[1] += sign * amount
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"]))][0] += sign * amount
            d.issued += sign * amount
            _per_block(d, r)[1] += sign * amount
        elif event == "PointsRedeemed":
            d.partners[r["partner_id"]][2] += sign * amount
            d.periods[(r["partner_id"], params.epoch_at(r["block_timestamp"]))][1] += sign * amount
            d.redeemed += sign * amount
            _per_block(d, r)[2] += sign * amount
    return d


def _per_block(d: _Deltas, r: Mapping[str, Any]) -> list[int]:
    entry = d.by_block.get(r["block_number"])
    if entry is None:
        entry = d.by_block[r["block_number"]] = [r["block_timestamp"], 0, 0, 0]
    return entry


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
    """The mirror of one ledger contract, on one connection (the one holding the write lease)."""

    def __init__(self, conn: Connection, contract: str, tiers: TierPolicy = TierPolicy()) -> None:
        self.conn = conn
        self.contract = contract.lower()
        self.tiers = tiers

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
        )

    def window(self) -> dict[int, bytes]:
        """The stored blocks of the unfinalised window: number -> hash."""
        rows = self.conn.execute(select(BLOCKS.c.number, BLOCKS.c.hash)).all()
        if self.conn.in_transaction():
            self.conn.commit()
        return {number: bytes(h) for number, h in rows}

    # ------------------------------------------------------------------ writing

    def initialise(
        self, *, chain_id: int, deployment_block: int, params: LedgerParams, settlement_value: int
    ) -> CursorState:
        """The cursor just before the deployment block, and the ledger state the constructor set."""
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
                    settlement_value=settlement_value,
                    transfers_enabled=False,
                    tiers_as_of=None,
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
    ) -> int:
        """Adds ``rows`` (decoded entries of blocks after the cursor, in order), stores ``blocks`` of the
        window (dropping those below ``keep_from``) and moves the cursor to ``to_block``, in one transaction.
        Entries the mirror already holds are skipped, so replaying a range changes nothing. ``chain_seq``,
        the ledger's ``ledgerSequence()`` at ``to_block`` when known, must not exceed the last entry's: a
        node that dropped entries at the end of a range raises :class:`IncompleteLogs`, leaving no hole.
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
                self._insert_entries(fresh)
                d = _deltas(fresh, +1, params)
                self._apply_last_values(fresh)  # registrations first: the sums add to their rows
                self._apply(d)
                self._append_supply(d, state)
                conn.execute(
                    update(STATE)
                    .where(STATE.c.contract == self.contract)
                    .values(
                        seq=seq,
                        head=head,
                        total_issued=STATE.c.total_issued + d.issued,
                        total_redeemed=STATE.c.total_redeemed + d.redeemed,
                        total_expired=STATE.c.total_expired + d.expired,
                    )
                )
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
            self._refresh_tiers(params.epoch_at(to_block.timestamp), fresh, +1)
            self._move_cursor(to_block)
        return len(fresh)

    def rollback_to(self, ancestor: BlockRow, params: LedgerParams) -> int:
        """Removes every entry after block ``ancestor`` and its contributions, in one transaction; the cursor
        moves back to ``ancestor``. Returns how many entries were removed."""
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
                d = _deltas(removed, -1, params)
                conn.execute(delete(ENTRIES).where(ENTRIES.c.block_number > ancestor.number))
                self._apply(d)
                first = removed[0]["seq"]
                conn.execute(delete(PARTNERS).where(PARTNERS.c.registered_seq >= first))
                self._restore_last_values(removed, state)
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
                    )
                )
            conn.execute(delete(SUPPLY).where(SUPPLY.c.block_number > ancestor.number))
            conn.execute(delete(BLOCKS).where(BLOCKS.c.number > ancestor.number))
            self._refresh_tiers(params.epoch_at(ancestor.timestamp), removed, -1)
            self._move_cursor(ancestor)
        return len(removed)

    def rewind_to_last_entry(self, floor: int) -> int:
        """Moves the cursor back to the block of the last entry held (``floor`` when there is none), so the
        blocks after it are read again; entries already held are skipped then. Returns the new cursor."""
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
        if d.held or d.earned:
            keys = d.held.keys() | d.earned.keys()
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
            shrunk = [{"a": a, "e": e} for (a, e), v in d.held.items() if v < 0] + [
                {"a": a, "e": e} for (a, e), v in d.earned.items() if v < 0
            ]
            if shrunk:
                self._delete_zero(ACCOUNT_EPOCHS, ("account", "epoch"), ("held", "earned"), shrunk)
        if d.partners:
            # Registration rows are inserted by _apply_last_values before this runs (forward), or the
            # partner exists already; a plain UPDATE adds to it.
            conn.execute(
                update(PARTNERS)
                .where(PARTNERS.c.partner_id == bindparam("pid"))
                .values(
                    allowance=PARTNERS.c.allowance + bindparam("allowance"),
                    issued=PARTNERS.c.issued + bindparam("issued"),
                    redeemed=PARTNERS.c.redeemed + bindparam("redeemed"),
                ),
                [
                    {"pid": p, "allowance": v[0], "issued": v[1], "redeemed": v[2]}
                    for p, v in d.partners.items()
                ],
            )
        if d.periods:
            _upsert_add(
                conn,
                PERIODS,
                ("partner_id", "period"),
                [
                    {"partner_id": p, "period": e, "issued": v[0], "redeemed": v[1]}
                    for (p, e), v in d.periods.items()
                ],
            )
            shrunk = [{"a": p, "e": e} for (p, e), v in d.periods.items() if v[0] < 0 or v[1] < 0]
            if shrunk:
                self._delete_zero(PERIODS, ("partner_id", "period"), ("issued", "redeemed"), shrunk)

    def _delete_zero(
        self, table: Table, keys: tuple[str, str], sums: tuple[str, str], rows: list[dict[str, Any]]
    ) -> None:
        self.conn.execute(
            delete(table).where(
                and_(
                    table.c[keys[0]] == bindparam("a"),
                    table.c[keys[1]] == bindparam("e"),
                    table.c[sums[0]] == 0,
                    table.c[sums[1]] == 0,
                )
            ),
            rows,
        )

    def _apply_last_values(self, rows: list[dict[str, Any]]) -> None:
        """Registrations, status changes, settlement value and the transfer switch of a forward batch."""
        conn = self.conn
        registered = [r for r in rows if r["event"] == "PartnerRegistered"]
        if registered:
            conn.execute(
                insert(PARTNERS),
                [
                    {
                        "partner_id": r["partner_id"],
                        "operator": r["account"],
                        "settlement": r["counterparty"],
                        "can_issue": r["can_issue"],
                        "can_accept": r["can_accept"],
                        "active": True,
                        "allowance": 0,  # the registration's allowance is added with the other sums
                        "issued": 0,
                        "redeemed": 0,
                        "registered_seq": r["seq"],
                    }
                    for r in registered
                ],
            )
        status: dict[int, bool] = {}
        values: dict[str, Any] = {}
        for r in rows:
            if r["event"] == "PartnerStatusChanged":
                status[r["partner_id"]] = r["active"]
            elif r["event"] == "SettlementValueChanged":
                values["settlement_value"] = r["value"]
            elif r["event"] == "TransfersEnabledChanged":
                values["transfers_enabled"] = r["enabled"]
        if status:
            conn.execute(
                update(PARTNERS)
                .where(PARTNERS.c.partner_id == bindparam("pid"))
                .values(active=bindparam("active")),
                [{"pid": p, "active": a} for p, a in status.items()],
            )
        if values:
            conn.execute(update(STATE).where(STATE.c.contract == self.contract).values(**values))

    def _restore_last_values(self, removed: list[dict[str, Any]], state: Mapping[str, Any]) -> None:
        """After a rollback: the "last value" fields as the remaining entries leave them."""
        conn = self.conn
        for pid in {r["partner_id"] for r in removed if r["event"] == "PartnerStatusChanged"}:
            last = conn.execute(
                select(ENTRIES.c.active)
                .where(ENTRIES.c.event == "PartnerStatusChanged", ENTRIES.c.partner_id == pid)
                .order_by(ENTRIES.c.seq.desc())
                .limit(1)
            ).scalar()
            conn.execute(
                update(PARTNERS)
                .where(PARTNERS.c.partner_id == pid)
                .values(active=True if last is None else last)
            )
        values: dict[str, Any] = {}
        settlement = [r for r in removed if r["event"] == "SettlementValueChanged"]
        if settlement:  # the value the first removed change replaced
            values["settlement_value"] = settlement[0]["previous_value"]
        if any(r["event"] == "TransfersEnabledChanged" for r in removed):
            last = conn.execute(
                select(ENTRIES.c.enabled)
                .where(ENTRIES.c.event == "TransfersEnabledChanged")
                .order_by(ENTRIES.c.seq.desc())
                .limit(1)
            ).scalar()
            values["transfers_enabled"] = bool(last)
        if values:
            conn.execute(update(STATE).where(STATE.c.contract == self.contract).values(**values))

    def _append_supply(self, d: _Deltas, state: Mapping[str, Any]) -> None:
        issued, redeemed, expired = state["total_issued"], state["total_redeemed"], state["total_expired"]
        points = []
        for number in sorted(d.by_block):
            timestamp, i, r, e = d.by_block[number]
            issued, redeemed, expired = issued + i, redeemed + r, expired + e
            points.append(
                {
                    "block_number": number,
                    "timestamp": timestamp,
                    "total_issued": issued,
                    "total_redeemed": redeemed,
                    "total_expired": expired,
                }
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
            if r["event"] in ("PointsIssued", "PointsIssuedInBatch") and low <= r["epoch"] <= as_of:
                earned[r["account"]] += sign * r["amount"]
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
        if sign < 0:
            conn.execute(delete(TIERS).where(TIERS.c.qualifying_points <= 0))

    def _move_cursor(self, block: BlockRow) -> None:
        self.conn.execute(
            update(CURSORS)
            .where(CURSORS.c.contract == self.contract)
            .values(block_number=block.number, block_hash=block.hash)
        )
