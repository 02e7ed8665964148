"""Issuing points: single and batch issuance, the partner allowance, references, amounts and recipients,
partner registration, the settlement positions, and the ERC-20 metadata.

Issuance by partner ACTIVE (operator ``actors.partner``) unless said otherwise. Every rejected call is
checked to leave the ledger unchanged (:func:`assert_rejected`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.types import TxReceipt

from chain import ContractRevert
from chain._merkle import leaf_hash
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ALLOWANCE,
    EPOCH,
    ISSUE_ONLY,
    SETTLEMENT_VALUE,
    SUSPENDED,
    VALIDITY,
    Ledger,
    expect_revert,
    new_customer,
    random_ref,
)
from contract_helpers import STATUS_ACTIVE, batch_root, partner_view

MAX_AMOUNT = 2**64 - 1
MAX_ALLOWANCE = 2**64 - 1
ZERO = "0x0000000000000000000000000000000000000000"
RULE = bytes(Web3.keccak(text="purchase: 1 point per euro"))
PURCHASE, BIRTHDAY = 1, 65535


# --------------------------------------------------------------------------- helpers


def fresh_address() -> str:
    return str(Account.create().address)


def issue(
    ledger: Ledger, to: str, amount: int, ref: bytes, *, sender: str | None = None, reason: int = PURCHASE
) -> TxReceipt:
    return ledger.transact("issue", to, amount, ref, reason, RULE, sender=sender or ledger.actors.partner)


def item_refs(count: int) -> list[bytes]:
    """A fresh order reference for each of ``count`` batch items."""
    return [random_ref() for _ in range(count)]


def issue_batch(
    ledger: Ledger,
    recipients: list[str],
    amounts: list[int],
    refs: list[bytes] | None = None,
    *,
    sender: str | None = None,
    reason: int = PURCHASE,
) -> TxReceipt:
    """``issueBatch`` of the items (``refs``: their order references, fresh ones unless given)."""
    refs = item_refs(len(recipients)) if refs is None else refs
    return ledger.transact(
        "issueBatch", recipients, amounts, refs, reason, RULE, sender=sender or ledger.actors.partner
    )


def partner(ledger: Ledger, partner_id: int) -> dict[str, Any]:
    return partner_view(ledger, partner_id)


def cut_allowance_to(ledger: Ledger, partner_id: int, allowance: int) -> None:
    """Brings the partner's remaining allowance down to ``allowance`` (the admin cuts by a delta)."""
    remaining = partner(ledger, partner_id)["allowance"]
    assert remaining >= allowance
    if remaining > allowance:
        ledger.transact(
            "decreasePartnerAllowance", partner_id, remaining - allowance, sender=ledger.actors.admin
        )
    assert partner(ledger, partner_id)["allowance"] == allowance


def top_up_allowance_to(ledger: Ledger, partner_id: int, allowance: int) -> None:
    """Raises the partner's remaining allowance to ``allowance`` (the admin tops up by a delta)."""
    remaining = partner(ledger, partner_id)["allowance"]
    assert remaining <= allowance
    if remaining < allowance:
        ledger.transact(
            "increasePartnerAllowance", partner_id, allowance - remaining, sender=ledger.actors.admin
        )
    assert partner(ledger, partner_id)["allowance"] == allowance


Refs = tuple[tuple[int, bytes], ...]  # (partner id, reference) pairs


def snapshot_state(ledger: Ledger, *accounts: str, refs: Refs = ()) -> dict[str, Any]:
    """What an issuance could change: counters, the ledger chain, partner records, balances, references."""
    return {
        "ledgerSequence": ledger.call("ledgerSequence"),
        "ledgerHead": ledger.call("ledgerHead"),
        "totalIssued": ledger.call("totalIssued"),
        "outstandingSupply": ledger.call("outstandingSupply"),
        "totalExpired": ledger.call("totalExpired"),
        "epochSupply": ledger.call("epochSupply", ledger.call("currentEpoch")),
        "partnerIds": ledger.call("partnerIds"),
        "partners": [ledger.call("partner", pid) for pid in ledger.call("partnerIds")],
        "balances": [ledger.call("balanceOf", account) for account in accounts],
        "refs": [ledger.call("referenceUsed", pid, ref) for pid, ref in refs],
    }


def assert_rejected(
    ledger: Ledger,
    send: Callable[[], Any],
    error: str,
    *args: Any,
    accounts: tuple[str, ...] = (),
    refs: Refs = (),
) -> None:
    """``send()`` reverts with exactly ``error(*args)`` and changes nothing."""
    before = snapshot_state(ledger, *accounts, refs=refs)
    with pytest.raises(ContractRevert) as excinfo:
        send()
    expect_revert(excinfo, error, *args)
    assert snapshot_state(ledger, *accounts, refs=refs) == before


def view_revert(ledger: Ledger, fn: str, *args: Any) -> ContractRevert:
    """The decoded custom error of a reverting view call."""
    with pytest.raises((ContractCustomError, TransactionFailed)) as excinfo:  # anvil, eth-tester
        ledger.call(fn, *args)
    revert = ledger.decoder.from_exception(excinfo.value)
    assert revert is not None, excinfo.value
    return revert


def logs(ledger: Ledger, receipt: TxReceipt) -> list[tuple[str, dict[str, Any]]]:
    """The receipt's events from the ledger, in log order, as ``(name, args)``."""
    return [(event["event"], event["args"]) for event in ledger.events(receipt)]


def chained_head(ledger: Ledger, head: bytes, receipt: TxReceipt) -> bytes:
    """``head`` extended by the receipt's ledger entries (events with a ``seq``), as ILoyaltyLedger specifies:
    entryHash = keccak256(topic0 ‖ topic1 ‖ … ‖ data), head = keccak256(head ‖ entryHash)."""
    for event in ledger.events(receipt):
        if "seq" in event["args"]:
            log = event["log"]
            entry_hash = Web3.keccak(b"".join(bytes(topic) for topic in log["topics"]) + bytes(log["data"]))
            head = bytes(Web3.keccak(bytes(head) + bytes(entry_hash)))
    return head


# --------------------------------------------------------------------------- single issue


def test_issue_credits_the_current_epoch_and_records_one_ledger_entry(ledger: Ledger) -> None:
    ledger.node.advance_time(2 * EPOCH + 1)
    assert ledger.call("currentEpoch") == 2
    to, ref = fresh_address(), random_ref()
    seq, head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")

    receipt = issue(ledger, to, 250, ref, reason=BIRTHDAY)

    assert logs(ledger, receipt) == [
        ("Transfer", {"from": ZERO, "to": to, "value": 250}),
        (
            "PointsIssued",
            {
                "partnerId": ACTIVE,
                "to": to,
                "seq": seq + 1,
                "epoch": 2,
                "amount": 250,
                "ref": ref,
                "reason": BIRTHDAY,
                "ruleHash": RULE,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    assert ledger.call("ledgerSequence") == seq + 1
    assert ledger.call("ledgerHead") == chained_head(ledger, head, receipt)
    assert ledger.call("balanceOf", to) == 250
    assert ledger.call("balanceOfAtEpoch", 2, to) == 250
    assert ledger.call("liveBalances", to) == [[2], [250]]
    assert ledger.call("epochSupply", 2) == 250
    assert ledger.call("epochSupply", 0) == 0
    assert ledger.call("totalIssued") == 250
    assert ledger.call("outstandingSupply") == 250
    assert ledger.call("totalSupply") == 250
    assert partner(ledger, ACTIVE) == {
        "partnerId": ACTIVE,
        "operator": ledger.actors.partner,
        "settlement": ledger.actors.partner,
        "status": STATUS_ACTIVE,
        "canIssue": True,
        "canAccept": True,
        "allowance": ALLOWANCE - 250,
        "issued": 250,
        "redeemed": 0,
        "issuedValue": 250 * SETTLEMENT_VALUE,
        "redeemedValue": 0,
        "reversed": 0,
        "refunded": 0,
        "reversedValue": 0,
        "refundedValue": 0,
        "settledPoints": 0,
        "settledValue": 0,
    }
    assert ledger.call("referenceUsed", ACTIVE, ref) is True
    assert ledger.call("referenceUsed", ISSUE_ONLY, ref) is False


def test_issues_accumulate_per_epoch_and_per_partner(ledger: Ledger) -> None:
    to = fresh_address()
    seq = ledger.call("ledgerSequence")
    issue(ledger, to, 10, random_ref())
    issue(ledger, to, 5, random_ref(), sender=ledger.actors.issue_only)
    ledger.node.advance_time(EPOCH)
    issue(ledger, to, 7, random_ref())

    assert ledger.call("liveBalances", to) == [[0, 1], [15, 7]]
    assert ledger.call("balanceOf", to) == 22
    assert (ledger.call("epochSupply", 0), ledger.call("epochSupply", 1)) == (15, 7)
    assert ledger.call("totalIssued") == ledger.call("outstandingSupply") == 22
    active, issue_only = partner(ledger, ACTIVE), partner(ledger, ISSUE_ONLY)
    assert (active["issued"], active["allowance"]) == (17, ALLOWANCE - 17)
    assert (issue_only["issued"], issue_only["allowance"]) == (5, ALLOWANCE - 5)
    assert ledger.call("ledgerSequence") == seq + 3


# --------------------------------------------------------------------------- batch issue


def test_issue_batch_records_a_header_entry_then_one_entry_per_recipient(ledger: Ledger) -> None:
    """The header's reference is the Merkle root of the items (recipient, amount, item reference), in item
    order, which the contract computes and returns; each item's entry carries its order reference."""
    ledger.node.advance_time(EPOCH)
    recipients = [fresh_address() for _ in range(3)]
    amounts = [10, 20, 30]
    refs = item_refs(3)
    root = batch_root(recipients, amounts, refs)
    seq, head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")
    returned = ledger.contract.functions.issueBatch(recipients, amounts, refs, BIRTHDAY, RULE).call(
        {"from": ledger.actors.partner}
    )
    assert returned == root

    receipt = issue_batch(ledger, recipients, amounts, refs, reason=BIRTHDAY)

    expected: list[tuple[str, dict[str, Any]]] = [
        (
            "PointsBatchIssued",
            {
                "partnerId": ACTIVE,
                "seq": seq + 1,
                "epoch": 1,
                "ref": root,
                "reason": BIRTHDAY,
                "ruleHash": RULE,
                "count": 3,
                "total": 60,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    for i, (to, amount, item_ref) in enumerate(zip(recipients, amounts, refs, strict=True)):
        expected += [
            ("Transfer", {"from": ZERO, "to": to, "value": amount}),
            ("PointsIssuedInBatch", {"to": to, "seq": seq + 2 + i, "amount": amount, "itemRef": item_ref}),
        ]
    assert logs(ledger, receipt) == expected
    assert ledger.call("ledgerSequence") == seq + 4
    assert ledger.call("ledgerHead") == chained_head(ledger, head, receipt)
    assert [ledger.call("balanceOfAtEpoch", 1, to) for to in recipients] == amounts
    assert ledger.call("epochSupply", 1) == 60
    assert ledger.call("totalIssued") == ledger.call("outstandingSupply") == ledger.call("totalSupply") == 60
    assert (partner(ledger, ACTIVE)["issued"], partner(ledger, ACTIVE)["allowance"]) == (60, ALLOWANCE - 60)
    assert (partner(ledger, ACTIVE)["issuedValue"]) == 60 * SETTLEMENT_VALUE
    assert ledger.call("referenceUsed", ACTIVE, root) is True
    # the item references are not references of the partner's: only the batch's root is
    assert [ledger.call("referenceUsed", ACTIVE, item_ref) for item_ref in refs] == [False] * 3


def test_the_batch_root_depends_on_every_field_of_every_item_and_on_their_order(ledger: Ledger) -> None:
    """Leaves in item order, not sorted; nodes hash their two children as a sorted pair (OpenZeppelin's
    MerkleProof), so two sibling leaves swapped keep the root, while any other order makes another."""
    a, b, c = (fresh_address() for _ in range(3))
    refs = item_refs(3)
    recipients, amounts = [a, b, c], [1, 2, 3]
    root = batch_root(recipients, amounts, refs)
    assert batch_root([c, b, a], [3, 2, 1], refs[::-1]) != root
    assert batch_root([b, a, c], [2, 1, 3], [refs[1], refs[0], refs[2]]) == root  # siblings
    assert batch_root([a, a, c], amounts, refs) != root
    assert batch_root(recipients, [1, 2, 4], refs) != root
    assert batch_root(recipients, amounts, [refs[0], random_ref(), refs[2]]) != root
    for order in ([0, 1, 2], [2, 1, 0]):
        items = [recipients[i] for i in order], [amounts[i] for i in order], [refs[i] for i in order]
        receipt = issue_batch(ledger, *items)
        assert ledger.events(receipt, "PointsBatchIssued")[0]["args"]["ref"] == batch_root(*items)


def test_a_batch_may_name_a_recipient_twice_and_credits_the_sum(ledger: Ledger) -> None:
    twice, once = fresh_address(), fresh_address()
    seq, refs = ledger.call("ledgerSequence"), item_refs(3)
    receipt = issue_batch(ledger, [twice, once, twice], [1, 2, 3], refs)

    items = [event["args"] for event in ledger.events(receipt, "PointsIssuedInBatch")]
    assert items == [
        {"to": twice, "seq": seq + 2, "amount": 1, "itemRef": refs[0]},
        {"to": once, "seq": seq + 3, "amount": 2, "itemRef": refs[1]},
        {"to": twice, "seq": seq + 4, "amount": 3, "itemRef": refs[2]},
    ]
    assert ledger.events(receipt, "PointsBatchIssued")[0]["args"]["total"] == 6
    assert ledger.call("balanceOf", twice) == 4
    assert ledger.call("balanceOf", once) == 2
    assert ledger.call("liveBalances", twice) == [[0], [4]]


def test_a_batch_of_one_is_a_header_and_one_item(ledger: Ledger) -> None:
    """A tree of one item: its root is the item's leaf."""
    to, item_ref = fresh_address(), random_ref()
    receipt = issue_batch(ledger, [to], [1], [item_ref])
    names = [name for name, _ in logs(ledger, receipt)]
    assert names == ["PointsBatchIssued", "Transfer", "PointsIssuedInBatch"]
    assert ledger.events(receipt, "PointsBatchIssued")[0]["args"]["ref"] == leaf_hash(to, 1, item_ref)
    assert ledger.call("balanceOf", to) == 1


def test_expired_points_in_a_reused_bucket_are_expired_before_an_issue(ledger: Ledger) -> None:
    """Epoch VALIDITY reuses epoch 0's bucket: its expired points get their own entry first."""
    holder = fresh_address()
    issue(ledger, holder, 5, random_ref())
    ledger.node.advance_time(VALIDITY * EPOCH)
    ref = random_ref()
    seq, head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")

    receipt = issue(ledger, holder, 8, ref)

    assert logs(ledger, receipt) == [
        ("Transfer", {"from": holder, "to": ZERO, "value": 5}),
        ("PointsExpired", {"account": holder, "seq": seq + 1, "epoch": 0, "amount": 5}),
        ("Transfer", {"from": ZERO, "to": holder, "value": 8}),
        (
            "PointsIssued",
            {
                "partnerId": ACTIVE,
                "to": holder,
                "seq": seq + 2,
                "epoch": VALIDITY,
                "amount": 8,
                "ref": ref,
                "reason": PURCHASE,
                "ruleHash": RULE,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    assert ledger.call("ledgerHead") == chained_head(ledger, head, receipt)
    assert ledger.call("liveBalances", holder) == [[VALIDITY], [8]]
    assert (ledger.call("totalExpired"), ledger.call("pendingExpiry")) == (5, 0)


def test_a_batch_expires_reused_buckets_before_its_header_so_its_items_are_consecutive(
    ledger: Ledger,
) -> None:
    holder, other = fresh_address(), fresh_address()
    issue(ledger, holder, 5, random_ref())
    ledger.node.advance_time(VALIDITY * EPOCH)
    refs = item_refs(3)
    seq, head = ledger.call("ledgerSequence"), ledger.call("ledgerHead")

    receipt = issue_batch(ledger, [other, holder, holder], [1, 2, 3], refs)

    assert logs(ledger, receipt) == [
        ("Transfer", {"from": holder, "to": ZERO, "value": 5}),
        ("PointsExpired", {"account": holder, "seq": seq + 1, "epoch": 0, "amount": 5}),
        (
            "PointsBatchIssued",
            {
                "partnerId": ACTIVE,
                "seq": seq + 2,
                "epoch": VALIDITY,
                "ref": batch_root([other, holder, holder], [1, 2, 3], refs),
                "reason": PURCHASE,
                "ruleHash": RULE,
                "count": 3,
                "total": 6,
                "value": SETTLEMENT_VALUE,
            },
        ),
        ("Transfer", {"from": ZERO, "to": other, "value": 1}),
        ("PointsIssuedInBatch", {"to": other, "seq": seq + 3, "amount": 1, "itemRef": refs[0]}),
        ("Transfer", {"from": ZERO, "to": holder, "value": 2}),
        ("PointsIssuedInBatch", {"to": holder, "seq": seq + 4, "amount": 2, "itemRef": refs[1]}),
        ("Transfer", {"from": ZERO, "to": holder, "value": 3}),
        ("PointsIssuedInBatch", {"to": holder, "seq": seq + 5, "amount": 3, "itemRef": refs[2]}),
    ]
    assert ledger.call("ledgerHead") == chained_head(ledger, head, receipt)
    assert ledger.call("liveBalances", holder) == [[VALIDITY], [5]]
    assert (ledger.call("totalExpired"), ledger.call("pendingExpiry")) == (5, 0)


@pytest.mark.parametrize(("amounts", "references"), [(1, 0), (0, 1), (1, 1)])
def test_batch_length_mismatch_is_checked_before_emptiness(
    ledger: Ledger, amounts: int, references: int
) -> None:
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, [], [1] * amounts, item_refs(references)),
        "LedgerBatchLengthMismatch",
        0,
        amounts,
        references,
    )


@pytest.mark.parametrize(
    ("recipients", "amounts", "references"),
    [(2, 3, 2), (3, 2, 3), (1, 0, 1), (2, 2, 3), (2, 2, 1), (1, 1, 0)],
)
def test_issue_batch_needs_one_amount_and_one_item_reference_per_recipient(
    ledger: Ledger, recipients: int, amounts: int, references: int
) -> None:
    accounts = tuple(fresh_address() for _ in range(recipients))
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, list(accounts), [5] * amounts, item_refs(references)),
        "LedgerBatchLengthMismatch",
        recipients,
        amounts,
        references,
        accounts=accounts,
    )


def test_an_empty_batch_is_rejected(ledger: Ledger) -> None:
    assert_rejected(ledger, lambda: issue_batch(ledger, [], [], []), "LedgerEmptyBatch")


# --------------------------------------------------------------------------- the allowance


def test_a_single_issue_above_the_remaining_allowance_is_rejected(ledger: Ledger) -> None:
    to, ref = fresh_address(), random_ref()
    cut_allowance_to(ledger, ACTIVE, 100)
    issue(ledger, to, 60, random_ref())

    assert_rejected(
        ledger,
        lambda: issue(ledger, to, 41, ref),
        "LedgerAllowanceExceeded",
        ACTIVE,
        40,
        41,
        accounts=(to,),
        refs=((ACTIVE, ref),),
    )

    issue(ledger, to, 40, ref)  # exactly the rest; the rejected attempt left `ref` unused
    assert partner(ledger, ACTIVE)["allowance"] == 0
    assert partner(ledger, ACTIVE)["issued"] == 100
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, 1, random_ref()),
        "LedgerAllowanceExceeded",
        ACTIVE,
        0,
        1,
        accounts=(to,),
    )


def test_the_default_allowance_is_exhausted_exactly(ledger: Ledger) -> None:
    to = fresh_address()
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, ALLOWANCE + 1, random_ref()),
        "LedgerAllowanceExceeded",
        ACTIVE,
        ALLOWANCE,
        ALLOWANCE + 1,
        accounts=(to,),
    )
    issue(ledger, to, ALLOWANCE, random_ref())
    assert partner(ledger, ACTIVE)["allowance"] == 0


def test_a_batch_is_checked_against_the_allowance_by_its_total(ledger: Ledger) -> None:
    """Each item fits the allowance, their sum does not: the whole batch is rejected."""
    recipients, refs = [fresh_address(), fresh_address()], item_refs(2)
    cut_allowance_to(ledger, ACTIVE, 100)
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, [60, 41], refs),
        "LedgerAllowanceExceeded",
        ACTIVE,
        100,
        101,
        accounts=tuple(recipients),
        refs=((ACTIVE, batch_root(recipients, [60, 41], refs)),),
    )
    issue_batch(ledger, recipients, [60, 40], refs)
    assert partner(ledger, ACTIVE)["allowance"] == 0


def test_after_the_admin_tops_up_the_allowance_the_partner_can_issue_again(ledger: Ledger) -> None:
    to = fresh_address()
    cut_allowance_to(ledger, ACTIVE, 10)
    issue(ledger, to, 10, random_ref())
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, 1, random_ref()),
        "LedgerAllowanceExceeded",
        ACTIVE,
        0,
        1,
        accounts=(to,),
    )

    receipt = ledger.transact("increasePartnerAllowance", ACTIVE, 50, sender=ledger.actors.admin)
    assert ledger.events(receipt, "PartnerAllowanceChanged")[0]["args"] == {
        "partnerId": ACTIVE,
        "seq": ledger.call("ledgerSequence"),
        "previousAllowance": 0,
        "allowance": 50,
    }
    issue(ledger, to, 30, random_ref())
    issue_batch(ledger, [to], [20])
    assert ledger.call("balanceOf", to) == 60
    assert (partner(ledger, ACTIVE)["allowance"], partner(ledger, ACTIVE)["issued"]) == (0, 60)


def test_the_allowance_is_per_partner(ledger: Ledger) -> None:
    cut_allowance_to(ledger, ACTIVE, 0)
    to = fresh_address()
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, 1, random_ref()),
        "LedgerAllowanceExceeded",
        ACTIVE,
        0,
        1,
        accounts=(to,),
    )
    issue(ledger, to, 1, random_ref(), sender=ledger.actors.issue_only)
    assert partner(ledger, ISSUE_ONLY)["allowance"] == ALLOWANCE - 1


# --------------------------------------------------------------------------- references


def test_a_partner_uses_each_reference_once(ledger: Ledger) -> None:
    ref = random_ref()
    issue(ledger, fresh_address(), 5, ref)
    assert ledger.call("referenceUsed", ACTIVE, ref) is True
    to = fresh_address()
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, 5, ref),
        "LedgerReferenceUsed",
        ACTIVE,
        ref,
        accounts=(to,),
        refs=((ACTIVE, ref),),
    )


def test_the_same_batch_items_are_issued_once(ledger: Ledger) -> None:
    """A batch's reference is the root of its items: sent again (a retry), the same items are refused under
    that root, whatever the reason and rule."""
    recipients, amounts, refs = [fresh_address(), fresh_address()], [5, 6], item_refs(2)
    root = batch_root(recipients, amounts, refs)
    issue_batch(ledger, recipients, amounts, refs)
    assert ledger.call("referenceUsed", ACTIVE, root) is True
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, amounts, refs, reason=BIRTHDAY),
        "LedgerReferenceUsed",
        ACTIVE,
        root,
        accounts=tuple(recipients),
        refs=((ACTIVE, root),),
    )
    assert [ledger.call("balanceOf", to) for to in recipients] == amounts


def test_single_and_batch_issues_share_one_namespace_of_references(ledger: Ledger) -> None:
    """A single issue under a batch's root is refused, and a batch whose root a single issue already used
    is refused."""
    recipients, amounts, refs = [fresh_address(), fresh_address()], [5, 6], item_refs(2)
    root = batch_root(recipients, amounts, refs)
    issue_batch(ledger, recipients, amounts, refs)
    to = fresh_address()
    assert_rejected(
        ledger, lambda: issue(ledger, to, 5, root), "LedgerReferenceUsed", ACTIVE, root, accounts=(to,)
    )

    later = item_refs(2)
    later_root = batch_root(recipients, amounts, later)
    issue(ledger, to, 5, later_root)
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, amounts, later),
        "LedgerReferenceUsed",
        ACTIVE,
        later_root,
        accounts=tuple(recipients),
    )


def test_a_batch_is_one_reference_as_a_whole_not_per_item(ledger: Ledger) -> None:
    """Only the root is a reference (the contract keeps no item reference): the same items in an order
    with another root, or an item reference again with other items, are another batch; two sibling items
    swapped are the same root, refused."""
    recipients, amounts, refs = [fresh_address() for _ in range(3)], [5, 6, 7], item_refs(3)
    issue_batch(ledger, recipients, amounts, refs)
    issue_batch(ledger, recipients[::-1], amounts[::-1], refs[::-1])
    issue_batch(ledger, [recipients[0]], [amounts[0]], [refs[0]])
    assert [ledger.call("balanceOf", to) for to in recipients] == [15, 12, 14]
    for root in (
        batch_root(recipients, amounts, refs),
        batch_root(recipients[::-1], amounts[::-1], refs[::-1]),
        leaf_hash(recipients[0], amounts[0], refs[0]),
    ):
        assert ledger.call("referenceUsed", ACTIVE, root) is True
    swapped = [1, 0, 2]
    items = [recipients[i] for i in swapped], [amounts[i] for i in swapped], [refs[i] for i in swapped]
    root = batch_root(recipients, amounts, refs)
    assert batch_root(*items) == root
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, *items),
        "LedgerReferenceUsed",
        ACTIVE,
        root,
        accounts=tuple(recipients),
    )


def test_redemption_references_are_a_separate_namespace(ledger: Ledger) -> None:
    customer, ref = new_customer(), random_ref()
    issue(ledger, customer.address, 10, random_ref())
    ledger.redeem(customer, 4, ref=ref)
    assert ledger.call("redemptionReferenceUsed", ACTIVE, ref) is True
    assert ledger.call("referenceUsed", ACTIVE, ref) is False
    issue(ledger, customer.address, 1, ref)
    assert ledger.call("referenceUsed", ACTIVE, ref) is True


def test_another_partner_may_use_the_same_reference_and_issue_the_same_batch(ledger: Ledger) -> None:
    ref = random_ref()
    issue(ledger, fresh_address(), 5, ref)
    to = fresh_address()
    issue(ledger, to, 7, ref, sender=ledger.actors.issue_only)
    assert ledger.call("balanceOf", to) == 7
    assert ledger.call("referenceUsed", ISSUE_ONLY, ref) is True

    recipients, amounts, refs = [fresh_address(), fresh_address()], [1, 2], item_refs(2)
    root = batch_root(recipients, amounts, refs)
    issue_batch(ledger, recipients, amounts, refs)
    assert ledger.call("referenceUsed", ISSUE_ONLY, root) is False
    issue_batch(ledger, recipients, amounts, refs, sender=ledger.actors.issue_only)
    assert ledger.call("referenceUsed", ISSUE_ONLY, root) is True
    assert [ledger.call("balanceOf", r) for r in recipients] == [2, 4]


# --------------------------------------------------------------------------- amounts and recipients


def test_zero_points_cannot_be_issued(ledger: Ledger) -> None:
    to, ref = fresh_address(), random_ref()
    assert_rejected(
        ledger, lambda: issue(ledger, to, 0, ref), "LedgerZeroAmount", accounts=(to,), refs=((ACTIVE, ref),)
    )


def test_a_batch_with_a_zero_item_is_rejected_whole(ledger: Ledger) -> None:
    recipients, refs = [fresh_address(), fresh_address()], item_refs(2)
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, [5, 0], refs),
        "LedgerZeroAmount",
        accounts=tuple(recipients),
        refs=((ACTIVE, batch_root(recipients, [5, 0], refs)),),
    )


def test_max_amount_is_two_to_the_64_minus_one(ledger: Ledger) -> None:
    assert ledger.call("MAX_AMOUNT") == MAX_AMOUNT


def test_an_amount_above_max_amount_cannot_be_issued(ledger: Ledger) -> None:
    to, ref = fresh_address(), random_ref()
    top_up_allowance_to(ledger, ACTIVE, MAX_ALLOWANCE)
    assert_rejected(
        ledger,
        lambda: issue(ledger, to, MAX_AMOUNT + 1, ref),
        "LedgerAmountTooLarge",
        MAX_AMOUNT + 1,
        MAX_AMOUNT,
        accounts=(to,),
        refs=((ACTIVE, ref),),
    )
    issue(ledger, to, MAX_AMOUNT, ref)
    assert ledger.call("balanceOf", to) == MAX_AMOUNT


def test_a_batch_item_above_max_amount_is_rejected_whole(ledger: Ledger) -> None:
    """MAX_AMOUNT bounds each item; the batch's total is bounded by the allowance (at most MAX_ALLOWANCE)."""
    recipients, refs = [fresh_address(), fresh_address()], item_refs(2)
    top_up_allowance_to(ledger, ACTIVE, MAX_ALLOWANCE)
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, [1, 2**64], refs),
        "LedgerAmountTooLarge",
        2**64,
        MAX_AMOUNT,
        accounts=tuple(recipients),
        refs=((ACTIVE, batch_root(recipients, [1, 2**64], refs)),),
    )
    # every item within MAX_AMOUNT, the total above the allowance: refused by the allowance
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, recipients, [MAX_AMOUNT, 1], refs),
        "LedgerAllowanceExceeded",
        ACTIVE,
        MAX_ALLOWANCE,
        MAX_AMOUNT + 1,
        accounts=tuple(recipients),
        refs=((ACTIVE, batch_root(recipients, [MAX_AMOUNT, 1], refs)),),
    )
    issue_batch(ledger, recipients, [MAX_AMOUNT - 1, 1], refs)  # the whole allowance in one batch
    assert [ledger.call("balanceOf", to) for to in recipients] == [MAX_AMOUNT - 1, 1]
    assert (partner(ledger, ACTIVE)["allowance"], partner(ledger, ACTIVE)["issued"]) == (0, MAX_ALLOWANCE)


def test_points_cannot_be_issued_to_the_zero_address(ledger: Ledger) -> None:
    ref = random_ref()
    assert_rejected(
        ledger, lambda: issue(ledger, ZERO, 5, ref), "ERC20InvalidReceiver", ZERO, refs=((ACTIVE, ref),)
    )


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_batch_naming_the_zero_address_anywhere_issues_nothing(ledger: Ledger, position: int) -> None:
    recipients, refs = [fresh_address(), fresh_address()], item_refs(3)
    named = list(recipients)
    named.insert(position, ZERO)
    assert_rejected(
        ledger,
        lambda: issue_batch(ledger, named, [1, 2, 3], refs),
        "ERC20InvalidReceiver",
        ZERO,
        accounts=tuple(recipients),
        refs=((ACTIVE, batch_root(named, [1, 2, 3], refs)),),
    )
    assert ledger.call("totalIssued") == 0


# --------------------------------------------------------------------------- registering partners


def test_a_registered_partner_is_recorded_and_can_issue_at_once(ledger: Ledger) -> None:
    operator, settlement, customer = ledger.actors.stranger, fresh_address(), fresh_address()
    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact(
        "registerPartner", 9, operator, settlement, True, False, MAX_ALLOWANCE, sender=ledger.actors.admin
    )
    assert logs(ledger, receipt) == [
        (
            "PartnerRegistered",
            {
                "partnerId": 9,
                "operator": operator,
                "seq": seq + 1,
                "settlement": settlement,
                "canIssue": True,
                "canAccept": False,
                "allowance": MAX_ALLOWANCE,
            },
        )
    ]
    assert ledger.call("partnerIds") == [ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY, 9]
    assert ledger.call("partnerIdOf", operator) == 9

    issue(ledger, customer, 3, random_ref(), sender=operator)
    assert partner(ledger, 9) == {
        "partnerId": 9,
        "operator": operator,
        "settlement": settlement,
        "status": STATUS_ACTIVE,
        "canIssue": True,
        "canAccept": False,
        "allowance": MAX_ALLOWANCE - 3,
        "issued": 3,
        "redeemed": 0,
        "issuedValue": 3 * SETTLEMENT_VALUE,
        "redeemedValue": 0,
        "reversed": 0,
        "refunded": 0,
        "reversedValue": 0,
        "refundedValue": 0,
        "settledPoints": 0,
        "settledValue": 0,
    }


Arguments = Callable[[Ledger], tuple[Any, ...]]
#: (registerPartner arguments, expected error, its arguments), all given the ledger.
REGISTRATION_ERRORS: dict[str, tuple[Arguments, str, Arguments]] = {
    "partner id 0": (
        lambda lg: (0, lg.actors.stranger, fresh_address(), True, True, 1),
        "LedgerInvalidPartnerId",
        lambda lg: (0,),
    ),
    "partner id taken": (
        lambda lg: (ISSUE_ONLY, lg.actors.stranger, fresh_address(), True, True, 1),
        "LedgerPartnerExists",
        lambda lg: (ISSUE_ONLY,),
    ),
    "zero operator": (
        lambda lg: (9, ZERO, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (ZERO,),
    ),
    "operator of an active partner": (
        lambda lg: (9, lg.actors.partner, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (lg.actors.partner,),
    ),
    "operator of a suspended partner": (
        lambda lg: (9, lg.actors.suspended, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (lg.actors.suspended,),
    ),
    "operator holding the admin role (admin and partner keys are separate)": (
        lambda lg: (9, lg.actors.admin, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (lg.actors.admin,),
    ),
    "operator holding the treasury role": (
        lambda lg: (9, lg.actors.treasury, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (lg.actors.treasury,),
    ),
    "operator holding the pauser role": (
        lambda lg: (9, lg.actors.pauser, fresh_address(), True, True, 1),
        "LedgerInvalidOperator",
        lambda lg: (lg.actors.pauser,),
    ),
    "zero settlement": (
        lambda lg: (9, lg.actors.stranger, ZERO, True, True, 1),
        "LedgerInvalidSettlementAddress",
        lambda lg: (ZERO,),
    ),
    "allowance above 2**64 - 1": (
        lambda lg: (9, lg.actors.stranger, fresh_address(), True, True, 2**64),
        "LedgerAmountTooLarge",
        lambda lg: (2**64, MAX_ALLOWANCE),
    ),
}


@pytest.mark.parametrize("case", REGISTRATION_ERRORS)
def test_register_partner_validates_its_arguments(ledger: Ledger, case: str) -> None:
    arguments, error, error_args = REGISTRATION_ERRORS[case]
    args = arguments(ledger)
    assert_rejected(
        ledger,
        lambda: ledger.transact("registerPartner", *args, sender=ledger.actors.admin),
        error,
        *error_args(ledger),
        accounts=(args[1],),
    )
    assert ledger.call("partnerIdOf", ledger.actors.stranger) == 0


def test_max_allowance_is_two_to_the_64_minus_one(ledger: Ledger) -> None:
    assert ledger.call("MAX_ALLOWANCE") == MAX_ALLOWANCE


#: (function, partner id, amount, expected error, its arguments) for allowance changes by the admin.
ALLOWANCE_ERRORS: dict[str, tuple[str, int, int, str, tuple[Any, ...]]] = {
    "top-up above MAX_ALLOWANCE": (
        "increasePartnerAllowance",
        ACTIVE,
        MAX_ALLOWANCE - ALLOWANCE + 1,
        "LedgerAmountTooLarge",
        (MAX_ALLOWANCE - ALLOWANCE + 1, MAX_ALLOWANCE - ALLOWANCE),
    ),
    "top-up of zero": ("increasePartnerAllowance", ACTIVE, 0, "LedgerZeroAmount", ()),
    "top-up of an unknown partner": ("increasePartnerAllowance", 9, 1, "LedgerPartnerNotFound", (9,)),
    "cut below zero": (
        "decreasePartnerAllowance",
        ACTIVE,
        ALLOWANCE + 1,
        "LedgerAllowanceExceeded",
        (ACTIVE, ALLOWANCE, ALLOWANCE + 1),
    ),
    "cut of zero": ("decreasePartnerAllowance", ACTIVE, 0, "LedgerZeroAmount", ()),
    "cut of an unknown partner": ("decreasePartnerAllowance", 9, 1, "LedgerPartnerNotFound", (9,)),
}


@pytest.mark.parametrize("case", ALLOWANCE_ERRORS)
def test_allowance_changes_validate_their_arguments(ledger: Ledger, case: str) -> None:
    fn, partner_id, amount, error, error_args = ALLOWANCE_ERRORS[case]
    assert_rejected(
        ledger,
        lambda: ledger.transact(fn, partner_id, amount, sender=ledger.actors.admin),
        error,
        *error_args,
    )


def test_allowance_changes_are_deltas_recorded_with_the_previous_allowance(ledger: Ledger) -> None:
    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact(
        "increasePartnerAllowance", ACTIVE, MAX_ALLOWANCE - ALLOWANCE, sender=ledger.actors.admin
    )
    assert logs(ledger, receipt) == [
        (
            "PartnerAllowanceChanged",
            {"partnerId": ACTIVE, "seq": seq + 1, "previousAllowance": ALLOWANCE, "allowance": MAX_ALLOWANCE},
        )
    ]
    receipt = ledger.transact("decreasePartnerAllowance", ACTIVE, 7, sender=ledger.actors.treasury)
    assert logs(ledger, receipt) == [
        (
            "PartnerAllowanceChanged",
            {
                "partnerId": ACTIVE,
                "seq": seq + 2,
                "previousAllowance": MAX_ALLOWANCE,
                "allowance": MAX_ALLOWANCE - 7,
            },
        )
    ]
    assert partner(ledger, ACTIVE)["allowance"] == MAX_ALLOWANCE - 7


def test_a_cut_after_the_partner_spent_fails_instead_of_overwriting(ledger: Ledger) -> None:
    """The admin means to take the remaining 100 away; the partner spends 60 first: the cut of 100 fails,
    so the partner cannot spend the old allowance and keep a fresh one (no blind overwrite)."""
    cut_allowance_to(ledger, ACTIVE, 100)
    issue(ledger, fresh_address(), 60, random_ref())
    assert_rejected(
        ledger,
        lambda: ledger.transact("decreasePartnerAllowance", ACTIVE, 100, sender=ledger.actors.admin),
        "LedgerAllowanceExceeded",
        ACTIVE,
        40,
        100,
    )
    ledger.transact("decreasePartnerAllowance", ACTIVE, 40, sender=ledger.actors.admin)
    assert (partner(ledger, ACTIVE)["allowance"], partner(ledger, ACTIVE)["issued"]) == (0, 60)


# --------------------------------------------------------------------------- settlement positions


def test_positions_net_redeemed_against_issued_and_sum_to_zero(ledger: Ledger) -> None:
    """Partner: redeemed - issued (times the settlement value); coalition: issued - redeemed."""
    customer = new_customer()
    issue(ledger, customer.address, 100, random_ref())
    issue(ledger, customer.address, 50, random_ref(), sender=ledger.actors.issue_only)
    ledger.redeem(customer, 70, sender=ledger.actors.accept_only, partner_id=ACCEPT_ONLY)
    ledger.redeem(customer, 20)

    expected = {ACTIVE: 20 - 100, SUSPENDED: 0, ACCEPT_ONLY: 70, ISSUE_ONLY: -50}
    for pid, net in expected.items():
        assert ledger.call("partnerPosition", pid) == [net, net * SETTLEMENT_VALUE]
    assert ledger.call("coalitionPosition") == [60, 60 * SETTLEMENT_VALUE]
    assert ledger.call("outstandingSupply") == 60
    assert (partner(ledger, ACTIVE)["redeemed"], partner(ledger, ACCEPT_ONLY)["redeemed"]) == (20, 70)
    total = sum(ledger.call("partnerPosition", pid)[0] for pid in ledger.call("partnerIds"))
    assert total + ledger.call("coalitionPosition")[0] == 0

    values = [ledger.call("partnerPosition", pid)[1] for pid in ledger.call("partnerIds")]
    assert sum(values) + ledger.call("coalitionPosition")[1] == 0


def entry_values(ledger: Ledger, *receipts: TxReceipt) -> list[int]:
    """The settlement value each issue, batch or redemption entry of ``receipts`` carries."""
    names = ("PointsIssued", "PointsBatchIssued", "PointsRedeemed")
    return [e["args"]["value"] for r in receipts for e in ledger.events(r) if e["event"] in names]


def test_a_settlement_value_change_prices_later_entries_only(ledger: Ledger) -> None:
    """Each issue, batch and redemption entry carries the settlement value in force when it happened."""
    customer = new_customer()
    before = (
        issue(ledger, customer.address, 100, random_ref()),
        ledger.redeem(customer, 70, sender=ledger.actors.accept_only, partner_id=ACCEPT_ONLY),
    )
    assert entry_values(ledger, *before) == [SETTLEMENT_VALUE, SETTLEMENT_VALUE]

    ledger.transact("setSettlementValue", 3, sender=ledger.actors.treasury)

    assert ledger.call("partnerPosition", ACTIVE) == [
        -100,
        -100 * SETTLEMENT_VALUE,
    ]  # history keeps its value
    assert ledger.call("partnerPosition", ACCEPT_ONLY) == [70, 70 * SETTLEMENT_VALUE]
    assert ledger.call("coalitionPosition") == [30, 30 * SETTLEMENT_VALUE]

    after = (
        issue(ledger, customer.address, 6, random_ref()),
        issue_batch(ledger, [customer.address], [4]),
        ledger.redeem(customer, 4, sender=ledger.actors.accept_only, partner_id=ACCEPT_ONLY),
    )
    assert entry_values(ledger, *after) == [3, 3, 3]

    assert ledger.call("partnerPosition", ACTIVE) == [-110, -100 * SETTLEMENT_VALUE - 10 * 3]
    assert ledger.call("partnerPosition", ACCEPT_ONLY) == [74, 70 * SETTLEMENT_VALUE + 4 * 3]
    assert ledger.call("coalitionPosition") == [36, 30 * SETTLEMENT_VALUE + 6 * 3]
    active, acceptor = partner(ledger, ACTIVE), partner(ledger, ACCEPT_ONLY)
    assert (active["issued"], active["issuedValue"]) == (110, 100 * SETTLEMENT_VALUE + 10 * 3)
    assert (acceptor["redeemed"], acceptor["redeemedValue"]) == (74, 70 * SETTLEMENT_VALUE + 4 * 3)
    for field in (0, 1):  # points and value
        total = sum(ledger.call("partnerPosition", pid)[field] for pid in ledger.call("partnerIds"))
        assert total + ledger.call("coalitionPosition")[field] == 0


def test_positions_start_at_zero(ledger: Ledger) -> None:
    for pid in (ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY):
        assert ledger.call("partnerPosition", pid) == [0, 0]
    assert ledger.call("coalitionPosition") == [0, 0]


def test_the_position_of_an_unknown_partner_reverts(ledger: Ledger) -> None:
    revert = view_revert(ledger, "partnerPosition", 9)
    assert (revert.name, revert.arguments) == ("LedgerPartnerNotFound", (9,))


# --------------------------------------------------------------------------- ERC-20 metadata


def test_erc20_metadata(ledger: Ledger) -> None:
    assert ledger.call("name") == "Coalition Points"
    assert ledger.call("symbol") == "PTS"
    assert ledger.call("decimals") == 0
    assert ledger.call("totalSupply") == ledger.call("outstandingSupply") == 0


def test_total_supply_is_the_outstanding_supply_of_live_points(ledger: Ledger) -> None:
    early, late = fresh_address(), fresh_address()
    issue(ledger, early, 40, random_ref())
    ledger.node.advance_time(5 * EPOCH)
    issue_batch(ledger, [late, early], [2, 3])
    assert ledger.call("totalSupply") == ledger.call("outstandingSupply") == 45

    ledger.node.advance_time((VALIDITY - 5) * EPOCH)  # epoch 0 has expired, unswept
    assert ledger.call("currentEpoch") == VALIDITY
    assert ledger.call("totalSupply") == ledger.call("outstandingSupply") == 5
    assert ledger.call("pendingExpiry") == 40
    assert ledger.call("totalIssued") == 45
