"""The ``loyalty`` command line: the operator's whole job, from one command (Typer, with rich output).

Every command reads :class:`~api.Settings` (``LOYALTY_*``); flags override a few of them. A failure prints
``error: ...`` on stderr (and ``hint: ...`` when there is something to do about it) and exits 1; a usage
error exits 2. Secrets are never taken from the command line: keystore passwords come from the settings (a
file or ``LOYALTY_KEYSTORE_PASSWORD``) or, in a terminal, from a prompt that does not echo; a private key to
import comes from a file or standard input; a member's one-time code from standard input or such a prompt.
No command prints a private key or a password. An API key's token is printed exactly once, on stdout, by the
command that makes it (``apikey create``, ``apikey rotate``; ``run`` prints the two keys of its dev-mode
session); listings never show one. ``--json`` prints one JSON document on stdout and nothing else there.

One module per group of commands, each a Typer app merged into the root one (:mod:`._main`):

- :mod:`._service`: ``run``, ``serve``, ``migrate``, ``index``, ``reconcile``, ``batcher``, ``jobs``
- :mod:`._chain`: ``compile``, ``keys ...``, ``deploy``, ``timelock ...``
- :mod:`._apikeys`: ``apikey ...``
- :mod:`._coalition`: ``partner ...``, ``settlement ...``, ``transfers``, ``pause``, ``unpause``,
  ``operations ...`` (each recorded as the admin API records it)
- :mod:`._rules`: ``rules ...``
- :mod:`._members`: ``member ...``, ``wallet``
- :mod:`._earning`: ``reward ...``, ``issue``, ``redeem`` (the routes' own code, run in process)
- :mod:`api.audit._cli`: ``audit verify|prove`` (an auditor's tool: no operator settings)

Shared by all: :mod:`._runtime` (settings, prompts, the deployment, the database, the service's
``Services``), :mod:`._output` (tables, JSON, spinners and progress bars) and :mod:`._errors` (the error
line, its hint, the exit status).
"""

from __future__ import annotations

from ._main import app, main

__all__ = ["app", "main"]
