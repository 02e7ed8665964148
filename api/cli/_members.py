"""Members and wallets: ``member enrol|list|show`` and ``wallet ADDRESS``.

They run the members and wallets routes' own code in this process (:mod:`api.routers.members`,
:mod:`api.routers.wallets`) on the service's database, acting as the partner named by ``--partner`` (its
customers, under its customer ids) or, without it, as an admin (every member, without personal data). A
wallet is computed as ``GET /v1/wallets/{address}`` computes it: from the mirror, as of its block.

A one-time link code (a member's consent to be linked to another partner) is read from standard input or a
prompt that does not echo, never from the command line. A new custodial member's passkey enrolment link is
printed once, as the API answers it once.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer

from .._auth import Principal
from .._errors import NotReady
from .._pagination import PAGE_LIMIT_MAX, Page
from .._services import Services
from ..routers.members import (
    MemberCreate,
    MemberPublic,
    enrol_member,
    get_member,
    get_member_wallet,
    list_members,
    member_by_customer_id,
)
from ..routers.wallets import WalletPublic, checked_address, wallet_history, wallet_of
from ._errors import CommandError
from ._output import emit_json, table, when
from ._runtime import (
    ADMIN,
    as_partner,
    checked,
    load_settings,
    open_services,
    partner_id,
    read_secret,
    require_partner,
)

__all__ = ["app", "describe_wallet", "no_custody"]

PANEL = "Members, rules and points"
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

app = typer.Typer()
member = typer.Typer(
    help="The coalition's members: enrol a partner's customer, list a partner's members, show one.",
    no_args_is_help=True,
)
app.add_typer(member, name="member", rich_help_panel=PANEL)


def no_custody() -> CommandError:
    """Custodial wallets need the custody seed, kept under the keystore password."""
    return CommandError(
        "custodial wallets are not configured: no keystore password to open the custody seed with",
        hint="set LOYALTY_KEYSTORE_PASSWORD_FILE (the seed lives in <LOYALTY_KEYSTORE_DIR>/custody)",
    )


def _fields(pairs: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        print(f"  {label:<{width}}  {value}")


def _member_lines(shown: MemberPublic) -> list[tuple[str, str]]:
    pairs = [("wallet", f"{shown.address} ({shown.custody})"), ("created", when(shown.created_at))]
    if shown.customer_id is not None:
        how = "linked with the member's consent" if shown.linked else "enrolled"
        pairs.append(("customer id", f"{shown.customer_id} ({how} {when(shown.enrolled_at)})"))
    for label, value in (("email", shown.email), ("phone", shown.phone), ("birthday", shown.birthday)):
        if value is not None:
            pairs.append((label, str(value)))
    if shown.erased:
        pairs.append(("erased", "personal data erased"))
    return pairs


# --------------------------------------------------------------------------- member ...


@member.command("enrol")
def enrol(
    pid: Annotated[int, typer.Option("--partner", metavar="ID", help="the partner enrolling its customer")],
    customer_id: Annotated[str, typer.Option(help="the partner's own id of its customer")],
    address: Annotated[
        str | None,
        typer.Option(help="self custody: the member's own wallet address (default: a custodial wallet)"),
    ] = None,
    link: Annotated[
        bool,
        typer.Option(
            "--link",
            help="link a member of another partner with the one-time link code they created (read from "
            "standard input, or asked; never the command line)",
        ),
    ] = False,
    email: Annotated[str | None, typer.Option(help="the customer's email")] = None,
    phone: Annotated[str | None, typer.Option(help="the customer's phone number (E.164, +...)")] = None,
    birthday: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD", help="the customer's birthday (birthday points)")
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Enrol a partner's customer as a member, as POST /v1/members does.

    A new member gets a custodial wallet (and a passkey enrolment link, printed once) or keeps their own
    address (--address); a member of another partner is linked with their one-time link code (--link)."""
    settings = load_settings()
    target = partner_id(pid)
    values: dict[str, Any] = {"customer_id": customer_id, "custody": "self" if address else "custodial"}
    optional = {"address": address, "email": email, "phone": phone, "birthday": birthday}
    values |= {k: v for k, v in optional.items() if v is not None}
    if link:
        values["link_code"] = read_secret("link code").upper()
    body = checked(MemberCreate, "member", **values)
    custodial = body.custody == "custodial" and body.link_code is None
    with open_services(settings, custody=custodial, create_custody=True) as services:
        if custodial and services.custody is None:
            raise no_custody()
        require_partner(services, target)
        enrolled = enrol_member(body, as_partner(target), services)
    if as_json:
        emit_json(enrolled)
        return 0
    how = "linked" if enrolled.linked else "enrolled"
    print(f"{how} {enrolled.id} for partner {target} as customer {enrolled.customer_id}")
    _fields(_member_lines(enrolled)[:1])
    if enrolled.enrolment is not None:
        until = when(enrolled.enrolment.expires_at)
        print(f"  passkey enrolment link, valid until {until} (give it to the member once):")
        print(f"  {enrolled.enrolment.url}")
    return 0


def _caller(pid: int | None) -> Principal:
    return ADMIN if pid is None else as_partner(partner_id(pid))


@member.command("list")
def list_(
    pid: Annotated[
        int | None,
        typer.Option(
            "--partner", metavar="ID", help="this partner's members, with its customer ids (default: all)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=PAGE_LIMIT_MAX, help="members per page")] = 50,
    cursor: Annotated[
        str | None, typer.Option(metavar="MEMBER_ID", help="the page after this member (from the last page)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {data, next_cursor} as JSON")] = False,
) -> int:
    """Members, newest first: a partner's own (with its customer ids), or every member (no personal data)."""
    settings = load_settings()
    caller = _caller(pid)
    with open_services(settings) as services:
        page = list_members(caller, services, cursor=cursor, limit=limit)
    if as_json:
        emit_json(page)
        return 0
    if not page.data:
        print("no members" if cursor is None else "no more members")
        return 0
    if pid is None:
        header: tuple[str, ...] = ("id", "address", "custody", "created", "erased")
        rows: list[tuple[str, ...]] = [
            (m.id, m.address, m.custody, when(m.created_at), "yes" if m.erased else "") for m in page.data
        ]
    else:
        header = ("id", "customer id", "address", "custody", "enrolled", "linked")
        rows = [
            (m.id, m.customer_id or "-", m.address, m.custody, when(m.enrolled_at), "yes" if m.linked else "")
            for m in page.data
        ]
    table(header, rows)
    if page.next_cursor is not None:
        scope = "" if pid is None else f" --partner {pid}"
        print(f"more: loyalty member list{scope} --cursor {page.next_cursor}", file=sys.stderr)
    return 0


@member.command("show")
def show(
    member_ref: Annotated[
        str,
        typer.Argument(metavar="MEMBER", help="the member's id (mem_...), or with --partner its customer id"),
    ],
    pid: Annotated[
        int | None,
        typer.Option("--partner", metavar="ID", help="as this partner: its customer id and contact data"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {member, wallet} as JSON")] = False,
) -> int:
    """A member: wallet, custody, the partner's customer id and contact data, balance and tier.

    Without --partner the member is shown as an admin sees it (no personal data)."""
    settings = load_settings()
    caller = _caller(pid)
    with open_services(settings) as services:
        if member_ref.startswith("mem_"):
            shown = get_member(member_ref, caller, services)
        elif pid is not None:
            shown = member_by_customer_id(member_ref, caller, services)
        else:
            raise CommandError(
                f"{member_ref!r} is not a member id (mem_...)", hint="a customer id needs --partner ID"
            )
        try:
            wallet: WalletPublic | None = get_member_wallet(shown.id, caller, services)
        except NotReady:
            wallet = None
    if as_json:
        emit_json(
            {
                "member": shown.model_dump(mode="json"),
                "wallet": None if wallet is None else wallet.model_dump(mode="json"),
            }
        )
        return 0
    print(f"member {shown.id}")
    pairs = _member_lines(shown)
    if wallet is not None:
        pairs.append(
            (
                "balance",
                f"{wallet.balance:,} points, tier {wallet.tier.name} (loyalty wallet {shown.address})",
            )
        )
    else:
        pairs.append(("balance", "unknown: the mirror holds no ledger yet (loyalty index)"))
    _fields(pairs)
    return 0


# --------------------------------------------------------------------------- wallet


def describe_wallet(wallet: WalletPublic) -> None:
    """A wallet as ``loyalty wallet`` prints it: the figures, then its live points by epoch."""
    as_of = wallet.as_of
    print(f"wallet {wallet.address} as of block {as_of.block_number} ({when(as_of.time)})")
    tier = wallet.tier
    to_next = (
        f"; {tier.points_to_next_tier:,} to {tier.next_tier}"
        if tier.next_tier is not None and tier.points_to_next_tier is not None
        else ""
    )
    pairs = [
        ("balance", f"{wallet.balance:,} points"),
        (
            "expiring",
            f"{wallet.expiring_30d:,} within 30 days; next expiry "
            + (
                f"{when(wallet.next_expiry_at)} ({wallet.next_expiry_points:,} points)"
                if wallet.next_expiry_at is not None
                else "none"
            ),
        ),
        ("tier", f"{tier.name} ({tier.qualifying_points:,} qualifying points{to_next})"),
    ]
    nearest = wallet.next_reward
    if nearest is not None:
        pairs.append(
            (
                "next reward",
                f"{nearest.name} (reward {nearest.reward_id}, partner {nearest.partner_id}): "
                f"{nearest.points_away:,} points away",
            )
        )
    pairs.append(("redeemable", f"{wallet.redeemable_count} rewards now ({wallet.rewards_url})"))
    _fields(pairs)
    if wallet.epochs:
        print("live points by epoch, the first to expire first:")
        table(
            ("epoch", "points", "expires"),
            [(str(e.epoch), f"{e.points:,}", when(e.expires_at)) for e in wallet.epochs],
        )


@app.command("wallet", rich_help_panel=PANEL)
def wallet(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="the wallet's address (0x + 40 hex digits)")
    ],
    history: Annotated[
        int, typer.Option(metavar="N", min=0, max=PAGE_LIMIT_MAX, help="also its N newest ledger entries")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the wallet as GET /v1/wallets/{address} answers (JSON)")
    ] = False,
) -> int:
    """A wallet's balance, expiring points, tier and nearest reward, as GET /v1/wallets/{address} shows it.

    Computed from the mirror as of its block (run `loyalty index` to bring it up to date)."""
    settings = load_settings()
    if not _ADDRESS.match(address):
        raise CommandError(f"{address!r} is not an address (0x + 40 hex digits)")
    account = checked_address(address)
    with open_services(settings) as services:
        shown, entries = _wallet(services, account, history)
    if as_json:
        document = shown.model_dump(mode="json")
        if history:
            document["history"] = [e.model_dump(mode="json") for e in entries]
        emit_json(document)
        return 0
    describe_wallet(shown)
    if history:
        print("history, newest first:")
        rows = [
            (
                str(e.seq),
                e.kind,
                "-" if e.partner_id is None else str(e.partner_id),
                e.reason_label or "",
                "" if e.amount is None else f"{e.amount:,}",
                when(e.block_timestamp),
                e.tx_hash,
            )
            for e in entries
        ]
        table(("seq", "entry", "partner", "reason", "points", "at", "tx"), rows)
    return 0


def _wallet(services: Services, account: str, history: int) -> tuple[WalletPublic, list[Any]]:
    with services.mirror() as (view, as_of):
        shown = wallet_of(services, view, as_of, account)
        entries = wallet_history(services, view, as_of, account, Page(None, history)).data if history else []
    return shown, entries
