"""task.finished events: relayed from the outbox to RabbitMQ and to the configured webhooks.

The event row is written by the database in the transaction that makes the task final
(``engine/store/events.py``). Every worker runs a :class:`Notifier`, which, when a task
finishes (woken by the same PostgreSQL notification as the synchronous ForceResync calls) and
at the latest every ``notifications.relay_interval`` seconds,

1. prepares new events: builds the body once (the task's state, counts and first failures) and
   stores it with one webhook delivery row per configured webhook;
2. publishes prepared events (``FOR UPDATE SKIP LOCKED``: one relay per row) to the events
   exchange with routing key ``task.finished`` and message id ``task-finished-<TaskId>``, and
   marks them published in the same transaction once the broker confirmed. A relay that dies
   between the confirm and that commit leaves the row unpublished, and the next pass publishes
   it again with the same message id: consumers deduplicate by it;
3. POSTs due webhook deliveries, HMAC-SHA256 signed, and records each answer; a failure is
   retried after a full-jitter exponential backoff until ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import aiohttp
import asyncpg
import orjson
import structlog

from engine.messaging.topology import TASK_FINISHED_ROUTING_KEY, Names
from engine.observability.metrics import Metrics
from engine.settings import Settings, WebhookSettings
from engine.store import events, tasks
from engine.sync.background import cancel_until_done
from engine.sync.backoff import full_jitter

log = structlog.get_logger(__name__)

EVENT_SCHEMA_VERSION = 1
EVENT_NAME = "task.finished"
TIMESTAMP_HEADER = "X-Erpsync-Timestamp"
SIGNATURE_HEADER = "X-Erpsync-Signature"
MESSAGE_ID_HEADER = "X-Erpsync-Message-Id"
EVENT_HEADER = "X-Erpsync-Event"
_BATCH = 50
_LEASE_MARGIN = 30.0
"""Seconds beyond a webhook's timeout before another worker may take a claimed delivery."""


class EventPublisher(Protocol):
    """What the relay needs of a publisher (the broker's, or the in-memory one in tests)."""

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        exchange: str | None = None,
        correlation_id: str | None = None,
        mandatory: bool = True,
    ) -> str: ...


def event_message_id(task_id: int) -> str:
    """The event's stable message id: the same on every publish and webhook delivery."""
    return f"task-finished-{task_id}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


Row = Mapping[str, Any] | asyncpg.Record


def finished_event(task: Row, failures: Sequence[Row]) -> dict[str, Any]:
    """The task.finished body of a final task row and its first failed outcomes."""
    return {
        "Event": EVENT_NAME,
        "SchemaVersion": EVENT_SCHEMA_VERSION,
        "MessageId": event_message_id(task["id"]),
        "TaskId": task["id"],
        "Name": task["name"],
        "CorrelationId": task["correlation_id"],
        "CommandMessageId": task["message_id"],
        "SourceConnectionId": task["source_connection_id"],
        "State": task["state"],
        "Stopped": task["stopped_at"] is not None,
        "Response": task["response"],
        "Created": _iso(task["created_at"]),
        "Finished": _iso(task["finished_at"]),
        "StartCount": task["start_count"],
        "Counts": tasks.record_counts(task),
        "FirstFailures": [
            {
                "InternalKeyId": f["internal_key_id"],
                "ConnectionId": f["connection_id"],
                "Error": f["error"],
            }
            for f in failures
        ],
    }


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` (docs/api.md)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: bytes, body: bytes, message_id: str, now: float) -> dict[str, str]:
    """The headers of one webhook POST (signed now: a retry carries a fresh timestamp)."""
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: EVENT_NAME,
        MESSAGE_ID_HEADER: message_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def retry_delay(attempts: int, hook: WebhookSettings) -> float | None:
    """Seconds until the next POST after ``attempts`` failed ones; None: give up."""
    if attempts >= hook.max_attempts:
        return None
    return max(0.05, full_jitter(attempts, hook.backoff_base, hook.backoff_max))


class Notifier:
    """The outbox relay and webhook sender of one engine process."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        publisher: EventPublisher,
        metrics: Metrics | None = None,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.publisher = publisher
        self.metrics = Metrics() if metrics is None else metrics
        self.exchange = Names(settings.broker.prefix).events
        self.hooks = {h.name: h for h in settings.notifications.webhooks}
        self.wakeup = wakeup
        """Set when a task finishes (PostgreSQL LISTEN): a pass runs then, not a relay
        interval later."""
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="erpsync-notifier")

    async def stop(self) -> None:
        self._stopping = True
        await cancel_until_done(self._loop)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        interval = self.settings.notifications.relay_interval
        while not self._stopping:
            if self.wakeup is None:
                await asyncio.sleep(interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), interval)
                # Cleared before the pass: a task finishing during it makes another one.
                self.wakeup.clear()
            try:
                await self.relay()
            except Exception as exc:  # broker or database away: the next pass tries again
                log.warning("notification relay pass failed", error=f"{type(exc).__name__}: {exc}")

    async def relay(self) -> tuple[int, int, int]:
        """One pass; returns (events prepared, events published, webhook POSTs made)."""
        prepared = await self.prepare()
        published = await self.publish()
        posted = await self.deliver()
        return prepared, published, posted

    async def prepare(self) -> int:
        """Build the body of new events and make their webhook deliveries."""
        limit = self.settings.notifications.first_failures
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await events.claim_unprepared(conn, _BATCH)
            if not rows:
                await events.forget_orphans(conn)
            for task in rows:
                failures = await tasks.first_failures(conn, task["id"], limit) if limit else []
                body = finished_event(task, failures)
                await events.prepare(conn, task["id"], body, list(self.hooks))
        return len(rows)

    async def publish(self) -> int:
        """Publish prepared events; each is marked published once its confirm came."""
        async with self.pool.acquire() as conn, conn.transaction():
            pending = await events.claim_unpublished(conn, _BATCH)
            if not pending:
                return 0
            sent = await asyncio.gather(
                *(self._publish_one(e) for e in pending), return_exceptions=True
            )
            for outcome in sent:
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome  # cancelled: the transaction rolls back, nothing is marked
            done = [e.task_id for e, r in zip(pending, sent, strict=True) if isinstance(r, str)]
            failed = {
                e.task_id: f"{type(r).__name__}: {r}"
                for e, r in zip(pending, sent, strict=True)
                if isinstance(r, Exception)
            }
            await events.mark_published(conn, done)
            if failed:
                await events.note_failures(conn, failed)
                log.warning(
                    "task.finished events not confirmed; retried on the next pass",
                    events=len(failed),
                    error=next(iter(failed.values())),
                )
        self.metrics.events_published(len(done))
        return len(done)

    async def _publish_one(self, event: events.PendingEvent) -> str:
        with structlog.contextvars.bound_contextvars(task_id=event.task_id):
            message_id = await self.publisher.publish(
                TASK_FINISHED_ROUTING_KEY,
                orjson.dumps(event.body),
                message_id=event_message_id(event.task_id),
                exchange=self.exchange,
                correlation_id=event.body.get("CorrelationId"),
                mandatory=False,  # an event nobody has bound a queue for is dropped, not returned
            )
            log.info("task.finished published", state=event.body.get("State"))
            return message_id

    async def deliver(self) -> int:
        """POST the due webhook deliveries of the configured webhooks."""
        if not self.hooks:
            return 0
        lease = max(h.timeout for h in self.hooks.values()) + _LEASE_MARGIN
        async with self.pool.acquire() as conn:
            due = await events.claim_due_deliveries(conn, list(self.hooks), lease, _BATCH)
        if not due:
            return 0
        if self._session is None:
            self._session = aiohttp.ClientSession()
        await asyncio.gather(*(self._post(d, self.hooks[d.webhook]) for d in due))
        return len(due)

    async def _post(self, delivery: events.DueDelivery, hook: WebhookSettings) -> None:
        assert self._session is not None
        body = orjson.dumps(delivery.body)
        url = hook.url.get_secret_value()
        message_id = event_message_id(delivery.task_id)
        headers = signed_headers(
            hook.secret.get_secret_value().encode(), body, message_id, time.time()
        )
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hook.timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.read()
        except TimeoutError:
            error = f"no answer within {hook.timeout:g}s"
        except aiohttp.ClientError as exc:
            # The URL may carry a token: never in the stored error or the log.
            error = f"{type(exc).__name__}: {exc}".replace(url, "<url>")
        delivered = status is not None and 200 <= status < 300
        if status is not None and not delivered:
            error = f"HTTP {status}"
        attempts = delivery.attempts + 1
        retry_in = None if delivered else retry_delay(attempts, hook)
        await events.delivery_answered(
            self.pool,
            delivery.id,
            status=status,
            error=error,
            delivered=delivered,
            retry_in=retry_in,
        )
        outcome = "delivered" if delivered else ("retried" if retry_in is not None else "gave_up")
        self.metrics.webhook_attempt(hook.name, outcome)
        log_method = log.info if delivered else log.warning
        log_method(
            "webhook delivery",
            task_id=delivery.task_id,
            webhook=hook.name,
            attempt=attempts,
            outcome=outcome,
            status=status,
            error=error,
            retry_in=None if retry_in is None else round(retry_in, 3),
        )
