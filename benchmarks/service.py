"""Child process the benchmarks start: an erpsync role, or the design's ceiling handler.

``python -m benchmarks.service ROLE SETTINGS_JSON`` where ROLE is ``api`` (front door),
``worker`` (engine), ``serve`` (both), ``ceiling`` (an aiohttp handler that only does the
front door's confirmed persistent publish: no auth, validation or database) or ``reference``
(a straightforward FastStream + aiohttp + asyncpg front door, :mod:`benchmarks.reference`).

Experiments: ``BENCH_EXPERIMENT=flag,flag`` switches improvements off one at a time for
interleaved A/B runs (see :func:`apply_experiments`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from benchmarks.bare_app import bare_app
from engine.app import create_app, freeze_heap_after_startup
from engine.messaging.broker import Publisher, connect
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.observability.logging import configure
from engine.runtime.eventloop import new_event_loop
from engine.settings import Settings

PUBLISHER = web.AppKey("publisher", Publisher)
NEWER_SETTINGS: list[tuple[str, str]] = []
"""(section, key) of settings added after the base commit of an A/B (see ``base``): left out
of the base's settings file while at their default."""
CEILING_BODY = orjson.dumps({"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))})


def ceiling_app(settings: Settings) -> web.Application:
    """POST anything: publish one persistent command with a confirm, answer 204."""

    async def publisher(app: web.Application) -> AsyncIterator[None]:
        connection = await connect(settings.broker, "ceiling")
        app[PUBLISHER] = Publisher(connection, settings.broker)
        await app[PUBLISHER].start()
        yield
        await app[PUBLISHER].close()
        await connection.close()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await request.app[PUBLISHER].publish(RESYNC_ROUTING_KEY, CEILING_BODY)
        return web.Response(status=204)

    return bare_app(publisher, handle)


def experiments() -> set[str]:
    """The comma-separated flags of ``BENCH_EXPERIMENT``."""
    return {f for f in os.environ.get("BENCH_EXPERIMENT", "").split(",") if f}


def apply_experiments(settings: Settings) -> Settings:
    """Switch off (or back on) one improvement at a time, for interleaved A/B runs:

    * ``pool_reset``: asyncpg's default per-release reset query again;
    * ``no_batch``: one INSERT per request instead of the micro-batched inserts;
    * ``no_uvloop``: the standard asyncio event loop;
    * ``no_gc_freeze``: no ``gc.freeze()`` after start-up;
    * ``stdlib_json``: the stdlib ``json`` codec for jsonb instead of orjson;
    * ``channelsN``: the publisher spreads publishes over N confirm channels;
    * ``procsN``: N processes serve the port (``SO_REUSEPORT``, as ``erpsync api --processes``);
    * ``gc_log``: print garbage collections longer than 2 ms (diagnostics, not an A/B flag);
    * ``gc_stats``: print the share of time in garbage collections every 5 s (diagnostics);
    * ``stall_log``: print confirms and inserts slower than 30 ms, and event-loop lag;
    * ``coalesce``: send the AMQP frames written in one event-loop iteration together;
    * ``log_warning``: log at warning instead of ``erpsync api``'s default info (no line per
      accepted request);
    * ``log_stdlib``: our log lines through the standard library's logging again (a LogRecord
      and a formatter per line, as before session 6) instead of structlog's direct writer;
    * ``publish_drain``: every publish waits for its socket write to drain (aiormq's
      ``wait=True``, what aio-pika's ``Exchange.publish`` did) before waiting for the confirm.
    * ``intake_cm``: ForceResyncBatchTask without an Idempotency-Key goes through
      ``TaskIntake.create``'s async context manager again (before session 6's fast path);
    * ``gc0_N``: the garbage collector's generation-0 threshold at N (default 700);
    * ``publish_timeout_outer``: a second ``asyncio.timeout`` around every publish (before
      session 6 the publisher put its own around aiormq's).

    The ``skip_*`` flags remove one piece of the front door's work each, for the marginal-cost
    ladder of session 7 (they change behaviour: measurements only):

    * ``skip_http_metrics``: no HTTP request metrics (count and latency);
    * ``skip_auth``: every request is the same Basic principal (no credential check);
    * ``base``: the service from the checkout in ``BENCH_BASE_TREE`` (e.g. ``git archive`` of
      the commit before a change), interleaved with this one;
    * ``layers3``: two pass-through middlewares around the one real middleware (as many
      layers as the three middlewares before session 7);
    * ``skip_body``: the body is read but not parsed (always 10 keys from connection 0);
    * ``skip_insert``: no task row (a counter as the task id);
    * ``log_spinN``: instead of the ``resync queued`` line, N microseconds of busy loop (how
      much a microsecond of Python costs in situ);
    * ``log_raw``: the ``resync queued`` line as one ``os.write`` of an orjson dict, without
      structlog's processors;
    * ``log_devnull``: stderr (the log) to ``/dev/null`` instead of the log file;
    * ``log_pipe``: stderr (the log) into a pipe that a ``cat`` process copies to the log file
      (as a supervisor collecting the output would);
    * ``log_buffered``: info and debug lines written once per event-loop iteration, all of an
      iteration's lines with one ``write`` (session 8; not kept, docs/benchmarks.md).
    """
    flags = experiments()
    _skip_pieces(flags)
    if "publish_timeout_outer" in flags:
        _outer_publish_timeout()
    if "intake_cm" in flags:
        _intake_through_context_manager()
    for flag in flags:
        if flag.startswith("gc0_"):  # e.g. gc0_20000
            import gc

            gc.set_threshold(int(flag[4:]), *gc.get_threshold()[1:])
    if "gc_log" in flags:
        _log_gc_pauses()
    if "gc_stats" in flags:
        _gc_stats()
    if "batch_stats" in flags:
        _batch_stats()
    if "stall_log" in flags:
        _log_slow_publishes()
    if "coalesce" in flags:
        _coalesce_amqp_writes()
    if "publish_drain" in flags:
        _drain_every_publish()
    if "pool_reset" in flags:
        create_pool = asyncpg.create_pool

        def with_reset(*args: Any, **kw: Any) -> Any:
            kw.pop("reset", None)
            return create_pool(*args, **kw)

        asyncpg.create_pool = with_reset
    if "stdlib_json" in flags:
        import json

        from engine.store import pool

        async def init(conn: asyncpg.Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

        pool._init_connection = init
    if "log_warning" in flags:
        logging = settings.logging.model_copy(update={"level": "warning"})
        settings = settings.model_copy(update={"logging": logging})
    server: dict[str, Any] = {}
    if "no_batch" in flags:
        server["batch_task_inserts"] = False
    if "no_uvloop" in flags:
        server["uvloop"] = False
    if "no_gc_freeze" in flags:
        server["gc_freeze"] = False
    for flag in flags:
        if flag.startswith("channels"):  # e.g. channels2: publisher_channels = 2
            broker = settings.broker.model_copy(update={"publisher_channels": int(flag[8:])})
            settings = settings.model_copy(update={"broker": broker})
    if server:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=server)})
    return settings


def _skip_pieces(flags: set[str]) -> None:
    """The ``skip_*``, ``log_*`` and ``layers3`` flags (see :func:`apply_experiments`):
    monkeypatches, before the app is built."""
    import itertools
    import uuid

    from engine.api import auth, routes
    from engine.api.bodies import ResyncRequest
    from engine.api.intake import NewTask, TaskIntake
    from engine.observability.metrics import Metrics

    if "skip_http_metrics" in flags:
        Metrics.http_request = lambda *_: None  # type: ignore[method-assign]
    if "skip_auth" in flags:
        principal = auth.Principal("bench", "basic")

        async def fixed(self: auth.Authenticator, request: web.Request) -> auth.Principal:
            return principal

        auth.Authenticator.principal = fixed  # type: ignore[method-assign]
    if "layers3" in flags:
        import engine.app
        from engine.api import middleware as fused

        def with_layers(*args: Any) -> Any:
            @web.middleware
            async def layer(request: web.Request, handler: Any) -> web.StreamResponse:
                response: web.StreamResponse = await handler(request)
                return response

            inner = fused.front_door_middleware(*args)

            # aiohttp applies them outermost first: two extra layers around the real one
            return [layer, layer, inner]

        original_init = web.Application.__init__

        def init(self: web.Application, *a: Any, middlewares: Any = (), **kw: Any) -> None:
            flat = [m for item in middlewares for m in (item if isinstance(item, list) else [item])]
            original_init(self, *a, middlewares=flat, **kw)

        engine.app.front_door_middleware = with_layers  # type: ignore[attr-defined, assignment]
        web.Application.__init__ = init  # type: ignore[method-assign]
    for flag in flags:
        if flag.startswith("log_spin"):  # e.g. log_spin8
            import time

            spin = int(flag[8:]) / 1e6

            class Spin:
                def __init__(self, seconds: float) -> None:
                    self.seconds = seconds

                def info(self, *_: Any, **__: Any) -> None:
                    until = time.perf_counter() + self.seconds
                    while time.perf_counter() < until:
                        pass

            routes.log = Spin(spin)
    if "ctx_count" in flags:  # diagnostics: the size of a request's context, once
        import contextvars

        original_info = routes.log.info
        seen = [False]

        def info(*args: Any, **kw: Any) -> Any:
            if not seen[0]:
                seen[0] = True
                names = [v.name for v in contextvars.copy_context()]
                print(f"context vars {len(names)}: {names[:40]}", file=sys.stderr, flush=True)
            return original_info(*args, **kw)

        routes.log.info = info
    if "log_pipe" in flags:
        _log_through_pipe()
    if "log_devnull" in flags:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    if "log_raw" in flags:
        import datetime

        import structlog

        class Raw:
            def info(self, event: str, **kw: Any) -> None:
                kw["event"] = event
                kw.update(structlog.contextvars.get_contextvars())
                kw["level"] = "info"
                kw["logger"] = "engine.api.routes"
                now = datetime.datetime.now(datetime.UTC)
                kw["timestamp"] = now.isoformat().replace("+00:00", "Z")
                os.write(2, orjson.dumps(kw) + b"\n")

        routes.log = Raw()
    if "skip_insert" in flags:
        ids = itertools.count(1)

        async def create_unkeyed(
            self: TaskIntake, resync: ResyncRequest, name: str = ""
        ) -> NewTask:
            return NewTask(next(ids), resync, uuid.uuid4().hex)

        TaskIntake.create_unkeyed = create_unkeyed


def _outer_publish_timeout() -> None:
    """Experiment: the publisher's own timer around aiormq's again (one more per publish)."""
    import asyncio

    original = Publisher.publish

    async def publish(self: Publisher, *args: Any, **kwargs: Any) -> str:
        async with asyncio.timeout(self._settings.publish_timeout):
            return await original(self, *args, **kwargs)

    Publisher.publish = publish  # type: ignore[method-assign]


def _intake_through_context_manager() -> None:
    """Experiment: the unkeyed task created through ``TaskIntake.create``'s context manager."""
    from engine.api.bodies import ResyncRequest
    from engine.api.intake import NewTask, TaskIntake

    async def create_unkeyed(self: TaskIntake, resync: ResyncRequest, name: str = "") -> NewTask:
        async with self.create(resync, principal="", key=None) as task:  # calls _create
            return task

    TaskIntake.create_unkeyed = create_unkeyed


def _log_through_stdlib(level: str) -> None:
    """Experiment: structlog through the standard library, as ``configure`` did before."""
    import logging

    import structlog

    from engine.observability.logging import _dumps

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def _log_buffered() -> None:
    """Experiment: info and debug lines buffered and written once per event-loop iteration."""
    import asyncio

    import structlog

    stream = sys.stderr.buffer
    pending: list[bytes] = []

    def flush() -> None:
        if pending:
            data = b"".join(pending)
            pending.clear()
            stream.write(data)
            stream.flush()

    class Buffered(structlog.BytesLogger):
        def info(self, message: bytes) -> None:
            if not pending:
                try:
                    asyncio.get_running_loop().call_soon(flush)
                except RuntimeError:
                    pending.append(message + b"\n")
                    flush()
                    return
            pending.append(message + b"\n")

        debug = info

        def warning(self, message: bytes) -> None:
            pending.append(message + b"\n")
            flush()

        warn = error = critical = exception = fatal = msg = warning

    config = structlog.get_config()
    structlog.configure(
        processors=config["processors"],
        logger_factory=lambda *args: Buffered(stream, name=str(args[0]) if args else None),
        wrapper_class=config["wrapper_class"],
        cache_logger_on_first_use=True,
    )


def _log_through_pipe() -> None:
    """Experiment: stderr (the log) into a pipe read by ``cat`` writing to the log file, as
    under a supervisor or container runtime that collects a service's output."""
    import subprocess

    read, write = os.pipe()
    subprocess.Popen(["/bin/cat"], stdin=read, stdout=os.dup(2), start_new_session=True)
    os.close(read)
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)


def _batch_stats(every: float = 5.0) -> None:
    """Print the task batcher's statements and rows every ``every`` seconds (diagnostics)."""
    import time

    from engine.store.task_batch import TaskBatcher

    original = TaskBatcher._flush
    state = {"since": time.monotonic(), "batches": 0, "rows": 0}

    async def flush(self: TaskBatcher, batch: list[Any]) -> None:
        state["batches"] += 1
        state["rows"] += len(batch)
        await original(self, batch)
        if (now := time.monotonic()) - state["since"] >= every:
            print(
                f"task batches {state['batches']} rows {state['rows']} "
                f"= {state['rows'] / state['batches']:.1f} rows per INSERT",
                file=sys.stderr,
                flush=True,
            )
            state.update(since=now, batches=0, rows=0)

    TaskBatcher._flush = flush  # type: ignore[method-assign]


def _log_gc_pauses(threshold: float = 0.002) -> None:
    """Print every garbage collection longer than ``threshold`` seconds (diagnostics)."""
    import gc
    import time

    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (took := time.perf_counter() - started[0]) >= threshold:
            print(
                f"gc pause {took * 1e3:.1f} ms generation {info['generation']} "
                f"collected {info['collected']} at {time.monotonic():.3f} "
                f"frozen {gc.get_freeze_count()} tracked {len(gc.get_objects())}",
                file=sys.stderr,
                flush=True,
            )

    gc.callbacks.append(callback)


def _gc_stats(every: float = 5.0) -> None:
    """Print, every ``every`` seconds, the share of the time spent in garbage collections
    by generation (diagnostics)."""
    import gc
    import time

    start, since = 0.0, time.perf_counter()
    took, counts = [0.0, 0.0, 0.0], [0, 0, 0]

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal start, since, took, counts
        now = time.perf_counter()
        if phase == "start":
            start = now
            return
        generation = info["generation"]
        took[generation] += now - start
        counts[generation] += 1
        if now - since >= every:
            span = now - since
            shares = " ".join(
                f"gen{g} {n} x {t / max(n, 1) * 1e6:.0f} us = {t / span:.1%}"
                for g, (n, t) in enumerate(zip(counts, took, strict=True))
            )
            print(f"gc over {span:.1f} s: {shares}", file=sys.stderr, flush=True)
            since, took, counts = now, [0.0, 0.0, 0.0], [0, 0, 0]

    gc.callbacks.append(callback)


def _coalesce_amqp_writes() -> None:
    """Experiment: aiormq sends every frame set with its own socket write; buffer the writes
    of one event-loop iteration and send them together."""
    import asyncio

    import aiormq.connection

    class Coalescing:
        def __init__(self, writer: asyncio.StreamWriter) -> None:
            self._writer = writer
            self._chunks: list[bytes] = []
            self._scheduled = False

        def write(self, data: bytes) -> None:
            self._chunks.append(data)
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

        def _flush(self) -> None:
            self._scheduled = False
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                if not self._writer.is_closing():
                    self._writer.write(b"".join(chunks))

        async def drain(self) -> None:
            self._flush()
            await self._writer.drain()

        def close(self) -> None:
            self._flush()
            self._writer.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._writer, name)

    original = aiormq.connection.Connection._Connection__writer  # type: ignore[attr-defined]

    async def writer(self: Any, stream: asyncio.StreamWriter) -> None:
        await original(self, Coalescing(stream))

    aiormq.connection.Connection._Connection__writer = writer  # type: ignore[attr-defined]


def _drain_every_publish() -> None:
    """Experiment: the publisher as it was, waiting for the write's drain on every publish."""
    import aiormq

    original = aiormq.Channel.basic_publish

    async def basic_publish(self: Any, *args: Any, **kw: Any) -> Any:
        kw["wait"] = True
        return await original(self, *args, **kw)

    aiormq.Channel.basic_publish = basic_publish  # type: ignore[method-assign]


def _log_slow_publishes(threshold: float = 0.03) -> None:
    """Print confirms and task inserts slower than ``threshold`` seconds, and event-loop lag
    above it (a loop blocked or starved of CPU): tells broker, database and CPU stalls apart."""
    import asyncio
    import time

    from engine.store.task_batch import TaskBatcher

    def timed(what: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kw)
            finally:
                if (took := time.perf_counter() - started) >= threshold:
                    print(
                        f"slow {what} {took * 1e3:.1f} ms at {time.monotonic():.3f}",
                        file=sys.stderr,
                    )

        return wrapper

    Publisher.publish = timed("publish", Publisher.publish)  # type: ignore[method-assign, assignment]
    TaskBatcher._insert = timed("insert", TaskBatcher._insert)  # type: ignore[method-assign, assignment]

    async def watch_loop() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            if (late := time.perf_counter() - started - 0.01) >= threshold:
                print(f"loop lag {late * 1e3:.1f} ms at {time.monotonic():.3f}", file=sys.stderr)

    original = web.Application.startup

    async def startup(self: web.Application) -> None:
        await original(self)
        self["stall_watch"] = asyncio.get_running_loop().create_task(watch_loop())

    web.Application.startup = startup  # type: ignore[method-assign]


def main() -> None:
    base = os.environ.get("BENCH_BASE_TREE")
    if "base" in experiments() and base and Path.cwd() != Path(base):
        # The same service from another checkout (e.g. the commit before a change), for an
        # interleaved A/B of two versions of the code in one run.
        # Settings added since the base commit are left out (at their defaults only).
        data = orjson.loads(Path(sys.argv[2]).read_bytes())
        for section, key in NEWER_SETTINGS:
            if data[section].get(key) == Settings.model_fields[section].default.__dict__[key]:
                del data[section][key]
        path = Path(sys.argv[2]).with_suffix(".base.json")
        path.write_bytes(orjson.dumps(data))
        os.chdir(base)
        os.execv(  # noqa: S606
            sys.executable, [sys.executable, "-m", "benchmarks.service", sys.argv[1], str(path)]
        )
    role, path = sys.argv[1], Path(sys.argv[2])
    settings = apply_experiments(Settings.model_validate(orjson.loads(path.read_bytes())))
    configure(settings.logging)
    if "log_stdlib" in experiments():
        _log_through_stdlib(settings.logging.level)
    if "log_buffered" in experiments():
        _log_buffered()
    processes = next(
        (int(f[5:]) for f in experiments() if f.startswith("procs")), 1
    )  # e.g. procs2: two front door processes on the port (SO_REUSEPORT)
    if processes > 1:
        from engine.runtime.processes import run_forked

        def child() -> None:
            serve(settings, role, shared=True)

        sys.exit(run_forked(processes, child))
    serve(settings, role, shared=False)


def serve(settings: Settings, role: str, *, shared: bool) -> None:
    if role == "ceiling":
        app = ceiling_app(settings)
    elif role == "reference":
        from benchmarks.config import PASSWORD, USER
        from benchmarks.reference import reference_app

        app = reference_app(settings, USER, PASSWORD)
    else:
        app = create_app(settings, api=role in ("api", "serve"), engine=role in ("worker", "serve"))
    if settings.server.gc_freeze:  # the ceiling handler too, so the comparison stays fair
        freeze_heap_after_startup(app)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        shutdown_timeout=settings.server.shutdown_timeout,
        print=None,
        access_log=None,
        # The ceiling handler runs on the same loop as the front door, so the comparison is fair.
        loop=new_event_loop(settings.server.uvloop),
        reuse_port=shared or None,
    )


if __name__ == "__main__":
    main()
