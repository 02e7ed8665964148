"""Points in and out: ``reward create|list|retire`` (a partner's catalogue), ``issue`` (an adjustment, or a
purchase, queued in the outbox) and ``redeem`` (a custodial member's one-time code, as at a till).

Each runs the HTTP route's own code in this process (:mod:`api.routers.rewards`, :mod:`api.routers.earning`,
:mod:`api.routers.redemptions`): the same checks, the same operation rows in the outbox. Nothing here sends a
transaction: the batcher does (``loyalty batcher --partner ID``, or ``loyalty run``), and ``loyalty wallet``
shows the result once the indexer has mirrored it.

``issue --points`` is an admin's adjustment (goodwill or a correction) for the partner named, which uses that
partner's allowance; ``issue --purchase FILE`` records the partner's order (the body of ``POST
/v1/purchases``) and computes its points with the partner's active rule set. The member's one-time redemption
code is read from standard input or a prompt that does not echo, never from the command line.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from fastapi import Response
from pydantic import ValidationError

from .._operations import OperationPublic
from .._pagination import PAGE_LIMIT_MAX, Page
from ..routers.earning import AdjustmentCreate, PurchaseCreate, create_adjustment, create_purchase
from ..routers.redemptions import RedemptionCreate, create_redemption
from ..routers.rewards import (
    RewardCreate,
    RewardPublic,
    RewardsPublic,
    create_reward,
    list_partner_rewards,
    list_rewards,
    retire_reward,
)
from ..routers.rules import MemberFields
from ._errors import CommandError
from ._members import no_custody
from ._output import emit_json, table, when
from ._runtime import (
    ADMIN,
    as_partner,
    checked,
    load_settings,
    open_services,
    partner_id,
    problems,
    read_secret,
    require_partner,
)

__all__ = ["app"]

PANEL = "Members, rules and points"
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]
OperationJson = Annotated[
    bool, typer.Option("--json", help="print the operation as the API answers it (JSON)")
]
PartnerOpt = Annotated[int, typer.Option("--partner", metavar="ID", help="the partner's id")]
MemberId = Annotated[
    str | None, typer.Option("--member", metavar="MEMBER_ID", help="the member, by id (mem_...)")
]
CustomerId = Annotated[str | None, typer.Option(help="the member, by the partner's customer id")]
Address = Annotated[str | None, typer.Option(help="the member, by wallet address")]

app = typer.Typer()
reward = typer.Typer(
    help="A partner's rewards catalogue (what points buy): create, list, retire.", no_args_is_help=True
)
app.add_typer(reward, name="reward", rich_help_panel=PANEL)


def _member_fields(member_id: str | None, customer_id: str | None, address: str | None) -> MemberFields:
    given = {"member_id": member_id, "customer_id": customer_id, "address": address}
    named = {k: v for k, v in given.items() if v is not None}
    if len(named) != 1:
        raise typer.BadParameter(
            "name the member by exactly one", param_hint="'--member' / '--customer-id' / '--address'"
        )
    return checked(MemberFields, "member", **named)


def _time(text: str | None, what: str) -> int | None:
    """Unix seconds, or an ISO 8601 date or time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{what} is Unix seconds or an ISO 8601 date or time, not {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


# --------------------------------------------------------------------------- reward ...


def _reward_rows(rewards: list[RewardPublic]) -> list[tuple[str, ...]]:
    def window(r: RewardPublic) -> str:
        if r.valid_from is None and r.valid_until is None:
            return "-"
        start = when(r.valid_from) if r.valid_from is not None else "…"
        return f"{start} to {when(r.valid_until) if r.valid_until is not None else '…'}"

    return [
        (
            str(r.id),
            str(r.partner_id),
            r.name,
            f"{r.points_price:,}",
            "unlimited" if r.stock is None else str(r.stock),
            window(r),
            "retired" if r.retired_at is not None else ("yes" if r.available else "no"),
        )
        for r in rewards
    ]


_REWARD_HEADER = ("id", "partner", "name", "points", "stock", "valid", "available")


@reward.command("create")
def reward_create(
    pid: PartnerOpt,
    name: Annotated[str, typer.Option(help="what the member gets (shown in the catalogue)")],
    points: Annotated[int, typer.Option(help="its price in points")],
    description: Annotated[str | None, typer.Option(help="more about it")] = None,
    stock: Annotated[int | None, typer.Option(help="how many there are (default: unlimited)")] = None,
    valid_from: Annotated[
        str | None, typer.Option(metavar="WHEN", help="redeemable from (Unix seconds or ISO 8601, UTC)")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option(metavar="WHEN", help="redeemable until (Unix seconds or ISO 8601, UTC)")
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Add a reward to a partner's catalogue (the partner must be on the ledger)."""
    settings = load_settings()
    target = partner_id(pid)
    values: dict[str, Any] = {
        "name": name,
        "points_price": points,
        "description": description,
        "stock": stock,
        "valid_from": _time(valid_from, "--valid-from"),
        "valid_until": _time(valid_until, "--valid-until"),
    }
    body = checked(RewardCreate, "reward", **{k: v for k, v in values.items() if v is not None})
    with open_services(settings) as services:
        require_partner(services, target)
        created = create_reward(target, body, ADMIN, services)
    if as_json:
        emit_json(created)
        return 0
    print(
        f"reward {created.id} in partner {target}'s catalogue: {created.name}, "
        f"{created.points_price:,} points"
    )
    if not created.available:
        print("  not redeemable now (out of stock, or outside its validity window)")
    return 0


def _all_pages(read: Any) -> list[RewardPublic]:
    found: list[RewardPublic] = []
    before: int | None = None
    while True:
        page: RewardsPublic = read(Page(before, PAGE_LIMIT_MAX))
        found += page.data
        if page.next_cursor is None:
            return found
        before = int(page.next_cursor)


@reward.command("list")
def reward_list(
    pid: Annotated[
        int | None,
        typer.Option(
            "--partner", metavar="ID", help="this partner's catalogue (default: what is redeemable now)"
        ),
    ] = None,
    include_retired: Annotated[
        bool, typer.Option("--all", help="with --partner: retired rewards too")
    ] = False,
    max_points: Annotated[
        int | None, typer.Option(metavar="POINTS", help="without --partner: priced at most this")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> int:
    """A partner's catalogue, newest first; without --partner, every reward redeemable now.

    Redeemable now: at a partner that is active and accepts points, in stock, inside its validity window."""
    settings = load_settings()
    with open_services(settings) as services:
        if pid is not None:
            target = partner_id(pid)
            require_partner(services, target)
            rewards = _all_pages(
                lambda page: list_partner_rewards(
                    target, ADMIN, services, page, include_retired=include_retired
                )
            )
        else:
            rewards = _all_pages(lambda page: list_rewards(ADMIN, services, page, max_points=max_points))
    if as_json:
        emit_json([r.model_dump(mode="json") for r in rewards])
        return 0
    if not rewards:
        where = f"partner {pid}'s catalogue" if pid is not None else "the coalition"
        print(f"no rewards in {where} (loyalty reward create --partner ID ...)")
        return 0
    table(_REWARD_HEADER, _reward_rows(rewards))
    return 0


@reward.command("retire")
def reward_retire(
    pid: PartnerOpt,
    reward_id: Annotated[
        int, typer.Argument(metavar="REWARD_ID", help="the reward's id (loyalty reward list)")
    ],
    as_json: AsJson = False,
) -> int:
    """Retire a reward: it can no longer be redeemed, and stays readable (retiring twice is harmless)."""
    settings = load_settings()
    target = partner_id(pid)
    with open_services(settings) as services:
        retired = retire_reward(target, reward_id, ADMIN, services)
    if as_json:
        emit_json(retired)
    else:
        print(f"reward {retired.id} ({retired.name}) retired at {when(retired.retired_at)}")
    return 0


# --------------------------------------------------------------------------- issue and redeem


def _show_operation(operation: OperationPublic, replayed: bool, as_json: bool) -> int:
    if as_json:
        emit_json(operation)
        return 0
    what = f"{operation.kind} {operation.natural_key!r}"
    again = " (recorded already: the same request)" if replayed else ""
    print(f"{operation.id} {what} for partner {operation.partner_id}: {operation.state}{again}")
    member = f" (member {operation.member_id})" if operation.member_id else ""
    print(f"  {operation.points:,} points, wallet {operation.address}{member}")
    if operation.state in ("pending", "accepted"):
        release = f", pending until {when(operation.release_at)}" if operation.state == "pending" else ""
        print(
            f"  queued in the outbox{release}: `loyalty batcher --partner {operation.partner_id}` sends it",
            file=sys.stderr,
        )
    elif operation.failure is not None:
        print(
            f"  {operation.failure.reason or operation.state}: {operation.failure.detail or ''}".rstrip(": ")
        )
    return 0


def _read_order(file: str) -> dict[str, Any]:
    where = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CommandError(f"cannot read the purchase {where}: {reason}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError(f"{where} is not a purchase: a JSON object as POST /v1/purchases takes")
    return body


def _created() -> Response:
    """The response a route fills in: 201 unless it answers a replay (200)."""
    return Response(status_code=201)


@app.command("issue", rich_help_panel=PANEL)
def issue(
    pid: PartnerOpt,
    points: Annotated[
        int | None, typer.Option(help="an adjustment of this many points (goodwill or a correction)")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="with --points: why (kept with the operation)")] = None,
    adjustment_id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="with --points: the adjustment's id, used once per partner"),
    ] = None,
    kind: Annotated[
        Literal["goodwill", "correction"], typer.Option(help="with --points: what it is")
    ] = "goodwill",
    member_id: MemberId = None,
    customer_id: CustomerId = None,
    address: Address = None,
    purchase: Annotated[
        str | None,
        typer.Option(
            metavar="FILE", help="a purchase instead: POST /v1/purchases's body, a JSON file (- stdin)"
        ),
    ] = None,
    as_json: OperationJson = False,
) -> int:
    """Issue points to a member through the outbox: an adjustment or a purchase.

    An adjustment (--points, --reason, --id) is recorded as POST /v1/adjustments records an admin's, using
    the partner's allowance; a purchase (--purchase FILE, POST /v1/purchases's body) as the partner's till
    records it, its points computed by the partner's active rules. The batcher sends it."""
    settings = load_settings()
    target = partner_id(pid)
    response = _created()
    if purchase is not None:
        if points is not None or member_id or customer_id or address:
            raise typer.BadParameter("a purchase names its member in its file", param_hint="'--purchase'")
        try:
            order = PurchaseCreate.model_validate(_read_order(purchase))
        except ValidationError as exc:
            raise CommandError(f"invalid purchase: {problems(exc)}") from None
        with open_services(settings) as services:
            require_partner(services, target)
            operation = create_purchase(order, as_partner(target), services, response)
    else:
        if points is None or reason is None or adjustment_id is None:
            raise typer.BadParameter(
                "an adjustment needs --points, --reason and --id (or give --purchase FILE)",
                param_hint="'--points'",
            )
        body = checked(
            AdjustmentCreate,
            "adjustment",
            adjustment_id=adjustment_id,
            member=_member_fields(member_id, customer_id, address),
            points=points,
            kind=kind,
            reason=reason,
            partner_id=target,
        )
        with open_services(settings) as services:
            require_partner(services, target)
            operation = create_adjustment(body, ADMIN, services, response)
    return _show_operation(operation, response.status_code == 200, as_json)


@app.command("redeem", rich_help_panel=PANEL)
def redeem(
    pid: PartnerOpt,
    points: Annotated[int | None, typer.Option(help="points to redeem")] = None,
    reward_id: Annotated[
        int | None, typer.Option("--reward", metavar="REWARD_ID", help="redeem this reward (its price)")
    ] = None,
    redemption_id: Annotated[
        str | None,
        typer.Option(
            "--id", metavar="ID", help="the partner's id of the redemption, once per partner (default: new)"
        ),
    ] = None,
    member_id: MemberId = None,
    customer_id: CustomerId = None,
    address: Address = None,
    as_json: OperationJson = False,
) -> int:
    """Redeem a custodial member's points with the one-time code they show, as a till does.

    The code is read from standard input (or asked, without echo). It is used up, the service signs the
    member's consent with their custodial key, and the redemption is queued in the outbox."""
    settings = load_settings()
    target = partner_id(pid)
    if (points is None) == (reward_id is None):
        raise typer.BadParameter("give exactly one", param_hint="'--points' / '--reward'")
    naming = _member_fields(member_id, customer_id, address)
    code = read_secret("redemption code")
    values: dict[str, Any] = {"member": naming, "amount": points, "reward_id": reward_id, "code": code}
    if redemption_id is not None:
        values["redemption_id"] = redemption_id
    body = checked(RedemptionCreate, "redemption", **{k: v for k, v in values.items() if v is not None})
    del code, values
    response = _created()
    with open_services(settings, custody=True) as services:
        if services.custody is None:
            raise no_custody()
        require_partner(services, target)
        operation = create_redemption(body, as_partner(target), services, response)
    return _show_operation(operation, response.status_code == 200, as_json)
