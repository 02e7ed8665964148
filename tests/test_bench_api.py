"""The HTTP service benchmark runs end to end as a script (its own anvil, mirror, servers, wrk, export
children) and ends with the JSON line the issue specifies.

Only the shape and sanity of the result are checked here: speed is what the script reports, never a test
assertion.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chain._devnode import anvil_binary
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "bench_api.py"
KEYS = ["wallet_rps", "bare_rps", "ratio", "p99_ms_at_500", "export_rss_mb_100k", "export_rss_mb_1m"]


@pytest.mark.anvil
@pytest.mark.slow
def test_a_quick_run_ends_with_the_summary_line() -> None:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )

    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert list(figures) == KEYS
    assert all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert figures["ratio"] == pytest.approx(figures["wallet_rps"] / figures["bare_rps"], abs=1e-3)
    # a process that imported the service's modules and streamed a CSV: tens of MB at least, far below a GB
    assert 20 < figures["export_rss_mb_100k"] <= figures["export_rss_mb_1m"] < 1024
    table = "\n".join(lines[:-1])
    assert "2 worker processes each" in table and "targets:" in table


def test_without_wrk_the_script_says_how_to_install_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "PYTHONPATH": str(ROOT)},  # no wrk on this PATH
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "error: wrk is not installed: `apt-get install -y wrk` (Debian, Ubuntu) or `brew install wrk` (macOS)"
    )
