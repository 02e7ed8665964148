"""The ``loyalty`` command line, run in process against a spawned anvil (and the embedded chain).

Settings come from the environment, as in production; every test starts from a clean ``LOYALTY_*`` set, in
its own directory, with a cheap scrypt work factor. The last tests run a whole session (new key, imports,
list, deploy, a wrong password, a refused key on argv) with every logger at DEBUG and check that no private
key and no password shows anywhere: output, log records, reprs, exception messages.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import text

from api._chain_setup import signer_from_settings
from api._settings import Settings
from api.cli import main
from chain import PartnerId, Points, Rpc, Sender
from chain._ledger import Ledger as ChainLedger
from chain._manifest import extension_address, load_manifest, verify_manifest
from chain._signer import DevKeyRefused, InvalidKey, Keystore, WrongPassword, dev_signers
from conftest import AnvilNode
from indexer import make_engine

SCRYPT_N = 16  # tests only: production mode refuses anything below 2**18
ZERO = "0x" + "00" * 20


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The ``error: ...`` line of a failure (a ``hint: ...`` line may follow it)."""
        return self.err.splitlines()[0] if self.err else ""

    @property
    def hint(self) -> str | None:
        """The ``hint: ...`` line after the error line, if there is one."""
        lines = self.err.splitlines()
        return lines[1] if len(lines) > 1 and lines[1].startswith("hint: ") else None


@dataclass
class Cli:
    """Runs ``loyalty`` in this process with the test's environment; remembers everything it printed."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    password: str
    transcript: str = ""

    @property
    def keystore_dir(self) -> Path:
        return self.tmp / "keystore"

    @property
    def manifest_path(self) -> Path:
        return self.tmp / "deployment.json"

    def env(self, name: str, value: str | None) -> None:
        if value is None:
            self.monkeypatch.delenv(f"LOYALTY_{name}", raising=False)
        else:
            self.monkeypatch.setenv(f"LOYALTY_{name}", value)

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # a pipe, not a terminal: never prompts
        code = main(list(argv))
        captured = self.capsys.readouterr()
        self.transcript += captured.out + captured.err
        return Result(code, captured.out, captured.err)

    def keys(self) -> dict[str, bytes]:
        """Every key in the keystore, decrypted here (the test must know them to look for them)."""
        out = {}
        for path in self.keystore_dir.iterdir():
            keyfile = json.loads(path.read_text())
            key = bytes(Account.decrypt(keyfile, self.password))
            out[Account.from_key(key).address] = key
        return out


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    for name in list(os.environ):
        if name.startswith("LOYALTY_") or name == "SOLC_BINARY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = Cli(tmp_path, monkeypatch, capsys, password=f"pw-{secrets.token_hex(12)}")
    runner.env("KEYSTORE_DIR", str(runner.keystore_dir))
    runner.env("KEYSTORE_SCRYPT_N", str(SCRYPT_N))
    runner.env("MANIFEST_PATH", str(runner.manifest_path))
    runner.env("KEYSTORE_PASSWORD", runner.password)
    return runner


@pytest.fixture
def anvil(anvil_node: AnvilNode, cli: Cli) -> Iterator[AnvilNode]:
    """The session's anvil as ``LOYALTY_RPC_URL``; its state is restored after the test."""
    cli.env("RPC_URL", anvil_node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    snapshot = anvil_node.snapshot()
    yield anvil_node
    anvil_node.revert(snapshot)


def fund(node: AnvilNode, address: str) -> None:
    node.w3.provider.make_request("anvil_setBalance", [address, hex(10**21)])  # type: ignore[arg-type]


def new_key_address(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out.split()[2]  # "created key 0x... in <dir>" / "imported key 0x... into <dir>"


# --------------------------------------------------------------------------- keys


def listed_addresses(cli: Cli) -> list[str]:
    """``keys list --json``: the addresses, in the keystore's order."""
    result = cli("keys", "list", "--json")
    assert result.code == 0, result.err
    return [key["address"] for key in json.loads(result.out)]


def test_keys_new_then_list_shows_the_address(cli: Cli) -> None:
    assert cli("keys", "list").out == f"no keys in {cli.keystore_dir} (`loyalty keys new` makes one)\n"
    assert listed_addresses(cli) == []

    first = new_key_address(cli("keys", "new"))
    second = new_key_address(cli("keys", "new"))

    listed = cli("keys", "list")
    assert listed.code == 0
    header, *rows = listed.out.splitlines()
    assert header.split() == ["address", "use"]
    assert rows == [first, second]  # neither is the signer (LOYALTY_SIGNER_ADDRESS is unset)
    assert listed_addresses(cli) == [first, second]
    assert set(cli.keys()) == {first, second}
    cli.env("SIGNER_ADDRESS", second)
    assert cli("keys", "list").out.splitlines()[2] == f"{second}  signer (LOYALTY_SIGNER_ADDRESS)"
    assert json.loads(cli("keys", "list", "--json").out)[1] == {"address": second, "signer": True}


def test_keys_import_from_a_file_and_from_stdin(cli: Cli) -> None:
    from_file, from_stdin = Account.create(), Account.create()
    key_file = cli.tmp / "key.txt"
    key_file.write_text(from_file.key.to_0x_hex() + "\n")

    assert new_key_address(cli("keys", "import", "--file", str(key_file))) == from_file.address
    assert new_key_address(cli("keys", "import", stdin=from_stdin.key.hex())) == from_stdin.address

    assert set(listed_addresses(cli)) == {from_file.address, from_stdin.address}
    assert cli.keys()[from_file.address] == bytes(from_file.key)


def test_keys_import_refuses_a_duplicate_and_a_malformed_key(cli: Cli) -> None:
    key = Account.create().key.hex()
    assert cli("keys", "import", stdin=key).code == 0

    again = cli("keys", "import", stdin=key)
    assert again.code == 1
    assert again.err.startswith("error: the keystore already holds a key for ")

    malformed = cli("keys", "import", stdin=key[:-1])
    assert (malformed.code, malformed.err) == (1, "error: a private key is 64 hex digits (32 bytes)\n")

    empty = cli("keys", "import", stdin="")
    assert (empty.code, empty.err) == (1, "error: no private key given (empty input)\n")


def test_keys_need_a_password_when_nobody_can_be_asked(cli: Cli) -> None:
    cli.env("KEYSTORE_PASSWORD", None)
    result = cli("keys", "new")
    assert result.code == 1
    assert (
        "no keystore password: set LOYALTY_KEYSTORE_PASSWORD_FILE or LOYALTY_KEYSTORE_PASSWORD" in result.err
    )
    assert not cli.keystore_dir.exists()


def test_the_password_may_come_from_a_file(cli: Cli) -> None:
    password_file = cli.tmp / "password"
    password_file.write_text(cli.password + "\n")
    cli.env("KEYSTORE_PASSWORD", None)
    cli.env("KEYSTORE_PASSWORD_FILE", str(password_file))

    address = new_key_address(cli("keys", "new"))

    assert list(cli.keys()) == [address]  # decrypted with the file's password, newline dropped


def test_a_password_in_both_places_is_refused_without_showing_it(cli: Cli) -> None:
    password_file = cli.tmp / "password"
    password_file.write_text("other\n")
    cli.env("KEYSTORE_PASSWORD_FILE", str(password_file))

    result = cli("keys", "list")

    assert result.code == 1
    assert "invalid settings" in result.err
    assert "keystore_password or keystore_password_file, not both" in result.err
    assert cli.password not in result.err


# --------------------------------------------------------------------------- deploy


def test_deploy_with_a_keystore_key_writes_a_manifest_that_verifies(cli: Cli, anvil: AnvilNode) -> None:
    deployer = new_key_address(cli("keys", "new"))
    fund(anvil, deployer)
    cli.env("SIGNER_ADDRESS", deployer)

    result = cli("deploy", "--name", "Sky Miles", "--epoch-length", "3600", "--validity", "3")

    assert result.code == 0, result.err
    manifest = load_manifest(cli.manifest_path)
    verify_manifest(manifest, anvil.w3)
    assert manifest.chain_id == 31337
    assert manifest.deployer == deployer
    params = manifest.parameters
    assert (params.name, params.symbol, params.admin) == ("Sky Miles", "PTS", deployer)
    assert (params.epoch_length, params.validity, params.settlement_value) == (3600, 3, 1)
    assert params.reversal_window == 90 * 24 * 3600  # the default
    # Dev mode without a timelock: the admin key is also the treasury and the pauser.
    assert (params.treasury, params.pauser, params.admin_delay) == (deployer, deployer, 3 * 24 * 3600)
    assert manifest.timelock is None
    # the ledger's extension, created by its constructor, is recorded (and verified) with it
    assert set(manifest.contracts) == {"LoyaltyLedger", "LoyaltyLedgerExtension"}
    assert manifest.contracts["LoyaltyLedgerExtension"].address == extension_address(manifest.ledger.address)
    lines = result.out.splitlines()
    assert lines[0] == f"LoyaltyLedger deployed at {manifest.ledger.address} on chain 31337"
    assert lines[1] == f"  block {manifest.deployed_at.block_number} ({manifest.deployed_at.block_hash})"
    assert lines[4] == f"  treasury {deployer}, pauser {deployer}, admin delay 259200 s"
    assert lines[-1] == f"manifest written to {cli.manifest_path}"


def test_deploy_takes_parameters_from_settings_and_refuses_to_overwrite(cli: Cli, anvil: AnvilNode) -> None:
    # Dev mode, no signer named: anvil's dev account 0 deploys.
    admin, treasury, pauser = (Account.create().address for _ in range(3))
    cli.env("TOKEN_SYMBOL", "CUP")
    cli.env("LEDGER_ADMIN", admin)
    cli.env("TREASURY_ADDRESS", treasury)
    cli.env("PAUSER_ADDRESS", pauser)
    cli.env("ADMIN_DELAY_S", "600")
    cli.env("SETTLEMENT_VALUE", "7")
    cli.env("REVERSAL_WINDOW_S", "86400")

    assert cli("deploy").code == 0
    first = load_manifest(cli.manifest_path)
    assert first.deployer == dev_signers(31337)[0].address
    assert (first.parameters.symbol, first.parameters.admin, first.parameters.settlement_value) == (
        "CUP",
        admin,
        7,
    )
    assert (first.parameters.treasury, first.parameters.pauser, first.parameters.admin_delay) == (
        treasury,
        pauser,
        600,
    )
    reader = ChainLedger(Rpc(anvil.w3), first.ledger.address)
    assert reader.has_role(reader.treasury_role(), treasury) and reader.has_role(reader.pauser_role(), pauser)
    assert first.parameters.reversal_window == reader.reversal_window() == 86400

    refused = cli("deploy")
    assert refused.code == 1
    assert (
        refused.err
        == f"error: {cli.manifest_path} already exists; pass --force to deploy another ledger over it\n"
    )
    assert load_manifest(cli.manifest_path) == first

    assert cli("deploy", "--force").code == 0
    assert load_manifest(cli.manifest_path).ledger.address != first.ledger.address


def test_run_uses_the_manifest_and_refuses_one_of_another_chain(cli: Cli, anvil: AnvilNode) -> None:
    missing = cli("run", "--once")
    assert (missing.code, missing.error) == (
        1,
        f"error: no deployment manifest at {cli.manifest_path} (run `loyalty deploy`)",
    )
    assert missing.hint is not None and "LOYALTY_MANIFEST_PATH" in missing.hint

    assert cli("deploy").code == 0
    manifest = load_manifest(cli.manifest_path)
    ran = cli("run", "--once")
    assert ran.code == 0, ran.err
    assert f"at {manifest.ledger.address}" in ran.out.splitlines()[0]

    data = json.loads(cli.manifest_path.read_text())
    data["chainId"] = 1
    cli.manifest_path.write_text(json.dumps(data))
    refused = cli("run", "--once")
    assert (refused.code, refused.error) == (1, "error: chain id: manifest 1, node 31337")
    assert refused.hint is not None and "LOYALTY_RPC_URL" in refused.hint


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "ws://127.0.0.1:8546", "ftp://example.org"])
def test_deploy_on_a_node_that_cannot_be_used_is_an_error(cli: Cli, url: str) -> None:
    cli.env("RPC_URL", url)
    result = cli("deploy")
    assert result.code == 1
    assert result.error.startswith("error: ") and url in result.error
    assert result.hint is not None and "LOYALTY_RPC_URL" in result.hint  # one line and a hint
    assert len(result.err.splitlines()) == 2 and "Traceback" not in result.err
    assert not cli.manifest_path.exists()


def test_run_on_the_embedded_chain(cli: Cli) -> None:
    result = cli("run", "--once")
    assert result.code == 0, result.err
    assert result.out.startswith("LoyaltyLedger on the embedded chain (chain id 131277322940537) at 0x")
    assert "epoch length 2592000 s, validity 12 epochs" in result.out
    assert not cli.manifest_path.exists()  # the embedded chain ends with the process: nothing to point at


# --------------------------------------------------------------------------- the mirror


def test_index_then_reconcile_and_a_tampered_mirror(cli: Cli, anvil: AnvilNode) -> None:
    assert cli("deploy").code == 0
    manifest = load_manifest(cli.manifest_path)
    rpc = Rpc(anvil.w3)
    admin = ChainLedger(rpc, manifest.ledger.address, sender=Sender(rpc, dev_signers(31337)[0]))
    operator = Account.create().address
    admin.register_partner(PartnerId(7), operator, allowance=Points(1_000)).wait()
    admin.set_settlement_value(3).wait()
    cli.env("DATABASE_URL", f"sqlite:///{cli.tmp / 'mirror.db'}")

    indexed = cli("index", "--once")
    assert indexed.code == 0, indexed.err
    # the constructor's 5 entries (3 role grants, all to the dev key here; the initial settlement value and
    # admin delay), then the two calls
    assert indexed.out.startswith(f"mirror at block {anvil.w3.eth.block_number}: 7 entries added")
    assert "backfill" in indexed.err or indexed.err == ""  # progress goes to stderr, never stdout

    agreed = cli("reconcile")
    assert (agreed.code, agreed.out) == (
        0,
        f"the mirror agrees with the chain at block {anvil.w3.eth.block_number}\n",
    )

    engine = make_engine(f"sqlite:///{cli.tmp / 'mirror.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE partners SET allowance = 999 WHERE partner_id = 7"))
    engine.dispose()
    tampered = cli("reconcile")
    assert tampered.code == 1
    assert tampered.out.startswith("partner[7]: mirror ")
    assert "1 differences between the mirror and the chain" in tampered.err


def test_index_refuses_the_embedded_chain(cli: Cli) -> None:
    result = cli("index", "--once")
    assert result.code == 1
    assert "lives only inside one command" in result.err


# --------------------------------------------------------------------------- the timelock

TIMELOCK_DELAY = 3600


def operation_id(result: Result) -> str:
    """The id in ``scheduled 0x<id>: ...``."""
    assert result.code == 0, result.err
    assert result.out.startswith("scheduled 0x"), result.out
    return result.out.split()[1].rstrip(":")


def test_production_mode_refuses_a_deploy_without_a_timelock(cli: Cli, anvil: AnvilNode) -> None:
    cli.env("MODE", "production")
    cli.env("KEYSTORE_SCRYPT_N", None)
    cli.env("SIGNER_ADDRESS", Account.create().address)  # no key needed: refused before any is loaded
    block = anvil.w3.eth.block_number

    refused = cli("deploy")

    assert refused.code == 1
    assert refused.err == (
        "error: production mode deploys the ledger behind a timelock: set LOYALTY_TIMELOCK_DELAY_S "
        "(seconds between scheduling an admin operation and its execution)\n"
    )
    cli.env("TIMELOCK_DELAY_S", "0")
    assert cli("deploy").err == "error: production mode needs LOYALTY_TIMELOCK_DELAY_S above 0\n"
    assert not cli.manifest_path.exists()
    assert anvil.w3.eth.block_number == block, "nothing was sent"


def test_a_timelock_cannot_be_combined_with_an_admin_key(cli: Cli) -> None:
    cli.env("TIMELOCK_DELAY_S", "60")
    cli.env("LEDGER_ADMIN", Account.create().address)
    result = cli("deploy")
    assert result.code == 1
    assert (
        "the timelock is the ledger's admin and treasury: unset ledger_admin and treasury_address"
        in result.err
    )


def test_production_deploys_behind_a_timelock(cli: Cli, anvil: AnvilNode) -> None:
    cli.env("KEYSTORE_SCRYPT_N", None)  # production mode: the standard work factor
    deployer = new_key_address(cli("keys", "new"))
    fund(anvil, deployer)
    proposer, pauser = Account.create().address, Account.create().address
    cli.env("MODE", "production")
    cli.env("SIGNER_ADDRESS", deployer)
    cli.env("TIMELOCK_DELAY_S", "86400")
    cli.env("TIMELOCK_PROPOSERS", proposer)
    cli.env("PAUSER_ADDRESS", pauser)

    result = cli("deploy")

    assert result.code == 0, result.err
    manifest = load_manifest(cli.manifest_path)
    verify_manifest(manifest, anvil.w3)
    timelock = manifest.timelock
    assert timelock is not None
    assert (timelock.min_delay, timelock.proposers, timelock.executors) == (86400, (proposer,), (ZERO,))
    params = manifest.parameters
    assert (params.admin, params.treasury, params.pauser) == (timelock.address, timelock.address, pauser)
    assert (
        f"  timelock {timelock.address} (admin and treasury): min delay 86400 s, proposers {proposer}, "
        f"executors {ZERO}" in result.out.splitlines()
    )
    reader = ChainLedger(Rpc(anvil.w3), manifest.ledger.address)
    assert reader.default_admin() == timelock.address
    assert not reader.has_role(reader.admin_role(), deployer)


def test_timelock_schedule_list_execute_and_cancel(cli: Cli, anvil: AnvilNode) -> None:
    proposer = dev_signers(31337)[0].address  # dev mode: the deploying key proposes
    pauser = dev_signers(31337)[2].address
    cli.env("TIMELOCK_DELAY_S", str(TIMELOCK_DELAY))
    cli.env("PAUSER_ADDRESS", pauser)
    assert cli("deploy").code == 0
    manifest = load_manifest(cli.manifest_path)
    assert manifest.timelock is not None and manifest.timelock.proposers == (proposer,)
    ledger = ChainLedger(Rpc(anvil.w3), manifest.ledger.address)
    assert (
        cli("timelock", "list").out == f"no pending operations on the timelock {manifest.timelock.address}\n"
    )

    operator = Account.create().address
    scheduled = cli(
        "timelock", "schedule", "registerPartner", "7", operator, operator, "true", "false", "1_000"
    )
    op_id = operation_id(scheduled)
    call = (
        f"LoyaltyLedger.registerPartner(partnerId=7, operator={operator}, settlement={operator}, "
        "canIssue=true, canAccept=false, issuanceAllowance=1000)"
    )
    assert scheduled.out.splitlines()[0] == f"scheduled {op_id}: {call}"
    assert f"(in {TIMELOCK_DELAY} s)" in scheduled.out

    listed = cli("timelock", "list")
    assert listed.code == 0
    header, line = listed.out.splitlines()
    assert header.split() == ["id", "state", "eta", "call"]
    assert line.split()[:3] == [op_id, "waiting", "eta"] and line.endswith(call)
    [shown] = json.loads(cli("timelock", "list", "--json").out)
    assert (shown["id"], shown["state"], shown["calls"]) == (op_id, "waiting", [call])
    early = cli("timelock", "execute", op_id)
    assert early.code == 1 and early.err.startswith(f"error: operation {op_id} is not ready yet: eta ")
    assert 7 not in ledger.partner_ids()

    anvil.advance_time(TIMELOCK_DELAY)
    assert "ready" in cli("timelock", "list").out
    executed = cli("timelock", "execute", op_id)
    assert executed.code == 0, executed.err
    assert executed.out.startswith(f"executed {op_id} in block ") and executed.out.rstrip().endswith(call)
    assert ledger.partner(PartnerId(7)).operator == operator
    assert cli("timelock", "list").out.startswith("no pending operations")
    assert cli("timelock", "list", "--all").out.splitlines()[1].split()[:2] == [op_id, "executed"]
    again = cli("timelock", "execute", op_id)
    assert (again.code, again.err) == (1, f"error: operation {op_id} is executed already\n")

    # The JSON form, a role by its name, and a cancellation.
    request = {"function": "grantRole", "args": ["PAUSER_ROLE", Account.create().address]}
    other = operation_id(cli("timelock", "schedule", "--json", json.dumps(request), "--delay", "7200"))
    assert "LoyaltyLedger.grantRole(role=0x" in cli("timelock", "list").out
    cancelled = cli("timelock", "cancel", other)
    assert cancelled.code == 0 and cancelled.out.startswith(f"cancelled {other} in block ")
    assert cli("timelock", "list").out.startswith("no pending operations")
    assert [other, "cancelled"] in [
        row.split()[:2] for row in cli("timelock", "list", "--all").out.splitlines()
    ]

    # A call that would revert now is refused before it is scheduled, with the ledger's error.
    exists = cli("timelock", "schedule", "registerPartner", "7", operator, operator, "true", "true", "1")
    assert (exists.code, exists.err) == (1, "error: LedgerPartnerExists(7)\n")
    wrong = cli("timelock", "schedule", "setSettlementValue")
    assert (wrong.code, wrong.err) == (
        1,
        "error: setSettlementValue(uint256) takes 1 arguments (value), got 0\n",
    )
    unknown = cli("timelock", "schedule", "mintForFree", "1")
    assert unknown.code == 1 and "LoyaltyLedger has no function 'mintForFree'" in unknown.err
    bad_salt = cli("timelock", "schedule", "setTransfersEnabled", "true", "--salt", "0x12")
    assert (bad_salt.code, bad_salt.err) == (
        1,
        "error: --salt must be 32 bytes of 0x-prefixed hex, not '0x12'\n",
    )
    bad_id = cli("timelock", "execute", "0x" + "ab" * 31)
    assert bad_id.code == 1
    assert bad_id.err == f"error: an operation id must be 32 bytes of 0x-prefixed hex, not '0x{'ab' * 31}'\n"
    bad = cli("timelock", "schedule", "setTransfersEnabled", "maybe")
    assert (bad.code, bad.err) == (1, "error: enabled (bool) must be true or false, not 'maybe'\n")
    missing = cli("timelock", "execute", "0x" + "ab" * 32)
    assert missing.code == 1 and "no operation 0x" + "ab" * 32 + " was scheduled" in missing.err

    # The mirror follows the ledger and its timelock.
    cli.env("DATABASE_URL", f"sqlite:///{cli.tmp / 'mirror.db'}")
    indexed = cli("index", "--once")
    assert indexed.code == 0, indexed.err
    engine = make_engine(f"sqlite:///{cli.tmp / 'mirror.db'}")
    with engine.connect() as conn:
        mirrored = {bytes(row[0]) for row in conn.execute(text("SELECT operation_id FROM admin_operations"))}
    engine.dispose()
    assert mirrored == {bytes.fromhex(op_id[2:]), bytes.fromhex(other[2:])}
    assert cli("reconcile").code == 0


def test_timelock_commands_need_a_deployment_with_a_timelock(cli: Cli, anvil: AnvilNode) -> None:
    assert cli("deploy").code == 0
    manifest = load_manifest(cli.manifest_path)
    result = cli("timelock", "list")
    assert (result.code, result.err) == (
        1,
        f"error: the ledger at {manifest.ledger.address} has no timelock: its admin is the key "
        f"{manifest.parameters.admin}\n",
    )


# --------------------------------------------------------------------------- settings and dev keys


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RPC_URL": "http://127.0.0.1:1"}, "production mode needs LOYALTY_SIGNER_ADDRESS"),
        ({}, "production mode needs a real node"),
        (
            {"RPC_URL": "http://127.0.0.1:1", "SIGNER_ADDRESS": dev_signers(31337)[1].address},
            "is a public dev account; refused in production mode",
        ),
        (
            {"RPC_URL": "http://127.0.0.1:1", "SIGNER_ADDRESS": "0x" + "11" * 20},
            f"keystore_scrypt_n below {2**18} is for tests, not production mode",
        ),
    ],
)
def test_production_mode_refuses_dev_only_settings(cli: Cli, env: dict[str, str], message: str) -> None:
    cli.env("MODE", "production")
    for name, value in env.items():
        cli.env(name, value)

    result = cli("keys", "list")

    assert result.code == 1
    assert result.err.startswith("error: invalid settings: ")
    assert message in result.err


def test_a_scrypt_work_factor_that_is_not_a_power_of_two_is_refused(cli: Cli) -> None:
    cli.env("KEYSTORE_SCRYPT_N", "1000")
    result = cli("keys", "new")
    assert (result.code, result.error) == (
        1,
        "error: invalid settings: keystore_scrypt_n: Value error, must be a power of two (scrypt's N)",
    )
    assert result.hint is not None and "LOYALTY_" in result.hint


def test_dev_keys_are_refused_on_a_chain_that_is_not_local(cli: Cli) -> None:
    with pytest.raises(DevKeyRefused, match="refused on chain id 1 "):
        signer_from_settings(Settings(), chain_id=1)
    dev = dev_signers(31337)[3]
    assert signer_from_settings(Settings(signer_address=dev.address), chain_id=31337) is dev


def test_a_key_typed_on_the_command_line_is_not_echoed(cli: Cli) -> None:
    key = Account.create().key.to_0x_hex()
    for argv in (["keys", "import", key], ["keys", "import", "--file", "k", key[2:]], ["keys", key]):
        refused = cli(*argv)
        assert refused.code == 2  # a usage error
        assert "<redacted>" in refused.err, refused.err
        assert key[2:].lower() not in (refused.out + refused.err).lower()
    assert cli("batcher", "--partner", key).code == 2  # not a number: refused without repeating it
    assert key[2:].lower() not in cli.transcript.lower()


# --------------------------------------------------------------------------- no secret ever shows


def test_no_private_key_or_password_appears_anywhere_in_a_full_session(
    cli: Cli, anvil: AnvilNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    from_file, from_stdin = Account.create(), Account.create()
    key_file = cli.tmp / "key.txt"
    key_file.write_text(from_file.key.hex())
    wrong_password = f"wrong-{secrets.token_hex(12)}"
    seen: list[str] = []  # reprs and messages the session produced outside the CLI's output

    created = new_key_address(cli("-vv", "keys", "new"))
    assert cli("-vv", "keys", "import", "--file", str(key_file)).code == 0
    assert cli("-vv", "keys", "import", stdin=from_stdin.key.to_0x_hex().upper()).code == 0
    assert cli("-vv", "keys", "import", stdin=from_stdin.key.hex()[:-2]).code == 1  # malformed
    assert set(cli("-vv", "keys", "list").out.split()[2:]) == {created, from_file.address, from_stdin.address}

    fund(anvil, created)
    cli.env("SIGNER_ADDRESS", created)
    deployed = cli("-vv", "deploy")
    assert deployed.code == 0, deployed.err
    assert cli("-vv", "run", "--once").code == 0

    cli.env("KEYSTORE_PASSWORD", wrong_password)
    refused = cli("-vv", "deploy", "--force")
    assert (refused.code, refused.error) == (1, f"error: wrong password for the key of {created}")
    assert refused.hint is not None and "LOYALTY_KEYSTORE_PASSWORD_FILE" in refused.hint
    assert "Traceback" not in refused.err
    # a key on argv: a usage error (exit 2) that does not repeat it
    assert cli("keys", "import", from_file.key.to_0x_hex()).code == 2

    keystore = Keystore(cli.keystore_dir)
    for address in keystore.addresses():
        signer = keystore.load(address, cli.password)
        seen += [repr(signer), str(signer)]
        with pytest.raises(WrongPassword) as wrong:
            keystore.load(address, wrong_password)
        seen += [str(wrong.value), repr(wrong.value)]
    with pytest.raises(InvalidKey) as invalid:
        keystore.import_key(from_file.key.hex()[:-1], cli.password)
    seen += [str(invalid.value), repr(invalid.value), repr(keystore), repr(Settings())]

    keys = cli.keys()
    assert set(keys) == {created, from_file.address, from_stdin.address}
    records = [f"{r.getMessage()} {r.args!r} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records]
    everything = "\n".join([cli.transcript, caplog.text, *records, *seen]).lower()
    assert caplog.records, "DEBUG logging captured nothing: the scan would prove nothing"
    for owner, key in keys.items():
        # Any case, with or without 0x (the text is lowered). Any 16 consecutive hex digits of a key count
        # as a leak: 64 bits that show up by chance in this much text have odds of about 1e-13.
        hex_key = key.hex()
        for start in range(len(hex_key) - 16 + 1):
            assert hex_key[start : start + 16] not in everything, f"part of the private key of {owner} leaked"
    for password in (cli.password, wrong_password):
        assert password.lower() not in everything, "a password leaked"
