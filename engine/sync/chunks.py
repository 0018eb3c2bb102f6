"""Run one chunk message: resync its keys, then commit everything it did in one transaction.

Chunks run in two stages. A planned chunk (no target; also a whole-record retry) reads the
source and writes the CRM hub, and its commit stores one **push unit** per target connection:
a ``task_chunks`` row for that target, numbered and counted like a delayed retry. The units are
published to their targets' own queues right after the commit; each pushes the CRM values of the
chunk's records to one target and commits on its own, so a slow target holds back nobody else.
A unit is stored with ``not_before`` a little ahead and ``published_at`` NULL, and marked
published once its publish is confirmed: if this process dies (or the broker refuses) in between,
the sweeper publishes it when ``not_before`` passes. A unit published twice commits once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog

from engine.messaging.commands import ChunkCommand
from engine.messaging.publishing import ChunkPublisher
from engine.observability.metrics import Metrics
from engine.store import Connection, intents, recovery, results, tasks
from engine.store import incremental as incremental_store
from engine.store import keys as keys_store
from engine.store import links as links_store
from engine.store.results import FieldChange, Outcome
from engine.sync.bookkeeping import (
    Restriction,
    delayed_retries,
    push_units,
    pushes_skipped,
    restriction,
    work_done,
)
from engine.sync.connections import Connections
from engine.sync.liveness import Presence
from engine.sync.push_stage import PushStage
from engine.sync.records import ChunkResult, Intents, SyncContext
from engine.sync.source_stage import SourceStage

log = structlog.get_logger(__name__)

_CRASH_AFTER_FINISH = os.environ.get("ERPSYNC_TEST_CRASH_AFTER_FINISH") == "1"
"""Test only (tests/faults): SIGKILL this process right after the commit that finished a task,
before anything else it would do (ack, publish), to prove the task.finished event survives."""


class _AlreadyCommitted(Exception):
    """Another delivery of the same chunk committed first; roll ours back."""


class ChunkRunner:
    """Handles :class:`ChunkCommand` deliveries."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        connections: Connections,
        presence: Presence,
        publisher: ChunkPublisher | None = None,
        *,
        unit_publish_grace: float = 30.0,
        metrics: Metrics | None = None,
        track_baselines: bool = False,
    ) -> None:
        """``unit_publish_grace``: seconds after its commit before the sweeper publishes a unit
        whose publish was not confirmed (a crash or a broker refusal after the commit).
        ``track_baselines``: the continuous sync is enabled: keep the values each connection
        and the CRM agree on, and settle ``Sync`` tasks' conflicts by the mapping's rules."""
        self.track_baselines = track_baselines
        self.pool = pool
        self.connections = connections
        self.source_stage = SourceStage(connections)
        self.push_stage = PushStage(connections)
        self.presence = presence
        self.publisher = publisher
        self.unit_publish_grace = unit_publish_grace
        self.metrics = Metrics() if metrics is None else metrics

    def targets(self, source: int, inactive: frozenset[int] = frozenset()) -> list[int]:
        """The connections a task from ``source`` pushes to: every active ERP but the
        source (``inactive``: the connections set inactive, ToggleErpConnectionActive)."""
        return [h.id for h in self.connections.erps() if h.id != source and h.id not in inactive]

    async def run(self, command: ChunkCommand) -> None:
        with (
            structlog.contextvars.bound_contextvars(
                task_id=command.task_id, chunk=command.chunk_no
            ),
            self.presence.working_on(command.task_id),
        ):
            try:
                units = await self._run(command)
            except _AlreadyCommitted:
                log.info("chunk committed by another delivery; ours rolled back")
                return
            except BaseException:
                # Given up (error, drain deadline): let the redelivery run elsewhere.
                await self._release(command)
                raise
            await self._publish_units(command.task_id, units)

    async def _run(self, command: ChunkCommand) -> list[tuple[int, int | None]]:
        """Run and commit the chunk (or unit); returns the push units to publish."""
        # One pooled connection for the chunk, the claim and the keys: fewer round trips.
        async with self.pool.acquire() as conn:
            chunk = await self._claim(conn, command)
            if chunk is None:
                return []
            ids, source, target, attempt = (
                chunk.internal_key_ids,
                chunk.source,
                chunk.target,
                chunk.attempt,
            )
            only = restriction(chunk.target_keys)
            inactive = chunk.inactive
            if target is not None and target in inactive:
                # A push unit (or delayed retry) stored before its target was set inactive:
                # not pushed; its records fail, so RetryFailed pushes them once it is active.
                result = self._not_pushed(ids, target, attempt)
                units = await self._commit(command, source, len(ids), result, conn, only, inactive)
                self.metrics.chunk_committed(result.outcomes)
                return units
            if target is None and source == 0:
                # Stage 1 from the CRM has nothing to do but make the units: each unit reads
                # the CRM values it pushes (a record missing in the CRM fails on each target).
                result = ChunkResult(attempt, None, records=len(ids), forward=list(ids))
                units = await self._commit(command, source, len(ids), result, conn, only, inactive)
                self.metrics.chunk_committed(result.outcomes)
                return units
            # Stage 1 needs the source's links, a unit its target's.
            broken: set[int] = set()
            if target is None:
                keys, links = await keys_store.load(conn, ids, source)
            else:  # a link broken on purpose keeps the record off that target (no create either)
                keys, links, broken = await links_store.load_for_target(conn, ids, target)
            run_intents = Intents(
                self._intent_recorder(command), await intents.unsettled(conn, command.task_id, ids)
            )
            sync = await self._sync_context(conn, chunk.task_name, target or source, ids)
        no_blank = chunk.no_blank_values
        if target is None:
            result = await self.source_stage.run(
                source,
                keys,
                links,
                attempt=attempt,
                intents=run_intents,
                no_blank_values=no_blank,
                sync=sync,
            )
        else:
            result = await self.push_stage.run(
                target,
                keys,
                links,
                attempt=attempt,
                intents=run_intents,
                no_blank_values=no_blank,
                broken=broken,
                sync=sync,
            )
        units = await self._commit(command, source, len(keys), result, only=only, inactive=inactive)
        self.metrics.chunk_committed(result.outcomes)
        return units

    def _not_pushed(self, ids: Sequence[int], target: int, attempt: int) -> ChunkResult:
        name = self.connections.names().get(target, "?")
        error = (
            f"connection {target} ({name}) was set inactive (ToggleErpConnectionActive) before "
            "this push ran: not pushed; RetryFailed once it is active again"
        )
        result = ChunkResult(attempt, target)
        result.outcomes = [Outcome(i, target, "failed", error=error) for i in ids]
        log.info("push unit not run: its target is inactive", target=target, records=len(ids))
        return result

    async def _sync_context(
        self, conn: Connection, task_name: str, connection_id: int, ids: Sequence[int]
    ) -> SyncContext | None:
        if not self.track_baselines:
            return None
        if task_name != incremental_store.SYNC_TASK_NAME:
            return SyncContext()  # a force resync: its source wins; only the baselines move
        return SyncContext(True, await incremental_store.baselines(conn, connection_id, ids))

    def _intent_recorder(
        self, command: ChunkCommand
    ) -> Callable[[Sequence[FieldChange]], Awaitable[None]]:
        async def record(changes: Sequence[FieldChange]) -> None:
            async with self.pool.acquire() as conn:
                await intents.record(conn, command.task_id, command.chunk_no, changes)

        return record

    async def _publish_units(self, task_id: int, units: list[tuple[int, int | None]]) -> None:
        """Publish the committed push units; one not confirmed is left to the sweeper."""
        if not units or self.publisher is None:
            return
        published, failed = await publish_units(self.publisher, task_id, units)
        if failed:
            log.warning(
                "push units not published; the sweeper publishes them",
                units=len(failed),
                error=repr(failed[0]),
                after=self.unit_publish_grace,
            )
        if published:
            try:
                await recovery.mark_published(self.pool, task_id, published)
            except Exception as exc:  # only costs a duplicate publish by the sweeper
                log.warning("push units not marked published", error=repr(exc))

    async def _release(self, command: ChunkCommand) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                recovery.release_claim(
                    self.pool, command.task_id, command.chunk_no, self.presence.worker
                )
            )

    async def _claim(self, conn: Connection, command: ChunkCommand) -> recovery.ChunkClaim | None:
        """Take the chunk unless another live worker runs it; count takeovers from dead ones.

        A duplicate delivery (a redelivery after a lost channel, a sweeper republish) must not
        run beside the original: both would write, and the one that loses the commit would
        drop changes from the sync log. The duplicate is acked and dropped instead; should the
        original's worker die before committing, the sweeper republishes the chunk.
        """
        me = self.presence.worker
        claim = await recovery.claim_chunk(
            conn, command.task_id, command.chunk_no, me, self.presence.stale_after
        )
        if claim is None:
            log.info("chunk done, its task finished or unknown; delivery dropped")
            return None
        previous = claim.previous_worker
        if previous is None or previous == me:
            return claim
        if claim.previous_alive:
            log.info("chunk is being run by another live worker; duplicate dropped")
            return None
        if await recovery.record_takeover(conn, command.task_id, previous, me):
            log.warning("continuing the task of a worker that died", dead_worker=previous)
        return claim

    async def _commit(
        self,
        command: ChunkCommand,
        source: int,
        chunk_keys: int,
        result: ChunkResult,
        conn: Connection | None = None,
        only: Restriction | None = None,
        inactive: frozenset[int] = frozenset(),
    ) -> list[tuple[int, int | None]]:
        """Commit the run (on ``conn`` if given); returns the push units it stored.

        ``only``: the task's per-target key restriction (RetryFailed), if any. ``inactive``:
        the connections set inactive when the chunk was claimed: no push unit for them.
        """
        if conn is None:
            async with self.pool.acquire() as acquired:
                return await self._commit(
                    command, source, chunk_keys, result, acquired, only, inactive
                )
        async with conn.transaction():
            worker = self.presence.worker
            if not await tasks.mark_chunk_done(conn, command.task_id, command.chunk_no, worker):
                raise _AlreadyCommitted
            await link_created(conn, result, self.connections.names())
            await results.write(conn, command.task_id, result.outcomes, result.changes)
            # Records with a final outcome: their applied intents are logged, the rest not written.
            await intents.settle(
                conn,
                command.task_id,
                result.target is None,
                result.target,
                {o.internal_key_id for o in result.outcomes},
            )
            targets = self.targets(source, inactive)
            retries = delayed_retries(result, self.connections)
            units = push_units(result, targets, self.unit_publish_grace, only)
            stored = await tasks.add_retry_chunks(conn, command.task_id, retries + units)
            unit_numbers = stored[len(retries) :]
            work = work_done(result, chunk_keys, len(targets))
            if only is not None:
                work += pushes_skipped(result, len(targets), units)
            counts = dataclasses.replace(result.counts(), work=work)
            connections = 1 + len(targets)
            row = await tasks.add_counts(conn, command.task_id, counts, connections)
            await keys_store.touch_links(conn, result.touches)
            await incremental_store.set_crm_values(conn, result.crm_synced)
            await incremental_store.set_baselines(conn, result.baselines)
            if result.crm_written:
                await keys_store.touch_internal_keys(
                    conn, result.crm_written, f"task {command.task_id}"
                )
            log.info(
                "chunk committed",
                records=result.records,
                changes=len(result.changes),
                retries=sum(len(p.keys) for p in result.retries.values()),
                attempt=result.attempt,
            )
            finished = tasks.is_complete(row)
            if finished:
                await self._finish(conn, command.task_id, row)
        if finished and _CRASH_AFTER_FINISH:
            os.kill(os.getpid(), signal.SIGKILL)
        return unit_numbers

    async def _finish(self, conn: Connection, task_id: int, row: asyncpg.Record) -> None:
        detail = ""
        if row["writes_failed"]:
            first = await tasks.first_failures(conn, task_id, limit=1)
            if first:
                f = first[0]
                detail = (
                    f"first failure: key {f['internal_key_id']} on connection "
                    f"{f['connection_id']}: {f['error']}"
                )
        state, response = await tasks.finish(conn, row, detail, self.connections.names())
        await intents.settle_task(conn, task_id)
        log.info("task finished", state=state, response=response)


async def link_created(conn: Connection, result: ChunkResult, names: dict[int, str]) -> None:
    """Link the actors the run created; one that cannot be linked fails its record.

    The registry refuses a link when the record got another actor on that connection meanwhile
    (a link request, or another task's create) or the connector answered with an actor already
    linked to another record. The actor exists in the ERP all the same, so its writes stay in
    the sync log; the record's outcome says what to clean up instead of "created".
    """
    for new in result.new_links:
        made = await links_store.link(
            conn,
            new.internal_key_id,
            new.connection_id,
            new.erp_actor_type,
            new.erp_key,
            new.last_modified,
        )
        if made.conflict is None:
            continue
        other = made.conflict
        where = names.get(new.connection_id, f"connection {new.connection_id}")
        if made.rule == "record":
            why = f"the record was linked to {other.erp_actor_type} {other.erp_key!r} meanwhile"
        else:
            why = f"that actor is linked to internal key {other.internal_key_id}"
        error = (
            f"created {new.erp_actor_type} {new.erp_key!r} on {where} but could not link it: "
            f"{why}; remove the duplicate actor there"
        )
        log.warning(
            "created actor could not be linked",
            internal_key=new.internal_key_id,
            connection=new.connection_id,
            rule=made.rule,
        )
        result.outcomes = [
            Outcome(o.internal_key_id, o.connection_id, "failed", o.changed_fields, error)
            if (o.internal_key_id, o.connection_id, o.status)
            == (new.internal_key_id, new.connection_id, "created")
            else o
            for o in result.outcomes
        ]


async def publish_units(
    publisher: ChunkPublisher, task_id: int, units: Sequence[tuple[int, int | None]]
) -> tuple[list[int], list[Exception]]:
    """Publish committed push units ``(chunk_no, target)`` to their targets' queues, all at once.

    Returns the numbers confirmed and the errors of the others (the sweeper publishes those);
    a cancellation is raised once all publishes have ended.
    """
    sent = await asyncio.gather(
        *(publisher.publish_chunk(task_id, no, target) for no, target in units),
        return_exceptions=True,
    )
    for outcome in sent:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancelled: the commit is done, the sweeper publishes the units
    published = [no for (no, _), r in zip(units, sent, strict=True) if isinstance(r, str)]
    return published, [r for r in sent if isinstance(r, Exception)]
