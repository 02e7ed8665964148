"""Gas used by the ledger's operations next to a plain OpenZeppelin ERC-20 deployed in the same run.

Every figure is the ``gasUsed`` of a mined transaction in steady state: the coalition-wide storage slots
(supply, totals, hash-chain head) are already non-zero, as they are for every transaction after the first,
and "fresh" means a recipient that has never held points (its balance slot goes from zero to non-zero).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from ._compile import Artifact
from ._deploy import deploy_contract
from ._eip712 import sign_redemption

__all__ = ["GasReport", "measure_gas"]

EPOCH_LENGTH = 30 * 24 * 3600
VALIDITY = 12


@dataclass(frozen=True, slots=True)
class GasReport:
    """Gas per operation; ``rows`` keeps the order in which the table is printed."""

    rows: dict[str, int]

    def figures(self) -> dict[str, float | int]:
        """The figures with the ratios to the OpenZeppelin baseline, as printed in the JSON summary."""
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
        }

    def table(self) -> str:
        """A plain-text table: operation, gas, and ratio to the OpenZeppelin mint (burn for redeem)."""
        r = self.rows
        lines = [f"{'operation':<34}{'gas':>12}{'vs OZ':>10}", "-" * 56]
        for name, gas in r.items():
            base = "oz_burn" if name in ("redeem", "oz_burn") else "oz_mint"
            lines.append(f"{name:<34}{gas:>12,}{gas / r[base]:>9.2f}x  ({base})")
        return "\n".join(lines)


def measure_gas(w3: Web3, ledger_artifact: Artifact, baseline_artifact: Artifact) -> GasReport:
    """Deploys both contracts on ``w3`` (a dev node with unlocked accounts and ``evm_increaseTime``)
    and measures each operation once in steady state."""
    accounts = list(w3.eth.accounts)
    admin, partner = accounts[0], accounts[1]
    ledger = deploy_contract(
        w3,
        ledger_artifact,
        "Coalition Points",
        "PTS",
        admin,
        admin,
        admin,
        0,
        EPOCH_LENGTH,
        VALIDITY,
        1,
        sender=admin,
    )
    oz = deploy_contract(w3, baseline_artifact, admin, sender=admin)
    fresh = _fresh_addresses()

    def gas(fn: Any, sender: str) -> int:
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": 15_000_000}))
        if receipt["status"] != 1:
            raise RuntimeError(f"gas report transaction failed: {fn}")
        return int(receipt["gasUsed"])

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
        batch = ledger.functions.issueBatch(recipients, [7] * size, secrets.token_bytes(32), 1, b"\x00" * 32)
        rows[f"batch{size}_per_recipient"] = gas(batch, partner) // size

    customer = Account.create()
    gas(issue(customer.address, 1_000), partner)
    rows["redeem"] = gas(_redemption(w3, ledger, customer, 100), partner)

    # Sweeps: an account with points in 1 expired epoch, one with points in all 12 epochs of a window.
    warmup, one, twelve = next(fresh), next(fresh), next(fresh)
    gas(issue(warmup, 3), partner)
    gas(issue(one, 3), partner)
    for _ in range(VALIDITY):
        gas(issue(twelve, 3), partner)
        _advance(w3, EPOCH_LENGTH)
    _advance(w3, EPOCH_LENGTH * VALIDITY)
    gas(ledger.functions.sweepExpired([warmup]), admin)  # totalExpired becomes non-zero, as in steady state
    rows["sweep_1_epoch"] = gas(ledger.functions.sweepExpired([one]), admin)
    rows["sweep_12_epochs"] = gas(ledger.functions.sweepExpired([twelve]), admin)
    return GasReport(rows)


def _gas_baseline(
    gas: Callable[[Any, str], int], oz: Contract, admin: str, fresh: Any, rows: dict[str, int]
) -> None:
    holder = next(fresh)
    gas(oz.functions.mint(holder, 1_000), admin)  # totalSupply becomes non-zero, as in steady state
    rows["oz_mint"] = gas(oz.functions.mint(next(fresh), 5), admin)
    rows["oz_mint_existing"] = gas(oz.functions.mint(holder, 5), admin)
    rows["oz_burn"] = gas(oz.functions.burn(holder, 100), admin)


def _issuer(ledger: Contract) -> Callable[[str, int], Any]:
    def issue(to: str, amount: int) -> Any:
        return ledger.functions.issue(to, amount, secrets.token_bytes(32), 1, b"\x00" * 32)

    return issue


def _redemption(w3: Web3, ledger: Contract, customer: Any, amount: int) -> Any:
    ref = secrets.token_bytes(32)
    nonce = ledger.functions.nonces(customer.address).call()
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
    signature = sign_redemption(
        customer,
        chain_id=w3.eth.chain_id,
        contract=ledger.address,
        partner_id=1,
        amount=amount,
        ref=ref,
        nonce=nonce,
        deadline=deadline,
    )
    return ledger.functions.redeem(customer.address, amount, ref, nonce, deadline, signature)


def _advance(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _fresh_addresses() -> Any:
    base = int.from_bytes(secrets.token_bytes(8), "big") << 64
    i = 0
    while True:
        i += 1
        yield Web3.to_checksum_address((base + i).to_bytes(20, "big"))
