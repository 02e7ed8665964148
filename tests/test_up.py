"""``loyalty up``: one command runs the whole coalition with its demo, stops cleanly and resumes.

The command runs as a person runs it, in a process of its own (``python -m api._up``, what ``loyalty up``
calls), on its embedded defaults: its own anvil, a SQLite file, the keystore and the demo in a state directory
(``LOYALTY_DEMO_SCALE=0``: the demo's named members only, the same year of their story). The checks are what
its user sees: the ready line, the demo coalition's data served by the API and equal to the chain's, every
operation confirmed, an expiry in the audit trail; SIGINT stops everything with exit code 0 and leaves no
anvil behind; a second run resumes the same ledger with the same data, seeds nothing, and takes new
purchases to the chain. The supervision policy (restart a failed worker, give up on one that keeps failing)
is specified on its own, with workers that fail on purpose. With ``LOYALTY_RPC_URL`` and
``LOYALTY_DATABASE_URL`` set, the same command runs on that node and PostgreSQL, and resumes there too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from web3 import HTTPProvider, Web3

from api import _up
from chain import load_artifact
from chain._devnode import AnvilProcess, anvil_binary
from conftest import POSTGRES_URL, ROOT
from indexer import scratch_schema

#: Seconds ``loyalty up`` may take to be ready (a fresh state directory on a slow CI machine).
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 90.0
READY = re.compile(r"^loyalty up: ready at (http://\S+)/ in ")
ANVIL = re.compile(r"anvil \(pid (\d+)\) at (http://\S+),")


class UpProcess:
    """``python -m api._up`` in a process of its own; its standard output read line by line."""

    def __init__(self, state_dir: Path, log: Path, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
        env.update(LOYALTY_DEMO_SCALE="0", LOYALTY_PROJECT_ROOT=str(ROOT), **settings)
        self._log: IO[str] = log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api._up", "--port", "0", "--state-dir", str(state_dir)],
            cwd=state_dir.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY.match(line):
                self._ready.set()
        self._ready.set()  # the process ended: wait_ready says how

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> str:
        """The base URL once the ready line is printed."""
        if not self._ready.wait(READY_TIMEOUT_S) or self.process.poll() is not None:
            raise AssertionError(
                f"loyalty up was not ready (exit code {self.process.poll()}):\n{self.output}"
            )
        return next(m.group(1) for m in map(READY.match, self.lines) if m)

    def anvil(self) -> tuple[int, str]:
        found = ANVIL.search(self.output)
        assert found is not None, self.output
        return int(found.group(1)), found.group(2)

    def interrupt(self) -> int:
        """SIGINT (a Ctrl-C), then the exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:  # a check failed before the interrupt
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self._log.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    if not anvil_binary(ROOT).exists():
        pytest.skip("anvil is not installed (run `make install`)")
    return tmp_path / "up"


@pytest.fixture
def started(state_dir: Path) -> Iterator[UpProcess]:
    process = UpProcess(state_dir, state_dir.parent / "up.log")
    try:
        yield process
    finally:
        process.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _processes_naming(text: str) -> list[int]:
    """Processes whose command line names ``text`` (an anvil left running on the state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _get(base: str, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base + path, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _figures(base: str, demo: dict[str, Any]) -> dict[str, Any]:
    """What the API serves of the demo (as its auditor reads it)."""
    auditor = demo["auditor_key"]
    wallets = {
        m["name"]: _get(base, f"/v1/wallets/{m['address']}", auditor)["balance"] for m in demo["members"]
    }
    operations = _get(base, "/v1/operations?limit=500", auditor)["data"]
    entries = _get(base, "/v1/audit/entries?limit=500", auditor)["data"]
    return {"wallets": wallets, "operations": operations, "entries": entries}


def test_up_runs_the_demo_coalition_stops_cleanly_and_resumes(state_dir: Path, started: UpProcess) -> None:
    # ------------------------------------------------------------ the first run: a fresh state directory
    base = started.wait_ready()
    assert "seeded the demo coalition" in started.output
    anvil_pid, anvil_url = started.anvil()
    demo = json.loads((state_dir / "demo.json").read_text())
    assert demo["state"] == "seeded"
    assert oct((state_dir / "demo.json").stat().st_mode & 0o777) == oct(0o600)  # it holds the demo's keys
    # the keys and the members' sign-in are printed (dev mode)
    for key in (demo["admin_key"], demo["auditor_key"], *(p["key"] for p in demo["partners"])):
        assert key in started.output

    assert _get(base, "/readyz")["status"] == "ready"
    partners = _get(base, "/v1/partners")["data"]
    assert [p["name"] for p in partners] == ["Bean There Coffee", "Skyline Air", "Harbour Hotels"]
    assert {m["custody"] for m in demo["members"]} == {"self", "custodial"}

    figures = _figures(base, demo)
    # every wallet the API serves is the contract's balanceOf
    w3 = Web3(HTTPProvider(anvil_url))
    ledger = w3.eth.contract(address=demo["ledger"], abi=load_artifact("LoyaltyLedger").abi)
    for member in demo["members"]:
        balance = ledger.functions.balanceOf(member["address"]).call()
        assert figures["wallets"][member["name"]] == balance, member["name"]
    assert figures["wallets"]["Ada"] > 0 and figures["wallets"]["Bo"] > 0
    assert figures["wallets"]["Cy"] == 0  # he stopped buying in month 2: his points expired
    # every write of the seeding went through the outbox and was confirmed on chain
    kinds = {op["kind"] for op in figures["operations"]}
    assert kinds == {"purchase", "engagement", "return", "redemption", "refund"}
    assert {op["state"] for op in figures["operations"]} == {"confirmed"}
    # months of history, made by moving the chain's clock; the oldest points expired and were swept
    entries = figures["entries"]
    by_kind = {e["kind"] for e in entries}
    assert {"PointsExpired", "IssuanceReversed", "RedemptionRefunded", "SettlementRecorded"} <= by_kind
    issued = [e["block_timestamp"] for e in entries if e["kind"] in ("PointsIssued", "PointsBatchIssued")]
    assert max(issued) - min(issued) > 12 * 30 * 24 * 3600
    assert abs(entries[0]["block_timestamp"] - time.time()) < 3600  # the year ends at the present

    assert started.interrupt() == 0
    assert _gone(anvil_pid)
    assert _processes_naming(str(state_dir)) == []
    assert (state_dir / "chain.json").exists()

    # ------------------------------------------------------------ the second run resumes
    again = UpProcess(state_dir, state_dir.parent / "up.log")
    try:
        base = again.wait_ready()
        assert "(resumed)" in again.output
        assert f"ledger {demo['ledger']}" in again.output  # the same ledger
        assert json.loads((state_dir / "demo.json").read_text()) == demo  # seeded once
        log = (state_dir.parent / "up.log").read_text()
        assert log.count("seeding the demo coalition: partners") == 1
        resumed = _figures(base, demo)
        assert resumed["wallets"] == figures["wallets"]
        assert [op["id"] for op in resumed["operations"]] == [op["id"] for op in figures["operations"]]
        head = resumed["entries"][0]
        assert (head["seq"], head["entry_hash"]) == (entries[0]["seq"], entries[0]["entry_hash"])

        # the batchers run again: a purchase at the coffee chain reaches the chain
        coffee = next(p["key"] for p in demo["partners"] if p["id"] == 1)
        created = httpx.post(
            f"{base}/v1/purchases",
            json={
                "order_id": "after-resume",
                "member": {"customer_id": "ada"},
                "channel": "pos",
                "currency": "EUR",
                "amount": 1000,
            },
            headers={"Authorization": f"Bearer {coffee}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        operation = created.json()
        deadline = time.monotonic() + 60
        while operation["state"] != "confirmed" and time.monotonic() < deadline:
            time.sleep(0.2)
            operation = _get(base, f"/v1/operations/{operation['id']}", coffee)
        assert operation["state"] == "confirmed", operation
        anvil_pid, _ = again.anvil()
        assert again.interrupt() == 0
        assert _gone(anvil_pid)
    finally:
        again.close()


def test_up_on_a_node_and_postgresql(state_dir: Path, tmp_path: Path) -> None:
    """``LOYALTY_RPC_URL`` and ``LOYALTY_DATABASE_URL`` set: the same command on that node and that database;
    the node is not ``up``'s to stop, and the demo's year lies ahead of the node's clock, which the service
    follows."""
    if POSTGRES_URL is None:
        pytest.skip("no PostgreSQL configured (set LOYALTY_TEST_POSTGRES_URL)")
    with AnvilProcess(ROOT) as node, scratch_schema(POSTGRES_URL, prefix="test") as database:
        settings = {"LOYALTY_RPC_URL": node.url, "LOYALTY_DATABASE_URL": database}
        first = UpProcess(state_dir, tmp_path / "up.log", **settings)
        try:
            base = first.wait_ready()
            assert "seeded the demo coalition" in first.output
            assert "postgresql" in first.output and "anvil (pid" not in first.output
            demo = json.loads((state_dir / "demo.json").read_text())
            figures = _figures(base, demo)
            assert {op["state"] for op in figures["operations"]} == {"confirmed"}
            assert "PointsExpired" in {e["kind"] for e in figures["entries"]}
            as_of = _get(base, "/readyz")["as_of"]
            assert as_of["time"] - time.time() > 12 * 30 * 24 * 3600  # the chain's clock, a year ahead
            assert first.interrupt() == 0
        finally:
            first.close()
        assert node.running  # not up's to stop
        again = UpProcess(state_dir, tmp_path / "up.log", **settings)
        try:
            base = again.wait_ready()
            assert "(resumed)" in again.output
            assert _figures(base, demo)["wallets"] == figures["wallets"]
            assert again.interrupt() == 0
        finally:
            again.close()


# --------------------------------------------------------------------------- supervision


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor looks and restarts at once (the policy is the same: how many failures, not when)."""
    monkeypatch.setattr(_up, "WATCH_INTERVAL_S", 0.01)
    monkeypatch.setattr(_up, "RESTART_BACKOFF_S", (0.01, 0.01))


def test_a_failed_worker_is_restarted(quick_restarts: None) -> None:
    stop = threading.Event()
    supervisor = _up._Supervisor(stop, node_alive=lambda: True)
    runs: list[int] = []
    settled = threading.Event()

    def flaky(event: threading.Event) -> None:
        runs.append(1)
        if len(runs) <= 3:
            raise RuntimeError("the node hung up")
        settled.set()
        event.wait()

    supervisor.add("flaky", flaky)
    supervisor.start()
    try:
        assert settled.wait(30)
        assert supervisor.failure is None and not stop.is_set()
    finally:
        stop.set()
        supervisor.join(10)
    assert len(runs) == 4


def test_a_worker_that_keeps_failing_brings_the_group_down(quick_restarts: None) -> None:
    stop = threading.Event()
    supervisor = _up._Supervisor(stop, node_alive=lambda: True)
    other_stopped = threading.Event()

    def broken(event: threading.Event) -> None:
        raise RuntimeError("misconfigured")

    def steady(event: threading.Event) -> None:
        event.wait()
        other_stopped.set()

    supervisor.add("steady", steady)
    supervisor.add("broken", broken)
    supervisor.start()
    assert stop.wait(30)
    supervisor.join(10)
    assert supervisor.failure is not None and supervisor.failure.startswith("broken failed")
    assert other_stopped.is_set()


def test_the_chain_exiting_brings_the_group_down(quick_restarts: None) -> None:
    stop = threading.Event()
    alive = threading.Event()
    alive.set()
    supervisor = _up._Supervisor(stop, node_alive=alive.is_set)
    supervisor.add("steady", lambda event: event.wait())
    supervisor.start()
    alive.clear()
    assert stop.wait(30)
    supervisor.join(10)
    assert supervisor.failure == "the chain's process (anvil) exited"
