"""Issuance throughput on a spawned anvil: a naive web3.py loop, our pipelined `issue`s, our `issue_batch`,
and anvil's own ceiling for pre-signed raw transactions, all in one run.

Run from the repo root inside the project's environment: `python scripts/bench_chain.py` (under three
minutes) or `python scripts/bench_chain.py --quick` (under one). Progress goes to stderr; stdout gets the
table and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chain._bench import BenchConfig, run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs: the whole of it in under a minute"
    )
    args = parser.parse_args()
    config = BenchConfig.quick() if args.quick else BenchConfig()
    result = run_benchmark(ROOT, config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(result.table())
    print(json.dumps(result.figures()))


if __name__ == "__main__":
    main()
