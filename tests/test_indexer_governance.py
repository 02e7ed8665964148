"""The v2 entries in the mirror: partners over their whole life (rotation, rights, settlement address,
allowance top-ups and cuts), values accrued per entry, settlements, roles, the admin handover, pauses and
the ledger clock they stop, and the timelock's operations. The mirror equals a fresh index and ``reconcile``
is empty after each scenario, including reorganisations that remove a rotation, a settlement, a pause and
a timelock execution."""

from __future__ import annotations

import secrets

from eth_account import Account
from sqlalchemy import delete, select, update

from chain import (
    Ledger as ChainLedger,
)
from chain import (
    PartnerId,
    Points,
    ReasonCode,
    Rpc,
    Sender,
    Timelock,
    TimelockConfig,
    deploy_ledger,
)
from chain._devnode import fund
from chain._signer import LocalSigner
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ACTIVITY_PAUSE,
    ADMIN_DELAY,
    EPOCH,
    ISSUE_ONLY,
    ROTATED_PARTNER,
    SETTLEMENT_VALUE,
    VALIDITY,
    AnvilNode,
    Ledger,
    chain_ledger,
    fresh_digests,
    ledger_activity,
    mirror,
    mirror_engine,
    new_customer,
    random_ref,
    table_digests,
)
from indexer import (
    Indexer,
    IndexerConfig,
    LedgerEntry,
    LedgerState,
    MirrorView,
    Partner,
    PartnerStatus,
    PauseInterval,
    RoleHolder,
    reconcile,
)
from indexer._store import DEFAULT_ADMIN_ROLE

WINDOW = 16


def assert_reconciled(indexer: Indexer, address: str) -> None:
    differences = reconcile(indexer.source.w3, indexer.engine, address)
    assert not differences, "\n".join(map(str, differences))


def test_every_v2_entry_lands_in_its_tables_and_equals_a_fresh_index(
    anvil_ledger: Ledger, database: str, second_database: str
) -> None:
    ledger = anvil_ledger
    people = ledger_activity(ledger)
    client = chain_ledger(ledger, ledger.actors.admin)
    # Small ranges: dozens of batches (a fresh index in one batch must end identical).
    with mirror(ledger, database, window=4, initial_range=1, max_range=2) as indexer:
        block = indexer.sync()
        assert_reconciled(indexer, ledger.address)
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            events = set(conn.execute(select(LedgerEntry.event)).scalars())
            assert {"RoleChanged", "PauseChanged", "AdminHandoverChanged", "ConsentRevoked"} <= events

            rotated = view.partner(ROTATED_PARTNER)
            assert rotated is not None
            on_chain = client.partner(PartnerId(ROTATED_PARTNER), block=block)
            assert (rotated.operator, rotated.settlement) == (
                on_chain.operator.lower(),
                on_chain.settlement.lower(),
            )
            assert (rotated.status, rotated.can_issue, rotated.can_accept) == (
                PartnerStatus.ACTIVE,
                False,
                True,
            )
            history = view.partner_history(ROTATED_PARTNER)
            assert [h.event for h in history] == [
                "PartnerRegistered",
                "PartnerOperatorChanged",
                "PartnerRightsChanged",
                "PartnerSettlementAddressChanged",
            ]
            assert history[1].previous_operator == history[0].operator
            assert history[1].operator == rotated.operator
            offboarded = view.partner(ACCEPT_ONLY)
            assert offboarded is not None
            assert (offboarded.status, offboarded.allowance) == (PartnerStatus.OFFBOARDED, 0)
            assert [h.event for h in view.partner_history(ACCEPT_ONLY)][-2:] == [
                "PartnerAllowanceChanged",
                "PartnerStatusChanged",
            ]
            assert [
                (h.event, h.status) for h in view.partner_history(ISSUE_ONLY) if h.status is not None
            ] == [
                ("PartnerRegistered", PartnerStatus.ACTIVE),
                ("PartnerStatusChanged", PartnerStatus.SUSPENDED),
                ("PartnerStatusChanged", PartnerStatus.ACTIVE),
            ]

            # Value per entry: the issues before the change at 10 a point, the redemption after it at 12.
            active = view.partner(ACTIVE)
            assert active is not None
            assert active.redeemed_value == 12 * active.redeemed == 12 * 30
            assert active.issued_value == SETTLEMENT_VALUE * (active.issued - 7) + 12 * 7
            (settlement,) = view.settlements()
            assert (settlement.partner_id, settlement.points, settlement.value) == (ACTIVE, -50, -500)
            assert view.partner_open_position(ACTIVE) == client.partner_open_position(
                PartnerId(ACTIVE), block=block
            )
            assert view.coalition_open_position() == client.coalition_open_position(block=block)

            roles = {(bytes(h.role), h.account) for h in view.role_holders()}
            assert roles == {
                (DEFAULT_ADMIN_ROLE, ledger.actors.admin.lower()),
                (client.treasury_role(), ledger.actors.treasury.lower()),
                (client.pauser_role(), ledger.actors.pauser.lower()),
            }
            (pause,) = view.pause_intervals()
            assert pause.ended_at is not None
            assert pause.ended_at - pause.started_at >= ACTIVITY_PAUSE
            state = view.state()
            assert (state.paused, state.paused_since, state.pending_admin) == (False, None, None)
            assert state.paused_duration == client.paused_duration(block=block)
            assert view.balance(people[-1].address, at=ledger.node.timestamp()) == client.balance_of(
                people[-1].address, block=block
            )
        assert table_digests(indexer.engine) == fresh_digests(ledger, second_database, window=4)


def test_a_reorg_that_removes_a_rotation_and_a_settlement_ends_equal_to_a_fresh_index(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str, second_database: str
) -> None:
    """The removed blocks rotate a partner again, change the settlement value, record a settlement, grant a
    role, schedule an admin handover and a delay change, issue at the new value and pause the ledger (open
    at the cursor); the blocks that replace them issue at the old value and rotate the partner again."""
    ledger = anvil_ledger
    ledger_activity(ledger)
    snapshot = anvil_node.snapshot()
    admin = chain_ledger(ledger, ledger.actors.admin)
    treasury = chain_ledger(ledger, ledger.actors.treasury)
    partner = chain_ledger(ledger, ledger.actors.partner)
    admin.rotate_partner_operator(PartnerId(ROTATED_PARTNER), new_customer().address).wait()
    treasury.set_settlement_value(99).wait()
    treasury.record_settlement(PartnerId(ACTIVE), points=5, value=50, payment_ref=random_ref()).wait()
    admin.grant_role(admin.pauser_role(), ledger.actors.stranger).wait()
    admin.begin_admin_transfer(ledger.actors.stranger).wait()
    admin.change_admin_delay(ADMIN_DELAY // 2).wait()
    partner.issue(new_customer().address, Points(40), random_ref(), ReasonCode(1)).wait()
    chain_ledger(ledger, ledger.actors.pauser).pause().wait()
    with mirror(ledger, database, window=WINDOW) as indexer:
        indexer.sync()
        assert_reconciled(indexer, ledger.address)
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            state = view.state()
            assert state.paused and len(view.settlements()) == 2
            assert (state.pending_admin, state.pending_delay) == (
                ledger.actors.stranger.lower(),
                ADMIN_DELAY // 2,
            )
        anvil_node.revert(snapshot)
        # Other blocks in their place (new clients: the old ones' nonces belong to the removed chain).
        chain_ledger(ledger, ledger.actors.partner).issue(
            new_customer().address, Points(41), random_ref(), ReasonCode(1)
        ).wait()
        chain_ledger(ledger, ledger.actors.admin).rotate_partner_operator(
            PartnerId(ROTATED_PARTNER), new_customer().address
        ).wait()
        indexer.sync()
        assert indexer.stats.reorgs == 1
        assert_reconciled(indexer, ledger.address)
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            state = view.state()
            assert not state.paused and len(view.settlements()) == 1
            assert (state.pending_admin, state.pending_delay) == (None, None)
            assert [h.event for h in view.partner_history(ROTATED_PARTNER)].count(
                "PartnerOperatorChanged"
            ) == 2
        assert table_digests(indexer.engine) == fresh_digests(ledger, second_database, window=WINDOW)


def test_mirror_view_follows_the_ledger_clock_through_a_pause(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str
) -> None:
    """Points issued in epoch 0 expire at the start of epoch VALIDITY, on the ledger's clock: a pause of
    three epochs keeps them live three epochs longer. At every block the mirror's time-aware answers are the
    contract's at that block."""
    ledger = anvil_ledger
    partner = chain_ledger(ledger, ledger.actors.partner)
    pauser = chain_ledger(ledger, ledger.actors.pauser)
    client = chain_ledger(ledger, ledger.actors.admin)
    early, late = new_customer().address, new_customer().address
    partner.issue(early, Points(500), random_ref(), ReasonCode(1)).wait()
    anvil_node.advance_time(2 * EPOCH)
    partner.issue(late, Points(70), random_ref(), ReasonCode(1)).wait()
    pause = 3 * EPOCH

    with mirror(ledger, database, window=4) as indexer:

        def check(expected_early: int) -> int:
            block = indexer.sync()
            now = ledger.w3.eth.get_block(block)["timestamp"]
            with indexer.engine.connect() as conn:
                view = MirrorView(conn, ledger.address)
                for account in (early, late):
                    assert view.balance(account, at=now) == client.balance_of(account, block=block)
                    live = client.live_balances(account, block=block)
                    holdings = view.holdings(account, at=now)
                    assert [(h.epoch, h.points) for h in holdings] == [(b.epoch, b.amount) for b in live]
                    for h in holdings:
                        assert h.expires_at == client.epoch_expires_at(h.epoch, block=block)
                    for horizon in (EPOCH, 6 * EPOCH, 12 * EPOCH):
                        by = now + horizon
                        assert view.expiring(account, at=now, by=by) == sum(
                            h.points for h in holdings if h.expires_at <= by
                        )
                assert view.balance(early, at=now) == expected_early
                assert view.outstanding_supply(at=now) == client.outstanding_supply(block=block)
                assert view.pending_expiry(at=now) == client.pending_expiry(block=block)
                assert view.paused_duration(at=now) == client.paused_duration(block=block)
                assert view.ledger_clock(at=now) == client.ledger_clock(block=block)
                assert view.current_epoch(at=now) == client.current_epoch(block=block)
                assert view.paused(at=now) == client.paused(block=block)
            assert_reconciled(indexer, ledger.address)
            return block

        check(500)
        pauser.pause().wait()
        anvil_node.advance_time(pause)  # the clock stands still: still epoch 2
        during = check(500)
        pauser.unpause().wait()
        # Half an epoch before epoch VALIDITY on the ledger's clock, two and a half epochs after it on the
        # wall clock: without the pause the first 500 points would have expired.
        anvil_node.advance_time((VALIDITY - 2) * EPOCH - EPOCH // 2)
        check(500)
        anvil_node.advance_time(EPOCH)
        check(0)
        # Asked about a time in the past, the view answers as the contract did at that block.
        with indexer.engine.connect() as conn:
            view = MirrorView(conn, ledger.address)
            then = ledger.w3.eth.get_block(during)["timestamp"]
            assert view.paused_duration(at=then) == client.paused_duration(block=during) == pause
            assert view.ledger_clock(at=then) == client.ledger_clock(block=during)
            (interval,) = view.pause_intervals()
            assert interval.ended_at is not None and interval.ended_at - interval.started_at >= pause


def timelocked_ledger(node: AnvilNode, min_delay: int) -> tuple[ChainLedger, Timelock, int]:
    """A ledger deployed behind a fresh CoalitionTimelock (its admin and treasury); the proposer and
    executor is a key made for this test. Returns the ledger and timelock clients (as the proposer) and the
    ledger's deployment block."""
    deployer = LocalSigner(Account.create(secrets.token_hex(32)))
    proposer = LocalSigner(Account.create(secrets.token_hex(32)))
    for signer in (deployer, proposer):
        fund(node.w3, signer.address, 10**20)
    rpc = Rpc(node.w3)
    manifest = deploy_ledger(
        Sender(rpc, deployer),
        name="Coalition Points",
        symbol="PTS",
        pauser=node.accounts[8],
        epoch_length=EPOCH,
        validity=VALIDITY,
        settlement_value=SETTLEMENT_VALUE,
        timelock=TimelockConfig(
            min_delay=min_delay, proposers=(proposer.address,), executors=(proposer.address,)
        ),
    )
    assert manifest.timelock is not None
    ledger = ChainLedger(rpc, manifest.ledger.address)
    timelock = Timelock(rpc, manifest.timelock.address, sender=Sender(rpc, proposer))
    return ledger, timelock, int(manifest.deployed_at.block_number)


def test_admin_operations_show_a_scheduled_registration_before_and_after_it_executes(
    anvil_node: AnvilNode, database: str, second_database: str
) -> None:
    delay = 2 * 24 * 3600
    snapshot = anvil_node.snapshot()
    try:
        ledger, timelock, first = timelocked_ledger(anvil_node, delay)
        operator = new_customer().address
        register = ledger.call_of("registerPartner", 7, operator, operator, True, True, 5_000)
        op = timelock.schedule(register, salt=random_ref()).wait()
        other = timelock.schedule(ledger.call_of("setTransfersEnabled", True)).wait()

        def index(url: str) -> Indexer:
            return Indexer(
                anvil_node.w3,
                mirror_engine(url),
                ledger.address,
                deployment_block=first,
                config=IndexerConfig(window=WINDOW),
                timelock=timelock.address,
            )

        with index(database) as indexer:
            indexer.sync()
            assert_reconciled(indexer, ledger.address)
            with indexer.engine.connect() as conn:
                view = MirrorView(conn, ledger.address)
                assert view.state().timelock_min_delay == delay
                scheduled = {bytes(o.operation_id): o for o in view.admin_operations("scheduled")}
                assert set(scheduled) == {op.id, other.id}
                row = scheduled[op.id]
                assert (row.function, row.target, row.ready_at, row.salt) == (
                    "registerPartner",
                    ledger.address.lower(),
                    op.ready_at,
                    op.salt,
                )
                assert row.data == register.data and view.partner(7) is None
            timelock.cancel(other).wait()
            anvil_node.advance_time(delay)
            before_execution = anvil_node.snapshot()
            timelock.execute(op).wait()
            indexer.sync()
            assert_reconciled(indexer, ledger.address)
            with indexer.engine.connect() as conn:
                view = MirrorView(conn, ledger.address)
                status = {bytes(o.operation_id): o.status for o in view.admin_operations()}
                assert status == {op.id: "executed", other.id: "cancelled"}
                assert view.partner(7) is not None
            # A reorganisation removes the execution: the operation is scheduled again, the partner gone.
            anvil_node.revert(before_execution)
            anvil_node.mine()
            anvil_node.mine()
            indexer.sync()
            assert indexer.stats.reorgs == 1
            assert_reconciled(indexer, ledger.address)
            with indexer.engine.connect() as conn:
                view = MirrorView(conn, ledger.address)
                assert [bytes(o.operation_id) for o in view.admin_operations("scheduled")] == [op.id]
                assert view.partner(7) is None
            digests = table_digests(indexer.engine)
        with index(second_database) as fresh:
            fresh.sync()
            assert table_digests(fresh.engine) == digests
    finally:
        anvil_node.revert(snapshot)


def test_reconcile_reports_governance_rows_altered_by_hand(anvil_ledger: Ledger, database: str) -> None:
    ledger = anvil_ledger
    ledger_activity(ledger)
    # The ledger clock must be past 0 for a second more of pause to show in it (it stops at 0; the pause
    # took all the time that passed but the second or so the activity took on the wall clock).
    ledger.node.advance_time(60)
    with mirror(ledger, database, window=4) as indexer:
        indexer.sync()
        assert_reconciled(indexer, ledger.address)
        pauser_role = chain_ledger(ledger, ledger.actors.admin).pauser_role()
        with indexer.engine.begin() as conn:
            conn.execute(delete(RoleHolder).where(RoleHolder.role == pauser_role))
            conn.execute(update(PauseInterval).values(started_at=PauseInterval.started_at - 1))
            conn.execute(update(LedgerState).values(paused_duration=LedgerState.paused_duration + 2))
            conn.execute(update(Partner).where(Partner.partner_id == ACTIVE).values(settled_value=0))
            conn.execute(update(LedgerState).values(pending_admin=ledger.actors.stranger.lower()))
        found = {(d.what, d.key) for d in reconcile(ledger.w3, indexer.engine, ledger.address)}
        pauser = f"0x{pauser_role.hex()}"
        assert found == {
            ("hasRole", f"{pauser}:{ledger.actors.pauser.lower()}"),
            ("roleHolders", pauser),
            ("pausedDuration", None),
            ("pausedDuration", "ledger_state"),
            ("ledgerClock", None),
            ("partner", str(ACTIVE)),
            ("partnerOpenPosition", str(ACTIVE)),
            ("coalitionOpenPosition", None),
            ("pendingDefaultAdmin", None),
        }
