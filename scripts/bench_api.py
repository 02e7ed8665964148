"""The HTTP service under load: wallet reads next to a bare FastAPI endpoint in the same uvicorn settings,
latency at a fixed offered rate, and the memory of CSV exports of the audit trail, in one run.

Run from the repo root inside the project's environment: `python scripts/bench_api.py` (a few minutes) or
`--quick` (well under a minute, small figures). It needs `wrk` (`apt-get install -y wrk`, `brew install
wrk`). Progress goes to stderr; stdout gets the table and, as its last line, one JSON object:
{"wallet_rps", "bare_rps", "ratio", "p99_ms_at_500", "export_rss_mb_100k", "export_rss_mb_1m"}.

Phases, in order (only the measurements are timed, never the set-up):

1. **Mirror.** A spawned anvil (1 s interval mining, 1e9 gas blocks); fresh admin and partner keys; the
   ledger deployed with the chain layer; ``Ledger.issue_batch`` of ``batch_size`` recipients (each batch is
   ``batch_size + 1`` entries: the header and its items) in three rounds one epoch apart, so wallets hold
   points of several epochs: the first batches give every one of ``wallets`` addresses points, the rest go
   to random ones, until ``entries`` ledger entries exist. The indexer then mirrors it into a SQLite file
   with both schema branches, and an auditor key is made with :mod:`api._keys`.
2. **Servers.** ``loyalty serve`` (the real command: ``api._serve:app_from_env`` in ``workers`` uvicorn
   worker processes, no access log, the rate limit raised out of the way) and, in the same uvicorn settings
   (same workers, h11, asyncio, no access log), a bare FastAPI app of this module (:func:`bare_app`) whose
   ``GET /bare/{address}`` is a plain ``def`` returning a small dict, as the wallet route is a plain
   ``def``: both run in the threadpool, so the ratio is the cost of what the service does (authentication,
   rate limit, two reads of the mirror in one snapshot, the response model) on top of the same framework.
   ``/bare-async/{address}`` (``async def``) is measured too, for reference only.
3. **Throughput** (closed loop): ``wrk`` with a Lua script that picks a random wallet of the mirror for
   every request, ``connections`` connections, a warm-up run then a measured one of ``duration`` s, against
   ``GET /v1/wallets/{address}`` with the auditor key, then the bare endpoints with the same header. Any
   non-2xx answer fails the run. Three balances read over HTTP must equal the contract's ``balanceOf``.
4. **Latency at a fixed rate** (open loop): an asyncio generator in this process sends ``GET
   /v1/wallets/{random}`` at exactly ``rate`` requests per second on keep-alive connections (a new one
   whenever every open one is busy, so a slow answer never delays the next send), for ``rate_duration`` s;
   a request's latency runs from the moment it was *scheduled* (no coordinated omission: a late send counts
   against the server). p50 / p99 / max.
5. **Export memory.** The audit helper's streaming export (:func:`api._export.export_rows`, keyset pages,
   :func:`api._export.encode_csv`) of every entry, in a child process per size whose peak RSS is read with
   ``os.wait4`` (the child's own ``ru_maxrss``; ``getrusage(RUSAGE_CHILDREN)`` would report the largest
   of all children so far): the mirror itself (``entries``) and a scratch copy grown to ``export_large``
   rows by copying its ledger entries in SQL (seq and block shifted; this measures the export, not the
   chain), next to a child that only imports and opens the database (the floor).

Everything shares the machine's cores (wrk, the generator, both servers' workers): the figures include
that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils.address import to_checksum_address
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

# The chain's, the indexer's and the service's modules are imported where they are used: the bare app's
# workers and the export children import this module too, and should carry only what they measure.
ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent

#: The issue's targets; the table marks each as met or missed.
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
TARGET_EXPORT_GROWTH_MB = 50.0
EPOCH_LENGTH = 30 * 24 * 3600
ROUNDS = 3
#: The auditor key's rate limit in the served app: far above any rate here, with a one-second window so
#: the moving window's bookkeeping stays as small as under the production limit.
UNLIMITED = "1000000/second"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes of the run; the defaults are the issue's, :meth:`quick` a small run of the same phases."""

    entries: int = 100_000
    wallets: int = 12_000
    batch_size: int = 500
    workers: int = 2
    connections: int = 32
    warmup_s: float = 3.0
    duration_s: float = 10.0
    rate: int = 500
    rate_duration_s: float = 20.0
    export_large: int = 1_000_000

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            entries=3_000,
            wallets=1_000,
            warmup_s=0.5,
            duration_s=2.0,
            rate_duration_s=2.0,
            export_large=30_000,
        )


class BenchmarkFailed(Exception):
    """The run cannot give a valid figure (a server did not start, an answer was not 2xx, a balance
    disagrees with the contract)."""


# --------------------------------------------------------------------------- the bare comparison app


def bare_app() -> FastAPI:
    """The comparison: FastAPI with one JSON endpoint and nothing else (uvicorn's factory for the bare
    server, imported by its workers as ``bench_api:bare_app``), with the service's thread pool size
    (``LOYALTY_API_THREADS``), so both run their plain ``def`` routes on as many threads."""
    from contextlib import asynccontextmanager

    from anyio import to_thread

    from api import Settings

    threads = Settings().api_threads

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/bare/{address}")
    def bare(address: str) -> dict[str, Any]:
        return {"address": address, "balance": 0, "epochs": []}

    @app.get("/bare-async/{address}")
    async def bare_async(address: str) -> dict[str, Any]:
        return {"address": address, "balance": 0, "epochs": []}

    return app


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Throughput:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


@dataclass(frozen=True, slots=True)
class OpenLoop:
    rate: int
    seconds: float
    #: seconds, sorted
    latencies: tuple[float, ...]
    errors: int
    #: the latest a request went out after its scheduled time (the generator's own delay), seconds
    max_send_delay: float

    def percentile_ms(self, q: float) -> float:
        return _percentile(self.latencies, q) * 1000


@dataclass(frozen=True, slots=True)
class Export:
    name: str
    rows: int
    megabytes: float
    #: ru_maxrss of the child
    peak_rss_mb: float
    seconds: float
    #: the child's own VmHWM (Linux), the same peak read from inside
    vm_hwm_mb: float


@dataclass(frozen=True, slots=True)
class BenchResult:
    config: BenchConfig
    entries: int
    wallets: int
    produce_s: float
    index_s: float
    wallet: Throughput
    bare: Throughput
    bare_async: Throughput
    latency: OpenLoop
    floor: Export
    small: Export
    large: Export

    @property
    def ratio(self) -> float:
        return self.wallet.rps / self.bare.rps if self.bare.rps else 0.0

    def figures(self) -> dict[str, float]:
        """The last line's JSON: exactly the issue's keys."""
        return {
            "wallet_rps": round(self.wallet.rps, 1),
            "bare_rps": round(self.bare.rps, 1),
            "ratio": round(self.ratio, 3),
            "p99_ms_at_500": round(self.latency.percentile_ms(99), 2),
            "export_rss_mb_100k": round(self.small.peak_rss_mb, 1),
            "export_rss_mb_1m": round(self.large.peak_rss_mb, 1),
        }

    def table(self) -> str:
        c = self.config
        lines = [
            f"mirror: {self.entries:,} ledger entries, {self.wallets:,} wallets (issue_batch of "
            f"{c.batch_size} on anvil in {self.produce_s:.1f} s, indexed into SQLite in "
            f"{self.index_s:.1f} s; not timed)",
            f"servers: uvicorn, {c.workers} worker processes each, h11, asyncio, no access log; "
            f"{os.cpu_count()} cores shared with wrk and this script",
            "",
            f"wrk, 1 thread, {c.connections} connections, {c.duration_s:g} s after a {c.warmup_s:g} s "
            "warm-up",
            f"{'endpoint':<46}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}",
            "-" * 84,
        ]
        for t in (self.wallet, self.bare, self.bare_async):
            lines.append(f"{t.name:<46}{t.rps:>10,.0f}{t.p50_ms:>9.1f}{t.p99_ms:>9.1f}{t.requests:>10,}")
        lat = self.latency
        lines += [
            f"wallet / bare (both plain def routes): {self.ratio:.2f}",
            "",
            f"open loop: GET /v1/wallets/{{random}} at {lat.rate} req/s for {lat.seconds:g} s "
            f"({len(lat.latencies):,} answers, {lat.errors} errors; latency from the scheduled send, "
            f"sends at most {lat.max_send_delay * 1000:.1f} ms late)",
            f"  p50 {lat.percentile_ms(50):.2f} ms, p90 {lat.percentile_ms(90):.2f} ms, "
            f"p99 {lat.percentile_ms(99):.2f} ms, max {lat.percentile_ms(100):.2f} ms",
            "",
            "CSV export of the audit trail (export_rows + encode_csv, keyset pages), one child process each",
            f"{'export':<34}{'rows':>11}{'CSV MB':>9}{'seconds':>9}{'peak RSS MB':>13}{'VmHWM MB':>10}",
            "-" * 86,
        ]
        for e in (self.floor, self.small, self.large):
            lines.append(
                f"{e.name:<34}{e.rows:>11,}{e.megabytes:>9.1f}{e.seconds:>9.2f}{e.peak_rss_mb:>13.1f}"
                f"{e.vm_hwm_mb:>10.1f}"
            )
        growth = self.large.peak_rss_mb - self.small.peak_rss_mb
        lines += [f"growth from {self.small.rows:,} to {self.large.rows:,} rows: {growth:+.1f} MB", ""]
        checks = [
            (f"wallet/bare >= {TARGET_RATIO}", self.ratio >= TARGET_RATIO),
            (f"p99 at {lat.rate}/s < {TARGET_P99_MS:g} ms", lat.percentile_ms(99) < TARGET_P99_MS),
            (f"export growth < {TARGET_EXPORT_GROWTH_MB:g} MB", growth < TARGET_EXPORT_GROWTH_MB),
        ]
        lines.append("targets: " + ", ".join(f"{name} [{'met' if ok else 'MISSED'}]" for name, ok in checks))
        return "\n".join(lines)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    rank = min(max(math.ceil(q / 100 * len(values)) - 1, 0), len(values) - 1)
    return values[rank]


# --------------------------------------------------------------------------- 1. the mirror


@dataclass(frozen=True, slots=True)
class Mirror:
    database_url: str
    path: Path
    manifest_path: Path
    ledger: str
    entries: int
    wallets: list[str]
    auditor_token: str


def _addresses(count: int) -> list[str]:
    """``count`` distinct addresses that have never held points (random, no keys: nothing signs for them)."""
    base = int.from_bytes(secrets.token_bytes(12), "big") << 64
    return [to_checksum_address((base + i).to_bytes(20, "big")) for i in range(1, count + 1)]


def build_mirror(
    node_url: str, tmp: Path, config: BenchConfig, say: Callable[[str], None]
) -> tuple[Mirror, float, float]:
    """Produces the ledger's entries on the node, mirrors them; returns the mirror and both durations."""
    from web3 import HTTPProvider, Web3

    from api._db import migrate_all
    from api._keys import create_key
    from chain import Ledger, PartnerId, Points, RetryPolicy, RevertDecoder, Rpc, Sender, load_artifact
    from chain import deploy_ledger as deploy_ledger_contract
    from chain._bench import FUNDING, PURCHASE, _check, batch_gas
    from chain._devnode import fund
    from chain._signer import LocalSigner
    from indexer import Indexer, IndexerConfig, LedgerEntry, make_engine

    started = time.perf_counter()
    w3 = Web3(HTTPProvider(node_url, request_kwargs={"timeout": 120}))
    artifact = load_artifact("LoyaltyLedger")
    decoder = RevertDecoder([artifact.abi])
    rpc = Rpc(w3, decoder=decoder, retry=RetryPolicy(attempts=1))
    admin, partner = LocalSigner(Account.create()), LocalSigner(Account.create())
    for signer in (admin, partner):
        fund(w3, signer.address, FUNDING)
    admin_sender = Sender(rpc, admin, decoder=decoder)
    manifest = deploy_ledger_contract(
        admin_sender,
        name="Coalition Points",
        symbol="PTS",
        admin=admin.address,
        epoch_length=EPOCH_LENGTH,
        validity=12,
        settlement_value=1,
        artifact=artifact,
    )
    manifest_path = tmp / "deployment.json"
    manifest.write(manifest_path)
    address = manifest.ledger.address
    Ledger(rpc, address, sender=admin_sender, artifact=artifact).register_partner(
        PartnerId(1), partner.address, allowance=Points(10**15)
    ).wait()
    sender = Sender(rpc, partner, decoder=decoder)
    ledger = Ledger(rpc, address, sender=sender, artifact=artifact)

    size = config.batch_size
    wallets = _addresses(config.wallets)
    rng = random.Random()
    batches = max(math.ceil(config.entries / (size + 1)), math.ceil(len(wallets) / size))
    covering = [wallets[i : i + size] for i in range(0, len(wallets), size)]
    recipients = covering + [
        rng.sample(wallets, min(size, len(wallets))) for _ in range(batches - len(covering))
    ]
    rpc.request("evm_setIntervalMining", [1])
    per_round = math.ceil(len(recipients) / ROUNDS)
    for round_number in range(ROUNDS):
        chunk = recipients[round_number * per_round : (round_number + 1) * per_round]
        pending = [
            ledger.issue_batch(
                batch,
                [Points(rng.randint(1, 500)) for _ in batch],
                [secrets.token_bytes(32) for _ in batch],
                PURCHASE,
                gas=batch_gas(len(batch)),
            )
            for batch in chunk
        ]
        _check(sender.wait_all(pending), f"issue_batch of {size}")
        say(f"round {round_number + 1}/{ROUNDS}: {len(chunk)} batches issued")
        if round_number < ROUNDS - 1:
            rpc.request("evm_increaseTime", [EPOCH_LENGTH])  # the next round's points: the next epoch
    rpc.request("evm_setIntervalMining", [0])
    rpc.request("evm_setAutomine", [True])  # no more empty blocks: the mirror stays at the head
    produced = time.perf_counter() - started

    started = time.perf_counter()
    path = tmp / "mirror.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate_all(engine)
    indexer = Indexer(
        Web3(HTTPProvider(node_url, request_kwargs={"timeout": 120})),
        engine,
        address,
        deployment_block=int(manifest.deployed_at.block_number),
        config=IndexerConfig(),
    )
    with indexer:
        indexer.sync()
    indexed = time.perf_counter() - started
    with Session(engine) as db, db.begin():
        entries = int(db.execute(select(func.count()).select_from(LedgerEntry)).scalar_one())
        held = int(
            db.execute(
                select(func.count(func.distinct(LedgerEntry.account))).where(
                    LedgerEntry.event == "PointsIssuedInBatch"
                )
            ).scalar_one()
        )
        auditor = create_key(db, role="auditor", name="bench", partner_id=None, now=int(time.time()))
        token = auditor.token
    engine.dispose()
    if entries < config.entries or held < config.wallets:
        raise BenchmarkFailed(f"the mirror holds {entries} entries and {held} wallets, fewer than asked")
    say(
        f"mirror: {entries:,} entries, {held:,} wallets; produced in {produced:.1f} s, "
        f"indexed in {indexed:.1f} s"
    )
    return Mirror(url, path, manifest_path, address, entries, wallets, token), produced, indexed


# --------------------------------------------------------------------------- 2. the servers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Server:
    """A server command in a process of its own, on a free port (``{port}`` in its arguments, and
    ``LOYALTY_API_PORT``), its output in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, probe: str) -> None:
        self.name, self.log, self.probe = name, log, probe
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [part.replace("{port}", str(port)) for part in argv],
                env={**env, "LOYALTY_API_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def wait_ready(self) -> str:
        """The base URL, once ``probe`` answers 200."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-2000:]
                raise BenchmarkFailed(f"{self.name} exited with {self.process.returncode}: {tail}")
            try:
                if httpx.get(self.base + self.probe, timeout=5).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"{self.name} did not answer {self.probe} in {START_TIMEOUT_S:g} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (a graceful stop of the server and its workers), SIGKILL after 30 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def _servers(*servers: tuple[str, list[str], Path, str], env: dict[str, str]) -> Iterator[list[str]]:
    """Starts every server at once (they import and build their apps in parallel), yields their base URLs
    once all answer, stops them all at the end."""
    started: list[_Server] = []
    try:
        for name, argv, log, probe in servers:
            started.append(_Server(name, argv, env, log, probe))
        yield [server.wait_ready() for server in started]
    finally:
        for server in started:
            server.stop()


def _environment(mirror: Mirror, node_url: str, config: BenchConfig, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=mirror.database_url,
        LOYALTY_RPC_URL=node_url,
        LOYALTY_MANIFEST_PATH=str(mirror.manifest_path),
        LOYALTY_API_WORKERS=str(config.workers),
        LOYALTY_KEYSTORE_DIR=str(tmp / "keystore"),  # no password: no custody
        LOYALTY_RATE_LIMIT_PER_KEY=UNLIMITED,
        PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")])),
    )
    return env


# --------------------------------------------------------------------------- 3. wrk

_LUA = """
local addresses = {}
for line in io.lines(os.getenv("BENCH_ADDRESSES")) do addresses[#addresses + 1] = line end
local prefix = os.getenv("BENCH_PREFIX")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", prefix .. addresses[math.random(#addresses)])
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchmarkFailed(
            "wrk is not installed: `apt-get install -y wrk` (Debian, Ubuntu) or `brew install wrk` (macOS)"
        )
    return found


def _wrk(
    base: str, prefix: str, seconds: float, config: BenchConfig, env: dict[str, str], script: Path
) -> str:
    done = subprocess.run(
        [
            wrk_binary(),
            "-t1",
            f"-c{config.connections}",
            f"-d{max(seconds, 1):g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base,
        ],
        env={**env, "BENCH_PREFIX": prefix},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise BenchmarkFailed(f"wrk failed: {done.stderr or done.stdout}")
    return done.stdout


_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    found = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\b", text, re.M)
    return float(found[1]) * _MS[found[2]] if found else math.nan


def throughput(
    name: str,
    base: str,
    prefix: str,
    config: BenchConfig,
    env: dict[str, str],
    script: Path,
    say: Callable[[str], None],
) -> Throughput:
    _wrk(base, prefix, config.warmup_s, config, env, script)
    text = _wrk(base, prefix, config.duration_s, config, env, script)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if bad:
        raise BenchmarkFailed(f"{name}: {bad[1]} answers were not 2xx:\n{text}")
    errors = re.search(r"Socket errors: (.*)", text)
    if errors and re.search(r"timeout [1-9]|read [1-9]|write [1-9]", errors[1]):
        raise BenchmarkFailed(f"{name}: socket errors: {errors[1]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    result = Throughput(name, rps, _wrk_ms(text, "50%"), _wrk_ms(text, "99%"), requests)
    say(f"{name}: {rps:,.0f} req/s")
    return result


# --------------------------------------------------------------------------- 4. the open loop


#: A kept-alive connection idle this long is not reused: uvicorn closes idle ones after 5 s, and a request
#: sent as it does so would fail for the generator's sake, not the server's.
REUSE_IDLE_S = 4.0
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_loop(
    host: str, port: int, paths: Sequence[str], token: str, rate: int, seconds: float
) -> OpenLoop:
    loop = asyncio.get_running_loop()
    idle: list[tuple[_Connection, float]] = []
    opened: list[asyncio.StreamWriter] = []
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"

    async def connection() -> _Connection:
        """The most recently used idle connection that is fresh enough, else a new one."""
        while idle:
            conn, used = idle.pop()
            if loop.time() - used < REUSE_IDLE_S:
                return conn
            conn[1].close()
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        return reader, writer

    async def exchange(conn: _Connection, path: str) -> int:
        reader, writer = conn
        writer.write(f"GET {path} HTTP/1.1\r\n{headers}".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            raise BenchmarkFailed(f"an answer without Content-Length: {head!r}")
        await reader.readexactly(int(length[1]))
        return int(head[9:12])

    async def one(scheduled: float, path: str) -> None:
        nonlocal errors
        try:
            conn = await connection()
            status = await exchange(conn, path)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            errors += 1
            return
        latencies.append(loop.time() - scheduled)
        statuses[status] += 1
        idle.append((conn, loop.time()))

    for _ in range(8):
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        idle.append(((reader, writer), loop.time()))
    count = int(rate * seconds)
    start = loop.time() + 0.05
    tasks = []
    late = 0.0
    rng = random.Random()
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, loop.time() - scheduled)
        tasks.append(asyncio.create_task(one(scheduled, rng.choice(paths))))
    await asyncio.gather(*tasks)
    for writer in opened:
        writer.close()
    if set(statuses) - {200}:
        raise BenchmarkFailed(f"answers at the fixed rate were not all 200: {dict(statuses)}")
    return OpenLoop(rate, seconds, tuple(sorted(latencies)), errors, late)


def latency(base: str, mirror: Mirror, config: BenchConfig, say: Callable[[str], None]) -> OpenLoop:
    host, port = base.removeprefix("http://").split(":")
    paths = [f"/v1/wallets/{address}" for address in mirror.wallets]
    result = asyncio.run(
        _open_loop(host, int(port), paths, mirror.auditor_token, config.rate, config.rate_duration_s)
    )
    say(
        f"open loop at {config.rate}/s: p50 {result.percentile_ms(50):.2f} ms, "
        f"p99 {result.percentile_ms(99):.2f} ms"
    )
    return result


# --------------------------------------------------------------------------- 5. export memory


def export_in_child(url: str, floor: bool) -> None:
    """In the child: the whole audit trail as CSV into a byte counter (``floor``: only open the database)."""
    from api._export import EntryFilters, encode_csv, export_rows
    from indexer import LedgerEntry, make_engine

    engine = make_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        upto = int(conn.execute(select(func.max(LedgerEntry.seq))).scalar_one())
    rows = size = 0
    if not floor:

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal rows
            for row in export_rows(engine, EntryFilters(), upto_seq=upto):
                rows += 1
                yield row

        for chunk in encode_csv(counted()):
            size += len(chunk)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "bytes": size, "seconds": seconds, "vm_hwm_kb": _vm_hwm_kb()}))


def _vm_hwm_kb() -> float:
    """This process's own peak RSS (Linux ``VmHWM``, reset by exec), a cross-check of ``ru_maxrss``; NaN
    where there is no /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return math.nan
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return float(found[1]) if found else math.nan


#: Runs one export child and reports the child's peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the
#: launcher having no other child). The launcher is a small process of its own because a child's
#: ``ru_maxrss`` starts from its parent's RSS at the fork (Linux carries the high-water mark across exec):
#: a child of this script, hundreds of MB by then, would report this script's size, not the export's.
_LAUNCHER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=False)
maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"returncode": done.returncode, "out": done.stdout.decode(), "maxrss": maxrss}))
"""


def _start_export(name: str, url: str, *, floor: bool = False) -> tuple[str, subprocess.Popen[bytes]]:
    child = [sys.executable, __file__, "--export-child", url, *(["--floor"] if floor else [])]
    return name, subprocess.Popen(
        [sys.executable, "-I", "-c", _LAUNCHER, *child], stdout=subprocess.PIPE, cwd=ROOT
    )


def _measured(child: tuple[str, subprocess.Popen[bytes]]) -> Export:
    """The child's figures and its peak RSS."""
    name, process = child
    output, _ = process.communicate()
    if process.returncode != 0:
        raise BenchmarkFailed(f"the export launcher for {name} exited with {process.returncode}")
    launched = json.loads(output)
    if launched["returncode"] != 0:
        raise BenchmarkFailed(f"the export child for {name} exited with {launched['returncode']}")
    done = json.loads(launched["out"])
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    peak = launched["maxrss"] / scale
    return Export(name, done["rows"], done["bytes"] / 1e6, peak, done["seconds"], done["vm_hwm_kb"] / 1024)


def grow(source: Path, target: Path, rows: int) -> int:
    """A copy of the mirror at ``source`` whose ledger has ``rows`` entries: its entries over and over, each
    copy's seq and block numbers shifted past the previous ones. Returns the entries it holds."""
    from indexer import LedgerEntry

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    columns = [c.name for c in LedgerEntry.__table__.columns]
    with sqlite3.connect(target) as db:
        count, last_seq, last_block = db.execute(
            "SELECT count(*), max(seq), max(block_number) FROM ledger_entries"
        ).fetchone()
        step_seq, step_block = last_seq + 1, last_block + 1
        total, copy = count, 1
        while total < rows:
            shifted = [
                f"seq + {copy * step_seq}"
                if c == "seq"
                else f"block_number + {copy * step_block}"
                if c == "block_number"
                else c
                for c in columns
            ]
            take = min(count, rows - total)
            db.execute(
                f"INSERT INTO ledger_entries ({', '.join(columns)}) SELECT {', '.join(shifted)} "
                f"FROM ledger_entries WHERE seq <= {last_seq} ORDER BY seq LIMIT {take}"
            )
            total += take
            copy += 1
        db.commit()
    return int(total)


def exports(
    mirror: Mirror, tmp: Path, config: BenchConfig, say: Callable[[str], None]
) -> tuple[Export, Export, Export]:
    large = tmp / "export-large.db"
    rows = grow(mirror.path, large, config.export_large)
    say(f"scratch copy for the export: {rows:,} entries")
    # The floor and the small export side by side (their peaks are their own), the large one alone.
    floor_child = _start_export("floor (imports, open the database)", mirror.database_url, floor=True)
    small_child = _start_export(f"the mirror ({mirror.entries:,} entries)", mirror.database_url)
    floor, small = _measured(floor_child), _measured(small_child)
    big = _measured(_start_export(f"scratch copy ({rows:,} entries)", f"sqlite:///{large}"))
    for e in (small, big):
        say(f"export of {e.rows:,} rows: peak RSS {e.peak_rss_mb:.1f} MB in {e.seconds:.1f} s")
    return floor, small, big


# --------------------------------------------------------------------------- the run


def _check_balances(base: str, mirror: Mirror, node_url: str) -> None:
    from web3 import HTTPProvider, Web3

    from chain import load_artifact

    w3 = Web3(HTTPProvider(node_url))
    contract = w3.eth.contract(
        address=to_checksum_address(mirror.ledger), abi=load_artifact("LoyaltyLedger").abi
    )
    for address in random.sample(mirror.wallets, 3):
        answer = httpx.get(
            f"{base}/v1/wallets/{address}", headers={"Authorization": f"Bearer {mirror.auditor_token}"}
        )
        if answer.status_code != 200:
            raise BenchmarkFailed(f"GET /v1/wallets/{address}: {answer.status_code} {answer.text}")
        if answer.json()["balance"] != contract.functions.balanceOf(address).call():
            raise BenchmarkFailed(f"the served balance of {address} differs from the contract's")


def run_benchmark(config: BenchConfig, say: Callable[[str], None]) -> BenchResult:
    from chain._devnode import start_anvil

    wrk_binary()
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as scratch,
        start_anvil(ROOT, extra_args=("--gas-limit", "1000000000")) as node,
    ):
        tmp = Path(scratch)
        mirror, produced, indexed = build_mirror(node.url, tmp, config, say)
        env = _environment(mirror, node.url, config, tmp)
        addresses = tmp / "wallets.txt"
        addresses.write_text("\n".join(mirror.wallets) + "\n")
        script = tmp / "wallets.lua"
        script.write_text(_LUA)
        wrk_env = {**env, "BENCH_ADDRESSES": str(addresses), "BENCH_TOKEN": mirror.auditor_token}
        serve = [sys.executable, "-m", "api.cli", "serve", "--no-access-log"]
        bare = [
            sys.executable, "-m", "uvicorn", "bench_api:bare_app", "--factory", "--host", "127.0.0.1",
            "--port", "{port}", "--workers", str(config.workers), "--no-access-log",
        ]  # fmt: skip
        with _servers(
            ("loyalty serve", serve, tmp / "serve.log", "/readyz"),
            ("the bare app", bare, tmp / "bare.log", "/bare/0x0"),
            env=env,
        ) as (service, plain):
            say(
                f"servers up: loyalty serve at {service}, bare FastAPI at {plain} "
                f"({config.workers} workers each)"
            )
            _check_balances(service, mirror, node.url)
            wallet = throughput(
                "GET /v1/wallets/{address} (auditor key)",
                service,
                "/v1/wallets/",
                config,
                wrk_env,
                script,
                say,
            )
            bare_def = throughput("GET /bare/{address} (def)", plain, "/bare/", config, wrk_env, script, say)
            bare_async = throughput(
                "GET /bare-async/{address} (async def)", plain, "/bare-async/", config, wrk_env, script, say
            )
            fixed = latency(service, mirror, config, say)
        floor, small, large = exports(mirror, tmp, config, say)
    return BenchResult(
        config=config,
        entries=mirror.entries,
        wallets=len(mirror.wallets),
        produce_s=produced,
        index_s=indexed,
        wallet=wallet,
        bare=bare_def,
        bare_async=bare_async,
        latency=fixed,
        floor=floor,
        small=small,
        large=large,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run of every phase (under a minute)")
    parser.add_argument("--workers", type=int, help="uvicorn workers of each server (default 2)")
    parser.add_argument("--connections", type=int, help="wrk's connections (default 32)")
    parser.add_argument("--duration", type=float, help="seconds of each measured wrk run")
    parser.add_argument("--rate", type=int, help="the open loop's requests per second (default 500)")
    parser.add_argument("--export-child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_in_child(args.export_child, args.floor)
        return
    # A SIGTERM (a CI timeout) unwinds like an exception: the servers and anvil are stopped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
    config = BenchConfig.quick() if args.quick else BenchConfig()
    overrides = {
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "rate": args.rate,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    try:
        result = run_benchmark(config, lambda line: print(line, file=sys.stderr, flush=True))
    except BenchmarkFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(result.table())
    print(json.dumps(result.figures()))


if __name__ == "__main__":
    main()
