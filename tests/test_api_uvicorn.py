"""The service as deployed: ``loyalty serve`` in a process of its own, two uvicorn workers, over a mirror
of the scripted scenario (``tests/api_scenario.py``) on the session's anvil.

The mirror is built here (the scenario's chain, the indexer into a SQLite file, both schema branches at
their heads, keys made with :mod:`api._keys`); ``loyalty serve`` finds the ledger in it (no deployment
manifest) and reads the chain at anvil's URL; with a keystore password configured it makes the custody seed
once and every worker derives custodial wallets from it. The checks are what a load balancer and a client
see: liveness, readiness, a partner reading its member's wallet (the contract's ``balanceOf``), an RFC 9457
problem without credentials, the request id echoed, custodial enrolment in the workers; then SIGTERM stops
the server and its workers cleanly.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_scenario import MEMBER_A_PARTNER, scenario_chain
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from api._custody import custody_from_keystore
from api._db import migrate_all
from api._keys import create_key
from api._serve import CUSTODY_KEYSTORE
from api._tables import Member, Membership
from chain._signer import Keystore
from conftest import AnvilNode, Ledger, mirror, mirror_engine
from indexer import make_engine

WORKERS = 2
PASSWORD = f"pw-{secrets.token_hex(8)}"
SCRYPT_N = 16  # tests only
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    ledger: Ledger
    people: list[LocalAccount]
    #: bearer tokens: "partner" (of MEMBER_A_PARTNER), "auditor"
    tokens: dict[str, str]
    mirror_block: int
    database_url: str
    keystore: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _wait_until_live(process: subprocess.Popen[str], base_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"loyalty serve exited with {process.returncode}: {err[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"loyalty serve did not answer in {START_TIMEOUT_S} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    snapshot = anvil_node.snapshot()
    try:
        ledger, people = scenario_chain(anvil_node)
        url = f"sqlite:///{tmp / 'mirror.db'}"
        engine = mirror_engine(url)
        migrate_all(engine)
        with mirror(ledger, url) as indexer:
            block = indexer.sync()
        now = int(time.time())
        with Session(engine) as db, db.begin():
            partner = create_key(db, role="partner", name="till", partner_id=MEMBER_A_PARTNER, now=now)
            auditor = create_key(db, role="auditor", name="audit", partner_id=None, now=now)
            member = people[1]
            member_id = f"mem_{member.address[2:34].lower()}"
            db.add(Member(id=member_id, address=member.address.lower(), custody="self", created_at=now))
            db.add(
                Membership(
                    partner_id=MEMBER_A_PARTNER,
                    member_id=member_id,
                    customer_id="cust-a",
                    email="a@example.com",
                    enrolled_at=now,
                    linked=False,
                )
            )
            tokens = {"partner": partner.token, "auditor": auditor.token}
        engine.dispose()

        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
        env.update(
            LOYALTY_DATABASE_URL=url,
            LOYALTY_RPC_URL=anvil_node.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
            LOYALTY_API_PORT=str(port),
            LOYALTY_API_WORKERS=str(WORKERS),
            LOYALTY_MANIFEST_PATH=str(tmp / "no-manifest.json"),  # none: the one ledger in the mirror
            LOYALTY_KEYSTORE_DIR=str(tmp / "keystore"),
            # a keystore password: the command makes the custody seed, every worker reads it
            LOYALTY_KEYSTORE_PASSWORD=PASSWORD,
            LOYALTY_KEYSTORE_SCRYPT_N=str(SCRYPT_N),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--no-access-log"],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_live(process, base_url)
            yield Served(process, base_url, ledger, people, tokens, block, url, tmp / "keystore")
        finally:
            if process.poll() is None:  # a test failed before the last one stopped it
                process.terminate()
                try:
                    process.communicate(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.communicate()
    finally:
        anvil_node.revert(snapshot)


def test_serve_runs_the_configured_number_of_workers(served: Served) -> None:
    workers = [pid for pid in _children(served.process.pid) if "spawn_main" in _cmdline(pid)]
    assert len(workers) == WORKERS


def test_liveness_and_readiness(served: Served) -> None:
    live = httpx.get(f"{served.base_url}/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})

    ready = httpx.get(f"{served.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["status"], body["lag_blocks"]) == ("ready", 0)
    assert body["chain_head"] == body["as_of"]["block_number"] == served.mirror_block
    assert body["as_of"]["chain_id"] == served.ledger.w3.eth.chain_id


def test_a_partner_reads_its_members_wallet_as_the_contract_counts_it(served: Served) -> None:
    member = served.people[1].address
    headers = {"Authorization": f"Bearer {served.tokens['partner']}"}

    # several requests, on new connections: the workers share them (each its own engine and chain connection)
    answers = [httpx.get(f"{served.base_url}/v1/wallets/{member}", headers=headers) for _ in range(6)]

    assert all(a.status_code == 200 for a in answers), answers[0].text
    wallet = answers[0].json()
    assert wallet["balance"] == served.ledger.contract.functions.balanceOf(member).call() > 0
    assert wallet["as_of"]["block_number"] == served.mirror_block
    assert all(a.json() == wallet for a in answers)

    stranger = httpx.get(f"{served.base_url}/v1/wallets/{served.people[0].address}", headers=headers)
    assert stranger.status_code == 403  # not one of this partner's members


def test_no_credentials_is_a_401_problem_that_carries_the_request_id(served: Served) -> None:
    request_id = "uvicorn-test-0001"
    answer = httpx.get(
        f"{served.base_url}/v1/wallets/{served.people[1].address}", headers={"X-Request-Id": request_id}
    )

    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"] == 'Bearer realm="loyalty"'
    assert answer.headers["x-request-id"] == request_id
    problem = answer.json()
    assert (problem["type"], problem["status"], problem["request_id"]) == (
        "/problems/unauthenticated",
        401,
        request_id,
    )


def test_a_request_without_an_id_gets_one(served: Served) -> None:
    first, second = (httpx.get(f"{served.base_url}/healthz") for _ in range(2))
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert len(first.headers["x-request-id"]) == 16


def test_custodial_members_get_wallets_derived_from_the_one_custody_seed(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.tokens['partner']}"}
    enrolled = [
        httpx.post(f"{served.base_url}/v1/members", headers=headers, json={"customer_id": f"walk-in-{i}"})
        for i in range(4)  # on new connections: the workers share them
    ]

    assert all(e.status_code == 201 for e in enrolled), enrolled[0].text
    keystore = Keystore(served.keystore / CUSTODY_KEYSTORE, scrypt_n=SCRYPT_N)
    assert len(keystore.addresses()) == 1  # made once, by the command, before the workers started
    custody = custody_from_keystore(keystore, PASSWORD)
    engine = make_engine(served.database_url)
    try:
        with Session(engine) as db:
            for answer in enrolled:
                member = db.get(Member, answer.json()["id"])
                assert member is not None and member.custody_index is not None
                assert answer.json()["custody"] == "custodial"
                assert answer.json()["address"] == custody.address_of(member.custody_index)
    finally:
        engine.dispose()


def test_sigterm_stops_the_server_and_its_workers_cleanly(served: Served) -> None:
    process = served.process
    workers = [pid for pid in _children(process.pid) if "spawn_main" in _cmdline(pid)]

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=STOP_TIMEOUT_S)

    assert process.returncode == 0, err[-3000:]
    assert "serving the ledger" in out and f"with {WORKERS} workers" in out
    # no traceback and no command-line error line (uvicorn's logger is named "uvicorn.error": not one)
    assert "Traceback" not in err and not any(line.startswith("error:") for line in err.splitlines()), err[
        -3000:
    ]
    assert err.count("Finished server process") == WORKERS
    assert all(not Path(f"/proc/{pid}").exists() or "spawn_main" not in _cmdline(pid) for pid in workers)
    assert served.tokens["auditor"] not in out + err and served.tokens["partner"] not in out + err
    assert PASSWORD not in out + err
