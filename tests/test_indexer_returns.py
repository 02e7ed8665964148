"""Returns, refunds and migrations in the mirror: every new entry lands in its typed columns and derived
tables, is linked to what it undoes (a reversal to its issue or batch item, a refund to its redemption, the
parts to their header), and ``reconcile`` is empty after each step; the mirror equals a fresh index, also
after a reorganisation that removes a reversal and a refund.

The contract is driven with its raw web3 functions; the arguments of ``reverseIssuance`` and
``refundRedemption`` are read from the mirror (:meth:`MirrorView.issuance`, :meth:`MirrorView.redemption`),
so the contract itself checks that the mirror keeps every field a return or a refund needs (a wrong item
reference, value, time or proof reverts with ``LedgerIssuanceNotFound``).
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from conftest import (
    ACTIVE,
    EPOCH,
    SETTLEMENT_VALUE,
    VALIDITY,
    AnvilNode,
    Ledger,
    chain_ledger,
    fresh_digests,
    mirror,
    new_customer,
    random_ref,
    table_digests,
)
from indexer import (
    ENTRY_EVENTS,
    AccountEpoch,
    Indexer,
    LedgerEntry,
    MirrorView,
    Tier,
    TierPolicy,
    UndecodableLog,
    decode_logs,
    reconcile,
)

WINDOW = 16
NEW_ENTRIES = {
    "IssuanceReversed",
    "PointsReversed",
    "RedemptionRefunded",
    "PointsRefunded",
    "AccountMigrated",
}
#: Tiers small enough for the scenario's amounts: 100 qualifying points make silver.
TIERS = TierPolicy(thresholds=(("member", 0), ("silver", 100)), qualifying_epochs=VALIDITY)


def assert_reconciled(indexer: Indexer, ledger: Ledger) -> None:
    differences = reconcile(ledger.w3, indexer.engine, ledger.address)
    assert not differences, "\n".join(map(str, differences))


def synced(indexer: Indexer, ledger: Ledger) -> None:
    indexer.sync()
    assert_reconciled(indexer, ledger)


def entries(indexer: Indexer, event: str) -> list[LedgerEntry]:
    with indexer.engine.connect() as conn:
        view = MirrorView(conn, indexer.address)
        rows = list(view.session.scalars(select(LedgerEntry).where(LedgerEntry.event == event)))
        view.session.expunge_all()
    return sorted(rows, key=lambda r: r.seq)


def seq_of(indexer: Indexer, event: str, account: str) -> int:
    """The seq of the last ``event`` entry of ``account``."""
    return [r.seq for r in entries(indexer, event) if r.account == account.lower()][-1]


def held(indexer: Indexer, account: str) -> dict[int, tuple[int, int]]:
    """``account``'s account_epochs rows: epoch -> (held, earned)."""
    with indexer.engine.connect() as conn:
        rows = conn.execute(
            select(AccountEpoch.epoch, AccountEpoch.held, AccountEpoch.earned).where(
                AccountEpoch.account == account.lower()
            )
        ).all()
    return {epoch: (h, e) for epoch, h, e in rows}


def tiers(indexer: Indexer) -> dict[str, tuple[int, str]]:
    with indexer.engine.connect() as conn:
        return {r.account: (r.qualifying_points, r.tier) for r in conn.execute(select(Tier.__table__))}


def reverse(ledger: Ledger, indexer: Indexer, seq: int, amount: int) -> bytes:
    """The active partner reverses ``amount`` points of the issue or batch item ``seq`` (its arguments read
    from the mirror); returns the return reference."""
    with indexer.engine.connect() as conn:
        item = MirrorView(conn, indexer.address).issuance(seq)
    return_ref = random_ref()
    ledger.transact("reverseIssuance", item.as_struct(), amount, return_ref, sender=ledger.actors.partner)
    return return_ref


def refund(ledger: Ledger, indexer: Indexer, seq: int, amount: int) -> bytes:
    """The active partner refunds ``amount`` points of the redemption with part ``seq``."""
    with indexer.engine.connect() as conn:
        redemption = MirrorView(conn, indexer.address).redemption(seq)
    refund_ref = random_ref()
    ledger.transact(
        "refundRedemption", redemption.as_struct(), amount, refund_ref, sender=ledger.actors.partner
    )
    return refund_ref


def migrate(ledger: Ledger, source: LocalAccount, target: LocalAccount) -> None:
    """``migrateAccount`` signed by both accounts (EIP-712 ``Migration``, ``source``'s nonce of key 0),
    submitted by a stranger."""
    nonce = ledger.call("nonces", source.address, 0)
    deadline = ledger.node.timestamp() + 3600
    message = {"from": source.address, "to": target.address, "nonce": nonce, "deadline": deadline}
    domain = {
        "name": "LoyaltyLedger",
        "version": "1",
        "chainId": ledger.w3.eth.chain_id,
        "verifyingContract": ledger.address,
    }
    types = {
        "Migration": [
            {"name": "from", "type": "address"},
            {"name": "to", "type": "address"},
            {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]
    }
    signatures = [
        bytes(key.sign_typed_data(domain_data=domain, message_types=types, message_data=message).signature)
        for key in (source, target)
    ]
    ledger.transact(
        "migrateAccount",
        source.address,
        target.address,
        nonce,
        deadline,
        *signatures,
        sender=ledger.actors.stranger,
    )


def advance_to_epoch(ledger: Ledger, node: AnvilNode, epoch: int) -> None:
    node.advance_time((epoch - ledger.call("currentEpoch")) * EPOCH)
    assert ledger.call("currentEpoch") == epoch


def test_reversals_refunds_migrations_and_a_recovery_are_mirrored(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str, second_database: str
) -> None:
    ledger = anvil_ledger
    client = chain_ledger(ledger, ledger.actors.admin)
    a, b, c, d, e, f = (new_customer() for _ in range(6))
    with mirror(ledger, database, window=WINDOW, tiers=TIERS) as indexer:
        # ---- epoch 0: a single issue and a batch
        ledger.issue(a.address, 100)
        ledger.issue_batch([a.address, b.address, c.address], [40, 50, 60])
        ledger.redeem(b, 45)  # b keeps 5 of its 50
        synced(indexer, ledger)
        assert tiers(indexer)[a.address.lower()] == (140, "silver")

        # ---- a reversal of the single issue (all of it recovered) and of b's batch item (5 of 20)
        single = seq_of(indexer, "PointsIssued", a.address)
        item = seq_of(indexer, "PointsIssuedInBatch", b.address)
        return_a = reverse(ledger, indexer, single, 50)
        return_b = reverse(ledger, indexer, item, 20)
        synced(indexer, ledger)
        reversal_a, reversal_b = entries(indexer, "IssuanceReversed")
        assert (reversal_a.account, reversal_a.return_ref, reversal_a.requested, reversal_a.recovered) == (
            a.address.lower(),
            return_a,
            50,
            50,
        )
        assert (reversal_a.original_seq, reversal_a.epoch, reversal_a.item_ref) == (
            single,
            0,
            reversal_a.ref,
        )
        assert (reversal_b.original_seq, reversal_b.requested, reversal_b.recovered) == (item, 20, 5)
        assert reversal_b.value == SETTLEMENT_VALUE
        parts = entries(indexer, "PointsReversed")
        assert [(p.account, p.epoch, p.amount, p.return_ref, p.batch_seq) for p in parts] == [
            (a.address.lower(), 0, 50, return_a, reversal_a.seq),
            (b.address.lower(), 0, 5, return_b, reversal_b.seq),
        ]
        # balances follow the burns; a returned purchase keeps no qualifying points (taken back or not)
        assert held(indexer, a.address) == {0: (90, 90)}
        assert held(indexer, b.address) == {0: (0, 30)}
        assert tiers(indexer)[a.address.lower()] == (90, "member")
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            partner = view.partner(ACTIVE)
            assert partner is not None
            assert (partner.reversed, partner.reversed_value) == (55, 55 * SETTLEMENT_VALUE)
            assert view.state().total_reversed == 55
            assert [r.seq for r in view.returns_of(single)] == [reversal_a.seq]
            history = {w.entry.seq: w for w in view.wallet_history(b.address)}
            assert (history[item].returned, history[item].recovered, history[item].value) == (
                20,
                5,
                SETTLEMENT_VALUE,
            )
            assert history[item].undone_by == (reversal_b.seq,)

        # ---- refunds: one into a live epoch, one partly into an epoch that expired in between
        advance_to_epoch(ledger, anvil_node, 1)
        ledger.issue(c.address, 70)
        ledger.issue(d.address, 25)
        ledger.redeem(c, 100)  # 60 of epoch 0, 40 of epoch 1
        synced(indexer, ledger)
        redeemed = seq_of(indexer, "PointsRedeemed", c.address) - 1  # the first of its two parts
        refund_live = refund(ledger, indexer, redeemed, 30)  # the newest part first: epoch 1, live
        synced(indexer, ledger)
        advance_to_epoch(ledger, anvil_node, VALIDITY)  # epoch 0 has expired, epoch 1 is live
        refund_late = refund(ledger, indexer, redeemed, 50)  # 10 more of epoch 1, then 40 of epoch 0
        synced(indexer, ledger)
        first, second = entries(indexer, "RedemptionRefunded")
        assert (first.refund_ref, first.amount, first.restored, first.original_seq) == (
            refund_live,
            30,
            30,
            redeemed,
        )
        assert (second.refund_ref, second.amount, second.restored, second.original_seq) == (
            refund_late,
            50,
            10,
            redeemed,
        )
        refunded = entries(indexer, "PointsRefunded")
        assert [(p.epoch, p.amount, p.batch_seq) for p in refunded] == [
            (1, 30, first.seq),
            (1, 10, second.seq),
            (0, 40, second.seq),
        ]
        (expired,) = [x for x in entries(indexer, "PointsExpired") if x.account == c.address.lower()]
        assert (expired.seq, expired.epoch, expired.amount, expired.batch_seq) == (
            refunded[-1].seq + 1,
            0,
            40,
            second.seq,
        )
        # the expired part never reaches the balance: epoch 0's row keeps what c earned, holds nothing
        assert held(indexer, c.address) == {0: (0, 60), 1: (70, 70)}
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            state = view.state()
            assert (state.total_refunded, state.total_expired) == (80, 40)
            partner = view.partner(ACTIVE)
            assert partner is not None
            assert (partner.refunded, partner.refunded_value) == (80, 80 * SETTLEMENT_VALUE)
            assert view.partner_position(ACTIVE) == client.partner_position(ACTIVE)
            assert view.coalition_position() == client.coalition_position()
            history = {w.entry.seq: w for w in view.wallet_history(c.address)}
            assert (history[redeemed].refunded, history[redeemed].restored) == (80, 40)
            assert history[redeemed].undone_by == (first.seq, second.seq)

        # ---- a migration by both accounts' consent, then the admin's recovery of the new key
        ledger.issue(d.address, 80)
        migrate(ledger, d, e)
        synced(indexer, ledger)
        (migration,) = entries(indexer, "AccountMigrated")
        assert (migration.account, migration.counterparty, migration.amount, migration.recovery) == (
            d.address.lower(),
            e.address.lower(),
            105,
            False,
        )
        moves = [t for t in entries(indexer, "PointsTransferred") if t.batch_seq == migration.seq]
        assert [(t.epoch, t.amount) for t in moves] == [(1, 25), (VALIDITY, 80)]
        # held points move, earned ones stay with the key that earned them (and so does its tier)
        assert held(indexer, e.address) == {1: (25, 0), VALIDITY: (80, 0)}
        assert held(indexer, d.address) == {1: (0, 25), VALIDITY: (0, 80)}
        assert tiers(indexer)[d.address.lower()] == (105, "silver")
        ledger.transact("recoverAccount", e.address, f.address, sender=ledger.actors.admin)
        synced(indexer, ledger)
        recovery = entries(indexer, "AccountMigrated")[-1]
        assert (recovery.account, recovery.counterparty, recovery.nonce, recovery.recovery) == (
            e.address.lower(),
            f.address.lower(),
            0,
            True,
        )
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            now = ledger.node.timestamp()
            assert view.balance(f.address, at=now) == 105 == client.balance_of(f.address)
            assert view.balance(e.address, at=now) == 0
            received = [w.entry.event for w in view.wallet_history(f.address)]
            assert received == ["AccountMigrated", "PointsTransferred", "PointsTransferred"]
        with indexer.engine.connect() as conn:
            kinds = set(conn.execute(select(LedgerEntry.event)).scalars())
        assert kinds >= NEW_ENTRIES
        assert table_digests(indexer.engine) == fresh_digests(
            ledger, second_database, window=WINDOW, tiers=TIERS
        )


def test_a_reorg_that_removes_a_reversal_and_a_refund_ends_equal_to_a_fresh_index(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str, second_database: str
) -> None:
    """The removed blocks reverse an issue and a batch item and refund a redemption into an epoch that has
    expired since (the refund expires on arrival); the blocks that replace them reverse less of the same
    issue under another return reference, and another item of the batch."""
    ledger = anvil_ledger
    a, b, c = new_customer(), new_customer(), new_customer()
    ledger.issue(c.address, 90)
    ledger.redeem(c, 40)
    advance_to_epoch(ledger, anvil_node, VALIDITY)  # c's 50 left of epoch 0 have expired
    ledger.issue(a.address, 120)
    ledger.issue_batch([b.address, c.address], [30, 10])  # retires c's bucket of epoch 0 first
    with mirror(ledger, database, window=WINDOW, tiers=TIERS) as indexer:
        synced(indexer, ledger)
        single = seq_of(indexer, "PointsIssued", a.address)
        item_b = seq_of(indexer, "PointsIssuedInBatch", b.address)
        item_c = seq_of(indexer, "PointsIssuedInBatch", c.address)
        assert seq_of(indexer, "PointsExpired", c.address) == item_b - 2  # just before the header
        redeemed = seq_of(indexer, "PointsRedeemed", c.address)
        before = anvil_node.snapshot()
        reverse(ledger, indexer, single, 70)
        reverse(ledger, indexer, item_b, 30)
        refund(ledger, indexer, redeemed, 25)
        synced(indexer, ledger)
        (refunded,) = entries(indexer, "RedemptionRefunded")
        assert (refunded.amount, refunded.restored) == (25, 0)
        with indexer.engine.connect() as conn:
            state = MirrorView(conn, ledger.address).state()
            assert (state.total_reversed, state.total_refunded, state.total_expired) == (100, 25, 75)
        assert tiers(indexer)[a.address.lower()] == (50, "member")

        anvil_node.revert(before)
        reverse(ledger, indexer, single, 15)
        reverse(ledger, indexer, item_c, 5)
        ledger.issue(new_customer().address, 5)
        indexer.sync()
        assert indexer.stats.reorgs == 1
        assert_reconciled(indexer, ledger)
        reversals = entries(indexer, "IssuanceReversed")
        assert [(r.original_seq, r.requested, r.recovered) for r in reversals] == [
            (single, 15, 15),
            (item_c, 5, 5),
        ]
        assert entries(indexer, "RedemptionRefunded") == entries(indexer, "PointsRefunded") == []
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            state = view.state()
            assert (state.total_reversed, state.total_refunded, state.total_expired) == (20, 0, 50)
            partner = view.partner(ACTIVE)
            assert partner is not None
            assert (partner.reversed, partner.refunded, partner.refunded_value) == (20, 0, 0)
        assert held(indexer, b.address) == {VALIDITY: (30, 30)}
        assert tiers(indexer)[a.address.lower()] == (105, "silver")
        assert table_digests(indexer.engine) == fresh_digests(
            ledger, second_database, window=WINDOW, tiers=TIERS
        )


# --------------------------------------------------------------------------- the decoder's links


def _log(name: str, indexed: list[Any], data: list[Any], *, index: int, tx: int = 1) -> dict[str, Any]:
    """A raw log of ledger entry ``name`` as a node sends it (block 5, transaction ``tx``)."""
    spec = next(s for s in ENTRY_EVENTS.values() if s.name == name)
    words = [abi_encode([t], [v]) for t, v in zip(spec.indexed, indexed, strict=True)]
    topics = [spec.topic0, *("0x" + w.hex() for w in words)]
    return {
        "topics": topics,
        "data": "0x" + abi_encode(list(spec.data), data).hex(),
        "blockHash": "0x" + "ab" * 32,
        "blockNumber": "0x5",
        "transactionHash": "0x" + f"{tx:064x}",
        "transactionIndex": hex(tx),
        "logIndex": hex(index),
    }


CUSTOMER, OTHER = "0x" + "11" * 20, "0x" + "22" * 20
REF = b"\x07" * 32


def test_parts_link_to_their_header_and_only_to_it() -> None:
    logs = [
        _log("RedemptionRefunded", [ACTIVE, CUSTOMER], [10, REF, REF, 7, 3, 12], index=0),
        _log("PointsRefunded", [ACTIVE, CUSTOMER], [11, 2, 3, REF], index=1),
        _log("PointsRefunded", [ACTIVE, CUSTOMER], [12, 1, 4, REF], index=2),
        _log("PointsExpired", [CUSTOMER], [13, 1, 4], index=3),  # the part that expired on arrival
        _log("AccountMigrated", [CUSTOMER, OTHER], [14, 0, True, 9], index=4),
        _log("PointsExpired", [OTHER], [15, 0, 2], index=5),  # retired from OTHER's bucket: no part
        _log("PointsTransferred", [CUSTOMER, OTHER], [16, 2, 9], index=6),
        _log("PointsTransferred", [CUSTOMER, OTHER], [17, 2, 1], index=7),  # after the migration's 9
    ]
    rows = decode_logs(logs, {5: 1_000})
    assert [r["batch_seq"] for r in rows] == [None, 10, 10, 10, None, None, 14, None]
    assert (rows[0]["refund_ref"], rows[0]["amount"], rows[0]["restored"], rows[0]["value"]) == (
        REF,
        7,
        3,
        12,
    )
    assert (rows[4]["nonce"], rows[4]["recovery"], rows[4]["amount"]) == (0, True, 9)


@pytest.mark.parametrize(
    ("name", "header"),
    [("PointsReversed", "IssuanceReversed"), ("PointsRefunded", "RedemptionRefunded")],
)
def test_a_part_without_its_header_is_undecodable(name: str, header: str) -> None:
    orphan = _log(name, [ACTIVE, CUSTOMER], [3, 0, 5, REF], index=1)
    with pytest.raises(UndecodableLog, match=f"{name} without its {header} header"):
        decode_logs([orphan], {5: 1_000})
    reversal = _log("IssuanceReversed", [ACTIVE, CUSTOMER], [2, REF, REF, 5, REF, 5, 5, 10], index=0, tx=2)
    with pytest.raises(UndecodableLog):  # a header of another transaction does not count
        decode_logs([reversal, orphan], {5: 1_000})
