"""The ``loyalty`` application: the command groups put together, and :func:`main`, which runs it and turns
what went wrong into an exit status.

Exit statuses: 0 done; 1 a failure (one ``error:`` line, and a ``hint:`` line for the failures an operator
meets, see :mod:`._errors`); 2 a usage error (Typer's, with the command's usage line; anything in it that
looks like a private key is redacted); 130 interrupted. ``reconcile`` exits 1 on a difference, ``audit``
with its own verdict (0 to 3).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer
import typer.core
import typer.main
from pydantic import ValidationError

from .._logging import configure_logging
from .._settings import Settings
from ..audit._cli import app as audit_app
from . import _apikeys, _chain, _coalition, _earning, _members, _rules, _service
from ._errors import Failure, explain, redact

__all__ = ["app", "main"]

app = typer.Typer(
    name="loyalty",
    help="Coalition loyalty-points ledger: run the service, deploy and govern the ledger, manage partners, "
    "members, rules and points, and audit it all from the chain. Settings come from LOYALTY_* environment "
    "variables; `loyalty COMMAND --help` says what each command does.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="log more on stderr (-v info, -vv debug)")
    ] = 0,
) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if logging.getLogger().handlers:  # set up already (by a host program, or a test runner): left alone
        return
    try:
        settings = Settings()
    except ValidationError:  # the command reports the invalid settings itself (one line and a hint)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    else:
        # JSON lines in production, readable text in dev; request ids; secrets redacted
        configure_logging(settings, level=level)


for _group in (_service, _chain, _apikeys, _coalition, _members, _rules, _earning):
    app.add_typer(_group.app)
app.add_typer(audit_app, name="audit", rich_help_panel="Audit")


def _usage_failure(exc: typer.TyperException) -> int:
    """A usage error as argparse showed one: the usage line, the error, where to read more; exit 2."""
    message = exc.format_message()
    if not message:  # a group called without a command: its help was printed instead
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    lines = []
    if ctx is not None:
        lines.append(ctx.get_usage())
    lines.append(f"error: {message}")
    if ctx is not None:
        lines.append(f"hint: `{ctx.command_path} --help` says what it takes")
    print(redact("\n".join(lines)), file=sys.stderr)
    return exc.exit_code


def _report(failure: Failure) -> int:
    print("\n".join(failure.lines()), file=sys.stderr)
    return failure.code


@functools.cache
def _command() -> typer.core.TyperGroup:
    """The Click group Typer builds from :data:`app` (built once: it takes tens of milliseconds)."""
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``loyalty`` with ``argv`` (default: the process's arguments); the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = _command()
    try:
        with command.make_context("loyalty", args) as ctx:
            result = command.invoke(ctx)
    except typer.Exit as exc:  # --help, and a command that ends itself
        return exc.exit_code
    except typer.Abort:  # Ctrl-C at a prompt
        return _report(Failure("interrupted", code=130))
    except typer.TyperException as exc:
        return _usage_failure(exc)
    except BrokenPipeError:  # stdout closed early (`loyalty ... | head`): nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's own recipe: no error at exit's flush
        return 1
    except (Exception, KeyboardInterrupt) as exc:
        failure = explain(exc)
        if failure is None:
            raise
        return _report(failure)
    return result if isinstance(result, int) else 0
