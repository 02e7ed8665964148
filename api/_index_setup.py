"""The indexer as the settings describe it: its database, its configuration, a progress bar for backfills."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from web3 import Web3

from chain import DeploymentManifest
from indexer import Indexer, IndexerConfig, Progress, TierPolicy, make_engine

from ._settings import Settings

__all__ = ["ProgressBar", "indexer_config", "indexer_from_settings", "mirror_engine"]


def mirror_engine(settings: Settings, url: str | None = None, *, pool_size: int = 5) -> Engine:
    """The engine of the mirror's database (a SQLite file's directory is created if needed)."""
    url = url or settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            path = settings.project_root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    return make_engine(url, pool_size=pool_size, max_overflow=10)


def indexer_config(settings: Settings) -> IndexerConfig:
    return IndexerConfig(
        confirmations=settings.index_confirmations,
        window=settings.reorg_window,
        poll_interval=settings.index_poll_interval_s,
        tiers=TierPolicy(
            thresholds=tuple(settings.tier_thresholds.items()),
            qualifying_epochs=settings.tier_qualifying_epochs,
        ),
    )


def indexer_from_settings(
    settings: Settings,
    w3: Web3,
    manifest: DeploymentManifest,
    engine: Engine,
    *,
    progress: ProgressBar | None = None,
) -> Indexer:
    return Indexer(
        w3,
        engine,
        manifest.ledger.address,
        deployment_block=manifest.deployed_at.block_number,
        config=indexer_config(settings),
        on_progress=progress,
        # the timelock in front of the ledger (if any): its scheduled and executed operations are mirrored
        timelock=manifest.timelock.address if manifest.timelock is not None else None,
    )


class ProgressBar:
    """Backfill progress on stderr: a redrawn bar in a terminal, a line every tenth of the way otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._last_tenth = -1
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        span = max(progress.target - progress.first + 1, 1)
        done = min(max(progress.cursor - progress.first + 1, 0), span)
        fraction = done / span
        elapsed = max(time.monotonic() - self.started, 1e-9)
        text = (
            f"backfill {fraction:6.1%} block {progress.cursor:,}/{progress.target:,} "
            f"{progress.entries:,} entries ({progress.entries / elapsed:,.0f}/s)"
        )
        if self.stream.isatty():
            filled = int(self.width * fraction)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {text}")
            self._drawn = True
        elif int(fraction * 10) != self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
