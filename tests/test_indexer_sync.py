"""The mirror follows the chain: every entry kind lands in the raw and derived tables, and reconcile agrees."""

from __future__ import annotations

from sqlalchemy import select

from conftest import Ledger, ledger_activity, table_digests
from indexer import Indexer, IndexerConfig, LedgerEntry, make_engine, reconcile


def mirror(ledger: Ledger, url: str, **config: object) -> Indexer:
    return Indexer(
        ledger.w3,
        make_engine(url),
        ledger.address,
        deployment_block=ledger.deployment_block,
        config=IndexerConfig(**config),  # type: ignore[arg-type]
    )


def test_every_entry_kind_is_mirrored(anvil_ledger: Ledger, database: str) -> None:
    ledger_activity(anvil_ledger)
    indexer = mirror(anvil_ledger, database, window=4)
    indexer.sync()
    with indexer.engine.connect() as conn:
        events = set(conn.execute(select(LedgerEntry.event)).scalars())
    assert events == {
        "PartnerRegistered",
        "PartnerStatusChanged",
        "PartnerAllowanceChanged",
        "PointsIssued",
        "PointsBatchIssued",
        "PointsIssuedInBatch",
        "PointsRedeemed",
        "SettlementValueChanged",
        "TransfersEnabledChanged",
        "PointsTransferred",
    }
    differences = reconcile(anvil_ledger.w3, indexer.engine, anvil_ledger.address)
    assert not differences, "\n".join(map(str, differences))
    assert table_digests(indexer.engine)
    indexer.close()
