"""Open connectors for every configured connection and call them through a per-connection gate.

The gate is where the engine owns what a connector must not: a process-wide concurrency limit,
an optional rate limit, a circuit breaker, a timeout per call, and in-process retries of
transient errors with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiolimiter import AsyncLimiter

from connectors.contract import ConnectorContext, ConnectorError, TransientError
from connectors.registry import load as load_connector
from engine.observability.metrics import Metrics
from engine.settings import ConnectionSettings, Settings
from engine.sync.backoff import full_jitter
from engine.sync.breaker import CircuitBreaker
from engine.sync.slots import LaneSlots

log = structlog.get_logger(__name__)

R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]


class CallFailed(Exception):
    """A connector call failed for good in this run.

    ``kind`` is transient, permanent or configuration; ``retry_after`` is the earliest sensible
    time (seconds) for a delayed retry, e.g. the rest of an open breaker's cool-down.
    """

    def __init__(self, message: str, kind: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class ConnectionHandle:
    """One open connection: its settings, its connector and its gate.

    The gate holds across the whole process: concurrency slots (the small-task lane's callers
    served first, :mod:`engine.sync.slots`), an optional rate limiter,
    a circuit breaker, a timeout per call and in-process retries of transient errors.
    """

    settings: ConnectionSettings
    connector: Any
    slots: LaneSlots
    breaker: CircuitBreaker
    limiter: AsyncLimiter | None = None
    sleep: Sleep = asyncio.sleep
    metrics: Metrics = field(default_factory=Metrics)
    last_failure: ConnectorError | None = None
    """The failure that counted last against the breaker: the reason an open breaker gives."""

    @classmethod
    def build(
        cls, settings: ConnectionSettings, connector: Any, metrics: Metrics | None = None
    ) -> ConnectionHandle:
        limiter = None
        rate = settings.rate_limit
        if rate is not None:
            # A bucket of one second's worth of calls (or one call, below one per second).
            limiter = AsyncLimiter(rate, 1.0) if rate >= 1 else AsyncLimiter(1, 1 / rate)
        return cls(
            settings,
            connector,
            LaneSlots(settings.concurrency),
            CircuitBreaker(settings.breaker),
            limiter,
            metrics=Metrics() if metrics is None else metrics,
        )

    @property
    def id(self) -> int:
        return self.settings.id

    async def call(self, operation: Callable[[Any], Awaitable[R]], request: Any) -> R:
        """Call ``operation(request)`` within the gate; raise :class:`CallFailed` on failure."""
        name = getattr(operation, "__name__", "call")
        retry = self.settings.retry
        attempt = 0
        while True:
            attempt += 1
            if not self.breaker.allow():
                last = self.last_failure
                raise CallFailed(
                    f"{self.settings.name}: circuit open, not called"
                    + ("" if last is None else f" (last error: {last.message})"),
                    "transient" if last is None else last.kind,
                    retry_after=self.breaker.remaining(),
                )
            try:
                if self.limiter is not None:
                    await self.limiter.acquire()
                async with self.slots, asyncio.timeout(self.settings.timeout):
                    result = await operation(request)
            except TimeoutError:
                error: ConnectorError = TransientError(
                    f"{name} timed out after {self.settings.timeout:g}s"
                )
            except ConnectorError as exc:
                error = exc
            except asyncio.CancelledError:
                self.breaker.abandon()
                raise
            except Exception as exc:
                log.exception("connector raised an unexpected error", operation=name)
                error = ConnectorError(f"{type(exc).__name__}: {exc}")
            else:
                self.breaker.success()
                return result
            if error.kind != "permanent":
                # A configuration error mid-run (a table renamed away, a revoked privilege, a
                # password changed) is an outage of this target: its breaker paces the retries.
                self.breaker.failure()
                self.last_failure = error
            else:
                self.breaker.success()  # the target answered; the request was the problem
            retry_after = error.retry_after or 0.0
            # A wait longer than the in-process backoff allows would hold the delivery (and a
            # worker slot): hand it to the delayed retry, which honours it up to delayed_max.
            if (
                error.kind != "transient"
                or attempt >= retry.attempts
                or (retry_after > retry.max_delay)
            ):
                raise CallFailed(
                    f"{self.settings.name}: {error.message}",
                    error.kind,
                    retry_after=error.retry_after or 0.0,
                )
            delay = max(retry_after, full_jitter(attempt, retry.base_delay, retry.max_delay))
            log.info(
                "retrying connector call",
                connection=self.id,
                operation=name,
                attempt=attempt,
                delay=round(delay, 3),
            )
            self.metrics.connector_retry(self.id)
            await self.sleep(delay)


class Connections:
    """All connections of the configuration, opened once per process."""

    def __init__(self, handles: dict[int, ConnectionHandle]) -> None:
        self._handles = handles

    @classmethod
    async def open(cls, settings: Settings, metrics: Metrics | None = None) -> Connections:
        handles: dict[int, ConnectionHandle] = {}
        database_url = settings.database.url.get_secret_value()
        try:
            for conn in settings.all_connections:
                connector = await open_connector(conn, database_url, log.bind(connection=conn.id))
                log.info(
                    "connection opened",
                    connection=conn.id,
                    name=conn.name,
                    connector=conn.connector,
                )
                handles[conn.id] = ConnectionHandle.build(conn, connector, metrics)
        except BaseException:
            await cls(handles).close()
            raise
        return cls(handles)

    def get(self, connection_id: int) -> ConnectionHandle:
        return self._handles[connection_id]

    @property
    def crm(self) -> ConnectionHandle:
        return self._handles[0]

    def names(self) -> dict[int, str]:
        """Connection names by id (for task summaries)."""
        return {cid: handle.settings.name for cid, handle in self._handles.items()}

    def erps(self) -> list[ConnectionHandle]:
        return [h for cid, h in sorted(self._handles.items()) if cid > 0]

    async def close(self) -> None:
        for handle in self._handles.values():
            try:
                await handle.connector.aclose()
            except Exception:
                log.exception("connector failed to close", connection=handle.id)


def build_connector(conn: ConnectionSettings, database_url: str, logger: Any = None) -> Any:
    """The connection's connector, configured but not opened (the one place connectors are made).

    Raises :class:`~connectors.registry.ConnectorLoadError` when it cannot be loaded and
    pydantic's ``ValidationError`` when its settings do not fit its config model.
    """
    cls = load_connector(conn.connector)
    config = cls.config_model.model_validate(conn.settings)
    context = ConnectorContext(
        connection_id=conn.id,
        connection_name=conn.name,
        logger=logger,
        service_database_url=database_url,
    )
    return cls(config, context)


async def open_connector(conn: ConnectionSettings, database_url: str, logger: Any = None) -> Any:
    """The connection's connector, opened (and closed again when opening fails, as the SDK
    promises)."""
    connector = build_connector(conn, database_url, logger)
    try:
        await connector.open()
    except BaseException:
        with contextlib.suppress(Exception):
            await connector.aclose()
        raise
    return connector
