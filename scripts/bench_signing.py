"""Transaction signing: chain's LocalSigner next to eth-account's Account.sign_transaction, in one run.

Both sign the same EIP-1559 transactions (an ``issue``-sized calldata each) with the same key; the raw
transactions must be byte-identical (both use RFC 6979 nonces), or the run fails.
Run from the repo root inside the project's environment: `python scripts/bench_signing.py [--count N]`.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from typing import Any

from eth_account import Account

from chain import LocalSigner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="transactions to sign with each")
    count = parser.parse_args().count
    account = Account.create(secrets.token_hex(32))  # a key for this run only
    signer = LocalSigner(account)
    txs: list[dict[str, Any]] = [
        {
            "type": 2,
            "chainId": 31337,
            "nonce": nonce,
            "gas": 120_000,
            "maxFeePerGas": 2 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "to": Account.create().address,
            "value": 0,
            "data": "0x" + secrets.token_hex(196),  # selector + 6 words, the size of an issue()
        }
        for nonce in range(count)
    ]
    start = time.perf_counter()
    ours = [signer.sign_transaction(tx) for tx in txs]
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    baseline = [bytes(account.sign_transaction(tx).raw_transaction) for tx in txs]
    baseline_s = time.perf_counter() - start
    if ours != baseline:
        raise SystemExit("LocalSigner and eth-account signed differently")
    figures = {
        "count": count,
        "local_signer_per_s": round(count / ours_s, 1),
        "eth_account_per_s": round(count / baseline_s, 1),
        "ratio": round(baseline_s / ours_s, 2),
    }
    print(f"{'signer':<28}{'per s':>12}")
    print(f"{'eth-account (baseline)':<28}{figures['eth_account_per_s']:>12,.0f}")
    ours_line = f"{'chain LocalSigner':<28}{figures['local_signer_per_s']:>12,.0f}"
    print(f"{ours_line}   {figures['ratio']}x, byte-identical")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
