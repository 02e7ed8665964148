"""Indexer throughput on a spawned anvil: >= N ledger entries backfilled into SQLite and into PostgreSQL by
the indexer, next to a web3.py `get_logs` + ORM baseline over the same blocks, then the live head lag of both
mirrors while 100 entries/s arrive, all in one run.

Run from the repo root inside the project's environment: `python scripts/bench_indexer.py` (100,000 entries,
about two minutes) or `--events N`. PostgreSQL: `LOYALTY_DATABASE_URL` if it is a postgresql:// URL, else
`LOYALTY_TEST_POSTGRES_URL`, else postgresql://postgres@127.0.0.1:5432/test; the run works in a fresh schema
it drops at the end. Progress goes to stderr; stdout gets the table and, as its last line, one JSON object:
{"events", "sqlite_per_s", "postgres_per_s", "baseline_per_s", "lag_p95_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from indexer._bench import IndexerBenchConfig, run_benchmark

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    configured = os.environ.get("LOYALTY_DATABASE_URL")
    if configured and make_url(configured).get_backend_name() == "postgresql":
        return configured
    return os.environ.get("LOYALTY_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def main() -> None:
    defaults = IndexerBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=defaults.events, help="ledger entries to produce (at least)"
    )
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=defaults.baseline_events,
        help="the baseline indexes whole blocks holding at least this many entries (0: all of them)",
    )
    parser.add_argument(
        "--live-seconds", type=float, default=defaults.live_seconds, help="length of the live phase"
    )
    parser.add_argument(
        "--live-rate", type=int, default=defaults.live_rate, help="entries per second in the live phase"
    )
    parser.add_argument(
        "--live-block-time",
        type=int,
        default=defaults.live_block_time,
        help="anvil's mining in the live phase: N interval mining every N s (default 1), 0 automine",
    )
    args = parser.parse_args()
    # A SIGTERM (a CI timeout) unwinds like an exception: anvil is stopped and the PostgreSQL schema dropped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
    config = IndexerBenchConfig(
        events=args.events,
        baseline_events=args.baseline_events or None,
        live_seconds=args.live_seconds,
        live_rate=args.live_rate,
        live_block_time=args.live_block_time,
    )
    result = run_benchmark(
        ROOT, postgres_url(), config, progress=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(result.table())
    print(json.dumps(result.figures()))


if __name__ == "__main__":
    main()
