"""The audit trail as rows: the filters of ``/v1/audit/entries`` and ``/v1/audit/export``, one entry as a
flat JSON-ready dict, and a streaming source of them for exports of any size.

:func:`export_rows` reads the mirror in keyset pages (``seq > last seen ORDER BY seq LIMIT 5000``), each
page on a short-lived connection, and yields one row at a time: memory holds one page whatever the size of
the ledger, no transaction stays open for the length of a download, and no page is found by ``OFFSET``
(which rescans every skipped row). An export is pinned at its start: ``upto_seq`` is the last entry of the
mirror's block then (:func:`mirrored_seq`), so entries mirrored while it streams do not appear half-way and
the file is the ledger as of one block. :func:`encode_csv` (a header row, then the fixed columns of
:data:`ENTRY_FIELDS`) and :func:`encode_jsonl` (one JSON object per line) turn rows into chunks of about
64 KiB for a streaming response. Nothing here needs HTTP: a benchmark calls the same functions.

A row has every column of ``ledger_entries``, named as the table names them except two: the entry's event
name is ``kind`` (as in the wallet history and the ``kind`` filter) and the admin handover step's own
``kind`` column is ``handover_kind``. Hashes and references are ``0x`` hex, addresses EIP-55 checksummed,
points and values exact integers (JSON numbers, CSV decimals), flags ``true`` / ``false``, absent columns
``null`` (an empty CSV field).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import ColumnElement, Connection, Engine, Select, or_, select

from indexer import ENTRY_EVENTS, LedgerEntry

__all__ = [
    "ENTRY_FIELDS",
    "ENTRY_KINDS",
    "EXPORT_PAGE",
    "EntryFilters",
    "encode_csv",
    "encode_jsonl",
    "entry_query",
    "entry_row",
    "export_rows",
    "mirrored_seq",
]

#: Rows per keyset page of an export.
EXPORT_PAGE = 5_000
#: Bytes an encoder gathers before it yields a chunk.
CHUNK_BYTES = 64 * 1024

#: Every ledger entry's event name (the ``kind`` filter takes these).
ENTRY_KINDS: frozenset[str] = frozenset(spec.name for spec in ENTRY_EVENTS.values())

_TABLE = LedgerEntry.__table__
_BYTES = frozenset(
    (
        "block_hash",
        "tx_hash",
        "ref",
        "rule_hash",
        "item_ref",
        "return_ref",
        "refund_ref",
        "role",
        "entry_hash",
        "head",
    )
)
_ADDRESSES = frozenset(("account", "counterparty"))
_RENAMED = {"event": "kind", "kind": "handover_kind"}
_FIRST = ("seq", "block_number", "block_timestamp", "block_hash", "tx_hash", "tx_index", "log_index", "event")
_LAST = ("entry_hash", "head")
#: The table's columns in the order of a row: where the entry is, what it is, its arguments, its hashes.
_COLUMNS: tuple[str, ...] = (
    *_FIRST,
    *(c.name for c in _TABLE.columns if c.name not in (*_FIRST, *_LAST)),
    *_LAST,
)
#: The fields of a row, in order (the CSV's columns).
ENTRY_FIELDS: tuple[str, ...] = tuple(_RENAMED.get(c, c) for c in _COLUMNS)


@lru_cache(maxsize=65_536)
def _checksummed(address: str) -> str:
    """EIP-55 costs a keccak; an export names the same wallets over and over."""
    return to_checksum_address(address)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _converter(column: str) -> Callable[[Any], Any] | None:
    if column in _BYTES:
        return _hex
    if column in _ADDRESSES:
        return _checksummed
    return None


_CONVERTERS: tuple[tuple[str, Callable[[Any], Any] | None], ...] = tuple(
    (_RENAMED.get(c, c), _converter(c)) for c in _COLUMNS
)


@dataclass(frozen=True, slots=True)
class EntryFilters:
    """Which entries: every given filter must hold (``kinds``: any of them). ``account`` is lower-case
    ``0x`` hex and matches an entry naming it in either address column (``account`` or ``counterparty``:
    a transfer's or migration's recipient, a settlement address, a previous operator); ``order_ref`` (32
    bytes) matches ``item_ref`` or ``ref`` (an issue's, a batch item's or a reversal's order, a batch's
    root, a redemption's or refund's reference, a settlement's payment reference). Block and time bounds
    are inclusive."""

    partner_id: int | None = None
    account: str | None = None
    kinds: tuple[str, ...] = ()
    reason: int | None = None
    from_block: int | None = None
    to_block: int | None = None
    from_time: int | None = None
    to_time: int | None = None
    order_ref: bytes | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        e = LedgerEntry
        out: list[ColumnElement[bool]] = []
        if self.partner_id is not None:
            out.append(e.partner_id == self.partner_id)
        if self.account is not None:
            out.append(or_(e.account == self.account, e.counterparty == self.account))
        if self.kinds:
            out.append(e.event.in_(self.kinds))
        if self.reason is not None:
            out.append(e.reason == self.reason)
        if self.from_block is not None:
            out.append(e.block_number >= self.from_block)
        if self.to_block is not None:
            out.append(e.block_number <= self.to_block)
        if self.from_time is not None:
            out.append(e.block_timestamp >= self.from_time)
        if self.to_time is not None:
            out.append(e.block_timestamp <= self.to_time)
        if self.order_ref is not None:
            out.append(or_(e.item_ref == self.order_ref, e.ref == self.order_ref))
        return out


def entry_query(filters: EntryFilters, *, upto_seq: int) -> Select[Any]:
    """The filtered entries up to ``upto_seq`` (no order, no limit: the caller pages)."""
    columns = [_TABLE.c[name] for name in _COLUMNS]
    return select(*columns).where(LedgerEntry.seq <= upto_seq, *filters.clauses())


def entry_row(row: Any) -> dict[str, Any]:
    """A row of :func:`entry_query` as a flat JSON-ready dict (the fields of :data:`ENTRY_FIELDS`)."""
    return {
        name: value if convert is None or value is None else convert(value)
        for (name, convert), value in zip(_CONVERTERS, row, strict=True)
    }


def mirrored_seq(conn: Connection, block_number: int) -> tuple[int, bytes | None]:
    """The last entry at or before ``block_number`` (the mirror's block): its seq and hash-chain head
    (0 and None before the first entry). Read through the (block, log index) index."""
    found = conn.execute(
        select(LedgerEntry.seq, LedgerEntry.head)
        .where(LedgerEntry.block_number <= block_number)
        .order_by(LedgerEntry.block_number.desc(), LedgerEntry.log_index.desc())
        .limit(1)
    ).first()
    return (0, None) if found is None else (int(found.seq), bytes(found.head))


def export_rows(
    engine: Engine, filters: EntryFilters, *, upto_seq: int, page_size: int = EXPORT_PAGE
) -> Iterator[dict[str, Any]]:
    """Every filtered entry with ``seq <= upto_seq``, oldest first, read in keyset pages of ``page_size``
    (one short read each); rows as :func:`entry_row` makes them."""
    after = -1
    while True:
        query = entry_query(filters, upto_seq=upto_seq).where(LedgerEntry.seq > after)
        with engine.connect() as conn:
            page = conn.execute(query.order_by(LedgerEntry.seq).limit(page_size)).all()
        for row in page:
            yield entry_row(row)
        if len(page) < page_size:
            return
        after = int(page[-1].seq)


def _csv_value(value: Any) -> Any:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def encode_csv(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """CSV (RFC 4180, CRLF line ends, UTF-8): a header row of :data:`ENTRY_FIELDS`, then one line per row
    in those columns (an empty field for null), in chunks of about 64 KiB."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ENTRY_FIELDS)
    for row in rows:
        writer.writerow([_csv_value(row[field]) for field in ENTRY_FIELDS])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def encode_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """JSON Lines: one object per row (fields in :data:`ENTRY_FIELDS` order), ``\\n`` after each, in chunks
    of about 64 KiB. Nothing at all for no rows."""
    lines: list[str] = []
    size = 0
    for row in rows:
        line = json.dumps(row, separators=(",", ":")) + "\n"
        lines.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(lines).encode()
            lines, size = [], 0
    if lines:
        yield "".join(lines).encode()
