"""One scenario's resources: its own PostgreSQL database and RabbitMQ prefix
(``erpsync_bench_*``), a scratch directory and erpsync roles as child processes
(``benchmarks.service``), all cleaned up on the way out, also on failure or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import asyncpg

from benchmarks.config import ADMIN_DATABASE_URL, AMQP_URL, settings, settings_json
from benchmarks.reporting import RESULTS_DIR, ROOT
from engine.devservices.ports import free_port
from engine.devservices.processes import Child, Children
from engine.messaging.broker import Publisher, connect
from engine.messaging.commands import ResyncCommand
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.settings import Settings
from engine.store.tasks import TERMINAL_STATES
from tests.support import services


async def seed_links(db: asyncpg.Connection, count: int, targets: Sequence[int] = (1, 2)) -> None:
    """``count`` CRM contacts (internal keys 1..count), each linked as a Customer on ``targets``."""
    await db.execute(
        """
        INSERT INTO internal_keys (id, crm_actor_type, crm_record_id)
        SELECT g, 'Contact', g::text FROM generate_series(1, $1) g
        """,
        count,
    )
    for target in targets:
        await db.execute(
            """
            INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key)
            SELECT g, $2, 'Customer', g::text FROM generate_series(1, $1) g
            """,
            count,
            target,
        )
    await db.execute("SELECT setval('internal_keys_id_seq', $1)", count)
    await db.execute("ANALYZE")


class Bench:
    """One scenario's resources: database, broker prefix, scratch dir, child processes."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.database = services.unique(f"erpsync_bench_{scenario}")
        self.prefix = self.database.replace("_", "-")
        self.scratch = RESULTS_DIR / f"{self.database}.tmp"
        self._children = Children(self.scratch, {**os.environ, "PYTHONPATH": str(ROOT)})
        self.db: asyncpg.Connection | None = None

    @property
    def children(self) -> list[Child]:
        return self._children.started

    async def __aenter__(self) -> Bench:
        _exit_on_sigterm()
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            url = await services.create_database(
                self.database, admin_url=ADMIN_DATABASE_URL, migrated=True
            )
            self.db = await asyncpg.connect(url)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._children.stop_all()
        if self.db is not None:
            with contextlib.suppress(Exception):
                await self.db.close()
        with contextlib.suppress(Exception):
            await services.delete_broker_objects(self.prefix, AMQP_URL)
        with contextlib.suppress(Exception):
            await services.drop_database(self.database, ADMIN_DATABASE_URL)
        if os.environ.get("BENCH_KEEP_LOGS") != "1":
            shutil.rmtree(self.scratch, ignore_errors=True)
        else:
            print(f"   logs kept in {self.scratch}", file=sys.stderr)

    def settings(self, **kw: Any) -> Settings:
        return settings(self.database, self.prefix, **kw)

    async def start(
        self,
        role: str,
        config: Settings,
        name: str | None = None,
        experiment: str | None = None,
    ) -> Child:
        """Start ``benchmarks.service ROLE`` on a free port and wait until it is ready."""
        name = name or f"{role}{len(self.children)}"
        port = free_port()
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"port": port})}
        )
        path = self.scratch / f"{name}.json"
        path.write_bytes(settings_json(config))
        env = {"BENCH_EXPERIMENT": experiment} if experiment else {}
        return await self._children.start(
            name, "benchmarks.service", [role, str(path)], port=port, env=env
        )

    async def stop(self, child: Child) -> None:
        await asyncio.to_thread(child.stop)
        self._children.forget(child)

    @property
    def conn(self) -> asyncpg.Connection:
        assert self.db is not None
        return self.db

    @contextlib.asynccontextmanager
    async def publisher(self, config: Settings) -> AsyncIterator[Publisher]:
        connection = await connect(config.broker, "bench")
        publisher = Publisher(connection, config.broker)
        try:
            await publisher.start()
            yield publisher
        finally:
            await publisher.close()
            await connection.close()

    async def resync_all(self, publisher: Publisher, source: int = 0) -> str:
        """Publish a "resync all" command straight to the broker; returns its message id."""
        body = ResyncCommand.model_validate({"ErpConnectionId": source}).to_body()
        return await publisher.publish(RESYNC_ROUTING_KEY, body)

    async def wait_task(
        self, *, message_id: str | None = None, task_id: int | None = None, timeout: float = 600
    ) -> asyncpg.Record:
        """Poll PostgreSQL until the task is terminal; return its row."""
        deadline = time.monotonic() + timeout
        while True:
            if task_id is not None:
                row = await self.conn.fetchrow("SELECT * FROM batch_tasks WHERE id = $1", task_id)
            else:
                row = await self.conn.fetchrow(
                    "SELECT * FROM batch_tasks WHERE message_id = $1", message_id
                )
            if row is not None and row["state"] in TERMINAL_STATES:
                return row
            for child in self.children:
                if child.returncode is not None:
                    raise RuntimeError(f"{child.name} exited; see {child.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task not finished after {timeout}s: {row and dict(row)}")
            await asyncio.sleep(0.05)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the cleanup in ``Bench.__aexit__`` runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


def run_main(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async ``main`` and exit non-zero on failure."""
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
