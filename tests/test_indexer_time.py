"""Time-aware figures: expiry takes effect without an event, so the mirror's live balances, "expiring by"
answers, supply and tiers are computed for a time; they match the chain at the node's clock, before and
after a sweep turns the expiry into entries."""

from __future__ import annotations

from sqlalchemy import select, text

from chain import Points, ReasonCode
from conftest import (
    ACTIVE,
    EPOCH,
    VALIDITY,
    AnvilNode,
    Ledger,
    chain_ledger,
    mirror,
    new_customer,
    random_ref,
)
from indexer import Indexer, MirrorView, Tier, reconcile
from indexer._store import TierPolicy

#: Where ``redeemed`` sits in reconcile's ``partner`` figures (``partner(id)`` without the id).
REDEEMED = 7


def assert_matches_chain(indexer: Indexer, ledger: Ledger, accounts: list[str]) -> None:
    client = chain_ledger(ledger, ledger.actors.admin)
    block = indexer.sync()
    now = ledger.w3.eth.get_block(block)["timestamp"]
    with indexer.engine.connect() as conn:
        view = MirrorView(conn, ledger.address)
        for account in accounts:
            assert view.balance(account, at=now) == client.balance_of(account, block=block)
            live = client.live_balances(account, block=block)
            assert [(h.epoch, h.points) for h in view.holdings(account, at=now)] == [
                (b.epoch, b.amount) for b in live if b.amount
            ]
            for horizon in (EPOCH, 3 * EPOCH, 12 * EPOCH):
                expected = sum(b.amount for b in live if client.epoch_expires_at(b.epoch) <= now + horizon)
                assert view.expiring(account, at=now, by=now + horizon) == expected
        assert view.outstanding_supply(at=now) == client.outstanding_supply(block=block)
        assert view.pending_expiry(at=now) == client.pending_expiry(block=block)
    assert reconcile(ledger.w3, indexer.engine, ledger.address) == []


def test_balances_follow_the_clock_and_sweeps(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str
) -> None:
    partner = chain_ledger(anvil_ledger, anvil_ledger.actors.partner)
    early, late = new_customer().address, new_customer().address
    partner.issue(early, Points(500), random_ref(), ReasonCode(1)).wait()
    anvil_node.advance_time(5 * EPOCH)
    partner.issue(early, Points(70), random_ref(), ReasonCode(1)).wait()
    partner.issue(late, Points(900), random_ref(), ReasonCode(1)).wait()
    with mirror(anvil_ledger, database, window=4) as indexer:
        assert_matches_chain(indexer, anvil_ledger, [early, late])
        # The first 500 points expire at the start of epoch VALIDITY: no event, a new block's clock.
        anvil_node.advance_time((VALIDITY - 5) * EPOCH)
        assert_matches_chain(indexer, anvil_ledger, [early, late])
        with indexer.engine.connect() as conn:
            now = anvil_ledger.w3.eth.get_block("latest")["timestamp"]
            view = MirrorView(conn, anvil_ledger.address)
            assert view.balance(early, at=now) == 70
            assert view.pending_expiry(at=now) == 500
        partner.sweep_expired([early, late]).wait()
        assert_matches_chain(indexer, anvil_ledger, [early, late])
        with indexer.engine.connect() as conn:
            assert MirrorView(conn, anvil_ledger.address).state().total_expired == 500


def test_tiers_count_points_earned_in_the_rolling_window(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str
) -> None:
    partner = chain_ledger(anvil_ledger, anvil_ledger.actors.partner)
    silver, gold = new_customer().address, new_customer().address
    partner.issue(silver, Points(1_200), random_ref(), ReasonCode(1)).wait()
    partner.issue(gold, Points(3_000), random_ref(), ReasonCode(1)).wait()
    anvil_node.advance_time(6 * EPOCH)
    partner.issue_batch(
        [gold, silver], [Points(2_500), Points(10)], [random_ref(), random_ref()], ReasonCode(6)
    ).wait()
    policy = TierPolicy(thresholds=(("member", 0), ("silver", 1_000), ("gold", 5_000)), qualifying_epochs=12)

    def tiers(indexer: Indexer) -> dict[str, tuple[int, str]]:
        indexer.sync()
        with indexer.engine.connect() as conn:
            return {r.account: (r.qualifying_points, r.tier) for r in conn.execute(select(Tier.__table__))}

    with mirror(anvil_ledger, database, window=4, tiers=policy) as indexer:
        assert tiers(indexer) == {silver.lower(): (1_210, "silver"), gold.lower(): (5_500, "gold")}
        # Epoch 12: the first issues (epoch 0) leave the 12-epoch window; points earned in epoch 6 remain.
        anvil_node.advance_time(6 * EPOCH)
        assert tiers(indexer) == {silver.lower(): (10, "member"), gold.lower(): (2_500, "silver")}
        anvil_node.advance_time(6 * EPOCH)
        assert tiers(indexer) == {}


def test_reconcile_reports_a_row_altered_by_hand(anvil_ledger: Ledger, database: str) -> None:
    partner = chain_ledger(anvil_ledger, anvil_ledger.actors.partner)
    customer = new_customer().address
    partner.issue(customer, Points(40), random_ref(), ReasonCode(1)).wait()
    with mirror(anvil_ledger, database, window=4) as indexer:
        indexer.sync()
        assert reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address) == []
        with indexer.engine.begin() as conn:
            conn.execute(
                text("UPDATE account_epochs SET held = held + 1 WHERE account = :a"), {"a": customer.lower()}
            )
            conn.execute(text("UPDATE partners SET redeemed = 7 WHERE partner_id = :p"), {"p": ACTIVE})
        found = {
            (d.what, d.key): (d.mirror, d.chain)
            for d in reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address)
        }
        assert found.pop(("balanceOf", customer.lower())) == (41, 40)
        assert found.pop(("outstandingSupply", None)) == (41, 40)
        mirrored, on_chain = found.pop(("partner", str(ACTIVE)))
        assert (mirrored[REDEEMED], on_chain[REDEEMED]) == (7, 0)
        # the partner's positions follow from its counters: both show the altered count
        assert found.pop(("partnerPosition", str(ACTIVE))) == ((7 - 40, -400), (-40, -400))
        assert found.pop(("partnerOpenPosition", str(ACTIVE))) == ((7 - 40, -400), (-40, -400))
        assert found == {}
        with indexer.engine.begin() as conn:
            conn.execute(text("UPDATE ledger_state SET seq = seq - 1"))
        assert {
            (d.what, d.key) for d in reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address)
        } >= {("ledgerSequence", None)}
