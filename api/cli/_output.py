"""How commands print: data on stdout, everything else (progress, warnings, notes) on stderr.

- Listings are rich tables. In a terminal they are styled and fit its width; in a pipe they are plain text,
  one row per line, never wrapped, without trailing blanks (``awk``, ``grep`` and the tests read them).
- ``--json`` prints one JSON document on stdout and nothing else there (:func:`emit_json`).
- Long work shows a spinner (:func:`working`) or a progress bar (:class:`BackfillBar`) on stderr when
  stderr is a terminal, and nothing (or a line every tenth of the way) when it is not: a log stays readable.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from indexer import Progress as BackfillProgress

from .._index_setup import ProgressBar

__all__ = ["BackfillBar", "emit_json", "table", "when", "working"]

#: Columns a table may take when it is not shown in a terminal (no row is ever wrapped in a pipe).
PIPE_WIDTH = 10_000


def when(timestamp: int | None) -> str:
    """A Unix time as ISO 8601 in UTC (``-`` for none)."""
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def emit_json(document: Any) -> None:
    """``document`` (a pydantic model, or what ``json.dumps`` takes) as one line of JSON on stdout."""
    text = document.model_dump_json() if isinstance(document, BaseModel) else json.dumps(document)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
    """``rows`` under ``header`` on stdout (cells are text, never rich markup)."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", title=title, highlight=False)
    for name in header:
        grid.add_column(name, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    if sys.stdout.isatty():
        Console(highlight=False).print(grid)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=PIPE_WIDTH, color_system=None, highlight=False).print(grid)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


@contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner with ``message`` on stderr while the block runs (in a terminal; silent otherwise)."""
    if not sys.stderr.isatty():
        yield
        return
    with Console(stderr=True).status(message):
        yield


class BackfillBar(ProgressBar):
    """The indexer's backfill progress: a rich progress bar when stderr is a terminal; otherwise
    :class:`~api._index_setup.ProgressBar`'s line every tenth of the way."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, progress: BackfillProgress) -> None:
        if not self.stream.isatty():
            super().__call__(progress)
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("backfill"),
                BarColumn(),
                TextColumn("block {task.fields[cursor]:,} of {task.fields[target]:,}"),
                TextColumn("{task.fields[entries]:,} entries ({task.fields[rate]:,.0f}/s)"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("backfill", total=None, cursor=0, target=0, entries=0, rate=0.0)
        assert self._task is not None
        span = max(progress.target - progress.first + 1, 1)
        done = min(max(progress.cursor - progress.first + 1, 0), span)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self._bar.update(
            self._task,
            completed=done,
            total=span,
            cursor=progress.cursor,
            target=progress.target,
            entries=progress.entries,
            rate=progress.entries / elapsed,
        )

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            return
        super().finish()
