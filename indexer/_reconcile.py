"""Does the mirror say what the chain says? Every figure the mirror serves, compared with ``eth_call``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import Engine
from web3 import Web3

from chain import Ledger, Rpc

from ._errors import BlockNotMirrored
from ._queries import MirrorView
from ._source import LogSource

__all__ = ["Difference", "reconcile"]


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


def reconcile(w3: Web3, engine: Engine, address: str, block: int | None = None) -> list[Difference]:
    """The differences between the mirror of the ledger at ``address`` and the chain at ``block`` (the
    mirror's cursor when not given; any other block raises :class:`BlockNotMirrored`). Empty when they agree.

    Compared: the block's hash, every mirrored account's live balance, outstanding supply, the totals issued,
    redeemed and expired, pending expiry, every partner's registry entry and counters (and the set of
    partners), the settlement value, the transfer switch, the last sequence number and the hash-chain head.
    The mirror is read in one transaction, so it is one consistent state even while the indexer writes.
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
        mirror: dict[tuple[str, str | None], Any] = {
            ("block hash", None): _hex(view.cursor.block_hash),
            ("outstandingSupply", None): view.outstanding_supply(at=at),
            ("pendingExpiry", None): view.pending_expiry(at=at),
            ("totalIssued", None): state.total_issued,
            ("totalRedeemed", None): state.total_redeemed,
            ("totalExpired", None): state.total_expired,
            ("settlementValue", None): state.settlement_value,
            ("transfersEnabled", None): state.transfers_enabled,
            ("ledgerSequence", None): state.seq,
            ("ledgerHead", None): _hex(state.head),
            ("partnerIds", None): sorted(partners),
        }
        for pid, p in partners.items():
            mirror[("partner", str(pid))] = (
                p.operator,
                p.settlement,
                p.active,
                p.can_issue,
                p.can_accept,
                p.allowance,
                p.issued,
                p.redeemed,
            )
        for account, points in balances.items():
            mirror[("balanceOf", account)] = points

    calls: list[tuple[tuple[str, str | None], bytes, Callable[[tuple[Any, ...]], Any]]] = [
        ((name, None), ledger.encode(name), lambda out: out[0])
        for name in (
            "outstandingSupply",
            "pendingExpiry",
            "totalIssued",
            "totalRedeemed",
            "totalExpired",
            "settlementValue",
            "transfersEnabled",
            "ledgerSequence",
        )
    ]
    calls.append((("ledgerHead", None), ledger.encode("ledgerHead"), lambda out: _hex(out[0])))
    calls.append((("partnerIds", None), ledger.encode("partnerIds"), lambda out: sorted(out[0])))
    for key in mirror:
        what, who = key
        if what == "partner" and who is not None:
            calls.append((key, ledger.encode("partner", int(who)), _partner))
        elif what == "balanceOf" and who is not None:
            calls.append((key, ledger.encode("balanceOf", to_checksum_address(who)), lambda out: out[0]))
    answers = source.calls(ledger.address, [data for _, data, _ in calls], block)
    chain: dict[tuple[str, str | None], Any] = {("block hash", None): _hex(header.hash)}
    for (key, _, read), answer in zip(calls, answers, strict=True):
        chain[key] = read(ledger.decode(key[0], answer))
    for pid in chain[("partnerIds", None)]:  # partners the mirror lacks
        key = ("partner", str(pid))
        if key not in mirror:
            mirror[key] = None
            (answer,) = source.calls(ledger.address, [ledger.encode("partner", pid)], block)
            chain[key] = _partner(ledger.decode("partner", answer))
    return [
        Difference(what, who, mirror[(what, who)], chain[(what, who)])
        for what, who in sorted(mirror, key=lambda k: (k[0], k[1] or ""))
        if mirror[(what, who)] != chain[(what, who)]
    ]


def _partner(out: tuple[Any, ...]) -> tuple[Any, ...]:
    (_, operator, settlement, active, can_issue, can_accept, allowance, issued, redeemed) = out[0]
    return (operator.lower(), settlement.lower(), active, can_issue, can_accept, allowance, issued, redeemed)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + bytes(value).hex()
