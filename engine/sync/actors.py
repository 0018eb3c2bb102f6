"""Single actors for the front door's link and read-through endpoints: read one, create one from
a CRM record, and what a connection says about itself (test, fields, capabilities, list items).

The front door never calls a connector; it is handed an :class:`ActorDesk` (engine/app.py),
which calls through the connection's gate like every resync does: same concurrency limit,
breaker, timeout and retries (its calls take the next free slot, as the small-task lane's do).
In a process that runs the engine the desk shares the engine's open connections; an API-only
process opens a connection the first time a request needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import structlog

import connectors as sdk
from engine.mapping import values as mp
from engine.messaging.publishing import small_lane
from engine.observability.metrics import Metrics
from engine.settings import ConnectionSettings, Settings
from engine.sync.connections import (
    CallFailed,
    ConnectionHandle,
    Connections,
    build_connector,
    open_connector,
)

log = structlog.get_logger(__name__)

R = TypeVar("R")

FIELDS_KEPT = 60.0
"""Seconds a connection's field metadata is reused by the read-through endpoints."""
TRIALS = 2
"""Connection tests with other settings (TestConnectionByConfig) running at once, per process:
each opens a connector of its own (an HTTP session, a database pool)."""

_ERRORS: dict[str, type[sdk.ConnectorError]] = {
    "transient": sdk.TransientError,
    "configuration": sdk.ConfigurationError,
}


class ActorDesk:
    """Reads and creates single actors through the connection gates.

    Failures are raised as the SDK's :class:`connectors.ConnectorError` of the call's kind
    (transient, permanent, configuration), with the connection's name in the message.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        connections: Connections | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._shared = connections
        self._opened: dict[int, ConnectionHandle] = {}
        self._opening: dict[int, asyncio.Lock] = {}
        self._clock = clock
        # Field metadata per (connection, actor type), with when it was read: the read-through
        # endpoints describe values on every request, and an HTTP connector's fields() is a call.
        self._fields: dict[tuple[int, str], tuple[float, list[sdk.FieldMetadata]]] = {}
        self._trials = asyncio.Semaphore(TRIALS)

    async def _handle(self, connection_id: int) -> ConnectionHandle:
        if self._shared is not None:
            return self._shared.get(connection_id)
        handle = self._opened.get(connection_id)
        if handle is not None:
            return handle
        # One opening per connection, however many requests wait; a connection slow to open
        # holds up only its own requests, and no longer than its timeout.
        async with self._opening.setdefault(connection_id, asyncio.Lock()):
            handle = self._opened.get(connection_id)
            if handle is None:
                conn = self.settings.connection(connection_id)
                if conn is None:
                    raise sdk.PermanentError(f"connection {connection_id} is not configured")
                try:
                    async with asyncio.timeout(conn.timeout):
                        connector = await open_connector(
                            conn,
                            self.settings.database.url.get_secret_value(),
                            log.bind(connection=conn.id),
                        )
                except TimeoutError:
                    log.warning("connection not opened in time", connection=conn.id)
                    raise sdk.TransientError(
                        f"{conn.name}: not connected within {conn.timeout:g}s"
                    ) from None
                except sdk.ConnectorError:
                    raise
                except Exception as exc:  # not loadable or misconfigured: say which, not 500
                    log.warning("connection could not be opened", connection=conn.id)
                    raise sdk.ConfigurationError(
                        f"{conn.name}: could not be opened ({type(exc).__name__})"
                    ) from exc
                handle = ConnectionHandle.build(conn, connector, self.metrics)
                self._opened[connection_id] = handle
        return handle

    async def _call(
        self, handle: ConnectionHandle, operation: Callable[[object], Awaitable[R]], request: object
    ) -> R:
        try:
            # An interactive caller waits: its call takes the gate's next free slot, before
            # queued resync work (engine.sync.slots).
            with small_lane():
                return await handle.call(operation, request)
        except CallFailed as exc:
            error = _ERRORS.get(exc.kind, sdk.PermanentError)
            raise error(exc.message, retry_after=exc.retry_after or None) from None

    async def read(
        self, connection_id: int, actor_type: str, key: str, fields: Sequence[str]
    ) -> sdk.Actor | None:
        """The actor's ``fields`` (every field when empty); None when it does not exist."""
        handle = await self._handle(connection_id)
        found = await self._call(
            handle,
            handle.connector.get_actors,
            sdk.GetActorsInput(actor_type, [key], list(fields) or None),
        )
        return next((a for a in found.actors if a.key == key), None)

    async def write(
        self, connection_id: int, actor_type: str, key: str, values: Mapping[str, sdk.FieldValue]
    ) -> dict[str, tuple[sdk.FieldValue, sdk.FieldValue]] | None:
        """Set ``values`` on the actor, writing only those that differ; returns them
        (field -> (old, new)), or None when the actor does not exist."""
        handle = await self._handle(connection_id)
        found = await self._call(
            handle,
            handle.connector.get_actors,
            sdk.GetActorsInput(actor_type, [key], sorted(values)),
        )
        actor = next((a for a in found.actors if a.key == key), None)
        if actor is None:
            return None
        changed = mp.diff(actor.fields, values)
        if not changed:
            return {}
        changes = {f: new for f, (_, new) in changed.items()}
        saved = await self._call(
            handle,
            handle.connector.save_actors,
            sdk.SaveActorsInput(actor_type, [sdk.Actor(actor_type, key, changes)]),
        )
        if all(a.key != key for a in saved.saved):
            failure = next((f for f in saved.failures if f.key == key), None)
            reason = "not saved by the connector" if failure is None else failure.message
            error = sdk.TransientError if failure and failure.kind == "transient" else None
            raise (error or sdk.PermanentError)(f"{handle.settings.name}: {reason}")
        return changed

    async def create_from_crm(
        self,
        connection_id: int,
        crm_actor_type: str,
        crm_record_id: str,
        erp_actor_type: str,
        values: Mapping[str, str],
        idempotency_key: str,
    ) -> sdk.Actor | None:
        """Create an actor on the connection from the CRM record's mapped values, ``values``
        (ERP field -> value) on top; None when the CRM record does not exist.

        Raises :class:`connectors.PermanentError` when the connection has no mapping of
        ``erp_actor_type`` to ``crm_actor_type``.
        """
        conn = self.settings.connection(connection_id)
        mapping = None if conn is None else conn.mapping_for(erp_actor_type)
        if conn is None or mapping is None or mapping.crm != crm_actor_type:
            raise sdk.PermanentError(
                f"connection {connection_id} maps no {erp_actor_type} to {crm_actor_type}"
            )
        crm = await self._handle(0)
        fields = sorted({m.crm for m in mapping.fields.values()})
        found = await self._call(
            crm,
            crm.connector.get_actors,
            sdk.GetActorsInput(crm_actor_type, [crm_record_id], fields),
        )
        record = next((a for a in found.actors if a.key == crm_record_id), None)
        if record is None:
            return None
        desired: dict[str, sdk.FieldValue] = dict(mp.erp_values_from_crm(mapping, record.fields))
        desired.update(values)
        target = await self._handle(connection_id)
        created = await self._call(
            target,
            target.connector.create_actor,
            sdk.CreateActorInput(sdk.Actor(erp_actor_type, "", desired), idempotency_key),
        )
        actor: sdk.Actor = created.actor
        return actor

    async def test(self, connection_id: int) -> sdk.TestConnectionResult:
        """The connector's own test of its system (credentials, reachability)."""
        handle = await self._handle(connection_id)
        result: sdk.TestConnectionResult = await self._call(
            handle, handle.connector.test_connection, sdk.TestConnectionInput()
        )
        return result

    async def test_config(
        self, connection_id: int, settings: Mapping[str, object]
    ) -> sdk.TestConnectionResult:
        """The connector's test of its system with ``settings`` instead of the configured ones
        (engine.settings.trial): a connector of its own, opened, tested and closed, outside the
        connection's gate (its breaker and slots are the configured system's). Opening and the
        test together get the connection's ``timeout``; a failure is a result, not raised.

        Raises :class:`connectors.TransientError` when ``TRIALS`` tests are already running
        for that long.
        """
        conn = self.settings.connection(connection_id)
        if conn is None:
            raise sdk.PermanentError(f"connection {connection_id} is not configured")
        try:
            async with asyncio.timeout(conn.timeout):
                await self._trials.acquire()
        except TimeoutError:
            raise sdk.TransientError(
                f"{conn.name}: {TRIALS} connection tests are already running", retry_after=1
            ) from None
        try:
            return await self._trial(conn.model_copy(update={"settings": dict(settings)}))
        finally:
            self._trials.release()

    async def _trial(self, conn: ConnectionSettings) -> sdk.TestConnectionResult:
        connector = None
        try:
            async with asyncio.timeout(conn.timeout):
                connector = build_connector(
                    conn,
                    self.settings.database.url.get_secret_value(),
                    log.bind(connection=conn.id, trial=True),
                )
                await connector.open()
                result: sdk.TestConnectionResult = await connector.test_connection(
                    sdk.TestConnectionInput()
                )
                return result
        except TimeoutError:
            message = f"not connected within {conn.timeout:g}s"
        except sdk.ConnectorError as exc:
            message = exc.message
        except Exception as exc:  # its text may quote the settings: the type only
            error = type(exc).__name__
            log.warning("connection test by config failed", connection=conn.id, error=error)
            message = f"could not be opened or tested ({error})"
        finally:
            if connector is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(conn.timeout):
                        await connector.aclose()
        return sdk.TestConnectionResult(ok=False, message=f"{conn.name}: {message}")

    async def fields(self, connection_id: int, actor_type: str) -> list[sdk.FieldMetadata]:
        """The connector's field metadata of ``actor_type`` (read again after
        ``FIELDS_KEPT`` seconds; a failed read is not kept)."""
        cached = self._fields.get((connection_id, actor_type))
        now = self._clock()
        if cached is not None and now - cached[0] < FIELDS_KEPT:
            return list(cached[1])
        handle = await self._handle(connection_id)
        found = await self._call(handle, handle.connector.fields, sdk.FieldsInput(actor_type))
        self._fields[(connection_id, actor_type)] = (now, list(found.fields))
        return list(found.fields)

    async def capabilities(self, connection_id: int) -> frozenset[sdk.Capability]:
        """What the connection's connector can do beyond reading and saving actors."""
        handle = await self._handle(connection_id)
        return sdk.capabilities(handle.connector)

    async def list_texts(
        self, connection_id: int, list_name: str, item_keys: Sequence[str]
    ) -> dict[str, str]:
        """The texts of ``item_keys`` in the connection's list ``list_name`` (key -> text);
        empty when the connector has no list items."""
        handle = await self._handle(connection_id)
        if sdk.Capability.list_items not in sdk.capabilities(handle.connector):
            return {}
        found = await self._call(
            handle,
            handle.connector.list_items,
            sdk.ListItemsInput(list_name, list(item_keys)),
        )
        return {item.key: item.text for item in found.items}

    async def close(self) -> None:
        """Close the connections this desk opened (shared ones belong to the engine)."""
        opened, self._opened = self._opened, {}
        await Connections(opened).close()
