"""Prometheus metrics (``GET /metrics``): the requests the app served, and the state of what it runs on,
read at scrape time.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (:class:`Metrics`), never the library's
global one: tests and several apps in one process do not collide, and ``/metrics`` shows exactly one app.

**Requests** (:class:`MetricsMiddleware`, counted as they are served)::

    loyalty_http_requests_total{method, route, status}              counter
    loyalty_http_request_duration_seconds{method, route, status}    histogram
    loyalty_http_requests_in_flight                                  gauge

``route`` is the route's template (``/v1/partners/{partner_id}``), never the raw path, so the series stay
few; a path no route matches is ``unmatched``, a method outside HTTP's own is ``other``.

**State, read when scraped** (:class:`ServiceCollector`; each read is a primary-key lookup or an index
range, and a part that fails, say the chain is unreachable, is left out of that scrape and counted in
``loyalty_scrape_errors_total{source}`` instead of failing it)::

    loyalty_mirror_block                       the mirror's cursor (its last complete block)
    loyalty_mirror_entries                     ledger entries mirrored (``ledger_state.seq``): only grows but
                                               on a reorganisation, so ``rate()`` gives entries per second
    loyalty_chain_head_block                   the chain's latest block
    loyalty_mirror_lag_blocks                  head - cursor
    loyalty_mirror_lag_seconds                 the head's timestamp - the cursor block's
    loyalty_outbox_operations{partner, state}  operations not yet sent or mined (pending, accepted,
                                               submitted), 0 for each mirrored partner with none
    loyalty_outbox_oldest_age_seconds{partner, state}
                                               how long the oldest has waited: since it was due
                                               (``release_at``) when accepted or submitted, since it was
                                               made when pending
    loyalty_confirmation_latency_seconds{partner}
                                               histogram: from due (``release_at``) to confirmed
                                               (``updated_at`` as the batcher marked it confirmed)
    loyalty_webhook_deliveries{state}          deliveries by state (pending, sending, succeeded, failed:
                                               retries exhausted, cancelled)
    loyalty_webhook_deliveries_retrying        pending deliveries whose earlier attempts failed
    loyalty_webhook_oldest_due_age_seconds     how late the most overdue pending delivery is
    loyalty_scrape_errors_total{source}        parts of scrapes that failed: mirror, chain, outbox,
                                               confirmations, webhooks
    loyalty_scrape_duration_seconds            how long reading the state took

**Confirmation latency is a histogram fed at scrape time** from the operations confirmed since the last
scrape (not a gauge of p50/p99 over the last hour): each scrape reads only the rows confirmed since the
previous one (an index range on ``(state, release_at)``), where a rolling hour's quantiles would read an
hour of rows on every scrape; and a histogram's buckets add up across partners and replicas and answer any
quantile over any window (``histogram_quantile(0.99, rate(..._bucket[1h]))``) and the confirmation rate
(``rate(..._count)``), which precomputed quantiles cannot. The scan covers operations due within
:data:`CONFIRMATION_HORIZON_S` before the last scrape; one still open past that is remembered by id and
looked up by its key until it ends, so a slow confirmation is counted too, with its whole latency. A
process counts what is confirmed after it started (a restart is a counter reset, as Prometheus expects).

**Process-wide counts** (from the chain layer's and the indexer's observer hooks, registered once per
process by :func:`install_hooks`; what the batcher and the indexer do in *this* process)::

    loyalty_rpc_errors_total{class, retryable}  failed node calls by error class (each failed attempt;
                                                a contract's revert is its answer, not counted)
    loyalty_reorgs_total                        reorganisations the indexer undid
    loyalty_reorg_entries_removed_total         entries they removed

An indexer or a batcher run in a process of its own (``loyalty index``, ``loyalty batcher``) serves these
from :func:`serve_process_metrics` on a port of its own; in ``loyalty run`` they share the app's process,
and its ``/metrics`` shows them.

The state read from the database is the same from every replica: sum series of one replica (or take
``max`` across replicas), not several.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chain import ChainError, ContractRevert, RetryableError
from chain._rpc import RPC_ERROR_OBSERVERS
from indexer import Block, Cursor, LedgerEntry, LedgerState, Partner
from indexer._indexer import REORG_OBSERVERS

from ._errors import NotReady
from ._tables import Operation, WebhookDelivery

if TYPE_CHECKING:
    from ._services import Services

__all__ = [
    "CONFIRMATION_BUCKETS",
    "CONFIRMATION_HORIZON_S",
    "CONFIRMATION_SLACK_S",
    "CONTENT_TYPE",
    "Metrics",
    "MetricsMiddleware",
    "ServiceCollector",
    "install_hooks",
    "serve_process_metrics",
]

#: The exposition format's content type (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds (whole: the outbox's times are Unix seconds) from due to confirmed.
CONFIRMATION_BUCKETS: Final = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600)
#: How far before the last scrape the scan for new confirmations looks (see the module docstring).
CONFIRMATION_HORIZON_S: Final = 300
#: A confirmation is committed a moment after its ``updated_at`` was taken, and batchers' clocks differ a
#: little: each scan reaches this far behind the newest ``updated_at`` already seen (ids already counted
#: are skipped).
CONFIRMATION_SLACK_S: Final = 60
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Operation states still on their way to the chain.
OPEN_STATES: Final = ("pending", "accepted", "submitted")
WEBHOOK_STATES: Final = ("pending", "sending", "succeeded", "failed", "cancelled")
SOURCES: Final = ("mirror", "chain", "outbox", "confirmations", "webhooks")
_HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
#: Ids looked up per statement when following operations still open past the horizon.
_CHUNK: Final = 500

logger = logging.getLogger(__name__)
access_log = logging.getLogger("api.access")


# --------------------------------------------------------------------------- process-wide counts


class _ProcessCounts(Collector):
    """What the chain layer's and the indexer's hooks report in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rpc_errors: dict[tuple[str, str], int] = {}
        self.reorgs = 0
        self.reorg_entries_removed = 0

    def rpc_error(self, error: ChainError) -> None:
        if isinstance(error, ContractRevert):
            return
        key = (type(error).__name__, "true" if isinstance(error, RetryableError) else "false")
        with self._lock:
            self.rpc_errors[key] = self.rpc_errors.get(key, 0) + 1

    def reorg(self, ancestor: int, removed: int) -> None:
        with self._lock:
            self.reorgs += 1
            self.reorg_entries_removed += removed

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.families()

    def families(self) -> list[Metric]:
        with self._lock:
            errors = dict(self.rpc_errors)
            reorgs, removed = self.reorgs, self.reorg_entries_removed
        rpc = CounterMetricFamily(
            "loyalty_rpc_errors",
            "Failed node calls in this process, by error class (each failed attempt; reverts not counted).",
            labels=["class", "retryable"],
        )
        for (cls, retryable), count in sorted(errors.items()):
            rpc.add_metric([cls, retryable], count)
        return [
            rpc,
            CounterMetricFamily(
                "loyalty_reorgs", "Chain reorganisations the indexer in this process undid.", value=reorgs
            ),
            CounterMetricFamily(
                "loyalty_reorg_entries_removed",
                "Mirrored ledger entries those reorganisations removed.",
                value=removed,
            ),
        ]


_COUNTS = _ProcessCounts()
_HOOKS_LOCK = threading.Lock()
_hooks_installed = False


def install_hooks() -> None:
    """Registers this process's counters with the chain layer's and the indexer's observer lists (once)."""
    global _hooks_installed
    with _HOOKS_LOCK:
        if not _hooks_installed:
            RPC_ERROR_OBSERVERS.append(_COUNTS.rpc_error)
            REORG_OBSERVERS.append(_COUNTS.reorg)
            _hooks_installed = True


def serve_process_metrics(host: str, port: int) -> tuple[str, Callable[[], None]]:
    """Serves this process's own counts (RPC errors by class, reorganisations) at ``http://host:port/``
    (any path) from a thread, for a process that runs no app: ``loyalty index`` or ``loyalty batcher`` run
    apart from the API (port 0: any free port). Returns the URL and a function that stops it."""
    install_hooks()
    registry = CollectorRegistry()
    registry.register(_COUNTS)
    server, thread = start_http_server(port, host, registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return f"http://{host}:{server.server_port}/metrics", stop


# --------------------------------------------------------------------------- state read at scrape time


@dataclass
class _Histogram:
    """One label set's cumulative bucket counts and sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(CONFIRMATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(CONFIRMATION_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.counts[-1] += 1
        self.total += value


class ServiceCollector(Collector):
    """Reads the mirror, the chain, the outbox and the webhook deliveries when scraped (see the module
    docstring); one per app."""

    def __init__(self, services: Services, *, horizon_s: int = CONFIRMATION_HORIZON_S) -> None:
        self.services = services
        self.horizon_s = horizon_s
        self._lock = threading.Lock()
        self._errors = dict.fromkeys(SOURCES, 0)
        self._failing: set[str] = set()
        # Confirmations: counted up to ``_watermark`` (the newest ``updated_at`` seen), ``_seen`` the ids
        # counted within the slack before it (and when), ``_open`` the ids of operations still open past
        # the horizon.
        try:
            self._watermark = services.now()
        except Exception:  # a clock read from the chain, unreachable now: the scrapes will say so
            self._watermark = int(time.time())
        self._seen: dict[int, int] = {}
        self._open: set[int] = set()
        self._latency: dict[str, _Histogram] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time only, never at registration

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        with self._lock:
            families: list[Metric] = []
            for source, part in (
                ("mirror", self._mirror),
                ("outbox", self._outbox),
                ("confirmations", self._confirmations),
                ("webhooks", self._webhooks),
            ):
                try:
                    families += part()
                except Exception as exc:  # a part that fails is left out of this scrape, and counted
                    self._failed(source, exc)
                else:
                    self._failing.discard(source)
            families += _COUNTS.families()
            errors = CounterMetricFamily(
                "loyalty_scrape_errors",
                "Parts of /metrics scrapes that could not be read (left out of that scrape), by source.",
                labels=["source"],
            )
            for source, count in self._errors.items():
                errors.add_metric([source], count)
            families.append(errors)
        families.append(
            GaugeMetricFamily(
                "loyalty_scrape_duration_seconds",
                "Seconds this scrape took to read the service's state.",
                value=time.perf_counter() - started,
            )
        )
        return families

    def _failed(self, source: str, exc: Exception) -> None:
        """Counts a part that could not be read; says why in the log when it starts failing."""
        self._errors[source] += 1
        if source not in self._failing:
            self._failing.add(source)
            logger.warning("metrics: cannot read the %s (%s: %s)", source, type(exc).__name__, exc)

    # ------------------------------------------------------------------ the mirror and the chain

    def _mirror(self) -> list[Metric]:
        with self.services.engine.connect() as conn:
            try:
                contract = self.services.ledger_address(conn).lower()
            except NotReady:
                return []  # nothing mirrored yet: no figures, and nothing wrong
            cursor = conn.execute(select(Cursor.block_number).where(Cursor.contract == contract)).scalar()
            if cursor is None:
                return []
            seq = conn.execute(select(LedgerState.seq).where(LedgerState.contract == contract)).scalar()
            cursor_time = _block_time(conn, cursor)
        out: list[Metric] = [
            GaugeMetricFamily("loyalty_mirror_block", "The mirror's last complete block.", cursor),
            GaugeMetricFamily(
                "loyalty_mirror_entries",
                "Ledger entries mirrored (ledger_state.seq): grows but on a reorganisation; rate() gives "
                "entries per second.",
                seq or 0,
            ),
        ]
        w3 = self.services.w3
        if w3 is None:
            return out
        try:
            head = w3.eth.get_block("latest")
            head_number, head_time = int(head["number"]), int(head["timestamp"])
        except Exception as exc:  # any failure of the node: the chain's part is left out, the mirror's stays
            self._failed("chain", exc)
            return out
        self._failing.discard("chain")
        out += [
            GaugeMetricFamily("loyalty_chain_head_block", "The chain's latest block.", head_number),
            GaugeMetricFamily(
                "loyalty_mirror_lag_blocks",
                "Blocks the mirror is behind the chain's head.",
                head_number - cursor,
            ),
        ]
        if cursor_time is not None:
            out.append(
                GaugeMetricFamily(
                    "loyalty_mirror_lag_seconds",
                    "Seconds between the chain head's timestamp and the mirror's cursor block's.",
                    max(head_time - cursor_time, 0),
                )
            )
        return out

    # ------------------------------------------------------------------ the outbox

    def _outbox(self) -> list[Metric]:
        now = self.services.now()
        with self.services.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Operation.partner_id,
                    Operation.state,
                    func.count(),
                    func.min(Operation.release_at),
                    func.min(Operation.created_at),
                )
                .where(Operation.state.in_(OPEN_STATES))
                .group_by(Operation.partner_id, Operation.state)
            ).all()
            partners = conn.execute(select(Partner.partner_id)).scalars().all()
        depth = GaugeMetricFamily(
            "loyalty_outbox_operations",
            "Operations not yet sent or not yet mined, by partner and state.",
            labels=["partner", "state"],
        )
        age = GaugeMetricFamily(
            "loyalty_outbox_oldest_age_seconds",
            "How long the oldest operation has waited in its state: since due (accepted, submitted), since "
            "made (pending).",
            labels=["partner", "state"],
        )
        counts = {(str(p), s): 0 for p in partners for s in OPEN_STATES}
        for partner_id, state, count, oldest_due, oldest_made in rows:
            counts[(str(partner_id), state)] = int(count)
            since = oldest_made if state == "pending" else oldest_due
            age.add_metric([str(partner_id), state], max(now - int(since), 0))
        for (partner, state), count in sorted(counts.items()):
            depth.add_metric([partner, state], count)
        return [depth, age]

    def _confirmations(self) -> list[Metric]:
        low = self._watermark - CONFIRMATION_SLACK_S
        with _snapshot(self.services.engine) as conn:
            confirmed: list[tuple[int, int, int, int]] = [
                (int(op_id), int(partner_id), int(release_at), int(updated_at))
                for op_id, partner_id, release_at, updated_at in conn.execute(
                    select(
                        Operation.id, Operation.partner_id, Operation.release_at, Operation.updated_at
                    ).where(
                        Operation.state == "confirmed",
                        Operation.release_at >= low - self.horizon_s,
                        Operation.updated_at >= low,
                    )
                )
            ]
            ended: set[int] = set()
            for ids in _chunks(sorted(self._open)):
                for op_id, partner_id, release_at, updated_at, state in conn.execute(
                    select(
                        Operation.id,
                        Operation.partner_id,
                        Operation.release_at,
                        Operation.updated_at,
                        Operation.state,
                    ).where(Operation.id.in_(ids))
                ):
                    if state not in OPEN_STATES:
                        ended.add(op_id)
                        if state == "confirmed":
                            confirmed.append((op_id, partner_id, release_at, updated_at))
            watermark = max([self._watermark, *(row[3] for row in confirmed)])
            # Operations still open that the next scan's range does not reach (due before it): followed by
            # id until they end.
            reach = watermark - CONFIRMATION_SLACK_S - self.horizon_s
            self._open |= set(
                conn.execute(
                    select(Operation.id).where(Operation.state.in_(OPEN_STATES), Operation.release_at < reach)
                ).scalars()
            )
        for op_id, partner_id, release_at, updated_at in confirmed:
            if op_id in self._seen:
                continue
            self._seen[op_id] = updated_at
            histogram = self._latency.setdefault(str(partner_id), _Histogram())
            histogram.observe(max(updated_at - release_at, 0))
        self._open -= ended
        self._watermark = watermark
        self._seen = {i: t for i, t in self._seen.items() if t >= watermark - CONFIRMATION_SLACK_S}
        family = HistogramMetricFamily(
            "loyalty_confirmation_latency_seconds",
            "Seconds from an operation being due (accepted) to its confirmation on chain, by partner; "
            "operations confirmed since this process started.",
            labels=["partner"],
        )
        bounds = [str(float(b)) for b in CONFIRMATION_BUCKETS] + ["+Inf"]
        for partner, histogram in sorted(self._latency.items()):
            family.add_metric([partner], list(zip(bounds, histogram.counts, strict=True)), histogram.total)
        return [family]

    # ------------------------------------------------------------------ webhooks

    def _webhooks(self) -> list[Metric]:
        now = self.services.now()
        table = WebhookDelivery
        with self.services.engine.connect() as conn:
            by_state: dict[str, int] = {
                state: int(count)
                for state, count in conn.execute(select(table.state, func.count()).group_by(table.state))
            }
            retrying, oldest_due = conn.execute(
                select(
                    func.count().filter(table.attempts > 0),
                    func.min(table.next_attempt_at).filter(table.next_attempt_at <= now),
                ).where(table.state == "pending")
            ).one()
        deliveries = GaugeMetricFamily(
            "loyalty_webhook_deliveries",
            "Webhook deliveries by state (succeeded and failed only grow: rate() gives them per second).",
            labels=["state"],
        )
        for state in sorted(set(WEBHOOK_STATES) | set(by_state)):
            deliveries.add_metric([state], int(by_state.get(state, 0)))
        return [
            deliveries,
            GaugeMetricFamily(
                "loyalty_webhook_deliveries_retrying",
                "Pending webhook deliveries whose earlier attempts failed.",
                int(retrying or 0),
            ),
            GaugeMetricFamily(
                "loyalty_webhook_oldest_due_age_seconds",
                "Seconds the most overdue pending webhook delivery has been due (0: none).",
                0 if oldest_due is None else max(now - int(oldest_due), 0),
            ),
        ]


def _block_time(conn: Connection, number: int) -> int | None:
    """The timestamp of mirrored block ``number``: from the kept window, else the newest entry's."""
    timestamp = conn.execute(select(Block.timestamp).where(Block.number == number)).scalar()
    if timestamp is None:
        timestamp = conn.execute(
            select(LedgerEntry.block_timestamp).order_by(LedgerEntry.seq.desc()).limit(1)
        ).scalar()
    return None if timestamp is None else int(timestamp)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements all read one snapshot (REPEATABLE READ on PostgreSQL, an explicit
    BEGIN on SQLite), so an operation is seen either open or confirmed, never neither."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        yield conn


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


# --------------------------------------------------------------------------- the app's registry


class Metrics:
    """One app's registry: the request metrics and the :class:`ServiceCollector`."""

    def __init__(self, services: Services) -> None:
        install_hooks()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loyalty_http_requests",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "loyalty_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's end, by method, route template and status.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "loyalty_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.collector = ServiceCollector(services)
        self.registry.register(self.collector)
        self._routes: list[tuple[re.Pattern[str], str]] | None = None

    def render(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)

    def route_of(self, scope: Scope) -> str:
        """The template of the route that served ``scope``; for a request answered before routing (an
        idempotent replay, a body too large) the template its path matches; else ``unmatched``."""
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str):
            return template
        app = scope.get("app")
        if self._routes is None and app is not None:
            self._routes = _templates(app)
        path = scope.get("path", "")
        return next((t for pattern, t in self._routes or () if pattern.fullmatch(path)), "unmatched")


def _templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """Every route template the app serves, with a pattern of the paths it matches (literal parts first:
    ``/v1/members/by-customer-id/{id}`` before ``/v1/members/{member_id}/...``)."""
    templates = set(app.openapi().get("paths", {}))
    templates |= {p for p in (getattr(r, "path", None) for r in app.routes) if isinstance(p, str)}
    out = []
    for template in templates:
        parts = re.split(r"(\{[^/]+?\})", template)
        pattern = "".join("[^/]+" if p[:1] == "{" else re.escape(p) for p in parts)
        out.append((re.compile(pattern), template))
    return sorted(out, key=lambda item: (item[1].count("{"), -len(item[1])))


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: no buffering), and writes one access line per
    request (``api.access``, with the request id: uvicorn's own access lines have none)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escapes is answered 500 outside

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counted)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.dec()
            method = scope["method"] if scope["method"] in _HTTP_METHODS else "other"
            route = self.metrics.route_of(scope)
            self.metrics.observe(method, route, status, elapsed)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
