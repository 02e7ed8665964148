"""The write path under load: ``POST /v1/purchases`` through ``loyalty serve``, one batcher, anvil and the
indexer, next to a bare FastAPI endpoint that only validates the same body, in one run.

Run from the repo root inside the project's environment: ``python scripts/bench_earn.py`` (about three
minutes) or ``--quick`` (under a minute, small figures). It needs ``wrk`` (``apt-get install -y wrk``) and
a database: PostgreSQL by default (``--database postgresql://...``, else ``LOYALTY_TEST_POSTGRES_URL``; the
run works in a scratch schema it drops at the end) or ``--database sqlite`` (a file of its own). Progress
goes to stderr; stdout gets the table and, as its last line, one JSON object: {"accepted_per_s",
"confirmed_per_s", "bare_per_s", "p50_accept_ms", "p99_accept_ms", "p50_confirm_ms", "p99_confirm_ms",
"seconds"}.

Phases, in order (only the measurements are timed, never the set-up):

1. **Chain.** A spawned anvil (1e9 gas blocks); the ledger deployed by anvil's dev account 0, partner 1
   registered with dev account 1 as its operator (as the tests do: ``loyalty batcher`` signs with a dev
   account's key in dev mode) and an allowance far above the run. Then anvil mines a block every
   ``block_time`` seconds (interval mining, 1 s by default, as a real chain does; ``--block-time 0``:
   automine, a block per transaction).
2. **Service.** The database migrated (the mirror's branch and the service's), a partner key and an
   active rule set (1 point per euro). Then, as deployed, each in a process of its own: ``loyalty index``
   following the chain, ``loyalty batcher --partner 1`` (the batcher's settings at their defaults: at most
   200 items per ``issueBatch``, a flush every 200 ms, 16 transactions in flight), ``loyalty serve``
   (``workers`` uvicorn worker processes, no access log, the rate limit raised out of the way), and, in
   the same uvicorn settings, a bare FastAPI app of this module (:func:`bare_app`) whose ``POST
   /bare/purchases`` is a plain ``def`` taking the same body model (``PurchaseCreate``) and returning a
   small dict with 201. Both routes run in the threadpool (``api_threads`` threads): the ratio is the cost
   of what the service does (authentication, the Idempotency-Key record, the rule set, the member's
   serialisation lock, the outbox row, the response model) on top of the same framework and validation.
3. **Bare** (closed loop): ``wrk`` with a Lua script that makes every request a new purchase (a unique
   order id and Idempotency-Key, a random member address, one to three lines), ``connections``
   connections, a warm-up run then a measured one of ``bare_s`` seconds.
4. **Sustained** (closed loop): the same ``wrk`` against ``POST /v1/purchases`` with the partner key: a
   warm-up run, a wait until the batcher has confirmed all of it, then one run of ``ramp + duration + 1``
   seconds. Any answer that is not 2xx fails the run. The window is the ``duration`` after the ramp
   (the backlog has reached its working level by then), wholly inside wrk's run. A sampler reads the
   operations table's states every 0.5 s: accepted/s is the operations created in the window (every
   answer a 201: an operation committed to the outbox) over its length, confirmed/s those that became
   ``confirmed`` in it, the backlog the operations accepted but not yet confirmed (``pending``,
   ``accepted``, ``submitted``), reported at the window's start, middle and end with its least-squares
   slope ("does not grow": at most 5 % of accepted/s). After wrk stops, how long the batcher takes to
   confirm what is left. On Linux, the CPU each component used in the window (``/proc``: each process
   tree's utime + stime; PostgreSQL's server processes of this run's connections, found by their
   application name) and what the rest of the machine used, per accepted purchase.
5. **Latency at a fixed rate** (open loop): an asyncio generator in this process posts a new purchase at
   exactly ``rate`` per second on keep-alive connections (a new one whenever every open one is busy), for
   ``rate_duration`` s; accept latency runs from the moment a request was *scheduled* to its 201 (no
   coordinated omission: a late answer counts against the server, and above the service's capacity the
   queue, and so the latency, grows for as long as the phase lasts). Accept-to-confirmed latency runs
   from the operation's commit to its confirmation, both as a thread of this process sees them by
   reading the operations table (the row ``GET /v1/operations/{id}`` serves) every 50 ms: each end is
   at most one poll late, and the API under test serves no polling traffic. The table's own
   ``created_at``/``updated_at`` are whole seconds, too coarse for this, and the client's 201 is not the
   commit: under load the answer leaves the server well after the commit (the Idempotency-Key record is
   stored first, in a thread-pool slot queued behind newer requests). Every operation of the phase must
   end confirmed.
6. **Checks.** Once the indexer has caught up, the mirror must hold one ``PointsIssuedInBatch`` entry per
   confirmed purchase, and three members' balances on chain must equal their operations' points.

Everything shares the machine's cores (wrk, the generator, both servers' workers, the batcher, the
indexer, anvil, PostgreSQL): the figures include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from bench_api import REUSE_IDLE_S, BenchmarkFailed, _free_port, _percentile, _wrk_ms, wrk_binary
from fastapi import FastAPI
from sqlalchemy import Engine, func, make_url, select, text
from sqlalchemy.orm import Session

from api.routers.earning import PurchaseCreate

__all__ = ["BenchConfig", "BenchResult", "bare_app", "main", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent

#: The issue's targets; the table marks each as met or MISSED.
TARGET_CONFIRMED_PER_S = 1_000.0
TARGET_RATIO = 0.4
TARGET_P99_ACCEPT_MS = 50.0
#: "The backlog does not grow": its fitted slope over the window is at most this share of accepted/s
#: (a backlog that rises by 5 % of the arrivals every second falls behind by 3 s of work a minute).
BACKLOG_SLOPE_SHARE = 0.05
PARTNER = 1
#: The PostgreSQL application name of every connection of the run (to find its server processes).
APPLICATION = "bench_earn"
EPOCH_LENGTH = 30 * 24 * 3600
UNLIMITED = "1000000/second"
START_TIMEOUT_S = 120.0
SAMPLE_EVERY_S = 0.5
CONFIRM_POLL_S = 0.05
BACKLOG_STATES = ("pending", "accepted", "submitted")
RULES = {"earn": {"basis": "points_per_unit", "rates": {"EUR": "1"}}}
#: A latte, 4.25 EUR: 1 to 3 of them per order.
UNIT_PRICE = 425


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes of the run; the defaults are the issue's, :meth:`quick` a small run of the same phases."""

    workers: int = 2
    #: the service's (and the bare app's) threadpool; None: Settings' default
    threads: int | None = None
    connections: int = 32
    warmup_s: float = 3.0
    bare_s: float = 10.0
    #: wrk runs this long before the sustained window starts (the backlog reaches its steady level)
    ramp_s: float = 5.0
    duration_s: float = 60.0
    rate: int = 200
    rate_duration_s: float = 20.0
    #: seconds between blocks; 0: automine
    block_time: int = 1
    #: how long the batcher may take to confirm what is left after a phase
    drain_timeout_s: float = 180.0

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(warmup_s=1.0, bare_s=3.0, ramp_s=2.0, duration_s=10.0, rate=100, rate_duration_s=3.0)


# --------------------------------------------------------------------------- the bare comparison app


def bare_app() -> FastAPI:
    """The comparison: FastAPI whose ``POST /bare/purchases`` validates a ``PurchaseCreate`` and answers 201
    with a small dict (uvicorn's factory for the bare server, ``bench_earn:bare_app``), with the service's
    thread pool size, so both run their plain ``def`` routes on as many threads."""
    from contextlib import asynccontextmanager

    from anyio import to_thread

    from api import Settings

    threads = Settings().api_threads

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/bare/purchases", status_code=201)
    def bare(body: PurchaseCreate) -> dict[str, Any]:
        return {"id": "op_0", "state": "accepted", "natural_key": body.order_id, "points": body.amount // 100}

    @app.get("/bare/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

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
class Sample:
    """The operations table at one moment of the sustained window (seconds since its start)."""

    at: float
    total: int
    confirmed: int
    backlog: int
    failed: int


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used during the sustained window, by the run's components and by the whole machine
    (Linux ``/proc``: utime + stime of each process tree; the machine's from ``/proc/stat``)."""

    #: component -> CPU seconds, in the table's order
    components: dict[str, float]
    machine_busy: float
    cores: int


@dataclass(frozen=True, slots=True)
class Sustained:
    wrk: Throughput
    #: wrk's whole run: the ramp, the window and a tail
    wrk_seconds: float
    #: the samples of the window (the first at its start, the last at its end)
    samples: tuple[Sample, ...]
    #: seconds the batcher took to confirm the backlog left when wrk stopped (None: not within the timeout)
    drain_s: float | None
    #: blocks mined during the window
    blocks: int
    cpu: CpuUse | None

    @property
    def seconds(self) -> float:
        return self.samples[-1].at - self.samples[0].at

    @property
    def created(self) -> int:
        return self.samples[-1].total - self.samples[0].total

    @property
    def accepted_per_s(self) -> float:
        return self.created / self.seconds

    @property
    def confirmed(self) -> int:
        return self.samples[-1].confirmed - self.samples[0].confirmed

    @property
    def confirmed_per_s(self) -> float:
        return self.confirmed / self.seconds

    def backlog_at(self, share: float) -> int:
        """The backlog of the sample nearest to ``share`` of the window."""
        want = self.samples[0].at + share * self.seconds
        return min(self.samples, key=lambda s: abs(s.at - want)).backlog

    @property
    def backlog_slope(self) -> float:
        """Items per second: the least-squares slope of the backlog over the window."""
        xs = [s.at for s in self.samples]
        ys = [float(s.backlog) for s in self.samples]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


@dataclass(frozen=True, slots=True)
class OpenLoop:
    rate: int
    seconds: float
    #: seconds, sorted
    accept: tuple[float, ...]
    #: seconds from the poll that first saw the operation (committed) to the one that saw it confirmed,
    #: sorted
    confirm: tuple[float, ...]
    errors: int
    statuses: dict[int, int]
    max_send_delay: float
    #: seconds from the first scheduled send to the last answer
    answered_s: float
    #: seconds from the last answer until every operation of the phase was confirmed (negative: before)
    settle_s: float

    def accept_ms(self, q: float) -> float:
        return _percentile(self.accept, q) * 1000

    def confirm_ms(self, q: float) -> float:
        return _percentile(self.confirm, q) * 1000


@dataclass(frozen=True, slots=True)
class BenchResult:
    config: BenchConfig
    database: str
    bare: Throughput
    sustained: Sustained
    latency: OpenLoop
    mirrored: int
    confirmed_total: int

    @property
    def accepted_per_s(self) -> float:
        return self.sustained.accepted_per_s

    @property
    def ratio(self) -> float:
        return self.accepted_per_s / self.bare.rps if self.bare.rps else 0.0

    @property
    def keeps_up(self) -> bool:
        return self.sustained.backlog_slope <= BACKLOG_SLOPE_SHARE * self.accepted_per_s

    def figures(self) -> dict[str, float]:
        """The last line's JSON: exactly the issue's keys."""
        lat = self.latency
        return {
            "accepted_per_s": round(self.accepted_per_s, 1),
            "confirmed_per_s": round(self.sustained.confirmed_per_s, 1),
            "bare_per_s": round(self.bare.rps, 1),
            "p50_accept_ms": round(lat.accept_ms(50), 2),
            "p99_accept_ms": round(lat.accept_ms(99), 2),
            "p50_confirm_ms": round(lat.confirm_ms(50), 1),
            "p99_confirm_ms": round(lat.confirm_ms(99), 1),
            "seconds": round(self.sustained.seconds, 1),
        }

    def table(self) -> str:
        c, s, lat = self.config, self.sustained, self.latency
        mining = f"a block every {c.block_time} s (interval mining)" if c.block_time else "automine"
        threads = c.threads if c.threads is not None else "default"
        drained = f"{s.drain_s:.1f} s" if s.drain_s is not None else f"not within {c.drain_timeout_s:g} s"
        lines = [
            f"chain: anvil, {mining}, 1e9 gas per block; database: {self.database}",
            f"servers: uvicorn, {c.workers} worker processes each ({threads} threads), h11, asyncio, no "
            "access log; loyalty batcher --partner 1 (200 items, 200 ms, 16 in flight) and loyalty index in "
            f"processes of their own; {os.cpu_count()} cores shared with wrk, anvil, the database and this "
            "script",
            "",
            f"wrk, 1 thread, {c.connections} connections, each request a new purchase",
            f"{'endpoint':<50}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'seconds':>9}",
            "-" * 97,
        ]
        for t, seconds in ((s.wrk, s.wrk_seconds), (self.bare, c.bare_s)):
            lines.append(
                f"{t.name:<50}{t.rps:>10,.0f}{t.p50_ms:>9.1f}{t.p99_ms:>9.1f}{t.requests:>10,}{seconds:>9.1f}"
            )
        lines += [
            "",
            f"sustained window: {s.seconds:.1f} s of wrk's run ({c.ramp_s:g} s after it started), "
            f"{s.blocks} blocks",
            f"  accepted  {s.created:>9,}  {s.accepted_per_s:>7,.0f}/s  (operations committed to the outbox; "
            f"{self.ratio:.2f} of the bare endpoint's {self.bare.rps:,.0f}/s)",
            f"  confirmed {s.confirmed:>9,}  {s.confirmed_per_s:>7,.0f}/s  (operations that became confirmed "
            "in the window)",
            f"  backlog (accepted, not confirmed): start {s.backlog_at(0):,}, middle {s.backlog_at(0.5):,}, "
            f"end {s.backlog_at(1):,}; least-squares slope {s.backlog_slope:+,.1f} items/s; the rest "
            f"confirmed {drained} after wrk stopped",
        ]
        lines += _cpu_lines(s)
        lines += [
            "",
            f"open loop: POST /v1/purchases at {lat.rate}/s for {lat.seconds:g} s ({len(lat.accept):,} "
            f"answers, the last {lat.answered_s:.1f} s after the first send; {lat.errors} errors; latency "
            f"from the scheduled send, sends at most {lat.max_send_delay * 1000:.1f} ms late)",
            f"  accept (to the 201):    p50 {lat.accept_ms(50):.2f} ms, p90 {lat.accept_ms(90):.2f} ms, "
            f"p99 {lat.accept_ms(99):.2f} ms, max {lat.accept_ms(100):.2f} ms",
            f"  committed to confirmed: p50 {lat.confirm_ms(50):.0f} ms, p90 {lat.confirm_ms(90):.0f} ms, "
            f"p99 {lat.confirm_ms(99):.0f} ms, max {lat.confirm_ms(100):.0f} ms (the operations table "
            f"polled every {CONFIRM_POLL_S * 1000:.0f} ms); the last confirmed {lat.settle_s:+.1f} s from "
            "the last answer",
            "",
            f"checks: the mirror holds {self.mirrored:,} batch items for {self.confirmed_total:,} confirmed "
            "purchases; three balances on chain equal their operations' points",
            "",
        ]
        checks = [
            (f"confirmed >= {TARGET_CONFIRMED_PER_S:,.0f}/s", s.confirmed_per_s >= TARGET_CONFIRMED_PER_S),
            (f"backlog does not grow (slope <= {BACKLOG_SLOPE_SHARE:.0%} of accepted/s)", self.keeps_up),
            (f"accepted/bare >= {TARGET_RATIO}", self.ratio >= TARGET_RATIO),
            (
                f"p99 accept at {lat.rate}/s < {TARGET_P99_ACCEPT_MS:g} ms",
                lat.accept_ms(99) < TARGET_P99_ACCEPT_MS,
            ),
        ]
        lines.append("targets: " + ", ".join(f"{name} [{'met' if ok else 'MISSED'}]" for name, ok in checks))
        return "\n".join(lines)


def _cpu_lines(s: Sustained) -> list[str]:
    if s.cpu is None:
        return ["  (no /proc: CPU use not measured)"]
    cpu, per = s.cpu, 1000 / max(s.created, 1)
    available = cpu.cores * s.seconds
    ours = sum(cpu.components.values())
    lines = [
        f"  CPU in the window: the machine {cpu.machine_busy:,.1f} of {available:,.1f} core-seconds busy "
        f"({cpu.machine_busy / available:.0%}); CPU ms per accepted purchase:",
    ]
    for name, seconds in [
        *cpu.components.items(),
        ("other processes on the machine", cpu.machine_busy - ours),
    ]:
        lines.append(f"    {name:<52}{seconds * per:>8.2f} ms  ({seconds:,.1f} s)")
    return lines


# --------------------------------------------------------------------------- 1. the chain


@dataclass(frozen=True, slots=True)
class Chain:
    url: str
    ledger: str
    manifest_path: Path
    operator: str


def deploy(node_url: str, tmp: Path, block_time: int) -> Chain:
    from web3 import HTTPProvider, Web3

    from chain import Ledger, PartnerId, Points, RevertDecoder, Rpc, Sender, load_artifact
    from chain import deploy_ledger as deploy_ledger_contract
    from chain._signer import dev_signers

    w3 = Web3(HTTPProvider(node_url, request_kwargs={"timeout": 60}))
    artifact = load_artifact("LoyaltyLedger")
    decoder = RevertDecoder([artifact.abi])
    rpc = Rpc(w3, decoder=decoder)
    admin, operator = dev_signers(rpc.chain_id(), count=2)
    sender = Sender(rpc, admin, decoder=decoder)
    manifest = deploy_ledger_contract(
        sender,
        name="Coalition Points",
        symbol="PTS",
        admin=admin.address,
        epoch_length=EPOCH_LENGTH,
        validity=12,
        settlement_value=1,
        artifact=artifact,
    )
    path = tmp / "deployment.json"
    manifest.write(path)
    address = manifest.ledger.address
    Ledger(rpc, address, sender=sender, artifact=artifact).register_partner(
        PartnerId(PARTNER), operator.address, allowance=Points(10**15)
    ).wait()
    if block_time:
        rpc.request("evm_setIntervalMining", [block_time])
    return Chain(node_url, address, path, operator.address)


# --------------------------------------------------------------------------- 2. the service


@contextmanager
def database(spec: str, tmp: Path) -> Iterator[str]:
    """A URL of an empty database: a scratch schema of the PostgreSQL database ``spec`` (dropped at the
    end), or a SQLite file in ``tmp`` when ``spec`` is ``sqlite``."""
    if spec == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    from indexer import scratch_schema

    with scratch_schema(spec, prefix="bench_earn") as url:
        yield (
            make_url(url)
            .update_query_dict({"application_name": APPLICATION})
            .render_as_string(hide_password=False)
        )


def prepare_database(url: str) -> tuple[Engine, str]:
    """Migrates the database; makes a partner key and the partner's active rule set. Returns this
    script's engine and the key's token."""
    from api._db import migrate_all
    from api._keys import create_key
    from api._rulebook import activate, create_rule_set
    from api._rules import RuleSet
    from indexer import make_engine

    engine = make_engine(url)
    migrate_all(engine)
    with Session(engine) as db, db.begin():
        token = create_key(db, role="partner", name="bench", partner_id=PARTNER, now=int(time.time())).token
        record = create_rule_set(db, PARTNER, RuleSet.model_validate(RULES), now=0, created_by=None)
        activate(db, PARTNER, record.hash, now=0, activated_by=None)
    return engine, token


class _Process:
    """A command in a process of its own, its output in ``log``; ready once ``probe`` (a URL) answers 200
    or, without one, once ``ready_line`` appears in its log."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        probe: str | None = None,
        ready_line: str | None = None,
    ) -> None:
        self.name, self.log, self.probe, self.ready_line = name, log, probe, ready_line
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

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text()[-2000:]
            raise BenchmarkFailed(f"{self.name} exited with {self.process.returncode}: {tail}")

    def is_ready(self) -> bool:
        self.check()
        if self.probe is not None:
            try:
                return httpx.get(self.base + self.probe, timeout=5).status_code == 200
            except httpx.TransportError:
                return False
        return self.ready_line is None or self.ready_line in self.log.read_text()

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after 30 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running(
    processes: Sequence[tuple[str, list[str], Path, dict[str, str]]], env: dict[str, str]
) -> Iterator[list[_Process]]:
    """Starts every process at once, yields them once all are ready, stops them all at the end."""
    started: list[_Process] = []
    try:
        for name, argv, log, readiness in processes:
            started.append(_Process(name, argv, env, log, **readiness))
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(started)
        while waiting:
            waiting = [p for p in waiting if not p.is_ready()]
            if waiting and time.monotonic() > deadline:
                raise BenchmarkFailed(f"{waiting[0].name} was not ready in {START_TIMEOUT_S:g} s")
            time.sleep(0.2)
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def _environment(url: str, chain: Chain, config: BenchConfig, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=url,
        LOYALTY_RPC_URL=chain.url,
        LOYALTY_MANIFEST_PATH=str(chain.manifest_path),
        LOYALTY_API_WORKERS=str(config.workers),
        LOYALTY_KEYSTORE_DIR=str(tmp / "keystore"),  # no password: no custody (purchases need none)
        LOYALTY_RATE_LIMIT_PER_KEY=UNLIMITED,
        PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")])),
    )
    if config.threads is not None:
        env["LOYALTY_API_THREADS"] = str(config.threads)
    return env


# --------------------------------------------------------------------------- the operations table


def _states(engine: Engine) -> Counter[str]:
    from api._tables import Operation

    with engine.connect() as conn:
        rows = conn.execute(select(Operation.state, func.count()).group_by(Operation.state)).all()
    return Counter({state: int(count) for state, count in rows})


def _sample(engine: Engine, origin: float) -> Sample:
    states = _states(engine)
    return Sample(
        at=time.monotonic() - origin,
        total=sum(states.values()),
        confirmed=states["confirmed"],
        backlog=sum(states[s] for s in BACKLOG_STATES),
        failed=states["failed"],
    )


def drain(engine: Engine, timeout: float, *watch: _Process) -> float | None:
    """Seconds until nothing is left to confirm (None: not within ``timeout``); fails on a failed
    operation or a process that died."""
    started = time.monotonic()
    while True:
        for process in watch:
            process.check()
        states = _states(engine)
        if states["failed"]:
            raise BenchmarkFailed(f"{states['failed']} operations failed (see the batcher's log)")
        if not any(states[s] for s in BACKLOG_STATES):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.2)


def _block_number(url: str) -> int:
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    return int(answer.json()["result"], 16)


# --------------------------------------------------------------------------- 3, 4. wrk

_LUA = """
local path = os.getenv("BENCH_PATH")
local run = os.getenv("BENCH_RUN")
local token = os.getenv("BENCH_TOKEN")
local hex = "0123456789abcdef"
local counter = 0
math.randomseed(tonumber(os.getenv("BENCH_SEED")))

local function address()
  local digits = {}
  for i = 1, 40 do
    local k = math.random(16)
    digits[i] = hex:sub(k, k)
  end
  return "0x" .. table.concat(digits)
end

request = function()
  counter = counter + 1
  local id = run .. "-" .. counter
  local quantity = math.random(3)
  local body = string.format(
    '{"order_id":"%s","member":{"address":"%s"},"channel":"pos","store":"bench-01","currency":"EUR",'
      .. '"amount":%d,"lines":[{"sku":"LATTE","category":"coffee","quantity":%d,"unit_price":%d}]}',
    id, address(), quantity * UNIT_PRICE, quantity, UNIT_PRICE)
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = id,
  }
  return wrk.format("POST", path, headers, body)
end
""".replace("UNIT_PRICE", str(UNIT_PRICE))


def _wrk(
    base: str,
    path: str,
    seconds: float,
    config: BenchConfig,
    env: dict[str, str],
    script: Path,
    started: Callable[[int], None] = lambda _pid: None,
) -> str:
    """wrk's report of ``seconds`` of purchases posted to ``path`` (``started`` is told its process id)."""
    run = secrets.token_hex(4)
    with subprocess.Popen(
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
        env={**env, "BENCH_PATH": path, "BENCH_RUN": f"w{run}", "BENCH_SEED": str(random.getrandbits(31))},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        started(process.pid)
        try:
            out, err = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise BenchmarkFailed(f"wrk did not finish in {seconds + 60:g} s") from None
    if process.returncode != 0:
        raise BenchmarkFailed(f"wrk failed: {err or out}")
    return out


def _throughput(name: str, text: str) -> Throughput:
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if bad:
        raise BenchmarkFailed(f"{name}: {bad[1]} answers were not 2xx:\n{text}")
    errors = re.search(r"Socket errors: (.*)", text)
    if errors and re.search(r"timeout [1-9]|read [1-9]|write [1-9]", errors[1]):
        raise BenchmarkFailed(f"{name}: socket errors: {errors[1]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    return Throughput(name, rps, _wrk_ms(text, "50%"), _wrk_ms(text, "99%"), requests)


def bare_throughput(
    base: str, config: BenchConfig, env: dict[str, str], script: Path, say: Callable[[str], None]
) -> Throughput:
    _wrk(base, "/bare/purchases", config.warmup_s, config, env, script)
    text = _wrk(base, "/bare/purchases", config.bare_s, config, env, script)
    result = _throughput("POST /bare/purchases (validates PurchaseCreate)", text)
    say(f"bare: {result.rps:,.0f} req/s")
    return result


def sustained(
    base: str,
    engine: Engine,
    node_url: str,
    config: BenchConfig,
    env: dict[str, str],
    script: Path,
    components: dict[str, list[int]],
    watch: Sequence[_Process],
    say: Callable[[str], None],
) -> Sustained:
    """A warm-up, a wait until it is confirmed, then wrk for ``ramp_s + duration_s`` and a second more;
    the window is the ``duration_s`` after the ramp, wholly inside wrk's run."""
    _wrk(base, "/v1/purchases", config.warmup_s, config, env, script)
    if drain(engine, config.drain_timeout_s, *watch) is None:
        raise BenchmarkFailed(f"the warm-up's purchases were not confirmed in {config.drain_timeout_s:g} s")
    say(f"warm-up confirmed; wrk for {config.ramp_s + config.duration_s + 1:g} s")
    samples: list[Sample] = []
    marks: list[tuple[_CpuSnapshot | None, int]] = []
    stop = threading.Event()
    origin = time.monotonic()

    def sampler() -> None:
        while not stop.is_set():
            sample = _sample(engine, origin)
            if not marks and sample.at >= config.ramp_s:
                marks.append((_cpu_snapshot(engine, components), _block_number(node_url)))
            if marks:
                samples.append(sample)
                if sample.at >= config.ramp_s + config.duration_s:
                    marks.append((_cpu_snapshot(engine, components), _block_number(node_url)))
                    return
            stop.wait(SAMPLE_EVERY_S)

    thread = threading.Thread(target=sampler, name="sampler", daemon=True)
    thread.start()
    try:
        seconds = config.ramp_s + config.duration_s + 1
        text = _wrk(
            base, "/v1/purchases", seconds, config, env, script, lambda pid: components.update(wrk=[pid])
        )
    finally:
        stop.set()
        thread.join()
    result = _throughput("POST /v1/purchases (partner key)", text)
    if len(marks) != 2:
        raise BenchmarkFailed("the sampler did not see the window through (wrk stopped early?)")
    for process in watch:
        process.check()
    drained = drain(engine, config.drain_timeout_s, *watch)
    (cpu_start, first_block), (cpu_end, last_block) = marks
    window = Sustained(
        wrk=result,
        wrk_seconds=seconds,
        samples=tuple(samples),
        drain_s=drained,
        blocks=last_block - first_block,
        cpu=_cpu_use(cpu_start, cpu_end),
    )
    say(
        f"sustained: {window.accepted_per_s:,.0f} accepted/s, {window.confirmed_per_s:,.0f} confirmed/s, "
        f"backlog {window.backlog_at(0)} -> {window.backlog_at(0.5)} -> {window.backlog_at(1)}"
    )
    return window


# --------------------------------------------------------------------------- CPU accounting (Linux /proc)


@dataclass(frozen=True, slots=True)
class _CpuSnapshot:
    #: component -> {pid: CPU seconds so far}
    components: dict[str, dict[int, float]]
    machine_busy: float
    #: this process's own CPU seconds
    own: float


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _cpu_seconds(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _descendants(roots: Sequence[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _database_backends(engine: Engine) -> list[int]:
    """The PostgreSQL server processes serving this run's connections (its URL names the application)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"), {"name": APPLICATION}
        ).all()
    return [int(pid) for (pid,) in rows]


def _cpu_snapshot(engine: Engine, components: dict[str, list[int]]) -> _CpuSnapshot | None:
    """Each component's processes (and their descendants) with their CPU seconds so far; None without
    /proc."""
    if not Path("/proc/stat").exists():
        return None
    trees = {name: _descendants(pids) for name, pids in components.items()}
    if engine.dialect.name == "postgresql":
        trees["PostgreSQL (this run's connections)"] = _database_backends(engine)
    used = {
        name: {pid: _cpu_seconds(fields) for pid in pids if (fields := _stat(pid)) is not None}
        for name, pids in trees.items()
    }
    line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in line]
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    times = os.times()
    return _CpuSnapshot(used, busy, times.user + times.system)


def _cpu_use(start: _CpuSnapshot | None, end: _CpuSnapshot | None) -> CpuUse | None:
    """The CPU each component used between two snapshots (a process that started in between counts
    from zero)."""
    if start is None or end is None:
        return None
    components = {
        name: sum(seconds - start.components.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
        for name, pids in end.components.items()
    }
    components["this script (samplers)"] = end.own - start.own
    return CpuUse(components, end.machine_busy - start.machine_busy, os.cpu_count() or 1)


# --------------------------------------------------------------------------- 5. the open loop

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class _Confirmations:
    """Polls the operations table above ``baseline``: when each operation was first seen (committed) and
    when it was first seen confirmed (or failed), by this process's monotonic clock."""

    engine: Engine
    baseline: int
    seen: dict[int, float] = field(default_factory=dict)
    confirmed: dict[int, float] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)

    def poll(self, stop: threading.Event) -> None:
        from api._tables import Operation

        low = self.baseline + 1
        while not stop.is_set():
            with self.engine.connect() as conn:
                rows = conn.execute(select(Operation.id, Operation.state).where(Operation.id >= low)).all()
            now = time.monotonic()
            for op_id, state in rows:
                self.seen.setdefault(int(op_id), now)
                if state == "confirmed":
                    self.confirmed.setdefault(int(op_id), now)
                elif state in ("failed", "cancelled"):
                    self.failed.add(int(op_id))
            while low in self.confirmed:
                low += 1
            stop.wait(CONFIRM_POLL_S)


def _purchase(order_id: str) -> bytes:
    quantity = random.randint(1, 3)
    return json.dumps(
        {
            "order_id": order_id,
            "member": {"address": "0x" + secrets.token_hex(20)},
            "channel": "pos",
            "store": "bench-01",
            "currency": "EUR",
            "amount": quantity * UNIT_PRICE,
            "lines": [{"sku": "LATTE", "category": "coffee", "quantity": quantity, "unit_price": UNIT_PRICE}],
        },
        separators=(",", ":"),
    ).encode()


async def _open_loop(
    host: str, port: int, token: str, rate: int, seconds: float
) -> tuple[list[float], dict[int, float], Counter[int], int, float, float]:
    """Posts ``rate`` purchases a second for ``seconds``; returns the accept latencies, each operation's
    id with the moment its 201 arrived, the statuses, the errors, the latest send's delay and the seconds
    from the first scheduled send to the last answer."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[_Connection, float]] = []
    opened: list[asyncio.StreamWriter] = []
    latencies: list[float] = []
    accepted: dict[int, float] = {}
    statuses: Counter[int] = Counter()
    errors = 0
    run = secrets.token_hex(4)

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

    async def exchange(conn: _Connection, key: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(
            (
                f"POST /v1/purchases HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            raise BenchmarkFailed(f"an answer without Content-Length: {head!r}")
        return int(head[9:12]), await reader.readexactly(int(length[1]))

    async def one(scheduled: float, order_id: str) -> None:
        nonlocal errors
        body = _purchase(order_id)
        try:
            conn = await connection()
            status, answer = await exchange(conn, order_id, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            errors += 1
            return
        done = loop.time()
        latencies.append(done - scheduled)
        statuses[status] += 1
        if status == 201:
            accepted[int(json.loads(answer)["id"].removeprefix("op_"))] = time.monotonic()
        idle.append((conn, done))

    for _ in range(8):
        reader, writer = await asyncio.open_connection(host, port)
        opened.append(writer)
        idle.append(((reader, writer), loop.time()))
    count = int(rate * seconds)
    start = loop.time() + 0.05
    tasks = []
    late = 0.0
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, loop.time() - scheduled)
        tasks.append(asyncio.create_task(one(scheduled, f"o{run}-{i}")))
    await asyncio.gather(*tasks)
    span = loop.time() - start
    for writer in opened:
        writer.close()
    return latencies, accepted, statuses, errors, late, span


def latency(
    base: str,
    engine: Engine,
    token: str,
    config: BenchConfig,
    watch: Sequence[_Process],
    say: Callable[[str], None],
) -> tuple[OpenLoop, list[int]]:
    """The open loop; returns its figures and the ids of its operations."""
    from api._tables import Operation

    with engine.connect() as conn:
        baseline = int(conn.execute(select(func.coalesce(func.max(Operation.id), 0))).scalar_one())
    tracker = _Confirmations(engine, baseline)
    stop = threading.Event()
    poller = threading.Thread(target=tracker.poll, args=(stop,), name="confirmations", daemon=True)
    poller.start()
    try:
        host, port = base.removeprefix("http://").split(":")
        latencies, accepted, statuses, errors, late, span = asyncio.run(
            _open_loop(host, int(port), token, config.rate, config.rate_duration_s)
        )
        sent = time.monotonic()
        if set(statuses) - {201}:
            raise BenchmarkFailed(f"answers at the fixed rate were not all 201: {dict(statuses)}")
        deadline = sent + config.drain_timeout_s
        while not set(accepted) <= set(tracker.confirmed):
            for process in watch:
                process.check()
            if tracker.failed & set(accepted):
                raise BenchmarkFailed(f"{len(tracker.failed & set(accepted))} operations failed")
            if time.monotonic() > deadline:
                raise BenchmarkFailed(
                    f"the open loop's purchases were not confirmed in {config.drain_timeout_s:g} s"
                )
            time.sleep(CONFIRM_POLL_S)
        settle = max(tracker.confirmed[i] for i in accepted) - sent if accepted else 0.0
    finally:
        stop.set()
        poller.join()
    confirm = sorted(tracker.confirmed[i] - tracker.seen[i] for i in accepted)
    result = OpenLoop(
        config.rate,
        config.rate_duration_s,
        tuple(sorted(latencies)),
        tuple(confirm),
        errors,
        dict(statuses),
        late,
        span,
        settle,
    )
    say(
        f"open loop at {config.rate}/s: accept p50 {result.accept_ms(50):.2f} ms, p99 "
        f"{result.accept_ms(99):.2f} ms; confirmed p50 {result.confirm_ms(50):.0f} ms, p99 "
        f"{result.confirm_ms(99):.0f} ms"
    )
    return result, sorted(accepted)


# --------------------------------------------------------------------------- 6. checks


def check(engine: Engine, chain: Chain, sample: Sequence[int], say: Callable[[str], None]) -> tuple[int, int]:
    """Waits for the mirror to hold every confirmed purchase; compares three balances with the chain.
    Returns (entries mirrored, operations confirmed)."""
    from web3 import HTTPProvider, Web3

    from api._tables import Operation
    from chain import load_artifact
    from indexer import LedgerEntry

    with Session(engine) as db:
        confirmed = int(
            db.scalar(select(func.count()).select_from(Operation).where(Operation.state == "confirmed")) or 0
        )
    deadline = time.monotonic() + 60
    while True:
        with Session(engine) as db:
            mirrored = int(
                db.scalar(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.event == "PointsIssuedInBatch", LedgerEntry.partner_id == PARTNER)
                )
                or 0
            )
        if mirrored >= confirmed:
            break
        if time.monotonic() > deadline:
            raise BenchmarkFailed(
                f"the mirror holds {mirrored} batch items for {confirmed} confirmed purchases"
            )
        time.sleep(0.5)
    if mirrored != confirmed:
        raise BenchmarkFailed(f"the mirror holds {mirrored} batch items for {confirmed} confirmed purchases")
    w3 = Web3(HTTPProvider(chain.url))
    contract = w3.eth.contract(
        address=w3.to_checksum_address(chain.ledger), abi=load_artifact("LoyaltyLedger").abi
    )
    with Session(engine) as db:
        for op_id in random.sample(list(sample), min(3, len(sample))):
            op = db.get_one(Operation, op_id)
            balance = contract.functions.balanceOf(w3.to_checksum_address(op.member_address)).call()
            if balance != op.points:
                raise BenchmarkFailed(f"operation {op_id}: {op.points} points, the chain holds {balance}")
    say(f"checks: {mirrored:,} batch items mirrored for {confirmed:,} confirmed purchases; balances agree")
    return mirrored, confirmed


# --------------------------------------------------------------------------- the run


def run_benchmark(config: BenchConfig, database_spec: str, say: Callable[[str], None]) -> BenchResult:
    from chain._devnode import start_anvil

    wrk_binary()
    with (
        tempfile.TemporaryDirectory(prefix="bench-earn-") as scratch,
        start_anvil(ROOT, extra_args=("--gas-limit", "1000000000")) as node,
        database(database_spec, Path(scratch)) as url,
    ):
        tmp = Path(scratch)
        chain = deploy(node.url, tmp, config.block_time)
        engine, token = prepare_database(url)
        say(f"ledger {chain.ledger} deployed, partner {PARTNER} operated by {chain.operator}; database ready")
        env = _environment(url, chain, config, tmp)
        script = tmp / "purchases.lua"
        script.write_text(_LUA)
        wrk_env = {**env, "BENCH_TOKEN": token}
        loyalty = [sys.executable, "-m", "api.cli"]
        bare = [
            sys.executable, "-m", "uvicorn", "bench_earn:bare_app", "--factory", "--host", "127.0.0.1",
            "--port", "{port}", "--workers", str(config.workers), "--no-access-log",
        ]  # fmt: skip
        try:
            with running(
                [
                    ("loyalty index", [*loyalty, "index"], tmp / "index.log", {}),
                    (
                        "loyalty batcher",
                        [*loyalty, "batcher", "--partner", str(PARTNER)],
                        tmp / "batcher.log",
                        {"ready_line": "sending the outbox"},
                    ),
                    (
                        "loyalty serve",
                        [*loyalty, "serve", "--no-access-log"],
                        tmp / "serve.log",
                        {"probe": "/readyz"},
                    ),
                    ("the bare app", bare, tmp / "bare.log", {"probe": "/bare/ready"}),
                ],
                env,
            ) as (indexer, batcher, service, plain):
                say(
                    f"up: loyalty serve at {service.base}, bare FastAPI at {plain.base} "
                    f"({config.workers} workers each)"
                )
                watch = (indexer, batcher, service)
                bare_result = bare_throughput(plain.base, config, wrk_env, script, say)
                components = {
                    f"loyalty serve ({config.workers} workers)": [service.process.pid],
                    "loyalty batcher": [batcher.process.pid],
                    "loyalty index": [indexer.process.pid],
                    "anvil": [node.process.pid],
                }
                window = sustained(
                    service.base, engine, node.url, config, wrk_env, script, components, watch, say
                )
                fixed, ids = latency(service.base, engine, token, config, watch, say)
                mirrored, confirmed = check(engine, chain, ids, say)
        finally:
            engine.dispose()
    return BenchResult(
        config=config,
        database="SQLite" if database_spec == "sqlite" else "PostgreSQL (a scratch schema)",
        bare=bare_result,
        sustained=window,
        latency=fixed,
        mirrored=mirrored,
        confirmed_total=confirmed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run of every phase (under a minute)")
    parser.add_argument(
        "--database",
        help="a PostgreSQL URL (default: LOYALTY_TEST_POSTGRES_URL; the run uses a scratch schema of it) "
        "or 'sqlite'",
    )
    parser.add_argument("--workers", type=int, help="uvicorn workers of each server (default 2)")
    parser.add_argument("--threads", type=int, help="each worker's threadpool (LOYALTY_API_THREADS)")
    parser.add_argument("--connections", type=int, help="wrk's connections (default 32)")
    parser.add_argument("--duration", type=float, help="seconds of the sustained window (default 60)")
    parser.add_argument("--rate", type=int, help="the open loop's purchases per second (default 200)")
    parser.add_argument("--block-time", type=int, help="seconds between blocks (default 1; 0: automine)")
    args = parser.parse_args()
    # A SIGTERM (a CI timeout) unwinds like an exception: the processes, anvil and the schema go.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
    config = BenchConfig.quick() if args.quick else BenchConfig()
    overrides = {
        "workers": args.workers,
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "rate": args.rate,
        "block_time": args.block_time,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    spec = args.database or os.environ.get("LOYALTY_TEST_POSTGRES_URL")
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if not spec:
            raise BenchmarkFailed(
                "no database: give --database postgresql://... (or --database sqlite), or set "
                "LOYALTY_TEST_POSTGRES_URL"
            )
        result = run_benchmark(config, spec, say)
    except BenchmarkFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(result.table())
    print(json.dumps(result.figures()))


if __name__ == "__main__":
    main()
