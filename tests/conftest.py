"""Shared fixtures: every contract behaviour runs against eth-tester (in-process py-evm) and a spawned anvil.

Roles, by index into the node's unlocked accounts (see :class:`Actors`):
admin, an active partner (issues and accepts), a suspended partner, a partner that may only accept
(no right to issue), a partner that may only issue (no right to accept), a customer, a stranger, the
treasury, the pauser. The three roles are held by three different keys, as in production.
Customers that must sign redemptions get keys generated at runtime (:func:`new_customer`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import Engine, select
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from chain import Artifact, ContractRevert, PartnerId, Points, ReasonCode, RevertDecoder, load_artifact
from chain._deploy import deploy_contract
from chain._devnode import anvil_binary, eth_tester_web3, fund, start_anvil
from chain._eip712 import sign_redemption
from chain._ledger import Ledger as ChainLedger
from chain._rpc import Rpc
from chain._sender import Sender, SendPolicy
from chain._signer import LocalSigner, dev_signers
from indexer import Base as MirrorBase
from indexer import Indexer, IndexerConfig, make_engine, scratch_schema

ROOT = Path(__file__).resolve().parents[1]
EPOCH = 30 * 24 * 3600  # default epoch length: 30 days
VALIDITY = 12  # default validity: 12 epochs
SETTLEMENT_VALUE = 10  # settlement units per point
REVERSAL_WINDOW = 90 * 24 * 3600  # seconds after an issuance during which its partner may reverse it
ALLOWANCE = 10**9
GAS = 12_000_000
ADMIN_DELAY = 3 * 24 * 3600  # the default admin handover's delay in the fixtures

ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY = 1, 2, 3, 4


# --------------------------------------------------------------------------- nodes


class Node:
    """A chain the tests drive: a ``Web3`` plus clock control, the same on both backends."""

    kind: str

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    @property
    def accounts(self) -> list[str]:
        return list(self.w3.eth.accounts)

    def timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Moves the clock forward by ``seconds`` and mines a block at the new time."""
        raise NotImplementedError

    def mine(self) -> None:
        raise NotImplementedError

    def snapshot(self) -> Any:
        """Marks the chain's state (clock included) to return to with :meth:`revert`."""
        raise NotImplementedError

    def revert(self, snapshot: Any) -> None:
        raise NotImplementedError


class EthTesterNode(Node):
    kind = "eth-tester"

    def advance_time(self, seconds: int) -> None:
        tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        tester.time_travel(self.timestamp() + seconds)
        tester.mine_blocks(1)

    def mine(self) -> None:
        self.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]

    def snapshot(self) -> Any:
        return self.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]

    def revert(self, snapshot: Any) -> None:
        self.w3.provider.ethereum_tester.revert_to_snapshot(snapshot)  # type: ignore[attr-defined]


class AnvilNode(Node):
    kind = "anvil"

    def advance_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.mine()

    def mine(self) -> None:
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def snapshot(self) -> Any:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot: Any) -> None:
        reverted = self.w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
        assert reverted is True, f"evm_revert({snapshot}) failed"


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    with start_anvil(ROOT, extra_args=("--accounts", "12")) as running:
        yield AnvilNode(running.w3)


@pytest.fixture(scope="session")
def eth_tester_node() -> EthTesterNode:
    return EthTesterNode(eth_tester_web3())


@pytest.fixture(params=["eth-tester", "anvil"])
def node(request: pytest.FixtureRequest) -> Node:
    """Each test that uses it runs once per backend."""
    name = "eth_tester_node" if request.param == "eth-tester" else "anvil_node"
    result: Node = request.getfixturevalue(name)
    return result


# --------------------------------------------------------------------------- the deployed ledger


@dataclass
class Actors:
    admin: str
    partner: str  # active, may issue and accept (partner id ACTIVE)
    suspended: str  # registered with both rights, then suspended (SUSPENDED)
    accept_only: str  # active, may accept but not issue (ACCEPT_ONLY)
    issue_only: str  # active, may issue but not accept (ISSUE_ONLY)
    customer: str  # an unlocked account that holds points
    stranger: str  # no role at all
    treasury: str  # TREASURY_ROLE: settlement value, settlement records, allowance cuts
    pauser: str  # PAUSER_ROLE: pause, unpause, suspend a partner


@dataclass
class Ledger:
    """A freshly deployed LoyaltyLedger with the standard partners, and helpers to drive it."""

    node: Node
    contract: Contract
    artifact: Artifact
    actors: Actors
    decoder: RevertDecoder
    receipts: list[TxReceipt] = field(default_factory=list)
    deployment_block: int = 0

    @property
    def w3(self) -> Web3:
        return self.node.w3

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def call(self, fn: str, *args: Any) -> Any:
        return getattr(self.contract.functions, fn)(*args).call()

    def transact(self, fn: str, *args: Any, sender: str) -> TxReceipt:
        """Sends ``fn(*args)`` from ``sender``; raises the decoded :class:`ContractRevert` if it reverts."""
        return send(self.node, self.decoder, getattr(self.contract.functions, fn)(*args), sender)

    def events(self, receipt: TxReceipt, name: str | None = None) -> list[dict[str, Any]]:
        """The receipt's logs from this contract, decoded, in log order: ``{"event", "args", "log"}``."""
        return decode_logs(self.contract, receipt, name)

    def issue(
        self,
        to: str,
        amount: int,
        *,
        sender: str | None = None,
        ref: bytes | None = None,
        reason: int = 1,
        rule: bytes = b"\x00" * 32,
    ) -> TxReceipt:
        return self.transact(
            "issue", to, amount, ref or random_ref(), reason, rule, sender=sender or self.actors.partner
        )

    def issue_batch(
        self,
        recipients: list[str],
        amounts: list[int],
        item_refs: list[bytes] | None = None,
        *,
        sender: str | None = None,
        reason: int = 1,
        rule: bytes = b"\x00" * 32,
    ) -> TxReceipt:
        """``issueBatch`` with a fresh item reference per recipient unless given (the batch's reference is
        the Merkle root of its items, which the contract computes)."""
        refs = item_refs if item_refs is not None else [random_ref() for _ in recipients]
        return self.transact(
            "issueBatch", recipients, amounts, refs, reason, rule, sender=sender or self.actors.partner
        )

    def sign_redemption(
        self,
        customer: LocalAccount,
        partner_id: int,
        amount: int,
        ref: bytes,
        nonce: int,
        deadline: int,
        *,
        chain_id: int | None = None,
        contract: str | None = None,
    ) -> bytes:
        return sign_redemption(
            customer,
            chain_id=chain_id if chain_id is not None else self.w3.eth.chain_id,
            contract=contract or self.address,
            partner_id=partner_id,
            amount=amount,
            ref=ref,
            nonce=nonce,
            deadline=deadline,
        )

    def redeem(
        self,
        customer: LocalAccount,
        amount: int,
        *,
        sender: str | None = None,
        partner_id: int = ACTIVE,
        ref: bytes | None = None,
        deadline: int | None = None,
    ) -> TxReceipt:
        """Redeems with a valid signature by ``customer`` at ``partner_id`` (sent by ``sender``), with the
        next nonce of the key ``partner_id`` (keyed nonces: ``key << 64 | sequence``)."""
        ref = ref or random_ref()
        nonce = self.call("nonces", customer.address, partner_id)
        deadline = deadline if deadline is not None else self.node.timestamp() + 3600
        signature = self.sign_redemption(customer, partner_id, amount, ref, nonce, deadline)
        return self.transact(
            "redeem",
            customer.address,
            amount,
            ref,
            nonce,
            deadline,
            signature,
            sender=sender or self.actors.partner,
        )


def send(node: Node, decoder: RevertDecoder, fn: Any, sender: str) -> TxReceipt:
    """Sends a contract call with a fixed gas limit; on a failed receipt, replays it to decode the revert."""
    tx_hash = fn.transact({"from": sender, "gas": GAS})
    receipt = node.w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] == 1:
        return receipt
    try:
        fn.call({"from": sender, "gas": GAS}, block_identifier="latest")
    except Exception as exc:
        revert = decoder.from_exception(exc)
        if revert is None:
            raise
        raise revert from None
    raise AssertionError(f"transaction {HexBytes(tx_hash).to_0x_hex()} failed but its replay succeeded")


def decode_logs(contract: Contract, receipt: TxReceipt, name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for log in receipt["logs"]:
        if log["address"] != contract.address:
            continue
        for event in contract.events:
            try:
                decoded = event().process_log(log)
            except Exception:
                continue
            if name is None or decoded["event"] == name:
                out.append({"event": decoded["event"], "args": dict(decoded["args"]), "log": log})
            break
    return out


def deploy(node: Node, name: str, *args: Any, sender: str) -> Contract:
    return deploy_contract(node.w3, load_artifact(name), *args, sender=sender)


def deploy_ledger(
    node: Node,
    *,
    epoch_length: int = EPOCH,
    validity: int = VALIDITY,
    settlement_value: int = SETTLEMENT_VALUE,
) -> Ledger:
    acc = node.accounts
    actors = Actors(
        admin=acc[0],
        partner=acc[1],
        suspended=acc[2],
        accept_only=acc[3],
        issue_only=acc[4],
        customer=acc[5],
        stranger=acc[6],
        treasury=acc[7],
        pauser=acc[8],
    )
    artifact = load_artifact("LoyaltyLedger")
    contract = deploy(
        node,
        "LoyaltyLedger",
        "Coalition Points",
        "PTS",
        actors.admin,
        actors.treasury,
        actors.pauser,
        ADMIN_DELAY,
        epoch_length,
        validity,
        settlement_value,
        REVERSAL_WINDOW,
        sender=actors.admin,
    )
    ledger = Ledger(node, contract, artifact, actors, revert_decoder())
    for pid, operator, issue, accept in (
        (ACTIVE, actors.partner, True, True),
        (SUSPENDED, actors.suspended, True, True),
        (ACCEPT_ONLY, actors.accept_only, False, True),
        (ISSUE_ONLY, actors.issue_only, True, False),
    ):
        ledger.transact(
            "registerPartner", pid, operator, operator, issue, accept, ALLOWANCE, sender=actors.admin
        )
    ledger.transact("suspendPartner", SUSPENDED, sender=actors.admin)
    return ledger


def deploy_ledger_contract(
    node: Node,
    admin: str,
    *,
    treasury: str | None = None,
    pauser: str | None = None,
    admin_delay: int = ADMIN_DELAY,
    epoch_length: int = EPOCH,
    validity: int = VALIDITY,
    settlement_value: int = SETTLEMENT_VALUE,
    reversal_window: int = REVERSAL_WINDOW,
) -> Contract:
    """A bare LoyaltyLedger (no partners); ``admin`` also holds the roles not given to another key."""
    return deploy(
        node,
        "LoyaltyLedger",
        "Coalition Points",
        "PTS",
        admin,
        treasury or admin,
        pauser or admin,
        admin_delay,
        epoch_length,
        validity,
        settlement_value,
        reversal_window,
        sender=admin,
    )


def revert_decoder() -> RevertDecoder:
    return RevertDecoder(
        [load_artifact(name).abi for name in ("LoyaltyLedger", "ERC1271Wallet", "CoalitionTimelock")]
    )


@pytest.fixture(scope="module", params=["eth-tester", "anvil"])
def deployed(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """The standard ledger, deployed once per backend and module; the chain is restored afterwards."""
    node: Node = request.getfixturevalue("eth_tester_node" if request.param == "eth-tester" else "anvil_node")
    before = node.snapshot()
    yield deploy_ledger(node)
    node.revert(before)


@pytest.fixture
def ledger(deployed: Ledger) -> Iterator[Ledger]:
    """A ledger in its just-deployed state (default parameters, partners ACTIVE, SUSPENDED, ACCEPT_ONLY,
    ISSUE_ONLY), on each backend: the chain, clock included, is reverted to a snapshot after the test."""
    snapshot = deployed.node.snapshot()
    yield deployed
    deployed.node.revert(snapshot)


@pytest.fixture
def short_ledger(node: Node) -> Iterator[Ledger]:
    """A ledger of one-hour epochs, 3 valid (expiry within a few hours), on each backend; reverted after."""
    snapshot = node.snapshot()
    yield deploy_ledger(node, epoch_length=3600, validity=3)
    node.revert(snapshot)


# --------------------------------------------------------------------------- keys and signatures


def node_signer(node: Node, address: str) -> LocalSigner:
    """The key of one of the node's unlocked accounts (eth-tester's fixed keys, anvil's well-known dev
    mnemonic), so the chain layer can sign for the actors the fixtures registered."""
    if node.kind == "eth-tester":
        keys = node.w3.provider.ethereum_tester.backend.account_keys  # type: ignore[attr-defined]
        for key in keys:
            if key.public_key.to_checksum_address() == address:
                return LocalSigner(Account.from_key(key.to_bytes()))
        raise LookupError(address)
    for signer in dev_signers(node.w3.eth.chain_id, count=len(node.accounts)):
        if signer.address == address:
            return signer
    raise LookupError(address)


def new_partner(ledger: Ledger, partner_id: int = 10) -> LocalSigner:
    """A partner operator key generated for this test, funded and registered under ``partner_id``."""
    signer = LocalSigner(Account.create(secrets.token_hex(32)))
    fund(ledger.w3, signer.address, 10**20)
    ledger.transact(
        "registerPartner",
        partner_id,
        signer.address,
        signer.address,
        True,
        True,
        ALLOWANCE,
        sender=ledger.actors.admin,
    )
    return signer


def chain_ledger(ledger: Ledger, actor: str, **policy: Any) -> ChainLedger:
    """The chain layer's typed client for ``ledger``, sending as ``actor`` (one of its unlocked accounts)."""
    rpc = Rpc(ledger.w3, decoder=ledger.decoder)
    sender = Sender(rpc, node_signer(ledger.node, actor), policy=SendPolicy(**policy))
    return ChainLedger(rpc, ledger.address, sender=sender)


def new_customer() -> LocalAccount:
    """A customer key generated for this run only."""
    return Account.create(secrets.token_hex(32))


def random_ref() -> bytes:
    return secrets.token_bytes(32)


def expect_revert(excinfo: pytest.ExceptionInfo[ContractRevert], name: str, *args: Any) -> None:
    """Asserts the exact custom error and its arguments."""
    assert excinfo.value.name == name, f"expected {name}{args}, got {excinfo.value}"
    assert excinfo.value.arguments == tuple(args), f"expected {name}{args}, got {excinfo.value}"


# --------------------------------------------------------------------------- CI: a skip is a failure


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            reporter.write_line(f"CI: {skipped} test(s) skipped; a skip counts as a failure here", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- mirror databases

#: A PostgreSQL server for the mirror's tests (``.ci/run`` sets it; without it those tests skip, and CI
#: counts a skip as a failure).
POSTGRES_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL")


def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'mirror.db'}"
        return
    if POSTGRES_URL is None:
        pytest.skip("no PostgreSQL configured (set LOYALTY_TEST_POSTGRES_URL)")
    with scratch_schema(POSTGRES_URL, prefix="test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty mirror database, once per backend."""
    yield from database_url(request.param, tmp_path)


@pytest.fixture
def anvil_ledger(anvil_node: AnvilNode) -> Iterator[Ledger]:
    """The standard ledger freshly deployed on anvil (``deployment_block`` set); the chain is reverted
    afterwards."""
    snapshot = anvil_node.snapshot()
    first = anvil_node.w3.eth.block_number + 1
    ledger = deploy_ledger(anvil_node)
    ledger.deployment_block = first
    yield ledger
    anvil_node.revert(snapshot)


def table_digests(engine: Engine) -> dict[str, str]:
    """A SHA-256 of every mirror table's rows in key order: equal digests, equal mirrors."""
    digests = {}
    with engine.connect() as conn:
        for table in MirrorBase.metadata.sorted_tables:
            order = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*order)).all()
            digests[table.name] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return digests


def ledger_activity(ledger: Ledger, *, customers: int = 4, salt: int = 0) -> list[LocalAccount]:
    """One of every kind of ledger entry, sent through the chain layer: single and batch issues, a
    redemption, an allowance top-up and cut, a suspension and reactivation, a partner registered with a key
    made for this run and rotated by itself, a rights and a settlement address change, a settlement value
    change (between the issues and the redemption, so they carry different values), a settlement record,
    the transfer switch and a transfer, returns (a single issue and a batch item reversed), a refund of
    part of the redemption, a migration signed by both accounts and the admin's recovery of a lost key, a
    role grant and revocation, an admin handover begun and cancelled and an admin delay change scheduled
    and rolled back, an offboarding, a pause with time passing (a consent
    revoked during it) and the resume, and an issue after it. ``salt`` varies the amounts (two runs make
    different chains)."""
    people = [new_customer() for _ in range(customers)]
    # First: new_partner and fund send as the admin outside the admin client, which tracks its nonce.
    operator = new_partner(ledger, ROTATED_PARTNER)
    fund(ledger.w3, people[1].address, 10**18)
    admin = chain_ledger(ledger, ledger.actors.admin)
    treasury = chain_ledger(ledger, ledger.actors.treasury)
    pauser = chain_ledger(ledger, ledger.actors.pauser)
    partner = chain_ledger(ledger, ledger.actors.partner)
    pending = [
        partner.issue(c.address, Points(100 + i + salt), random_ref(), ReasonCode(1))
        for i, c in enumerate(people)
    ]
    pending.append(
        partner.issue_batch(
            [c.address for c in people],
            [Points(10 + salt)] * customers,
            [random_ref() for _ in people],
            ReasonCode(6),
        )
    )
    receipts = [p.wait() for p in pending]
    treasury.set_settlement_value(12 + salt).wait()
    consent = partner.sign_redemption(
        LocalSigner(people[0]), PartnerId(ACTIVE), Points(30 + salt), random_ref()
    )
    redemption = partner.redeem(consent).wait()
    admin.increase_partner_allowance(PartnerId(ACTIVE), Points(10**6 + salt)).wait()
    treasury.decrease_partner_allowance(PartnerId(ACTIVE), Points(1_000 + salt)).wait()
    pauser.suspend_partner(PartnerId(ISSUE_ONLY)).wait()
    admin.reactivate_partner(PartnerId(ISSUE_ONLY)).wait()
    # The partner of its own rotates its key itself; then the admin changes its rights and payee.
    rpc = Rpc(ledger.w3, decoder=ledger.decoder)
    own = ChainLedger(rpc, ledger.address, sender=Sender(rpc, operator))
    rotated_to = new_customer()
    own.rotate_partner_operator(PartnerId(ROTATED_PARTNER), rotated_to.address).wait()
    admin.set_partner_rights(PartnerId(ROTATED_PARTNER), can_issue=False, can_accept=True).wait()
    admin.set_partner_settlement_address(PartnerId(ROTATED_PARTNER), new_customer().address).wait()
    treasury.record_settlement(
        PartnerId(ACTIVE), points=-(50 + salt), value=-(500 + salt), payment_ref=random_ref()
    ).wait()
    admin.set_transfers_enabled(True).wait()
    holder = ChainLedger(rpc, ledger.address, sender=Sender(rpc, LocalSigner(people[1])))
    holder.transfer(people[2].address, Points(5 + salt)).wait()
    [single] = partner.issuances_in(receipts[customers - 1])
    partner.reverse_issuance(single, Points(20 + salt), random_ref()).wait()
    partner.reverse_issuance(partner.issuances_in(receipts[-1])[1], Points(4), random_ref()).wait()
    partner.refund_redemption(partner.redemption_in(redemption), Points(10 + salt), random_ref()).wait()
    moved, source = LocalSigner(new_customer()), LocalSigner(people[2])
    nonce, deadline = holder.nonce_of(source.address), ledger.node.timestamp() + 3600
    signatures = [
        holder.sign_migration(signer, source.address, moved.address, nonce, deadline)
        for signer in (source, moved)
    ]
    holder.migrate_account(source.address, moved.address, nonce, deadline, *signatures).wait()
    admin.recover_account(people[0].address, new_customer().address).wait()
    role = admin.pauser_role()
    admin.grant_role(role, ledger.actors.stranger).wait()
    admin.revoke_role(role, ledger.actors.stranger).wait()
    admin.begin_admin_transfer(ledger.actors.stranger).wait()
    admin.cancel_admin_transfer().wait()
    admin.change_admin_delay(2 * ADMIN_DELAY).wait()
    admin.rollback_admin_delay().wait()
    admin.offboard_partner(PartnerId(ACCEPT_ONLY)).wait()  # its allowance dropped, then its status
    pauser.pause().wait()
    holder.revoke_consent(holder.nonce_of(people[1].address, ACTIVE)).wait()  # works while paused
    ledger.node.advance_time(ACTIVITY_PAUSE + salt)
    pauser.unpause().wait()
    partner.issue(people[-1].address, Points(7 + salt), random_ref(), ReasonCode(2)).wait()
    return people


@pytest.fixture
def second_database(database: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the same kind as ``database`` (for a fresh index to compare with)."""
    kind = "sqlite" if database.startswith("sqlite") else "postgresql"
    (tmp_path / "second").mkdir()
    yield from database_url(kind, tmp_path / "second")


_ENGINES: list[Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Engines made by :func:`mirror` are disposed after each test (no connection outlives it)."""
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


def mirror_engine(url: str) -> Engine:
    engine = make_engine(url)
    _ENGINES.append(engine)
    return engine


def mirror(ledger: Ledger, url: str, **config: Any) -> Indexer:
    """An indexer of ``ledger`` into the database at ``url`` (close it, or use it as a context manager)."""
    return Indexer(
        ledger.w3,
        mirror_engine(url),
        ledger.address,
        deployment_block=ledger.deployment_block,
        config=IndexerConfig(**config),
    )


def fresh_digests(ledger: Ledger, url: str, **config: Any) -> dict[str, str]:
    """The table digests of a from-scratch index of the node's current chain into ``url``."""
    indexer = mirror(ledger, url, **config)
    try:
        indexer.sync()
        return table_digests(indexer.engine)
    finally:
        indexer.close()


#: The partner :func:`ledger_activity` registers (with a key made at runtime) and rotates.
ROTATED_PARTNER = 10
#: How long :func:`ledger_activity` keeps the ledger paused (two days: every later expiry moves by it).
ACTIVITY_PAUSE = 2 * 24 * 3600


# --------------------------------------------------------------------------- the HTTP service


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_service(
    request: pytest.FixtureRequest, anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The service over the scripted scenario (``tests/api_scenario.py``), once per module and database
    backend; the chain is reverted afterwards."""
    from api_scenario import build_service

    snapshot = anvil_node.snapshot()
    try:
        for url in database_url(request.param, tmp_path_factory.mktemp("api")):
            with build_service(anvil_node, url) as service:
                yield service
    finally:
        anvil_node.revert(snapshot)
