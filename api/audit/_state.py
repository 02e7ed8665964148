"""The ledger rebuilt from its entries alone, in ``seq`` order, with every rule the entries must obey checked
as they arrive.

:class:`Rebuild` is the auditor's model of the contract's state: the hash-chain head, every account's points
per epoch, each epoch's supply, the totals, every partner's registration, counters and positions, the
settlement value, the pause clock, roles, migrations, and the issuances and redemptions that later reversals
and refunds must stay within. It never asks the chain for state: what the chain says is compared with it
afterwards (:mod:`._verify`).

What an entry must obey, each a :class:`Difference` when broken:

- ``seq`` runs 1, 2, 3, … without a gap or a repeat; the head folds every entry hash.
- A header is followed by exactly its parts: a batch by ``count`` items summing to ``total`` whose Merkle
  root (OpenZeppelin's StandardMerkleTree over (recipient, amount, itemRef), leaves in item order) is its
  ``ref``; a reversal by takes summing to ``recovered``; a refund by give-backs summing to ``amount`` of
  which ``restored`` stay live; a migration by transfers summing to ``amount``.
- Points are issued into the ledger clock's current epoch, redeemed and moved only from live epochs, swept
  only from expired ones; no account's epoch ever goes below zero.
- A reversal names an issuance the partner made (same reference, customer, amount, value), and the
  reversals of one item never request more than it issued; a refund names a redemption of that partner and
  never gives back more than it took.
- A partner's order reference earns once: an item reference seen again in another batch or issue of the
  same partner is reported (the contract cannot see it: it keys issuances by batch root).
- A partner's allowance falls by what it issues and changes otherwise only by an allowance entry whose
  ``previousAllowance`` is the allowance it had.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._decode import Entry, keccak

__all__ = ["Difference", "PartnerState", "Rebuild", "merkle_root"]

ZERO32 = bytes(32)
ACTIVE = 1


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that does not match: what kind, about whom (an account, a partner, an entry), which field,
    what the audit expected and what it found."""

    kind: str
    subject: str
    field: str
    expected: Any
    found: Any
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}

    def line(self) -> str:
        expected, found = _plain(self.expected), _plain(self.found)
        text = f"{self.kind}: {self.subject} {self.field}: expected {expected}, found {found}"
        return f"{text} ({self.detail})" if self.detail else text


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@dataclass(slots=True)
class PartnerState:
    """A partner's registration and counters, named as the contract's ``PartnerView``."""

    partner_id: int
    operator: str
    settlement: str
    status: int = ACTIVE
    can_issue: bool = False
    can_accept: bool = False
    allowance: int = 0
    issued: int = 0
    redeemed: int = 0
    issued_value: int = 0
    redeemed_value: int = 0
    reversed: int = 0
    refunded: int = 0
    reversed_value: int = 0
    refunded_value: int = 0
    settled_points: int = 0
    settled_value: int = 0
    settlements: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> tuple[Any, ...]:
        """The fields in ``PartnerView`` order (the contract's ``partner(id)``)."""
        return (
            self.partner_id,
            self.operator,
            self.settlement,
            self.status,
            self.can_issue,
            self.can_accept,
            self.allowance,
            self.issued,
            self.redeemed,
            self.issued_value,
            self.redeemed_value,
            self.reversed,
            self.refunded,
            self.reversed_value,
            self.refunded_value,
            self.settled_points,
            self.settled_value,
        )

    def position(self) -> tuple[int, int]:
        points = self.redeemed - self.refunded - self.issued + self.reversed
        value = self.redeemed_value - self.refunded_value - self.issued_value + self.reversed_value
        return points, value

    def open_position(self) -> tuple[int, int]:
        points, value = self.position()
        return points - self.settled_points, value - self.settled_value


VIEW_FIELDS = (
    "partnerId",
    "operator",
    "settlement",
    "status",
    "canIssue",
    "canAccept",
    "allowance",
    "issued",
    "redeemed",
    "issuedValue",
    "redeemedValue",
    "reversed",
    "refunded",
    "reversedValue",
    "refundedValue",
    "settledPoints",
    "settledValue",
)


def _leaf(to: str, amount: int, item_ref: bytes) -> bytes:
    encoded = bytes(12) + bytes.fromhex(to[2:]) + amount.to_bytes(32, "big") + item_ref
    return keccak(keccak(encoded))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def merkle_root(leaves: list[bytes]) -> bytes:
    """The root of OpenZeppelin's StandardMerkleTree over ``leaves`` kept in their order (the tree as an
    array: node i has children 2i+1 and 2i+2, leaf j sits at 2n-2-j)."""
    n = len(leaves)
    tree: list[bytes] = [b""] * (2 * n - 1)
    for j, leaf in enumerate(leaves):
        tree[2 * n - 2 - j] = leaf
    for i in range(n - 2, -1, -1):
        tree[i] = _pair(tree[2 * i + 1], tree[2 * i + 2])
    return tree[0]


#: An issued item as kept for later reversals: ref (32) ‖ customer (20) ‖ amount (16) ‖ value (16).
def _item_record(ref: bytes, customer: str, amount: int, value: int) -> bytes:
    return ref + bytes.fromhex(customer[2:]) + amount.to_bytes(16, "big") + value.to_bytes(16, "big")


def _unpack_item(record: bytes) -> tuple[bytes, str, int, int]:
    return (
        record[:32],
        "0x" + record[32:52].hex(),
        int.from_bytes(record[52:68], "big"),
        int.from_bytes(record[68:84], "big"),
    )


def _key(partner_id: int, ref: bytes) -> bytes:
    return partner_id.to_bytes(4, "big") + ref


@dataclass(frozen=True, slots=True)
class Clock:
    """The ledger's immutable clock parameters (read once from the contract's views)."""

    genesis: int
    epoch_length: int
    validity: int


class Rebuild:
    """The ledger's state after the entries applied so far (see the module docstring)."""

    def __init__(self, clock: Clock, timestamp_of: Callable[[int], int]) -> None:
        self.clock = clock
        #: block number -> its timestamp (the node's headers, fetched by the caller in batches)
        self.timestamp_of = timestamp_of
        self.seq = 0
        self.head = ZERO32
        self.block = -1
        self.block_hash = ""
        self.held: dict[str, dict[int, int]] = {}
        self.epoch_supply: dict[int, int] = {}
        self.partners: dict[int, PartnerState] = {}
        self.totals = {"issued": 0, "redeemed": 0, "expired": 0, "reversed": 0, "refunded": 0}
        self.settlement_value: int | None = None
        self.transfers_enabled = False
        self.paused = False
        self.paused_total = 0
        self.paused_at: int | None = None  # the timestamp of the block that paused the ledger
        self.roles: dict[str, set[str]] = {}
        self.migrated: dict[str, str] = {}
        self.items: dict[bytes, bytes] = {}
        self.duplicate_items: dict[bytes, list[bytes]] = {}
        self.reversal_requested: dict[bytes, int] = {}
        self.redemptions: dict[bytes, list[Any]] = {}  # key -> [customer, redeemed, value]
        self.refunds: dict[bytes, int] = {}
        self.rule_hashes: dict[str, int] = {}  # "partner:0xhash" -> points issued under it
        self.counts: dict[str, int] = {}
        self.differences: list[Difference] = []
        self._open: dict[str, Any] | None = None  # the header whose parts are arriving

    # ------------------------------------------------------------------ the clock

    def epoch_at(self, timestamp: int) -> int:
        paused = self.paused_total + (timestamp - self.paused_at if self.paused and self.paused_at else 0)
        return (timestamp - self.clock.genesis - paused) // self.clock.epoch_length

    def expired(self, epoch: int, current: int) -> bool:
        return epoch + self.clock.validity <= current

    def live_epochs(self, current: int) -> range:
        return range(max(0, current + 1 - self.clock.validity), current + 1)

    # ------------------------------------------------------------------ reporting

    def _differ(
        self, kind: str, subject: str, name: str, expected: Any, found: Any, detail: str = ""
    ) -> None:
        self.differences.append(Difference(kind, subject, name, expected, found, detail))

    def _entry_subject(self, entry: Entry) -> str:
        return f"entry {entry.seq} ({entry.name}, block {entry.block}, tx {entry.tx})"

    # ------------------------------------------------------------------ applying entries

    def apply_all(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.apply(entry)

    def apply(self, entry: Entry) -> None:
        if entry.seq != self.seq + 1:
            self._differ(
                "seq",
                self._entry_subject(entry),
                "seq",
                self.seq + 1,
                entry.seq,
                "entries missing or out of order",
            )
        self.seq = entry.seq
        self.head = keccak(self.head + entry.entry_hash)
        self.block = entry.block
        self.block_hash = entry.block_hash
        self.counts[entry.name] = self.counts.get(entry.name, 0) + 1
        if self._open is not None and not self._continues(entry):
            self._close()
        handler = getattr(self, "_on_" + entry.name)
        handler(entry, entry.args)

    def finish(self) -> None:
        """Closes a header whose parts were still arriving (its parts must all have arrived by now)."""
        if self._open is not None:
            self._close()

    def _continues(self, entry: Entry) -> bool:
        assert self._open is not None
        kind = self._open["kind"]
        if kind == "batch":
            return entry.name == "PointsIssuedInBatch" and len(self._open["leaves"]) < self._open["count"]
        if kind == "reversal":
            return entry.name == "PointsReversed"
        if kind == "refund":
            return entry.name in ("PointsRefunded", "PointsExpired")
        return entry.name == "PointsTransferred"  # migration

    def _close(self) -> None:
        open_, self._open = self._open, None
        assert open_ is not None
        subject = open_["subject"]
        if open_["kind"] == "batch":
            if len(open_["leaves"]) != open_["count"]:
                self._differ("batch", subject, "count", open_["count"], len(open_["leaves"]), "items missing")
            if open_["sum"] != open_["total"]:
                self._differ("batch", subject, "total", open_["total"], open_["sum"], "items do not add up")
            if open_["leaves"] and merkle_root(open_["leaves"]) != open_["ref"]:
                self._differ(
                    "merkle-root", subject, "ref", open_["ref"], merkle_root(open_["leaves"]), "items' root"
                )
        elif open_["kind"] == "reversal":
            if open_["taken"] != open_["recovered"]:
                self._differ("reversal", subject, "recovered", open_["recovered"], open_["taken"])
        elif open_["kind"] == "refund":
            if open_["given"] != open_["amount"]:
                self._differ("refund", subject, "amount", open_["amount"], open_["given"])
            if open_["given"] - open_["lapsed"] != open_["restored"]:
                self._differ(
                    "refund", subject, "restored", open_["restored"], open_["given"] - open_["lapsed"]
                )
        elif open_["moved"] != open_["amount"]:
            self._differ("migration", subject, "amount", open_["amount"], open_["moved"])

    # ------------------------------------------------------------------ points

    def _add(self, account: str, epoch: int, amount: int) -> None:
        by_epoch = self.held.setdefault(account, {})
        by_epoch[epoch] = by_epoch.get(epoch, 0) + amount
        self.epoch_supply[epoch] = self.epoch_supply.get(epoch, 0) + amount

    def _take(self, entry: Entry, account: str, epoch: int, amount: int) -> None:
        by_epoch = self.held.setdefault(account, {})
        have = by_epoch.get(epoch, 0)
        if amount > have:
            self._differ(
                "holding",
                f"account {account}",
                f"epoch {epoch}",
                f">= {amount}",
                have,
                self._entry_subject(entry),
            )
        by_epoch[epoch] = have - amount
        self.epoch_supply[epoch] = self.epoch_supply.get(epoch, 0) - amount

    def _current_epoch_at(self, block: int) -> int:
        return self.epoch_at(self.timestamp_of(block))

    def _check_issue_epoch(self, entry: Entry, epoch: int) -> None:
        current = self._current_epoch_at(entry.block)
        if epoch != current:
            self._differ(
                "epoch",
                self._entry_subject(entry),
                "epoch",
                current,
                epoch,
                "issued outside the current epoch",
            )

    def _check_live(self, entry: Entry, epoch: int) -> None:
        current = self._current_epoch_at(entry.block)
        if self.expired(epoch, current) or epoch > current:
            self._differ("epoch", self._entry_subject(entry), "epoch", f"live at epoch {current}", epoch)

    def _partner(self, entry: Entry, partner_id: int) -> PartnerState:
        partner = self.partners.get(partner_id)
        if partner is None:
            self._differ(
                "partner", self._entry_subject(entry), "partnerId", "a registered partner", partner_id
            )
            partner = self.partners[partner_id] = PartnerState(partner_id, "0x" + "00" * 20, "0x" + "00" * 20)
        return partner

    def _check_value(self, entry: Entry, value: int) -> None:
        if self.settlement_value is not None and value != self.settlement_value:
            self._differ("value", self._entry_subject(entry), "value", self.settlement_value, value)

    def _issue(self, entry: Entry, partner: PartnerState, total: int, value: int, rule_hash: bytes) -> None:
        if partner.status != ACTIVE or not partner.can_issue:
            self._differ(
                "partner",
                self._entry_subject(entry),
                "status",
                "active, may issue",
                (partner.status, partner.can_issue),
            )
        if total > partner.allowance:
            self._differ(
                "allowance",
                f"partner {partner.partner_id}",
                "allowance",
                f">= {total}",
                partner.allowance,
                self._entry_subject(entry),
            )
        partner.allowance -= total
        partner.issued += total
        partner.issued_value += total * value
        self.totals["issued"] += total
        self._check_value(entry, value)
        key = f"{partner.partner_id}:0x{rule_hash.hex()}"
        self.rule_hashes[key] = self.rule_hashes.get(key, 0) + total

    def _earn(
        self,
        entry: Entry,
        partner_id: int,
        ref: bytes,
        customer: str,
        amount: int,
        item_ref: bytes,
        value: int,
    ) -> None:
        key = _key(partner_id, item_ref)
        record = _item_record(ref, customer, amount, value)
        if key in self.items:
            self.duplicate_items.setdefault(key, []).append(record)
            self._differ(
                "order-reference",
                f"partner {partner_id}",
                "itemRef",
                "earned once",
                "0x" + item_ref.hex(),
                f"earned again by {self._entry_subject(entry)}",
            )
        else:
            self.items[key] = record

    def _on_PointsIssued(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        self._check_issue_epoch(entry, a["epoch"])
        self._issue(entry, partner, a["amount"], a["value"], a["ruleHash"])
        self._add(a["to"], a["epoch"], a["amount"])
        self._earn(entry, partner.partner_id, a["ref"], a["to"], a["amount"], a["ref"], a["value"])

    def _on_PointsBatchIssued(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        self._check_issue_epoch(entry, a["epoch"])
        self._issue(entry, partner, a["total"], a["value"], a["ruleHash"])
        self._open = {
            "kind": "batch",
            "subject": self._entry_subject(entry),
            "partner": partner.partner_id,
            "epoch": a["epoch"],
            "ref": a["ref"],
            "count": a["count"],
            "total": a["total"],
            "value": a["value"],
            "leaves": [],
            "sum": 0,
        }

    def _on_PointsIssuedInBatch(self, entry: Entry, a: dict[str, Any]) -> None:
        batch = self._open
        if batch is None or batch["kind"] != "batch":
            self._differ("batch", self._entry_subject(entry), "header", "a PointsBatchIssued before it", None)
            return
        batch["leaves"].append(_leaf(a["to"], a["amount"], a["itemRef"]))
        batch["sum"] += a["amount"]
        self._add(a["to"], batch["epoch"], a["amount"])
        self._earn(entry, batch["partner"], batch["ref"], a["to"], a["amount"], a["itemRef"], batch["value"])

    def _on_PointsRedeemed(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        if partner.status != ACTIVE or not partner.can_accept:
            self._differ(
                "partner",
                self._entry_subject(entry),
                "status",
                "active, may accept",
                (partner.status, partner.can_accept),
            )
        self._check_live(entry, a["epoch"])
        self._check_value(entry, a["value"])
        self._take(entry, a["customer"], a["epoch"], a["amount"])
        partner.redeemed += a["amount"]
        partner.redeemed_value += a["amount"] * a["value"]
        self.totals["redeemed"] += a["amount"]
        key = _key(partner.partner_id, a["ref"])
        record = self.redemptions.get(key)
        if record is None:
            self.redemptions[key] = [a["customer"], a["amount"], a["value"], entry.tx]
        elif record[3] != entry.tx:
            self._differ(
                "redemption-reference",
                f"partner {partner.partner_id}",
                "ref",
                "used once",
                "0x" + a["ref"].hex(),
                self._entry_subject(entry),
            )
        else:
            record[1] += a["amount"]

    def _on_IssuanceReversed(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        subject = self._entry_subject(entry)
        key = _key(partner.partner_id, a["itemRef"])
        candidates = [self.items[key]] if key in self.items else []
        candidates += self.duplicate_items.get(key, [])
        wanted = (a["ref"], a["customer"], a["issued"], a["value"])
        if not any(_unpack_item(record) == wanted for record in candidates):
            self._differ(
                "reversal", subject, "issuance", "an issuance of the partner with these values", "none"
            )
        leaf_key = key + a["ref"] + _leaf(a["customer"], a["issued"], a["itemRef"])
        requested = self.reversal_requested.get(leaf_key, 0) + a["requested"]
        self.reversal_requested[leaf_key] = requested
        if requested > a["issued"]:
            self._differ(
                "reversal",
                subject,
                "requested",
                f"<= {a['issued']} (issued)",
                requested,
                "reversals exceed the issuance",
            )
        if a["recovered"] > a["requested"]:
            self._differ("reversal", subject, "recovered", f"<= {a['requested']}", a["recovered"])
        partner.reversed += a["recovered"]
        partner.reversed_value += a["recovered"] * a["value"]
        self.totals["reversed"] += a["recovered"]
        self._open = {"kind": "reversal", "subject": subject, "recovered": a["recovered"], "taken": 0}

    def _on_PointsReversed(self, entry: Entry, a: dict[str, Any]) -> None:
        if self._open is None or self._open["kind"] != "reversal":
            self._differ(
                "reversal", self._entry_subject(entry), "header", "an IssuanceReversed before it", None
            )
        else:
            self._open["taken"] += a["amount"]
        self._take(entry, a["customer"], a["epoch"], a["amount"])

    def _on_RedemptionRefunded(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        subject = self._entry_subject(entry)
        key = _key(partner.partner_id, a["ref"])
        record = self.redemptions.get(key)
        if record is None or record[0] != a["customer"] or record[2] != a["value"]:
            self._differ(
                "refund", subject, "redemption", "a redemption of the partner with these values", "none"
            )
            redeemed = 0
        else:
            redeemed = record[1]
        refunded = self.refunds.get(key, 0) + a["amount"]
        self.refunds[key] = refunded
        if refunded > redeemed:
            self._differ(
                "refund",
                subject,
                "amount",
                f"<= {redeemed} (redeemed)",
                refunded,
                "refunds exceed the redemption",
            )
        partner.refunded += a["amount"]
        partner.refunded_value += a["amount"] * a["value"]
        self.totals["refunded"] += a["amount"]
        self._open = {
            "kind": "refund",
            "subject": subject,
            "amount": a["amount"],
            "restored": a["restored"],
            "given": 0,
            "lapsed": 0,
        }

    def _on_PointsRefunded(self, entry: Entry, a: dict[str, Any]) -> None:
        if self._open is None or self._open["kind"] != "refund":
            self._differ(
                "refund", self._entry_subject(entry), "header", "a RedemptionRefunded before it", None
            )
        else:
            self._open["given"] += a["amount"]
        self._add(a["customer"], a["epoch"], a["amount"])

    def _on_PointsExpired(self, entry: Entry, a: dict[str, Any]) -> None:
        current = self._current_epoch_at(entry.block)
        if not self.expired(a["epoch"], current):
            self._differ(
                "expiry", self._entry_subject(entry), "epoch", f"expired at epoch {current}", a["epoch"]
            )
        if self._open is not None and self._open["kind"] == "refund":
            self._open["lapsed"] += a["amount"]
        self._take(entry, a["account"], a["epoch"], a["amount"])
        self.totals["expired"] += a["amount"]

    def _on_PointsTransferred(self, entry: Entry, a: dict[str, Any]) -> None:
        self._check_live(entry, a["epoch"])
        if self._open is not None and self._open["kind"] == "migration":
            if (a["from"], a["to"]) != (self._open["from"], self._open["to"]):
                self._differ(
                    "migration",
                    self._entry_subject(entry),
                    "accounts",
                    (self._open["from"], self._open["to"]),
                    (a["from"], a["to"]),
                )
            self._open["moved"] += a["amount"]
        elif not self.transfers_enabled:
            self._differ("transfer", self._entry_subject(entry), "transfersEnabled", True, False)
        self._take(entry, a["from"], a["epoch"], a["amount"])
        self._add(a["to"], a["epoch"], a["amount"])

    def _on_AccountMigrated(self, entry: Entry, a: dict[str, Any]) -> None:
        if a["to"] in self.migrated:
            self._differ(
                "migration", self._entry_subject(entry), "to", "an account that never migrated away", a["to"]
            )
        self.migrated[a["from"]] = a["to"]
        self._open = {
            "kind": "migration",
            "subject": self._entry_subject(entry),
            "from": a["from"],
            "to": a["to"],
            "amount": a["amount"],
            "moved": 0,
        }

    def _on_ConsentRevoked(self, entry: Entry, a: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ partners and governance

    def _on_PartnerRegistered(self, entry: Entry, a: dict[str, Any]) -> None:
        if a["partnerId"] in self.partners:
            self._differ(
                "partner", self._entry_subject(entry), "partnerId", "registered once", a["partnerId"]
            )
        self.partners[a["partnerId"]] = PartnerState(
            a["partnerId"],
            a["operator"],
            a["settlement"],
            ACTIVE,
            a["canIssue"],
            a["canAccept"],
            a["allowance"],
        )

    def _on_PartnerAllowanceChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        if a["previousAllowance"] != partner.allowance:
            self._differ(
                "allowance",
                f"partner {partner.partner_id}",
                "previousAllowance",
                partner.allowance,
                a["previousAllowance"],
                self._entry_subject(entry),
            )
        partner.allowance = a["allowance"]

    def _on_PartnerStatusChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        self._partner(entry, a["partnerId"]).status = a["status"]

    def _on_PartnerOperatorChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        if a["previousOperator"] != partner.operator:
            self._differ(
                "partner",
                f"partner {partner.partner_id}",
                "previousOperator",
                partner.operator,
                a["previousOperator"],
            )
        partner.operator = a["operator"]

    def _on_PartnerRightsChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        partner.can_issue, partner.can_accept = a["canIssue"], a["canAccept"]

    def _on_PartnerSettlementAddressChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        self._partner(entry, a["partnerId"]).settlement = a["settlement"]

    def _on_SettlementRecorded(self, entry: Entry, a: dict[str, Any]) -> None:
        partner = self._partner(entry, a["partnerId"])
        partner.settled_points += a["points"]
        partner.settled_value += a["value"]
        partner.settlements.append(
            {
                "seq": entry.seq,
                "block": entry.block,
                "points": a["points"],
                "value": a["value"],
                "payment_ref": "0x" + a["paymentRef"].hex(),
            }
        )

    def _on_SettlementValueChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        if self.settlement_value is not None and a["previousValue"] != self.settlement_value:
            self._differ(
                "value",
                self._entry_subject(entry),
                "previousValue",
                self.settlement_value,
                a["previousValue"],
            )
        self.settlement_value = a["value"]

    def _on_TransfersEnabledChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        self.transfers_enabled = a["enabled"]

    def _on_RoleChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        members = self.roles.setdefault("0x" + a["role"].hex(), set())
        if a["granted"]:
            members.add(a["account"])
        else:
            members.discard(a["account"])

    def _on_AdminHandoverChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        pass

    def _on_PauseChanged(self, entry: Entry, a: dict[str, Any]) -> None:
        at = self.timestamp_of(entry.block)
        subject = self._entry_subject(entry)
        if a["paused"]:
            if a["pausedDuration"] != self.paused_total:
                self._differ("clock", subject, "pausedDuration", self.paused_total, a["pausedDuration"])
            self.paused, self.paused_at = True, at
        else:
            if self.paused and self.paused_at is not None:
                expected = self.paused_total + (at - self.paused_at)
                if a["pausedDuration"] != expected:
                    self._differ("clock", subject, "pausedDuration", expected, a["pausedDuration"])
            self.paused, self.paused_at = False, None
            self.paused_total = a["pausedDuration"]

    # ------------------------------------------------------------------ figures at the end

    def balance(self, account: str, current: int) -> int:
        held = self.held.get(account, {})
        return sum(held.get(epoch, 0) for epoch in self.live_epochs(current))

    def outstanding(self, current: int) -> int:
        return sum(self.epoch_supply.get(epoch, 0) for epoch in self.live_epochs(current))

    def holder_of(self, account: str) -> str:
        seen = set()
        while account in self.migrated and account not in seen:
            seen.add(account)
            account = self.migrated[account]
        return account

    # ------------------------------------------------------------------ checkpoint

    def to_json(self) -> dict[str, Any]:
        if self._open is not None:
            raise ValueError("a checkpoint is taken between whole transactions, not inside a header's parts")
        return {
            "seq": self.seq,
            "head": "0x" + self.head.hex(),
            "block": self.block,
            "block_hash": self.block_hash,
            "held": {acc: {str(e): n for e, n in by.items() if n} for acc, by in self.held.items()},
            "epoch_supply": {str(e): n for e, n in self.epoch_supply.items()},
            "partners": [asdict(p) for p in self.partners.values()],
            "totals": self.totals,
            "settlement_value": self.settlement_value,
            "transfers_enabled": self.transfers_enabled,
            "paused": self.paused,
            "paused_total": self.paused_total,
            "paused_at": self.paused_at,
            "roles": {role: sorted(members) for role, members in self.roles.items()},
            "migrated": self.migrated,
            "items": _pack(self.items),
            "duplicate_items": {k.hex(): [r.hex() for r in v] for k, v in self.duplicate_items.items()},
            "reversal_requested": {k.hex(): n for k, n in self.reversal_requested.items()},
            "redemptions": {k.hex(): v for k, v in self.redemptions.items()},
            "refunds": {k.hex(): n for k, n in self.refunds.items()},
            "rule_hashes": self.rule_hashes,
            "counts": self.counts,
            "differences": [d.to_json() for d in self.differences],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], clock: Clock, timestamp_of: Callable[[int], int]) -> Rebuild:
        state = cls(clock, timestamp_of)
        state.seq, state.block, state.block_hash = data["seq"], data["block"], data["block_hash"]
        state.head = bytes.fromhex(data["head"][2:])
        state.held = {acc: {int(e): n for e, n in by.items()} for acc, by in data["held"].items()}
        state.epoch_supply = {int(e): n for e, n in data["epoch_supply"].items()}
        state.partners = {p["partner_id"]: PartnerState(**p) for p in data["partners"]}
        state.totals = data["totals"]
        state.settlement_value = data["settlement_value"]
        state.transfers_enabled = data["transfers_enabled"]
        state.paused, state.paused_total, state.paused_at = (
            data["paused"],
            data["paused_total"],
            data["paused_at"],
        )
        state.roles = {role: set(members) for role, members in data["roles"].items()}
        state.migrated = data["migrated"]
        state.items = _unpack(data["items"])
        state.duplicate_items = {
            bytes.fromhex(k): [bytes.fromhex(r) for r in v] for k, v in data["duplicate_items"].items()
        }
        state.reversal_requested = {bytes.fromhex(k): n for k, n in data["reversal_requested"].items()}
        state.redemptions = {bytes.fromhex(k): v for k, v in data["redemptions"].items()}
        state.refunds = {bytes.fromhex(k): n for k, n in data["refunds"].items()}
        state.rule_hashes = data["rule_hashes"]
        state.counts = data["counts"]
        state.differences = [Difference(**d) for d in data["differences"]]
        return state


_ITEM = 36 + 84


def _pack(items: dict[bytes, bytes]) -> str:
    return base64.b64encode(b"".join(k + v for k, v in items.items())).decode()


def _unpack(text: str) -> dict[bytes, bytes]:
    raw = base64.b64decode(text)
    return {raw[i : i + 36]: raw[i + 36 : i + _ITEM] for i in range(0, len(raw), _ITEM)}
