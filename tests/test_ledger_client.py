"""The typed Ledger client on both backends: every write and view, and every custom error of the contract
decoded with its arguments when the chain layer refuses a call before sending it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account

from chain import ContractRevert, load_artifact
from chain._ledger import EpochBalance, Issuance, Partner, Position
from chain._ledger import Ledger as ChainLedger
from chain._sender import Call
from chain._signer import LocalSigner
from chain._types import Epoch, PartnerId, Points, ReasonCode
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
    chain_ledger,
    new_customer,
    random_ref,
)

PURCHASE = ReasonCode(1)
ZERO = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


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

    def customer_with_points(self, *amounts: int) -> LocalSigner:
        """A self-custodied customer (key generated for this run) holding ``amounts`` issued now."""
        customer = LocalSigner(new_customer())
        for amount in amounts:
            self.partner.issue(customer.address, Points(amount), random_ref(), PURCHASE).wait()
        return customer


@pytest.fixture
def clients(ledger: Ledger) -> Clients:
    a = ledger.actors
    return Clients(
        ledger,
        *(
            chain_ledger(ledger, who)
            for who in (a.admin, a.partner, a.suspended, a.accept_only, a.issue_only)
        ),
        chain_ledger(ledger, a.customer),
        chain_ledger(ledger, a.stranger),
    )


# --------------------------------------------------------------------------- writes and views


def test_issue_and_the_views_that_follow_it(clients: Clients) -> None:
    partner, customer = clients.partner, new_customer().address
    ref = random_ref()

    receipt = partner.issue(customer, Points(120), ref, PURCHASE, b"\x01" * 32).wait()

    assert receipt.succeeded and receipt.logs
    assert partner.balance_of(customer) == 120
    assert partner.live_balances(customer) == [EpochBalance(Epoch(0), Points(120))]
    assert partner.reference_used(PartnerId(ACTIVE), ref) is True
    assert partner.partner(PartnerId(ACTIVE)) == Partner(
        partner_id=PartnerId(ACTIVE),
        operator=clients.ledger.actors.partner,
        settlement=clients.ledger.actors.partner,
        active=True,
        can_issue=True,
        can_accept=True,
        allowance=Points(ALLOWANCE - 120),  # what is left of it
        issued=Points(120),
        redeemed=Points(0),
    )
    assert partner.partner_position(PartnerId(ACTIVE)) == Position(-120, -120 * SETTLEMENT_VALUE)
    assert partner.outstanding_supply() == partner.total_supply() == partner.total_issued() == 120
    assert partner.ledger_sequence() > 0 and len(partner.ledger_head()) == 32
    assert (partner.name(), partner.symbol(), partner.decimals()) == ("Coalition Points", "PTS", 0)
    assert (partner.epoch_length(), partner.validity_duration()) == (EPOCH, VALIDITY)
    assert partner.current_epoch() == 0
    # A view at an earlier block sees the ledger as it was then.
    assert partner.balance_of(customer, block=receipt.block_number - 1) == 0


def test_issue_many_and_issue_batch(clients: Clients) -> None:
    partner = clients.partner
    items = [Issuance(new_customer().address, Points(n), random_ref(), PURCHASE) for n in (1, 2, 3)]
    assert all(p.wait().succeeded for p in partner.issue_many(items))
    recipients = [new_customer().address for _ in range(3)]
    partner.issue_batch(recipients, [Points(10), Points(20), Points(30)], random_ref(), PURCHASE).wait()

    assert [partner.balance_of(i.to) for i in items] == [1, 2, 3]
    assert [partner.balance_of(r) for r in recipients] == [10, 20, 30]
    assert partner.partner(PartnerId(ACTIVE)).issued == 66


def test_redeem_with_a_consent_signed_through_the_client(clients: Clients) -> None:
    customer = clients.customer_with_points(500)
    partner = clients.partner
    ref = random_ref()
    consent = partner.sign_redemption(customer, PartnerId(ACTIVE), Points(200), ref, deadline=2**40)
    message = partner.redemption_message(customer.address, PartnerId(ACTIVE), Points(200), ref, 0, 2**40)
    assert message["message"]["nonce"] == consent.nonce == 0

    partner.redeem(consent).wait()

    assert partner.balance_of(customer.address) == 300
    assert partner.nonce_of(customer.address) == 1
    assert partner.redemption_reference_used(PartnerId(ACTIVE), ref) is True
    assert partner.partner(PartnerId(ACTIVE)).redeemed == 200


def test_partner_administration_pause_and_sweep(clients: Clients) -> None:
    admin, partner = clients.admin, clients.partner
    operator = Account.create().address
    admin.register_partner(PartnerId(42), operator, can_accept=False, allowance=Points(1000)).wait()
    admin.set_partner_allowance(PartnerId(42), Points(2000)).wait()
    admin.suspend_partner(PartnerId(42)).wait()
    assert admin.partner(PartnerId(42)).active is False
    admin.reactivate_partner(PartnerId(42)).wait()
    info = admin.partner(PartnerId(42))
    assert (info.operator, info.active, info.can_issue, info.can_accept, info.allowance) == (
        operator,
        True,
        True,
        False,
        2000,
    )
    assert admin.partner_id_of(operator) == 42 and 42 in admin.partner_ids()

    admin.pause().wait()
    assert admin.paused() is True
    admin.unpause().wait()
    admin.set_settlement_value(7).wait()
    assert admin.settlement_value() == 7
    admin.set_transfers_enabled(True).wait()
    assert admin.transfers_enabled() is True

    customer = clients.customer_with_points(50)
    clients.ledger.node.advance_time(VALIDITY * EPOCH)
    assert partner.balance_of(customer.address) == 0 and partner.pending_expiry() == 50
    clients.stranger.sweep_expired([customer.address]).wait()
    assert partner.total_expired() == 50 and partner.pending_expiry() == 0
    # Expiry is coalition-level breakage: the partners' positions and the coalition's sum to zero.
    assert partner.coalition_position() == Position(50, 50 * 7)
    positions = [partner.partner_position(p) for p in partner.partner_ids()]
    assert sum(p.net_points for p in positions) + 50 == 0
    assert sum(p.net_value for p in positions) + 50 * 7 == 0


def test_a_read_only_client_refuses_to_write(clients: Clients) -> None:
    reader = ChainLedger(clients.partner.rpc, clients.partner.address)
    with pytest.raises(Exception, match="read-only"):
        reader.pause()


# --------------------------------------------------------------------------- every custom error


Case = Callable[[Clients], tuple[Callable[[], Any], tuple[Any, ...]]]
ERROR_CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        ERROR_CASES[name] = fn
        return fn

    return register


def _consent(c: Clients, customer: LocalSigner, amount: int, **kw: Any) -> Any:
    return c.partner.sign_redemption(customer, PartnerId(ACTIVE), Points(amount), random_ref(), **kw)


def _with_signature(consent: Any, signature: bytes) -> Any:
    from dataclasses import replace

    return replace(consent, signature=signature)


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
    c.admin.set_partner_allowance(PartnerId(ISSUE_ONLY), Points(5)).wait()
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
    return lambda: c.partner.issue_batch([], [], random_ref(), PURCHASE), ()


@case("LedgerBatchLengthMismatch")
def _(c: Clients) -> Any:
    to = [new_customer().address, new_customer().address]
    return lambda: c.partner.issue_batch(to, [Points(1)], random_ref(), PURCHASE), (2, 1)


@case("LedgerPartnerExists")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(
        PartnerId(ACTIVE), Account.create().address, allowance=Points(1)
    ), (ACTIVE,)


@case("LedgerPartnerNotFound")
def _(c: Clients) -> Any:
    return lambda: c.admin.set_partner_allowance(PartnerId(99), Points(1)), (99,)


@case("LedgerPartnerNotSuspended")
def _(c: Clients) -> Any:
    return lambda: c.admin.reactivate_partner(PartnerId(ACTIVE)), (ACTIVE,)


@case("LedgerInvalidPartnerId")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(PartnerId(0), Account.create().address, allowance=Points(1)), (0,)


@case("LedgerInvalidOperator")
def _(c: Clients) -> Any:
    return lambda: c.admin.register_partner(
        PartnerId(50), ZERO, settlement=c.ledger.actors.stranger, allowance=Points(1)
    ), (ZERO,)


@case("LedgerInvalidSettlementAddress")
def _(c: Clients) -> Any:
    op = Account.create().address
    return lambda: c.admin.register_partner(PartnerId(51), op, settlement=ZERO, allowance=Points(1)), (ZERO,)


@case("AccessControlUnauthorizedAccount")
def _(c: Clients) -> Any:
    return lambda: c.stranger.pause(), (c.ledger.actors.stranger, c.admin.pauser_role())


@case("AccessControlBadConfirmation")
def _(c: Clients) -> Any:
    role = c.admin.admin_role()
    call = c.admin.call_of("renounceRole", role, c.ledger.actors.stranger)
    sender = c.admin.sender
    assert sender is not None
    return lambda: sender.submit(call), ()


@case("ExpectedPause")
def _(c: Clients) -> Any:
    return lambda: c.admin.unpause(), ()


@case("EnforcedPause")
def _(c: Clients) -> Any:
    c.admin.pause().wait()
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
    consent = _consent(c, customer, 5, nonce=1)
    return lambda: c.partner.redeem(consent), (customer.address, 0)


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


def _customer_call(c: Clients, function: str, *args: Any) -> Callable[[], Any]:
    sender = c.customer.sender
    assert sender is not None
    call = c.customer.call_of(function, *args)
    return lambda: sender.submit(call)


@case("ERC20InvalidSpender")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _customer_call(c, "approve", ZERO, 1), (ZERO,)


@case("ERC20InvalidReceiver")
def _(c: Clients) -> Any:
    return lambda: c.partner.issue(ZERO, Points(1), random_ref(), PURCHASE), (ZERO,)


@case("ERC20InsufficientAllowance")
def _(c: Clients) -> Any:
    _transfers_on(c)
    stranger = c.stranger.sender
    assert stranger is not None
    call = c.stranger.call_of("transferFrom", c.ledger.actors.customer, c.ledger.actors.stranger, 1)
    return lambda: stranger.submit(call), (c.ledger.actors.stranger, 0, 1)


@case("ERC20InsufficientBalance")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _customer_call(c, "transferAtEpoch", 0, c.ledger.actors.stranger, 101), (
        c.ledger.actors.customer,
        100,
        101,
    )


@case("LedgerFutureEpoch")
def _(c: Clients) -> Any:
    _transfers_on(c)
    return _customer_call(c, "transferAtEpoch", 1, c.ledger.actors.stranger, 1), (1, 0)


@case("ERC7818TransferredExpiredToken")
def _(c: Clients) -> Any:
    _transfers_on(c)
    c.ledger.node.advance_time(VALIDITY * EPOCH)
    return _customer_call(c, "transferAtEpoch", 0, c.ledger.actors.stranger, 1), (c.ledger.actors.customer, 0)


@case("LedgerInvalidConfiguration")
def _(c: Clients) -> Any:
    artifact = load_artifact("LoyaltyLedger")
    args = encode(
        ["string", "string", "address", "uint256", "uint256", "uint256"],
        ["P", "P", c.ledger.actors.admin, EPOCH, 0, 1],
    )
    sender = c.admin.sender
    assert sender is not None
    code = bytes.fromhex(artifact.bytecode.removeprefix("0x"))
    return lambda: sender.submit(Call(to=None, data=code + args)), (EPOCH, 0)


#: Errors the ledger inherits but cannot raise, and why.
UNREACHABLE = {
    "ERC20InvalidSender": "every debit is of msg.sender or an approved owner, never the zero address",
    "ERC20InvalidApprover": "approve() is always by msg.sender",
    "InvalidShortString": "the EIP-712 name and version are stored with the fallback, which never reverts",
    "StringTooLong": "same: ShortStrings.toShortStringWithFallback never reverts",
}


def test_the_error_table_covers_every_error_of_the_abi() -> None:
    declared = {item["name"] for item in load_artifact("LoyaltyLedger").abi if item["type"] == "error"}
    assert set(ERROR_CASES) | set(UNREACHABLE) == declared
    assert not set(ERROR_CASES) & set(UNREACHABLE)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_each_custom_error_is_decoded_with_its_arguments_before_sending(clients: Clients, name: str) -> None:
    attempt, expected = ERROR_CASES[name](clients)
    seq = clients.partner.ledger_sequence()

    with pytest.raises(ContractRevert) as excinfo:
        attempt()

    assert (excinfo.value.name, excinfo.value.arguments) == (name, expected)
    assert clients.partner.ledger_sequence() == seq, "a refused call changes nothing"
