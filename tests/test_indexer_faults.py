"""The mirror through a faulty node ends identical to a clean run: every RPC failure class (HTTP 429 and 503,
connection reset, cut-off answers, timeouts, JSON-RPC rate limits, block-range and response-size limits,
a node restart) is retried with backoff, and no block range is ever skipped. Replaying a range changes
nothing.

One chain (a few hundred entries over a couple of hundred blocks) is built for the module on the session
anvil; each run indexes it into a fresh database and compares a hash of every table with a clean run's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from indexer_worker import another_database, build_chain
from rpc_proxy import FaultProxy
from sqlalchemy import select, update
from web3 import Web3

from chain import AnvilProcess, connect
from conftest import ROOT, AnvilNode, Ledger, deploy_ledger, table_digests
from indexer import Cursor, Indexer, IndexerConfig, IndexerStats, LedgerEntry, make_engine


def config(**options: Any) -> IndexerConfig:
    """``options``, with a short backoff (10 ms doubling up to 50 ms)."""
    return IndexerConfig(backoff_initial=0.01, backoff_max=0.05, **options)


#: Small ranges and window: many batches, most of the chain backfilled.
CONFIG = config(window=4, initial_range=4, max_range=8)


@dataclass
class Run:
    digests: dict[str, str]
    stats: IndexerStats
    #: (first, last) block of every committed batch, in order.
    batches: list[tuple[int, int]] = field(default_factory=list)
    cursor: int = 0


def index(
    w3: Web3,
    url: str,
    ledger: Ledger,
    config: IndexerConfig = CONFIG,
    *,
    on_commit: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Run:
    """Indexes ``ledger`` through ``w3`` into the database at ``url`` until caught up."""
    engine = make_engine(url)
    batches: list[tuple[int, int]] = []
    previous = [0]

    def committed(block: int, _added: int) -> None:
        batches.append((previous[0] + 1, block))
        previous[0] = block
        if on_commit is not None:
            on_commit(block)

    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    indexer = Indexer(
        w3,
        engine,
        ledger.address,
        deployment_block=ledger.deployment_block,
        config=config,
        on_commit=committed,
        **extra,
    )
    try:
        indexer.open()
        previous[0] = indexer.cursor().block_number
        cursor = indexer.sync()
        return Run(table_digests(engine), indexer.stats, batches, cursor)
    finally:
        indexer.close()
        engine.dispose()


def assert_nothing_skipped(run: Run, proxy: FaultProxy, ledger: Ledger) -> None:
    """The committed batches tile the chain from the deployment block, and each one's whole range was
    answered by the node and handed to the indexer untouched."""
    assert run.batches, "nothing was committed"
    assert run.batches[0][0] == ledger.deployment_block
    assert all(a[1] + 1 == b[0] for a, b in zip(run.batches, run.batches[1:], strict=False))
    assert run.batches[-1][1] == run.cursor
    answered = set(proxy.log_ranges)
    assert [b for b in run.batches if b not in answered] == []


# --------------------------------------------------------------------------- the chain and clean runs


@pytest.fixture(scope="module")
def busy_ledger(anvil_node: AnvilNode) -> Iterator[Ledger]:
    """The standard ledger with ~260 entries over ~200 blocks, for the whole module; reverted afterwards."""
    snapshot = anvil_node.snapshot()
    first = anvil_node.w3.eth.block_number + 1
    ledger = deploy_ledger(anvil_node)
    ledger.deployment_block = first
    build_chain(ledger)
    yield ledger
    anvil_node.revert(snapshot)


@pytest.fixture(scope="module")
def clean_digests(
    busy_ledger: Ledger, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, str]]:
    """Digests of a clean run (straight to the node, default ranges) into a database like the given one."""
    cache: dict[str, dict[str, str]] = {}

    def of(url: str) -> dict[str, str]:
        kind = url.split(":", 1)[0]
        if kind not in cache:
            with another_database(url, tmp_path_factory.mktemp("clean")) as clean:
                cache[kind] = index(busy_ledger.w3, clean, busy_ledger, config(window=4)).digests
        return cache[kind]

    return of


@pytest.fixture
def proxy(anvil_node: AnvilNode) -> Iterator[FaultProxy]:
    upstream = anvil_node.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    with FaultProxy(upstream).running() as running:
        yield running


def test_the_chain_is_long_enough_to_need_many_batches(
    busy_ledger: Ledger, proxy: FaultProxy, tmp_path: Path, clean_digests: Callable[[str], dict[str, str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        run = index(w3, url, busy_ledger)
    assert run.digests == clean_digests(url)
    assert run.cursor == busy_ledger.w3.eth.block_number
    assert run.stats.entries >= 250
    assert len(run.batches) >= 20
    assert run.stats.retries == run.stats.range_shrinks == 0
    assert_nothing_skipped(run, proxy, busy_ledger)


# --------------------------------------------------------------------------- one fault class at a time

#: test id -> (fault, what the proxy counts it as, a burst of consecutive faults on the run's first request,
#: how many more are spread over every request, and over eth_getLogs requests)
FAULTS = {
    "429": ("429", "429", 5, 12, 6),
    "503": ("503", "503", 5, 12, 6),
    "reset": ("reset", "reset", 5, 12, 6),
    "truncate": ("truncate", "truncate", 5, 12, 6),
    "rpc-rate-limit": ("rpc:-32005:daily request count exceeded, request rate limited", "rpc", 5, 12, 6),
    "rpc-header-not-found": ("rpc:-32000:header not found", "rpc", 5, 12, 0),
    "oversized": ("oversized", "oversized", 0, 0, 6),  # eth_getLogs only
    "timeout": ("delay:1.0", "delay", 3, 0, 2),  # each costs the client's timeout (0.4 s)
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_class_is_retried_with_backoff_and_the_mirror_is_identical(
    busy_ledger: Ledger,
    proxy: FaultProxy,
    tmp_path: Path,
    clean_digests: Callable[[str], dict[str, str]],
    name: str,
) -> None:
    fault, kind, burst, everywhere, on_logs = FAULTS[name]
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with connect(proxy.url, root=ROOT, timeout=0.4) as w3:
        # Injected after connect's probe: every request of the run draws from these queues.
        start = len(proxy.methods)
        proxy.inject([fault] * burst + ["pass", "pass", fault] * everywhere)
        proxy.inject([fault, "pass"] * on_logs, method="eth_getLogs")
        run = index(w3, url, busy_ledger, sleep=sleep)

    assert run.digests == clean_digests(url)
    assert proxy.pending() == proxy.pending("eth_getLogs") == 0, "the run outlasted the faults"
    assert proxy.hits[kind] == burst + everywhere + on_logs
    assert run.stats.retries + run.stats.range_shrinks >= proxy.hits[kind]
    # The burst hit the first request (eth_chainId): retried at the same place with exponential backoff.
    assert proxy.methods[start : start + burst + 1] == ["eth_chainId"] * (burst + 1)
    assert sleeps[:burst] == [0.01, 0.02, 0.04, 0.05, 0.05][:burst]
    assert max(sleeps, default=0) <= 0.05
    assert_nothing_skipped(run, proxy, busy_ledger)


@pytest.mark.parametrize(
    ("style", "limit"),
    [("infura", 5), ("plain", 5)],
    ids=["range-limit-with-suggestion", "range-limit-without-suggestion"],
)
def test_a_block_range_limit_shrinks_the_ranges(
    busy_ledger: Ledger,
    proxy: FaultProxy,
    tmp_path: Path,
    clean_digests: Callable[[str], dict[str, str]],
    style: str,
    limit: int,
) -> None:
    proxy.max_log_range = limit
    proxy.range_error = style
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        run = index(w3, url, busy_ledger)

    assert run.digests == clean_digests(url)
    assert proxy.hits["range-limit"] >= 10
    assert run.stats.range_shrinks == proxy.hits["range-limit"]
    assert max(high - low + 1 for low, high in proxy.log_ranges) <= limit
    # The suggested range is taken as it is; without one the range is halved (8 -> 4 blocks).
    sizes = Counter(high - low + 1 for low, high in run.batches)
    assert sizes.most_common(1)[0][0] == (limit if style == "infura" else 4)
    assert_nothing_skipped(run, proxy, busy_ledger)


def test_a_response_size_limit_takes_the_suggested_range(
    busy_ledger: Ledger, proxy: FaultProxy, tmp_path: Path, clean_digests: Callable[[str], dict[str, str]]
) -> None:
    proxy.max_log_results = 10  # blocks hold at most 6 entries: some range always fits
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        run = index(w3, url, busy_ledger)

    assert run.digests == clean_digests(url)
    assert proxy.hits["result-limit"] >= 5
    assert run.stats.range_shrinks == proxy.hits["result-limit"]
    assert_nothing_skipped(run, proxy, busy_ledger)


# ------------------------------------------------------------------ everything at once, both databases


def test_every_fault_at_once_on_both_databases(
    busy_ledger: Ledger,
    proxy: FaultProxy,
    database: str,
    clean_digests: Callable[[str], dict[str, str]],
) -> None:
    proxy.max_log_range = 6
    proxy.max_log_results = 20
    mixed = ["429", "503", "reset", "truncate", "rpc:-32005:limit exceeded", "rpc:-32000:header not found"]
    with connect(proxy.url, root=ROOT, timeout=0.4) as w3:
        proxy.inject([f for fault in mixed for f in ("pass", fault)] * 2)
        proxy.inject(
            [f for fault in [*mixed, "oversized", "delay:1.0"] for f in (fault, "pass")], method="eth_getLogs"
        )
        run = index(w3, database, busy_ledger)

    assert run.digests == clean_digests(database)
    assert proxy.pending() == proxy.pending("eth_getLogs") == 0, "the run outlasted the faults"
    for kind in ("429", "503", "reset", "truncate", "rpc", "oversized", "delay", "range-limit"):
        assert proxy.hits[kind] > 0, kind
    faults = sum(proxy.hits[k] for k in ("429", "503", "reset", "truncate", "rpc", "oversized", "delay"))
    assert run.stats.retries + run.stats.range_shrinks >= faults
    assert run.stats.range_shrinks >= proxy.hits["range-limit"] > 0
    assert_nothing_skipped(run, proxy, busy_ledger)


# --------------------------------------------------------------------------- replays


def test_replaying_ranges_changes_nothing(
    busy_ledger: Ledger, database: str, clean_digests: Callable[[str], dict[str, str]]
) -> None:
    first = index(busy_ledger.w3, database, busy_ledger)
    assert first.digests == clean_digests(database)

    # Every range read and committed again: the cursor set back (to the middle, then to before the first
    # block), as a restore of an older cursor row would, with the entries left in place.
    middle = first.batches[len(first.batches) // 2][1]
    for back_to, block_hash in (
        (middle, bytes(busy_ledger.w3.eth.get_block(middle)["hash"])),
        (busy_ledger.deployment_block - 1, None),
    ):
        engine = make_engine(database)
        with engine.begin() as conn:
            conn.execute(update(Cursor).values(block_number=back_to, block_hash=block_hash))
        engine.dispose()
        again = index(busy_ledger.w3, database, busy_ledger, config(window=4, initial_range=8))
        assert again.batches[0][0] == back_to + 1
        assert again.stats.entries == 0, "entries the mirror holds are never added twice"
        assert again.digests == first.digests

    # The store handed the same decoded rows (all of them) again, at the cursor it is at.
    engine = make_engine(database)
    try:
        with Indexer(
            busy_ledger.w3, engine, busy_ledger.address, deployment_block=busy_ledger.deployment_block
        ) as ix:
            with engine.connect() as conn:
                table = LedgerEntry.__table__
                rows = [dict(r) for r in conn.execute(select(table).order_by(table.c.seq)).mappings()]
            cursor = ix.cursor()
            (header,) = ix.source.headers([cursor.block_number])
            assert header is not None
            assert ix.store.commit_batch(rows, params=cursor.params, to_block=header, blocks=(header,)) == 0
        assert table_digests(engine) == first.digests
    finally:
        engine.dispose()
    # A second indexer on the caught-up database has nothing to do.
    again = index(busy_ledger.w3, database, busy_ledger)
    assert again.batches == [] and again.cursor == first.cursor
    assert again.digests == first.digests


# --------------------------------------------------------------------------- the node restarts


def test_a_node_restart_mid_backfill_is_waited_out(database: str, tmp_path: Path) -> None:
    """A dedicated anvil (its chain kept in a state file) stops after the indexer's second batch and comes
    back after three failed retries; the mirror equals a clean one."""
    with AnvilProcess(ROOT, state_path=tmp_path / "anvil.json", extra_args=("--accounts", "12")) as anvil:
        node = AnvilNode(anvil.w3)
        first = anvil.w3.eth.block_number + 1
        ledger = deploy_ledger(node)
        ledger.deployment_block = first
        build_chain(ledger, batches=10, every=2, gap=5)

        with another_database(database, tmp_path) as clean:
            reference = index(anvil.w3, clean, ledger).digests

        down = {"stopped": False, "failures": 0, "restarts": 0}
        commits: list[int] = []

        def on_commit(block: int) -> None:
            commits.append(block)
            if len(commits) == 2:
                anvil.stop()
                down["stopped"] = True

        def sleep(_seconds: float) -> None:
            if down["stopped"] and not anvil.running:
                down["failures"] += 1
                if down["failures"] == 3:
                    anvil.start()
                    down["restarts"] += 1

        with connect(anvil.url, root=ROOT, timeout=5) as w3:
            run = index(w3, database, ledger, on_commit=on_commit, sleep=sleep)

        assert down == {"stopped": True, "failures": 3, "restarts": 1}
        assert run.stats.retries >= 3
        assert len(run.batches) > 2
        assert run.digests == reference


# --------------------------------------------------------------------------- stale answers


def test_a_stale_log_answer_while_following_is_read_again(
    busy_ledger: Ledger, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A backend behind the others answers eth_getLogs with nothing: the ledger's sequence at the range's
    last block gives it away, and the range is read again instead of committed empty."""
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    head = busy_ledger.w3.eth.block_number
    # A window longer than the chain: every block is followed (header checks, sequence check), 8 at a time.
    following = config(window=head - busy_ledger.deployment_block + 2, follow_blocks=8)
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        proxy.inject(["pass", "stale"] * 8, method="eth_getLogs")
        run = index(w3, url, busy_ledger, following)

    assert proxy.hits["stale"] == 8
    assert run.stats.retries > 0, "some stale answers covered blocks with entries"  # the others were right
    clean = index(busy_ledger.w3, f"sqlite:///{tmp_path / 'clean.db'}", busy_ledger, following)
    assert run.digests == clean.digests


def test_a_stale_log_answer_while_backfilling_is_read_again(
    busy_ledger: Ledger, proxy: FaultProxy, tmp_path: Path, clean_digests: Callable[[str], dict[str, str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        proxy.inject(["pass", "stale"] * 8, method="eth_getLogs")
        run = index(w3, url, busy_ledger)
    assert proxy.hits["stale"] == 8
    assert run.stats.retries > 0
    assert run.digests == clean_digests(url)


def test_a_stale_answer_on_a_node_without_old_state_is_caught_by_the_next_batch(
    busy_ledger: Ledger, proxy: FaultProxy, tmp_path: Path, clean_digests: Callable[[str], dict[str, str]]
) -> None:
    """A pruned node cannot answer ledgerSequence() at old blocks, so a short answer is committed; the next
    batch's first entry shows the hole, and the indexer reads again from the last entry it holds."""
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    engine = make_engine(url)
    with Indexer(
        busy_ledger.w3, engine, busy_ledger.address, deployment_block=busy_ledger.deployment_block
    ) as first:
        first.cursor()  # the ledger's parameters are read while the node has the deployment block's state
    engine.dispose()
    proxy.inject(["rpc:-32000:missing trie node"] * 10_000, method="eth_call")
    with connect(proxy.url, root=ROOT, timeout=5) as w3:
        proxy.inject(["pass", "pass", "stale"] * 4, method="eth_getLogs")
        run = index(w3, url, busy_ledger)
    assert proxy.hits["stale"] == 4
    assert run.stats.retries > 0
    assert run.digests == clean_digests(url)
