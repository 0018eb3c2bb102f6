"""Open connectors for every configured connection and call them through a per-connection gate.

The gate is where the engine owns what a connector must not: a process-wide concurrency limit,
a timeout per call, and retries of transient errors with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from connectors.contract import ConnectorContext, ConnectorError, TransientError
from connectors.registry import load as load_connector
from engine.observability import metrics
from engine.settings import ConnectionSettings, Settings

log = structlog.get_logger(__name__)

R = TypeVar("R")

RETRY_ATTEMPTS = 3
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 5.0


class CallFailed(Exception):
    """A connector call failed for good; ``kind`` is transient, permanent or configuration."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class ConnectionHandle:
    """One open connection: its settings, its connector and its gate."""

    settings: ConnectionSettings
    connector: Any
    semaphore: asyncio.Semaphore

    @property
    def id(self) -> int:
        return self.settings.id

    async def call(self, operation: Callable[[Any], Awaitable[R]], request: Any) -> R:
        """Call ``operation(request)`` within the gate; raise :class:`CallFailed` on failure."""
        name = getattr(operation, "__name__", "call")
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.semaphore, asyncio.timeout(self.settings.timeout):
                    return await operation(request)
            except TimeoutError:
                error: ConnectorError = TransientError(
                    f"{name} timed out after {self.settings.timeout:g}s"
                )
            except ConnectorError as exc:
                error = exc
            except Exception as exc:
                log.exception("connector raised an unexpected error", operation=name)
                error = ConnectorError(f"{type(exc).__name__}: {exc}")
            if error.kind != "transient" or attempt >= RETRY_ATTEMPTS:
                raise CallFailed(f"{self.settings.name}: {error.message}", error.kind)
            cap = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
            delay = max(error.retry_after or 0.0, random.uniform(0, cap))  # noqa: S311
            log.info("retrying connector call", operation=name, attempt=attempt, delay=delay)
            metrics.of(self).connector_retry(self.id)
            await asyncio.sleep(delay)


class Connections:
    """All connections of the configuration, opened once per process."""

    def __init__(self, handles: dict[int, ConnectionHandle]) -> None:
        self._handles = handles

    @classmethod
    async def open(cls, settings: Settings) -> Connections:
        handles: dict[int, ConnectionHandle] = {}
        try:
            for conn in settings.all_connections:
                handles[conn.id] = await _open_one(conn, settings)
        except BaseException:
            await cls(handles).close()
            raise
        return cls(handles)

    def get(self, connection_id: int) -> ConnectionHandle:
        return self._handles[connection_id]

    @property
    def crm(self) -> ConnectionHandle:
        return self._handles[0]

    def erps(self) -> list[ConnectionHandle]:
        return [h for cid, h in sorted(self._handles.items()) if cid > 0]

    async def close(self) -> None:
        for handle in self._handles.values():
            try:
                await handle.connector.aclose()
            except Exception:
                log.exception("connector failed to close", connection=handle.id)


async def _open_one(conn: ConnectionSettings, settings: Settings) -> ConnectionHandle:
    cls = load_connector(conn.connector)
    config = cls.config_model.model_validate(conn.settings)
    context = ConnectorContext(
        connection_id=conn.id,
        connection_name=conn.name,
        logger=log.bind(connection=conn.id),
        service_database_url=settings.database.url.get_secret_value(),
    )
    connector = cls(config, context)
    await connector.open()
    log.info("connection opened", connection=conn.id, name=conn.name, connector=conn.connector)
    return ConnectionHandle(conn, connector, asyncio.Semaphore(conn.concurrency))
