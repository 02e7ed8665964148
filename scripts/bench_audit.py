"""Audit verification throughput on a spawned anvil: a chain of >= N ledger entries (batched issuance, the
generation not counted) verified by `api.audit.verify`, and backfilled by the project's indexer into SQLite
in the same run, for comparison.

Run from the repo root inside the project's environment: `python scripts/bench_audit.py` (1,000,000 entries;
generating them takes a few minutes) or `--entries N`. Progress goes to stderr; stdout gets the table and, as
its last line, one JSON object: {"entries", "verify_seconds", "verify_per_s", "indexer_per_s"}.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from api.audit._bench import AuditBenchConfig, run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    defaults = AuditBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--entries", type=int, default=defaults.entries, help="ledger entries to produce (at least)"
    )
    parser.add_argument(
        "--recipients",
        type=int,
        default=defaults.recipient_pool,
        help="distinct recipients the batches draw from (at least --batch-size)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="recipients per issue_batch"
    )
    args = parser.parse_args()
    # A SIGTERM (a CI timeout) unwinds like an exception: anvil is stopped and the temporary files removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
    config = AuditBenchConfig(
        entries=args.entries,
        recipient_pool=args.recipients,
        batch_size=args.batch_size,
    )
    result = run_benchmark(ROOT, config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(result.table())
    print(json.dumps(result.figures()))


if __name__ == "__main__":
    main()
