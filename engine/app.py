"""Composition root: the aiohttp application factory and the resources it owns.

Every resource is a ``cleanup_ctx`` entry, in dependency order: database pool, broker publisher,
the LISTEN connection (task-finished and connection-state notifications), then the engine
(connectors + consumer). Cleanup runs in reverse, so the consumer drains before the publisher
and the pool close.

Shutdown (SIGTERM/SIGINT through ``web.run_app``): ``on_shutdown`` cancels the consumer's
subscriptions at once, so no new delivery starts while HTTP requests drain; the engine's cleanup
then waits for in-flight deliveries until ``worker.drain_timeout`` after the signal, requeues the
rest and closes the connections.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import aiormq
import structlog
from aiohttp import web

from engine.api import (
    dashboard,
    engine_control,
    followups,
    force_resync,
    health,
    housekeeping,
    links,
    openapi,
    readthrough,
    sessions,
    ui,
)
from engine.api.active import ActiveConnections
from engine.api.appkeys import (
    ACTIVE_CONNECTIONS,
    AUTHENTICATOR,
    CONSUMER,
    ERP_ACTORS,
    METRICS,
    POOL,
    PUBLISHER,
    SETTINGS,
    TASK_BATCHER,
    TASK_INTAKE,
    TASK_WAITER,
)
from engine.api.auth import Authenticator
from engine.api.intake import TaskIntake
from engine.api.middleware import front_door_middleware
from engine.api.routes import routes
from engine.messaging.broker import Publisher, close_quietly, connect
from engine.messaging.commands import ChunkCommand, InvalidMessage, ResyncCommand, parse
from engine.messaging.consumer import Consumer, Delivery
from engine.observability import metrics
from engine.observability.metrics import Metrics
from engine.settings import Settings
from engine.store import migrate
from engine.store.finished import TaskWaiter
from engine.store.listener import Listener
from engine.store.pool import create_pool
from engine.store.task_batch import TaskBatcher
from engine.sync.actors import ActorDesk
from engine.sync.chunks import ChunkRunner
from engine.sync.connections import Connections
from engine.sync.incremental import IncrementalRun, Scheduler
from engine.sync.liveness import Presence
from engine.sync.notifications import Notifier
from engine.sync.planner import Planner
from engine.sync.sweeper import Sweeper

log = structlog.get_logger(__name__)


# The engine's open connections, shared with the link endpoints' ActorDesk (engine.api never
# sees them, so the key is the composition root's own).
_CONNECTIONS = web.AppKey("connections", Connections)


class StartupError(Exception):
    """A resource could not be prepared; the message says what to do."""


def create_app(settings: Settings, *, api: bool = True, engine: bool = True) -> web.Application:
    """Build the service: the front door (``api``), the workers (``engine``), or both."""
    app_metrics = Metrics()
    # The pool exists once the app has started, before the first request.
    authenticator = Authenticator(settings.auth, lambda: app[POOL], app_metrics) if api else None
    app = web.Application(
        middlewares=[front_door_middleware(app_metrics, authenticator)],
        # Bodies are checked against the configured limit too; this is the hard cap.
        client_max_size=settings.server.max_body_bytes + 1,
    )
    app[SETTINGS] = settings
    app[METRICS] = app_metrics
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_publisher)
    app.cleanup_ctx.append(_notifications)
    if engine:
        app.cleanup_ctx.append(_engine)
        app.on_shutdown.append(_stop_taking_deliveries)
    app.add_routes(health.routes)
    app.add_routes(metrics.routes(app_metrics))
    if authenticator is not None:
        app[AUTHENTICATOR] = authenticator
        app[ACTIVE_CONNECTIONS] = ActiveConnections(lambda: app[POOL])
        app.cleanup_ctx.append(_task_intake)
        app.cleanup_ctx.append(housekeeping.cleanup_ctx)
        app.cleanup_ctx.append(_erp_actors)
        app.add_routes(routes)
        app.add_routes(force_resync.routes)
        app.add_routes(links.routes)
        app.add_routes(readthrough.routes)
        app.add_routes(sessions.routes)
        app.add_routes(openapi.routes)
        app.add_routes(dashboard.routes)
        app.add_routes(followups.routes)
        app.add_routes(engine_control.routes)
        app.add_routes(ui.routes)
    return app


def freeze_heap_after_startup(app: web.Application) -> None:
    """Once ``app`` has started, move what is alive (modules, models, pools) out of the
    garbage collector's way, for a process that serves this one app (``server.gc_freeze``).

    A full collection walks every tracked object, and most of them are start-up state that
    lives as long as the process: on a busy front door that was a 33-52 ms pause every 3-5 s.
    Frozen, they are never scanned again (docs/benchmarks.md). The process entry points call
    this, not :func:`create_app`: a test process runs many apps and should not freeze them.
    """

    async def freeze(app: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)  # after cleanup_ctx: every resource has started


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database)
    async with pool.acquire() as conn:
        missing = await migrate.pending(conn)
    if missing:
        await pool.close()
        raise StartupError(
            f"the database schema is not up to date ({len(missing)} migrations pending); "
            "run `erpsync migrate` first"
        )
    app[POOL] = pool
    app[METRICS].watch_store(pool)
    yield
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except TimeoutError:
        pool.terminate()


async def _task_intake(app: web.Application) -> AsyncIterator[None]:
    """Task creation for the front door; batched inserts (``server.batch_task_inserts``) still
    queued are written before the pool closes."""
    settings, pool = app[SETTINGS], app[POOL]
    batcher = None
    if settings.server.batch_task_inserts:
        batcher = TaskBatcher(pool, max_batch=settings.server.task_insert_batch_max)
        app[TASK_BATCHER] = batcher
    app[TASK_INTAKE] = TaskIntake(pool, batcher, publish_timeout=settings.broker.publish_timeout)
    yield
    if batcher is not None:
        await batcher.close()


async def _notifications(app: web.Application) -> AsyncIterator[None]:
    """One LISTEN connection per process: what the synchronous ForceResync* calls and the
    task.finished relay wait on (task-finished), and what keeps the front door's inactive set
    up to date (connection-state)."""
    settings = app[SETTINGS]
    listener = Listener(settings.database)
    waiter = TaskWaiter(listener, app[POOL], poll_interval=settings.server.sync_poll_interval)
    active = app.get(ACTIVE_CONNECTIONS)
    if active is not None:
        active.follow(listener)
    await listener.start()
    app[METRICS].watch_listener(lambda: listener.listening)
    app[TASK_WAITER] = waiter
    yield
    await listener.close()


async def _erp_actors(app: web.Application) -> AsyncIterator[None]:
    """The link endpoints' access to the connected systems: the engine's connections (and
    gates) when this process runs the engine, else connections opened on first use."""
    desk = ActorDesk(app[SETTINGS], app[METRICS], app.get(_CONNECTIONS))
    app[ERP_ACTORS] = desk
    yield
    await desk.close()


async def _publisher(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connection = await connect(settings.broker, "publisher")
    # Every ERP connection (id > 0; the CRM is the hub, never a push target) can be a push
    # target: its push queue exists before anything is routed.
    erps = [c.id for c in settings.connections if c.id > 0]
    publisher = Publisher(connection, settings.broker, erps, app[METRICS])
    try:
        await publisher.start()
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        await connection.close()
        raise StartupError(
            f"RabbitMQ refused the queues under prefix {settings.broker.prefix!r} ({exc}). "
            "Queues declared earlier with other arguments keep them: drain and delete them "
            "(rabbitmqctl delete_queue NAME), "
            "or set broker.prefix (ERPSYNC_BROKER_PREFIX) to a new prefix"
        ) from None
    app[METRICS].watch_queues(publisher)
    app[PUBLISHER] = publisher
    yield
    await close_quietly(publisher.close())
    await close_quietly(connection.close())


async def _engine(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool, publisher = app[POOL], app[PUBLISHER]
    app_metrics = app[METRICS]
    connections = await Connections.open(settings, app_metrics)
    app[_CONNECTIONS] = connections
    # The lease says whether this worker runs the continuous sync: what GetEngineStatus,
    # SyncAll and ForceSyncAll of every process answer from.
    presence = Presence(settings, pool, runs_sync=settings.sync.enabled)
    planner = Planner(settings, pool, publisher, presence)
    runner = ChunkRunner(
        pool,
        connections,
        presence,
        publisher,
        # An unconfirmed unit publish (crash, broker away) is repaired by the sweeper after this.
        unit_publish_grace=2 * settings.broker.publish_timeout + settings.engine.sweep_interval,
        metrics=app_metrics,
        track_baselines=settings.sync.enabled,
    )
    sweeper = Sweeper(settings, pool, publisher, presence.worker)
    relay_wakeup = app[TASK_WAITER].every_task()
    notifier = Notifier(settings, pool, publisher, app_metrics, relay_wakeup)
    scheduler = (
        Scheduler(
            IncrementalRun(settings, pool, connections, publisher, presence.worker, app_metrics),
            app_metrics,
        )
        if settings.sync.enabled
        else None
    )

    async def on_command(delivery: Delivery) -> None:
        try:
            command = parse(ResyncCommand, delivery.body)
        except InvalidMessage as exc:
            await planner.reject(delivery.body, str(exc))
            raise
        await planner.plan(command, delivery.message_id)

    async def on_chunk(delivery: Delivery) -> None:
        await runner.run(parse(ChunkCommand, delivery.body))

    connection = await connect(settings.broker, "worker")
    consumer = Consumer(
        connection,
        settings.broker,
        publisher,
        {"commands": on_command, "chunks": on_chunk},
        push={c.id: settings.push_prefetch(c) for c in settings.connections if c.id > 0},
        push_handler=on_chunk,
        small_handler=on_chunk,
        check_interval=settings.worker.consumer_check_interval,
        metrics=app_metrics,
    )
    try:
        await presence.start()
        app_metrics.watch_breakers([connections.crm, *connections.erps()])
        await consumer.start()
        app[CONSUMER] = consumer
        sweeper.start()
        notifier.start()
        if scheduler is not None:
            await scheduler.start()
        yield
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await notifier.stop()
        app[TASK_WAITER].forget(relay_wakeup)
        await sweeper.stop()
        await consumer.stop(settings.worker.drain_timeout)
        await close_quietly(connection.close())
        await presence.stop()
        await connections.close()


async def _stop_taking_deliveries(app: web.Application) -> None:
    consumer = app.get(CONSUMER)
    if consumer is not None:
        await consumer.begin_stop()
