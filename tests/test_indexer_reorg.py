"""Reorganisations: the mirror undoes replaced blocks and ends equal to a fresh index of the new chain;
one deeper than the window stops the indexer and leaves the mirror as it was."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import AnvilNode, Ledger, fresh_digests, ledger_activity, mirror, new_customer, table_digests
from indexer import ReorgTooDeep, reconcile

WINDOW = 5


def issue_tx(ledger: Ledger, amount: int) -> dict[str, Any]:
    """An unsigned ``issue`` from the active partner (anvil signs for its dev accounts)."""
    data = ledger.contract.encode_abi(
        "issue", [new_customer().address, amount, b"\x01" * 16 + amount.to_bytes(16, "big"), 1, bytes(32)]
    )
    return {"from": ledger.actors.partner, "to": ledger.address, "data": data, "gas": 300_000}


def blocks_of_issues(ledger: Ledger, node: AnvilNode, count: int, salt: int) -> None:
    """``count`` blocks, each with one issue (amounts differ by ``salt``)."""
    for i in range(count):
        node.w3.eth.send_transaction(issue_tx(ledger, 1_000 * salt + i + 1))  # type: ignore[arg-type]


def reorg(node: AnvilNode, ledger: Ledger, depth: int, salt: int) -> None:
    """anvil replaces its last ``depth`` blocks with blocks holding other issues."""
    txs = [[issue_tx(ledger, 1_000 * salt + i + 1), i] for i in range(depth)]
    answer = node.w3.provider.make_request("anvil_reorg", [depth, txs])  # type: ignore[arg-type]
    assert "error" not in answer, answer


@pytest.mark.parametrize("depth", [1, 3, WINDOW])
def test_reorg_within_the_window_ends_equal_to_a_fresh_index(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str, second_database: str, depth: int
) -> None:
    ledger_activity(anvil_ledger)
    blocks_of_issues(anvil_ledger, anvil_node, WINDOW + 2, salt=1)
    with mirror(anvil_ledger, database, window=WINDOW) as indexer:
        indexer.sync()
        before = indexer.cursor().block_number
        reorg(anvil_node, anvil_ledger, depth, salt=7)
        indexer.sync()
        assert indexer.stats.reorgs == 1
        assert indexer.cursor().block_number == before
        assert indexer.stats.entries_removed == depth
        assert reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address) == []
        assert table_digests(indexer.engine) == fresh_digests(anvil_ledger, second_database, window=WINDOW)


def test_a_shorter_chain_after_a_revert_is_followed_back(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str, second_database: str
) -> None:
    """Snapshot-revert with different transactions, the new chain shorter than the mirror's cursor."""
    ledger_activity(anvil_ledger)
    snapshot = anvil_node.snapshot()
    blocks_of_issues(anvil_ledger, anvil_node, 4, salt=1)
    with mirror(anvil_ledger, database, window=WINDOW) as indexer:
        indexer.sync()
        anvil_node.revert(snapshot)
        blocks_of_issues(anvil_ledger, anvil_node, 2, salt=9)
        indexer.sync()
        assert indexer.stats.reorgs == 1
        assert table_digests(indexer.engine) == fresh_digests(anvil_ledger, second_database, window=WINDOW)
        assert reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address) == []


def test_a_reorg_deeper_than_the_window_stops_and_changes_nothing(
    anvil_ledger: Ledger, anvil_node: AnvilNode, database: str
) -> None:
    ledger_activity(anvil_ledger)
    blocks_of_issues(anvil_ledger, anvil_node, WINDOW + 3, salt=1)
    with mirror(anvil_ledger, database, window=WINDOW) as indexer:
        indexer.sync()
        cursor = indexer.cursor().block_number
        before = table_digests(indexer.engine)
        reorg(anvil_node, anvil_ledger, WINDOW + 1, salt=5)
        with pytest.raises(ReorgTooDeep) as raised:
            indexer.sync()
        assert (raised.value.cursor, raised.value.window) == (cursor, WINDOW)
        assert raised.value.lowest_kept == cursor - WINDOW
        assert table_digests(indexer.engine) == before
        with pytest.raises(ReorgTooDeep):  # and again on the next attempt: it never diverges
            indexer.sync()
