"""Prometheus metrics: definitions and the ``/metrics`` route.

Every application gets its own :class:`Metrics` with its own ``CollectorRegistry`` (tests run many
apps in one process). ``engine/app.py`` passes it to the objects that do the work (publisher,
consumer, chunk runner, connection handles), which record with one line,
``self.metrics.<event>(...)``; built without one (unit tests, scripts), they record into a
registry of their own.

Gauges that describe shared state (batch tasks by state, queue depth) are read when scraped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from engine.store import events, incremental, reports

if TYPE_CHECKING:
    from engine.store.results import Outcome

log = structlog.get_logger(__name__)

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""Values of ``erpsync_breaker_state``."""

_MAX_CHILDREN = 4096

TASK_STATES = ("New", "Started", "Succeeded", "Failed", "SucceededManualCleanup")


class Metrics:
    """One application's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._handles: list[Any] = []
        self._pool: Any = None
        self._publisher: Any = None
        self._listening: Callable[[], bool] | None = None
        self._children: dict[tuple[Any, ...], Any] = {}
        r = self.registry
        self.http_requests = Counter(
            "erpsync_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "erpsync_http_request_duration_seconds",
            "HTTP request latency, by route template and method.",
            ["route", "method"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.delivery_wait = Histogram(
            "erpsync_delivery_wait_seconds",
            "How long a chunk or push unit waited between its publish and a worker starting it "
            "(a redelivery counts from the first publish), by lane: small (tasks of at most "
            "engine.small_task_records records) or bulk.",
            ["lane"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
        )
        self.messages_published = Counter(
            "erpsync_messages_published",
            "Messages confirmed by the broker, by routing key (resync = commands, "
            "resync.chunk = chunks).",
            ["routing_key"],
            registry=r,
        )
        self.publish_failures = Counter(
            "erpsync_publish_failures",
            "Publishes the broker did not confirm, by routing key.",
            ["routing_key"],
            registry=r,
        )
        self.messages_consumed = Counter(
            "erpsync_messages_consumed",
            "Deliveries handled, by routing key and outcome (acked, requeued, dead_lettered).",
            ["routing_key", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "erpsync_dead_letters",
            "Messages this process sent to the dead-letter exchange, by routing key.",
            ["routing_key"],
            registry=r,
        )
        self.logins_throttled = Counter(
            "erpsync_logins_throttled",
            "Password checks refused with 429 before checking, by what was throttled "
            "(client, user).",
            ["by"],
            registry=r,
        )
        self.chunks = Counter(
            "erpsync_chunks_processed",
            "Chunks committed by this process.",
            registry=r,
        )
        self.records = Counter(
            "erpsync_records_pushed",
            "Record outcomes committed, by target connection and outcome "
            "(updated, unchanged, created, failed, not_linked, unknown_key).",
            ["connection", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "erpsync_connector_retries",
            "Connector calls retried after a transient error, by connection.",
            ["connection"],
            registry=r,
        )
        self.breaker = Gauge(
            "erpsync_breaker_state",
            "Circuit breaker per connection in this process: 0 closed, 1 half-open, 2 open.",
            ["connection"],
            registry=r,
        )
        self.tasks = Gauge(
            "erpsync_batch_tasks",
            "Batch tasks in the database, by state (read when scraped).",
            ["state"],
            registry=r,
        )
        self.queue_messages = Gauge(
            "erpsync_queue_messages",
            "Messages ready in a queue, by queue (read when scraped).",
            ["queue"],
            registry=r,
        )
        self.task_events_published = Counter(
            "erpsync_task_events_published",
            "task.finished events this process published from the outbox (broker confirmed).",
            registry=r,
        )
        self.webhook_attempts = Counter(
            "erpsync_webhook_attempts",
            "Webhook POSTs this process made, by webhook and outcome (delivered, retried, "
            "gave_up).",
            ["webhook", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "erpsync_outbox_pending",
            "Notifications waiting, by kind: events (task.finished not yet confirmed by the "
            "broker), webhooks (deliveries not yet acknowledged), webhooks_given_up (read "
            "when scraped).",
            ["kind"],
            registry=r,
        )
        self.sync_runs = Counter(
            "erpsync_sync_runs",
            "Incremental sync runs by this process, by connection and outcome (ok, failed).",
            ["connection", "outcome"],
            registry=r,
        )
        self.sync_records = Counter(
            "erpsync_sync_records",
            "Changed actors seen by incremental runs of this process, by connection and what "
            "became of them (queued, echo, unlinked; late: found behind the watermark by the "
            "overlap re-read, also counted in the others).",
            ["connection", "kind"],
            registry=r,
        )
        self.sync_run_records = Histogram(
            "erpsync_sync_run_records",
            "Records queued per incremental run, by connection.",
            ["connection"],
            buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000),
            registry=r,
        )
        self.sync_lag = Gauge(
            "erpsync_sync_lag_seconds",
            "Per connection: now minus the start of the last run that read every change (every "
            "change older than this is queued; read when scraped).",
            ["connection"],
            registry=r,
        )
        self.sync_horizon_lag = Gauge(
            "erpsync_sync_horizon_lag_seconds",
            "Per connection and actor type, at this process's last run: how far behind now the "
            "connector's changed_since horizon held the read (the start of the oldest change "
            "still in flight, e.g. an open transaction: later changes wait for it); 0 when "
            "nothing held it back or the connector does not tell.",
            ["connection", "actor_type"],
            registry=r,
        )
        self.notifications_listening = Gauge(
            "erpsync_notifications_listening",
            "1 while this process's PostgreSQL LISTEN connection is up, else 0 (read when "
            "scraped): while it is down, connection toggles are seen by re-reading every 2 s and "
            "synchronous resyncs poll for their task's end.",
            registry=r,
        )
        self.queue_consumers = Gauge(
            "erpsync_queue_consumers",
            "Consumers attached to a queue, by queue (read when scraped).",
            ["queue"],
            registry=r,
        )

    # -- events, one call per call site -------------------------------------------------------

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoised: prometheus_client takes a lock and builds
        the key on every call, which shows on the front door's hot path."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)
            if len(self._children) < _MAX_CHILDREN:  # client-chosen labels (methods) stay bounded
                self._children[key] = found
        return found

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.child(self.http_requests, route, method, str(status)).inc()
        self.child(self.http_latency, route, method).observe(seconds)

    def login_throttled(self, by: str) -> None:
        self.logins_throttled.labels(by).inc()

    def published(self, routing_key: str) -> None:
        self.child(self.messages_published, routing_key).inc()

    def waited(self, lane: str, seconds: float) -> None:
        self.child(self.delivery_wait, lane).observe(seconds)

    def publish_failed(self, routing_key: str) -> None:
        self.publish_failures.labels(routing_key).inc()

    def consumed(self, routing_key: str | None, outcome: str) -> None:
        self.messages_consumed.labels(routing_key or "", outcome).inc()
        if outcome == "dead_lettered":
            self.dead_letters.labels(routing_key or "").inc()

    def chunk_committed(self, outcomes: Iterable[Outcome]) -> None:
        self.chunks.inc()
        for outcome in outcomes:
            connection = "" if outcome.connection_id is None else str(outcome.connection_id)
            self.records.labels(connection, outcome.status).inc()

    def events_published(self, count: int) -> None:
        if count:
            self.task_events_published.inc(count)

    def webhook_attempt(self, webhook: str, outcome: str) -> None:
        self.webhook_attempts.labels(webhook, outcome).inc()

    def sync_run(self, connection_id: int, outcome: str, counts: Any) -> None:
        """One incremental run ended (``counts``: :class:`engine.store.incremental.RunCounts`)."""
        label = str(connection_id)
        self.sync_runs.labels(label, outcome).inc()
        for kind, n in (
            ("queued", counts.queued),
            ("echo", counts.echoes),
            ("unlinked", counts.unlinked),
            ("late", counts.late),
        ):
            if n:
                self.sync_records.labels(label, kind).inc(n)
        self.sync_run_records.labels(label).observe(counts.queued)

    def sync_horizon(self, connection_id: int, actor_type: str, lag: float) -> None:
        self.sync_horizon_lag.labels(str(connection_id), actor_type).set(lag)

    def connector_retry(self, connection_id: int) -> None:
        self.retries.labels(str(connection_id)).inc()

    def breaker_state(self, connection_id: int, state: str) -> None:
        """Record a breaker transition (``closed``, ``half_open`` or ``open``)."""
        self.breaker.labels(str(connection_id)).set(BREAKER_STATES[state])

    def breaker_states(self) -> dict[int, str]:
        """The breaker state per connection id of this process's engine."""
        self.refresh_breakers()
        names = {v: k for k, v in BREAKER_STATES.items()}
        out: dict[int, str] = {}
        for metric in self.breaker.collect():
            for sample in metric.samples:
                out[int(sample.labels["connection"])] = names.get(int(sample.value), "unknown")
        return out

    def watch_breakers(self, handles: Iterable[Any]) -> None:
        """Read the breaker states from these connection handles (the engine's)."""
        self._handles = list(handles)
        self.refresh_breakers()

    def watch_store(self, pool: Any) -> None:
        """Count the batch tasks by state in this pool's database when scraped."""
        self._pool = pool

    def watch_queues(self, publisher: Any) -> None:
        """Read the queue depths through this publisher's topology when scraped."""
        self._publisher = publisher

    def watch_listener(self, listening: Callable[[], bool]) -> None:
        """Read whether the process's LISTEN connection is up when scraped."""
        self._listening = listening

    def refresh_breakers(self) -> None:
        """Copy each connection breaker's current state into the gauge."""
        for handle in self._handles:
            breaker = getattr(handle, "breaker", None)
            self.breaker_state(handle.id, breaker.state if breaker is not None else "closed")


def route_label(request: web.Request) -> str:
    """The ``route`` label of a request: its route's template, never the raw path (ids in
    paths must not explode the label set); ``unmatched`` when no route matched."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


async def _refresh(metrics: Metrics) -> None:
    """Read the scrape-time gauges; a part that does not answer keeps its last values."""
    metrics.refresh_breakers()
    if metrics._listening is not None:
        metrics.notifications_listening.set(1 if metrics._listening() else 0)
    pool = metrics._pool
    if pool is not None:
        try:
            async with asyncio.timeout(2):
                counts = await reports.task_counts_by_state(pool)
        except Exception as exc:
            log.warning("metrics: task counts unavailable", error=type(exc).__name__)
        else:
            for state in {*TASK_STATES, *counts}:
                metrics.tasks.labels(state).set(counts.get(state, 0))
        try:
            async with asyncio.timeout(2):
                outbox = await events.counts(pool)
        except Exception as exc:
            log.warning("metrics: outbox counts unavailable", error=type(exc).__name__)
        else:
            metrics.outbox_pending.labels("events").set(outbox.events_pending)
            metrics.outbox_pending.labels("webhooks").set(outbox.deliveries_pending)
            metrics.outbox_pending.labels("webhooks_given_up").set(outbox.deliveries_given_up)
        try:
            async with asyncio.timeout(2):
                lags = await incremental.lag_by_connection(pool)
        except Exception as exc:
            log.warning("metrics: sync lag unavailable", error=type(exc).__name__)
        else:
            for connection_id, lag in lags.items():
                metrics.sync_lag.labels(str(connection_id)).set(lag)
    publisher = metrics._publisher
    topology = publisher.topology if publisher is not None else None
    if topology is not None and publisher is not None and publisher.is_open:
        queues = (
            topology.commands,
            topology.chunks,
            *topology.push.values(),
            *([topology.small] if topology.small is not None else []),
            *topology.small_push.values(),
            topology.dead_letters,
        )
        for queue in queues:
            try:
                async with asyncio.timeout(2):
                    # Re-declaring with the same arguments is idempotent and returns counts.
                    result = await queue.declare()
            except Exception as exc:
                log.warning("metrics: queue depth unavailable", error=type(exc).__name__)
                break
            metrics.queue_messages.labels(queue.name).set(result.message_count or 0)
            metrics.queue_consumers.labels(queue.name).set(result.consumer_count or 0)


def routes(metrics: Metrics) -> list[web.RouteDef]:
    """``GET /metrics``: the Prometheus text exposition of ``metrics``."""

    async def metrics_endpoint(request: web.Request) -> web.Response:
        await _refresh(metrics)
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return [web.get("/metrics", metrics_endpoint)]
