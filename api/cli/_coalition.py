"""The coalition operations: ``partner ...``, ``settlement ...``, ``transfers``, ``pause``, ``unpause``, and
``operations`` to list, execute or cancel them.

Each runs through :class:`~api._coalition.Coalition` with the service's key, exactly as the admin API's routes
do: it is recorded as an operation (``adm_<n>``) in the same table, its input checked by the same request
models, sent at once or scheduled on the deployment's timelock. A command prints the operation's id, state and
transaction (or its place on the timelock); one the ledger refuses prints ``error: <typed reason>: <detail>``
(and a hint for the reasons an operator can act on) and exits 1. A generated operator key stays in the
keystore: only its address is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from eth_utils.address import is_address, to_checksum_address
from pydantic import SecretStr

from chain._rpc import Rpc

from .._chain_setup import keystore_password, open_chain, open_ledger, open_timelock, revert_decoder
from .._coalition import GENERATE, Coalition, CoalitionOperationPublic, parse_operation_id
from .._db import migrate_all, service_engine
from .._settings import Settings
from ..routers.coalition import AllowanceChange, PartnerOnboarding, SettlementRecord, SettlementValueUpdate
from ._chain import eta
from ._errors import CommandError, failure_hint
from ._output import emit_json, table, when, working
from ._runtime import checked, load_settings, open_deployment, partner_id, prompt

__all__ = ["app"]

PANEL = "Coalition operations"
AsJson = Annotated[bool, typer.Option("--json", help="print the operation as the API shows it (JSON)")]
PartnerArg = Annotated[int, typer.Argument(metavar="PARTNER_ID", help="the partner's id")]
Operator = Annotated[str | None, typer.Option(help="the operator key's address")]
GenerateOperator = Annotated[
    bool,
    typer.Option(
        "--generate-operator",
        help="a new key in the keystore (LOYALTY_KEYSTORE_DIR); only its address is shown",
    ),
]
FundOperator = Annotated[
    int,
    typer.Option(
        metavar="WEI",
        help="with --generate-operator: wei sent to the new key for its gas once the operation took effect",
    ),
]

app = typer.Typer()
partner = typer.Typer(
    help="Onboard a partner; its allowance, life cycle, operator key, rights, settlement address.",
    no_args_is_help=True,
)
settlement = typer.Typer(help="The settlement value of a point; settlements paid.", no_args_is_help=True)
operations = typer.Typer(
    help="The coalition operations: list them, execute or cancel scheduled ones.", no_args_is_help=True
)
app.add_typer(partner, name="partner", rich_help_panel=PANEL)
app.add_typer(settlement, name="settlement", rich_help_panel=PANEL)
app.add_typer(operations, name="operations", rich_help_panel=PANEL)

#: What an action command runs on the coalition, its input checked before the chain is touched.
_Act = Callable[[Coalition], CoalitionOperationPublic]


# --------------------------------------------------------------------------- running an action


@contextmanager
def _coalition(settings: Settings, *, write: bool = True) -> Iterator[Coalition]:
    """The service's coalition keys on the deployment (as the API builds them: its operations are recorded
    in the same table), the database's schema migrated first; without ``write``, no key (reading and
    bringing operations up to date needs none)."""
    with open_chain(settings) as w3:
        manifest = open_deployment(settings, w3, "act on it")
        engine = service_engine(settings)
        try:
            migrate_all(engine)
            if write:
                coalition = Coalition.from_settings(settings, w3, engine, manifest, prompt=prompt())
                coalition.receipt_timeout = settings.tx_timeout_s
            else:
                rpc = Rpc(w3, decoder=revert_decoder())
                timelock = open_timelock(manifest, rpc) if manifest.timelock is not None else None
                coalition = Coalition(engine, open_ledger(manifest, rpc), timelock)
            yield coalition
        finally:
            engine.dispose()


def _act(act: _Act, as_json: bool, *, generates: bool = False, fund_operator: int = 0) -> int:
    settings = load_settings()
    with _coalition(settings) as coalition:
        ask = prompt()
        if generates and coalition.keystore_password is None and ask is not None:
            password = keystore_password(settings, prompt=ask, confirm=True)
            coalition.keystore_password = SecretStr(password)
        coalition.operator_funding = fund_operator
        with working("sending the operation"):
            operation = act(coalition)
        now = coalition.ledger.rpc.timestamp()
        keystore = coalition.keystore.directory if coalition.keystore is not None else None
    if as_json:
        emit_json(operation)
    else:
        print("\n".join(_describe_operation(operation, now, keystore)))
    return _exit_status(operation)


def _exit_status(operation: CoalitionOperationPublic) -> int:
    """1 with ``error: <typed reason>: <detail>`` (and a hint) on stderr for a failed operation, else 0."""
    if operation.state != "failed":
        return 0
    failure = operation.failure
    reason = (failure.reason if failure else None) or "failed"
    detail = f": {failure.detail}" if failure is not None and failure.detail else ""
    print(f"error: {reason}{detail}", file=sys.stderr)
    hint = failure_hint(reason, operation.action)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 1


def _operation_status(operation: CoalitionOperationPublic, now: int) -> str:
    """Where the operation is: its transaction, its place on the timelock, or why it failed."""
    state, timelock = operation.state, operation.timelock
    if state in ("confirmed", "executed"):
        if operation.tx_hash is None:
            return "executed outside the service"
        return f"tx {operation.tx_hash} in block {operation.block_number}"
    if state in ("scheduled", "ready") and timelock is not None:
        return f"timelock operation {timelock.operation_id}, {eta(timelock.ready_at, now)}"
    if state == "submitted":
        tx = operation.tx_hash or (timelock.schedule_tx_hash if timelock is not None else None)
        return f"tx {tx} not mined yet" if tx else "not sent yet"
    if state == "failed" and operation.failure is not None:
        return operation.failure.reason or ""
    return ""


def _describe_operation(operation: CoalitionOperationPublic, now: int, keystore: Path | None) -> list[str]:
    partner_ = f" (partner {operation.partner_id})" if operation.partner_id is not None else ""
    status = _operation_status(operation, now) if operation.state != "failed" else ""
    lines = [
        f"{operation.id} {operation.action}{partner_} {operation.state}{': ' + status if status else ''}"
    ]
    params = operation.params
    if "operator" in params:
        made = ""
        if params.get("operator_generated"):
            made = f" (a new key in the keystore {keystore})" if keystore else " (a new key in the keystore)"
        lines.append(f"  operator {params['operator']}{made}")
    if operation.state in ("scheduled", "ready"):
        lines.append(f"  once ready: loyalty operations execute {operation.id}")
    return lines


def _address_of(text: str, what: str) -> str:
    if not is_address(text):
        raise CommandError(f"{what} must be a 0x-prefixed 20-byte address, not {text!r}")
    return to_checksum_address(text)


def _operator_of(operator: str | None, generate: bool) -> str:
    if (operator is None) == (not generate):
        raise typer.BadParameter("give exactly one", param_hint="'--operator' / '--generate-operator'")
    if generate:
        return GENERATE
    assert operator is not None
    return _address_of(operator, "--operator")


# --------------------------------------------------------------------------- partner ...


@partner.command("onboard")
def onboard(
    new_id: Annotated[int, typer.Option("--id", help="its partner id (a new one)")],
    name: Annotated[str, typer.Option(help="its name in the directory")],
    allowance: Annotated[int, typer.Option(help="points it may issue")],
    operator: Operator = None,
    generate_operator: GenerateOperator = False,
    fund_operator: FundOperator = 0,
    settlement_address: Annotated[
        str | None, typer.Option("--settlement", help="where settlements are paid (default: the operator)")
    ] = None,
    issue: Annotated[bool, typer.Option("--issue/--no-issue", help="may issue points")] = True,
    accept: Annotated[bool, typer.Option("--accept/--no-accept", help="may accept points")] = True,
    as_json: AsJson = False,
) -> int:
    """Register a partner on the ledger (its operator key given, or made in the keystore)."""
    chosen = _operator_of(operator, generate_operator)
    payee = None if settlement_address is None else _address_of(settlement_address, "--settlement")
    body = checked(
        PartnerOnboarding,
        "onboarding",
        partner_id=new_id,
        name=name,
        operator=chosen,
        settlement_address=payee,
        can_issue=issue,
        can_accept=accept,
        allowance=allowance,
    )
    return _act(
        lambda c: c.register_partner(
            partner_id=body.partner_id,
            name=body.name,
            operator=body.operator,
            settlement_address=body.settlement_address,
            can_issue=body.can_issue,
            can_accept=body.can_accept,
            allowance=body.allowance,
            by=None,
        ),
        as_json,
        generates=generate_operator,
        fund_operator=fund_operator,
    )


@partner.command("allowance")
def allowance(
    pid: PartnerArg,
    increase: Annotated[int | None, typer.Option(help="points to add")] = None,
    decrease: Annotated[
        int | None, typer.Option(help="points to take away (refused beyond what remains)")
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Top up or cut a partner's remaining allowance (exactly one of --increase, --decrease)."""
    if (increase is None) == (decrease is None):
        raise typer.BadParameter("give exactly one", param_hint="'--increase' / '--decrease'")
    target = partner_id(pid)
    change = checked(AllowanceChange, "allowance change", increase=increase, decrease=decrease)
    return _act(
        lambda c: c.change_allowance(target, increase=change.increase, decrease=change.decrease, by=None),
        as_json,
    )


def _set_status(pid: int, verb: Literal["suspend", "reactivate", "offboard"], as_json: bool) -> int:
    target = partner_id(pid)
    return _act(lambda c: c.set_status(target, verb, by=None), as_json)


@partner.command("suspend")
def suspend(pid: PartnerArg, as_json: AsJson = False) -> int:
    """Suspend a partner: it may neither issue nor accept until reactivated (the pauser's key, at once)."""
    return _set_status(pid, "suspend", as_json)


@partner.command("reactivate")
def reactivate(pid: PartnerArg, as_json: AsJson = False) -> int:
    """Reactivate a suspended partner: it may act again."""
    return _set_status(pid, "reactivate", as_json)


@partner.command("offboard")
def offboard(pid: PartnerArg, as_json: AsJson = False) -> int:
    """Offboard a partner for good: its allowance drops to 0, its history stays."""
    return _set_status(pid, "offboard", as_json)


@partner.command("rotate")
def rotate(
    pid: PartnerArg,
    operator: Operator = None,
    generate_operator: GenerateOperator = False,
    fund_operator: FundOperator = 0,
    as_json: AsJson = False,
) -> int:
    """Move a partner to a new operator key (its history stays with the partner)."""
    target = partner_id(pid)
    chosen = _operator_of(operator, generate_operator)
    return _act(
        lambda c: c.rotate_operator(target, chosen, by=None),
        as_json,
        generates=generate_operator,
        fund_operator=fund_operator,
    )


@partner.command("rights")
def rights(
    pid: PartnerArg,
    issue: Annotated[bool, typer.Option("--issue/--no-issue", help="whether it may issue points")],
    accept: Annotated[bool, typer.Option("--accept/--no-accept", help="whether it may accept points")],
    as_json: AsJson = False,
) -> int:
    """Whether a partner may issue, and accept, points (both must be given)."""
    target = partner_id(pid)
    return _act(lambda c: c.set_rights(target, can_issue=issue, can_accept=accept, by=None), as_json)


@partner.command("settlement-address")
def settlement_address(
    pid: PartnerArg,
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="the new settlement address")],
    as_json: AsJson = False,
) -> int:
    """Where a partner's settlements are paid."""
    target = partner_id(pid)
    payee = _address_of(address, "the settlement address")
    return _act(lambda c: c.set_settlement_address(target, payee, by=None), as_json)


# --------------------------------------------------------------------------- settlement, transfers, pause


@settlement.command("value")
def settlement_value(
    value: Annotated[int, typer.Argument(metavar="VALUE", help="settlement units per point")],
    as_json: AsJson = False,
) -> int:
    """The settlement units per point, for entries from now on."""
    checked_value = checked(SettlementValueUpdate, "settlement value", value=value).value
    return _act(lambda c: c.set_settlement_value(checked_value, by=None), as_json)


@settlement.command("record")
def settlement_record(
    pid: Annotated[int, typer.Option("--partner", metavar="ID", help="the partner's id")],
    points: Annotated[int, typer.Option(help="points settled (positive: paid to it)")],
    value: Annotated[int, typer.Option(help="their value in settlement units")],
    payment_ref: Annotated[
        str, typer.Option(help="the payment's reference (once per partner; text or 0x + 64 hex)")
    ],
    as_json: AsJson = False,
) -> int:
    """Record a settlement paid: its points leave the partner's open position."""
    record = checked(
        SettlementRecord,
        "settlement record",
        partner_id=pid,
        points=points,
        value=value,
        payment_ref=payment_ref,
    )
    return _act(
        lambda c: c.record_settlement(
            record.partner_id,
            points=record.points,
            value=record.value,
            payment_ref=record.payment_ref,
            by=None,
        ),
        as_json,
    )


@app.command("transfers", rich_help_panel=PANEL)
def transfers(
    switch: Annotated[Literal["on", "off"], typer.Argument(metavar="on|off", help="on or off")],
    as_json: AsJson = False,
) -> int:
    """Switch member-to-member transfers on or off."""
    enabled = switch == "on"
    return _act(lambda c: c.set_transfers(enabled, by=None), as_json)


@app.command("pause", rich_help_panel=PANEL)
def pause(as_json: AsJson = False) -> int:
    """Pause the ledger for an incident (the pauser's key, never scheduled); its clock stops too."""
    return _act(lambda c: c.pause(by=None), as_json)


@app.command("unpause", rich_help_panel=PANEL)
def unpause(as_json: AsJson = False) -> int:
    """Resume the paused ledger."""
    return _act(lambda c: c.unpause(by=None), as_json)


# --------------------------------------------------------------------------- operations ...


def _operation_number(text: str) -> int:
    number = parse_operation_id(text) if text.startswith("adm_") else parse_operation_id(f"adm_{text}")
    if number is None:
        raise CommandError(f"an operation id is adm_<number> (loyalty operations list), not {text!r}")
    return number


#: Operations whose state the chain may still change (a failed execution on the timelock may be retried).
_PENDING = frozenset({"submitted", "scheduled", "ready"})


@operations.command("list")
def operations_list(
    show_all: Annotated[
        bool, typer.Option("--all", help="confirmed, executed, failed, cancelled too")
    ] = False,
    pid: Annotated[int | None, typer.Option("--partner", metavar="ID", help="only this partner's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> int:
    """Operations the chain may still change (--all: every one), newest first."""
    settings = load_settings()
    with _coalition(settings, write=False) as coalition:
        found: list[CoalitionOperationPublic] = []
        before: int | None = None
        while True:
            page, more = coalition.operations(before=before, limit=200, partner_id=pid)
            found += page
            if not more or not page:
                break
            before = parse_operation_id(page[-1].id)
        now = coalition.ledger.rpc.timestamp()
    shown = [
        op
        for op in found
        if show_all or op.state in _PENDING or (op.state == "failed" and op.timelock is not None)
    ]
    if as_json:
        emit_json([op.model_dump(mode="json") for op in shown])
        return 0
    if not shown:
        print("no operations" if show_all else "no pending operations (--all lists every operation)")
        return 0
    header = ("id", "action", "partner", "state", "created", "detail")
    rows = [
        (
            op.id,
            op.action,
            "-" if op.partner_id is None else str(op.partner_id),
            op.state,
            when(op.created_at),
            _operation_status(op, now),
        )
        for op in shown
    ]
    table(header, rows)
    return 0


OperationArg = Annotated[str, typer.Argument(metavar="ID", help="the operation's id (adm_<n>)")]


@operations.command("execute")
def operations_execute(op_id: OperationArg, as_json: AsJson = False) -> int:
    """Execute an operation scheduled on the timelock, once its delay has passed."""
    number = _operation_number(op_id)
    return _act(lambda c: c.execute(number), as_json)


@operations.command("cancel")
def operations_cancel(op_id: OperationArg, as_json: AsJson = False) -> int:
    """Cancel an operation scheduled on the timelock."""
    number = _operation_number(op_id)
    return _act(lambda c: c.cancel(number), as_json)
