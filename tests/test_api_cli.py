"""The service's commands: ``loyalty migrate``, ``loyalty apikey ...``, ``loyalty serve``'s refusals and
``loyalty run``, the whole service in one process.

The key commands run in this process against a SQLite file and a PostgreSQL schema: a token is printed once
(on stdout, alone, or in ``--json``) with a warning on stderr, listings never show one, and every mistake is
an ``error: ...`` with exit status 1 that changes nothing. ``loyalty run`` runs as a subprocess on a free
port, as ``make run`` starts it: on the embedded chain the test waits for ``/readyz``, reads partners and
keys with the admin key it printed, then stops it with SIGINT (Ctrl-C) and expects a clean exit; on anvil
(a deployment manifest, a database that outlives the command) a partner registered while it runs reaches
``/v1/partners`` through the indexer thread, and the session's keys are revoked when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from sqlalchemy import select
from sqlalchemy.orm import Session

from api._serve import listen
from api._tables import ApiKey
from api._tokens import matches
from api.cli import main
from chain import PartnerId, Points, Rpc, Sender
from chain._ledger import Ledger as ChainLedger
from chain._manifest import load_manifest
from chain._signer import dev_signers
from conftest import AnvilNode, database_url
from indexer import make_engine

TOKEN = re.compile(r"^lpk_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}$")
#: How long ``loyalty run`` may take to deploy, mirror and listen; and to stop after Ctrl-C.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    database_url: str

    def __call__(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def keys(self) -> dict[str, ApiKey]:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as db:
                return {key.id: key for key in db.scalars(select(ApiKey))}
        finally:
            engine.dispose()


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LOYALTY_") or name == "SOLC_BINARY":
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    _clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    for url in database_url(request.param, tmp_path):
        monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
        yield Cli(monkeypatch, capsys, url)


# --------------------------------------------------------------------------- migrate


def test_migrate_brings_both_branches_to_their_heads_and_is_idempotent(cli: Cli) -> None:
    first = cli("migrate")
    assert first.code == 0, first.err
    assert first.out.rstrip().endswith("is at heads 0002, s0004")
    again = cli("migrate")
    assert (again.code, again.out) == (0, first.out)


# --------------------------------------------------------------------------- API keys


def test_create_prints_the_token_once_on_stdout_with_a_warning_on_stderr(cli: Cli) -> None:
    result = cli("apikey", "create", "--role", "partner", "--name", "Bean There POS", "--partner", "1")

    assert result.code == 0, result.err
    token = result.out.strip()
    assert TOKEN.match(token) and result.out == token + "\n"  # the token alone: TOKEN=$(loyalty ...)
    key_id = token.split("_")[1]
    assert result.err.splitlines() == [
        f"created partner key {key_id} for partner 1 (Bean There POS)",
        "warning: the token is shown only this once and cannot be shown again: store it now",
    ]
    stored = cli.keys()[key_id]
    assert (stored.role, stored.partner_id, stored.name, stored.revoked_at) == (
        "partner",
        1,
        "Bean There POS",
        None,
    )
    assert matches(token, stored.secret_hash)  # the stored digest is of this token; the token is not stored


def test_create_json_gives_id_role_partner_and_token(cli: Cli) -> None:
    result = cli("apikey", "create", "--role", "auditor", "--name", "external audit", "--json")

    assert result.code == 0, result.err
    created = json.loads(result.out)
    assert list(created) == ["id", "role", "partner_id", "token"]
    assert (created["role"], created["partner_id"]) == ("auditor", None)
    assert TOKEN.match(created["token"]) and created["token"].split("_")[1] == created["id"]
    assert "shown only this once" in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--role", "partner", "--name", "x"],
            "error: a partner key needs --partner ID (the partner it acts for)",
        ),
        (
            ["--role", "admin", "--name", "x", "--partner", "3"],
            "error: --partner is for partner keys; an admin key acts for no partner",
        ),
        (["--role", "auditor", "--name", "  "], "error: --name must not be empty"),
    ],
)
def test_create_refuses_a_key_that_does_not_fit_its_role(cli: Cli, argv: list[str], message: str) -> None:
    assert cli("migrate").code == 0
    result = cli("apikey", "create", *argv)
    assert (result.code, result.out, result.err) == (1, "", message + "\n")
    assert cli.keys() == {}


def test_an_unknown_role_is_a_usage_error(cli: Cli) -> None:
    refused = cli("apikey", "create", "--role", "root", "--name", "x")
    assert refused.code == 2
    assert refused.err.splitlines()[0].startswith("Usage: loyalty apikey create ")
    assert "'root' is not one of 'admin', 'partner', 'auditor'" in refused.err


def test_list_shows_keys_but_never_their_tokens(cli: Cli) -> None:
    tokens = [
        cli("apikey", "create", "--role", "admin", "--name", "ops").out.strip(),
        cli("apikey", "create", "--role", "partner", "--name", "Skyline Air", "--partner", "4").out.strip(),
    ]
    admin_id, partner_id = (t.split("_")[1] for t in tokens)
    assert cli("apikey", "revoke", admin_id).code == 0

    live = cli("apikey", "list")
    everything = cli("apikey", "list", "--all")

    assert live.code == everything.code == 0
    header, *rows = live.out.splitlines()
    assert header.split() == ["id", "role", "partner", "name", "created", "last", "used", "revoked"]
    assert [row.split()[:3] for row in rows] == [[partner_id, "partner", "4"]]
    rows_by_id = {row.split()[0]: row for row in everything.out.splitlines()[1:]}
    assert set(rows_by_id) == {admin_id, partner_id}  # oldest first (ids break ties within a second)
    admin_row = rows_by_id[admin_id]
    assert re.search(r"ops\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+-\s+\d{4}-\d\d-\d\dT", admin_row)  # revoked
    for token in tokens:
        secret = token.split("_", 2)[2]
        assert secret not in live.out + everything.out + live.err + everything.err


def test_list_of_no_keys_says_so(cli: Cli) -> None:
    assert cli("apikey", "list").out == "no live API keys (--all lists revoked ones too)\n"
    assert cli("apikey", "list", "--all").out == "no API keys\n"


def test_rotate_prints_the_new_token_once_and_revokes_the_old_key(cli: Cli) -> None:
    old = json.loads(
        cli("apikey", "create", "--role", "partner", "--name", "till", "--partner", "1", "--json").out
    )

    rotated = cli("apikey", "rotate", old["id"], "--json")

    assert rotated.code == 0, rotated.err
    new = json.loads(rotated.out)
    assert (new["role"], new["partner_id"]) == ("partner", 1) and new["id"] != old["id"]
    assert "shown only this once" in rotated.err and f"rotated {old['id']}" in rotated.err
    keys = cli.keys()
    assert keys[old["id"]].revoked_at is not None and keys[new["id"]].revoked_at is None
    assert keys[new["id"]].rotated_from == old["id"]
    assert matches(new["token"], keys[new["id"]].secret_hash)

    plain = cli("apikey", "rotate", new["id"], "--grace", "3600")
    assert plain.code == 0 and TOKEN.match(plain.out.strip())
    assert "it stops working in 3600 s" in plain.err
    grace = cli.keys()[new["id"]].revoked_at
    assert grace is not None and grace - int(time.time()) > 3000  # still working for an hour


def test_revoke_then_revoke_again_and_unknown_keys_are_errors(cli: Cli) -> None:
    key_id = cli("apikey", "create", "--role", "auditor", "--name", "audit").out.split("_")[1]

    revoked = cli("apikey", "revoke", key_id)
    assert (revoked.code, revoked.out) == (
        0,
        f"revoked auditor key {key_id} (audit): it is refused from now on\n",
    )
    assert cli.keys()[key_id].revoked_at is not None

    again = cli("apikey", "revoke", key_id)
    assert (again.code, again.err) == (1, f"error: API key {key_id} is revoked already\n")
    for verb in ("revoke", "rotate"):
        unknown = cli("apikey", verb, "0123456789ab")
        assert (unknown.code, unknown.err) == (1, "error: no API key 0123456789ab\n")
    assert len(cli.keys()) == 1


# --------------------------------------------------------------------------- serve (refusals)


@pytest.mark.parametrize("url", ["eth-tester://", "anvil://"])
def test_serve_refuses_a_chain_that_lives_in_one_process(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOYALTY_RPC_URL", url)
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path / 'mirror.db'}")

    code = main(["serve"])

    err = capsys.readouterr().err
    assert code == 1
    scheme = url.split(":")[0]
    assert err.startswith(f"error: the chain at {scheme}:// lives inside one process and cannot be shared")
    assert "`loyalty run`" in err
    assert not (tmp_path / "mirror.db").exists()  # refused before anything was touched


def test_serve_reports_a_port_in_use(
    anvil_node: AnvilNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOYALTY_RPC_URL", anvil_node.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///{tmp_path / 'mirror.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("LOYALTY_API_PORT", str(taken.getsockname()[1]))

        code = main(["serve"])

    err = capsys.readouterr().err
    assert code == 1
    assert re.match(r"error: cannot listen on 127\.0\.0\.1:\d+: Address already in use", err), err


def test_connections_on_the_listening_socket_send_without_delay() -> None:
    """``loyalty run`` serves on a socket of its own (api._serve.listen): the connections uvicorn accepts on
    it must have Nagle's algorithm off, or each response waits ~40 ms for the client's delayed ACK."""

    async def accepted_nodelay() -> int:
        sock = listen("127.0.0.1", 0)
        options: list[int] = []

        async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            options.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            while not options:
                await asyncio.sleep(0.01)
            writer.close()
        return options[0]

    assert asyncio.run(accepted_nodelay()) == 1


# --------------------------------------------------------------------------- run


def test_run_once_deploys_mirrors_and_stops_without_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)

    code = main(["run", "--once"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("LoyaltyLedger on the embedded chain (chain id 131277322940537) at 0x")
    assert "0 differences from the chain" in out
    assert "Serving" not in out and "lpk_" not in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Lines:
    """A subprocess's output, line by line, read in a thread (``next_matching`` waits with a timeout)."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.reader.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def until(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s: {self.seen}") from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


def _wait_ready(client: httpx.Client, url: str, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = client.get(url)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready in {timeout} s")
        time.sleep(0.1)


class _Run:
    """``loyalty run`` as a subprocess (as ``make run`` starts it), its stdout read line by line."""

    def __init__(self, cwd: Path, **settings: str) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_") and k != "SOLC_BINARY"}
        env.update(LOYALTY_API_PORT=str(self.port), LOYALTY_INDEX_POLL_INTERVAL_S="0.2", PYTHONUNBUFFERED="1")
        env.update({f"LOYALTY_{name.upper()}": value for name, value in settings.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "run"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.errors: list[str] = []
        self._stderr = threading.Thread(
            target=lambda: self.errors.extend(self.process.stderr or ()), daemon=True
        )
        self._stderr.start()
        self.out = _Lines(self.process.stdout)

    def serving(self) -> tuple[str, str, str]:
        """Waits for the announcement: the base URL, the admin key, the auditor key."""
        base = self.out.until(r"^Serving on (http://127\.0\.0\.1:(\d+)) \(Ctrl-C stops\):", START_TIMEOUT_S)
        assert int(base[2]) == self.port
        for path in ("/docs", "/v1/partners", "/readyz"):
            self.out.until(rf"^  {re.escape(base[1] + path)}\s", 5)
        admin = self.out.until(r"^  admin    (lpk_\S+)$", 5)[1]
        auditor = self.out.until(r"^  auditor  (lpk_\S+)$", 5)[1]
        return base[1], admin, auditor

    def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> str:
        """Stops it if it still runs; everything it wrote on stderr."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in (self._stderr, self.out.reader):  # both reach the end of their pipe once it exits
            reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            stream.close()
        return "".join(self.errors)


@pytest.mark.slow
def test_run_serves_the_whole_service_until_ctrl_c(tmp_path: Path) -> None:
    run = _Run(tmp_path)
    try:
        run.out.until(r"^LoyaltyLedger on the embedded chain \(chain id \d+\) at 0x[0-9a-fA-F]{40}$", 30)
        base, admin, auditor = run.serving()

        with httpx.Client(base_url=base, timeout=10) as client:
            ready = _wait_ready(client, "/readyz", START_TIMEOUT_S).json()
            assert (ready["status"], ready["lag_blocks"]) == ("ready", 0)

            partners = client.get("/v1/partners")  # the directory: anyone may read it
            assert partners.status_code == 200, partners.text
            assert partners.json()["data"] == []  # a fresh ledger: no partner registered yet

            keys = client.get("/v1/admin/api-keys", headers={"Authorization": f"Bearer {admin}"})
            assert keys.status_code == 200, keys.text
            listed = {(k["id"], k["role"]) for k in keys.json()["data"]}
            assert listed == {(admin.split("_")[1], "admin"), (auditor.split("_")[1], "auditor")}

            anonymous = client.get("/v1/admin/api-keys")
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"

            docs = client.get("/openapi.json")
            assert docs.status_code == 200 and docs.json()["info"]["title"] == "Coalition loyalty ledger"

        assert run.interrupt() == 0
    finally:
        stderr = run.close()
    assert "stopped: the indexer and the API" in stderr, stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    assert admin not in stderr  # the session keys go to stdout only


@pytest.mark.slow
def test_run_on_a_node_follows_new_blocks_and_revokes_its_keys_when_it_ends(
    anvil_node: AnvilNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a node (the deployment manifest's ledger, a database that outlives the command) the indexer
    thread mirrors what happens while the service runs, and the session's keys die with the session."""
    _clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = anvil_node.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    settings = {
        "rpc_url": url,
        "manifest_path": str(tmp_path / "deployment.json"),
        "database_url": f"sqlite:///{tmp_path / 'service.db'}",
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"LOYALTY_{name.upper()}", value)
    snapshot = anvil_node.snapshot()
    run: _Run | None = None
    try:
        assert main(["deploy"]) == 0
        manifest = load_manifest(tmp_path / "deployment.json")
        run = _Run(tmp_path, **settings)
        run.out.until(
            rf"^LoyaltyLedger on {re.escape(url)} \(chain id 31337\) at {manifest.ledger.address}$", 30
        )
        base, _, auditor = run.serving()

        with httpx.Client(base_url=base, timeout=10) as client:
            _wait_ready(client, "/readyz", START_TIMEOUT_S)
            assert client.get("/v1/partners").json()["data"] == []
            rpc = Rpc(anvil_node.w3)
            admin = ChainLedger(rpc, manifest.ledger.address, sender=Sender(rpc, dev_signers(31337)[0]))
            admin.register_partner(PartnerId(7), Account.create().address, allowance=Points(1_000)).wait()

            deadline = time.monotonic() + 20
            while not (partners := client.get("/v1/partners").json()["data"]):
                assert time.monotonic() < deadline, "the new partner never reached the mirror"
                time.sleep(0.1)
            assert [(p["id"], p["status"]) for p in partners] == [(7, "active")]

        assert run.interrupt() == 0
        stderr = run.close()
        assert "stopped: the indexer and the API" in stderr and "Traceback" not in stderr, stderr

        engine = make_engine(settings["database_url"])
        try:
            with Session(engine) as db:
                keys = list(db.scalars(select(ApiKey)))
        finally:
            engine.dispose()
        assert {k.role for k in keys} == {"admin", "auditor"} and all(k.revoked_at is not None for k in keys)
        assert auditor.split("_")[1] in {k.id for k in keys}
    finally:
        if run is not None:
            run.close()
        anvil_node.revert(snapshot)
