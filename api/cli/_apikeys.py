"""``loyalty apikey create|list|rotate|revoke``: the HTTP service's API keys (admin, partner, auditor).

A new key's token is printed exactly once, on stdout, alone (``TOKEN=$(loyalty apikey create ...)``) or in
``--json``, with a warning on stderr; listings never show a token. The same functions serve the admin
endpoints (:mod:`api._keys`).
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from .._keys import KeyRole, create_key, list_keys, revoke_key, rotate_key
from ._errors import CommandError
from ._output import emit_json, table, when
from ._runtime import load_settings, service_db
from ._service import ShownKey

__all__ = ["app"]

TokenJson = Annotated[bool, typer.Option("--json", help="print {id, role, partner_id, token} as JSON")]
KeyIdArg = Annotated[str, typer.Argument(metavar="ID", help="the key's id (`loyalty apikey list`)")]

app = typer.Typer()
apikey = typer.Typer(
    help="API keys of the HTTP service (admin, partner, auditor): create, list, rotate, revoke.",
    no_args_is_help=True,
)
app.add_typer(apikey, name="apikey", rich_help_panel="Keys and access")


def _show_token(key: ShownKey, as_json: bool, what: str) -> None:
    assert key.token is not None
    scope = f" for partner {key.partner_id}" if key.partner_id is not None else ""
    print(f"{what} {key.role} key {key.id}{scope} ({key.name})", file=sys.stderr)
    print(
        "warning: the token is shown only this once and cannot be shown again: store it now", file=sys.stderr
    )
    if as_json:
        emit_json({"id": key.id, "role": key.role, "partner_id": key.partner_id, "token": key.token})
    else:
        print(key.token)


def _key_json(key: ShownKey) -> dict[str, object]:
    return {
        "id": key.id,
        "role": key.role,
        "partner_id": key.partner_id,
        "name": key.name,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@apikey.command("create")
def create(
    role: Annotated[KeyRole, typer.Option(help="what the key may do")],
    name: Annotated[str, typer.Option(help="what the key is for (shown in listings)")],
    partner: Annotated[
        int | None, typer.Option(metavar="ID", help="the partner a partner key acts for (its partner id)")
    ] = None,
    as_json: TokenJson = False,
) -> int:
    """A new key; its token is printed once, never again."""
    settings = load_settings()
    if role == "partner" and partner is None:
        raise CommandError("a partner key needs --partner ID (the partner it acts for)")
    if role != "partner" and partner is not None:
        raise CommandError(f"--partner is for partner keys; an {role} key acts for no partner")
    if not name.strip():
        raise CommandError("--name must not be empty")
    with service_db(settings) as db:
        created = create_key(db, role=role, name=name.strip(), partner_id=partner, now=int(time.time()))
        shown = ShownKey.of(created)
    _show_token(shown, as_json, "created")
    return 0


@apikey.command("list")
def list_(
    show_all: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list (never a token)")] = False,
) -> int:
    """The keys, oldest first (never their tokens)."""
    settings = load_settings()
    with service_db(settings) as db:
        keys = [ShownKey.of(k) for k in list_keys(db, include_revoked=show_all)]
    if as_json:
        emit_json([_key_json(k) for k in keys])
        return 0
    if not keys:
        print("no API keys" if show_all else "no live API keys (--all lists revoked ones too)")
        return 0
    header = ("id", "role", "partner", "name", "created", "last used", "revoked")
    rows = [
        (
            k.id,
            k.role,
            "-" if k.partner_id is None else str(k.partner_id),
            k.name,
            when(k.created_at),
            when(k.last_used_at),
            when(k.revoked_at),
        )
        for k in keys
    ]
    table(header, rows)
    return 0


@apikey.command("rotate")
def rotate(
    key_id: KeyIdArg,
    grace: Annotated[int, typer.Option(help="seconds the old key keeps working")] = 0,
    as_json: TokenJson = False,
) -> int:
    """A new key with the same role and scope; the old one is revoked (after --grace seconds)."""
    settings = load_settings()
    if grace < 0:
        raise CommandError("--grace is a number of seconds, 0 or more")
    with service_db(settings) as db:
        shown = ShownKey.of(rotate_key(db, key_id, now=int(time.time()), grace_s=grace))
    until = f" in {grace} s" if grace else " now"
    _show_token(shown, as_json, f"rotated {key_id} (it stops working{until}): new")
    return 0


@apikey.command("revoke")
def revoke(
    key_id: KeyIdArg,
    as_json: Annotated[bool, typer.Option("--json", help="print the revoked key as JSON")] = False,
) -> int:
    """Revoke a key at once: it is refused from its next request on."""
    settings = load_settings()
    with service_db(settings) as db:
        shown = ShownKey.of(revoke_key(db, key_id, now=int(time.time())))
    if as_json:
        emit_json(_key_json(shown))
        return 0
    scope = f" for partner {shown.partner_id}" if shown.partner_id is not None else ""
    print(f"revoked {shown.role} key {shown.id}{scope} ({shown.name}): it is refused from now on")
    return 0
