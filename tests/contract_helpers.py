"""Helpers shared by the contract behaviour tests (issue, redeem, expiry, transfers, consent, pause clock,
roles, hash chain).

Kept out of ``conftest.py`` (the fixtures' module): exact clock control, keyed nonces, the customer's
EIP-712 ``ConsentCancellation`` and the two accounts' ``Migration``, a batch's Merkle tree and the
``IssuanceItem`` / ``RedemptionRecord`` arguments of a reversal or a refund read off the original entries,
and sending a transaction from a key generated for the test, or one that is expected to fail, keeping its
receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from chain import ContractRevert, Points
from chain._ledger import Ledger as ChainLedger
from chain._merkle import MerkleTree
from chain._rpc import Rpc
from conftest import GAS, Ledger, Node, new_customer

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# PartnerView.status (ILoyaltyLedger.PartnerStatus)
STATUS_NONE, STATUS_ACTIVE, STATUS_SUSPENDED, STATUS_OFFBOARDED = 0, 1, 2, 3

#: The names of ``partner(id)``'s fields, in ABI order.
PARTNER_FIELDS = (
    "partnerId",
    "operator",
    "settlement",
    "status",
    "canIssue",
    "canAccept",
    "allowance",
    "issued",
    "redeemed",
    "issuedValue",
    "redeemedValue",
    "reversed",
    "refunded",
    "reversedValue",
    "refundedValue",
    "settledPoints",
    "settledValue",
)


def partner_view(ledger: Ledger, partner_id: int) -> dict[str, Any]:
    """``partner(partner_id)`` as a dict of its named fields."""
    return dict(zip(PARTNER_FIELDS, ledger.call("partner", partner_id), strict=True))


def keyed(key: int, sequence: int = 0) -> int:
    """The keyed nonce ``key << 64 | sequence`` (OpenZeppelin NoncesKeyed)."""
    return key << 64 | sequence


def warp_to(node: Node, timestamp: int) -> None:
    """Mines a block at exactly ``timestamp`` (views then read that block's ``block.timestamp``).

    ``node.advance_time`` is exact on eth-tester, but anvil's ``evm_increaseTime`` counts from the wall clock,
    which may tick between reading the latest timestamp and mining; anvil is pinned with
    ``evm_setNextBlockTimestamp`` instead.
    """
    assert timestamp > node.timestamp()
    if node.kind == "anvil":
        node.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
        node.mine()
    else:
        node.advance_time(timestamp - node.timestamp())
    assert node.timestamp() == timestamp


def next_block_at(node: Node, timestamp: int) -> None:
    """Makes the next mined block (e.g. the next transaction's) carry exactly ``timestamp``."""
    assert timestamp > node.timestamp()
    if node.kind == "anvil":
        node.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
    else:
        node.w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- batches, reversals and refunds


def batch_tree(recipients: Sequence[str], amounts: Sequence[int], item_refs: Sequence[bytes]) -> MerkleTree:
    """The Merkle tree of a batch's items, computed off chain (its root is the batch's reference)."""
    return ChainLedger.batch_tree(recipients, [Points(a) for a in amounts], item_refs)


def batch_root(recipients: Sequence[str], amounts: Sequence[int], item_refs: Sequence[bytes]) -> bytes:
    return batch_tree(recipients, amounts, item_refs).root


class IssuanceItem(NamedTuple):
    """``ILedgerEntries.IssuanceItem``: one issuance, as its entries recorded it (a tuple for web3)."""

    ref: bytes
    customer: str
    amount: int
    item_ref: bytes
    epoch: int
    issued_at: int
    value: int
    proof: list[bytes]


class RedemptionRecord(NamedTuple):
    """``ILedgerEntries.RedemptionRecord``: one redemption, as its ``PointsRedeemed`` entries recorded it."""

    customer: str
    ref: bytes
    value: int
    epochs: list[int]
    amounts: list[int]


def block_timestamp(ledger: Ledger, receipt: TxReceipt) -> int:
    return int(ledger.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def issued_items(ledger: Ledger, receipt: TxReceipt) -> list[IssuanceItem]:
    """Every item an ``issue`` or ``issueBatch`` receipt issued, as ``reverseIssuance`` takes it: read from
    its entries alone (a batch's proofs from the tree of its items, whose root must be the header's ref)."""
    issued_at = block_timestamp(ledger, receipt)
    items = []
    for event in ledger.events(receipt, "PointsIssued"):
        a = event["args"]
        items.append(
            IssuanceItem(a["ref"], a["to"], a["amount"], a["ref"], a["epoch"], issued_at, a["value"], [])
        )
    headers = ledger.events(receipt, "PointsBatchIssued")
    if headers:
        (header,) = headers
        h = header["args"]
        parts = [event["args"] for event in ledger.events(receipt, "PointsIssuedInBatch")]
        assert len(parts) == h["count"]
        tree = batch_tree(
            [p["to"] for p in parts], [p["amount"] for p in parts], [p["itemRef"] for p in parts]
        )
        assert tree.root == h["ref"]
        for i, p in enumerate(parts):
            items.append(
                IssuanceItem(
                    h["ref"],
                    p["to"],
                    p["amount"],
                    p["itemRef"],
                    h["epoch"],
                    issued_at,
                    h["value"],
                    tree.proof(i),
                )
            )
    return items


def issued_item(ledger: Ledger, receipt: TxReceipt, index: int = 0) -> IssuanceItem:
    return issued_items(ledger, receipt)[index]


def redemption_record(ledger: Ledger, receipt: TxReceipt) -> RedemptionRecord:
    """The redemption a ``redeem`` receipt made, as ``refundRedemption`` takes it (its parts in order)."""
    parts = [event["args"] for event in ledger.events(receipt, "PointsRedeemed")]
    assert parts and len({(p["customer"], p["ref"], p["value"]) for p in parts}) == 1
    first = parts[0]
    return RedemptionRecord(
        first["customer"],
        first["ref"],
        first["value"],
        [p["epoch"] for p in parts],
        [p["amount"] for p in parts],
    )


# --------------------------------------------------------------------------- consent cancellation (EIP-712)


def cancellation_typed_data(*, chain_id: int, contract: str, customer: str, nonce: int) -> dict[str, Any]:
    """The full EIP-712 message a customer signs to revoke the consent it signed with ``nonce``."""
    return {
        "domain": {
            "name": "LoyaltyLedger",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "types": {
            "ConsentCancellation": [
                {"name": "customer", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ]
        },
        "primaryType": "ConsentCancellation",
        "message": {"customer": customer, "nonce": nonce},
    }


def sign_cancellation(
    ledger: Ledger, signer: LocalAccount, nonce: int, *, customer: str | None = None
) -> bytes:
    """``signer``'s signature cancelling ``customer``'s (default: the signer's) consent ``nonce``."""
    data = cancellation_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        customer=customer or signer.address,
        nonce=nonce,
    )
    signed = signer.sign_typed_data(
        domain_data=data["domain"], message_types=data["types"], message_data=data["message"]
    )
    return bytes(signed.signature)


# --------------------------------------------------------------------------- account migration (EIP-712)


def migration_typed_data(
    *, chain_id: int, contract: str, source: str, target: str, nonce: int, deadline: int
) -> dict[str, Any]:
    """The EIP-712 ``Migration`` both accounts sign to move every live point of ``source`` to ``target``."""
    return {
        "domain": {
            "name": "LoyaltyLedger",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "types": {
            "Migration": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        "primaryType": "Migration",
        "message": {"from": source, "to": target, "nonce": nonce, "deadline": deadline},
    }


def sign_migration(
    ledger: Ledger, signer: LocalAccount, source: str, target: str, nonce: int, deadline: int
) -> bytes:
    """``signer``'s signature of the migration of ``source``'s points to ``target`` (both sign it)."""
    data = migration_typed_data(
        chain_id=ledger.w3.eth.chain_id,
        contract=ledger.address,
        source=source,
        target=target,
        nonce=nonce,
        deadline=deadline,
    )
    signed = signer.sign_typed_data(
        domain_data=data["domain"], message_types=data["types"], message_data=data["message"]
    )
    return bytes(signed.signature)


def migration_args(
    ledger: Ledger,
    source: LocalAccount,
    target: LocalAccount,
    *,
    nonce: int | None = None,
    deadline: int | None = None,
) -> tuple[Any, ...]:
    """``migrateAccount``'s arguments moving ``source``'s points to ``target``, signed by both, with
    ``source``'s next nonce of key 0 and an hour's deadline unless given."""
    nonce = ledger.call("nonces", source.address, 0) if nonce is None else nonce
    deadline = ledger.node.timestamp() + 3600 if deadline is None else deadline
    signatures = [
        sign_migration(ledger, key, source.address, target.address, nonce, deadline)
        for key in (source, target)
    ]
    return (source.address, target.address, nonce, deadline, *signatures)


# --------------------------------------------------------------------------- sending


def replay_revert(ledger: Ledger, fn: Any, sender: str, gas: int = GAS) -> ContractRevert:
    """The decoded custom error of ``fn`` called from ``sender`` against the latest block."""
    try:
        fn.call({"from": sender, "gas": gas}, block_identifier="latest")
    except Exception as exc:
        revert = ledger.decoder.from_exception(exc)
        if revert is None:
            raise
        return revert
    raise AssertionError("the call was expected to revert but succeeded")


def send_failing(
    ledger: Ledger, fn_name: str, *args: Any, sender: str, gas: int = GAS
) -> tuple[TxReceipt, ContractRevert]:
    """Mines ``fn_name(*args)`` from ``sender`` expecting it to revert: its failed receipt and its error."""
    fn = getattr(ledger.contract.functions, fn_name)(*args)
    receipt = ledger.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": gas}))
    assert receipt["status"] == 0, f"{fn_name}{args} was expected to revert"
    return receipt, replay_revert(ledger, fn, sender, gas)


def send_signed(ledger: Ledger, account: LocalAccount, fn_name: str, *args: Any, gas: int = GAS) -> TxReceipt:
    """Sends ``fn_name(*args)`` signed by ``account`` (a key generated for the test, funded with ether);
    raises the decoded :class:`ContractRevert` if it reverts."""
    w3 = ledger.w3
    fn = getattr(ledger.contract.functions, fn_name)(*args)
    fee = w3.eth.get_block("latest")["baseFeePerGas"] * 2 + 10**9
    tx = fn.build_transaction(
        {
            "from": account.address,
            "gas": gas,
            "nonce": w3.eth.get_transaction_count(account.address),
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    raw = account.sign_transaction(tx).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    if receipt["status"] == 1:
        return receipt
    raise replay_revert(ledger, fn, account.address, gas)


# --------------------------------------------------------------------------- returns, refunds, migration


def chain_reader(ledger: Ledger) -> ChainLedger:
    """A read-only chain-layer client of ``ledger`` (views and record builders; it sends nothing)."""
    return ChainLedger(Rpc(ledger.w3, decoder=ledger.decoder), ledger.address)


def entries(ledger: Ledger, receipt: TxReceipt) -> list[tuple[str, dict[str, Any]]]:
    """Every event of ``receipt`` (Transfer included) as (name, arguments), in order."""
    return [(e["event"], e["args"]) for e in ledger.events(receipt)]


def assert_supply_identity(ledger: Ledger) -> None:
    """issued == (redeemed - refunded) + reversed + expired + pendingExpiry + outstanding."""
    c = ledger.call
    assert c("totalIssued") == (
        c("totalRedeemed")
        - c("totalRefunded")
        + c("totalReversed")
        + c("totalExpired")
        + c("pendingExpiry")
        + c("outstandingSupply")
    )


def to_epoch(ledger: Ledger, epoch: int) -> None:
    """Moves the clock a minute into ``epoch`` of ``ledger`` (no pause in between)."""
    warp_to(ledger.node, ledger.call("genesisTimestamp") + epoch * ledger.call("epochLength") + 60)
    assert ledger.call("currentEpoch") == epoch


def holding(ledger: Ledger, per_epoch: list[int], customer: LocalAccount | None = None) -> LocalAccount:
    """A customer holding ``per_epoch[e]`` points issued in epoch ``e`` (the clock ends in the last one)."""
    customer = customer or new_customer()
    for epoch, amount in enumerate(per_epoch):
        if epoch:
            to_epoch(ledger, epoch)
        if amount:
            ledger.issue(customer.address, amount)
    return customer
