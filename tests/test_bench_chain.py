"""The issuance benchmark runs end to end on its own anvil and every issuance it counts lands on the ledger.

Only the shape of the result is checked here: speed is what the script reports, never a test assertion.
"""

from __future__ import annotations

import pytest

from chain._bench import BenchConfig, run_benchmark
from chain._devnode import anvil_binary
from conftest import ROOT

REQUIRED_KEYS = ["naive_per_s", "pipelined_per_s", "batched_per_s", "batch_size", "anvil_raw_per_s"]

TINY = BenchConfig(
    naive=20, pipelined=50, batched=40, raw=50, chunk=20, batch_sizes=(10, 20), trial_recipients=20
)


@pytest.mark.anvil
def test_a_tiny_run_reports_every_rate_and_lands_every_issuance() -> None:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")

    result = run_benchmark(ROOT, TINY)
    figures = result.figures()

    assert list(figures)[: len(REQUIRED_KEYS)] == REQUIRED_KEYS
    assert all(figures[key] > 0 for key in REQUIRED_KEYS)
    assert result.batch_size in TINY.batch_sizes
    assert set(result.batch_trials) == set(TINY.batch_sizes)
    assert [s.issuances for s in result.scenarios] == [20, 50, 40, 50]
    # every issuance is one point: the four scenarios and the trials (20 recipients per size), nothing lost
    assert result.points_issued == 20 + 50 + 40 + 50 + 2 * 20
    assert result.outstanding_supply == result.points_issued
