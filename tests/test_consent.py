"""The customer's consent over its life: keyed nonces, revocation, and the accounts that sign it.

Nonces are OpenZeppelin NoncesKeyed: a nonce is ``key << 64 | sequence``, each key counts on its own, and
``nonces(customer, key)`` is the next one. The chain layer keys a redemption consent by the partner id, so a
consent outstanding at one partner never blocks another; a caller may pick any other key. A customer
revokes a consent by consuming its nonce: ``revokeConsent(nonce)`` from its own account, or
``cancelConsent(customer, nonce, signature)`` with its EIP-712 ``ConsentCancellation`` signature, which
anyone may submit. Signatures are checked ECDSA first (EOAs and EIP-7702-delegated accounts), then
ERC-1271 for accounts with code, with at most ``ERC1271_GAS_LIMIT`` gas. A signed account migration is a
consent of the same kind, under a keyed nonce of the account it empties, and is revoked the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3.types import TxReceipt

from chain import ContractRevert
from chain._devnode import fund
from conftest import ACCEPT_ONLY, ACTIVE, Ledger, deploy, expect_revert, new_customer, random_ref
from contract_helpers import (
    ZERO_ADDRESS,
    cancellation_typed_data,
    keyed,
    migration_args,
    send_failing,
    send_signed,
    sign_cancellation,
)

ERC1271_GAS_LIMIT = 100_000
MAX_KEY = 2**192 - 1


# --------------------------------------------------------------------------- helpers


def holding(ledger: Ledger, points: int = 1_000, *, funded: bool = False) -> LocalAccount:
    """A fresh customer key holding ``points`` (and ether to send its own transactions if ``funded``)."""
    customer = new_customer()
    ledger.issue(customer.address, points)
    if funded:
        fund(ledger.w3, customer.address, 10**18)
    return customer


class Consent:
    """A signed redemption consent, not yet submitted."""

    def __init__(
        self,
        ledger: Ledger,
        customer: LocalAccount,
        partner_id: int,
        amount: int,
        *,
        nonce: int | None = None,
        key: int | None = None,
    ) -> None:
        self.ledger, self.customer, self.partner_id, self.amount = (
            ledger,
            customer.address,
            partner_id,
            amount,
        )
        key = partner_id if key is None else key
        self.nonce = ledger.call("nonces", customer.address, key) if nonce is None else nonce
        self.ref, self.deadline = random_ref(), ledger.node.timestamp() + 3600
        self.signature = ledger.sign_redemption(
            customer, partner_id, amount, self.ref, self.nonce, self.deadline
        )

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.customer, self.amount, self.ref, self.nonce, self.deadline, self.signature)

    def operator(self) -> str:
        actors = self.ledger.actors
        return {ACTIVE: actors.partner, ACCEPT_ONLY: actors.accept_only}[self.partner_id]

    def redeem(self) -> TxReceipt:
        return self.ledger.transact("redeem", *self.args, sender=self.operator())

    def refused(self) -> ContractRevert:
        """Submits it expecting a revert; checks that nothing changed; returns the error."""
        before = consent_state(self.ledger, self.customer)
        with pytest.raises(ContractRevert) as excinfo:
            self.redeem()
        assert consent_state(self.ledger, self.customer) == before
        return excinfo.value


def consent_state(ledger: Ledger, customer: str, keys: tuple[int, ...] = (0, ACTIVE, ACCEPT_ONLY)) -> Any:
    return (
        [ledger.call("nonces", customer, key) for key in keys],
        ledger.call("balanceOf", customer),
        ledger.call("ledgerSequence"),
        ledger.call("ledgerHead"),
    )


def revoked(ledger: Ledger, receipt: TxReceipt) -> list[dict[str, Any]]:
    return [event["args"] for event in ledger.events(receipt, "ConsentRevoked")]


def error(revert: ContractRevert) -> tuple[str, tuple[Any, ...]]:
    return revert.name, tuple(revert.arguments)


# --------------------------------------------------------------------------- keyed nonces


def test_a_consent_outstanding_at_one_partner_does_not_block_another(ledger: Ledger) -> None:
    """Partner A holds a signed consent it has not submitted; partner B's later consent redeems at once,
    and A's still redeems afterwards."""
    customer = holding(ledger)
    at_a = Consent(ledger, customer, ACTIVE, 100)
    at_b = Consent(ledger, customer, ACCEPT_ONLY, 40)
    assert (at_a.nonce, at_b.nonce) == (keyed(ACTIVE), keyed(ACCEPT_ONLY))

    receipt = at_b.redeem()
    assert [e["args"]["nonce"] for e in ledger.events(receipt, "PointsRedeemed")] == [keyed(ACCEPT_ONLY)]
    assert ledger.call("nonces", customer.address, ACCEPT_ONLY) == keyed(ACCEPT_ONLY, 1)
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE)  # A's consent is still good

    at_a.redeem()
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE, 1)
    assert ledger.call("balanceOf", customer.address) == 1_000 - 140
    assert ledger.call("nonces", customer.address) == 0  # key 0 never used


@pytest.mark.parametrize("key", [0, 7, 0xC0FFEE, MAX_KEY], ids=["key-0", "key-7", "key-coffee", "max-key"])
def test_a_caller_chosen_key_counts_on_its_own(ledger: Ledger, key: int) -> None:
    customer = holding(ledger)
    first = Consent(ledger, customer, ACTIVE, 10, key=key)
    second = Consent(ledger, customer, ACTIVE, 20, nonce=keyed(key, 1))
    at_partner_key = Consent(ledger, customer, ACTIVE, 30)
    assert first.nonce == keyed(key)

    at_partner_key.redeem()  # the partner's own key is independent of the chosen one
    first.redeem()
    receipt = second.redeem()

    assert [e["args"]["nonce"] for e in ledger.events(receipt, "PointsRedeemed")] == [keyed(key, 1)]
    assert ledger.call("nonces", customer.address, key) == keyed(key, 2)
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE, 1)
    assert ledger.call("balanceOf", customer.address) == 1_000 - 60


@pytest.mark.parametrize("key", [0, ACTIVE, MAX_KEY], ids=["key-0", "partner-key", "max-key"])
def test_a_consent_that_skips_a_sequence_number_is_refused(ledger: Ledger, key: int) -> None:
    customer = holding(ledger)
    skipping = Consent(ledger, customer, ACTIVE, 10, nonce=keyed(key, 1))

    assert error(skipping.refused()) == ("InvalidAccountNonce", (customer.address, keyed(key)))

    Consent(ledger, customer, ACTIVE, 5, key=key).redeem()  # sequence 0 ...
    skipping.redeem()  # ... then it is the next one
    assert ledger.call("nonces", customer.address, key) == keyed(key, 2)


# --------------------------------------------------------------------------- revocation


def test_the_customer_revokes_a_consent_from_its_own_account(ledger: Ledger) -> None:
    customer = holding(ledger, funded=True)
    consent = Consent(ledger, customer, ACTIVE, 100)
    seq = ledger.call("ledgerSequence")

    receipt = send_signed(ledger, customer, "revokeConsent", consent.nonce)

    assert [(e["event"], e["args"]) for e in ledger.events(receipt)] == [
        ("ConsentRevoked", {"customer": customer.address, "seq": seq + 1, "nonce": keyed(ACTIVE)})
    ]
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE, 1)
    assert error(consent.refused()) == ("InvalidAccountNonce", (customer.address, keyed(ACTIVE, 1)))
    # revoking again, or a nonce that is not the next one, is refused the same way
    for nonce in (keyed(ACTIVE), keyed(ACTIVE, 5)):
        with pytest.raises(ContractRevert) as excinfo:
            send_signed(ledger, customer, "revokeConsent", nonce)
        expect_revert(excinfo, "InvalidAccountNonce", customer.address, keyed(ACTIVE, 1))
    assert ledger.call("balanceOf", customer.address) == 1_000


def test_revoke_consent_only_ever_revokes_the_callers_own_nonces(ledger: Ledger) -> None:
    customer = holding(ledger)
    consent = Consent(ledger, customer, ACTIVE, 100)

    receipt = ledger.transact("revokeConsent", consent.nonce, sender=ledger.actors.stranger)

    assert [args["customer"] for args in revoked(ledger, receipt)] == [ledger.actors.stranger]
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE)
    consent.redeem()


def test_a_signed_cancellation_submitted_by_a_stranger_revokes_the_consent(ledger: Ledger) -> None:
    customer = holding(ledger)
    consent = Consent(ledger, customer, ACTIVE, 100)
    signature = sign_cancellation(ledger, customer, consent.nonce)
    # the message signed is the contract's cancellationDigest
    typed = cancellation_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        customer=customer.address,
        nonce=consent.nonce,
    )
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=signature) == customer.address
    digest = bytes(ledger.call("cancellationDigest", customer.address, consent.nonce))
    assert Account._recover_hash(digest, signature=signature) == customer.address
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact(
        "cancelConsent", customer.address, consent.nonce, signature, sender=ledger.actors.stranger
    )

    assert [(e["event"], e["args"]) for e in ledger.events(receipt)] == [
        ("ConsentRevoked", {"customer": customer.address, "seq": seq + 1, "nonce": consent.nonce})
    ]
    assert error(consent.refused()) == ("InvalidAccountNonce", (customer.address, keyed(ACTIVE, 1)))
    with pytest.raises(ContractRevert) as excinfo:  # the cancellation itself cannot be replayed either
        ledger.transact(
            "cancelConsent", customer.address, consent.nonce, signature, sender=ledger.actors.stranger
        )
    expect_revert(excinfo, "InvalidAccountNonce", customer.address, keyed(ACTIVE, 1))


@pytest.mark.parametrize("how", ["own call", "signed cancellation"])
def test_a_signed_migration_is_revoked_like_any_consent(ledger: Ledger, how: str) -> None:
    """Both accounts signed the move of the customer's points under its next nonce of key 0; the customer
    changes its mind and consumes that nonce: the signed migration can never run."""
    customer, target = holding(ledger, funded=True), new_customer()
    signed = migration_args(ledger, customer, target)
    nonce = signed[2]
    assert nonce == ledger.call("nonces", customer.address, 0) == 0
    if how == "own call":
        send_signed(ledger, customer, "revokeConsent", nonce)
    else:
        cancellation = sign_cancellation(ledger, customer, nonce)
        ledger.transact("cancelConsent", customer.address, nonce, cancellation, sender=ledger.actors.stranger)

    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("migrateAccount", *signed, sender=ledger.actors.stranger)
    expect_revert(excinfo, "InvalidAccountNonce", customer.address, 1)
    assert ledger.call("balanceOf", customer.address) == 1_000
    ledger.transact(
        "migrateAccount", *migration_args(ledger, customer, target), sender=ledger.actors.stranger
    )
    assert (ledger.call("balanceOf", customer.address), ledger.call("balanceOf", target.address)) == (
        0,
        1_000,
    )


def test_a_cancellation_not_signed_by_the_customer_is_refused(ledger: Ledger) -> None:
    customer, impostor = holding(ledger), new_customer()
    consent = Consent(ledger, customer, ACTIVE, 100)
    forged = sign_cancellation(ledger, impostor, consent.nonce, customer=customer.address)
    other_nonce = sign_cancellation(ledger, customer, keyed(ACTIVE, 1))  # the customer's, for another nonce
    other_signer = Account._recover_hash(
        bytes(ledger.call("cancellationDigest", customer.address, consent.nonce)), signature=other_nonce
    )
    assert other_signer != customer.address

    for signature, signer in ((forged, impostor.address), (other_nonce, other_signer)):
        before = consent_state(ledger, customer.address)
        with pytest.raises(ContractRevert) as excinfo:
            ledger.transact(
                "cancelConsent", customer.address, consent.nonce, signature, sender=ledger.actors.stranger
            )
        expect_revert(excinfo, "LedgerInvalidSigner", customer.address, signer)
        assert consent_state(ledger, customer.address) == before
    consent.redeem()  # still good


# --------------------------------------------------------------------------- contract accounts


def test_a_contract_wallet_redeems_and_cancels_through_erc1271(ledger: Ledger) -> None:
    owner = new_customer()
    wallet = deploy(ledger.node, "ERC1271Wallet", owner.address, sender=ledger.actors.admin).address
    ledger.issue(wallet, 500)
    ref, until = random_ref(), ledger.node.timestamp() + 3600

    def signed(digest: bytes) -> bytes:
        return bytes(owner.unsafe_sign_hash(digest).signature)

    # a cancellation of the first consent, signed by the wallet's owner, submitted by a stranger
    first = keyed(ACTIVE)
    receipt = ledger.transact(
        "cancelConsent",
        wallet,
        first,
        signed(bytes(ledger.call("cancellationDigest", wallet, first))),
        sender=ledger.actors.stranger,
    )
    assert revoked(ledger, receipt) == [
        {"customer": wallet, "seq": ledger.call("ledgerSequence"), "nonce": first}
    ]

    nonce = keyed(ACTIVE, 1)
    digest = bytes(ledger.call("redemptionDigest", wallet, ACTIVE, 200, ref, nonce, until))
    ledger.transact("redeem", wallet, 200, ref, nonce, until, signed(digest), sender=ledger.actors.partner)
    assert ledger.call("balanceOf", wallet) == 300
    assert ledger.call("nonces", wallet, ACTIVE) == keyed(ACTIVE, 2)


def test_a_gas_burning_wallet_gets_only_the_stipend(ledger: Ledger) -> None:
    """A hostile ERC-1271 wallet burns all the gas it is given: the ledger gives it ERC1271_GAS_LIMIT and
    refuses the consent, instead of letting it eat the partner's whole gas limit."""
    assert ledger.call("ERC1271_GAS_LIMIT") == ERC1271_GAS_LIMIT
    admin = ledger.actors.admin
    burner = deploy(ledger.node, "GasBurningWallet", sender=admin).address
    honest = deploy(ledger.node, "ERC1271Wallet", new_customer().address, sender=admin).address
    signer = new_customer()  # neither wallet's key
    gas_used = {}
    for wallet in (burner, honest):
        ledger.issue(wallet, 100)
        ref, nonce, until = random_ref(), keyed(ACTIVE), ledger.node.timestamp() + 3600
        digest = bytes(ledger.call("redemptionDigest", wallet, ACTIVE, 10, ref, nonce, until))
        signature = bytes(signer.unsafe_sign_hash(digest).signature)

        receipt, revert = send_failing(
            ledger,
            "redeem",
            wallet,
            10,
            ref,
            nonce,
            until,
            signature,
            sender=ledger.actors.partner,
            gas=5_000_000,
        )

        assert error(revert) == ("LedgerInvalidSigner", (wallet, ZERO_ADDRESS))
        assert receipt["logs"] == []
        gas_used[wallet] = receipt["gasUsed"]
    # the burner costs its stipend (it burned it) and not more than the stipend over an honest wallet's
    # refusal of the same redemption; uncapped it would have taken ~63/64 of the 5,000,000 gas limit
    assert gas_used[burner] > ERC1271_GAS_LIMIT
    assert gas_used[burner] - gas_used[honest] <= ERC1271_GAS_LIMIT
    assert gas_used[burner] < 4 * ERC1271_GAS_LIMIT


# --------------------------------------------------------------------------- EIP-7702


def delegate(ledger: Ledger, account: LocalAccount, code: str) -> None:
    """Delegates the EOA ``account`` to the code at ``code`` with an EIP-7702 authorization it signs; the
    type-4 transaction carrying it is sent (and paid) by the admin's unlocked account."""
    w3 = ledger.w3
    authorization = account.sign_authorization(
        {"chainId": w3.eth.chain_id, "address": code, "nonce": w3.eth.get_transaction_count(account.address)}
    )
    tx_hash = w3.eth.send_transaction(
        {
            "from": ledger.actors.admin,
            "to": ledger.actors.stranger,
            "value": 0,
            "gas": 100_000,
            "authorizationList": [authorization],
        }
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    assert w3.eth.get_code(account.address) == HexBytes(
        "0xef0100" + code[2:].lower()
    )  # the delegation marker


def test_an_eip7702_delegated_account_redeems_with_its_own_ecdsa_signature(anvil_ledger: Ledger) -> None:
    """eth-tester has no EIP-7702, so this runs on anvil only. The account is delegated to the hostile
    GasBurningWallet: its own key's signature is accepted by ECDSA without ever calling that code, and a
    signature by another key is refused as a contract account's (the code had its say)."""
    ledger = anvil_ledger
    customer = holding(ledger)
    burner = deploy(ledger.node, "GasBurningWallet", sender=ledger.actors.admin).address
    delegate(ledger, customer, burner)

    Consent(ledger, holding(ledger), ACTIVE, 100).redeem()  # the partner's and the totals' first redemption
    plain = Consent(ledger, holding(ledger), ACTIVE, 100).redeem()  # a plain EOA's, for comparison

    receipt = Consent(ledger, customer, ACTIVE, 100).redeem()

    assert [e["args"]["amount"] for e in ledger.events(receipt, "PointsRedeemed")] == [100]
    # it costs what the plain EOA's redemption cost: the burner's code was never called
    assert abs(receipt["gasUsed"] - plain["gasUsed"]) < ERC1271_GAS_LIMIT // 20
    assert ledger.call("balanceOf", customer.address) == 900

    impostor = new_customer()
    ref, nonce, until = (
        random_ref(),
        ledger.call("nonces", customer.address, ACTIVE),
        ledger.node.timestamp() + 3600,
    )
    digest = bytes(ledger.call("redemptionDigest", customer.address, ACTIVE, 50, ref, nonce, until))
    signature = bytes(impostor.unsafe_sign_hash(digest).signature)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact(
            "redeem", customer.address, 50, ref, nonce, until, signature, sender=ledger.actors.partner
        )
    expect_revert(excinfo, "LedgerInvalidSigner", customer.address, ZERO_ADDRESS)

    # it cancels a consent with its own signature too
    signature = sign_cancellation(ledger, customer, nonce)
    receipt = ledger.transact(
        "cancelConsent", customer.address, nonce, signature, sender=ledger.actors.stranger
    )
    assert [args["nonce"] for args in revoked(ledger, receipt)] == [nonce]
