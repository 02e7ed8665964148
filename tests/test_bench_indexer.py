"""The indexer benchmark runs end to end as a script (its own anvil, SQLite files and a PostgreSQL schema)
and ends with the JSON line the issue specifies.

Only the shape of the result is checked here: speed is what the script reports, never a test assertion.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from chain._devnode import anvil_binary
from conftest import ROOT
from indexer import make_engine

SCRIPT = ROOT / "scripts" / "bench_indexer.py"
KEYS = ["events", "sqlite_per_s", "postgres_per_s", "baseline_per_s", "lag_p95_s"]
EVENTS = 2_000


def _postgres_reachable() -> bool:
    """Whether the PostgreSQL the script will use (its own rule, its own default) answers."""
    spec = importlib.util.spec_from_file_location("bench_indexer", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    engine = make_engine(script.postgres_url())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.mark.anvil
@pytest.mark.slow
def test_a_small_run_ends_with_the_summary_line() -> None:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    if not _postgres_reachable():
        pytest.skip("no PostgreSQL reachable (set LOYALTY_TEST_POSTGRES_URL)")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", str(EVENTS), "--live-seconds", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert list(figures) == KEYS
    assert figures["events"] >= EVENTS
    assert all(isinstance(figures[key], int | float) and figures[key] > 0 for key in KEYS)
