"""``loyalty audit verify`` and ``loyalty audit prove``: the auditor's commands.

They need no operator settings: the node and the ledger's address are arguments, the API's auditor key comes
from the environment (``LOYALTY_AUDIT_KEY``; a key on the command line would show in the process list). The
human summary goes to stdout (``--json``: the JSON report instead), a progress bar to stderr when it is a
terminal, and the exit code is the verdict: 0 everything matches, 1 a difference, 2 something could not be
checked, 3 the audit could not run (the node unreachable, a bad checkpoint: an ``error:`` line, and a
``hint:`` line saying what to check).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ._errors import AuditError, CheckpointError, NodeError, ProofError
from ._verify import AuditTarget, Observer, verify

__all__ = ["AUDIT_KEY_ENV", "CANNOT_RUN", "app"]

AUDIT_KEY_ENV = "LOYALTY_AUDIT_KEY"
CANNOT_RUN = 3
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TX_LOG = re.compile(r"^(0x[0-9a-fA-F]{64}):(\d+)$")


def _address(text: str) -> str:
    if not _ADDRESS.match(text):
        raise typer.BadParameter(f"not an address: {text!r}")
    return text.lower()


Rpc = Annotated[str, typer.Option("--rpc", help="the node's JSON-RPC URL (http:// or https://)")]
Ledger = Annotated[str, typer.Option("--ledger", parser=_address, help="the ledger contract's address")]
Block = Annotated[int | None, typer.Option("--block", help="verify at this block (default: the latest)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the JSON report instead of the summary")]

app = typer.Typer(
    help="Verify the ledger from the chain alone (an auditor's tool: no operator settings needed).\n\n"
    "Exit 0: everything matches; 1: a difference; 2: something could not be checked; 3: it could not run.",
    no_args_is_help=True,
)


_HINTS: dict[type[AuditError], str] = {
    NodeError: "check --rpc (a node of the ledger's chain answering eth_getLogs and eth_call) and --ledger",
    CheckpointError: "remove the checkpoint file to verify from --from-block again",
    ProofError: "the node's answers do not prove it: ask another node",
}


def _failed(exc: AuditError) -> int:
    """The one ``error:`` line (and a hint) for an audit that could not run: exit 3."""
    print(f"error: {exc}", file=sys.stderr)
    hint = _HINTS.get(type(exc))
    if hint is not None:
        print(f"hint: {hint}", file=sys.stderr)
    return CANNOT_RUN


def _observers(api: str | None, db: str | None, sample: int) -> list[Observer]:
    observers: list[Observer] = []
    if db:
        from ._diff import MirrorDiff

        observers.append(MirrorDiff(db))
    if api:
        from ._diff import ApiDiff

        key = os.environ.get(AUDIT_KEY_ENV)
        if not key:
            raise AuditError(f"--api needs an auditor key in ${AUDIT_KEY_ENV}")
        observers.append(ApiDiff(api, key, sample=sample))
    return observers


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("reading the ledger's logs"),
        BarColumn(),
        TextColumn("block {task.completed:,.0f} of {task.total:,.0f}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("logs", total=None)

        def advance(done: int, last: int) -> None:
            bar.update(task, completed=done, total=last)

        yield advance


@app.command("verify")
def verify_command(
    rpc: Rpc,
    ledger: Ledger,
    block: Block = None,
    as_json: AsJson = False,
    from_block: Annotated[int, typer.Option(help="the ledger's deployment block (reading starts there)")] = 0,
    api: Annotated[
        str | None,
        typer.Option(
            help=f"the operator's API base URL, to diff what it serves (auditor key in ${AUDIT_KEY_ENV})"
        ),
    ] = None,
    db: Annotated[str | None, typer.Option(help="the operator's mirror database URL, to diff it")] = None,
    sample: Annotated[
        int, typer.Option(help="with --api: recompute the points of this many sampled orders")
    ] = 0,
    checkpoint: Annotated[
        Path | None, typer.Option(help="resume from (and then update) this checkpoint file")
    ] = None,
    report_path: Annotated[
        Path | None, typer.Option("--report", help="also write the JSON report here")
    ] = None,
) -> int:
    """Rebuild the ledger from the chain's logs and hold the chain's views against it.

    Every entry, balance, position and rule; with --api and --db, the operator's API and mirror too."""
    try:
        target = AuditTarget(
            rpc_url=rpc,
            ledger=ledger,
            from_block=from_block,
            block=block,
            api_url=api,
            db_url=db,
            sample=sample,
            checkpoint=checkpoint,
        )
        observers = _observers(api, db, sample)
        with _progress_bar() as progress:
            report = verify(target, observers=observers, progress=progress)
    except AuditError as exc:
        return _failed(exc)
    document = report.to_json()
    if report_path is not None:
        report_path.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2) if as_json else "\n".join(report.summary()))
    return report.exit_code


@app.command("prove")
def prove_command(
    subject: Annotated[
        str, typer.Argument(metavar="ENTRY|ACCOUNT", help="a seq, TXHASH:LOGINDEX, or an account's address")
    ],
    rpc: Rpc,
    ledger: Ledger,
    block: Block = None,
    as_json: AsJson = False,
) -> int:
    """Prove one entry, or one account's balance, against its block's header.

    ENTRY (a seq, or TXHASH:LOGINDEX) against the block's receiptsRoot; ACCOUNT (an address) against its
    stateRoot, with eth_getProof."""
    try:
        return _prove(subject, rpc, ledger, block, as_json)
    except AuditError as exc:
        return _failed(exc)


def _prove(subject: str, rpc: str, ledger: str, block: int | None, as_json: bool) -> int:
    from ._proofs import prove_balance, prove_entry, verify_balance_proof, verify_entry_proof
    from ._verify import Node

    node = Node(rpc, 60.0)
    document: dict[str, Any]
    if _ADDRESS.match(subject):
        balance_proof = prove_balance(node.rpc, ledger, subject.lower(), block=block)
        header = node.header(balance_proof.block_number)
        balance = verify_balance_proof(balance_proof, bytes.fromhex(header["stateRoot"][2:]))
        document = balance_proof.to_json()
        lines = [
            f"PROVEN: account {subject} held {balance} live points at block {balance_proof.block_number} "
            f"({header['hash']})",
            f"  the ledger's storage root {document.get('storageRoot')} is in the state trie under "
            f"stateRoot {header['stateRoot']}, and each bucket read is in the ledger's storage trie",
        ]
    else:
        match = _TX_LOG.match(subject)
        if match:
            entry_proof = prove_entry(node.rpc, ledger, tx_hash=match[1], log_index=int(match[2]))
        elif subject.isdigit():
            entry_proof = prove_entry(node.rpc, ledger, seq=int(subject))
        else:
            raise AuditError(f"{subject!r} is neither an entry (a seq, or TXHASH:LOGINDEX) nor an address")
        header = node.header(entry_proof.block_number)
        verify_entry_proof(
            entry_proof,
            bytes.fromhex(header["receiptsRoot"][2:]),
            block_hash=bytes.fromhex(header["hash"][2:]),
        )
        document = entry_proof.to_json()
        lines = [
            f"PROVEN: entry {entry_proof.seq} (tx 0x{entry_proof.tx_hash.hex()}) is in block "
            f"{entry_proof.block_number} ({header['hash']})",
            f"  its receipt is in the receipts trie under receiptsRoot {header['receiptsRoot']} "
            f"({len(entry_proof.nodes)} proof nodes); entry hash 0x{entry_proof.entry_hash.hex()}",
        ]
    print(json.dumps(document, indent=2) if as_json else "\n".join(lines))
    return 0
