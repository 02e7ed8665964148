"""The ledger behind its CoalitionTimelock, on anvil: deployed with ``deploy_ledger(timelock=...)`` (the
timelock is the admin and the treasury, the pauser a direct key), a manifest that records and verifies it,
and the :class:`~chain.Timelock` client: operation ids computed locally as the contract computes them, a
scheduled registration visible before it executes, refused when early, executed once its delay passed, and
every refusal the timelock's own typed error."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from chain import (
    ANYONE,
    ContractRevert,
    DeploymentError,
    ManifestMismatch,
    OperationState,
    PartnerId,
    PartnerStatus,
    Points,
    ScheduledOperation,
    Timelock,
    TimelockCall,
    TimelockConfig,
    TimelockError,
    state_bitmap,
)
from chain._deploy import deploy_ledger
from chain._devnode import fund
from chain._ledger import ZERO_HASH, Ledger
from chain._manifest import DeploymentManifest, load_manifest, sha256_hex, verify_manifest
from chain._rpc import Rpc
from chain._sender import Sender
from chain._signer import dev_signers
from conftest import (
    EPOCH,
    SETTLEMENT_VALUE,
    VALIDITY,
    AnvilNode,
    EthTesterNode,
    expect_revert,
    random_ref,
    revert_decoder,
)

DELAY = 3600
ADMIN_DELAY = 2 * 24 * 3600


@dataclass
class Coalition:
    """A ledger deployed behind a timelock: clients for the proposer, a stranger (executors: anyone), the
    pauser key and the deployer."""

    node: AnvilNode
    manifest: DeploymentManifest
    rpc: Rpc
    timelock: Timelock  # signs as the proposer
    stranger_timelock: Timelock
    ledger: Ledger  # read-only
    pauser: Ledger
    deployer: Ledger

    def register_call(
        self, partner_id: int, operator: str | None = None, allowance: int = 1_000
    ) -> TimelockCall:
        operator = operator or Account.create().address
        call = self.ledger.call_of("registerPartner", partner_id, operator, operator, True, True, allowance)
        assert call.to is not None
        return TimelockCall(call.to, call.value, call.data)


@pytest.fixture
def coalition(anvil_node: AnvilNode) -> Iterator[Coalition]:
    snapshot = anvil_node.snapshot()
    signers = dev_signers(anvil_node.w3.eth.chain_id, count=5)
    deployer, proposer, pauser, stranger = signers[0], signers[1], signers[2], signers[3]
    rpc = Rpc(anvil_node.w3, decoder=revert_decoder())
    senders = {s.address: Sender(rpc, s) for s in (deployer, proposer, pauser, stranger)}
    manifest = deploy_ledger(
        senders[deployer.address],
        name="Coalition Points",
        symbol="PTS",
        pauser=pauser.address,
        admin_delay=ADMIN_DELAY,
        epoch_length=EPOCH,
        validity=VALIDITY,
        settlement_value=SETTLEMENT_VALUE,
        timelock=TimelockConfig(min_delay=DELAY, proposers=(proposer.address,), executors=(ANYONE,)),
    )
    assert manifest.timelock is not None
    timelock = Timelock(rpc, manifest.timelock.address, sender=senders[proposer.address])
    address = manifest.ledger.address
    yield Coalition(
        node=anvil_node,
        manifest=manifest,
        rpc=rpc,
        timelock=timelock,
        stranger_timelock=timelock.with_sender(senders[stranger.address]),
        ledger=Ledger(rpc, address),
        pauser=Ledger(rpc, address, sender=senders[pauser.address]),
        deployer=Ledger(rpc, address, sender=senders[deployer.address]),
    )
    anvil_node.revert(snapshot)


# --------------------------------------------------------------------------- deployment and manifest


def test_the_timelock_is_admin_and_treasury_and_nobody_can_bypass_it(coalition: Coalition) -> None:
    ledger, timelock, manifest = coalition.ledger, coalition.timelock, coalition.manifest
    assert manifest.timelock is not None
    tl = manifest.timelock.address
    proposer = manifest.timelock.proposers[0]
    deployer = manifest.deployer

    assert ledger.default_admin() == tl
    assert ledger.has_role(ledger.treasury_role(), tl)
    assert ledger.has_role(ledger.pauser_role(), manifest.parameters.pauser)
    assert not ledger.has_role(ledger.admin_role(), deployer)
    assert ledger.default_admin_delay() == ADMIN_DELAY
    # The timelock has no admin but itself: its roles change only through its own delay.
    assert timelock.has_role(timelock.admin_role(), tl)
    assert not timelock.has_role(timelock.admin_role(), deployer)
    assert timelock.has_role(timelock.proposer_role(), proposer)
    assert timelock.has_role(timelock.canceller_role(), proposer)  # OpenZeppelin: proposers cancel
    assert timelock.has_role(timelock.executor_role(), ANYONE)  # anyone may execute
    assert timelock.min_delay() == DELAY
    # The deployer key holds nothing: registering a partner directly is refused.
    with pytest.raises(ContractRevert) as excinfo:
        coalition.deployer.register_partner(PartnerId(1), Account.create().address, allowance=Points(1))
    expect_revert(excinfo, "AccessControlUnauthorizedAccount", deployer, ledger.admin_role())


def test_deploy_with_a_timelock_writes_a_manifest_that_verifies(coalition: Coalition, tmp_path: Path) -> None:
    manifest = coalition.manifest
    timelock = manifest.timelock
    assert timelock is not None
    params = manifest.parameters
    assert (params.admin, params.treasury) == (timelock.address, timelock.address)
    assert params.admin_delay == ADMIN_DELAY
    assert (timelock.min_delay, timelock.executors) == (DELAY, (ANYONE,))
    assert timelock.deployed_at.block_number < manifest.deployed_at.block_number  # deployed first
    entry = manifest.contracts["CoalitionTimelock"]
    assert entry.address == timelock.address
    assert entry.deployed_bytecode_sha256 == sha256_hex(coalition.rpc.code(timelock.address))

    path = tmp_path / "deployment.json"
    manifest.write(path)
    assert load_manifest(path) == manifest
    verify_manifest(load_manifest(path), coalition.node.w3)
    assert Timelock.from_manifest(coalition.rpc, manifest).address == timelock.address

    # The timelock's code is checked like the ledger's.
    forged = dataclasses.replace(entry, deployed_bytecode_sha256="00" * 32)
    with pytest.raises(ManifestMismatch) as excinfo:
        verify_manifest(
            dataclasses.replace(manifest, contracts={**manifest.contracts, "CoalitionTimelock": forged}),
            coalition.node.w3,
        )
    assert excinfo.value.field == f"bytecode of CoalitionTimelock at {timelock.address}"
    # ... and so is the timelock's deployment block, and that the entry is the recorded timelock.
    at = dataclasses.replace(timelock.deployed_at, block_hash="0x" + "ab" * 32)
    with pytest.raises(ManifestMismatch, match="hash of the timelock's deployment block"):
        verify_manifest(
            dataclasses.replace(manifest, timelock=dataclasses.replace(timelock, deployed_at=at)),
            coalition.node.w3,
        )
    other = dataclasses.replace(timelock, address=manifest.ledger.address)
    with pytest.raises(ManifestMismatch, match="CoalitionTimelock contract entry"):
        verify_manifest(dataclasses.replace(manifest, timelock=other), coalition.node.w3)


def test_a_timelock_deployment_refuses_a_direct_admin_or_treasury(coalition: Coalition) -> None:
    sender = coalition.deployer.sender
    assert sender is not None
    config = TimelockConfig(min_delay=1, proposers=(sender.address,))
    common = {"name": "P", "symbol": "P", "epoch_length": EPOCH, "validity": VALIDITY, "settlement_value": 1}
    nonce = coalition.rpc.transaction_count(sender.address)
    for role in ("admin", "treasury"):
        with pytest.raises(DeploymentError, match="leave admin and treasury out"):
            deploy_ledger(sender, timelock=config, **{role: sender.address}, **common)  # type: ignore[arg-type]
    with pytest.raises(ContractRevert) as excinfo:  # the ledger's constructor is tried first
        deploy_ledger(sender, timelock=config, **{**common, "validity": 0})  # type: ignore[arg-type]
    expect_revert(excinfo, "LedgerInvalidConfiguration", EPOCH, 0)
    assert coalition.rpc.transaction_count(sender.address) == nonce, "nothing was sent"
    with pytest.raises(TimelockError, match="at least one proposer"):
        TimelockConfig(min_delay=1, proposers=())
    with pytest.raises(TimelockError, match="zero address cannot be a proposer"):
        TimelockConfig(min_delay=1, proposers=(ANYONE,))


# --------------------------------------------------------------------------- operation ids


def test_operation_ids_are_computed_locally_as_the_timelock_computes_them(coalition: Coalition) -> None:
    timelock = coalition.timelock
    calls = [coalition.register_call(7), coalition.register_call(8)]
    predecessor, salt = secrets.token_bytes(32), secrets.token_bytes(32)
    for pred, s in ((ZERO_HASH, ZERO_HASH), (predecessor, salt)):
        call = calls[0]
        local = Timelock.operation_id(call.target, call.value, call.data, pred, s)
        assert local == timelock.hash_operation(call.target, call.value, call.data, pred, s)
        assert Timelock.batch_operation_id(calls, pred, s) == timelock.hash_operation_batch(calls, pred, s)
    assert Timelock.operation_id(calls[0].target, 0, calls[0].data) != Timelock.operation_id(
        calls[1].target, 0, calls[1].data
    )


# --------------------------------------------------------------------------- the life of an operation


def test_a_scheduled_registration_is_visible_before_it_executes_and_cannot_execute_early(
    coalition: Coalition,
) -> None:
    timelock, ledger = coalition.timelock, coalition.ledger
    operator = Account.create().address
    call = ledger.call_of("registerPartner", 7, operator, operator, True, False, 5_000)

    op = timelock.schedule(call).wait()

    assert op.block_number is not None
    assert op.id == Timelock.operation_id(ledger.address, 0, call.data)
    assert op.ready_at == coalition.rpc.timestamp(op.block_number) + DELAY == timelock.timestamp(op.id)
    assert timelock.is_operation(op.id) and timelock.is_pending(op.id)
    assert not timelock.is_ready(op.id) and not timelock.is_done(op.id)
    assert timelock.operation_state(op.id) is OperationState.WAITING
    listed = timelock.pending_operations(from_block=coalition.manifest.deployed_at.block_number)
    assert listed == [dataclasses.replace(op, transaction=None)]
    decoded = ledger.decode_call(listed[0].data)
    assert decoded is not None and decoded.function == "registerPartner"
    assert decoded.args == (7, operator, operator, True, False, 5_000)
    assert str(decoded).startswith(f"registerPartner(partnerId=7, operator={operator}, ")
    assert 7 not in ledger.partner_ids()

    with pytest.raises(ContractRevert) as early:
        coalition.stranger_timelock.execute(op)
    expect_revert(early, "TimelockUnexpectedOperationState", op.id, state_bitmap(OperationState.READY))

    coalition.node.advance_time(DELAY)  # evm_increaseTime, then a block
    assert timelock.is_ready(op.id) and timelock.operation_state(op.id) is OperationState.READY
    coalition.stranger_timelock.execute(op).wait()  # executors: anyone

    partner = ledger.partner(PartnerId(7))
    assert (partner.operator, partner.status, partner.can_issue, partner.can_accept, partner.allowance) == (
        operator,
        PartnerStatus.ACTIVE,
        True,
        False,
        5_000,
    )
    assert timelock.is_done(op.id) and not timelock.is_pending(op.id)
    assert timelock.pending_operations() == []
    [(seen, state)] = timelock.scheduled_operations()
    assert (seen.id, state) == (op.id, OperationState.DONE)


def test_refusals_are_the_timelocks_typed_errors(coalition: Coalition) -> None:
    timelock, ledger = coalition.timelock, coalition.ledger
    stranger = coalition.stranger_timelock
    stranger_address = stranger.sender.address if stranger.sender else ""
    call = ledger.call_of("setSettlementValue", 12)

    with pytest.raises(ContractRevert) as short:
        timelock.schedule(call, delay=DELAY - 1)
    expect_revert(short, "TimelockInsufficientDelay", DELAY - 1, DELAY)

    with pytest.raises(ContractRevert) as not_proposer:
        stranger.schedule(call)
    expect_revert(
        not_proposer, "AccessControlUnauthorizedAccount", stranger_address, timelock.proposer_role()
    )

    op = timelock.schedule(call).wait()
    with pytest.raises(ContractRevert) as twice:
        timelock.schedule(call)
    expect_revert(twice, "TimelockUnexpectedOperationState", op.id, state_bitmap(OperationState.UNSET))

    with pytest.raises(ContractRevert) as not_canceller:
        stranger.cancel(op)
    expect_revert(
        not_canceller, "AccessControlUnauthorizedAccount", stranger_address, timelock.canceller_role()
    )

    coalition.node.advance_time(DELAY)
    timelock.execute(op).wait()
    assert ledger.settlement_value() == 12  # the treasury's power, through the timelock

    with pytest.raises(ContractRevert) as done:
        timelock.cancel(op)
    pending = state_bitmap(OperationState.WAITING, OperationState.READY)
    expect_revert(done, "TimelockUnexpectedOperationState", op.id, pending)


def test_an_executed_call_that_reverts_raises_the_ledgers_error(coalition: Coalition) -> None:
    timelock, ledger = coalition.timelock, coalition.ledger
    call = ledger.call_of("setSettlementValue", 2**64)
    with pytest.raises(ContractRevert) as simulated:
        timelock.simulate(call)  # what `loyalty timelock schedule` checks before scheduling
    expect_revert(simulated, "LedgerInvalidSettlementValue", 2**64, 2**64 - 1)

    op = timelock.schedule(call).wait()  # the timelock itself schedules anything
    coalition.node.advance_time(DELAY)
    with pytest.raises(ContractRevert) as excinfo:
        timelock.execute(op)
    expect_revert(excinfo, "LedgerInvalidSettlementValue", 2**64, 2**64 - 1)


def test_a_cancelled_operation_leaves_the_list_and_can_be_scheduled_again(coalition: Coalition) -> None:
    timelock = coalition.timelock
    call = coalition.ledger.call_of("setTransfersEnabled", True)
    op = timelock.schedule(call).wait()
    timelock.cancel(op).wait()

    assert not timelock.is_operation(op.id)
    assert timelock.pending_operations() == []
    [(seen, state)] = timelock.scheduled_operations()
    assert (seen.id, state) == (op.id, OperationState.UNSET)

    again = timelock.schedule(call, delay=DELAY + 60).wait()  # same call, salt and predecessor: same id
    assert again.id == op.id
    assert [o.delay for o in timelock.pending_operations()] == [DELAY + 60]


def test_a_batch_with_a_salt_and_a_predecessor(coalition: Coalition) -> None:
    timelock, ledger = coalition.timelock, coalition.ledger
    register = coalition.register_call(9)
    first = timelock.schedule(
        ledger.call_of("registerPartner", *ledger.decode_call(register.data).args),  # type: ignore[union-attr]
    ).wait()
    salt = random_ref()
    calls = [
        ledger.call_of("increasePartnerAllowance", 9, 500),
        ledger.call_of("setPartnerRights", 9, True, False),
    ]
    batch = timelock.schedule_batch(calls, salt=salt, predecessor=first.id).wait()

    pending = timelock.pending_operations()
    assert [op.id for op in pending] == [first.id, batch.id]
    listed: ScheduledOperation = pending[1]
    assert listed.is_batch and (listed.salt, listed.predecessor) == (salt, first.id)
    assert [ledger.decode_call(c.data).function for c in listed.calls] == [  # type: ignore[union-attr]
        "increasePartnerAllowance",
        "setPartnerRights",
    ]
    coalition.node.advance_time(DELAY)
    with pytest.raises(ContractRevert) as out_of_order:
        timelock.execute(listed)
    expect_revert(out_of_order, "TimelockUnexecutedPredecessor", first.id)

    timelock.execute(first).wait()
    timelock.execute(listed).wait()

    partner = ledger.partner(PartnerId(9))
    assert (partner.allowance, partner.can_accept) == (1_500, False)
    assert timelock.pending_operations() == []


def test_the_pauser_stays_a_direct_key(coalition: Coalition) -> None:
    coalition.pauser.pause().wait()
    assert coalition.ledger.paused()
    coalition.pauser.unpause().wait()
    assert not coalition.ledger.paused()


def test_pending_operations_on_the_embedded_chain_too(eth_tester_node: EthTesterNode) -> None:
    """eth-tester answers ``eth_getLogs`` through web3, not raw JSON-RPC: the same operations come back."""
    snapshot = eth_tester_node.snapshot()
    try:
        signer = dev_signers(eth_tester_node.w3.eth.chain_id)[0]
        fund(eth_tester_node.w3, signer.address, 10**21)
        rpc = Rpc(eth_tester_node.w3, decoder=revert_decoder())
        sender = Sender(rpc, signer)
        manifest = deploy_ledger(
            sender,
            name="P",
            symbol="P",
            epoch_length=EPOCH,
            validity=VALIDITY,
            settlement_value=1,
            timelock=TimelockConfig(min_delay=DELAY, proposers=(signer.address,)),
        )
        verify_manifest(manifest, eth_tester_node.w3)
        assert manifest.timelock is not None
        timelock = Timelock(rpc, manifest.timelock.address, sender=sender)
        op = timelock.schedule(
            Ledger(rpc, manifest.ledger.address).call_of("setTransfersEnabled", True)
        ).wait()
        assert timelock.pending_operations() == [dataclasses.replace(op, transaction=None)]
        with pytest.raises(ContractRevert) as early:
            timelock.execute(op)
        expect_revert(early, "TimelockUnexpectedOperationState", op.id, state_bitmap(OperationState.READY))
    finally:
        eth_tester_node.revert(snapshot)
