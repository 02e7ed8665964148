"""Gas report: the ledger's operations next to an OpenZeppelin ERC-20 mint/burn, on a spawned anvil: issues
and Merkle batches, redemptions, returns (of an issue, and of an item of a 512-item batch with its proof),
refunds, a 12-epoch migration, governance, sweeps and the validity bound (chain/_gas_report.py says what each
row measures).

Run from the repo root inside the project's environment: `python scripts/gas_report.py`.
The last line printed is one JSON object with every figure and ratio (and the share of a block of the
operations at the validity bound, MAX_VALIDITY = 120 epochs).
"""

from __future__ import annotations

import json
from pathlib import Path

from chain import compile_contracts
from chain._devnode import start_anvil
from chain._gas_report import measure_gas

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    artifacts = compile_contracts(ROOT)  # the ledger and the OpenZeppelin baseline, compiled in this run
    with start_anvil(ROOT) as node:
        report = measure_gas(
            node.w3, artifacts["LoyaltyLedger"], artifacts["ReferenceERC20"], artifacts["ERC1271Wallet"]
        )
    print(report.table())
    print(json.dumps(report.figures()))


if __name__ == "__main__":
    main()
