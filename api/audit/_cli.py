"""``loyalty audit verify`` and ``loyalty audit prove``: the auditor's commands.

They need no operator settings: the node and the ledger's address are arguments, the API's auditor key comes
from the environment (``LOYALTY_AUDIT_KEY``; a key on the command line would show in the process list). The
human summary goes to stdout (``--json``: the JSON report instead), a progress bar to stderr when it is a
terminal, and the exit code is the verdict: 0 everything matches, 1 a difference, 2 something could not be
checked, 3 the audit could not run (the node unreachable, a bad checkpoint: one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import AuditError
from ._verify import AuditTarget, Observer, verify

__all__ = ["AUDIT_KEY_ENV", "add_audit_parser", "run_audit"]

AUDIT_KEY_ENV = "LOYALTY_AUDIT_KEY"
CANNOT_RUN = 3
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TX_LOG = re.compile(r"^(0x[0-9a-fA-F]{64}):(\d+)$")


def _address(text: str) -> str:
    if not _ADDRESS.match(text):
        raise argparse.ArgumentTypeError(f"not an address: {text!r}")
    return text.lower()


def add_audit_parser(commands: Any) -> None:
    """Adds ``audit verify`` and ``audit prove`` to the ``loyalty`` parser's subcommands."""
    audit = commands.add_parser(
        "audit",
        help="verify the ledger from the chain alone (an auditor's tool: no operator settings needed)",
    )
    sub = audit.add_subparsers(dest="audit_command", required=True)
    verify_cmd = sub.add_parser(
        "verify",
        help="rebuild every entry, balance, position and rule from the chain's logs and hold the chain's "
        "views (and optionally the operator's API and mirror) against it",
    )
    prove_cmd = sub.add_parser(
        "prove",
        help="prove one entry against its block's receiptsRoot (ENTRY: a seq, or TXHASH:LOGINDEX) or one "
        "account's balance against the block's stateRoot (ACCOUNT: an address)",
    )
    for cmd in (verify_cmd, prove_cmd):
        cmd.add_argument("--rpc", required=True, help="the node's JSON-RPC URL (http:// or https://)")
        cmd.add_argument("--ledger", required=True, type=_address, help="the ledger contract's address")
        cmd.add_argument("--block", type=int, default=None, help="verify at this block (default: the latest)")
        cmd.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    verify_cmd.add_argument(
        "--from-block", type=int, default=0, help="the ledger's deployment block (reading starts there)"
    )
    verify_cmd.add_argument(
        "--api",
        default=None,
        help=f"the operator's API base URL, to diff what it serves (auditor key in ${AUDIT_KEY_ENV})",
    )
    verify_cmd.add_argument("--db", default=None, help="the operator's mirror database URL, to diff it")
    verify_cmd.add_argument(
        "--sample", type=int, default=0, help="with --api: recompute the points of this many sampled orders"
    )
    verify_cmd.add_argument(
        "--checkpoint", type=Path, default=None, help="resume from (and then update) this checkpoint file"
    )
    verify_cmd.add_argument("--report", type=Path, default=None, help="also write the JSON report here")
    prove_cmd.add_argument("subject", metavar="ENTRY|ACCOUNT")


def run_audit(args: argparse.Namespace) -> int:
    try:
        if args.audit_command == "verify":
            return _verify(args)
        return _prove(args)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return CANNOT_RUN


def _observers(args: argparse.Namespace) -> list[Observer]:
    observers: list[Observer] = []
    if args.db:
        from ._diff import MirrorDiff

        observers.append(MirrorDiff(args.db))
    if args.api:
        from ._diff import ApiDiff

        key = os.environ.get(AUDIT_KEY_ENV)
        if not key:
            raise AuditError(f"--api needs an auditor key in ${AUDIT_KEY_ENV}")
        observers.append(ApiDiff(args.api, key, sample=args.sample))
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


def _verify(args: argparse.Namespace) -> int:
    target = AuditTarget(
        rpc_url=args.rpc,
        ledger=args.ledger,
        from_block=args.from_block,
        block=args.block,
        api_url=args.api,
        db_url=args.db,
        sample=args.sample,
        checkpoint=args.checkpoint,
    )
    observers = _observers(args)
    with _progress_bar() as progress:
        report = verify(target, observers=observers, progress=progress)
    document = report.to_json()
    if args.report is not None:
        args.report.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2) if args.json else "\n".join(report.summary()))
    return report.exit_code


def _prove(args: argparse.Namespace) -> int:
    from ._proofs import prove_balance, prove_entry, verify_balance_proof, verify_entry_proof
    from ._verify import Node

    node = Node(args.rpc, 60.0)
    subject: str = args.subject
    document: dict[str, Any]
    if _ADDRESS.match(subject):
        balance_proof = prove_balance(node.rpc, args.ledger, subject.lower(), block=args.block)
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
            entry_proof = prove_entry(node.rpc, args.ledger, tx_hash=match[1], log_index=int(match[2]))
        elif subject.isdigit():
            entry_proof = prove_entry(node.rpc, args.ledger, seq=int(subject))
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
    print(json.dumps(document, indent=2) if args.json else "\n".join(lines))
    return 0
