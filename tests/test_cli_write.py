"""The command line's write side: ``loyalty rules ...`` (earning rule sets) and the coalition operations
(``loyalty partner ...``, ``settlement``, ``transfers``, ``pause``, ``unpause``, ``operations ...``).

Run in this process, as ``tests/test_cli.py`` runs ``loyalty``: settings from a clean ``LOYALTY_*``
environment, a ledger deployed with ``loyalty deploy`` on the session's anvil (reverted after each test), a
SQLite database and a PostgreSQL schema. Each action is an operation recorded as the admin API records it,
visible on chain; a refused one exits 1 with its typed reason; a generated operator key stays in the keystore
and only its address is printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_cli import Cli as BaseCli
from test_cli import Result

from api._tables import CoalitionOperation
from chain import PartnerId, PartnerStatus, Rpc
from chain._ledger import Ledger as ChainLedger
from chain._manifest import load_manifest
from conftest import AnvilNode, database_url
from indexer import make_engine

SCRYPT_N = 16  # tests only
TIMELOCK_DELAY = 3600
RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1.50"}}, "pending_days": 14}
HASH = re.compile(r"0x[0-9a-f]{64}")
TX = re.compile(r"tx 0x[0-9a-f]{64} in block [0-9]+$")


@dataclass
class Cli(BaseCli):
    """``tests/test_cli.py``'s runner, with the database the commands write to."""

    database_url: str = ""

    def ok(self, *argv: str, stdin: str = "") -> Result:
        result = self(*argv, stdin=stdin)
        assert result.code == 0, result.err
        return result

    def rules_file(self, rules: object, name: str = "rules.json") -> str:
        path = self.tmp / name
        path.write_text(rules if isinstance(rules, str) else json.dumps(rules))
        return str(path)

    def operations(self) -> list[CoalitionOperation]:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as db:
                return list(db.scalars(select(CoalitionOperation).order_by(CoalitionOperation.id)))
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    for name in list(os.environ):
        if name.startswith("LOYALTY_") or name == "SOLC_BINARY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for url in database_url(request.param, tmp_path):
        runner = Cli(tmp_path, monkeypatch, capsys, f"pw-{secrets.token_hex(12)}", database_url=url)
        runner.env("DATABASE_URL", url)
        runner.env("KEYSTORE_DIR", str(runner.keystore_dir))
        runner.env("KEYSTORE_SCRYPT_N", str(SCRYPT_N))
        runner.env("MANIFEST_PATH", str(runner.manifest_path))
        runner.env("KEYSTORE_PASSWORD", runner.password)
        yield runner


@pytest.fixture
def chain(anvil_node: AnvilNode, cli: Cli) -> Iterator[ChainLedger]:
    """A ledger deployed with ``loyalty deploy`` (dev mode: anvil's account 0 is admin, treasury and
    pauser) on the session's anvil, whose state is restored after the test."""
    cli.env("RPC_URL", anvil_node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    snapshot = anvil_node.snapshot()
    try:
        cli.ok("deploy")
        yield ChainLedger(Rpc(anvil_node.w3), load_manifest(cli.manifest_path).ledger.address)
    finally:
        anvil_node.revert(snapshot)


def op_id(result: Result) -> str:
    """The ``adm_<n>`` an action printed first."""
    assert result.out.startswith("adm_"), (result.out, result.err)
    return result.out.split()[0]


# --------------------------------------------------------------------------- earning rules


def test_rules_create_activate_list_and_show(cli: Cli) -> None:
    first = cli.ok("rules", "create", "--partner", "1", cli.rules_file(RULES))
    [digest] = HASH.findall(first.out.splitlines()[0])
    assert first.out.splitlines() == [
        f"created version 1 of partner 1's rules: {digest}",
        f"  not in force yet: loyalty rules activate --partner 1 {digest}",
    ]
    # The same rules again (another spelling of the same values): the existing rule set.
    same = {"pending_days": 14, "earn": {"rates": {"EUR": "1.5"}, "basis": "points_per_unit"}}
    again = cli.ok("rules", "create", "--partner", "1", cli.rules_file(same), "--json")
    shown = json.loads(again.out)
    assert (shown["hash"], shown["version"], shown["new"], shown["active"]) == (digest, 1, False, False)
    second = json.loads(
        cli.ok(
            "rules", "create", "--partner", "1", "-", "--json", stdin=json.dumps({**RULES, "pending_days": 0})
        ).out
    )
    assert (second["version"], second["new"], second["partner_id"]) == (2, True, 1)

    activated = cli.ok("rules", "activate", "--partner", "1", digest)
    assert activated.out.startswith(f"version 1 of partner 1's rules ({digest}) is in force from ")
    assert "is in force already" in cli.ok("rules", "activate", "--partner", "1", digest).out

    listed = cli.ok("rules", "list", "--partner", "1").out.splitlines()
    assert listed[0].split() == ["version", "hash", "created", "active"]
    assert listed[1].split()[:2] == ["2", second["hash"]] and "*" not in listed[1]
    assert listed[2].split()[:2] == ["1", digest] and listed[2].split()[3] == "*"
    as_json = json.loads(cli.ok("rules", "list", "--partner", "1", "--json").out)
    assert [(r["version"], r["active"]) for r in as_json] == [(2, False), (1, True)]
    assert cli.ok("rules", "list", "--partner", "2").out.startswith("partner 2 has no rule sets")

    # The canonical text: what the hash is of; it can be created again as it is (it names its partner).
    text = cli.ok("rules", "show", digest).out
    assert (
        text == '{"earn":{"basis":"points_per_unit","rates":{"EUR":"1.5"}},"format":1,"partner_id":1,'
        '"pending_days":14}\n'
    )
    assert "0x" + keccak(text.rstrip("\n").encode()).hex() == digest
    assert (
        json.loads(cli.ok("rules", "create", "--partner", "1", "-", "--json", stdin=text).out)["new"] is False
    )
    other = cli("rules", "create", "--partner", "2", "-", stdin=text)
    assert (other.code, other.err) == (1, "error: the rule set names partner 1, not 2\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", " is not JSON: "),
        (
            json.dumps({"earn": {"basis": "points_per_unit", "rates": {"EUR": 1.5}}}),  # a float
            " is not a valid rule set: earn.",
        ),
        (
            json.dumps({**RULES, "bonus": 1}),
            " is not a valid rule set: bonus: Extra inputs are not permitted",
        ),
    ],
)
def test_an_invalid_rule_set_file_is_one_error_line_and_stores_nothing(
    cli: Cli, content: str, message: str
) -> None:
    result = cli("rules", "create", "--partner", "1", cli.rules_file(content))
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"error: {cli.tmp / 'rules.json'}{message}"), result.err
    assert len(result.err.splitlines()) == 1
    assert cli.ok("rules", "list", "--partner", "1").out.startswith("partner 1 has no rule sets")


def test_rule_commands_refuse_what_does_not_exist(cli: Cli) -> None:
    missing = cli("rules", "create", "--partner", "1", str(cli.tmp / "nowhere.json"))
    assert (missing.code, missing.err) == (
        1,
        f"error: cannot read the rule set {cli.tmp / 'nowhere.json'}: No such file or directory\n",
    )
    unknown = "0x" + "ab" * 32
    assert cli("rules", "show", unknown).err == f"error: no rule set {unknown}\n"
    assert (
        cli("rules", "activate", "--partner", "1", unknown).err
        == f"error: partner 1 has no rule set {unknown}\n"
    )
    assert (
        cli("rules", "show", "0x12").err
        == "error: a rule hash must be 32 bytes of 0x-prefixed hex, not '0x12'\n"
    )
    assert (
        cli("rules", "list", "--partner", "0").err
        == "error: a partner id is a number from 1 to 4294967295, not 0\n"
    )


# --------------------------------------------------------------------------- coalition operations


def test_onboard_with_an_address_then_allowance_suspend_reactivate_pause_unpause(
    cli: Cli, chain: ChainLedger
) -> None:
    operator, payee = Account.create().address, Account.create().address
    onboarded = cli.ok(
        "partner",
        "onboard",
        "--id",
        "7",
        "--name",
        "Harbour Hotels",
        "--operator",
        operator.lower(),
        "--settlement",
        payee,
        "--no-accept",
        "--allowance",
        "5000",
    )
    first = op_id(onboarded)
    head, operator_line = onboarded.out.splitlines()
    assert head.startswith(f"{first} register-partner (partner 7) confirmed: ") and TX.search(head)
    assert operator_line == f"  operator {operator}"
    partner = chain.partner(PartnerId(7))
    assert (partner.operator, partner.settlement, partner.status) == (operator, payee, PartnerStatus.ACTIVE)
    assert (partner.can_issue, partner.can_accept, partner.allowance) == (True, False, 5000)

    topped = json.loads(cli.ok("partner", "allowance", "7", "--increase", "2500", "--json").out)
    assert (topped["action"], topped["state"], topped["params"]) == (
        "allowance-increase",
        "confirmed",
        {"partner_id": 7, "amount": 2500},
    )
    assert chain.partner(PartnerId(7)).allowance == 7500

    assert " suspend (partner 7) confirmed: tx " in cli.ok("partner", "suspend", "7").out
    assert chain.partner(PartnerId(7)).status == PartnerStatus.SUSPENDED
    cli.ok("partner", "reactivate", "7")
    assert chain.partner(PartnerId(7)).status == PartnerStatus.ACTIVE
    cli.ok("partner", "rights", "7", "--no-issue", "--accept")
    assert (chain.partner(PartnerId(7)).can_issue, chain.partner(PartnerId(7)).can_accept) == (False, True)

    paused = cli.ok("pause")
    assert re.match(r"^adm_[0-9]+ pause confirmed: tx 0x", paused.out)
    assert chain.paused()
    cli.ok("unpause")
    assert not chain.paused()

    # Every one is an operation, as the admin API records it; none waits on the chain any more.
    assert [(row.action, row.state, row.created_by) for row in cli.operations()] == [
        ("register-partner", "confirmed", None),
        ("allowance-increase", "confirmed", None),
        ("suspend", "confirmed", None),
        ("reactivate", "confirmed", None),
        ("set-rights", "confirmed", None),
        ("pause", "confirmed", None),
        ("unpause", "confirmed", None),
    ]
    assert cli.ok("operations", "list").out == "no pending operations (--all lists every operation)\n"
    listed = cli.ok("operations", "list", "--all").out.splitlines()
    assert listed[0].split() == ["id", "action", "partner", "state", "created", "detail"]
    assert [line.split()[1:4] for line in listed[1:]] == [
        ["unpause", "-", "confirmed"],
        ["pause", "-", "confirmed"],
        ["set-rights", "7", "confirmed"],
        ["reactivate", "7", "confirmed"],
        ["suspend", "7", "confirmed"],
        ["allowance-increase", "7", "confirmed"],
        ["register-partner", "7", "confirmed"],
    ]
    assert listed[-1].split()[0] == first and TX.search(listed[-1])
    mine = json.loads(cli.ok("operations", "list", "--all", "--partner", "7", "--json").out)
    assert len(mine) == 5 and {op["partner_id"] for op in mine} == {7}

    # Reading needs no key; acting does.
    cli.env("SIGNER_ADDRESS", Account.create().address)  # no such key in the keystore
    assert cli.ok("operations", "list", "--all").out.splitlines() == listed
    refused = cli("pause")
    assert refused.code == 1 and refused.err.startswith("error: ") and not chain.paused()


def test_onboard_with_a_generated_operator_prints_only_its_address(cli: Cli, chain: ChainLedger) -> None:
    result = cli.ok(
        "partner",
        "onboard",
        "--id",
        "8",
        "--name",
        "Skyline Air",
        "--generate-operator",
        "--allowance",
        "100",
    )
    [address] = re.findall(r"0x[0-9a-fA-F]{40}", result.out.splitlines()[1])
    assert (
        result.out.splitlines()[1] == f"  operator {address} (a new key in the keystore {cli.keystore_dir})"
    )
    [keyfile] = cli.keystore_dir.iterdir()
    key = bytes(Account.decrypt(json.loads(keyfile.read_text()), cli.password))
    assert Account.from_key(key).address == address
    partner = chain.partner(PartnerId(8))
    assert (partner.operator, partner.settlement, partner.allowance) == (address, address, 100)
    assert key.hex() not in cli.transcript and cli.password not in cli.transcript

    rotated = cli.ok("partner", "rotate", "8", "--generate-operator", "--json")
    new = json.loads(rotated.out)["params"]["operator"]
    assert len(list(cli.keystore_dir.iterdir())) == 2 and chain.partner(PartnerId(8)).operator == new


def test_a_refused_action_exits_1_with_its_typed_reason_and_changes_nothing(
    cli: Cli, chain: ChainLedger
) -> None:
    operator = Account.create().address
    cli.ok(
        "partner",
        "onboard",
        "--id",
        "7",
        "--name",
        "Harbour Hotels",
        "--operator",
        operator,
        "--allowance",
        "10",
    )
    block = chain.rpc.block_number()

    again = cli(
        "partner", "onboard", "--id", "7", "--name", "Impostor", "--operator", operator, "--allowance", "10"
    )
    assert again.code == 1
    assert again.out == f"{op_id(again)} register-partner (partner 7) failed\n  operator {operator}\n"
    assert again.err == "error: partner-exists: LedgerPartnerExists(7)\n"
    cut = cli("partner", "allowance", "7", "--decrease", "11")
    assert cut.code == 1 and cut.error == "error: allowance-exhausted: LedgerAllowanceExceeded(7, 10, 11)"
    assert cut.hint is not None and "what remains" in cut.hint and cut.err.count("\n") == 2
    assert chain.rpc.block_number() == block, "nothing was sent"
    assert chain.partner(PartnerId(7)).allowance == 10

    failed = [line for line in cli.ok("operations", "list", "--all").out.splitlines() if " failed " in line]
    assert len(failed) == 2 and failed[-1].split()[:4] == [op_id(again), "register-partner", "7", "failed"]
    assert failed[-1].rstrip().endswith("partner-exists")
    # Input checked as the API checks it, before the chain is touched.
    assert cli("partner", "allowance", "7", "--increase", "0").err == (
        "error: invalid allowance change: increase: Input should be greater than or equal to 1\n"
    )
    assert cli(
        "partner", "onboard", "--id", "9", "--name", "X", "--operator", "0x12", "--allowance", "1"
    ).err == ("error: --operator must be a 0x-prefixed 20-byte address, not '0x12'\n")
    assert cli("operations", "execute", "adm_x").err == (
        "error: an operation id is adm_<number> (loyalty operations list), not 'adm_x'\n"
    )
    assert chain.rpc.block_number() == block


def test_settlements_transfers_and_settlement_address(cli: Cli, chain: ChainLedger) -> None:
    operator, payee = Account.create().address, Account.create().address
    cli.ok(
        "partner",
        "onboard",
        "--id",
        "7",
        "--name",
        "Harbour Hotels",
        "--operator",
        operator,
        "--allowance",
        "10",
    )
    cli.ok("partner", "settlement-address", "7", payee)
    assert chain.partner(PartnerId(7)).settlement == payee
    cli.ok("settlement", "value", "12")
    assert chain.settlement_value() == 12
    recorded = json.loads(
        cli.ok(
            "settlement",
            "record",
            "--partner",
            "7",
            "--points",
            "-40",
            "--value",
            "-400",
            "--payment-ref",
            "SEPA 2026-12-0042",
            "--json",
        ).out
    )
    assert recorded["state"] == "confirmed"
    settled = chain.partner(PartnerId(7))
    assert (settled.settled_points, settled.settled_value) == (-40, -400)
    assert recorded["params"]["payment_ref_hash"] == "0x" + keccak(text="SEPA 2026-12-0042").hex()
    enabled = chain.transfers_enabled()
    cli.ok("transfers", "off" if enabled else "on")
    assert chain.transfers_enabled() is not enabled


def test_behind_a_timelock_actions_are_scheduled_then_executed_or_cancelled(
    cli: Cli, anvil_node: AnvilNode
) -> None:
    cli.env("RPC_URL", anvil_node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    cli.env("TIMELOCK_DELAY_S", str(TIMELOCK_DELAY))  # dev mode: the deploying key proposes
    snapshot = anvil_node.snapshot()
    try:
        cli.ok("deploy")
        chain = ChainLedger(Rpc(anvil_node.w3), load_manifest(cli.manifest_path).ledger.address)
        operator = Account.create().address
        scheduled = cli.ok(
            "partner",
            "onboard",
            "--id",
            "7",
            "--name",
            "Harbour Hotels",
            "--operator",
            operator,
            "--allowance",
            "10",
        )
        first = op_id(scheduled)
        head = scheduled.out.splitlines()[0]
        assert head.startswith(f"{first} register-partner (partner 7) scheduled: timelock operation 0x")
        assert f"(in {TIMELOCK_DELAY} s)" in head
        assert scheduled.out.splitlines()[-1] == f"  once ready: loyalty operations execute {first}"
        other = op_id(cli.ok("settlement", "value", "3"))

        pending = cli.ok("operations", "list").out.splitlines()[1:]
        assert [line.split()[:4] for line in pending] == [
            [other, "set-settlement-value", "-", "scheduled"],
            [first, "register-partner", "7", "scheduled"],
        ]
        early = cli("operations", "execute", first)
        assert early.code == 1 and early.err.startswith(f"error: operation {first} is not ready until ")
        assert 7 not in chain.partner_ids()

        anvil_node.advance_time(TIMELOCK_DELAY)
        executed = cli.ok("operations", "execute", first)
        assert executed.out.startswith(f"{first} register-partner (partner 7) executed: tx 0x")
        assert chain.partner(PartnerId(7)).operator == operator
        cancelled = cli.ok("operations", "cancel", other)
        assert cancelled.out == f"{other} set-settlement-value cancelled\n"
        assert cli.ok("operations", "list").out.startswith("no pending operations")
        again = cli("operations", "execute", first)
        assert (again.code, again.err) == (1, f"error: operation {first} is executed already\n")
    finally:
        anvil_node.revert(snapshot)


def test_coalition_commands_refuse_the_embedded_chain(cli: Cli) -> None:
    result = cli("pause")
    assert result.code == 1
    assert "lives only inside one command" in result.err and "to act on it" in result.err
