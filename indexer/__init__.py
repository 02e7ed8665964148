"""Indexer: mirrors the ledger's on-chain events into SQL. (Arrives with the indexer issue.)"""

__all__: list[str] = []
