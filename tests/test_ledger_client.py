"""The typed Ledger client on both backends: every write and view round-trips against the v2 contract, and
every refusal is the contract's custom error decoded with its arguments, raised before anything is sent.
Returns, refunds and migrations present records the client builds from receipts or finds in the logs.

The fixture's keys: the admin (DEFAULT_ADMIN_ROLE), the treasury (TREASURY_ROLE), the pauser
(PAUSER_ROLE), the partners ACTIVE, SUSPENDED, ACCEPT_ONLY, ISSUE_ONLY, a customer and a stranger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account

from chain import (
    ContractRevert,
    EntryNotFound,
    IssuanceRecord,
    PermanentError,
    extension_address,
    load_artifact,
)
from chain._eip712 import typed_data_digest
from chain._ledger import (
    ConsentCancellation,
    EpochBalance,
    Issuance,
    Partner,
    PartnerStatus,
    PendingAdmin,
    PendingAdminDelay,
    Position,
    nonce_key,
    nonce_sequence,
)
from chain._ledger import Ledger as ChainLedger
from chain._rpc import Rpc
from chain._sender import Call, Sender
from chain._signer import LocalSigner
from chain._types import Epoch, NonceKey, PartnerId, Points, ReasonCode
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    ADMIN_DELAY,
    ALLOWANCE,
    EPOCH,
    ISSUE_ONLY,
    REVERSAL_WINDOW,
    SETTLEMENT_VALUE,
    SUSPENDED,
    VALIDITY,
    Ledger,
    chain_ledger,
    new_customer,
    random_ref,
)

PURCHASE = ReasonCode(1)
ZERO = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX64 = 2**64 - 1


def keyed(key: int, sequence: int = 0) -> int:
    return key << 64 | sequence


@dataclass
class Clients:
    ledger: Ledger
    admin: ChainLedger
    partner: ChainLedger
    suspended: ChainLedger
    accept_only: ChainLedger
    issue_only: ChainLedger
    customer: ChainLedger
    stranger: ChainLedger
    treasury: ChainLedger
    pauser: ChainLedger

    def customer_with_points(self, *amounts: int) -> LocalSigner:
        """A self-custodied customer (key generated for this run) holding ``amounts`` issued now."""
        customer = LocalSigner(new_customer())
        for amount in amounts:
            self.partner.issue(customer.address, Points(amount), random_ref(), PURCHASE).wait()
        return customer

    def own_client(self, signer: LocalSigner) -> ChainLedger:
        """A client sending as ``signer`` (funded for gas by the stranger's sender, so that no other
        client's nonces move behind its back): a self-custody customer's own calls."""
        funder = self.stranger.sender
        assert funder is not None
        funder.transact(Call(to=signer.address, value=10**18))
        rpc = Rpc(self.ledger.w3, decoder=self.ledger.decoder)
        return ChainLedger(rpc, self.ledger.address, sender=Sender(rpc, signer))

    def address_of(self, client: ChainLedger) -> str:
        assert client.sender is not None
        return client.sender.address


@pytest.fixture
def clients(ledger: Ledger) -> Clients:
    a = ledger.actors
    return Clients(
        ledger,
        admin=chain_ledger(ledger, a.admin),
        partner=chain_ledger(ledger, a.partner),
        suspended=chain_ledger(ledger, a.suspended),
        accept_only=chain_ledger(ledger, a.accept_only),
        issue_only=chain_ledger(ledger, a.issue_only),
        customer=chain_ledger(ledger, a.customer),
        stranger=chain_ledger(ledger, a.stranger),
        treasury=chain_ledger(ledger, a.treasury),
        pauser=chain_ledger(ledger, a.pauser),
    )


# --------------------------------------------------------------------------- issuing and the views after it


def test_issue_and_the_views_that_follow_it(clients: Clients) -> None:
    partner, customer = clients.partner, new_customer().address
    ref = random_ref()

    receipt = partner.issue(customer, Points(120), ref, PURCHASE, b"\x01" * 32).wait()

    assert receipt.succeeded and receipt.logs
    assert partner.balance_of(customer) == 120
    assert partner.live_balances(customer) == [EpochBalance(Epoch(0), Points(120))]
    assert partner.reference_used(PartnerId(ACTIVE), ref) is True
    info = partner.partner(PartnerId(ACTIVE))
    assert info == Partner(
        partner_id=PartnerId(ACTIVE),
        operator=clients.ledger.actors.partner,
        settlement=clients.ledger.actors.partner,
        status=PartnerStatus.ACTIVE,
        can_issue=True,
        can_accept=True,
        allowance=Points(ALLOWANCE - 120),  # what is left of it
        issued=Points(120),
        redeemed=Points(0),
        issued_value=120 * SETTLEMENT_VALUE,
        redeemed_value=0,
        reversed=Points(0),
        refunded=Points(0),
        reversed_value=0,
        refunded_value=0,
        settled_points=0,
        settled_value=0,
    )
    assert info.active is True
    assert partner.partner_position(PartnerId(ACTIVE)) == Position(-120, -120 * SETTLEMENT_VALUE)
    assert partner.partner_open_position(PartnerId(ACTIVE)) == Position(-120, -120 * SETTLEMENT_VALUE)
    assert partner.coalition_position() == partner.coalition_open_position() == Position(120, 1200)
    assert partner.outstanding_supply() == partner.total_supply() == partner.total_issued() == 120
    assert partner.ledger_sequence() > 0 and len(partner.ledger_head()) == 32
    assert (partner.name(), partner.symbol(), partner.decimals()) == ("Coalition Points", "PTS", 0)
    assert (partner.epoch_length(), partner.validity_duration()) == (EPOCH, VALIDITY)
    assert (partner.max_amount(), partner.max_allowance(), partner.max_settlement_value()) == (MAX64,) * 3
    assert partner.max_validity() == 120
    assert partner.current_epoch() == 0
    assert partner.reversal_window() == REVERSAL_WINDOW
    assert partner.extension() == extension_address(partner.address)
    assert partner.total_reversed() == partner.total_refunded() == 0
    # A view at an earlier block sees the ledger as it was then.
    assert partner.balance_of(customer, block=receipt.block_number - 1) == 0
    assert partner.partner(PartnerId(ACTIVE), block=receipt.block_number - 1).issued == 0


def test_issue_many_and_issue_batch(clients: Clients) -> None:
    partner = clients.partner
    items = [Issuance(new_customer().address, Points(n), random_ref(), PURCHASE) for n in (1, 2, 3)]
    assert all(p.wait().succeeded for p in partner.issue_many(items))
    recipients = [new_customer().address for _ in range(3)]
    amounts, item_refs = [Points(10), Points(20), Points(30)], [random_ref() for _ in range(3)]
    receipt = partner.issue_batch(recipients, amounts, item_refs, PURCHASE).wait()

    assert [partner.balance_of(i.to) for i in items] == [1, 2, 3]
    assert [partner.balance_of(r) for r in recipients] == [10, 20, 30]
    assert partner.partner(PartnerId(ACTIVE)).issued == 66
    root = ChainLedger.batch_tree(recipients, amounts, item_refs).root  # the batch's reference
    assert partner.reference_used(PartnerId(ACTIVE), root) is True
    assert [(i.ref, i.customer, i.amount, i.item_ref) for i in partner.issuances_in(receipt)] == [
        (root, r, a, ref) for r, a, ref in zip(recipients, amounts, item_refs, strict=True)
    ]
    with pytest.raises(PermanentError, match="a batch of 2 recipients, 1 amounts and 2 references"):
        ChainLedger.batch_tree(recipients[:2], amounts[:1], item_refs[:2])


# --------------------------------------------------------------------------- returns and refunds


def test_a_return_of_a_single_issue_and_of_a_batch_item(clients: Clients) -> None:
    partner, customer = clients.partner, new_customer().address
    receipt = partner.issue(customer, Points(100), random_ref(), PURCHASE).wait()
    [item] = partner.issuances_in(receipt)
    assert (item.partner_id, item.customer, item.amount, item.item_ref, item.proof) == (
        ACTIVE,
        customer,
        100,
        item.ref,
        (),
    )
    assert item.issued_at == partner.rpc.timestamp(receipt.block_number)
    return_ref = random_ref()

    reversal = partner.reverse_issuance(item, Points(30), return_ref).wait()

    assert reversal.succeeded
    assert partner.balance_of(customer) == 70
    assert (partner.total_reversed(), partner.reversed_of(item)) == (30, 30)
    assert partner.return_reference_used(PartnerId(ACTIVE), return_ref) is True
    info = partner.partner(PartnerId(ACTIVE))
    assert (info.reversed, info.reversed_value) == (30, 30 * SETTLEMENT_VALUE)

    # a batch item, found in the logs by the batch's root, or by its own reference and customer
    recipients = [new_customer().address for _ in range(3)]
    item_refs = [random_ref() for _ in range(3)]
    batch = partner.issue_batch(recipients, [Points(5), Points(6), Points(7)], item_refs, PURCHASE).wait()
    items = partner.issuances_in(batch)
    assert partner.find_issuances(PartnerId(ACTIVE), items[0].ref) == items
    assert partner.find_issuances(PartnerId(ACTIVE), items[0].ref, customer=recipients[2]) == [items[2]]
    assert partner.find_issuances(PartnerId(ACTIVE), item_refs[1], customer=recipients[1]) == [items[1]]
    assert partner.find_issuances(PartnerId(ACTIVE), item.ref, customer=customer) == [item]
    partner.reverse_issuance(items[1], Points(6), random_ref()).wait()
    assert partner.balance_of(recipients[1]) == 0
    assert partner.reversed_of(items[1]) == 6


def test_records_are_found_only_where_they_are(clients: Clients) -> None:
    partner = clients.partner
    customer = new_customer().address
    ref = random_ref()
    receipt = partner.issue(customer, Points(10), ref, PURCHASE).wait()
    with pytest.raises(EntryNotFound):
        partner.find_issuances(PartnerId(ISSUE_ONLY), ref)  # another partner's
    with pytest.raises(EntryNotFound):
        partner.find_issuances(PartnerId(ACTIVE), ref, from_block=receipt.block_number + 1)
    with pytest.raises(EntryNotFound):
        partner.find_issuances(PartnerId(ACTIVE), ref, customer=new_customer().address)
    with pytest.raises(EntryNotFound):
        partner.find_redemption(PartnerId(ACTIVE), ref)
    with pytest.raises(EntryNotFound):
        partner.redemption_in(receipt)  # an issue's receipt has no redemption
    switched = clients.admin.set_transfers_enabled(True).wait()
    with pytest.raises(EntryNotFound):
        partner.issuances_in(switched)
    # the deployment block bounds the search by default, and a client keeps it with another sender
    later = ChainLedger(partner.rpc, partner.address, deployment_block=receipt.block_number + 1)
    assert clients.stranger.sender is not None
    assert later.with_sender(clients.stranger.sender).deployment_block == receipt.block_number + 1
    with pytest.raises(EntryNotFound):
        later.find_issuances(PartnerId(ACTIVE), ref)
    assert later.find_issuances(PartnerId(ACTIVE), ref, from_block=0)[0].customer == customer


def test_a_refund_of_a_redemption(clients: Clients) -> None:
    partner = clients.partner
    customer = clients.customer_with_points(100)
    ref = random_ref()
    receipt = partner.redeem(partner.sign_redemption(customer, PartnerId(ACTIVE), Points(60), ref)).wait()
    record = partner.redemption_in(receipt)
    assert (record.partner_id, record.customer, record.ref, record.value) == (
        ACTIVE,
        customer.address,
        ref,
        SETTLEMENT_VALUE,
    )
    assert (record.epochs, record.amounts, record.amount) == ((0,), (60,), 60)
    assert partner.find_redemption(PartnerId(ACTIVE), ref) == record
    assert partner.find_redemption(PartnerId(ACTIVE), ref, customer=customer.address) == record
    refund_ref = random_ref()

    partner.refund_redemption(record, Points(25), refund_ref).wait()

    assert partner.balance_of(customer.address) == 65
    assert (partner.total_refunded(), partner.refunded_of(PartnerId(ACTIVE), ref)) == (25, 25)
    assert partner.refund_reference_used(PartnerId(ACTIVE), refund_ref) is True
    info = partner.partner(PartnerId(ACTIVE))
    assert (info.refunded, info.refunded_value) == (25, 25 * SETTLEMENT_VALUE)
    assert partner.partner_position(PartnerId(ACTIVE)) == Position(-100 + 60 - 25, (-100 + 35) * 10)


# --------------------------------------------------------------------------- migration and recovery


def test_a_migration_signed_by_both_accounts_and_a_recovery_by_the_admin(clients: Clients) -> None:
    source = clients.customer_with_points(40)
    target = LocalSigner(new_customer())
    anyone = clients.stranger
    nonce, deadline = anyone.nonce_of(source.address), anyone.rpc.timestamp() + 3600
    message = anyone.migration_message(source.address, target.address, nonce, deadline)
    assert anyone.migration_digest(source.address, target.address, nonce, deadline) == typed_data_digest(
        message
    )
    from_signature = anyone.sign_migration(source, source.address, target.address, nonce, deadline)
    to_signature = anyone.sign_migration(target, source.address, target.address, nonce, deadline)
    with pytest.raises(PermanentError, match="neither side of the migration"):
        anyone.sign_migration(LocalSigner(new_customer()), source.address, target.address, nonce, deadline)

    anyone.migrate_account(
        source.address, target.address, nonce, deadline, from_signature, to_signature
    ).wait()

    assert (anyone.balance_of(source.address), anyone.balance_of(target.address)) == (0, 40)
    assert anyone.nonce_of(source.address) == nonce + 1
    assert anyone.holder_of(source.address) == target.address
    fresh = new_customer().address  # the retired source can never be a target again
    clients.admin.recover_account(target.address, fresh).wait()
    assert (anyone.balance_of(target.address), anyone.balance_of(fresh)) == (0, 40)
    assert anyone.holder_of(source.address) == fresh
    call = clients.admin.call_of(
        "recoverAccount", source.address, target.address
    )  # to schedule on a timelock
    assert (
        str(clients.admin.decode_call(call.data))
        == f"recoverAccount(lost={source.address}, to={target.address})"
    )


# --------------------------------------------------------------------------- consents: keyed, revocable


def test_redeem_with_a_consent_keyed_by_the_partner_id(clients: Clients) -> None:
    customer = clients.customer_with_points(500)
    partner = clients.partner
    ref = random_ref()
    consent = partner.sign_redemption(customer, PartnerId(ACTIVE), Points(200), ref, deadline=2**40)
    first = keyed(ACTIVE)
    message = partner.redemption_message(customer.address, PartnerId(ACTIVE), Points(200), ref, first, 2**40)
    assert message["message"]["nonce"] == consent.nonce == first
    assert (nonce_key(consent.nonce), nonce_sequence(consent.nonce)) == (ACTIVE, 0)
    digest = partner.redemption_digest(customer.address, PartnerId(ACTIVE), Points(200), ref, first, 2**40)
    assert digest == typed_data_digest(message)

    partner.redeem(consent).wait()

    assert partner.balance_of(customer.address) == 300
    assert partner.nonce_of(customer.address, NonceKey(ACTIVE)) == keyed(ACTIVE, 1)
    assert partner.nonce_of(customer.address) == 0  # key 0 untouched
    assert partner.redemption_reference_used(PartnerId(ACTIVE), ref) is True
    info = partner.partner(PartnerId(ACTIVE))
    assert (info.redeemed, info.redeemed_value) == (200, 200 * SETTLEMENT_VALUE)


def test_an_outstanding_consent_at_one_partner_does_not_block_another(clients: Clients) -> None:
    customer = clients.customer_with_points(100)
    at_active = clients.partner.sign_redemption(customer, PartnerId(ACTIVE), Points(10), random_ref())
    at_accept_only = clients.accept_only.sign_redemption(
        customer, PartnerId(ACCEPT_ONLY), Points(20), random_ref()
    )
    assert (at_active.nonce, at_accept_only.nonce) == (keyed(ACTIVE), keyed(ACCEPT_ONLY))

    clients.accept_only.redeem(at_accept_only).wait()  # first the later one, at another partner
    clients.partner.redeem(at_active).wait()
    assert clients.partner.balance_of(customer.address) == 70

    # A caller-chosen key, and a nonce that must match the key it is given with.
    custom = clients.partner.sign_redemption(
        customer, PartnerId(ACTIVE), Points(5), random_ref(), nonce_key=NonceKey(7)
    )
    assert custom.nonce == keyed(7)
    clients.partner.redeem(custom).wait()
    assert clients.partner.nonce_of(customer.address, 7) == keyed(7, 1)
    with pytest.raises(PermanentError, match="belongs to key 7, not to key 8"):
        clients.partner.sign_redemption(
            customer, PartnerId(ACTIVE), Points(5), random_ref(), nonce=keyed(7, 1), nonce_key=NonceKey(8)
        )


def test_a_signed_cancellation_submitted_by_anyone_revokes_the_consent(clients: Clients) -> None:
    customer = clients.customer_with_points(100)
    consent = clients.partner.sign_redemption(customer, PartnerId(ACTIVE), Points(10), random_ref())
    cancellation = clients.partner.sign_cancellation(customer, consent.nonce)
    assert isinstance(cancellation, ConsentCancellation)
    assert (cancellation.customer, cancellation.nonce) == (customer.address, consent.nonce)
    message = clients.partner.cancellation_message(customer.address, consent.nonce)
    assert message["primaryType"] == "ConsentCancellation"
    # The contract's digest is the hash of the typed data built here.
    assert clients.partner.cancellation_digest(customer.address, consent.nonce) == typed_data_digest(message)

    receipt = clients.stranger.cancel_consent(cancellation).wait()  # gasless for the customer

    assert receipt.succeeded
    assert clients.partner.nonce_of(customer.address, ACTIVE) == keyed(ACTIVE, 1)
    with pytest.raises(ContractRevert) as excinfo:
        clients.partner.redeem(consent)
    assert (excinfo.value.name, excinfo.value.arguments) == (
        "InvalidAccountNonce",
        (customer.address, keyed(ACTIVE, 1)),
    )


def test_a_self_custody_customer_revokes_its_own_consent_even_while_paused(clients: Clients) -> None:
    signer = clients.customer_with_points(100)
    own = clients.own_client(signer)
    consent = clients.partner.sign_redemption(signer, PartnerId(ACTIVE), Points(10), random_ref())
    clients.pauser.pause().wait()

    own.revoke_consent(consent.nonce).wait()

    clients.pauser.unpause().wait()
    assert own.nonce_of(signer.address, ACTIVE) == keyed(ACTIVE, 1)
    with pytest.raises(ContractRevert) as excinfo:
        clients.partner.redeem(consent)
    assert excinfo.value.name == "InvalidAccountNonce"


# --------------------------------------------------------------------------- a partner's whole life


def test_a_partner_from_registration_to_offboarding(clients: Clients) -> None:
    admin, treasury, pauser = clients.admin, clients.treasury, clients.pauser
    pid = PartnerId(42)
    first_key = LocalSigner(Account.create())
    settlement = Account.create().address
    admin.register_partner(
        pid, first_key.address, settlement=settlement, can_accept=False, allowance=Points(1000)
    ).wait()
    admin.increase_partner_allowance(pid, Points(500)).wait()
    treasury.decrease_partner_allowance(pid, Points(200)).wait()
    admin.decrease_partner_allowance(pid, Points(100)).wait()
    admin.set_partner_rights(pid, can_issue=True, can_accept=True).wait()
    new_settlement = Account.create().address
    admin.set_partner_settlement_address(pid, new_settlement).wait()
    info = admin.partner(pid)
    assert (info.operator, info.settlement, info.allowance, info.can_accept) == (
        first_key.address,
        new_settlement,
        1200,
        True,
    )

    # Rotation by the admin, then by the partner's own (new) key: id, allowance and counters stay.
    second_key = LocalSigner(Account.create())
    admin.rotate_partner_operator(pid, second_key.address).wait()
    third_key = Account.create().address
    clients.own_client(second_key).rotate_partner_operator(pid, third_key).wait()
    assert admin.partner(pid).operator == third_key
    assert admin.partner_id_of(first_key.address) == admin.partner_id_of(second_key.address) == pid
    assert admin.partner(pid).allowance == 1200

    pauser.suspend_partner(pid).wait()
    assert admin.partner(pid).status is PartnerStatus.SUSPENDED and not admin.partner(pid).active
    admin.reactivate_partner(pid).wait()
    assert admin.partner(pid).active
    admin.offboard_partner(pid).wait()
    final = admin.partner(pid)
    assert (final.status, final.allowance, final.active) == (PartnerStatus.OFFBOARDED, 0, False)
    assert pid in admin.partner_ids()


def test_settlement_values_settlements_and_positions(clients: Clients) -> None:
    partner, treasury = clients.partner, clients.treasury
    customer = clients.customer_with_points(100)  # valued at SETTLEMENT_VALUE (10)
    treasury.set_settlement_value(7).wait()
    assert treasury.settlement_value() == 7
    consent = partner.sign_redemption(customer, PartnerId(ACTIVE), Points(40), random_ref())
    partner.redeem(consent).wait()  # valued at 7: the change applies forward only
    info = partner.partner(PartnerId(ACTIVE))
    assert (info.issued_value, info.redeemed_value) == (1000, 280)
    assert partner.partner_position(PartnerId(ACTIVE)) == Position(-60, -720)

    ref = random_ref()
    treasury.record_settlement(PartnerId(ACTIVE), points=-60, value=-720, payment_ref=ref).wait()

    assert partner.settlement_reference_used(PartnerId(ACTIVE), ref) is True
    info = partner.partner(PartnerId(ACTIVE))
    assert (info.settled_points, info.settled_value) == (-60, -720)
    assert partner.partner_open_position(PartnerId(ACTIVE)) == Position(0, 0)
    assert partner.partner_position(PartnerId(ACTIVE)) == Position(-60, -720)  # history stays
    ids = partner.partner_ids()
    for view in ("partner_position", "partner_open_position"):
        positions = [getattr(partner, view)(p) for p in ids]
        coalition = (
            partner.coalition_position() if view == "partner_position" else partner.coalition_open_position()
        )
        assert sum(p.net_points for p in positions) + coalition.net_points == 0
        assert sum(p.net_value for p in positions) + coalition.net_value == 0


def test_the_ledger_clock_stands_still_while_paused(clients: Clients) -> None:
    pauser, node = clients.pauser, clients.ledger.node
    genesis = pauser.genesis_timestamp()
    assert pauser.paused_duration() == 0
    pause = pauser.pause().wait()
    assert pauser.paused() is True
    node.advance_time(1000)
    clock = pauser.ledger_clock()
    assert clock == pauser.ledger_clock(block=pause.block_number)
    assert pauser.paused_duration() >= 1000
    assert pauser.epoch_expires_at(Epoch(0)) == genesis + pauser.paused_duration() + VALIDITY * EPOCH
    resumed = pauser.unpause().wait()
    paused_for = pauser.paused_duration(block=resumed.block_number)
    assert paused_for == pauser.rpc.timestamp(resumed.block_number) - pauser.rpc.timestamp(pause.block_number)
    assert pauser.ledger_clock(block=resumed.block_number) == clock
    assert pauser.paused_duration(block=pause.block_number - 1) == 0


def test_switches_sweeps_and_expiry(clients: Clients) -> None:
    admin, partner = clients.admin, clients.partner
    admin.set_transfers_enabled(True).wait()
    assert admin.transfers_enabled() is True
    customer = clients.customer_with_points(50)
    clients.ledger.node.advance_time(VALIDITY * EPOCH)
    assert partner.balance_of(customer.address) == 0 and partner.pending_expiry() == 50
    assert partner.is_epoch_expired(Epoch(0))
    clients.stranger.sweep_expired([customer.address]).wait()
    assert partner.total_expired() == 50 and partner.pending_expiry() == 0
    assert partner.coalition_position() == Position(50, 50 * SETTLEMENT_VALUE)


# --------------------------------------------------------------------------- roles and the admin handover


def test_roles_and_the_two_step_admin_handover(clients: Clients) -> None:
    admin, ledger = clients.admin, clients.ledger
    a = ledger.actors
    treasury_role, pauser_role, admin_role = admin.treasury_role(), admin.pauser_role(), admin.admin_role()
    assert admin_role == bytes(32)
    assert admin.default_admin() == a.admin
    assert admin.has_role(treasury_role, a.treasury) and admin.has_role(pauser_role, a.pauser)

    backup = Account.create().address
    admin.grant_role(pauser_role, backup).wait()
    assert admin.has_role(pauser_role, backup)
    admin.revoke_role(pauser_role, backup).wait()
    assert not admin.has_role(pauser_role, backup)
    clients.pauser.renounce_role(pauser_role, a.pauser).wait()
    assert not admin.has_role(pauser_role, a.pauser)

    assert admin.default_admin_delay() == ADMIN_DELAY
    assert admin.pending_default_admin() == PendingAdmin(ZERO, 0)
    begun = admin.begin_admin_transfer(a.stranger).wait()
    schedule = clients.ledger.w3.eth.get_block(begun.block_number)["timestamp"] + ADMIN_DELAY
    assert admin.pending_default_admin() == PendingAdmin(a.stranger, schedule)
    admin.cancel_admin_transfer().wait()
    assert admin.pending_default_admin() == PendingAdmin(ZERO, 0)
    admin.begin_admin_transfer(a.stranger).wait()
    clients.ledger.node.advance_time(ADMIN_DELAY + 1)
    clients.stranger.accept_admin_transfer().wait()
    assert admin.default_admin() == a.stranger
    assert not admin.has_role(admin_role, a.admin)

    new_admin = clients.stranger
    new_admin.change_admin_delay(3600).wait()
    pending = new_admin.pending_default_admin_delay()
    assert isinstance(pending, PendingAdminDelay) and pending.new_delay == 3600 and pending.schedule > 0
    new_admin.rollback_admin_delay().wait()
    assert new_admin.pending_default_admin_delay() == PendingAdminDelay(0, 0)


def test_a_read_only_client_refuses_to_write(clients: Clients) -> None:
    reader = ChainLedger(clients.partner.rpc, clients.partner.address)
    with pytest.raises(PermanentError, match="read-only"):
        reader.pause()


def test_calls_decode_back_to_their_function_and_arguments(clients: Clients) -> None:
    ledger = clients.admin
    operator = Account.create().address
    call = ledger.call_of("registerPartner", 7, operator, operator, True, False, 1000)
    decoded = ledger.decode_call(call.data)
    assert decoded is not None
    assert decoded.function == "registerPartner"
    assert decoded.arguments == (
        ("partnerId", 7),
        ("operator", operator),
        ("settlement", operator),
        ("canIssue", True),
        ("canAccept", False),
        ("issuanceAllowance", 1000),
    )
    assert str(decoded) == (
        f"registerPartner(partnerId=7, operator={operator}, settlement={operator}, canIssue=true, "
        "canAccept=false, issuanceAllowance=1000)"
    )
    assert ledger.decode_call(b"\x12\x34\x56\x78") is None
    # An overloaded function needs its signature.
    assert ledger.function("nonces(address,uint192)").inputs == ["address", "uint192"]
    with pytest.raises(PermanentError, match="overloaded one needs its signature"):
        ledger.encode("nonces", operator)


# --------------------------------------------------------------------------- every error, every refusal


Case = Callable[[Clients], tuple[Callable[[], Any], tuple[Any, ...]]]
#: One case per custom error of the ABI (the coverage check below counts them).
ERROR_CASES: dict[str, Case] = {}
#: Further refusals of the client's methods, named "method: situation", each with its exact error.
REFUSALS: dict[str, tuple[str, Case]] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        ERROR_CASES[name] = fn
        return fn

    return register


def refusal(title: str, error: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        REFUSALS[title] = (error, fn)
        return fn

    return register


def _consent(c: Clients, customer: LocalSigner, amount: int, **kw: Any) -> Any:
    return c.partner.sign_redemption(customer, PartnerId(ACTIVE), Points(amount), random_ref(), **kw)


def _with_signature(consent: Any, signature: bytes) -> Any:
    return replace(consent, signature=signature)


def _raw(client: ChainLedger, function: str, *args: Any) -> Callable[[], Any]:
    sender = client.sender
    assert sender is not None
    call = client.call_of(function, *args)
    return lambda: sender.submit(call)


def _offboarded(c: Clients, pid: int = ISSUE_ONLY) -> PartnerId:
    c.admin.offboard_partner(PartnerId(pid)).wait()
    return PartnerId(pid)


@case("LedgerZeroAmount")
def _(c: Clients) -> Any:
    return lambda: c.partner.issue(new_customer().address, Points(0), random_ref(), PURCHASE), ()


@case("LedgerAmountTooLarge")
def _(c: Clients) -> Any:
    top = c.partner.max_amount()
    return lambda: c.partner.issue(new_customer().address, Points(top + 1), random_ref(), PURCHASE), (
        top + 1,
        top,
    )


@case("LedgerReferenceUsed")
def _(c: Clients) -> Any:
    ref = random_ref()
    c.partner.issue(new_customer().address, Points(1), ref, PURCHASE).wait()
    return lambda: c.partner.issue(new_customer().address, Points(1), ref, PURCHASE), (ACTIVE, ref)


@case("LedgerAllowanceExceeded")
def _(c: Clients) -> Any:
    c.admin.decrease_partner_allowance(PartnerId(ISSUE_ONLY), Points(ALLOWANCE - 5)).wait()
    return lambda: c.issue_only.issue(new_customer().address, Points(6), random_ref(), PURCHASE), (
        ISSUE_ONLY,
        5,
        6,
    )


@case("LedgerPartnerSuspended")
def _(c: Clients) -> Any:
    return lambda: c.suspended.issue(new_customer().address, Points(1), random_ref(), PURCHASE), (SUSPENDED,)


@case("LedgerPartnerCannotIssue")
def _(c: Clients) -> Any:
    return lambda: c.accept_only.issue(new_customer().address, Points(1), random_ref(), PURCHASE), (
        ACCEPT_ONLY,
    )


@case("LedgerPartnerCannotAccept")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = c.issue_only.sign_redemption(customer, PartnerId(ISSUE_ONLY), Points(5), random_ref())
    return lambda: c.issue_only.redeem(consent), (ISSUE_ONLY,)


@case("LedgerUnknownPartner")
def _(c: Clients) -> Any:
    stranger = c.ledger.actors.stranger
    return lambda: c.stranger.issue(new_customer().address, Points(1), random_ref(), PURCHASE), (stranger,)


@case("LedgerEmptyBatch")
def _(c: Clients) -> Any:
    return lambda: c.partner.issue_batch([], [], [], PURCHASE), ()


@case("LedgerBatchLengthMismatch")
def _(c: Clients) -> Any:
    to = [new_customer().address, new_customer().address]
    return lambda: c.partner.issue_batch(to, [Points(1)], [random_ref()] * 3, PURCHASE), (2, 1, 3)


@case("LedgerPartnerExists")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(
        PartnerId(ACTIVE), Account.create().address, allowance=Points(1)
    ), (ACTIVE,)


@case("LedgerPartnerNotFound")
def _(c: Clients) -> Any:
    return lambda: c.admin.increase_partner_allowance(PartnerId(99), Points(1)), (99,)


@case("LedgerPartnerNotSuspended")
def _(c: Clients) -> Any:
    return lambda: c.admin.reactivate_partner(PartnerId(ACTIVE)), (ACTIVE,)


@case("LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.issue_only.issue(new_customer().address, Points(1), random_ref(), PURCHASE), (pid,)


@case("LedgerInvalidPartnerId")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(PartnerId(0), Account.create().address, allowance=Points(1)), (0,)


@case("LedgerInvalidOperator")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(
        PartnerId(50), ZERO, settlement=c.ledger.actors.stranger, allowance=Points(1)
    ), (ZERO,)


@case("LedgerOperatorCannotHoldRole")
def _(c: Clients) -> Any:
    operator = c.ledger.actors.partner
    return lambda: c.admin.grant_role(c.admin.pauser_role(), operator), (operator, ACTIVE)


@case("LedgerUnauthorizedRotation")
def _(c: Clients) -> Any:
    other = c.ledger.actors.accept_only  # another partner's operator
    return lambda: c.accept_only.rotate_partner_operator(PartnerId(ACTIVE), Account.create().address), (
        other,
        ACTIVE,
    )


@case("LedgerRotatedOperator")
def _(c: Clients) -> Any:
    c.admin.rotate_partner_operator(PartnerId(ACTIVE), Account.create().address).wait()
    old = c.ledger.actors.partner
    return lambda: c.partner.issue(new_customer().address, Points(1), random_ref(), PURCHASE), (old, ACTIVE)


@case("LedgerInvalidSettlementAddress")
def _(c: Clients) -> Any:
    op = Account.create().address
    return lambda: c.admin.register_partner(PartnerId(51), op, settlement=ZERO, allowance=Points(1)), (ZERO,)


@case("LedgerInvalidSettlementValue")
def _(c: Clients) -> Any:
    return lambda: c.treasury.set_settlement_value(2**64), (2**64, MAX64)


@case("AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.stranger.pause(), (c.ledger.actors.stranger, c.admin.pauser_role())


@case("AccessControlBadConfirmation")
def _(c: Clients) -> Any:
    return lambda: c.admin.renounce_role(c.admin.pauser_role(), c.ledger.actors.stranger), ()


@case("AccessControlEnforcedDefaultAdminRules")
def _(c: Clients) -> Any:
    return lambda: c.admin.grant_role(c.admin.admin_role(), c.ledger.actors.stranger), ()


@case("AccessControlEnforcedDefaultAdminDelay")
def _(c: Clients) -> Any:
    receipt = c.admin.begin_admin_transfer(c.ledger.actors.stranger).wait()
    schedule = c.ledger.w3.eth.get_block(receipt.block_number)["timestamp"] + ADMIN_DELAY
    return lambda: c.stranger.accept_admin_transfer(), (schedule,)


@case("AccessControlInvalidDefaultAdmin")
def _(c: Clients) -> Any:
    c.admin.begin_admin_transfer(c.ledger.actors.stranger).wait()
    return lambda: c.customer.accept_admin_transfer(), (c.ledger.actors.customer,)


@case("ExpectedPause")
def _(c: Clients) -> Any:
    return lambda: c.pauser.unpause(), ()


@case("EnforcedPause")
def _(c: Clients) -> Any:
    c.pauser.pause().wait()
    return lambda: c.partner.issue(new_customer().address, Points(1), random_ref(), PURCHASE), ()


@case("LedgerTransfersDisabled")
def _(c: Clients) -> Any:
    return lambda: c.customer.transfer(new_customer().address, Points(1)), ()


@case("LedgerInsufficientBalance")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 11)
    return lambda: c.partner.redeem(consent), (customer.address, 10, 11)


@case("LedgerExpiredSignature")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 5, deadline=1)
    return lambda: c.partner.redeem(consent), (1,)


@case("LedgerInvalidSigner")
def _(c: Clients) -> Any:
    customer, impostor = c.customer_with_points(10), LocalSigner(new_customer())
    consent = _consent(c, customer, 5)
    message = c.partner.redemption_message(
        customer.address, PartnerId(ACTIVE), Points(5), consent.ref, consent.nonce, consent.deadline
    )
    forged = impostor.sign_typed_data(message)  # the customer's consent, signed by someone else
    return lambda: c.partner.redeem(_with_signature(consent, forged)), (customer.address, impostor.address)


@case("InvalidAccountNonce")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 5, nonce=keyed(ACTIVE, 1))
    return lambda: c.partner.redeem(consent), (customer.address, keyed(ACTIVE))


@case("ECDSAInvalidSignatureS")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 5)
    sig = consent.signature
    high_s = (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
    malleated = sig[:32] + high_s + bytes([55 - sig[64]])
    return lambda: c.partner.redeem(_with_signature(consent, malleated)), (high_s,)


@case("ECDSAInvalidSignatureLength")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 5)
    return lambda: c.partner.redeem(_with_signature(consent, consent.signature[:64])), (64,)


@case("ECDSAInvalidSignature")
def _(c: Clients) -> Any:
    customer = c.customer_with_points(10)
    consent = _consent(c, customer, 5)
    no_signer = consent.signature[:64] + bytes([29])  # v outside {27, 28}: recovers no address
    return lambda: c.partner.redeem(_with_signature(consent, no_signer)), ()


def _transfers_on(c: Clients) -> LocalSigner:
    c.admin.set_transfers_enabled(True).wait()
    c.partner.issue(c.ledger.actors.customer, Points(100), random_ref(), PURCHASE).wait()
    return LocalSigner(new_customer())


@case("ERC20InvalidSpender")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _raw(c.customer, "approve", ZERO, 1), (ZERO,)


@case("ERC20InvalidReceiver")
def _(c: Clients) -> Any:
    return lambda: c.partner.issue(ZERO, Points(1), random_ref(), PURCHASE), (ZERO,)


@case("ERC20InvalidSender")
def _(c: Clients) -> Any:
    _transfers_on(c)  # a zero-value transferFrom of the zero address would otherwise look like a mint
    return _raw(c.stranger, "transferFrom", ZERO, c.ledger.actors.stranger, 0), (ZERO,)


@case("ERC20InsufficientAllowance")
def _(c: Clients) -> Any:
    _transfers_on(c)
    call = _raw(c.stranger, "transferFrom", c.ledger.actors.customer, c.ledger.actors.stranger, 1)
    return call, (c.ledger.actors.stranger, 0, 1)


@case("ERC20InsufficientBalance")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _raw(c.customer, "transferAtEpoch", 0, c.ledger.actors.stranger, 101), (
        c.ledger.actors.customer,
        100,
        101,
    )


@case("LedgerFutureEpoch")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _raw(c.customer, "transferAtEpoch", 1, c.ledger.actors.stranger, 1), (1, 0)


@case("ERC7818TransferredExpiredToken")
def _(c: Clients) -> Any:
    _transfers_on(c)
    c.ledger.node.advance_time(VALIDITY * EPOCH)
    return _raw(c.customer, "transferAtEpoch", 0, c.ledger.actors.stranger, 1), (c.ledger.actors.customer, 0)


@case("LedgerInvalidReversalWindow")
def _(c: Clients) -> Any:
    artifact = load_artifact("LoyaltyLedger")
    admin = c.ledger.actors.admin
    args = encode(
        ["string", "string", "address", "address", "address", "uint48"] + ["uint256"] * 4,
        ["P", "P", admin, admin, admin, 0, EPOCH, VALIDITY, 1, 2**64],  # a window beyond 64 bits
    )
    sender = c.admin.sender
    assert sender is not None
    code = bytes.fromhex(artifact.bytecode.removeprefix("0x"))
    return lambda: sender.submit(Call(to=None, data=code + args)), (2**64, 2**64 - 1)


@case("LedgerInvalidConfiguration")
def _(c: Clients) -> Any:
    artifact = load_artifact("LoyaltyLedger")
    admin = c.ledger.actors.admin
    args = encode(
        ["string", "string", "address", "address", "address", "uint48"] + ["uint256"] * 4,
        ["P", "P", admin, admin, admin, 0, EPOCH, 121, 1, REVERSAL_WINDOW],  # validity above MAX_VALIDITY
    )
    sender = c.admin.sender
    assert sender is not None
    code = bytes.fromhex(artifact.bytecode.removeprefix("0x"))
    return lambda: sender.submit(Call(to=None, data=code + args)), (EPOCH, 121)


def _issued(c: Clients, amount: int = 10) -> IssuanceRecord:
    receipt = c.partner.issue(new_customer().address, Points(amount), random_ref(), PURCHASE).wait()
    [item] = c.partner.issuances_in(receipt)
    return item


def _redeemed(c: Clients, amount: int = 5) -> Any:
    customer = c.customer_with_points(amount)
    return c.partner.redemption_in(c.partner.redeem(_consent(c, customer, amount)).wait())


@case("LedgerIssuanceNotFound")
def _(c: Clients) -> Any:
    item = _issued(c)
    return lambda: c.issue_only.reverse_issuance(item, Points(1), random_ref()), (ISSUE_ONLY, item.ref)


@case("LedgerReversalWindowClosed")
def _(c: Clients) -> Any:
    item = _issued(c)
    c.ledger.node.advance_time(REVERSAL_WINDOW + 1)
    return lambda: c.partner.reverse_issuance(item, Points(1), random_ref()), (
        item.ref,
        item.issued_at + REVERSAL_WINDOW,
    )


@case("LedgerReversalExceedsIssuance")
def _(c: Clients) -> Any:
    item = _issued(c, 10)
    return lambda: c.partner.reverse_issuance(item, Points(11), random_ref()), (item.ref, 10, 0, 11)


@case("LedgerRedemptionNotFound")
def _(c: Clients) -> Any:
    record = _redeemed(c)
    return lambda: c.accept_only.refund_redemption(record, Points(1), random_ref()), (ACCEPT_ONLY, record.ref)


@case("LedgerRefundExceedsRedemption")
def _(c: Clients) -> Any:
    record = _redeemed(c, 5)
    return lambda: c.partner.refund_redemption(record, Points(6), random_ref()), (record.ref, 5, 0, 6)


@case("LedgerInvalidMigration")
def _(c: Clients) -> Any:
    account = c.customer_with_points(5).address
    return lambda: c.admin.recover_account(account, account), (account, account)


@case("LedgerExtensionOnly")
def _(c: Clients) -> Any:
    # the extension's code called on its own, not through the ledger's fallback
    direct = ChainLedger(c.admin.rpc, c.admin.extension(), sender=c.admin.sender)
    return _raw(direct, "setTransfersEnabled", True), ()


#: Errors the ledger inherits but cannot raise, and why.
UNREACHABLE = {
    "ERC20InvalidApprover": "approve() is always by msg.sender",
    "InvalidShortString": "the EIP-712 name and version are stored with the fallback, which never reverts",
    "StringTooLong": "same: ShortStrings.toShortStringWithFallback never reverts",
    "SafeCastOverflowedUintDowncast": "OpenZeppelin casts block.timestamp to uint48: fine for 8.9M years",
}


# ---- further refusals of the new client methods


@refusal("increase_partner_allowance: not the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    treasury = c.address_of(c.treasury)
    return lambda: c.treasury.increase_partner_allowance(PartnerId(ACTIVE), Points(1)), (
        treasury,
        c.admin.admin_role(),
    )


@refusal("increase_partner_allowance: above MAX_ALLOWANCE", "LedgerAmountTooLarge")
def _(c: Clients) -> Any:
    return lambda: c.admin.increase_partner_allowance(PartnerId(ACTIVE), Points(MAX64)), (
        MAX64,
        MAX64 - ALLOWANCE,
    )


@refusal("increase_partner_allowance: offboarded", "LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.admin.increase_partner_allowance(pid, Points(1)), (pid,)


@refusal("increase_partner_allowance: zero", "LedgerZeroAmount")
def _(c: Clients) -> Any:
    return lambda: c.admin.increase_partner_allowance(PartnerId(ACTIVE), Points(0)), ()


@refusal("decrease_partner_allowance: the pauser", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    pauser = c.address_of(c.pauser)
    return lambda: c.pauser.decrease_partner_allowance(PartnerId(ACTIVE), Points(1)), (
        pauser,
        c.admin.admin_role(),
    )


@refusal("decrease_partner_allowance: more than what is left", "LedgerAllowanceExceeded")
def _(c: Clients) -> Any:
    return lambda: c.treasury.decrease_partner_allowance(PartnerId(ACTIVE), Points(ALLOWANCE + 1)), (
        ACTIVE,
        ALLOWANCE,
        ALLOWANCE + 1,
    )


@refusal("rotate_partner_operator: to a role holder", "LedgerInvalidOperator")
def _(c: Clients) -> Any:
    treasury = c.ledger.actors.treasury
    return lambda: c.admin.rotate_partner_operator(PartnerId(ACTIVE), treasury), (treasury,)


@refusal("rotate_partner_operator: to another partner's key", "LedgerInvalidOperator")
def _(c: Clients) -> Any:
    other = c.ledger.actors.issue_only
    return lambda: c.partner.rotate_partner_operator(PartnerId(ACTIVE), other), (other,)


@refusal("rotate_partner_operator: a suspended partner's own key", "LedgerUnauthorizedRotation")
def _(c: Clients) -> Any:
    key = c.ledger.actors.suspended
    return lambda: c.suspended.rotate_partner_operator(PartnerId(SUSPENDED), Account.create().address), (
        key,
        SUSPENDED,
    )


@refusal("rotate_partner_operator: offboarded", "LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.admin.rotate_partner_operator(pid, Account.create().address), (pid,)


@refusal("set_partner_rights: the treasury", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.treasury.set_partner_rights(PartnerId(ACTIVE), can_issue=False, can_accept=False), (
        c.address_of(c.treasury),
        c.admin.admin_role(),
    )


@refusal("set_partner_rights: offboarded", "LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.admin.set_partner_rights(pid, can_issue=True, can_accept=True), (pid,)


@refusal("set_partner_settlement_address: zero", "LedgerInvalidSettlementAddress")
def _(c: Clients) -> Any:
    return lambda: c.admin.set_partner_settlement_address(PartnerId(ACTIVE), ZERO), (ZERO,)


@refusal("set_partner_settlement_address: unknown partner", "LedgerPartnerNotFound")
def _(c: Clients) -> Any:
    return lambda: c.admin.set_partner_settlement_address(PartnerId(77), Account.create().address), (77,)


@refusal("suspend_partner: the treasury", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.treasury.suspend_partner(PartnerId(ACTIVE)), (
        c.address_of(c.treasury),
        c.admin.admin_role(),
    )


@refusal("suspend_partner: suspended already", "LedgerPartnerSuspended")
def _(c: Clients) -> Any:
    return lambda: c.pauser.suspend_partner(PartnerId(SUSPENDED)), (SUSPENDED,)


@refusal("reactivate_partner: the pauser", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.pauser.reactivate_partner(PartnerId(SUSPENDED)), (c.address_of(c.pauser), bytes(32))


@refusal("reactivate_partner: offboarded", "LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.admin.reactivate_partner(pid), (pid,)


@refusal("offboard_partner: twice", "LedgerPartnerOffboarded")
def _(c: Clients) -> Any:
    pid = _offboarded(c)
    return lambda: c.admin.offboard_partner(pid), (pid,)


@refusal("offboard_partner: the pauser", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.pauser.offboard_partner(PartnerId(ACTIVE)), (c.address_of(c.pauser), bytes(32))


@refusal("set_settlement_value: the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.admin.set_settlement_value(7), (c.address_of(c.admin), c.admin.treasury_role())


@refusal("record_settlement: the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.admin.record_settlement(
        PartnerId(ACTIVE), points=1, value=1, payment_ref=random_ref()
    ), (
        c.address_of(c.admin),
        c.admin.treasury_role(),
    )


@refusal("record_settlement: nothing settled", "LedgerZeroAmount")
def _(c: Clients) -> Any:
    return lambda: c.treasury.record_settlement(
        PartnerId(ACTIVE), points=0, value=0, payment_ref=random_ref()
    ), ()


@refusal("record_settlement: payment reference used", "LedgerReferenceUsed")
def _(c: Clients) -> Any:
    ref = random_ref()
    c.treasury.record_settlement(PartnerId(ACTIVE), points=1, value=10, payment_ref=ref).wait()
    return lambda: c.treasury.record_settlement(PartnerId(ACTIVE), points=2, value=20, payment_ref=ref), (
        ACTIVE,
        ref,
    )


@refusal("record_settlement: too many points", "LedgerAmountTooLarge")
def _(c: Clients) -> Any:
    return lambda: c.treasury.record_settlement(
        PartnerId(ACTIVE), points=-(2**96), value=0, payment_ref=random_ref()
    ), (2**96, 2**96 - 1)


@refusal("record_settlement: unknown partner", "LedgerPartnerNotFound")
def _(c: Clients) -> Any:
    return lambda: c.treasury.record_settlement(PartnerId(77), points=1, value=1, payment_ref=random_ref()), (
        77,
    )


@refusal("pause: the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.admin.pause(), (c.address_of(c.admin), c.admin.pauser_role())


@refusal("set_transfers_enabled: the pauser", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.pauser.set_transfers_enabled(True), (c.address_of(c.pauser), bytes(32))


@refusal("revoke_role: the default admin role", "AccessControlEnforcedDefaultAdminRules")
def _(c: Clients) -> Any:
    return lambda: c.admin.revoke_role(c.admin.admin_role(), c.ledger.actors.admin), ()


@refusal("renounce_role: the default admin without a handover", "AccessControlEnforcedDefaultAdminDelay")
def _(c: Clients) -> Any:
    return lambda: c.admin.renounce_role(c.admin.admin_role(), c.ledger.actors.admin), (0,)


@refusal("begin_admin_transfer: to a partner's operator", "LedgerOperatorCannotHoldRole")
def _(c: Clients) -> Any:
    operator = c.ledger.actors.partner
    return lambda: c.admin.begin_admin_transfer(operator), (operator, ACTIVE)


@refusal("begin_admin_transfer: not the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.treasury.begin_admin_transfer(c.ledger.actors.stranger), (
        c.address_of(c.treasury),
        bytes(32),
    )


@refusal("change_admin_delay: not the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.pauser.change_admin_delay(60), (c.address_of(c.pauser), bytes(32))


@refusal("cancel_consent: signed by someone else", "LedgerInvalidSigner")
def _(c: Clients) -> Any:
    customer, impostor = LocalSigner(new_customer()), LocalSigner(new_customer())
    nonce = keyed(ACTIVE)
    forged = impostor.sign_typed_data(c.stranger.cancellation_message(customer.address, nonce))
    cancellation = ConsentCancellation(customer.address, nonce, forged)
    return lambda: c.stranger.cancel_consent(cancellation), (customer.address, impostor.address)


@refusal("cancel_consent: not the next nonce", "InvalidAccountNonce")
def _(c: Clients) -> Any:
    customer = LocalSigner(new_customer())
    cancellation = c.stranger.sign_cancellation(customer, keyed(ACTIVE, 1))
    return lambda: c.stranger.cancel_consent(cancellation), (customer.address, keyed(ACTIVE))


@refusal("reverse_issuance: the return reference used", "LedgerReferenceUsed")
def _(c: Clients) -> Any:
    item, ref = _issued(c), random_ref()
    c.partner.reverse_issuance(item, Points(1), ref).wait()
    return lambda: c.partner.reverse_issuance(item, Points(1), ref), (ACTIVE, ref)


@refusal("reverse_issuance: a forged proof", "LedgerIssuanceNotFound")
def _(c: Clients) -> Any:
    item = replace(_issued(c), proof=(random_ref(),))
    return lambda: c.partner.reverse_issuance(item, Points(1), random_ref()), (ACTIVE, item.ref)


@refusal("reverse_issuance: while paused", "EnforcedPause")
def _(c: Clients) -> Any:
    item = _issued(c)
    c.pauser.pause().wait()
    return lambda: c.partner.reverse_issuance(item, Points(1), random_ref()), ()


@refusal("refund_redemption: the refund reference used", "LedgerReferenceUsed")
def _(c: Clients) -> Any:
    record, ref = _redeemed(c), random_ref()
    c.partner.refund_redemption(record, Points(1), ref).wait()
    return lambda: c.partner.refund_redemption(record, Points(1), ref), (ACTIVE, ref)


@refusal("refund_redemption: zero", "LedgerZeroAmount")
def _(c: Clients) -> Any:
    record = _redeemed(c)
    return lambda: c.partner.refund_redemption(record, Points(0), random_ref()), ()


def _migration(c: Clients, source: LocalSigner, target: LocalSigner, deadline: int | None = None) -> Any:
    nonce = c.stranger.nonce_of(source.address)
    deadline = c.stranger.rpc.timestamp() + 3600 if deadline is None else deadline
    args = (source.address, target.address, nonce, deadline)
    signatures = (c.stranger.sign_migration(source, *args), c.stranger.sign_migration(target, *args))
    return lambda: c.stranger.migrate_account(*args, *signatures)


@refusal("migrate_account: the target signed for the source", "LedgerInvalidSigner")
def _(c: Clients) -> Any:
    source, target = c.customer_with_points(5), LocalSigner(new_customer())
    nonce, deadline = c.stranger.nonce_of(source.address), c.stranger.rpc.timestamp() + 3600
    args = (source.address, target.address, nonce, deadline)
    signature = c.stranger.sign_migration(target, *args)
    return lambda: c.stranger.migrate_account(*args, signature, signature), (source.address, target.address)


@refusal("migrate_account: nothing live to move", "LedgerInsufficientBalance")
def _(c: Clients) -> Any:
    source = LocalSigner(new_customer())
    return _migration(c, source, LocalSigner(new_customer())), (source.address, 0, 1)


@refusal("migrate_account: expired", "LedgerExpiredSignature")
def _(c: Clients) -> Any:
    return _migration(c, c.customer_with_points(5), LocalSigner(new_customer()), deadline=1), (1,)


@refusal("recover_account: not the admin", "AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    lost = c.customer_with_points(5).address
    return lambda: c.treasury.recover_account(lost, new_customer().address), (
        c.address_of(c.treasury),
        bytes(32),
    )


@refusal("revoke_consent: not the next nonce", "InvalidAccountNonce")
def _(c: Clients) -> Any:
    customer = c.address_of(c.customer)
    return lambda: c.customer.revoke_consent(keyed(ACCEPT_ONLY, 3)), (customer, keyed(ACCEPT_ONLY))


def test_the_error_table_covers_every_error_of_the_abi() -> None:
    declared = {item["name"] for item in load_artifact("LoyaltyLedger").abi if item["type"] == "error"}
    assert set(ERROR_CASES) | set(UNREACHABLE) == declared
    assert not set(ERROR_CASES) & set(UNREACHABLE)
    assert {error for error, _ in REFUSALS.values()} <= declared


def _refused(clients: Clients, attempt: Callable[[], Any], name: str, expected: tuple[Any, ...]) -> None:
    seq = clients.partner.ledger_sequence()
    with pytest.raises(ContractRevert) as excinfo:
        attempt()
    assert (excinfo.value.name, excinfo.value.arguments) == (name, expected)
    assert clients.partner.ledger_sequence() == seq, "a refused call changes nothing"


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_each_custom_error_is_decoded_with_its_arguments_before_sending(clients: Clients, name: str) -> None:
    attempt, expected = ERROR_CASES[name](clients)
    _refused(clients, attempt, name, expected)


@pytest.mark.parametrize("title", sorted(REFUSALS))
def test_each_refusal_of_a_client_method_is_its_exact_error(clients: Clients, title: str) -> None:
    name, make = REFUSALS[title]
    attempt, expected = make(clients)
    _refused(clients, attempt, name, expected)
