"""Redemption with the customer's EIP-712 consent: what a valid consent does, and every way one is refused.

A partner's operator submits ``redeem(customer, amount, ref, nonce, deadline, signature)``; the customer
(an EOA key generated for the run, or an ERC-1271 contract wallet) never sends a transaction. Nonces are
keyed (OpenZeppelin NoncesKeyed: ``key << 64 | sequence``); these consents use the partner's id as the key,
as the chain layer does (tests/test_consent.py covers other keys, revocation and hostile wallets).
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from chain import ContractRevert
from chain._eip712 import redemption_typed_data
from conftest import (
    ACCEPT_ONLY,
    ACTIVE,
    EPOCH,
    SETTLEMENT_VALUE,
    VALIDITY,
    Ledger,
    deploy,
    deploy_ledger_contract,
    expect_revert,
    new_customer,
    random_ref,
    sign_redemption,
)
from contract_helpers import keyed, partner_view

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
FIRST = keyed(ACTIVE)  # the first nonce of partner ACTIVE's key


# --------------------------------------------------------------------------- helpers


def funded(ledger: Ledger, amount: int = 1_000) -> LocalAccount:
    """A fresh customer key holding ``amount`` points of the current epoch."""
    customer = new_customer()
    ledger.issue(customer.address, amount)
    return customer


def deadline(ledger: Ledger) -> int:
    return ledger.node.timestamp() + 3600


def state(ledger: Ledger, account: str) -> tuple[Any, ...]:
    """Everything a redemption changes: live points per epoch, nonces (key 0 and partner ACTIVE's key),
    ledger sequence and head, totals, counters."""
    return (
        ledger.call("liveBalances", account),
        ledger.call("nonces", account),
        ledger.call("nonces", account, ACTIVE),
        ledger.call("ledgerSequence"),
        ledger.call("ledgerHead"),
        ledger.call("totalRedeemed"),
        ledger.call("partner", ACTIVE),
    )


def rejected(ledger: Ledger, customer: str, *args: Any) -> pytest.ExceptionInfo[ContractRevert]:
    """Submits ``redeem(customer, *args)`` as partner ACTIVE, expects a revert, and checks nothing changed."""
    before = state(ledger, customer)
    with pytest.raises(ContractRevert) as excinfo:
        ledger.transact("redeem", customer, *args, sender=ledger.actors.partner)
    assert state(ledger, customer) == before
    return excinfo


def entries(ledger: Ledger, receipt: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event"], e["args"]) for e in ledger.events(receipt)]


def digest(
    ledger: Ledger, customer: str, partner_id: int, amount: int, ref: bytes, nonce: int, until: int
) -> bytes:
    """The digest the contract verifies for these values (on its own chain and address)."""
    return bytes(ledger.call("redemptionDigest", customer, partner_id, amount, ref, nonce, until))


def recovered(message_digest: bytes, signature: bytes) -> str:
    """The address ecrecover yields for ``signature`` over ``message_digest``."""
    return str(Account._recover_hash(message_digest, signature=signature))


# --------------------------------------------------------------------------- the digest


def test_redemption_digest_is_the_eip712_typed_data_hash(ledger: Ledger) -> None:
    customer, ref = new_customer(), random_ref()
    typed = redemption_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        customer=customer.address,
        partner_id=ACTIVE,
        amount=250,
        ref=ref,
        nonce=7,
        deadline=1_900_000_000,
    )
    signable = encode_typed_data(full_message=typed)

    assert bytes(ledger.call("DOMAIN_SEPARATOR")) == signable.header
    expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert digest(ledger, customer.address, ACTIVE, 250, ref, 7, 1_900_000_000) == expected


# --------------------------------------------------------------------------- a valid consent


def test_valid_consent_redeems_and_records_the_entry(ledger: Ledger) -> None:
    customer = funded(ledger, 1_000)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 300, ref, FIRST, until)
    seq = ledger.call("ledgerSequence")

    receipt = ledger.transact(
        "redeem", customer.address, 300, ref, FIRST, until, signature, sender=ledger.actors.partner
    )

    assert entries(ledger, receipt) == [
        ("Transfer", {"from": customer.address, "to": ZERO_ADDRESS, "value": 300}),
        (
            "PointsRedeemed",
            {
                "partnerId": ACTIVE,
                "customer": customer.address,
                "seq": seq + 1,
                "epoch": 0,
                "amount": 300,
                "ref": ref,
                "nonce": FIRST,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    assert ledger.call("balanceOf", customer.address) == 700
    assert ledger.call("totalSupply") == 700
    assert ledger.call("nonces", customer.address, ACTIVE) == keyed(ACTIVE, 1)
    assert ledger.call("nonces", customer.address) == 0  # the other keys are untouched
    assert ledger.call("nonces", customer.address, ACCEPT_ONLY) == keyed(ACCEPT_ONLY)
    assert partner_view(ledger, ACTIVE)["redeemed"] == 300
    assert partner_view(ledger, ACTIVE)["redeemedValue"] == 300 * SETTLEMENT_VALUE
    assert ledger.call("totalRedeemed") == 300
    assert ledger.call("redemptionReferenceUsed", ACTIVE, ref) is True
    assert ledger.call("referenceUsed", ACTIVE, ref) is False  # issue references are a separate namespace
    assert ledger.call("ledgerSequence") == seq + 1


def test_replayed_consent_is_refused_by_the_nonce(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    args = (100, ref, FIRST, until, ledger.sign_redemption(customer, ACTIVE, 100, ref, FIRST, until))
    ledger.transact("redeem", customer.address, *args, sender=ledger.actors.partner)

    expect_revert(
        rejected(ledger, customer.address, *args), "InvalidAccountNonce", customer.address, keyed(ACTIVE, 1)
    )


def test_consent_with_a_nonce_other_than_the_next_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 100, ref, keyed(ACTIVE, 1), until)

    excinfo = rejected(ledger, customer.address, 100, ref, keyed(ACTIVE, 1), until, signature)

    expect_revert(excinfo, "InvalidAccountNonce", customer.address, FIRST)


# --------------------------------------------------------------------------- what the consent is bound to


def test_consent_for_another_chain_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(
        customer, ACTIVE, 100, ref, FIRST, until, chain_id=ledger.w3.eth.chain_id + 1
    )
    signer = recovered(digest(ledger, customer.address, ACTIVE, 100, ref, FIRST, until), signature)
    assert signer != customer.address

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerInvalidSigner", customer.address, signer)


def test_consent_for_another_ledger_contract_is_refused(ledger: Ledger) -> None:
    other = deploy_ledger_contract(ledger.node, ledger.actors.admin)
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 100, ref, FIRST, until, contract=other.address)
    signer = recovered(digest(ledger, customer.address, ACTIVE, 100, ref, FIRST, until), signature)
    assert signer != customer.address

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerInvalidSigner", customer.address, signer)


def test_consent_binds_amount_partner_reference_and_deadline(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    chain_id = ledger.w3.eth.chain_id
    signed = {"partner_id": ACTIVE, "amount": 100, "ref": ref, "nonce": FIRST, "deadline": until}
    tampered = {
        "amount": {**signed, "amount": 200},
        "partner": {**signed, "partner_id": ACCEPT_ONLY},  # signed for another partner, submitted by ACTIVE
        "reference": {**signed, "ref": random_ref()},
        "deadline": {**signed, "deadline": until + 1},
        "nonce": {**signed, "nonce": keyed(ACCEPT_ONLY)},  # the same sequence under another key
    }
    for what, consent in tampered.items():
        signature = sign_redemption(customer, chain_id=chain_id, contract=ledger.address, **consent)
        signer = recovered(digest(ledger, customer.address, ACTIVE, 100, ref, FIRST, until), signature)
        assert signer != customer.address, what

        excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

        expect_revert(excinfo, "LedgerInvalidSigner", customer.address, signer)


def test_consent_signed_by_another_key_is_refused_naming_that_key(ledger: Ledger) -> None:
    customer, impostor = funded(ledger), new_customer()
    ref, until = random_ref(), deadline(ledger)
    typed = redemption_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        customer=customer.address,
        partner_id=ACTIVE,
        amount=100,
        ref=ref,
        nonce=FIRST,
        deadline=until,
    )
    signature = bytes(impostor.sign_message(encode_typed_data(full_message=typed)).signature)

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerInvalidSigner", customer.address, impostor.address)


def test_malleated_high_s_signature_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 100, ref, FIRST, until)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s = (SECP256K1_N - s).to_bytes(32, "big")
    malleated = r + high_s + bytes([55 - v])  # v: 27 <-> 28
    # the twin is a valid secp256k1 signature by the same key; only the low-s rule rejects it
    assert (
        recovered(digest(ledger, customer.address, ACTIVE, 100, ref, FIRST, until), malleated)
        == customer.address
    )

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, malleated)

    expect_revert(excinfo, "ECDSAInvalidSignatureS", high_s)


def test_consent_past_its_deadline_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref, until = random_ref(), ledger.node.timestamp() - 1
    signature = ledger.sign_redemption(customer, ACTIVE, 100, ref, FIRST, until)

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerExpiredSignature", until)


# --------------------------------------------------------------------------- balance and reference


def test_redeeming_more_than_the_live_balance_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger, 100)
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 101, ref, FIRST, until)

    excinfo = rejected(ledger, customer.address, 101, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerInsufficientBalance", customer.address, 100, 101)


def test_a_reference_the_partner_already_used_is_refused(ledger: Ledger) -> None:
    customer = funded(ledger)
    ref = random_ref()
    ledger.redeem(customer, 100, ref=ref)
    until, nonce = deadline(ledger), ledger.call("nonces", customer.address, ACTIVE)
    assert nonce == keyed(ACTIVE, 1)
    signature = ledger.sign_redemption(customer, ACTIVE, 50, ref, nonce, until)

    excinfo = rejected(ledger, customer.address, 50, ref, nonce, until, signature)

    expect_revert(excinfo, "LedgerReferenceUsed", ACTIVE, ref)


def test_an_order_reference_can_be_used_once_to_earn_and_once_to_spend(ledger: Ledger) -> None:
    """Issue references and redemption references are separate namespaces per partner."""
    customer = funded(ledger)
    order = random_ref()
    ledger.issue(customer.address, 10, ref=order)
    ledger.redeem(customer, 50, ref=order)
    assert ledger.call("referenceUsed", ACTIVE, order) is True
    assert ledger.call("redemptionReferenceUsed", ACTIVE, order) is True


# --------------------------------------------------------------------------- which points are spent


def test_redemption_spends_the_oldest_epochs_first(ledger: Ledger) -> None:
    customer = new_customer()
    ledger.issue(customer.address, 100)  # epoch 0
    ledger.node.advance_time(EPOCH)
    ledger.issue(customer.address, 200)  # epoch 1
    ledger.node.advance_time(EPOCH)
    ledger.issue(customer.address, 300)  # epoch 2
    assert ledger.call("currentEpoch") == 2
    ref, seq = random_ref(), ledger.call("ledgerSequence")

    receipt = ledger.redeem(customer, 350, ref=ref)

    assert [args for name, args in entries(ledger, receipt) if name == "PointsRedeemed"] == [
        {
            "partnerId": ACTIVE,
            "customer": customer.address,
            "seq": seq + 1,
            "epoch": 0,
            "amount": 100,
            "ref": ref,
            "nonce": FIRST,
            "value": SETTLEMENT_VALUE,
        },
        {
            "partnerId": ACTIVE,
            "customer": customer.address,
            "seq": seq + 2,
            "epoch": 1,
            "amount": 200,
            "ref": ref,
            "nonce": FIRST,
            "value": SETTLEMENT_VALUE,
        },
        {
            "partnerId": ACTIVE,
            "customer": customer.address,
            "seq": seq + 3,
            "epoch": 2,
            "amount": 50,
            "ref": ref,
            "nonce": FIRST,
            "value": SETTLEMENT_VALUE,
        },
    ]
    assert [args["value"] for name, args in entries(ledger, receipt) if name == "Transfer"] == [100, 200, 50]
    assert [ledger.call("balanceOfAtEpoch", e, customer.address) for e in (0, 1, 2)] == [0, 0, 250]
    assert ledger.call("liveBalances", customer.address) == [[2], [250]]
    assert [ledger.call("epochSupply", e) for e in (0, 1, 2)] == [0, 0, 250]
    assert partner_view(ledger, ACTIVE)["redeemed"] == 350
    assert ledger.call("totalRedeemed") == 350


def test_expired_points_cannot_be_redeemed(ledger: Ledger) -> None:
    customer = new_customer()
    ledger.issue(customer.address, 100)  # epoch 0
    ledger.node.advance_time(EPOCH)
    ledger.issue(customer.address, 40)  # epoch 1
    ledger.node.advance_time((VALIDITY - 1) * EPOCH)
    assert ledger.call("currentEpoch") == VALIDITY  # epoch 0 has expired, epoch 1 is live
    ref, until = random_ref(), deadline(ledger)
    signature = ledger.sign_redemption(customer, ACTIVE, 100, ref, FIRST, until)

    excinfo = rejected(ledger, customer.address, 100, ref, FIRST, until, signature)

    expect_revert(excinfo, "LedgerInsufficientBalance", customer.address, 40, 100)
    receipt = ledger.redeem(customer, 40)
    assert [(a["epoch"], a["amount"]) for n, a in entries(ledger, receipt) if n == "PointsRedeemed"] == [
        (1, 40)
    ]
    assert ledger.call("balanceOf", customer.address) == 0


# --------------------------------------------------------------------------- contract wallets (ERC-1271)


def test_contract_wallet_consents_through_erc1271(ledger: Ledger) -> None:
    owner, stranger_key = new_customer(), new_customer()
    wallet = deploy(ledger.node, "ERC1271Wallet", owner.address, sender=ledger.actors.admin).address
    ledger.issue(wallet, 500)
    ref, until = random_ref(), deadline(ledger)
    wallet_digest = digest(ledger, wallet, ACTIVE, 200, ref, FIRST, until)

    wrong = bytes(stranger_key.unsafe_sign_hash(wallet_digest).signature)
    expect_revert(
        rejected(ledger, wallet, 200, ref, FIRST, until, wrong), "LedgerInvalidSigner", wallet, ZERO_ADDRESS
    )

    signature = bytes(owner.unsafe_sign_hash(wallet_digest).signature)
    seq = ledger.call("ledgerSequence")
    receipt = ledger.transact(
        "redeem", wallet, 200, ref, FIRST, until, signature, sender=ledger.actors.partner
    )

    assert entries(ledger, receipt) == [
        ("Transfer", {"from": wallet, "to": ZERO_ADDRESS, "value": 200}),
        (
            "PointsRedeemed",
            {
                "partnerId": ACTIVE,
                "customer": wallet,
                "seq": seq + 1,
                "epoch": 0,
                "amount": 200,
                "ref": ref,
                "nonce": FIRST,
                "value": SETTLEMENT_VALUE,
            },
        ),
    ]
    assert ledger.call("balanceOf", wallet) == 300
    assert ledger.call("nonces", wallet, ACTIVE) == keyed(ACTIVE, 1)
