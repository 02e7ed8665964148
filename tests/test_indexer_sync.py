"""The mirror follows the chain: every entry kind lands in the raw and derived tables; reconcile agrees."""

from __future__ import annotations

from sqlalchemy import select

from conftest import Ledger, ledger_activity, mirror, table_digests
from indexer import LedgerEntry, reconcile


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
