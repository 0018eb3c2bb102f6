"""Continuous sync: per connection, at the engine's interval, what changed since the watermark.

Every worker runs a :class:`Scheduler`. Each tick it claims the due runs in PostgreSQL (one
conditional UPDATE per tick, :func:`engine.store.incremental.claim_due`), so across all processes
each connection runs once per interval. A run reads ``get_actors_changed_since`` page by page per
actor type, resolves the actors to internal keys, drops echoes (nothing the hub does not already
hold), and hands the rest to the force-resync path as a ``Sync`` batch task (same planner,
chunks, push units, gates, retries, outcomes and sync log). The task and the moved watermark
commit in one transaction: the watermark is never ahead of work that is durably queued, and the
task's command is published after that commit (a task whose publish failed is published again by
the connection's next run; the planner runs a message id once).

A connector that is not horizon-safe may commit a change stamped behind the watermark: its runs
start the connection's overlap before the watermark (:mod:`engine.sync.positions`), and the
keys handled within the overlap, kept with the watermark, keep the re-read from queueing them
twice (docs/engine.md "Overlap").
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
import structlog

import connectors as sdk
from engine.mapping import values as mp
from engine.mapping.model import ActorTypeMapping
from engine.messaging.commands import new_message_id, resync_body
from engine.messaging.publishing import ChunkPublisher
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.observability.metrics import Metrics
from engine.settings import Settings
from engine.store import Connection, tasks
from engine.store import incremental as store
from engine.store import keys as keys_store
from engine.store.incremental import SYNC_TASK_NAME, RunCounts, Watermark
from engine.sync import positions
from engine.sync.background import cancel_until_done
from engine.sync.connections import CallFailed, ConnectionHandle, Connections

log = structlog.get_logger(__name__)


class RunLost(Exception):
    """This worker's claim of the run expired and another worker took it."""


@dataclass(slots=True)
class _Page:
    """What one page of changed actors turns into."""

    internal_ids: list[int] = field(default_factory=list)
    crm_values: dict[int, dict[str, Any]] = field(default_factory=dict)
    new_crm_records: list[str] = field(default_factory=list)
    counts: RunCounts = field(default_factory=RunCounts)


def next_watermark(mark: Watermark, actors: Sequence[sdk.Actor], overlap: float = 0.0) -> Watermark:
    """The watermark after ``actors`` (a page, oldest first): the last one's position and every
    key handled at exactly that position (the tie-breaker for actors sharing a timestamp).

    With an ``overlap`` (seconds; positions that read as times; the run read from that long
    before the watermark) a page may end behind the watermark, which then stays; every key
    read is remembered with its position while that is within the overlap (``recent``)."""
    if not actors and (not overlap or (mark.recent is not None and mark.window == overlap)):
        return mark
    last = actors[-1].last_modified if actors else mark.since
    if not actors or (overlap and _behind(last, mark.since)):
        since, seen = mark.since, set(mark.seen_keys)
    else:
        since = last
        seen = {a.key for a in actors if a.last_modified == since}
        if since == mark.since:
            seen |= set(mark.seen_keys)
    floor = positions.instant(since)
    if not overlap or floor is None:
        return Watermark(since, tuple(sorted(seen)))
    floor -= round(overlap * 1e9)
    merged = {**(mark.recent or {}), **{a.key: a.last_modified for a in actors if a.last_modified}}
    recent = {}
    for key, position in merged.items():
        at = positions.instant(position)
        if at is not None and at >= floor:
            recent[key] = position
    return Watermark(since, tuple(sorted(seen)), recent, overlap)


def fresh(mark: Watermark, actors: Sequence[sdk.Actor]) -> list[sdk.Actor]:
    """The actors not handled yet: those at the watermark's position already seen are not, nor
    those the overlap reads again at the position they were handled at."""
    seen = set(mark.seen_keys)
    recent = mark.recent or {}
    return [
        a
        for a in actors
        if not (a.last_modified == mark.since and a.key in seen)
        and not (a.key in recent and recent[a.key] == a.last_modified)
    ]


def _behind(position: str | None, mark: str | None) -> bool:
    """``position`` is before ``mark`` (both read as times)."""
    limit = positions.instant(mark)
    return limit is not None and _before(position, limit)


def _before(position: str | None, instant: int) -> bool:
    at = positions.instant(position)
    return at is not None and at < instant


class IncrementalRun:
    """One run of one connection (claimed by this worker)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        connections: Connections,
        publisher: ChunkPublisher,
        worker: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.connections = connections
        self.publisher = publisher
        self.worker = worker
        self.metrics = metrics
        self._warned: set[tuple[int, str]] = set()

    def actor_types(self, connection_id: int) -> list[str]:
        """The actor types a connection's changes are read for: its mapped ERP types, or for
        the CRM every CRM type some ERP maps."""
        if connection_id == 0:
            return list(
                dict.fromkeys(m.crm for e in self.settings.connections for m in e.actor_types)
            )
        conn = self.settings.connection(connection_id)
        return [] if conn is None else [m.erp for m in conn.actor_types]

    async def run(self, connection_id: int) -> RunCounts:
        """Read every change since the watermarks and queue it; raises on failure (the
        watermarks stay at the last committed page)."""
        handle = self.connections.get(connection_id)
        if sdk.Capability.changed_since not in sdk.capabilities(handle.connector):
            raise CallFailed(f"{handle.settings.name}: connector has no changed_since", "permanent")
        async with self.pool.acquire() as conn:
            await self._republish(conn, connection_id)
            full = await store.take_full_request(conn, connection_id)
            if full:
                log.info("full sync requested: reading from the start", connection=connection_id)
            total = RunCounts()
            for actor_type in self.actor_types(connection_id):
                counts = await self._run_type(conn, handle, actor_type, full)
                total = _add(total, counts)
        return total

    async def _republish(self, conn: Connection, connection_id: int) -> None:
        for row in await store.unpublished_tasks(conn, connection_id):
            request = (
                orjson.loads(row["request"]) if isinstance(row["request"], str) else row["request"]
            )
            await self._publish(
                row["id"], connection_id, request["InternalKeyIds"], row["message_id"]
            )

    async def _run_type(
        self, conn: Connection, handle: ConnectionHandle, actor_type: str, full: bool
    ) -> RunCounts:
        """Read one actor type's changes page by page. Never read before (a new connection or
        actor type) and no full sync asked: the run only finds the current end and queues
        nothing, so enabling the sync does not replay history (ForceSyncAll does)."""
        total = RunCounts()
        stored = await store.watermark(conn, handle.id, actor_type)
        baseline = stored is None and not full
        mark = stored or Watermark(None)
        overlap = self.overlap(handle, actor_type)
        since = mark.since
        if overlap and mark.since is not None:
            since = positions.earlier(mark.since, overlap)
            if since is None:  # not a time: nothing to subtract from
                self._not_a_time(handle, actor_type, mark.since)
                overlap, since = 0.0, mark.since
        origin = positions.instant(mark.since) if overlap else None  # the window's end
        # Keys are recorded for ``window`` seconds before the watermark (none yet: the overlap
        # is new, or grew): what the re-read finds behind that is taken as handled.
        covered = 0.0 if mark.recent is None else min(mark.window, overlap)
        edge = None if origin is None else origin - round(covered * 1e9)
        fields = self._fields(handle.id, actor_type)
        new = stored is None  # no row yet: the first page stores one, even at the start
        cursor: str | None = None
        horizon: dt.datetime | None = None
        while True:
            page = await handle.call(
                handle.connector.get_actors_changed_since,
                sdk.ChangedSinceInput(
                    actor_type, since, fields, cursor=cursor, limit=self.settings.sync.page_size
                ),
            )
            if page.horizon is not None and (horizon is None or page.horizon < horizon):
                horizon = page.horizon
            actors = list(page.actors)
            todo = [] if baseline else fresh(mark, actors)
            if origin is not None and edge is not None:
                todo = [a for a in todo if not _before(a.last_modified, edge)]
                late = sum(1 for a in todo if _before(a.last_modified, origin))
            else:
                late = 0
            work = await self._resolve(conn, handle, actor_type, todo)
            work.counts = replace(work.counts, late=late)
            moved = next_watermark(mark, actors, overlap)
            await self._commit(conn, handle.id, actor_type, moved, work, moved != mark or new)
            mark, new = moved, False
            total = _add(total, work.counts)
            if page.next_cursor is None or not actors:
                break
            cursor = page.next_cursor
        if total.late:
            log.warning(
                "late changes found by the overlap re-read",
                connection=handle.id,
                connection_name=handle.settings.name,
                actor_type=actor_type,
                late=total.late,
                overlap=overlap,
            )
        self._horizon(handle, actor_type, horizon)
        return total

    def overlap(self, handle: ConnectionHandle, actor_type: str) -> float:
        """Seconds re-read before the watermark: the connection's ``sync_overlap``, else none
        for a horizon-safe connector and ``sync.overlap`` for any other."""
        if handle.settings.sync_overlap is not None:
            return handle.settings.sync_overlap
        safe = getattr(handle.connector, "changed_since_horizon_safe", None)
        if callable(safe) and safe(actor_type):
            return 0.0
        return self.settings.sync.overlap

    def _not_a_time(self, handle: ConnectionHandle, actor_type: str, position: str) -> None:
        if (handle.id, actor_type) in self._warned:
            return
        self._warned.add((handle.id, actor_type))
        log.warning(
            "sync overlap not applied: positions do not read as times",
            connection=handle.id,
            connection_name=handle.settings.name,
            actor_type=actor_type,
            position=position[:40],
        )

    def _horizon(
        self, handle: ConnectionHandle, actor_type: str, horizon: dt.datetime | None
    ) -> None:
        """Report how far the connector's horizon held this read behind now."""
        if horizon is not None and horizon.tzinfo is None:
            horizon = horizon.replace(tzinfo=dt.UTC)
        lag = 0.0 if horizon is None else (dt.datetime.now(dt.UTC) - horizon).total_seconds()
        if self.metrics is not None:
            self.metrics.sync_horizon(handle.id, actor_type, max(0.0, lag))
        if horizon is not None and lag > self.settings.sync.horizon_warn:
            log.warning(
                "sync horizon held back: a change in flight since then (an open transaction?) "
                "holds the read of later changes",
                connection=handle.id,
                connection_name=handle.settings.name,
                actor_type=actor_type,
                behind_seconds=round(lag, 1),
                horizon=horizon.isoformat(),
            )

    def _fields(self, connection_id: int, actor_type: str) -> list[str]:
        if connection_id == 0:
            mappings = [m for e in self.settings.connections for m in e.actor_types]
            return mp.crm_fields_used(mappings, actor_type)
        mapping = self._mapping(connection_id, actor_type)
        return list(mapping.fields)

    def _mapping(self, connection_id: int, actor_type: str) -> ActorTypeMapping:
        conn = self.settings.connection(connection_id)
        mapping = None if conn is None else conn.mapping_for(actor_type)
        assert mapping is not None
        return mapping

    async def _resolve(
        self, conn: Connection, handle: ConnectionHandle, actor_type: str, actors: list[sdk.Actor]
    ) -> _Page:
        if not actors:
            return _Page()
        if handle.id == 0:
            return await self._resolve_crm(conn, actor_type, actors)
        return await self._resolve_erp(conn, handle.id, actor_type, actors)

    async def _resolve_crm(
        self, conn: Connection, actor_type: str, actors: list[sdk.Actor]
    ) -> _Page:
        """CRM changes: registered records whose values differ from the last synced ones; new
        records are registered when some ERP mapping creates missing actors."""
        page = _Page()
        known = await store.crm_keys(conn, actor_type, [a.key for a in actors])
        synced = await store.crm_values(conn, list(known.values()))
        mappings = [m for e in self.settings.connections for m in e.actor_types]
        creates = mp.creating_mapping(mappings, actor_type) is not None
        echoes = unlinked = 0
        for actor in actors:
            internal = known.get(actor.key)
            if internal is None:
                if creates:
                    page.new_crm_records.append(actor.key)
                    page.crm_values[-len(page.new_crm_records)] = dict(actor.fields)
                else:
                    unlinked += 1
                continue
            before = synced.get(internal)
            if before is not None and not mp.diff(before, actor.fields):
                echoes += 1  # the values erpsync synced last: its own write, or nothing mapped
                continue
            page.internal_ids.append(internal)
            page.crm_values[internal] = dict(actor.fields)
        page.counts = RunCounts(len(actors), 0, echoes, unlinked)
        return page

    async def _resolve_erp(
        self, conn: Connection, connection_id: int, actor_type: str, actors: list[sdk.Actor]
    ) -> _Page:
        """ERP changes: linked actors whose to-CRM fields differ from the CRM's values (equal
        ones bring nothing: an echo of erpsync's own write, or a change of unmapped fields)."""
        page = _Page()
        mapping = self._mapping(connection_id, actor_type)
        links = await store.erp_links(conn, connection_id, actor_type, [a.key for a in actors])
        crm_now = await self._crm_values(mapping, [crm_id for _, crm_id in links.values()])
        echoes = unlinked = 0
        for actor in actors:
            link = links.get(actor.key)
            if link is None:
                unlinked += 1
                continue
            internal, crm_id = link
            current = crm_now.get(crm_id)
            desired = mp.crm_values_from_erp(mapping, actor.fields)
            if current is not None and not mp.diff(current, desired):
                echoes += 1
                continue
            page.internal_ids.append(internal)
        page.counts = RunCounts(len(actors), 0, echoes, unlinked)
        return page

    async def _crm_values(
        self, mapping: ActorTypeMapping, crm_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        crm = self.connections.crm
        fields = [c for _, c in mapping.to_crm_pairs]
        found: dict[str, dict[str, Any]] = {}
        if not crm_ids or not fields:
            return found
        size = crm.settings.batch_size
        for start in range(0, len(crm_ids), size):
            response = await crm.call(
                crm.connector.get_actors,
                sdk.GetActorsInput(mapping.crm, crm_ids[start : start + size], fields),
            )
            found.update({a.key: dict(a.fields) for a in response.actors})
        return found

    async def _commit(
        self,
        conn: Connection,
        connection_id: int,
        actor_type: str,
        mark: Watermark,
        page: _Page,
        moved: bool = True,
    ) -> None:
        """Queue the page's records as a Sync task and move the watermark, in one transaction;
        then publish the task's command. A page that changes neither (an overlap re-read of
        what was handled) only renews the claim."""
        task_id: int | None = None
        message_id = new_message_id()
        ids = list(page.internal_ids)
        if not (moved or ids or page.new_crm_records):
            if not await store.renew(
                conn, connection_id, self.worker, self.settings.sync.run_lease
            ):
                raise RunLost(f"run of connection {connection_id} was taken over")
            return
        async with conn.transaction():
            for n, crm_key in enumerate(page.new_crm_records, start=1):
                internal = await keys_store.add_internal_key(conn, actor_type, crm_key)
                ids.append(internal)
                page.crm_values[internal] = page.crm_values.pop(-n)
            ids = list(dict.fromkeys(ids))
            if ids:
                task_id = await tasks.create(
                    conn,
                    source_connection_id=connection_id,
                    request={"ErpConnectionId": connection_id, "InternalKeyIds": ids},
                    message_id=message_id,
                    name=SYNC_TASK_NAME,
                )
                await store.set_crm_values(conn, page.crm_values)
            if not await store.move_watermark(conn, connection_id, actor_type, mark, self.worker):
                raise RunLost(f"run of connection {connection_id} was taken over")
        if not await store.renew(conn, connection_id, self.worker, self.settings.sync.run_lease):
            raise RunLost(f"run of connection {connection_id} was taken over")
        page.counts = replace(page.counts, queued=len(ids))
        if task_id is not None:
            await self._publish(task_id, connection_id, ids, message_id)

    async def _publish(
        self, task_id: int, connection_id: int, ids: Sequence[int], message_id: str
    ) -> None:
        body = resync_body(connection_id, tuple(ids), task_id=task_id)
        await self.publisher.publish(RESYNC_ROUTING_KEY, body, message_id=message_id)
        log.info("sync task queued", task_id=task_id, connection=connection_id, records=len(ids))


def _add(a: RunCounts, b: RunCounts) -> RunCounts:
    return RunCounts(
        a.changed + b.changed,
        a.queued + b.queued,
        a.echoes + b.echoes,
        a.unlinked + b.unlinked,
        a.late + b.late,
    )


class Scheduler:
    """Claims due runs every ``sync.tick`` seconds and runs them (one task per claimed run)."""

    def __init__(self, run: IncrementalRun, metrics: Metrics | None = None) -> None:
        self.runner = run
        self.settings = run.settings
        self.pool = run.pool
        self.worker = run.worker
        self.metrics = metrics
        self.connection_ids = [c.id for c in self.settings.all_connections]
        self._loop: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        sync = self.settings.sync
        await store.ensure(
            self.pool, self.connection_ids, status=sync.initial_status, interval=sync.interval
        )
        self._loop = asyncio.create_task(self._tick_loop(), name="erpsync-incremental")

    async def stop(self) -> None:
        self._stopping = True
        for task in [t for t in (self._loop, *self._runs) if t is not None]:
            task.cancel()
        for task in [t for t in (self._loop, *self._runs) if t is not None]:
            await cancel_until_done(task)

    async def _tick_loop(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception as exc:  # database away: the next tick tries again
                log.warning("sync scheduling failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.sync.tick)

    async def tick(self) -> list[int]:
        """Claim and start the due runs; returns the connections claimed."""
        claimed = await store.claim_due(
            self.pool, self.connection_ids, self.worker, self.settings.sync.run_lease
        )
        for connection_id in claimed:
            task = asyncio.create_task(self.run_claimed(connection_id))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)
        return claimed

    async def run_claimed(self, connection_id: int) -> None:
        started = time.monotonic()
        counts = RunCounts()
        outcome, error = "ok", None
        with structlog.contextvars.bound_contextvars(sync_connection=connection_id):
            try:
                counts = await self.runner.run(connection_id)
            except RunLost as exc:
                log.warning("sync run lost its claim", error=str(exc))
                return
            except asyncio.CancelledError:
                outcome, error = "failed", "stopped"
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._finish(connection_id, outcome, counts, error))
                raise
            except Exception as exc:
                outcome, error = "failed", f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
                log.warning("sync run failed", error=error)
            await self._finish(connection_id, outcome, counts, error)
            log.info(
                "sync run",
                outcome=outcome,
                changed=counts.changed,
                queued=counts.queued,
                echoes=counts.echoes,
                unlinked=counts.unlinked,
                late=counts.late,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _finish(
        self, connection_id: int, outcome: str, counts: RunCounts, error: str | None
    ) -> None:
        await store.finish_run(self.pool, connection_id, self.worker, outcome, counts, error)
        if self.metrics is not None:
            self.metrics.sync_run(connection_id, outcome, counts)
