"""``python -m api.cli``: the ``loyalty`` command (what ``loyalty run`` is under ``make run``'s venv)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
