"""``loyalty rules create|activate|list|show``: partners' earning rule sets.

``rules create`` stores a JSON rule set file (validated as ``POST /v1/partners/{id}/rule-sets`` validates
one) as the partner's next version (the same rules again: the existing one), ``rules activate`` puts one in
force, ``rules list`` and ``rules show`` (the canonical text its hash is of) read them. They need the
database only, and use the rulebook's functions (:mod:`api._rulebook`) as the routes do.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from .._rulebook import (
    activate as activate_rules,
)
from .._rulebook import (
    bind_partner,
    create_rule_set,
    latest_activation,
    rule_set_by_hash,
    rule_sets_of,
)
from .._rules import RuleSet, RuleSetCreate, rule_hash
from .._tables import RuleActivation, RuleSetRecord
from ._errors import CommandError
from ._output import emit_json, table, when
from ._runtime import hash32, load_settings, partner_id, problems, service_db

__all__ = ["app"]

PartnerOpt = Annotated[int, typer.Option("--partner", metavar="ID", help="the partner's id")]
HashArg = Annotated[str, typer.Argument(metavar="HASH", help="the rule set's hash (0x + 64 hex digits)")]

app = typer.Typer()
rules = typer.Typer(
    help="Partners' earning rule sets: create a version from a JSON file, activate, list, show.",
    no_args_is_help=True,
)
app.add_typer(rules, name="rules", rich_help_panel="Members, rules and points")


def _read_rules(file: str, partner: int) -> RuleSet:
    """The rule set in the JSON file ``file`` (``-``: standard input), validated as the API validates a
    posted one, as ``partner``'s. The text ``loyalty rules show`` prints (it names its partner) works too."""
    where = "standard input" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CommandError(f"cannot read the rule set {where}: {reason}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{where} is not JSON: {exc}") from None
    model = RuleSet if isinstance(body, dict) and "partner_id" in body else RuleSetCreate
    try:
        rules_ = model.model_validate(body)
    except ValidationError as exc:
        raise CommandError(f"{where} is not a valid rule set: {problems(exc)}") from None
    return bind_partner(rules_, partner)


@dataclass(frozen=True, slots=True)
class _ShownRuleSet:
    """A rule set as a command shows it (read while its session is open)."""

    hash: str
    partner_id: int
    version: int
    created_at: int
    active: bool
    activated_at: int | None

    @classmethod
    def of(cls, record: RuleSetRecord, current: RuleActivation | None) -> _ShownRuleSet:
        active = current is not None and bytes(current.rule_hash) == bytes(record.hash)
        return cls(
            "0x" + bytes(record.hash).hex(),
            record.partner_id,
            record.version,
            record.created_at,
            active,
            current.activated_at if current is not None and active else None,
        )

    def as_json(self, **extra: Any) -> dict[str, Any]:
        shown = {
            "hash": self.hash,
            "partner_id": self.partner_id,
            "version": self.version,
            "created_at": self.created_at,
            "active": self.active,
            "activated_at": self.activated_at,
        }
        return {**shown, **extra}

    def in_force(self) -> str:
        return f"in force since {when(self.activated_at)}" if self.active else "not in force"


@rules.command("create")
def create(
    partner: PartnerOpt,
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="the rule set, a JSON file (- reads standard input)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print {hash, version, ..., new} as JSON")] = False,
) -> int:
    """Store a JSON rule set as the partner's next version (the same rules again: the existing one)."""
    settings = load_settings()
    pid = partner_id(partner)
    rules_ = _read_rules(file, pid)
    now = int(time.time())
    with service_db(settings) as db:
        existing = rule_set_by_hash(db, rule_hash(rules_))
        record = existing or create_rule_set(db, pid, rules_, now=now, created_by=None)
        shown = _ShownRuleSet.of(record, latest_activation(db, pid, now))
    if as_json:
        emit_json(shown.as_json(new=existing is None))
    elif existing is not None:
        print(
            f"partner {pid} has these rules already: version {shown.version}, {shown.hash} "
            f"({shown.in_force()})"
        )
    else:
        print(f"created version {shown.version} of partner {pid}'s rules: {shown.hash}")
        print(f"  not in force yet: loyalty rules activate --partner {pid} {shown.hash}")
    return 0


@rules.command("activate")
def activate(
    partner: PartnerOpt,
    digest_text: HashArg,
    as_json: Annotated[bool, typer.Option("--json", help="print the rule set as JSON")] = False,
) -> int:
    """Put one of the partner's rule sets in force, from now on."""
    settings = load_settings()
    pid = partner_id(partner)
    digest = hash32(digest_text, "a rule hash")
    now = int(time.time())
    with service_db(settings) as db:
        before = latest_activation(db, pid, now)
        already = before is not None and bytes(before.rule_hash) == digest
        activation = activate_rules(db, pid, digest, now=now, activated_by=None)
        record = rule_set_by_hash(db, digest)
        assert record is not None  # activate found it
        shown = _ShownRuleSet.of(record, activation)
    if as_json:
        emit_json(shown.as_json(changed=not already))
        return 0
    what = f"version {shown.version} of partner {pid}'s rules ({shown.hash})"
    if already:
        print(f"{what} is in force already, since {when(shown.activated_at)}")
    else:
        print(f"{what} is in force from {when(shown.activated_at)}")
    return 0


@rules.command("list")
def list_(
    partner: PartnerOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> int:
    """The partner's rule sets, newest first; * marks the one in force."""
    settings = load_settings()
    pid = partner_id(partner)
    now = int(time.time())
    with service_db(settings) as db:
        current = latest_activation(db, pid, now)
        shown = [_ShownRuleSet.of(record, current) for record in rule_sets_of(db, pid)]
    if as_json:
        emit_json([s.as_json() for s in shown])
        return 0
    if not shown:
        print(f"partner {pid} has no rule sets (loyalty rules create --partner {pid} FILE)")
        return 0
    header = ("version", "hash", "created", "active")
    rows = [
        (str(s.version), s.hash, when(s.created_at), f"* since {when(s.activated_at)}" if s.active else "")
        for s in shown
    ]
    table(header, rows)
    return 0


@rules.command("show")
def show(
    digest_text: HashArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="print {hash, partner_id, version, created_at, rules} as JSON")
    ] = False,
) -> int:
    """A rule set's canonical text: what its hash is of (GET /v1/rules/{hash} publishes the same)."""
    settings = load_settings()
    digest = hash32(digest_text, "a rule hash")
    with service_db(settings) as db:
        record = rule_set_by_hash(db, digest)
        if record is None:
            raise CommandError(f"no rule set 0x{digest.hex()}")
        canonical, version, owner, created = (
            record.canonical,
            record.version,
            record.partner_id,
            record.created_at,
        )
    if as_json:
        emit_json(
            {
                "hash": "0x" + digest.hex(),
                "partner_id": owner,
                "version": version,
                "created_at": created,
                "rules": json.loads(canonical),
            }
        )
    else:
        print(canonical)
    return 0
