"""The audit benchmark runs end to end as a script (its own anvil and SQLite file) and ends with the JSON
line the issue specifies: the chain's entries, the audit's seconds and rate, the indexer's rate.

Only the shape of the result is checked here: speed is what the script reports, never a test assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chain._devnode import anvil_binary
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "bench_audit.py"
KEYS = ["entries", "verify_seconds", "verify_per_s", "indexer_per_s"]
ENTRIES = 2_000


@pytest.mark.anvil
@pytest.mark.slow
def test_a_small_run_ends_with_the_summary_line() -> None:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")

    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--entries",
            str(ENTRIES),
            "--recipients",
            "300",
            "--batch-size",
            "250",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    *table, last = done.stdout.strip().splitlines()
    figures = json.loads(last)
    assert list(figures) == KEYS
    assert figures["entries"] >= ENTRIES
    assert all(isinstance(figures[key], int | float) and figures[key] > 0 for key in KEYS)
    assert any("audit verify" in line for line in table)
