"""Does the mirror say what the chain says? Every figure the mirror serves, compared with ``eth_call``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from sqlalchemy import Connection, Engine, func, select
from web3 import Web3

from chain import Ledger, Rpc

from ._decode import keccak
from ._errors import BlockNotMirrored
from ._queries import MirrorView
from ._schema import LedgerEntry
from ._source import LogSource
from ._store import PauseState
from ._timelock import EXECUTED, SCHEDULED

__all__ = ["Difference", "reconcile"]

ZERO_ADDRESS = "0x" + "00" * 20
#: TimelockController's ``getTimestamp`` of an executed operation.
_DONE_TIMESTAMP = 1

Key = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Difference:
    """One figure that differs: ``what`` (of ``key``, for per-account and per-partner figures) is
    ``mirror`` in SQL and ``chain`` on chain."""

    what: str
    key: str | None
    mirror: Any
    chain: Any

    def __str__(self) -> str:
        where = f"[{self.key}]" if self.key is not None else ""
        return f"{self.what}{where}: mirror {self.mirror!r}, chain {self.chain!r}"


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def reconcile(w3: Web3, engine: Engine, address: str, block: int | None = None) -> list[Difference]:
    """The differences between the mirror of the ledger at ``address`` and the chain at ``block`` (the
    mirror's cursor when not given; any other block raises :class:`BlockNotMirrored`). Empty when they agree.

    Compared: the block's hash; every mirrored account's live balance, outstanding supply, the totals
    issued, redeemed, expired, reversed and refunded, pending expiry; every partner's registry entry and
    counters (all of ``partner(id)``: reversed, refunded and their values too), its all-time and open
    positions, and the set of partners; the coalition's all-time and open positions; per reversed issuance
    item the points its reversals asked back (``reversedOf``, the item's amount read from the issue or batch
    item the mirror links the reversals to, so a wrong link shows) and per refunded redemption the points
    refunded (``refundedOf``); the settlement value and the transfer switch; the pause (``paused()``,
    ``pausedDuration()``, ``ledgerClock()``, ``currentEpoch()`` at the block's time); for every (role,
    account) a role change named, whether it holds the role, and per role how many of them do; the default
    admin and a pending handover or delay change; the last sequence number and the hash-chain head. With a
    mirrored timelock also its minimum delay and, per operation, ``getTimestamp(id)`` (0 cancelled, 1
    executed, else when it is ready). The mirror is read in one transaction, so it is one consistent state
    even while the indexer writes.
    """
    source = LogSource(w3)
    ledger = Ledger(Rpc(w3), address)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        view = MirrorView(conn, address)
        cursor = view.cursor.block_number
        if block is None:
            block = cursor
        if block != cursor:
            raise BlockNotMirrored(block, cursor)
        header = source.headers([block])[0]
        if header is None:
            return [Difference("block", str(block), view.cursor.block_hash, None)]
        at = header.timestamp
        state = view.state()
        balances = view.balances(at=at)
        partners = {p.partner_id: p for p in view.partners()}
        paused_duration = view.paused_duration(at=at)
        pending_delay: tuple[int, int] = (0, 0)
        if state.pending_delay_schedule and state.pending_delay_schedule >= at:
            pending_delay = (state.pending_delay or 0, state.pending_delay_schedule)
        mirror: dict[Key, Any] = {
            ("block hash", None): _hex(view.cursor.block_hash),
            ("outstandingSupply", None): view.outstanding_supply(at=at),
            ("pendingExpiry", None): view.pending_expiry(at=at),
            ("totalIssued", None): state.total_issued,
            ("totalRedeemed", None): state.total_redeemed,
            ("totalExpired", None): state.total_expired,
            ("totalReversed", None): state.total_reversed,
            ("totalRefunded", None): state.total_refunded,
            ("settlementValue", None): state.settlement_value,
            ("transfersEnabled", None): state.transfers_enabled,
            ("ledgerSequence", None): state.seq,
            ("ledgerHead", None): _hex(state.head),
            ("partnerIds", None): sorted(partners),
            ("coalitionPosition", None): _pair(view.coalition_position()),
            ("coalitionOpenPosition", None): _pair(view.coalition_open_position()),
            ("paused", None): state.paused,
            ("pausedDuration", None): paused_duration,
            # the same from the ledger state's pause columns (what the store counts ledger epochs with)
            ("pausedDuration", "ledger_state"): PauseState.of_state(
                {
                    "paused": state.paused,
                    "paused_duration": state.paused_duration,
                    "paused_since": state.paused_since,
                }
            ).seconds_at(at),
            ("ledgerClock", None): view.params.clock(at, paused_duration),
            ("currentEpoch", None): view.params.epoch_at(at, paused_duration),
            ("defaultAdmin", None): view.default_admin() or ZERO_ADDRESS,
            ("pendingDefaultAdmin", None): (
                state.pending_admin or ZERO_ADDRESS,
                state.pending_admin_schedule or 0,
            ),
            ("pendingDefaultAdminDelay", None): pending_delay,
        }
        for pid, p in partners.items():
            mirror[("partner", str(pid))] = (
                p.operator,
                p.settlement,
                p.status,
                p.can_issue,
                p.can_accept,
                p.allowance,
                p.issued,
                p.redeemed,
                p.issued_value,
                p.redeemed_value,
                p.reversed,
                p.refunded,
                p.reversed_value,
                p.refunded_value,
                p.settled_points,
                p.settled_value,
            )
            mirror[("partnerPosition", str(pid))] = _pair(view.partner_position(pid))
            mirror[("partnerOpenPosition", str(pid))] = _pair(view.partner_open_position(pid))
        for account, points in balances.items():
            mirror[("balanceOf", account)] = points
        for item, points in _returned_items(conn).items():
            mirror[("reversedOf", item)] = points
        for redemption, points in _refunded_redemptions(conn).items():
            mirror[("refundedOf", redemption)] = points
        holders = {(bytes(h.role), h.account) for h in view.role_holders()}
        named = set(
            conn.execute(
                select(LedgerEntry.role, LedgerEntry.account).where(LedgerEntry.event == "RoleChanged")
            ).all()
        )
        role_pairs = sorted({(bytes(role), account) for role, account in named} | holders)
        for role, account in role_pairs:
            mirror[("hasRole", f"0x{role.hex()}:{account}")] = (role, account) in holders
        per_role: defaultdict[bytes, int] = defaultdict(int)
        for role, _ in holders:
            per_role[role] += 1
        for role in {role for role, _ in role_pairs}:
            mirror[("roleHolders", f"0x{role.hex()}")] = per_role[role]
        timelock = view.cursor.timelock
        operations: dict[bytes, int] = {}
        if timelock is not None:
            mirror[("getMinDelay", timelock)] = state.timelock_min_delay
            for op in view.admin_operations():
                ready = {SCHEDULED: op.ready_at, EXECUTED: _DONE_TIMESTAMP}.get(op.status, 0)
                operations[bytes(op.operation_id)] = ready
            for op_id, ready in operations.items():
                mirror[("getTimestamp", f"0x{op_id.hex()}")] = ready

    calls: list[tuple[Key, str, bytes, Callable[[bytes], Any]]] = []

    def view_of(key: Key, function: str, *args: Any, read: Callable[[tuple[Any, ...]], Any]) -> None:
        calls.append(
            (key, ledger.address, ledger.encode(function, *args), lambda a: read(ledger.decode(function, a)))
        )

    for name in (
        "outstandingSupply",
        "pendingExpiry",
        "totalIssued",
        "totalRedeemed",
        "totalExpired",
        "totalReversed",
        "totalRefunded",
        "settlementValue",
        "transfersEnabled",
        "ledgerSequence",
        "paused",
        "pausedDuration",
        "ledgerClock",
        "currentEpoch",
    ):
        view_of((name, None), name, read=lambda out: out[0])
    view_of(("ledgerHead", None), "ledgerHead", read=lambda out: _hex(out[0]))
    view_of(("partnerIds", None), "partnerIds", read=lambda out: sorted(out[0]))
    view_of(("coalitionPosition", None), "coalitionPosition", read=tuple)
    view_of(("coalitionOpenPosition", None), "coalitionOpenPosition", read=tuple)
    view_of(("defaultAdmin", None), "defaultAdmin", read=lambda out: out[0].lower())
    view_of(("pendingDefaultAdmin", None), "pendingDefaultAdmin", read=lambda out: (out[0].lower(), out[1]))
    view_of(("pendingDefaultAdminDelay", None), "pendingDefaultAdminDelay", read=tuple)
    for key in mirror:
        what, who = key
        if who is None or what == "pausedDuration":
            continue
        if what == "partner":
            view_of(key, "partner", int(who), read=_partner)
        elif what in ("partnerPosition", "partnerOpenPosition"):
            view_of(key, what, int(who), read=tuple)
        elif what == "balanceOf":
            view_of(key, "balanceOf", to_checksum_address(who), read=lambda out: out[0])
        elif what == "reversedOf":
            partner_id, ref, customer, amount, item_ref = who.split(":")
            reversal = (
                int(partner_id),
                _bytes(ref),
                to_checksum_address(customer),
                int(amount),
                _bytes(item_ref),
            )
            view_of(key, "reversedOf", *reversal, read=lambda out: out[0])
        elif what == "refundedOf":
            partner_id, ref = who.split(":")
            view_of(key, "refundedOf", int(partner_id), _bytes(ref), read=lambda out: out[0])
        elif what == "hasRole":
            role_hex, account = who.split(":")
            view_of(
                key,
                "hasRole",
                bytes.fromhex(role_hex[2:]),
                to_checksum_address(account),
                read=lambda out: out[0],
            )
        elif what == "getMinDelay":
            calls.append((key, who, _selector("getMinDelay()"), _uint_or_none))
        elif what == "getTimestamp":
            data = _selector("getTimestamp(bytes32)") + abi_encode(["bytes32"], [bytes.fromhex(who[2:])])
            calls.append((key, str(timelock), data, _uint_or_none))
    chain: dict[Key, Any] = {("block hash", None): _hex(header.hash)}
    by_address: defaultdict[str, list[tuple[Key, bytes, Callable[[bytes], Any]]]] = defaultdict(list)
    for key, to, data, read in calls:
        by_address[to].append((key, data, read))
    for to, group in by_address.items():
        answers = source.calls(to, [data for _, data, _ in group], block)
        for (key, _, read), answer in zip(group, answers, strict=True):
            chain[key] = read(answer)
    chain[("pausedDuration", "ledger_state")] = chain[("pausedDuration", None)]
    for what, who in list(chain):  # the per-role counts: how many of the accounts named hold the role
        if what == "hasRole" and who is not None and chain[(what, who)]:
            count: Key = ("roleHolders", who.split(":")[0])
            chain[count] = chain.get(count, 0) + 1
    for count in mirror:
        if count[0] == "roleHolders":
            chain.setdefault(count, 0)
    for pid in chain[("partnerIds", None)]:  # partners the mirror lacks
        key = ("partner", str(pid))
        if key not in mirror:
            mirror[key] = None
            (answer,) = source.calls(ledger.address, [ledger.encode("partner", pid)], block)
            chain[key] = _partner(ledger.decode("partner", answer))
    return [
        Difference(what, who, mirror[(what, who)], chain.get((what, who)))
        for what, who in sorted(mirror, key=lambda k: (k[0], k[1] or ""))
        if mirror[(what, who)] != chain.get((what, who))
    ]


def _returned_items(conn: Connection) -> dict[str, int]:
    """``partner:ref:customer:amount:itemRef`` of every reversed issuance item -> the points its reversals
    asked back (the amount from the issue or batch item the reversals link to; 0 for an unlinked one)."""
    reversals = conn.execute(
        select(
            LedgerEntry.partner_id,
            LedgerEntry.ref,
            LedgerEntry.account,
            LedgerEntry.item_ref,
            LedgerEntry.original_seq,
            LedgerEntry.requested,
        ).where(LedgerEntry.event == "IssuanceReversed")
    ).all()
    linked = {r.original_seq for r in reversals if r.original_seq is not None}
    amounts: dict[int, int] = {}
    if linked:
        amounts = {
            seq: amount
            for seq, amount in conn.execute(
                select(LedgerEntry.seq, LedgerEntry.amount).where(LedgerEntry.seq.in_(linked))
            )
        }
    out: defaultdict[str, int] = defaultdict(int)
    for r in reversals:
        amount = amounts.get(r.original_seq, 0) if r.original_seq is not None else 0
        out[f"{r.partner_id}:{_hex(r.ref)}:{r.account}:{amount}:{_hex(r.item_ref)}"] += r.requested
    return dict(out)


def _refunded_redemptions(conn: Connection) -> dict[str, int]:
    """``partner:ref`` of every refunded redemption -> the points its refunds gave back."""
    total = func.sum(LedgerEntry.amount)
    rows = conn.execute(
        select(LedgerEntry.partner_id, LedgerEntry.ref, total)
        .where(LedgerEntry.event == "RedemptionRefunded")
        .group_by(LedgerEntry.partner_id, LedgerEntry.ref)
    ).all()
    return {f"{pid}:{_hex(ref)}": int(points) for pid, ref, points in rows}


def _bytes(hex_: str) -> bytes:
    return bytes.fromhex(hex_[2:])


def _partner(out: tuple[Any, ...]) -> tuple[Any, ...]:
    (_, operator, settlement, *figures) = out[0]
    return (operator.lower(), settlement.lower(), *figures)


def _pair(position: Any) -> tuple[int, int]:
    return (position.net_points, position.net_value)


def _uint_or_none(answer: bytes) -> int | None:
    """A uint256 answer, or None for an empty one (no code at that address in that block)."""
    return int(abi_decode(["uint256"], answer)[0]) if len(answer) >= 32 else None


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + bytes(value).hex()
