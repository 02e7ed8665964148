"""The command line's member, reward, issue, redeem and wallet commands, its help, its usage errors and its
expected failures (one ``error:`` line and a ``hint:``, never a traceback).

Run in this process as ``tests/test_cli.py`` runs ``loyalty``, against an anvil of this module's own (its
clock is the wall clock the commands use, as a production node's is) and a SQLite file or a PostgreSQL
schema. The story: a ledger deployed with ``loyalty deploy``, a partner onboarded and mirrored, two members
enrolled (custodial and self custody), a reward in the catalogue, points issued by an adjustment and by a
purchase (through the outbox, sent by ``loyalty batcher``), redeemed with a custodial member's one-time code,
and every figure read back with ``loyalty wallet``, as ``GET /v1/wallets/{address}`` computes it.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy.orm import Session
from test_cli_write import Cli

from api._redemptions import code_digest
from api._tables import Operation, RedemptionCode
from api.cli._output import BackfillBar
from chain._devnode import anvil_binary, start_anvil
from chain._signer import dev_signers
from conftest import ROOT, database_url
from indexer import Progress, make_engine

pytestmark = pytest.mark.anvil

SCRYPT_N = 16  # tests only
PARTNER = 1
OPERATOR = dev_signers(31337)[1].address  # dev mode: the batcher signs with anvil's dev account 1
RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "2"}}}


@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    """An anvil of this module's own: its clock starts at the wall clock's time, as the commands expect."""
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    with start_anvil(ROOT) as anvil:
        yield anvil.url


def _runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> Cli:
    for name in list(os.environ):
        if name.startswith("LOYALTY_") or name == "SOLC_BINARY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = Cli(tmp_path, monkeypatch, capsys, f"pw-{secrets.token_hex(12)}", database_url=url)
    runner.env("DATABASE_URL", url)
    runner.env("KEYSTORE_DIR", str(runner.keystore_dir))
    runner.env("KEYSTORE_SCRYPT_N", str(SCRYPT_N))
    runner.env("MANIFEST_PATH", str(runner.manifest_path))
    runner.env("KEYSTORE_PASSWORD", runner.password)
    return runner


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    for url in database_url(request.param, tmp_path):
        yield _runner(tmp_path, monkeypatch, capsys, url)


@pytest.fixture
def coalition(cli: Cli, node_url: str) -> Cli:
    """A ledger deployed on the module's anvil with partner 1 onboarded (operator: a dev account) and
    mirrored. Each test deploys a ledger of its own, so no state is shared."""
    cli.env("RPC_URL", node_url)
    cli.env("INDEX_POLL_INTERVAL_S", "0.1")
    cli.ok("deploy")
    cli.ok(
        "partner", "onboard", "--id", str(PARTNER), "--name", "Bean There", "--operator", OPERATOR,
        "--allowance", "100000",
    )  # fmt: skip
    cli.ok("index", "--once")
    return cli


def send_and_mirror(cli: Cli) -> None:
    """What the batcher and the indexer do in production: the outbox to the chain, the chain to the mirror."""
    sent = cli.ok("batcher", "--partner", str(PARTNER), "--once", "--json")
    assert json.loads(sent.out) == [{"partner_id": PARTNER, "operator": OPERATOR, "drained": True}]
    cli.ok("index", "--once")


def wallet(cli: Cli, address: str) -> dict[str, object]:
    shown: dict[str, object] = json.loads(cli.ok("wallet", address, "--json").out)
    return shown


def operation_state(cli: Cli, op_id: str) -> str:
    engine = make_engine(cli.database_url)
    try:
        with Session(engine) as db:
            op = db.get(Operation, int(op_id.removeprefix("op_")))
            assert op is not None
            return op.state
    finally:
        engine.dispose()


def add_redemption_code(cli: Cli, member_id: str, max_points: int) -> str:
    """A code as the member makes one in their passkey session (``POST /v1/me/redemption-codes``)."""
    code = f"{secrets.randbelow(10**10):010d}"
    now = int(time.time())
    engine = make_engine(cli.database_url)
    try:
        with Session(engine) as db, db.begin():
            db.add(
                RedemptionCode(
                    code_hash=code_digest(member_id, code),
                    member_id=member_id,
                    partner_id=PARTNER,
                    max_points=max_points,
                    created_at=now,
                    expires_at=now + 300,
                )
            )
    finally:
        engine.dispose()
    return code


# --------------------------------------------------------------------------- the story


def test_members_rewards_points_in_and_out_through_the_outbox(coalition: Cli) -> None:
    cli = coalition
    # Two members: a custodial wallet (with its passkey enrolment link, shown once) and a self-custody one.
    custodial = json.loads(
        cli.ok(
            "member", "enrol", "--partner", "1", "--customer-id", "cust-ada", "--email", "ada@example.org",
            "--birthday", "1990-04-01", "--json",
        ).out
    )  # fmt: skip
    assert custodial["custody"] == "custodial" and custodial["customer_id"] == "cust-ada"
    assert "/enrol#" in custodial["enrolment"]["url"]  # the passkey enrolment link, shown this once
    own = Account.create().address
    enrolled = cli.ok("member", "enrol", "--partner", "1", "--customer-id", "cust-bo", "--address", own)
    bo_id = enrolled.out.split()[1]
    assert enrolled.out.splitlines()[0] == f"enrolled {bo_id} for partner 1 as customer cust-bo"
    assert enrolled.out.splitlines()[1].split() == ["wallet", own, "(self)"]
    again = cli("member", "enrol", "--partner", "1", "--customer-id", "cust-bo", "--address", own)
    assert (again.code, again.error) == (1, "error: customer id 'cust-bo' is enrolled already")

    listed = cli.ok("member", "list", "--partner", "1").out.splitlines()
    assert listed[0].split() == ["id", "customer", "id", "address", "custody", "enrolled", "linked"]
    assert [row.split()[:2] for row in listed[1:]] == sorted(
        [[custodial["id"], "cust-ada"], [bo_id, "cust-bo"]], reverse=True
    )
    everyone = json.loads(cli.ok("member", "list", "--json").out)  # as an admin: no personal data
    assert {m["id"] for m in everyone["data"]} == {custodial["id"], bo_id}
    assert all(m["customer_id"] is None and m["email"] is None for m in everyone["data"])
    shown = cli.ok("member", "show", "cust-ada", "--partner", "1").out
    assert shown.startswith(f"member {custodial['id']}\n") and "ada@example.org" in shown
    assert re.search(r"balance\s+0 points, tier member", shown), shown

    # A reward in the partner's catalogue.
    created = json.loads(
        cli.ok("reward", "create", "--partner", "1", "--name", "Free coffee", "--points", "300", "--json").out
    )
    assert (created["partner_id"], created["points_price"], created["available"]) == (1, 300, True)
    catalogue = cli.ok("reward", "list", "--partner", "1").out.splitlines()
    assert catalogue[0].split() == ["id", "partner", "name", "points", "stock", "valid", "available"]
    assert catalogue[1].split() == [str(created["id"]), "1", "Free", "coffee", "300", "unlimited", "-", "yes"]

    # Points in: an adjustment (an admin's, from the partner's allowance); the same id again records nothing.
    adjust = ["issue", "--partner", "1", "--customer-id", "cust-ada", "--points", "500"]
    issued = cli.ok(*adjust, "--reason", "welcome to the programme", "--id", "ticket-1")
    op_id = issued.out.split()[0]
    assert issued.out.splitlines()[0] == f"{op_id} adjustment 'ticket-1' for partner 1: accepted"
    assert "loyalty batcher --partner 1" in issued.err
    replay = json.loads(
        cli.ok(*adjust, "--reason", "welcome to the programme", "--id", "ticket-1", "--json").out
    )
    assert (replay["id"], replay["points"], replay["kind"]) == (op_id, 500, "adjustment")
    changed = cli(*adjust[:-1], "600", "--reason", "welcome to the programme", "--id", "ticket-1")
    assert changed.code == 1 and "was recorded already with other details" in changed.error
    # ... and a purchase, its points computed by the partner's active rules (2 per euro).
    rule_set = cli.ok("rules", "create", "--partner", "1", cli.rules_file(RULES), "--json")
    digest = json.loads(rule_set.out)["hash"]
    cli.ok("rules", "activate", "--partner", "1", digest)
    order = {
        "order_id": "till-1-0001",
        "member": {"member_id": bo_id},
        "channel": "pos",
        "currency": "EUR",
        "amount": 1250,
    }
    bought = json.loads(
        cli.ok("issue", "--partner", "1", "--purchase", "-", "--json", stdin=json.dumps(order)).out
    )
    assert (bought["kind"], bought["points"], bought["rule_hash"]) == ("purchase", 25, digest)

    send_and_mirror(cli)
    assert operation_state(cli, op_id) == operation_state(cli, bought["id"]) == "confirmed"
    assert json.loads(cli.ok("reconcile", "--json").out)["agrees"] is True
    ada = wallet(cli, custodial["address"])
    assert ada["balance"] == 500 and ada["redeemable_count"] == 1
    assert wallet(cli, own.lower())["balance"] == 25
    described = cli.ok("wallet", custodial["address"], "--history", "5").out
    assert re.search(r"balance\s+500 points", described) and "PointsIssuedInBatch" in described

    # Points out: the custodial member's one-time code at the till (read from standard input).
    code = add_redemption_code(cli, custodial["id"], max_points=300)
    wrong = cli(
        "redeem", "--partner", "1", "--member", custodial["id"], "--points", "200", stdin="0000000000\n"
    )
    assert (wrong.code, wrong.error) == (
        1,
        "error: this redemption code is unknown, used, revoked or expired: ask the member for a new one",
    )
    too_much = cli("redeem", "--partner", "1", "--member", custodial["id"], "--points", "900", stdin=code)
    assert too_much.error == "error: the member can spend 500 points, 900 were asked"
    assert too_much.hint == "hint: `loyalty wallet ADDRESS` shows what the member holds"
    redeemed = cli.ok(
        "redeem", "--partner", "1", "--member", custodial["id"], "--reward", str(created["id"]), "--json",
        stdin=code + "\n",
    )  # fmt: skip
    redemption = json.loads(redeemed.out)
    assert (redemption["kind"], redemption["points"], redemption["state"]) == ("redemption", 300, "accepted")
    assert code not in cli.transcript  # the code never shows: neither in output nor in the operation
    used = cli("redeem", "--partner", "1", "--member", custodial["id"], "--points", "10", stdin=code)
    assert used.code == 1 and "unknown, used, revoked or expired" in used.error

    send_and_mirror(cli)
    assert operation_state(cli, redemption["id"]) == "confirmed"
    ada = wallet(cli, custodial["address"])
    assert ada["balance"] == 200
    assert ada["next_reward"] == {
        "reward_id": created["id"],
        "partner_id": 1,
        "name": "Free coffee",
        "points_price": 300,
        "points_away": 100,
    }
    summary = cli.ok("wallet", custodial["address"]).out
    nearest = r"next reward\s+Free coffee \(reward \d+, partner 1\): 100 points away"
    assert re.search(nearest, summary), summary

    retired = json.loads(cli.ok("reward", "retire", "--partner", "1", str(created["id"]), "--json").out)
    assert retired["retired_at"] is not None
    assert cli.ok("reward", "list").out.startswith("no rewards in the coalition")
    assert len(json.loads(cli.ok("reward", "list", "--partner", "1", "--all", "--json").out)) == 1


# --------------------------------------------------------------------------- expected failures


def test_expected_failures_are_an_error_line_and_a_hint(coalition: Cli) -> None:
    cli = coalition
    unknown = cli("reward", "create", "--partner", "9", "--name", "Nothing", "--points", "5")
    assert (unknown.code, unknown.error) == (1, "error: the ledger has no partner 9")
    assert unknown.hint is not None and "loyalty partner onboard" in unknown.hint
    stranger = cli(
        "issue", "--partner", "9", "--address", OPERATOR, "--points", "5", "--reason", "why", "--id", "x"
    )
    assert stranger.error == "error: the ledger has no partner 9"

    cli.ok("pause")
    paused = cli("pause")
    assert (paused.code, paused.error) == (1, "error: ledger-paused: EnforcedPause()")
    assert paused.hint == "hint: the ledger is paused: `loyalty unpause` resumes it (the pauser's key)"
    cli.ok("unpause")

    cli.env("KEYSTORE_PASSWORD", None)  # custodial wallets' seed is kept under the keystore password
    no_custody = cli("member", "enrol", "--partner", "1", "--customer-id", "cust-cy")
    assert no_custody.error.startswith("error: custodial wallets are not configured")
    assert no_custody.hint is not None and "LOYALTY_KEYSTORE_PASSWORD_FILE" in no_custody.hint
    cli.env("KEYSTORE_PASSWORD", cli.password)

    no_code = cli("redeem", "--partner", "1", "--address", OPERATOR, "--points", "5", stdin="")
    assert no_code.error == "error: no redemption code given (empty input)"
    bad_address = cli("wallet", "0x1234")
    assert (bad_address.code, bad_address.error) == (
        1,
        "error: '0x1234' is not an address (0x + 40 hex digits)",
    )

    cli.env("RPC_URL", "http://127.0.0.1:1")
    down = cli("index", "--once")
    assert down.code == 1 and down.error.startswith("error: ") and "127.0.0.1:1" in down.error
    assert down.hint is not None and down.hint.startswith("hint: is the node running?")
    for result in (unknown, paused, down):
        assert len(result.err.splitlines()) == 2 and "Traceback" not in result.err


def test_a_database_that_is_down_is_one_line_and_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _runner(tmp_path, monkeypatch, capsys, "postgresql://loyalty@127.0.0.1:1/loyalty")
    for argv in (("member", "list"), ("apikey", "list"), ("migrate",)):
        down = cli(*argv)
        assert down.code == 1 and down.error.startswith("error: the database failed (OperationalError): ")
        assert down.hint == "hint: is the database running, and does LOYALTY_DATABASE_URL name it?"
        assert len(down.err.splitlines()) == 2


def test_invalid_settings_name_the_setting_and_hint_at_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _runner(tmp_path, monkeypatch, capsys, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli.env("API_PORT", "not-a-port")
    refused = cli("member", "list")
    assert refused.code == 1 and refused.error.startswith("error: invalid settings: api_port: ")
    assert refused.hint is not None and "LOYALTY_<NAME>" in refused.hint
    assert "not-a-port" not in refused.err  # a setting's value may be a secret: never repeated


# --------------------------------------------------------------------------- help and usage


def test_help_lists_every_group_and_each_command_says_what_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _runner(tmp_path, monkeypatch, capsys, f"sqlite:///{tmp_path / 'db.sqlite'}")
    top = cli("--help")
    assert top.code == 0 and top.out.lstrip().startswith("Usage: loyalty [OPTIONS] COMMAND [ARGS]...")
    service = ["run", "serve", "migrate", "index", "reconcile", "batcher", "jobs"]
    ledger = ["compile", "deploy", "keys", "timelock", "apikey"]
    coalition = ["partner", "settlement", "operations", "transfers", "pause", "unpause"]
    points = ["member", "wallet", "rules", "reward", "issue", "redeem", "audit"]
    commands = service + ledger + coalition + points
    for command in commands:
        assert re.search(rf"│ {command}\s+\S", top.out), command
        assert cli(command, "--help").code == 0, command
    issue_help = cli("issue", "--help").out
    for option in ("--partner", "--points", "--reason", "--id", "--purchase", "--customer-id", "--json"):
        assert option in issue_help
    assert cli().code == 2  # no command: the help, and a usage status


def test_usage_errors_show_the_usage_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _runner(tmp_path, monkeypatch, capsys, f"sqlite:///{tmp_path / 'db.sqlite'}")
    missing = cli("member", "enrol", "--customer-id", "c1")
    assert missing.code == 2 and missing.out == ""
    usage, error, hint = missing.err.splitlines()
    assert usage == "Usage: loyalty member enrol [OPTIONS]"
    assert error == "error: Missing option '--partner'."
    assert hint == "hint: `loyalty member enrol --help` says what it takes"
    both = cli("redeem", "--partner", "1", "--address", OPERATOR, "--points", "5", "--reward", "1")
    assert both.code == 2 and "give exactly one" in both.err
    nobody = cli("issue", "--partner", "1", "--points", "5", "--reason", "why", "--id", "x")
    assert nobody.code == 2 and "name the member by exactly one" in nobody.err
    assert cli("partner", "onboard", "--id", "3", "--name", "X", "--allowance", "1").code == 2  # no operator
    assert cli("transfers", "sideways").code == 2
    assert cli("nonsense").code == 2


# --------------------------------------------------------------------------- the backfill's progress bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_backfill_shows_a_rich_progress_bar_in_a_terminal_and_lines_elsewhere() -> None:
    terminal, log = _Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = BackfillBar()
        bar.stream = stream
        for cursor in (10, 50, 100):
            bar(Progress(cursor=cursor, target=100, first=1, entries=cursor * 3))
        bar.finish()
    assert "backfill" in terminal.getvalue() and "block 100 of 100" in terminal.getvalue()
    assert "300 entries" in terminal.getvalue()
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("backfill 100.0% block 100/100 300 entries") and len(lines) == 3
