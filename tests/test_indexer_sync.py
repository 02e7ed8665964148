"""The mirror follows the chain: every entry kind lands in the raw and derived tables; reconcile agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import (
    EthTesterNode,
    Ledger,
    deploy_ledger,
    ledger_activity,
    mirror,
    mirror_engine,
    table_digests,
)
from indexer import (
    ENTRY_EVENTS,
    Cursor,
    Indexer,
    IndexerError,
    LedgerEntry,
    MirrorMismatch,
    decode_logs,
    entry_topics,
    reconcile,
)

#: Entries ``ledger_activity`` makes none of (test_indexer_time.py and test_indexer_returns.py mirror them).
NOT_IN_ACTIVITY = {"PointsExpired"}


def test_every_entry_kind_is_mirrored(anvil_ledger: Ledger, database: str) -> None:
    ledger_activity(anvil_ledger)
    indexer = mirror(anvil_ledger, database, window=4)
    indexer.sync()
    with indexer.engine.connect() as conn:
        events = set(conn.execute(select(LedgerEntry.event)).scalars())
    assert events == {spec.name for spec in ENTRY_EVENTS.values()} - NOT_IN_ACTIVITY
    differences = reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address)
    assert not differences, "\n".join(map(str, differences))
    assert table_digests(indexer.engine)
    indexer.close()


def test_the_embedded_chain_is_mirrored_too(eth_tester_node: EthTesterNode, tmp_path: Path) -> None:
    """eth-tester (the embedded default) has no raw JSON-RPC: the same reads go through web3."""
    snapshot = eth_tester_node.snapshot()
    try:
        first = eth_tester_node.w3.eth.block_number + 1
        ledger = deploy_ledger(eth_tester_node)
        ledger.deployment_block = first
        ledger_activity(ledger, customers=3)
        with mirror(ledger, f"sqlite:///{tmp_path / 'm.db'}", window=3) as indexer:
            assert indexer.sync() == eth_tester_node.w3.eth.block_number
            assert indexer.stats.entries == ledger.call("ledgerSequence")
            assert reconcile(ledger.w3, indexer.engine, ledger.address) == []
    finally:
        eth_tester_node.revert(snapshot)


def test_replaying_a_range_changes_nothing(anvil_ledger: Ledger, database: str) -> None:
    ledger_activity(anvil_ledger)
    with mirror(anvil_ledger, database, window=2, initial_range=3) as indexer:
        indexer.sync()
        before = table_digests(indexer.engine)
        cursor = indexer.cursor()
        logs = indexer.source.logs(
            indexer.address, entry_topics(), cursor.deployment_block, cursor.block_number
        )
        timestamps = {
            h.number: h.timestamp
            for h in indexer.source.headers(list(range(cursor.deployment_block, cursor.block_number + 1)))
            if h is not None
        }
        (to_block,) = indexer.source.headers([cursor.block_number])
        assert to_block is not None
        added = indexer.store.commit_batch(
            decode_logs(logs, timestamps), params=cursor.params, to_block=to_block
        )
        assert added == 0
        assert table_digests(indexer.engine) == before


def test_an_address_without_a_ledger_is_a_clear_error(anvil_ledger: Ledger, tmp_path: Path) -> None:
    with Indexer(
        anvil_ledger.w3,
        mirror_engine(f"sqlite:///{tmp_path / 'm.db'}"),
        anvil_ledger.actors.customer,  # an account, not a contract
        deployment_block=anvil_ledger.deployment_block,
    ) as indexer:
        with pytest.raises(IndexerError, match="no LoyaltyLedger at"):
            indexer.sync()
        with indexer.engine.connect() as conn:
            assert conn.execute(select(Cursor)).first() is None  # nothing was written


def test_a_mirror_of_another_deployment_is_refused(anvil_ledger: Ledger, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with mirror(anvil_ledger, url) as indexer:
        indexer.sync()
    other = Indexer(
        anvil_ledger.w3,
        mirror_engine(url),
        anvil_ledger.address,
        deployment_block=anvil_ledger.deployment_block + 1,
    )
    with other, pytest.raises(MirrorMismatch) as refused:
        other.sync()
    assert (refused.value.field, refused.value.expected) == (
        "deployment block",
        anvil_ledger.deployment_block + 1,
    )
