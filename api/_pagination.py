"""Cursor pagination: newest first, keyed on a stable key (the ledger's ``seq`` for entries).

A page is ``{data: [...], next_cursor}``; ``next_cursor`` is the key of the last item returned (decimal for a
``seq``), and the next page holds the items strictly older than it. New entries arriving between two pages
never shift a page (an offset would), and a cursor stays valid forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

__all__ = ["PAGE_LIMIT_DEFAULT", "PAGE_LIMIT_MAX", "Page", "SeqPage"]

PAGE_LIMIT_MAX = 500
PAGE_LIMIT_DEFAULT = 50


@dataclass(frozen=True, slots=True)
class Page:
    #: items strictly before this key (None: from the newest)
    before: int | None
    limit: int


def _seq_page(
    cursor: Annotated[
        str | None,
        Query(
            # at most 18 digits: every cursor fits a signed 64-bit column (a 19- or 20-digit one would not)
            pattern=r"^[0-9]{1,18}$",
            description="the next_cursor of the previous page (omit for the newest items)",
            examples=["1042"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX, description="items per page")] = PAGE_LIMIT_DEFAULT,
) -> Page:
    return Page(None if cursor is None else int(cursor), limit)


SeqPage = Annotated[Page, Depends(_seq_page)]
