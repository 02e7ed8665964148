"""The operator's two copies of the ledger, held against the auditor's rebuild: the mirror database and the
HTTP API.

Both are observers (:class:`~._verify.Observer`) of :func:`~._verify.verify`: they see every chain entry as
the rebuild applies it, and add their differences at the end. They read what the operator serves and none
of the operator's code that produced it: the mirror with plain SQL (no indexer decoder, no indexer query),
the API over HTTP; each entry is held against this module's own table of which event argument lands in
which column (:data:`ENTRY_COLUMNS`), so that a mistake in the indexer's reading of an event shows up here
instead of being repeated.

**Entries** (:class:`_Rows`, shared by both): the copy's rows are read lazily in ``seq`` order (keyset pages
of the mirror, the JSON Lines export of the API), a bounded window ahead of the chain, so a ledger of a
million entries streams with flat memory. Each chain entry is held against the row of its ``seq``: its
block, block hash, transaction, log index, event, entry hash, the hash-chain head after it (folded here from
the entry hashes, not read from the copy) and every argument column (``None`` where the event has none). A
row missing from the copy is one difference ("missing") and the next entries still line up; two rows
swapped are found by their entry hashes and reported as reordered (each at the other's ``seq``); rows past
the chain's last entry (within the verified block) are extra; a copy that stops early is one difference
for its whole tail. Block timestamps are checked per block against the node's headers. Derived links (a
reversal's or refund's ``original_seq``, a reversal's ``epoch``) are checked at the end against the copy's
own earlier rows, which were held against the chain already. Not compared: ``tx_index`` (a log's entry
does not carry it).

**Figures.** The mirror's ``ledger_state``, ``account_epochs.held``, ``partners`` and ``settlements`` are
held against the rebuild both ways (a row the rebuild lacks is a difference, and so is a non-zero figure
the mirror lacks). The API's wallets (balance, live epochs with their expiry, expiring in 30 days, the next
expiry; not the tier, whose thresholds are the operator's settings), partners (directory status and
rights, positions, the settlement statement with its breakage and priced segments), the coalition's
position and the served hash-chain head are recomputed from the rebuild and from figures gathered here
per block and per epoch while the entries passed, at the ``as_of.time`` each answer names. Figures are
compared only when the copy holds exactly the entries the rebuild does (same ``seq``): a copy at another
block gets one difference saying so, not one per wallet.

**Rules** (the API): every rule hash the chain's issuances carry must be published (``GET /v1/rules/{hash}``),
its canonical text must hash to it (a rule set changed after use does not) and belong to the issuing
partner. With ``sample``, that many confirmed purchases are drawn at random from ``GET /v1/operations``;
each one's points are recomputed with the project's rules engine (:func:`api._rules.quote_purchase`) from
the published rule set and the order's published inputs, its reference is recomputed (HMAC-SHA256 of
``purchase:<order id>`` under the partner's key from ``GET /v1/audit/reference-keys``), and the chain's
issuance under that reference must carry the recomputed points (less what a return cancelled while they
were pending), the operation's rule hash and its customer. The member's tier and what it had earned under
the caps at the time are not published apart from the operation's explanation, so they are read from it
(see :func:`_recompute`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Context, Decimal, InvalidOperation
from typing import Any, NoReturn

import httpx
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from indexer import make_engine

from .._rules import (
    Line,
    MemberContext,
    NotCanonical,
    Order,
    RulesError,
    RuleSet,
    parse_canonical,
    quote_purchase,
)
from ._decode import Entry, keccak
from ._errors import AuditError
from ._state import Difference, PartnerState, Rebuild, _unpack_item
from ._verify import VerifiedBlock

__all__ = ["ENTRY_COLUMNS", "ApiDiff", "ApiUnavailable", "MirrorDiff", "MirrorUnavailable"]

ZERO32 = bytes(32)


class MirrorUnavailable(AuditError):
    """The mirror database could not be read (unreachable, no such tables, several ledgers and none named)."""


class ApiUnavailable(AuditError):
    """The API did not answer (after retries), or answered something that is not what its routes document."""


# --------------------------------------------------------------------------- what a row must hold

#: Argument columns of ``ledger_entries`` (and of the export's rows), compared for every entry: ``None`` where
#: the event has no such argument.
ARG_COLUMNS = (
    "partner_id",
    "account",
    "counterparty",
    "epoch",
    "amount",
    "ref",
    "reason",
    "rule_hash",
    "nonce",
    "batch_count",
    "batch_seq",
    "item_ref",
    "return_ref",
    "refund_ref",
    "requested",
    "recovered",
    "restored",
    "recovery",
    "original_seq",
    "value",
    "previous_value",
    "status",
    "enabled",
    "can_issue",
    "can_accept",
    "settled_points",
    "settled_value",
    "role",
    "granted",
    "kind",
    "delay",
    "schedule",
    "paused",
    "paused_duration",
)
#: Where the entry is and what it is (``seq`` is the key; ``tx_index`` is not in a log's entry and is not
#: compared; ``block_timestamp`` is compared per block).
POSITION_COLUMNS = ("block_number", "block_hash", "tx_hash", "log_index", "event", "entry_hash", "head")
_BYTES = frozenset(
    {
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
    }
)
_ADDRESSES = frozenset(("account", "counterparty"))
_BOOLS = frozenset(("recovery", "enabled", "can_issue", "can_accept", "granted", "paused"))
_TEXT = frozenset(("event",))
_SELECTED = ("seq", "block_timestamp", *POSITION_COLUMNS, *ARG_COLUMNS)

#: event -> (column, event argument): this module's own reading of which argument a column holds
#: (``indexer.LedgerEntry``'s table documents the mirror's). Columns not listed hold ``None``, except the
#: links the mirror derives: a batch item's header columns and the ``batch_seq`` of an operation's parts
#: (computed in :class:`_Expected`), and a reversal's ``original_seq`` / ``epoch`` and a refund's
#: ``original_seq`` (checked at the end against the copy's earlier rows).
ENTRY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "PartnerRegistered": (
        ("partner_id", "partnerId"),
        ("account", "operator"),
        ("counterparty", "settlement"),
        ("can_issue", "canIssue"),
        ("can_accept", "canAccept"),
        ("value", "allowance"),
    ),
    "PartnerAllowanceChanged": (
        ("partner_id", "partnerId"),
        ("previous_value", "previousAllowance"),
        ("value", "allowance"),
    ),
    "PartnerStatusChanged": (("partner_id", "partnerId"), ("status", "status")),
    "PartnerOperatorChanged": (
        ("partner_id", "partnerId"),
        ("account", "operator"),
        ("counterparty", "previousOperator"),
    ),
    "PartnerRightsChanged": (
        ("partner_id", "partnerId"),
        ("can_issue", "canIssue"),
        ("can_accept", "canAccept"),
    ),
    "PartnerSettlementAddressChanged": (("partner_id", "partnerId"), ("counterparty", "settlement")),
    "SettlementRecorded": (
        ("partner_id", "partnerId"),
        ("settled_points", "points"),
        ("settled_value", "value"),
        ("ref", "paymentRef"),
    ),
    "PointsIssued": (
        ("partner_id", "partnerId"),
        ("account", "to"),
        ("epoch", "epoch"),
        ("amount", "amount"),
        ("ref", "ref"),
        ("item_ref", "ref"),
        ("reason", "reason"),
        ("rule_hash", "ruleHash"),
        ("value", "value"),
    ),
    "PointsBatchIssued": (
        ("partner_id", "partnerId"),
        ("epoch", "epoch"),
        ("ref", "ref"),
        ("reason", "reason"),
        ("rule_hash", "ruleHash"),
        ("batch_count", "count"),
        ("amount", "total"),
        ("value", "value"),
    ),
    "PointsIssuedInBatch": (("account", "to"), ("amount", "amount"), ("item_ref", "itemRef")),
    "PointsRedeemed": (
        ("partner_id", "partnerId"),
        ("account", "customer"),
        ("epoch", "epoch"),
        ("amount", "amount"),
        ("ref", "ref"),
        ("nonce", "nonce"),
        ("value", "value"),
    ),
    "IssuanceReversed": (
        ("partner_id", "partnerId"),
        ("account", "customer"),
        ("ref", "ref"),
        ("item_ref", "itemRef"),
        ("amount", "issued"),
        ("return_ref", "returnRef"),
        ("requested", "requested"),
        ("recovered", "recovered"),
        ("value", "value"),
    ),
    "PointsReversed": (
        ("partner_id", "partnerId"),
        ("account", "customer"),
        ("epoch", "epoch"),
        ("amount", "amount"),
        ("return_ref", "returnRef"),
    ),
    "RedemptionRefunded": (
        ("partner_id", "partnerId"),
        ("account", "customer"),
        ("ref", "ref"),
        ("refund_ref", "refundRef"),
        ("amount", "amount"),
        ("restored", "restored"),
        ("value", "value"),
    ),
    "PointsRefunded": (
        ("partner_id", "partnerId"),
        ("account", "customer"),
        ("epoch", "epoch"),
        ("amount", "amount"),
        ("refund_ref", "refundRef"),
    ),
    "AccountMigrated": (
        ("account", "from"),
        ("counterparty", "to"),
        ("nonce", "nonce"),
        ("recovery", "recovery"),
        ("amount", "amount"),
    ),
    "PointsExpired": (("account", "account"), ("epoch", "epoch"), ("amount", "amount")),
    "PointsTransferred": (
        ("account", "from"),
        ("counterparty", "to"),
        ("epoch", "epoch"),
        ("amount", "amount"),
    ),
    "ConsentRevoked": (("account", "customer"), ("nonce", "nonce")),
    "SettlementValueChanged": (("previous_value", "previousValue"), ("value", "value")),
    "TransfersEnabledChanged": (("enabled", "enabled"),),
    "RoleChanged": (
        ("role", "role"),
        ("account", "account"),
        ("granted", "granted"),
        ("counterparty", "sender"),
    ),
    "AdminHandoverChanged": (
        ("kind", "kind"),
        ("account", "newAdmin"),
        ("delay", "delay"),
        ("schedule", "schedule"),
    ),
    "PauseChanged": (("paused", "paused"), ("paused_duration", "pausedDuration")),
}
#: columns checked at the end (against the copy's earlier rows), not per entry
_DEFERRED = {"IssuanceReversed": ("original_seq", "epoch"), "RedemptionRefunded": ("original_seq",)}
_ISSUANCES = ("PointsIssued", "PointsIssuedInBatch")


def _hex(value: Any) -> Any:
    return "0x" + value.hex() if isinstance(value, bytes) else value


@dataclass(slots=True)
class _Link:
    """A reversal's or refund's claimed link to the entry it undoes part of, checked at the end."""

    seq: int
    event: str
    partner_id: int
    ref: bytes
    account: str
    item_ref: bytes | None
    issued: int | None
    original_seq: Any
    epoch: Any


class _Expected:
    """What the copy's row of each entry must hold, in order: the entry's own arguments by
    :data:`ENTRY_COLUMNS`, and the links an operation's parts carry to its header, as the mirror documents
    them (a batch item its header's partner, epoch, reference, reason and rule; a part its header's seq; the
    ``PointsExpired`` right after a refund's part that expired on arrival, that refund)."""

    def __init__(self) -> None:
        #: the hash-chain head after the last entry (None: not known, when a resumed audit's copy has no
        #: row before its first entry)
        self.head: bytes | None = None
        self._header: tuple[int, str, dict[str, Any]] | None = None  # seq, tx, row of the last header
        self._left = 0  # points of the open migration not yet moved by its parts
        self._previous: tuple[str, dict[str, Any]] | None = None  # tx, row of the last entry

    def row(self, entry: Entry) -> dict[str, Any]:
        if self.head is not None:
            self.head = keccak(self.head + entry.entry_hash)
        a, name, tx = entry.args, entry.name, entry.tx
        row: dict[str, Any] = dict.fromkeys(ARG_COLUMNS)
        for column, argument in ENTRY_COLUMNS[name]:
            value = a[argument]
            row[column] = value.lower() if column in _ADDRESSES else value
        row.update(
            block_number=entry.block,
            block_hash=bytes.fromhex(entry.block_hash[2:]),
            tx_hash=bytes.fromhex(tx[2:]),
            log_index=entry.log_index,
            event=name,
            entry_hash=entry.entry_hash,
            head=self.head,
        )
        header = self._header if self._header is not None and self._header[1] == tx else None
        if name == "PointsIssuedInBatch":
            if header is not None and header[2]["event"] == "PointsBatchIssued":
                for column in ("partner_id", "epoch", "ref", "reason", "rule_hash"):
                    row[column] = header[2][column]
                row["batch_seq"] = header[0]
        elif name in ("PointsBatchIssued", "IssuanceReversed", "RedemptionRefunded", "AccountMigrated"):
            self._header = (entry.seq, tx, row)
            self._left = a["amount"] if name == "AccountMigrated" else 0
        elif name in ("PointsReversed", "PointsRefunded"):
            wanted = "IssuanceReversed" if name == "PointsReversed" else "RedemptionRefunded"
            if header is not None and header[2]["event"] == wanted:
                row["batch_seq"] = header[0]
        elif name == "PointsTransferred":
            if self._left > 0 and header is not None:
                row["batch_seq"] = header[0]
                self._left -= a["amount"]
        elif name == "PointsExpired" and self._previous is not None:
            last_tx, last = self._previous
            if (
                last_tx == tx
                and last["event"] == "PointsRefunded"
                and (last["account"], last["epoch"], last["amount"])
                == (row["account"], a["epoch"], a["amount"])
            ):
                row["batch_seq"] = last["batch_seq"]
        self._previous = (tx, row)
        return row


# --------------------------------------------------------------------------- the rows of a copy, in seq order


class _Rows:
    """Holds chain entries against a copy's rows read in ``seq`` order (see the module docstring).

    ``source(first_seq, first_block)`` yields the copy's rows from the entry ``first_seq`` (which is in block
    ``first_block``) on, normalised: bytes as bytes, addresses lower-case, the mirror's column names.
    ``predecessor(seq)`` is the copy's hash-chain head after entry ``seq`` (to continue a resumed audit)."""

    #: rows read ahead of the chain's entry, so a swapped row within this distance is found by its hash
    LOOKAHEAD = 64
    #: rows already passed (by entry hash), kept to find an entry the copy holds earlier than it should
    BEHIND = 1024
    #: extra rows reported one by one; the rest are counted
    EXTRA_REPORTED = 20

    def __init__(
        self,
        kind: str,
        source: Callable[[int, int], Iterator[dict[str, Any]]],
        predecessor: Callable[[int], bytes | None],
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self._source = source
        self._predecessor = predecessor
        self._names = names or {}
        self._rows: Iterator[dict[str, Any]] | None = None
        self._exhausted = False
        self._ahead: deque[dict[str, Any]] = deque()
        self._ahead_seq: dict[int, dict[str, Any]] = {}
        self._ahead_hash: dict[bytes, int] = {}
        self._behind: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self.expected = _Expected()
        self.first_seq: int | None = None
        self.last_seq = 0
        self.differences: list[Difference] = []
        self.links: list[_Link] = []
        #: block -> the block timestamp the copy's rows give it
        self.timestamps: dict[int, int] = {}
        self._tail: list[int] = []  # entries after the copy's last row: [first, last]
        #: the row the last entry must have (its links included)
        self.current: dict[str, Any] = {}
        self.compared = 0

    # ------------------------------------------------------------------ reading

    def _pull(self) -> bool:
        if self._exhausted:
            return False
        assert self._rows is not None
        row = next(self._rows, None)
        if row is None:
            self._exhausted = True
            return False
        self._ahead.append(row)
        self._ahead_seq[row["seq"]] = row
        if isinstance(row.get("entry_hash"), bytes):
            self._ahead_hash.setdefault(row["entry_hash"], row["seq"])
        return True

    def _pop(self) -> dict[str, Any]:
        row = self._ahead.popleft()
        self._ahead_seq.pop(row["seq"], None)
        digest = row.get("entry_hash")
        if isinstance(digest, bytes):
            if self._ahead_hash.get(digest) == row["seq"]:
                del self._ahead_hash[digest]
            self._behind[digest] = row
            if len(self._behind) > self.BEHIND:
                self._behind.popitem(last=False)
        return row

    def _differ(self, subject: str, column: str, expected: Any, found: Any, detail: str = "") -> None:
        name = self._names.get(column, column)
        self.differences.append(Difference(self.kind, subject, name, _hex(expected), _hex(found), detail))

    # ------------------------------------------------------------------ per entry

    def on_entry(self, entry: Entry) -> dict[str, Any] | None:
        """Holds ``entry`` against the copy's row of its seq; returns that row (None: the copy has none)."""
        s = entry.seq
        if self._rows is None:
            self.first_seq = s
            self.expected.head = ZERO32 if s == 1 else self._predecessor(s - 1)
            self._rows = self._source(s, entry.block)
        expected = self.current = self.expected.row(entry)
        self.last_seq = s
        while not self._exhausted and (not self._ahead or self._ahead[-1]["seq"] < s + self.LOOKAHEAD):
            self._pull()
        while self._ahead and self._ahead[0]["seq"] < s:
            self._extra(self._pop(), f"the chain has no entry of this seq before entry {s}")
        subject = f"entry {s}"
        here = self._ahead_seq.get(s)
        if here is not None and here.get("entry_hash") == entry.entry_hash:
            self._pop()
            self._compare(subject, expected, here, entry)
            return here
        ahead = self._ahead_hash.get(entry.entry_hash)
        elsewhere = self._ahead_seq.get(ahead) if ahead is not None else self._behind.get(entry.entry_hash)
        if here is not None:
            self._pop()
        where = f"{entry.name} at block {entry.block}, log {entry.log_index}"
        if elsewhere is not None and elsewhere["seq"] != s:
            detail = f"reordered: the copy holds this entry ({where}) there"
            self._differ(subject, "seq", s, elsewhere["seq"], detail)
            self._compare(subject, expected, elsewhere, entry)
            return elsewhere
        if here is not None:
            self._compare(subject, expected, here, entry)
            return here
        if not self._ahead and self._exhausted:
            if not self._tail:
                self._tail = [s, s]
            self._tail[1] = s
            return None
        after = f"the next row is seq {self._ahead[0]['seq']}" if self._ahead else "no row follows"
        self._differ(subject, "missing", where, "missing", f"no row with this seq; {after}")
        return None

    def _compare(self, subject: str, expected: dict[str, Any], row: dict[str, Any], entry: Entry) -> None:
        self.compared += 1
        deferred = _DEFERRED.get(entry.name, ())
        for column, want in expected.items():
            if column in deferred or (column == "head" and want is None):
                continue
            have = row.get(column)
            if have != want:
                self._differ(subject, column, want, have)
        stamp = row.get("block_timestamp")
        if stamp is not None:
            known = self.timestamps.setdefault(entry.block, stamp)
            if known != stamp:
                self._differ(
                    subject, "block_timestamp", known, stamp, "other rows of the block say otherwise"
                )
        if deferred:
            a = entry.args
            reversal = entry.name == "IssuanceReversed"
            self.links.append(
                _Link(
                    seq=entry.seq,
                    event=entry.name,
                    partner_id=a["partnerId"],
                    ref=a["ref"],
                    account=a["customer"].lower(),
                    item_ref=a["itemRef"] if reversal else None,
                    issued=a["issued"] if reversal else None,
                    original_seq=row.get("original_seq"),
                    epoch=row.get("epoch") if reversal else None,
                )
            )

    def _extra(self, row: dict[str, Any], detail: str) -> None:
        seq = row.get("seq")
        self._differ(
            f"row {seq}",
            "extra",
            "no such entry on chain",
            f"{row.get('event')} at block {row.get('block_number')}, log {row.get('log_index')}",
            detail,
        )

    # ------------------------------------------------------------------ at the end

    def finish(self, state: Rebuild, at: VerifiedBlock) -> list[Difference]:
        out = self.differences
        if self._tail:
            first, last = self._tail
            self._differ(
                f"entries {first}-{last}",
                "missing",
                f"{last - first + 1} entries up to seq {last}",
                f"the copy ends at seq {first - 1}",
                "the copy is behind the chain",
            )
        if self.first_seq is not None and self.expected.head is None:
            self._differ(
                "head", "head", "the head before the first entry", None, "the copy has no predecessor"
            )
        elif self.first_seq is not None and self.expected.head != state.head:
            self._differ(
                "head", "head", state.head, self.expected.head, "folded from the copy's predecessor head"
            )
        extra = 0
        if self._rows is not None:
            while self._ahead or self._pull():
                row = self._pop()
                if row["seq"] <= self.last_seq or row.get("block_number", 0) > at.number:
                    continue  # later than the verified block: not the audit's business
                extra += 1
                if extra <= self.EXTRA_REPORTED:
                    self._extra(row, f"the chain's last entry at block {at.number} is seq {state.seq}")
        if extra > self.EXTRA_REPORTED:
            self._differ(
                "rows",
                "extra",
                "no rows past the chain's last entry",
                f"{extra} rows past seq {state.seq}",
                f"{self.EXTRA_REPORTED} of them named above",
            )
        for block, stamp in sorted(self.timestamps.items()):
            chain = state.timestamp_of(block)
            if chain != stamp:
                self._differ(f"block {block}", "block_timestamp", chain, stamp)
        return out


def _check_links(rows: _Rows, originals: Callable[[_Link], tuple[int, int | None] | None]) -> None:
    """Each reversal's and refund's claimed original (and a reversal's epoch) against the first earlier
    entry that matches it in the copy (``originals``): the issue or batch item of the same partner,
    reference, customer, item and amount; the redemption of the same partner, reference and customer."""
    for link in rows.links:
        found = originals(link)
        want_seq, want_epoch = (None, None) if found is None else found
        subject = f"entry {link.seq}"
        if link.original_seq != want_seq:
            rows._differ(subject, "original_seq", want_seq, link.original_seq, "the entry it undoes part of")
        if link.event == "IssuanceReversed" and link.epoch != want_epoch:
            rows._differ(subject, "epoch", want_epoch, link.epoch, "the reversed issuance's epoch")


# --------------------------------------------------------------------------- the mirror database


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _from_mirror(raw: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, value in raw.items():
        if value is None:
            row[column] = None
        elif column in _BYTES:
            row[column] = bytes(value)
        elif column in _ADDRESSES:
            row[column] = str(value).lower()
        elif column in _BOOLS:
            row[column] = bool(value)
        elif column in _TEXT:
            row[column] = str(value)
        else:
            row[column] = int(value)
    return row


_ENTRY_PAGE = text(
    f"SELECT {', '.join(_SELECTED)} FROM ledger_entries WHERE seq > :after ORDER BY seq LIMIT :limit"
)
_HEAD_AT = text("SELECT head FROM ledger_entries WHERE seq = :seq")
_ORIGINAL_ISSUANCE = text(
    "SELECT seq, epoch FROM ledger_entries WHERE event IN ('PointsIssued', 'PointsIssuedInBatch') "
    "AND partner_id = :partner AND ref = :ref AND account = :account AND item_ref = :item "
    "AND amount = :amount AND seq < :seq ORDER BY seq LIMIT 1"
)
_ORIGINAL_REDEMPTION = text(
    "SELECT seq, epoch FROM ledger_entries WHERE event = 'PointsRedeemed' AND partner_id = :partner "
    "AND ref = :ref AND account = :account AND seq < :seq ORDER BY seq LIMIT 1"
)
_PARTNER_FIELDS = (
    "operator",
    "settlement",
    "status",
    "can_issue",
    "can_accept",
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


class MirrorDiff:
    """The operator's mirror database (SQLite or PostgreSQL, the indexer's tables) held against the rebuild,
    read with plain SQL. ``ledger``: which mirrored ledger (needed only when the database mirrors several)."""

    name = "mirror"

    def __init__(
        self, db_url: str, *, ledger: str | None = None, page_size: int = 5_000, engine: Engine | None = None
    ) -> None:
        self.db_url = db_url
        self.ledger = None if ledger is None else ledger.lower()
        self.page_size = page_size
        self._engine = engine
        self._own_engine = engine is None
        self._rows = _Rows("mirror", self._entry_rows, self._head_after)
        #: what could not be checked, and why (not a difference; nothing yet for the mirror)
        self.unchecked: list[str] = []

    # ------------------------------------------------------------------ reading

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = make_engine(self.db_url, pool_size=1, max_overflow=2)
            except (SQLAlchemyError, ValueError) as exc:  # not the message: it may quote the URL's password
                raise MirrorUnavailable(
                    f"the mirror database URL cannot be used ({type(exc).__name__})"
                ) from None
        return self._engine

    def _read(self, statement: Any, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(r) for r in conn.execute(statement, dict(params or {})).mappings()]
        except SQLAlchemyError as exc:
            raise MirrorUnavailable(f"the mirror database: {str(exc).splitlines()[0]}") from exc

    def _entry_rows(self, first_seq: int, first_block: int) -> Iterator[dict[str, Any]]:
        after = first_seq - 1
        while True:
            page = self._read(_ENTRY_PAGE, {"after": after, "limit": self.page_size})
            for raw in page:
                yield _from_mirror(raw)
            if len(page) < self.page_size:
                return
            after = int(page[-1]["seq"])

    def _head_after(self, seq: int) -> bytes | None:
        found = self._read(_HEAD_AT, {"seq": seq})
        return bytes(found[0]["head"]) if found else None

    # ------------------------------------------------------------------ the observer

    def on_entry(self, entry: Entry) -> None:
        self._rows.on_entry(entry)

    def close(self) -> None:
        """Closes the connections of the engine this observer made (not of one it was given)."""
        if self._own_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def finish(self, state: Rebuild, at: VerifiedBlock) -> list[Difference]:
        try:
            rows = self._rows
            rows.finish(state, at)
            _check_links(rows, self._original)
            out = rows.differences
            with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":  # one snapshot for every derived table
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                out += self._figures(conn, state)
            return out
        except SQLAlchemyError as exc:
            raise MirrorUnavailable(f"the mirror database: {str(exc).splitlines()[0]}") from exc
        finally:
            self.close()

    def _original(self, link: _Link) -> tuple[int, int | None] | None:
        params: dict[str, Any] = {
            "partner": link.partner_id,
            "ref": link.ref,
            "account": link.account,
            "seq": link.seq,
        }
        if link.event == "IssuanceReversed":
            found = self._read(_ORIGINAL_ISSUANCE, params | {"item": link.item_ref, "amount": link.issued})
        else:
            found = self._read(_ORIGINAL_REDEMPTION, params)
        return None if not found else (int(found[0]["seq"]), _int(found[0]["epoch"]))

    def _figures(self, conn: Connection, state: Rebuild) -> list[Difference]:
        out: list[Difference] = []

        def differ(subject: str, name: str, expected: Any, found: Any, detail: str = "") -> None:
            if expected != found:
                out.append(Difference("mirror", subject, name, _hex(expected), _hex(found), detail))

        where, params = ("", {}) if self.ledger is None else (" WHERE contract = :c", {"c": self.ledger})
        ledgers = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT contract, seq, head, total_issued, total_redeemed, total_expired, "
                    "total_reversed, total_refunded, settlement_value, transfers_enabled, paused, "
                    f"paused_duration, paused_since FROM ledger_state{where}"
                ),
                params,
            ).mappings()
        ]
        if len(ledgers) != 1:
            if not ledgers:
                differ("ledger_state", "row", "the ledger's state", None, "the mirror holds no ledger state")
                return out
            raise MirrorUnavailable(
                f"the database mirrors {len(ledgers)} ledgers: name one (MirrorDiff(url, ledger=...))"
            )
        ledger = ledgers[0]
        if int(ledger["seq"]) != state.seq:
            differ(
                "ledger_state",
                "seq",
                state.seq,
                int(ledger["seq"]),
                "the mirror is at another entry: its derived tables were not compared",
            )
            return out
        differ("ledger_state", "head", state.head, bytes(ledger["head"]))
        for name in ("issued", "redeemed", "expired", "reversed", "refunded"):
            differ("ledger_state", f"total_{name}", state.totals[name], _int(ledger[f"total_{name}"]))
        differ("ledger_state", "settlement_value", state.settlement_value, _int(ledger["settlement_value"]))
        differ(
            "ledger_state", "transfers_enabled", state.transfers_enabled, bool(ledger["transfers_enabled"])
        )
        differ("ledger_state", "paused", state.paused, bool(ledger["paused"]))
        differ("ledger_state", "paused_duration", state.paused_total, _int(ledger["paused_duration"]))
        differ(
            "ledger_state",
            "paused_since",
            state.paused_at if state.paused else None,
            _int(ledger["paused_since"]),
        )

        # points held per (account, epoch), both ways; a zero on one side equals a missing row on the other
        seen: set[tuple[str, int]] = set()
        result = conn.execute(
            text("SELECT account, epoch, held FROM account_epochs").execution_options(
                yield_per=self.page_size
            )
        )
        for account, epoch, held in result:
            key = (str(account).lower(), int(epoch))
            expected = state.held.get(key[0], {}).get(key[1], 0)
            if expected:
                seen.add(key)
            differ(f"account {key[0]}", f"held at epoch {key[1]}", expected, int(held))
        for account, by_epoch in sorted(state.held.items()):
            for epoch, amount in sorted(by_epoch.items()):
                if amount and (account, epoch) not in seen:
                    differ(f"account {account}", f"held at epoch {epoch}", amount, None, "no row")

        partners = {
            int(r["partner_id"]): r
            for r in conn.execute(
                text(f"SELECT partner_id, {', '.join(_PARTNER_FIELDS)} FROM partners")
            ).mappings()
        }
        for pid in sorted(set(partners) | set(state.partners)):
            mine, theirs = state.partners.get(pid), partners.get(pid)
            if mine is None or theirs is None:
                differ(f"partner {pid}", "row", mine is not None, theirs is not None, "registered on chain")
                continue
            for name in _PARTNER_FIELDS:
                raw = theirs[name]
                found: Any = raw
                if name in ("operator", "settlement"):
                    found = str(raw).lower()
                elif name in ("can_issue", "can_accept"):
                    found = bool(raw)
                else:
                    found = _int(raw)
                expected = getattr(mine, name)
                differ(
                    f"partner {pid}", name, expected.lower() if isinstance(expected, str) else expected, found
                )

        recorded = {
            s["seq"]: (pid, s) for pid, partner in state.partners.items() for s in partner.settlements
        }
        stored = {
            int(r["seq"]): r
            for r in conn.execute(
                text("SELECT seq, partner_id, points, value, payment_ref, block_number FROM settlements")
            ).mappings()
        }
        for seq in sorted(set(recorded) | set(stored)):
            subject = f"settlement {seq}"
            if seq not in recorded or seq not in stored:
                differ(subject, "row", seq in recorded, seq in stored, "a SettlementRecorded entry")
                continue
            pid, settlement = recorded[seq]
            row = stored[seq]
            differ(subject, "partner_id", pid, _int(row["partner_id"]))
            differ(subject, "points", settlement["points"], _int(row["points"]))
            differ(subject, "value", settlement["value"], _int(row["value"]))
            differ(subject, "payment_ref", settlement["payment_ref"], "0x" + bytes(row["payment_ref"]).hex())
            differ(subject, "block_number", settlement["block"], _int(row["block_number"]))
        return out


# --------------------------------------------------------------------------- the HTTP API

#: the export's names of two columns (``api._export``)
_EXPORT_NAMES = {"event": "kind", "kind": "handover_kind"}
_FROM_EXPORT = {v: k for k, v in _EXPORT_NAMES.items()}
#: the ledger's partner statuses as the directory names them
_STATUS = {1: "active", 2: "suspended", 3: "offboarded"}
#: figures of a position or statement, in the response's names
_FIGURES = ("issued", "reversed", "redeemed", "refunded", "settled", "position", "open")
EXPIRING_WINDOW_S = 30 * 24 * 3600
_DECIMAL = Context(prec=200)
_TIER_LINE = re.compile(r" for tier (.+)$")
_CAP_LINE = re.compile(r"^cap of \d+ per (day|week|month), (\d+) earned already")


def _from_export(raw: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in raw.items():
        column = _FROM_EXPORT.get(name, name)
        if value is None or not isinstance(value, str):
            row[column] = value
        elif column in _BYTES:
            try:
                row[column] = bytes.fromhex(value[2:]) if value.startswith("0x") else value
            except ValueError:
                row[column] = value
        elif column in _ADDRESSES:
            row[column] = value.lower()
        else:
            row[column] = value
    return row


@dataclass(slots=True)
class _Flows:
    """A partner's flows, as its counters accrue them: points and value issued, reversed, redeemed,
    refunded, settled."""

    issued: int = 0
    issued_value: int = 0
    reversed: int = 0
    reversed_value: int = 0
    redeemed: int = 0
    redeemed_value: int = 0
    refunded: int = 0
    refunded_value: int = 0
    settled_points: int = 0
    settled_value: int = 0

    def add(self, other: _Flows) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @classmethod
    def of(cls, p: PartnerState) -> _Flows:
        return cls(
            p.issued,
            p.issued_value,
            p.reversed,
            p.reversed_value,
            p.redeemed,
            p.redeemed_value,
            p.refunded,
            p.refunded_value,
            p.settled_points,
            p.settled_value,
        )

    def figures(self, *, value: bool, pool: bool = False) -> dict[str, int]:
        """The response's figures (``FiguresPublic``): a partner's position is what the coalition owes it."""
        if value:
            issued, reversed_, redeemed = self.issued_value, self.reversed_value, self.redeemed_value
            refunded, settled = self.refunded_value, self.settled_value
        else:
            issued, reversed_, redeemed = self.issued, self.reversed, self.redeemed
            refunded, settled = self.refunded, self.settled_points
        position = (redeemed - refunded) - (issued - reversed_)
        if pool:
            position = -position
        opened = position + settled if pool else position - settled
        return dict(
            zip(_FIGURES, (issued, reversed_, redeemed, refunded, settled, position, opened), strict=True)
        )


@dataclass(slots=True)
class _Sample:
    """Confirmed purchases drawn uniformly at random (reservoir sampling over every page)."""

    size: int
    rng: random.Random
    seen: int = 0
    drawn: list[dict[str, Any]] = field(default_factory=list)

    def offer(self, item: dict[str, Any]) -> None:
        self.seen += 1
        if len(self.drawn) < self.size:
            self.drawn.append(item)
        else:
            k = self.rng.randrange(self.seen)
            if k < self.size:
                self.drawn[k] = item


class ApiDiff:
    """The operator's HTTP API held against the rebuild (see the module docstring). ``api_key``: an auditor
    key. ``client``: an ``httpx.Client`` to use (a FastAPI ``TestClient`` in tests); without one, a client of
    its own with ``timeout``. ``sample``: confirmed purchases to recompute (0: none); ``seed`` fixes the
    draw (default: unpredictable).

    An audit resumed from a checkpoint shows the observer only the new entries: the figures summed per
    block or epoch over all time (a statement's breakage, the segments of a statement split by prices) are
    then not compared, and :attr:`unchecked` says so."""

    name = "api"

    #: attempts of a request that failed to connect, timed out or got 502/503/504
    ATTEMPTS = 3

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        sample: int = 0,
        client: httpx.Client | None = None,
        timeout: float = 60.0,
        seed: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.sample = sample
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._own_client = client is None
        # an unpredictable draw unless a seed is given: the operator cannot know which purchases are checked
        self._rng = random.SystemRandom() if seed is None else random.Random(seed)
        self._stream: httpx.Response | None = None
        self._rows = _Rows("api", self._export_rows, self._head_after, _EXPORT_NAMES)
        # figures gathered while the entries pass (the statement's breakage and its priced segments)
        self._per_block: dict[int, dict[int, _Flows]] = defaultdict(dict)  # partner -> block -> flows
        #: epoch -> partner -> net issuance into the epoch (issued, less what reversals of it took back)
        self._net: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._swept: dict[int, int] = defaultdict(int)  # epoch -> expired points swept (not a refund's)
        self._arrivals: dict[int, int] = defaultdict(int)  # partner -> refunded points expired on arrival
        self._refund_partner: int | None = None
        # issuances' rule hashes by seq, for the sampled purchases (kept only with a sample)
        self._hashes: list[bytes] = []
        self._hash_index: dict[bytes, int] = {}
        self._batch_seq, self._batch_count = array("Q"), array("Q")
        self._batch_rule, self._batch_partner = array("I"), array("I")
        self._rule_cache: dict[str, dict[str, Any] | None] = {}
        #: what could not be checked, and why (not a difference)
        self.unchecked: list[str] = []

    def close(self) -> None:
        """Ends a download still open, and the client if it is this observer's own."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._own_client:
            self._client.close()

    # ------------------------------------------------------------------ HTTP

    def _fail(self, message: str, cause: BaseException | None = None) -> NoReturn:
        """Ends the audit with :class:`ApiUnavailable` (``verify`` calls no ``finish`` after it)."""
        self.close()
        raise ApiUnavailable(message.replace("\n", " ")) from cause

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _send(
        self, path: str, params: Mapping[str, Any] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        delay = 0.5
        for attempt in range(self.ATTEMPTS):
            try:
                request = self._client.build_request(
                    "GET", self._url(path), params=dict(params or {}), headers=self._headers
                )
                response = self._client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                if attempt + 1 == self.ATTEMPTS:
                    self._fail(f"GET {path}: {type(exc).__name__}: {exc}", exc)
            else:
                if response.status_code not in (502, 503, 504) or attempt + 1 == self.ATTEMPTS:
                    return response
                response.close()
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, missing: int | None = None) -> Any:
        """The JSON body of a 200 (None: the status ``missing``); anything else: :class:`ApiUnavailable`."""
        response = self._send(path, params)
        if response.status_code == missing:
            return None
        if response.status_code != 200:
            self._fail(f"GET {path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            self._fail(f"GET {path}: the answer is not JSON", exc)

    def _export_rows(self, first_seq: int, first_block: int) -> Iterator[dict[str, Any]]:
        """The export (JSON Lines, oldest first) from ``first_block`` on; a download cut short is resumed
        from the block of its last row."""
        last_seq, block, failures = first_seq - 1, first_block, 0
        while True:
            response = self._send("/v1/audit/export", {"format": "jsonl", "from_block": block}, stream=True)
            if response.status_code != 200:
                response.read()
                response.close()
                self._fail(f"GET /v1/audit/export: HTTP {response.status_code}: {response.text[:200]}")
            self._stream = response
            try:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        row = _from_export(json.loads(line))
                    except ValueError as exc:
                        self._fail("GET /v1/audit/export: a line is not JSON", exc)
                    if not isinstance(row.get("seq"), int) or row["seq"] <= last_seq:
                        continue
                    last_seq, block = row["seq"], row.get("block_number") or block
                    yield row
                return
            except httpx.HTTPError as exc:
                failures += 1
                if failures >= self.ATTEMPTS:
                    self._fail(f"GET /v1/audit/export: {type(exc).__name__}: {exc}", exc)
            finally:
                response.close()
                self._stream = None

    def _head_after(self, seq: int) -> bytes | None:
        page = self._get("/v1/audit/entries", {"cursor": seq + 1, "limit": 1})
        data = page.get("data") or []
        if not data or data[0].get("seq") != seq:
            return None
        return bytes.fromhex(data[0]["head"][2:])

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = dict(params) | ({"cursor": cursor} if cursor else {})
            page = self._get(path, query)
            yield from page.get("data") or []
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ------------------------------------------------------------------ per entry

    def on_entry(self, entry: Entry) -> None:
        row = self._rows.on_entry(entry)
        a, name = entry.args, entry.name
        flows: _Flows | None = None
        if "partnerId" in a and name in (
            "PointsIssued",
            "PointsBatchIssued",
            "IssuanceReversed",
            "PointsRedeemed",
            "RedemptionRefunded",
            "SettlementRecorded",
        ):
            by_block = self._per_block[a["partnerId"]]
            flows = by_block.get(entry.block)
            if flows is None:
                flows = by_block[entry.block] = _Flows()
        if name in ("PointsIssued", "PointsBatchIssued"):
            points = a["amount"] if name == "PointsIssued" else a["total"]
            assert flows is not None
            flows.issued += points
            flows.issued_value += points * a["value"]
            self._net[a["epoch"]][a["partnerId"]] += points
            if self.sample > 0:
                self._keep_rule(entry, a)
        elif name == "IssuanceReversed":
            assert flows is not None
            flows.reversed += a["recovered"]
            flows.reversed_value += a["recovered"] * a["value"]
            original_epoch = None if row is None else row.get("epoch")
            if isinstance(original_epoch, int):
                self._net[original_epoch][a["partnerId"]] -= a["recovered"]
        elif name == "PointsRedeemed":
            assert flows is not None
            flows.redeemed += a["amount"]
            flows.redeemed_value += a["amount"] * a["value"]
        elif name == "RedemptionRefunded":
            assert flows is not None
            flows.refunded += a["amount"]
            flows.refunded_value += a["amount"] * a["value"]
            self._refund_partner = a["partnerId"]
        elif name == "SettlementRecorded":
            assert flows is not None
            flows.settled_points += a["points"]
            flows.settled_value += a["value"]
        elif name == "PointsExpired":
            if self._rows.current.get("batch_seq") is not None and self._refund_partner is not None:
                self._arrivals[self._refund_partner] += a["amount"]
            else:
                self._swept[a["epoch"]] += a["amount"]

    def _keep_rule(self, entry: Entry, a: dict[str, Any]) -> None:
        digest = a["ruleHash"]
        index = self._hash_index.get(digest)
        if index is None:
            index = self._hash_index[digest] = len(self._hashes)
            self._hashes.append(digest)
        self._batch_seq.append(entry.seq)
        self._batch_count.append(a["count"] if entry.name == "PointsBatchIssued" else 0)
        self._batch_rule.append(index)
        self._batch_partner.append(a["partnerId"])

    def _issuance_of(self, seq: int) -> tuple[int, bytes] | None:
        """(partner, rule hash) of the issue or batch item with ``seq``."""
        i = bisect_right(self._batch_seq, seq) - 1
        if i < 0:
            return None
        header, count = self._batch_seq[i], self._batch_count[i]
        if (seq == header and count == 0) or header < seq <= header + count:
            return self._batch_partner[i], self._hashes[self._batch_rule[i]]
        return None

    # ------------------------------------------------------------------ at the end

    def finish(self, state: Rebuild, at: VerifiedBlock) -> list[Difference]:
        try:
            rows = self._rows
            rows.finish(state, at)
            _check_links(rows, self._original)
            out = rows.differences
            out += self._figures(state, at)
            out += self._rules(state)
            if self.sample > 0:
                out += self._purchases(state)
            return out
        finally:
            self.close()

    def _original(self, link: _Link) -> tuple[int, int | None] | None:
        reversal = link.event == "IssuanceReversed"
        order_ref = link.item_ref if reversal else link.ref
        assert order_ref is not None
        kinds = ",".join(_ISSUANCES) if reversal else "PointsRedeemed"
        params = {
            "order_ref": "0x" + order_ref.hex(),
            "partner": link.partner_id,
            "kind": kinds,
            "limit": 500,
        }
        best: tuple[int, int | None] | None = None
        for raw in self._pages("/v1/audit/entries", params):
            row = _from_export(raw)
            if (
                row["seq"] >= link.seq
                or (row.get("account") or "") != link.account
                or row.get("ref") != link.ref
            ):
                continue
            if reversal and (row.get("item_ref") != link.item_ref or row.get("amount") != link.issued):
                continue
            if best is None or row["seq"] < best[0]:
                best = (row["seq"], row.get("epoch"))
        return best

    def _figures(self, state: Rebuild, at: VerifiedBlock) -> list[Difference]:
        out: list[Difference] = []

        def differ(subject: str, name: str, expected: Any, found: Any, detail: str = "") -> None:
            if expected != found:
                out.append(Difference("api", subject, name, _hex(expected), _hex(found), detail))

        # the served head; without the chain (503) the service still serves its mirror's newest entry
        head = self._get("/v1/audit/head", missing=503) or {}
        if not head:
            newest = (self._get("/v1/audit/entries", {"limit": 1}).get("data") or [{}])[0]
            head = {"mirror": {"seq": newest.get("seq", 0), "head": newest.get("head")}}
        served = head.get("mirror") or {}
        if served.get("seq") != state.seq:
            differ(
                "head",
                "seq",
                state.seq,
                served.get("seq"),
                f"the API serves the ledger at block {served.get('block_number')}: figures not compared",
            )
            return out
        differ("head", "head", "0x" + state.head.hex(), served.get("head"))
        chain = head.get("chain_at_mirror_block") or {}
        if chain.get("block_number") == at.number:
            differ("head", "chain_at_mirror_block.head", "0x" + state.head.hex(), chain.get("head"))
            differ(
                "head",
                "chain_at_mirror_block.block_hash",
                at.hash.lower(),
                str(chain.get("block_hash")).lower(),
            )

        for account in sorted(state.held):
            self._wallet(state, account, differ)
        pool = _Flows()
        for pid in sorted(state.partners):
            partner = state.partners[pid]
            totals = _Flows.of(partner)
            pool.add(totals)
            subject = f"partner {pid}"
            directory = self._get(f"/v1/partners/{pid}", missing=404)
            if directory is None:
                differ(subject, "listed", True, False, "GET /v1/partners/{id} answers 404")
                continue
            differ(
                subject, "status", _STATUS.get(partner.status, str(partner.status)), directory.get("status")
            )
            differ(subject, "can_issue", partner.can_issue, directory.get("can_issue"))
            differ(subject, "can_accept", partner.can_accept, directory.get("can_accept"))
            position = self._get(f"/v1/partners/{pid}/position")
            self._held_figures(f"{subject} position", totals, position, differ)
            self._statement(state, pid, totals, differ)
        coalition = self._get("/v1/coalition/position")
        self._held_figures("coalition position", pool, coalition, differ, pool=True)
        return out

    @staticmethod
    def _held_figures(
        subject: str,
        flows: _Flows,
        served: Mapping[str, Any],
        differ: Callable[[str, str, Any, Any], None],
        *,
        pool: bool = False,
    ) -> None:
        for unit, value in (("points", False), ("value", True)):
            figures = served.get(unit) or {}
            for name, expected in flows.figures(value=value, pool=pool).items():
                differ(subject, f"{unit}.{name}", expected, figures.get(name))

    def _wallet(self, state: Rebuild, account: str, differ: Callable[..., None]) -> None:
        subject = f"wallet {account}"
        wallet = self._get(f"/v1/wallets/{account}", missing=404)
        if wallet is None:
            differ(subject, "served", True, False, "GET /v1/wallets/{address} answers 404")
            return
        t = int((wallet.get("as_of") or {}).get("time", 0))
        clock = state.clock
        paused = state.paused_total + (t - state.paused_at if state.paused and state.paused_at else 0)
        held = state.held.get(account, {})
        live = [
            {
                "epoch": e,
                "points": held[e],
                "expires_at": clock.genesis + paused + (e + clock.validity) * clock.epoch_length,
            }
            for e in state.live_epochs(state.epoch_at(t))
            if held.get(e, 0) > 0
        ]
        detail = f"at {t} (as_of.time)"
        differ(subject, "balance", sum(h["points"] for h in live), wallet.get("balance"), detail)
        differ(subject, "epochs", live, wallet.get("epochs"), detail)
        soon = sum(h["points"] for h in live if h["expires_at"] <= t + EXPIRING_WINDOW_S)
        differ(subject, "expiring_30d", soon, wallet.get("expiring_30d"), detail)
        differ(
            subject,
            "next_expiry_at",
            live[0]["expires_at"] if live else None,
            wallet.get("next_expiry_at"),
            detail,
        )
        differ(
            subject,
            "next_expiry_points",
            live[0]["points"] if live else 0,
            wallet.get("next_expiry_points"),
            detail,
        )

    def _breakage(self, state: Rebuild, partner_id: int, t: int) -> int:
        """The statement's breakage over all time at ``t`` (``api._statements.breakage``'s definition,
        computed from the entries): each expired epoch's points (swept, and still held) times the partner's
        share of the epoch's net issuance, rounded down per epoch; plus its refunds' parts that expired on
        arrival."""
        first_live = state.epoch_at(t) - state.clock.validity + 1
        expired: dict[int, int] = defaultdict(int)
        for epoch, points in self._swept.items():
            if epoch < first_live:
                expired[epoch] += points
        for epoch, points in state.epoch_supply.items():
            if epoch < first_live:
                expired[epoch] += points
        total = 0
        for epoch, points in expired.items():
            net = self._net.get(epoch, {})
            every = sum(net.values())
            if every > 0:
                total += points * net.get(partner_id, 0) // every
        return total + self._arrivals.get(partner_id, 0)

    def _statement(self, state: Rebuild, pid: int, totals: _Flows, differ: Callable[..., None]) -> None:
        subject = f"partner {pid} statement"
        served = self._get(f"/v1/partners/{pid}/statement")
        t = int((served.get("as_of") or {}).get("time", 0))
        self._held_figures(subject, totals, served, differ)
        differ(subject, "issued_net", totals.issued - totals.reversed, served.get("issued_net"))
        differ(subject, "redeemed_net", totals.redeemed - totals.refunded, served.get("redeemed_net"))
        segments = served.get("segments") or []
        if self._rows.first_seq not in (None, 1):
            # the breakage and the segments of a split statement sum entries this run did not see
            if len(segments) > 1 or served.get("breakage"):
                self.unchecked.append(
                    f"partner {pid}'s statement breakage and segments: the audit resumed at entry "
                    f"{self._rows.first_seq}, and they need every entry"
                )
            if len(segments) > 1:
                return
        else:
            differ(subject, "breakage", self._breakage(state, pid, t), served.get("breakage"), f"at {t}")
        per_block = self._per_block.get(pid, {})
        currencies: dict[str, list[Decimal]] = {}
        unpriced = _Flows()
        for i, segment in enumerate(segments):
            start, end = int(segment.get("start", 0)), int(segment.get("end", 0))
            if len(segments) == 1:
                flows = totals
            else:
                flows = _Flows()
                for block, block_flows in per_block.items():
                    if start <= state.timestamp_of(block) < end:
                        flows.add(block_flows)
            where = f"{subject} segment {i} [{start}, {end})"
            self._held_figures(where, flows, segment, differ)
            price = segment.get("price")
            if price is None:
                unpriced.add(flows)
                continue
            try:
                due_from = _DECIMAL.multiply(
                    Decimal(price["issue_price"]), Decimal(flows.issued - flows.reversed)
                )
                due_to = _DECIMAL.multiply(
                    Decimal(price["redeem_price"]), Decimal(flows.redeemed - flows.refunded)
                )
                amounts = segment.get("amounts") or {}
                for name, expected in (
                    ("due_from_partner", due_from),
                    ("due_to_partner", due_to),
                    ("margin", _DECIMAL.subtract(due_from, due_to)),
                ):
                    found = Decimal(str(amounts.get(name)))
                    if found != expected:
                        differ(where, f"amounts.{name}", format(expected, "f"), amounts.get(name))
            except (KeyError, InvalidOperation, TypeError) as exc:
                self._fail(f"GET /v1/partners/{pid}/statement: a segment's price or amounts: {exc}", exc)
            sums = currencies.setdefault(str(price.get("currency")), [Decimal(0), Decimal(0)])
            sums[0], sums[1] = _DECIMAL.add(sums[0], due_from), _DECIMAL.add(sums[1], due_to)
        differ(
            subject,
            "unpriced_issued_net",
            unpriced.issued - unpriced.reversed,
            served.get("unpriced_issued_net"),
        )
        differ(
            subject,
            "unpriced_redeemed_net",
            unpriced.redeemed - unpriced.refunded,
            served.get("unpriced_redeemed_net"),
        )
        totals_served = {str(x.get("currency")): x for x in served.get("totals") or []}
        differ(subject, "totals.currencies", sorted(currencies), sorted(totals_served))
        for currency, (owed, reimbursed) in currencies.items():
            total: Mapping[str, Any] = totals_served.get(currency) or {}
            for name, expected in (("due_from_partner", owed), ("due_to_partner", reimbursed)):
                try:
                    same = Decimal(str(total.get(name))) == expected
                except InvalidOperation:
                    same = False
                if not same:
                    differ(subject, f"totals.{currency}.{name}", format(expected, "f"), total.get(name))

    # ------------------------------------------------------------------ rules and purchases

    def _rule_text(self, digest_hex: str) -> dict[str, Any] | None:
        if digest_hex not in self._rule_cache:
            self._rule_cache[digest_hex] = self._get(f"/v1/rules/{digest_hex}", missing=404)
        return self._rule_cache[digest_hex]

    def _rules(self, state: Rebuild) -> list[Difference]:
        out: list[Difference] = []
        for key in sorted(state.rule_hashes):
            partner, digest_hex = key.split(":")
            if bytes.fromhex(digest_hex[2:]) == ZERO32:
                continue  # issued without a rule set
            subject = f"rule set {digest_hex}"
            served = self._rule_text(digest_hex)
            if served is None:
                out.append(
                    Difference(
                        "rules",
                        subject,
                        "published",
                        f"GET /v1/rules/{digest_hex}",
                        "404",
                        f"partner {partner} issued {state.rule_hashes[key]} points under it",
                    )
                )
                continue
            text_hash = "0x" + keccak(str(served.get("canonical", "")).encode()).hex()
            if text_hash != digest_hex:
                out.append(
                    Difference(
                        "rules",
                        subject,
                        "keccak(canonical)",
                        digest_hex,
                        text_hash,
                        "a rule set changed after use: the served text is not what the issuances' hash names",
                    )
                )
            if served.get("partner_id") != int(partner):
                out.append(Difference("rules", subject, "partner_id", int(partner), served.get("partner_id")))
        return out

    def _purchases(self, state: Rebuild) -> list[Difference]:
        out: list[Difference] = []
        keys = {
            int(k["partner_id"]): bytes.fromhex(str(k["key"])[2:])
            for k in self._get("/v1/audit/reference-keys").get("data") or []
        }
        draw = _Sample(self.sample, self._rng)
        for op in self._pages("/v1/operations", {"kind": "purchase", "state": "confirmed", "limit": 500}):
            draw.offer(op)
        for op in sorted(draw.drawn, key=lambda o: str(o.get("id"))):
            out += self._purchase(state, op, keys)
        return out

    def _purchase(self, state: Rebuild, op: Mapping[str, Any], keys: Mapping[int, bytes]) -> list[Difference]:
        out: list[Difference] = []
        subject = f"operation {op.get('id')}"

        def differ(name: str, expected: Any, found: Any, detail: str = "") -> None:
            if expected != found:
                out.append(Difference("purchase", subject, name, _hex(expected), _hex(found), detail))

        pid = int(op["partner_id"])
        request: dict[str, Any] = op.get("request") or {}
        natural_key = str(op.get("natural_key"))
        differ("natural_key", request.get("order_id"), natural_key, "the order id the request named")
        key = keys.get(pid)
        if key is None:
            differ("reference key", f"partner {pid}'s key", None, "GET /v1/audit/reference-keys")
            return out
        reference = hmac.new(key, f"purchase:{natural_key}".encode(), hashlib.sha256).digest()
        differ(
            "reference", "0x" + reference.hex(), op.get("reference"), "HMAC-SHA256(key, purchase:<order id>)"
        )

        # what the chain issued under the reference
        record = state.items.get(pid.to_bytes(4, "big") + reference)
        issued = None if record is None else _unpack_item(record)
        if issued is not None:
            differ(
                "customer", str(op.get("address", "")).lower(), issued[1].lower(), "the issuance's recipient"
            )
        issuance = None if op.get("seq") is None else self._issuance_of(int(op["seq"]))
        if issuance is not None:
            differ("partner on chain", pid, issuance[0], f"the issuance of entry {op.get('seq')}")
            differ(
                "rule hash on chain", op.get("rule_hash"), "0x" + issuance[1].hex(), f"entry {op.get('seq')}"
            )

        # what the published rule set computes from the published inputs
        digest_hex = op.get("rule_hash")
        rules = self._rule_set(str(digest_hex)) if digest_hex else None
        if rules is None:
            differ("rule set", f"published rule set {digest_hex}", None, "its points cannot be recomputed")
            return out
        try:
            order = Order(
                channel=str(request["channel"]),
                store=request.get("store"),
                currency=str(request["currency"]),
                amount=int(request["amount"]),
                lines=tuple(
                    Line(str(x["sku"]), x.get("category"), int(x["quantity"]), int(x["unit_price"]))
                    for x in request.get("lines") or []
                ),
                at=int(op["created_at"]),
            )
            original = int(op.get("original_points", 0))
            explanation = (op.get("detail") or {}).get("explanation") or []
            recomputed = _recompute(rules, order, explanation, original)
        except (KeyError, TypeError, ValueError, RulesError) as exc:
            differ("request", "an order the rule set computes", f"refused ({exc})")
            return out
        differ(
            "points", recomputed, original, f"recomputed with rule set {digest_hex} from the order's inputs"
        )
        # a return while pending lowered the points sent (original_points - points): the rest is on chain
        expected_on_chain = recomputed - (original - int(op.get("points", 0)))
        differ(
            "issued on chain",
            expected_on_chain,
            None if issued is None else issued[2],
            f"the issuance under reference 0x{reference.hex()}",
        )
        return out

    def _rule_set(self, digest_hex: str) -> RuleSet | None:
        served = self._rule_text(digest_hex)
        if served is None:
            return None
        canonical = str(served.get("canonical", ""))
        if "0x" + keccak(canonical.encode()).hex() != digest_hex.lower():
            return None  # reported by the rules check
        try:
            return parse_canonical(canonical)
        except NotCanonical:
            return None


def _recompute(rules: RuleSet, order: Order, explanation: Sequence[Mapping[str, Any]], claimed: int) -> int:
    """The points ``rules`` give ``order`` for the member as the operation's explanation describes it.

    The member's tier and what it had earned from the partner in the cap windows when the order was
    computed are published nowhere else: the tier is the explanation's tier line's (without one: no tier, or
    a tier some campaign targets but that has no multiplier, which leaves no line), the earnings the cap
    lines' (without one, no cap was reached, and none is with nothing earned). Of several candidate tiers
    the one that gives the ``claimed`` points is taken, else the first: the check is then weaker only for
    such campaigns."""
    earned = {"day": 0, "week": 0, "month": 0}
    tier: str | None = None
    for line in explanation:
        kind, detail = line.get("kind"), str(line.get("detail", ""))
        if kind == "tier" and (found := _TIER_LINE.search(detail)):
            tier = found.group(1)
        elif kind == "cap" and (capped := _CAP_LINE.match(detail)):
            earned[capped.group(1)] = int(capped.group(2))
    candidates: list[str | None] = [tier]
    if tier is None:
        candidates += sorted({t for c in rules.campaigns for t in (c.tiers or ()) if t not in rules.tiers})
    results = [
        quote_purchase(
            rules,
            order,
            MemberContext(
                tier=t, earned_day=earned["day"], earned_week=earned["week"], earned_month=earned["month"]
            ),
        ).points
        for t in candidates
    ]
    return claimed if claimed in results else results[0]
