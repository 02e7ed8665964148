"""The ledger on its chain: ``compile``, ``keys ...`` (the encrypted keystore), ``deploy`` and
``timelock ...`` (the admin's operations through the ledger's timelock).

No command takes a private key or a password on its command line: ``keys import`` reads the key from
``--file`` or standard input, and every password comes from the settings or a prompt that does not echo.
``keys list`` shows addresses only.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3

from chain import compile_contracts, stale_artifacts, write_artifacts
from chain._ledger import Ledger
from chain._manifest import LEDGER_EXTENSION, DeploymentManifest, verify_manifest
from chain._rpc import Rpc
from chain._signer import InvalidKey
from chain._timelock import OperationState, ScheduledOperation, Timelock, TimelockCall

from .._chain_setup import (
    LedgerOverrides,
    check_deployment_mode,
    deploy_from_settings,
    keystore_from_settings,
    keystore_password,
    open_chain,
    open_ledger,
    open_timelock,
    revert_decoder,
)
from .._settings import Settings
from ._errors import CommandError
from ._output import emit_json, table, working
from ._runtime import hash32, load_settings, open_deployment, prompt, sender

__all__ = ["app", "deploy_on"]

logger = logging.getLogger("api.cli")

AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (for scripts)")]

app = typer.Typer()
keys = typer.Typer(
    help="The encrypted keystore (LOYALTY_KEYSTORE_DIR; scrypt, Web3 Secret Storage v3): new, import, list.",
    no_args_is_help=True,
)
timelock = typer.Typer(
    help="Admin operations through the ledger's timelock: list, schedule, execute, cancel.",
    no_args_is_help=True,
)
app.add_typer(keys, name="keys", rich_help_panel="The ledger")
app.add_typer(timelock, name="timelock", rich_help_panel="The ledger")


# --------------------------------------------------------------------------- compile


@app.command("compile", rich_help_panel="The ledger")
def compile_command(
    check: Annotated[bool, typer.Option("--check", help="fail if the committed artifacts are stale")] = False,
    as_json: AsJson = False,
) -> int:
    """Compile contracts/ into chain/artifacts (committed package data); --check compares instead."""
    settings = load_settings()
    root = settings.project_root.resolve()
    artifacts = compile_contracts(root, settings.solc_binary)
    if check:
        stale = stale_artifacts(artifacts)
        if as_json:
            emit_json({"artifacts": len(artifacts), "stale": {k: list(v) for k, v in sorted(stale.items())}})
        else:
            for name, fields in sorted(stale.items()):
                print(f"{name}: committed artifact differs from its sources ({', '.join(fields)})")
        if stale:
            print("run `loyalty compile` and commit chain/artifacts", file=sys.stderr)
            return 1
        if not as_json:
            print(f"{len(artifacts)} artifacts match their sources")
        return 0
    written = [
        str(path.relative_to(root)) for path in write_artifacts(artifacts, root / "chain" / "artifacts")
    ]
    if as_json:
        emit_json({"written": written})
    else:
        for path in written:
            print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- keys


@keys.command("new")
def keys_new(as_json: AsJson = False) -> int:
    """Generate a key and store it encrypted (the password from the settings, or asked twice)."""
    settings = load_settings()
    keystore = keystore_from_settings(settings)
    address = keystore.create(keystore_password(settings, prompt=prompt(), confirm=True))
    if as_json:
        emit_json({"address": address, "keystore": str(keystore.directory)})
    else:
        print(f"created key {address} in {keystore.directory}")
    return 0


def _read_private_key(file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read the key file {file}: {type(exc).__name__}") from None
    if sys.stdin is None:
        raise CommandError("no key: pass --file or pipe the key into standard input")
    if sys.stdin.isatty():
        return getpass.getpass("Private key (hex): ").strip()
    return sys.stdin.read().strip()


@keys.command("import")
def keys_import(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="a file holding the private key as hex (else standard input)"),
    ] = None,
    as_json: AsJson = False,
) -> int:
    """Store an existing private key, read from --file or standard input (never the command line)."""
    settings = load_settings()
    key = _read_private_key(file)
    if not key:
        raise InvalidKey("no private key given (empty input)")
    keystore = keystore_from_settings(settings)
    address = keystore.import_key(key, keystore_password(settings, prompt=prompt(), confirm=True))
    del key
    if as_json:
        emit_json({"address": address, "keystore": str(keystore.directory)})
    else:
        print(f"imported key {address} into {keystore.directory}")
    return 0


@keys.command("list")
def keys_list(as_json: AsJson = False) -> int:
    """The addresses of the stored keys (never a key), and which one the service signs with."""
    settings = load_settings()
    keystore = keystore_from_settings(settings)
    addresses = keystore.addresses()
    signer = settings.signer_address
    if as_json:
        emit_json([{"address": a, "signer": a == signer} for a in addresses])
        return 0
    if not addresses:
        print(f"no keys in {keystore.directory} (`loyalty keys new` makes one)")
        return 0
    table(
        ("address", "use"), [(a, "signer (LOYALTY_SIGNER_ADDRESS)" if a == signer else "") for a in addresses]
    )
    return 0


# --------------------------------------------------------------------------- deploy


def deploy_on(settings: Settings, w3: Web3, overrides: LedgerOverrides | None = None) -> DeploymentManifest:
    """Deploys the ledger on ``w3`` with the settings' parameters and roles, overridden by the flags that
    are set (production mode refuses a deployment without a timelock before any key is touched)."""
    check_deployment_mode(settings)  # before any key is loaded
    deployer = sender(settings, w3)
    logger.info("deploying LoyaltyLedger from %s on chain %d", deployer.address, deployer.rpc.chain_id())
    with working("deploying the ledger"):
        return deploy_from_settings(settings, deployer, overrides or LedgerOverrides())


@app.command("deploy", rich_help_panel="The ledger")
def deploy(
    name: Annotated[str | None, typer.Option(help="token name (LOYALTY_TOKEN_NAME)")] = None,
    symbol: Annotated[str | None, typer.Option(help="token symbol (LOYALTY_TOKEN_SYMBOL)")] = None,
    admin: Annotated[
        str | None, typer.Option(help="admin address (LOYALTY_LEDGER_ADMIN; default: the deployer)")
    ] = None,
    epoch_length: Annotated[
        int | None, typer.Option(help="seconds per epoch (LOYALTY_EPOCH_LENGTH_S)")
    ] = None,
    validity: Annotated[
        int | None, typer.Option(help="epochs points stay valid (LOYALTY_VALIDITY_EPOCHS)")
    ] = None,
    settlement_value: Annotated[int | None, typer.Option(help="settlement units per point")] = None,
    manifest_path: Annotated[
        Path | None, typer.Option("--manifest", help="where to write the manifest (LOYALTY_MANIFEST_PATH)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing manifest")] = False,
    as_json: AsJson = False,
) -> int:
    """Deploy the ledger (behind a timelock when LOYALTY_TIMELOCK_DELAY_S is set) and write its manifest."""
    settings = load_settings()
    path: Path = manifest_path or settings.manifest_path
    if path.exists() and not force:
        raise CommandError(f"{path} already exists; pass --force to deploy another ledger over it")
    overrides = LedgerOverrides(
        name=name,
        symbol=symbol,
        admin=admin,
        epoch_length=epoch_length,
        validity=validity,
        settlement_value=settlement_value,
    )
    with open_chain(settings) as w3:
        manifest = deploy_on(settings, w3, overrides)
        verify_manifest(manifest, w3)
    manifest.write(path)
    if as_json:
        emit_json({**manifest.to_json(), "manifestPath": str(path)})
    else:
        _describe_deployment(manifest, path)
    if settings.embedded_chain:
        print("note: the embedded chain (eth-tester://) ended with this command", file=sys.stderr)
    return 0


def _describe_deployment(manifest: DeploymentManifest, path: Path) -> None:
    ledger, params, timelock_ = manifest.ledger, manifest.parameters, manifest.timelock
    print(f"LoyaltyLedger deployed at {ledger.address} on chain {manifest.chain_id}")
    print(f"  block {manifest.deployed_at.block_number} ({manifest.deployed_at.block_hash})")
    print(f"  transaction {manifest.deployed_at.transaction_hash}")
    print(f"  deployer {manifest.deployer}, admin {params.admin}")
    print(f"  treasury {params.treasury}, pauser {params.pauser}, admin delay {params.admin_delay} s")
    extension = manifest.contracts[LEDGER_EXTENSION].address
    print(f"  extension {extension} (run by the ledger's fallback)")
    print(f"  reversal window {params.reversal_window} s")
    if timelock_ is not None:
        print(
            f"  timelock {timelock_.address} (admin and treasury): min delay {timelock_.min_delay} s, "
            f"proposers {', '.join(timelock_.proposers)}, executors {', '.join(timelock_.executors)}"
        )
    print(f"manifest written to {path}")


# --------------------------------------------------------------------------- the timelock


def _timelock_clients(settings: Settings, w3: Web3) -> tuple[DeploymentManifest, Ledger, Timelock]:
    """The verified deployment, its ledger and its timelock (read-only: a sender is attached to write)."""
    manifest = open_deployment(settings, w3)
    rpc = Rpc(w3, decoder=revert_decoder())
    return manifest, open_ledger(manifest, rpc), open_timelock(manifest, rpc)


def _first_block(manifest: DeploymentManifest) -> int:
    deployed = manifest.timelock
    assert deployed is not None  # open_timelock refused a deployment without one
    return int(deployed.deployed_at.block_number)


def describe_call(call: TimelockCall, ledger: Ledger, timelock_: Timelock) -> str:
    """``LoyaltyLedger.registerPartner(partnerId=7, ...)`` for a call of the ledger (or the timelock)."""
    if call.target == ledger.address:
        decoded, where = ledger.decode_call(call.data), "LoyaltyLedger"
    elif call.target == timelock_.address:
        decoded, where = timelock_.decode_call(call.data), "CoalitionTimelock"
    else:
        decoded, where = None, call.target
    value = f" with {call.value} wei" if call.value else ""
    if decoded is None:
        return f"{where}: call with data 0x{call.data.hex()}{value}"
    return f"{where}.{decoded}{value}"


def eta(ready_at: int | None, now: int) -> str:
    """When a scheduled operation may execute, and how long that is from ``now``."""
    if not ready_at:
        return "eta -"
    at = datetime.fromtimestamp(ready_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if ready_at <= now:
        return f"eta {at} (ready)"
    return f"eta {at} (in {ready_at - now} s)"


_STATE_NAMES = {
    OperationState.WAITING: "waiting",
    OperationState.READY: "ready",
    OperationState.DONE: "executed",
    OperationState.UNSET: "cancelled",
}
_OPEN = (OperationState.WAITING, OperationState.READY)


def _operation_json(
    op: ScheduledOperation, state: OperationState, ledger: Ledger, timelock_: Timelock
) -> dict[str, Any]:
    return {
        "id": f"0x{op.id.hex()}",
        "state": _STATE_NAMES[state],
        "ready_at": op.ready_at,
        "block_number": op.block_number,
        "salt": f"0x{op.salt.hex()}",
        "calls": [describe_call(c, ledger, timelock_) for c in op.calls],
    }


@timelock.command("list")
def timelock_list(
    show_all: Annotated[bool, typer.Option("--all", help="executed and cancelled operations too")] = False,
    as_json: AsJson = False,
) -> int:
    """Pending operations: id, state, when they may execute, the decoded ledger call."""
    settings = load_settings()
    with open_chain(settings) as w3:
        manifest, ledger, timelock_ = _timelock_clients(settings, w3)
        head = int(timelock_.rpc.block_number())
        now = timelock_.rpc.timestamp(head)
        operations = [
            (op, state)
            for op, state in timelock_.scheduled_operations(from_block=_first_block(manifest), to_block=head)
            if show_all or state in _OPEN
        ]
        shown = [_operation_json(op, state, ledger, timelock_) for op, state in operations]
    if as_json:
        emit_json(shown)
        return 0
    if not shown:
        print(f"no {'' if show_all else 'pending '}operations on the timelock {timelock_.address}")
        return 0
    rows = []
    for (op, state), item in zip(operations, shown, strict=True):
        calls = item["calls"]
        call = calls[0] if len(calls) == 1 else "\n".join(f"{i}. {c}" for i, c in enumerate(calls, start=1))
        rows.append((item["id"], item["state"], eta(op.ready_at, now) if state in _OPEN else "", call))
    table(("id", "state", "eta", "call"), rows)
    return 0


_ROLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_ROLE$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def parse_argument(kind: str, raw: Any, name: str) -> Any:
    """One command-line (or JSON) argument as the ABI type ``kind`` wants it."""
    if kind.endswith("[]"):
        items = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise CommandError(f"{name} ({kind}) must be a JSON list")
        return [parse_argument(kind[:-2], item, name) for item in items]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise CommandError(f"{name} (bool) must be true or false, not {raw!r}")
    if kind.startswith(("uint", "int")):
        try:
            return raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw), 0)
        except ValueError:
            raise CommandError(f"{name} ({kind}) must be an integer, not {raw!r}") from None
    if kind == "address":
        if not isinstance(raw, str) or not is_address(raw):
            raise CommandError(f"{name} (address) must be a 0x-prefixed 20-byte address, not {raw!r}")
        return to_checksum_address(raw)
    if kind == "bytes32" and isinstance(raw, str) and _ROLE_NAME.match(raw):
        return bytes(32) if raw == "DEFAULT_ADMIN_ROLE" else keccak(text=raw)
    if kind.startswith("bytes"):
        try:
            value = bytes(HexBytes(str(raw))) if str(raw).startswith("0x") else None
        except ValueError:
            value = None
        size = int(kind[5:]) if kind != "bytes" else None
        if value is None or (size is not None and len(value) != size):
            of_size = f" of {size} bytes" if size else ""
            raise CommandError(f"{name} ({kind}) must be 0x-prefixed hex{of_size}")
        return value
    if kind == "string":
        return str(raw)
    raise CommandError(f"{name}: arguments of type {kind} are not supported here")


def _schedule_request(
    function: str | None, args: list[str], request_json: str | None
) -> tuple[str, list[Any]]:
    """The ledger function and its raw arguments, from the positionals or from ``--json``."""
    if request_json is not None:
        if function is not None:
            raise CommandError("give the call either as arguments or with --json, not both")
        try:
            request = json.loads(request_json)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--json is not JSON: {exc}") from None
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("function"), str)
            or not isinstance(request.get("args", []), list)
        ):
            raise CommandError('--json must be {"function": "<ledger function>", "args": [...]}')
        return request["function"], list(request.get("args", []))
    if function is None:
        raise CommandError("name the ledger function to schedule (or give --json)")
    return function, list(args)


@timelock.command(
    "schedule",
    epilog="Arguments are read as the function's ABI types: integers (decimal or 0x), true/false, addresses, "
    "0x-hex bytes, role names such as TREASURY_ROLE for a bytes32 role.",
)
def timelock_schedule(
    function: Annotated[
        str | None, typer.Argument(metavar="FUNCTION", help="the ledger function (e.g. registerPartner)")
    ] = None,
    args: Annotated[list[str] | None, typer.Argument(metavar="ARGS", help="its arguments, in order")] = None,
    request_json: Annotated[
        str | None,
        typer.Option(
            "--json",
            help='the call as JSON instead: {"function": "registerPartner", "args": [7, "0x..", ...]}',
        ),
    ] = None,
    delay: Annotated[
        int | None, typer.Option(help="seconds before it may execute (default: the minimum)")
    ] = None,
    salt: Annotated[
        str | None, typer.Option(help="32 bytes of hex that fix the operation id (default: random)")
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="schedule even if the call would revert if executed now")
    ] = False,
) -> int:
    """Schedule a ledger call, e.g. `schedule registerPartner 7 0xOP 0xOP true true 1000` (checked first)."""
    settings = load_settings()
    name, raw = _schedule_request(function, args or [], request_json)
    with open_chain(settings) as w3:
        _, ledger, timelock_ = _timelock_clients(settings, w3)
        abi = ledger.function(name)
        if len(raw) != len(abi.inputs):
            raise CommandError(
                f"{abi.signature} takes {len(abi.inputs)} arguments "
                f"({', '.join(abi.input_names)}), got {len(raw)}"
            )
        values = [
            parse_argument(kind, value, arg_name)
            for kind, value, arg_name in zip(abi.inputs, raw, abi.input_names, strict=True)
        ]
        call = ledger.call_of(abi.signature, *values)
        if not no_check:
            timelock_.simulate(call)  # as the timelock would run it now: a mistaken call is refused here
        timelock_ = timelock_.with_sender(sender(settings, w3))
        with working("scheduling on the timelock"):
            op = timelock_.schedule(
                call,
                delay=delay,
                # a random salt by default: a fresh operation id, even for a call scheduled before
                salt=secrets.token_bytes(32) if salt is None else hash32(salt, "--salt"),
            ).wait()
        now = timelock_.rpc.timestamp()
        described = describe_call(op.calls[0], ledger, timelock_)
    print(f"scheduled 0x{op.id.hex()}: {described}")
    print(f"  on the timelock {timelock_.address} in block {op.block_number}, {eta(op.ready_at, now)}")
    print(f"  salt 0x{op.salt.hex()}; once ready: loyalty timelock execute 0x{op.id.hex()}")
    return 0


def _timelock_finish(text: str, *, cancel: bool, as_json: bool) -> int:
    settings = load_settings()
    op_id = hash32(text, "an operation id")
    with open_chain(settings) as w3:
        manifest, ledger, timelock_ = _timelock_clients(settings, w3)
        op, state = timelock_.find_operation(op_id, from_block=_first_block(manifest))
        if state not in _OPEN:
            raise CommandError(f"operation 0x{op_id.hex()} is {_STATE_NAMES[state]} already")
        now = timelock_.rpc.timestamp()
        if not cancel and state is OperationState.WAITING:
            raise CommandError(
                f"operation 0x{op_id.hex()} is not ready yet: {eta(op.ready_at, now)}",
                hint="`loyalty timelock list` shows when each operation may execute",
            )
        timelock_ = timelock_.with_sender(sender(settings, w3))
        with working("cancelling" if cancel else "executing"):
            receipt = (timelock_.cancel(op) if cancel else timelock_.execute(op)).wait()
        calls = [describe_call(c, ledger, timelock_) for c in op.calls]
    verb = "cancelled" if cancel else "executed"
    if as_json:
        emit_json(
            {"id": f"0x{op_id.hex()}", "state": verb, "block_number": receipt.block_number, "calls": calls}
        )
    else:
        print(f"{verb} 0x{op_id.hex()} in block {receipt.block_number}: {'; '.join(calls)}")
    return 0


OperationIdArg = Annotated[str, typer.Argument(metavar="ID", help="the operation id (0x + 64 hex digits)")]


@timelock.command("execute")
def timelock_execute(op_id: OperationIdArg, as_json: AsJson = False) -> int:
    """Execute a scheduled operation once its delay has passed."""
    return _timelock_finish(op_id, cancel=False, as_json=as_json)


@timelock.command("cancel")
def timelock_cancel(op_id: OperationIdArg, as_json: AsJson = False) -> int:
    """Cancel a scheduled operation before it executes."""
    return _timelock_finish(op_id, cancel=True, as_json=as_json)
