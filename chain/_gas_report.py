"""Gas used by the ledger's operations next to a plain OpenZeppelin ERC-20 deployed in the same run.

Every figure is the ``gasUsed`` of a mined transaction in steady state: the coalition-wide storage slots
(supply, totals, settled totals, hash-chain head) are already non-zero, as they are for every transaction
after the first, and "fresh" means a recipient that has never held points (its balance slot goes from zero
to non-zero). A customer's first consent at a nonce key (every ``redeem*``, ``revoke_consent``,
``cancel_consent``) writes that key's nonce slot for the first time. ``redeem`` is the partner's first
redemption (its redeemed counters go from zero to non-zero, as in the v1 report); ``redeem_next_customer``
(an EOA) and ``redeem_erc1271`` (an ``ERC1271Wallet``) follow it, so their difference is the ERC-1271 path.
Batches carry an item reference per recipient (the contract computes their Merkle root).

Returns, refunds and migration, each after a first one of its kind (the coalition's reversed and refunded
totals and the partner's counters are non-zero, as in steady state): ``reverse_issue`` takes a whole single
issue back; ``reverse_batch_item_512`` takes a whole item of a 512-item batch back, presenting its Merkle
proof (9 or 10 hashes); ``refund`` gives a whole one-epoch redemption back into its live epoch;
``migrate_12_epochs`` moves an account holding points of all 12 live epochs to a fresh account, with both
accounts' EIP-712 signatures (the source's first nonce of key 0).

The validity bound (``MAX_VALIDITY`` = 120 epochs) is measured on a second ledger deployed with that
validity: ``v120_balance_of`` is the ``eth_estimateGas`` of a ``balanceOf`` call on an account holding points
of all 120 live epochs (the same for ``v12_balance_of`` on the 12-epoch ledger), ``v120_redeem_120_epochs``
redeems all of them (120 entries), ``v120_sweep_120_epochs`` sweeps one account with 120 expired buckets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from ._compile import Artifact
from ._deploy import deploy_contract
from ._ledger import Ledger
from ._rpc import Rpc, receipt_from_rpc

__all__ = ["BLOCK_GAS_LIMIT", "GasReport", "measure_gas"]

EPOCH_LENGTH = 30 * 24 * 3600
VALIDITY = 12
#: The validity bound of the contract (``MAX_VALIDITY``), and the epoch length of the ledger measuring it.
MAX_VALIDITY = 120
BOUND_EPOCH_LENGTH = 24 * 3600
#: The block gas limit the bound is stated against (Ethereum mainnet's, and anvil's default).
BLOCK_GAS_LIMIT = 30_000_000
#: The batch whose item a reversal proves (its proof has 9 or 10 hashes).
PROVEN_BATCH = 512

#: The OpenZeppelin operation each ledger row is compared with; rows not named here have no counterpart.
_BASELINES = {
    **dict.fromkeys(
        [
            "oz_mint",
            "oz_mint_existing",
            "issue_fresh",
            "issue_existing",
            "batch1_per_recipient",
            "batch10_per_recipient",
            "batch100_per_recipient",
            "sweep_1_epoch",
            "sweep_12_epochs",
        ],
        "oz_mint",
    ),
    **dict.fromkeys(["oz_burn", "redeem", "redeem_next_customer", "redeem_erc1271"], "oz_burn"),
}
#: Rows measuring the validity bound, also shown as a share of a block.
_BOUND_ROWS = ("v12_balance_of", "v120_balance_of", "v120_redeem_120_epochs", "v120_sweep_120_epochs")


@dataclass(frozen=True, slots=True)
class GasReport:
    """Gas per operation; ``rows`` keeps the order in which the table is printed."""

    rows: dict[str, int]

    def figures(self) -> dict[str, float | int]:
        """The figures with the ratios to the OpenZeppelin baseline and the bound rows' share of a
        ``BLOCK_GAS_LIMIT`` block, as printed in the JSON summary."""
        r = self.rows
        oz_mint, oz_burn = r["oz_mint"], r["oz_burn"]
        return {
            **r,
            "issue_fresh_ratio": round(r["issue_fresh"] / oz_mint, 3),
            "issue_existing_ratio": round(r["issue_existing"] / oz_mint, 3),
            "batch1_per_recipient_ratio": round(r["batch1_per_recipient"] / oz_mint, 3),
            "batch10_per_recipient_ratio": round(r["batch10_per_recipient"] / oz_mint, 3),
            "batch100_per_recipient_ratio": round(r["batch100_per_recipient"] / oz_mint, 3),
            "redeem_ratio": round(r["redeem"] / oz_burn, 3),
            "redeem_erc1271_ratio": round(r["redeem_erc1271"] / oz_burn, 3),
            **{f"{name}_block_share": round(r[name] / BLOCK_GAS_LIMIT, 4) for name in _BOUND_ROWS},
        }

    def table(self) -> str:
        """A plain-text table: operation, gas, and the ratio to the OpenZeppelin mint (burn for redemptions)
        where there is a counterpart, or the share of a block for the validity bound."""
        lines = [f"{'operation':<34}{'gas':>12}{'vs OZ':>10}", "-" * 66]
        for name, gas in self.rows.items():
            base = _BASELINES.get(name)
            if base is not None:
                note = f"{gas / self.rows[base]:>9.2f}x  ({base})"
            elif name in _BOUND_ROWS:
                note = f"{'':>10}  ({gas / BLOCK_GAS_LIMIT:.2%} of a {BLOCK_GAS_LIMIT:,} block)"
            else:
                note = ""
            lines.append(f"{name:<34}{gas:>12,}{note}")
        return "\n".join(lines)


class _Gas:
    """Sends contract calls from unlocked accounts and returns the gas each mined transaction used."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def __call__(self, fn: Any, sender: str, *, limit: int = 15_000_000) -> int:
        return int(self.receipt(fn, sender, limit=limit)["gasUsed"])

    def receipt(self, fn: Any, sender: str, *, limit: int = 15_000_000) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": limit}))
        if receipt["status"] != 1:
            raise RuntimeError(f"gas report transaction failed: {fn}")
        return receipt

    def estimate(self, fn: Any, sender: str) -> int:
        """``eth_estimateGas`` of a call (a view costs gas when another contract calls it)."""
        return int(fn.estimate_gas({"from": sender}))

    def advance(self, seconds: int, *, mine: bool = True) -> None:
        """Moves the clock forward; without ``mine``, the next transaction's block carries the new time."""
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        if mine:
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def measure_gas(
    w3: Web3, ledger_artifact: Artifact, baseline_artifact: Artifact, wallet_artifact: Artifact
) -> GasReport:
    """Deploys the contracts on ``w3`` (a dev node with at least 7 unlocked accounts and
    ``evm_increaseTime``) and measures each operation once in steady state.

    ``wallet_artifact`` is the ERC-1271 test wallet (``ERC1271Wallet``) a customer redeems through.
    The node's clock moves forward by about 24 epochs of 30 days and 240 of one day.
    """
    accounts = list(w3.eth.accounts)
    admin, partner = accounts[0], accounts[1]
    gas = _Gas(w3)
    ledger = _deploy_ledger(w3, ledger_artifact, admin, EPOCH_LENGTH, VALIDITY)
    oz = deploy_contract(w3, baseline_artifact, admin, sender=admin)
    fresh = _fresh_addresses()

    rows: dict[str, int] = {}
    _gas_baseline(gas, oz, admin, fresh, rows)

    gas(ledger.functions.registerPartner(1, partner, partner, True, True, 2**63), admin)
    issue = _issuer(ledger)
    gas(issue(next(fresh), 5), partner)  # warms the coalition-wide slots
    rows["issue_fresh"] = gas(issue(next(fresh), 5), partner)
    existing = next(fresh)
    gas(issue(existing, 5), partner)
    rows["issue_existing"] = gas(issue(existing, 5), partner)
    for size in (1, 10, 100):
        recipients = [next(fresh) for _ in range(size)]
        refs = [secrets.token_bytes(32) for _ in range(size)]
        batch = ledger.functions.issueBatch(recipients, [7] * size, refs, 1, b"\x00" * 32)
        rows[f"batch{size}_per_recipient"] = gas(batch, partner) // size

    customer: LocalAccount = Account.create()
    gas(issue(customer.address, 1_000), partner)
    rows["redeem"] = gas(_redemption(w3, ledger, customer, customer.address, 100), partner)
    # the partner's redeemed counters are non-zero from here: a second customer, then a wallet
    second: LocalAccount = Account.create()
    gas(issue(second.address, 1_000), partner)
    rows["redeem_next_customer"] = gas(_redemption(w3, ledger, second, second.address, 100), partner)
    owner: LocalAccount = Account.create()
    wallet = deploy_contract(w3, wallet_artifact, owner.address, sender=admin)
    gas(issue(wallet.address, 1_000), partner)
    rows["redeem_erc1271"] = gas(_redemption(w3, ledger, owner, wallet.address, 100), partner)

    _measure_returns(w3, gas, ledger, partner, fresh, rows)
    _measure_governance(w3, gas, ledger, accounts, rows)

    # Sweeps: an account with points in 1 expired epoch, one with points in all 12 epochs of a window.
    warmup, one, twelve = next(fresh), next(fresh), next(fresh)
    migrant: LocalAccount = Account.create()
    gas(issue(warmup, 3), partner)
    gas(issue(one, 3), partner)
    for epoch in range(VALIDITY):
        if epoch:
            gas.advance(EPOCH_LENGTH)
        gas(issue(twelve, 3), partner)
        gas(issue(migrant.address, 3), partner)
    balance_of_12 = gas.estimate(ledger.functions.balanceOf(twelve), partner)  # 12 live epochs held
    migrated: LocalAccount = Account.create()
    rows["migrate_12_epochs"] = gas(_migration(w3, ledger, migrant, migrated), partner)
    gas.advance(EPOCH_LENGTH * (VALIDITY + 1))
    # totalExpired becomes non-zero, as in steady state; the migrated points leave the epochs' supply, so
    # that `twelve` is again the last holder of its epochs (as before migrations were measured)
    gas(ledger.functions.sweepExpired([warmup, migrated.address]), admin)
    rows["sweep_1_epoch"] = gas(ledger.functions.sweepExpired([one]), admin)
    rows["sweep_12_epochs"] = gas(ledger.functions.sweepExpired([twelve]), admin)
    rows["v12_balance_of"] = balance_of_12

    _measure_validity_bound(w3, gas, ledger_artifact, admin, partner, fresh, rows)
    return GasReport(rows)


def _deploy_ledger(w3: Web3, artifact: Artifact, admin: str, epoch_length: int, validity: int) -> Contract:
    """A ledger whose admin also holds the treasury and pauser roles, settlement value 1."""
    return deploy_contract(
        w3,
        artifact,
        "Coalition Points",
        "PTS",
        admin,
        admin,
        admin,
        0,
        epoch_length,
        validity,
        1,
        90 * 24 * 3600,
        sender=admin,
    )


def _gas_baseline(
    gas: _Gas, oz: Contract, admin: str, fresh: Iterator[ChecksumAddress], rows: dict[str, int]
) -> None:
    holder = next(fresh)
    gas(oz.functions.mint(holder, 1_000), admin)  # totalSupply becomes non-zero, as in steady state
    rows["oz_mint"] = gas(oz.functions.mint(next(fresh), 5), admin)
    rows["oz_mint_existing"] = gas(oz.functions.mint(holder, 5), admin)
    rows["oz_burn"] = gas(oz.functions.burn(holder, 100), admin)


def _measure_governance(
    w3: Web3, gas: _Gas, ledger: Contract, accounts: Sequence[str], rows: dict[str, int]
) -> None:
    """The registry, treasury, pause and consent operations, on partner 2 (the admin holds every role)."""
    admin, partner = accounts[0], accounts[1]
    operators = accounts[2:5]  # partner 2's keys, unlocked so that the partner can rotate its own
    holder, stranger = accounts[5], accounts[6]
    f = ledger.functions
    gas(f.registerPartner(2, operators[0], operators[0], True, True, 1_000), admin)
    rows["rotate_operator_by_admin"] = gas(f.rotatePartnerOperator(2, operators[1]), admin)
    rows["rotate_operator_by_partner"] = gas(f.rotatePartnerOperator(2, operators[2]), operators[1])
    rows["set_partner_rights"] = gas(f.setPartnerRights(2, True, False), admin)
    rows["increase_allowance"] = gas(f.increasePartnerAllowance(2, 500), admin)
    rows["decrease_allowance"] = gas(f.decreasePartnerAllowance(2, 300), admin)
    rows["set_settlement_value"] = gas(f.setSettlementValue(2), admin)
    # settled points and value of the coalition and of partner 1 non-zero first, as after its first period
    gas(f.recordSettlement(2, -1, -1, secrets.token_bytes(32)), admin)
    gas(f.recordSettlement(1, -5, -10, secrets.token_bytes(32)), admin)
    rows["record_settlement"] = gas(f.recordSettlement(1, -5, -10, secrets.token_bytes(32)), admin)
    rows["offboard_partner"] = gas(f.offboardPartner(2), admin)  # allowance dropped, then status
    rows["grant_role"] = gas(f.grantRole(f.PAUSER_ROLE().call(), stranger), admin)
    rows["pause"] = gas(f.pause(), admin)
    rows["unpause"] = gas(f.unpause(), admin)

    # consents at the key of partner 1: the holder revokes its own, anyone submits a signed cancellation
    key = 1
    rows["revoke_consent"] = gas(f.revokeConsent(f.nonces(holder, key).call()), holder)
    signer: LocalAccount = Account.create()
    nonce = f.nonces(signer.address, key).call()
    signature = signer.unsafe_sign_hash(f.cancellationDigest(signer.address, nonce).call()).signature
    rows["cancel_consent"] = gas(f.cancelConsent(signer.address, nonce, bytes(signature)), partner)


def _measure_returns(
    w3: Web3,
    gas: _Gas,
    ledger: Contract,
    partner: str,
    fresh: Iterator[ChecksumAddress],
    rows: dict[str, int],
) -> None:
    """Reversals of a single issue and of an item of a 512-item batch, and a refund, by partner 1; the
    records they present are built by the chain layer's client from the receipts."""
    f, issue = ledger.functions, _issuer(ledger)
    client = Ledger(Rpc(w3), ledger.address)

    def reversal(receipt: TxReceipt, index: int = 0) -> Any:
        item = client.issuances_in(receipt_from_rpc(receipt))[index]
        return f.reverseIssuance(item.as_struct(), item.amount, secrets.token_bytes(32))  # the whole item

    gas(reversal(gas.receipt(issue(next(fresh), 5), partner)), partner)  # reversed totals become non-zero
    rows["reverse_issue"] = gas(reversal(gas.receipt(issue(next(fresh), 5), partner)), partner)
    recipients = [next(fresh) for _ in range(PROVEN_BATCH)]
    refs = [secrets.token_bytes(32) for _ in range(PROVEN_BATCH)]
    batch = f.issueBatch(recipients, [7] * PROVEN_BATCH, refs, 1, b"\x00" * 32)
    batch_receipt = gas.receipt(batch, partner, limit=BLOCK_GAS_LIMIT - 1_000_000)
    rows["reverse_batch_item_512"] = gas(reversal(batch_receipt, PROVEN_BATCH // 2 + 1), partner)

    def refund(customer: LocalAccount) -> Any:
        gas(issue(customer.address, 1_000), partner)
        receipt = gas.receipt(_redemption(w3, ledger, customer, customer.address, 100), partner)
        record = client.redemption_in(receipt_from_rpc(receipt))
        return f.refundRedemption(record.as_struct(), record.amount, secrets.token_bytes(32))

    gas(refund(Account.create()), partner)  # refunded totals become non-zero
    rows["refund"] = gas(refund(Account.create()), partner)


def _migration(w3: Web3, ledger: Contract, source: LocalAccount, target: LocalAccount) -> Any:
    """Moves every live point of ``source`` to ``target``, signed by both over the contract's digest."""
    f = ledger.functions
    nonce = f.nonces(source.address, 0).call()
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
    digest = f.migrationDigest(source.address, target.address, nonce, deadline).call()
    signatures = [bytes(account.unsafe_sign_hash(digest).signature) for account in (source, target)]
    return f.migrateAccount(source.address, target.address, nonce, deadline, *signatures)


def _measure_validity_bound(
    w3: Web3,
    gas: _Gas,
    artifact: Artifact,
    admin: str,
    partner: str,
    fresh: Iterator[ChecksumAddress],
    rows: dict[str, int],
) -> None:
    """balanceOf, a redemption and a sweep of one account at the validity bound, on a second ledger."""
    ledger = _deploy_ledger(w3, artifact, admin, BOUND_EPOCH_LENGTH, MAX_VALIDITY)
    f = ledger.functions
    gas(f.registerPartner(1, partner, partner, True, True, 2**63), admin)
    customer: LocalAccount = Account.create()
    swept, warmup = next(fresh), next(fresh)
    gas(_issuer(ledger)(warmup, 1), partner)
    for epoch in range(MAX_VALIDITY):
        if epoch:
            gas.advance(BOUND_EPOCH_LENGTH, mine=False)
        refs = [secrets.token_bytes(32), secrets.token_bytes(32)]
        batch = f.issueBatch([customer.address, swept], [1, 1], refs, 1, b"\x00" * 32)
        gas(batch, partner)
    live = f.liveBalances(customer.address).call()[0]
    if len(live) != MAX_VALIDITY:
        raise RuntimeError(f"the customer holds {len(live)} live epochs, not {MAX_VALIDITY}")
    rows["v120_balance_of"] = gas.estimate(f.balanceOf(customer.address), partner)
    redemption = _redemption(w3, ledger, customer, customer.address, MAX_VALIDITY)
    rows["v120_redeem_120_epochs"] = gas(redemption, partner)
    gas.advance(BOUND_EPOCH_LENGTH * MAX_VALIDITY)
    gas(f.sweepExpired([warmup]), admin)  # totalExpired becomes non-zero, as in steady state
    rows["v120_sweep_120_epochs"] = gas(f.sweepExpired([swept]), admin)
    if f.balanceOf(swept).call() != 0 or f.pendingExpiry().call() != 0:
        raise RuntimeError("the sweep at the validity bound left expired points behind")


def _issuer(ledger: Contract) -> Callable[[str, int], Any]:
    def issue(to: str, amount: int) -> Any:
        return ledger.functions.issue(to, amount, secrets.token_bytes(32), 1, b"\x00" * 32)

    return issue


def _redemption(w3: Web3, ledger: Contract, signer: LocalAccount, customer: str, amount: int) -> Any:
    """A redemption of ``amount`` of ``customer``'s points at partner 1, at its nonce key, consented by
    ``signer``'s key over the contract's own digest (``signer`` is the customer, or its wallet's owner)."""
    f = ledger.functions
    ref = secrets.token_bytes(32)
    nonce = f.nonces(customer, 1).call()
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
    digest = f.redemptionDigest(customer, 1, amount, ref, nonce, deadline).call()
    signature = bytes(signer.unsafe_sign_hash(digest).signature)
    return f.redeem(customer, amount, ref, nonce, deadline, signature)


def _fresh_addresses() -> Iterator[ChecksumAddress]:
    base = int.from_bytes(secrets.token_bytes(8), "big") << 64
    i = 0
    while True:
        i += 1
        yield Web3.to_checksum_address((base + i).to_bytes(20, "big"))
