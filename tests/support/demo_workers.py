"""Worker processes for fault tests: the demo configuration on a test database and broker.

``erpsync worker`` runs as a real subprocess (``python -m engine worker``) with a generated TOML
config: the demo configuration (PostgreSQL connectors over the demo schemas, which
``seed_demo`` fills in the test database) whose CRM connector is :class:`SlowPostgresConnector`,
so chunks take long enough to be caught in flight. Everything else comes from environment
variables (database URL, broker URL and prefix, ports, drain timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from pydantic import Field

from connectors.contract import GetActorsInput, GetActorsResult
from connectors.postgres import PostgresConfig, PostgresConnector
from engine.devservices.processes import REPO, Child, Children
from engine.store import demo
from tests.support import services

DEMO_CONFIG = REPO / "config" / "erpsync.toml"
SLOW_CONNECTOR = f"{__name__}:SlowPostgresConnector"


class SlowPostgresConfig(PostgresConfig):
    """The postgres connector's settings plus injected delays."""

    delay_ms: float = Field(0.0, ge=0, description="Sleep before every get_actors call.")
    stall_keys: list[str] = Field(default_factory=list)
    stall_file: str | None = Field(
        None,
        description="While this file exists, get_actors for a stall key blocks; it touches "
        "'<stall_file>.hit' when it starts blocking.",
    )


class SlowPostgresConnector(PostgresConnector):
    """The postgres connector, slowed down (for the CRM as the source of a resync)."""

    name = "slow-postgres"
    config_model = SlowPostgresConfig
    config: SlowPostgresConfig

    async def get_actors(self, request: GetActorsInput) -> GetActorsResult:
        config = self.config
        if config.delay_ms:
            await asyncio.sleep(config.delay_ms / 1000)
        if config.stall_file and set(request.keys) & set(config.stall_keys):
            # A file, not an event: the test process controls the stall across processes.
            stall = Path(config.stall_file)
            if stall.exists():  # noqa: ASYNC240
                Path(f"{stall}.hit").touch()  # noqa: ASYNC240
            while stall.exists():  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.05)
        return await super().get_actors(request)


def demo_config(
    directory: Path,
    *,
    delay_ms: float = 0,
    stall_keys: list[str] | None = None,
    stall_file: Path | None = None,
    sync: bool = False,
) -> Path:
    """Write the demo configuration with the slow CRM connector; return its path."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    crm = 'connector = "postgres"\n\n[crm.settings]\nschema = "demo_crm"\n'
    assert crm in text, "config/erpsync.toml changed: update tests/faults/demo_workers.demo_config"
    extra = f"delay_ms = {delay_ms}\n"
    if stall_keys:
        extra += f"stall_keys = {stall_keys!r}\n".replace("'", '"')
    if stall_file is not None:
        extra += f'stall_file = "{stall_file}"\n'
    text = text.replace(
        crm, f'connector = "{SLOW_CONNECTOR}"\n\n[crm.settings]\nschema = "demo_crm"\n{extra}'
    )
    # The continuous sync would add its own writes to what these tests count; off unless asked.
    if not sync:
        assert "\n[sync]" in text and "\nenabled = true" in text
        text = text.replace("\nenabled = true", "\nenabled = false", 1)
    path = directory / "erpsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def seed_demo(database: str) -> None:
    """Fill the demo schemas (3,000 linked records) in a test database."""
    conn = await asyncpg.connect(services.database_url(database))
    try:
        await demo.seed(conn)
    finally:
        await conn.close()


class Workers:
    """Starts ``erpsync <command>`` children with the demo configuration."""

    def __init__(self, config: Path, children: Children) -> None:
        self.config = config
        self.children = children

    async def start(self, name: str, command: str = "worker", **env: str) -> Child:
        """Start ``erpsync <command>`` (``worker``, ``api`` or ``serve``) and wait until ready."""
        args = [command, "--config", str(self.config), "--port", "{port}"]
        return await self.children.start(name, "engine", args, env=env)


@contextlib.asynccontextmanager
async def workers(
    database: str,
    broker_url: str,
    prefix: str,
    *,
    delay_ms: float = 0,
    stall_keys: list[str] | None = None,
    stall_file: Path | None = None,
    sync: bool = False,
    **env: str,
) -> AsyncIterator[Workers]:
    """Worker processes on ``database`` and ``broker_url``/``prefix``; all killed afterwards."""
    with tempfile.TemporaryDirectory(prefix="erpsync-procs-") as tmp:
        directory = Path(tmp)
        config = demo_config(
            directory, delay_ms=delay_ms, stall_keys=stall_keys, stall_file=stall_file, sync=sync
        )
        base_env = {
            **os.environ,
            "ERPSYNC_DATABASE_URL": services.database_url(database),
            "ERPSYNC_BROKER_URL": broker_url,
            "ERPSYNC_BROKER_PREFIX": prefix,
            "ERPSYNC_LOG_FORMAT": "json",
            "ERPSYNC_DATABASE__POOL_MIN_SIZE": "1",
            "ERPSYNC_DATABASE__POOL_MAX_SIZE": "4",
            "ERPSYNC_WORKER__CONSUMER_CHECK_INTERVAL": "0.5",
            **env,
        }
        children = Children(directory, base_env)
        try:
            yield Workers(config, children)
        finally:
            children.kill_all()


WORK_QUEUES = ("commands", "chunks", "push.1", "push.2")
"""Queue name suffixes the workers consume with the demo configuration (ERPs 1 and 2)."""

ALL_CONSUMED_BY_TWO = dict.fromkeys(WORK_QUEUES, 2)
NOTHING_QUEUED = dict.fromkeys((*WORK_QUEUES, "dead-letters"), 0)


async def consumer_counts(broker_url: str, prefix: str) -> dict[str, int]:
    """Consumers per work queue, as the broker sees them."""
    counts = await services.queue_counts([f"{prefix}.{s}" for s in WORK_QUEUES], broker_url)
    return {suffix: counts[f"{prefix}.{suffix}"][1] for suffix in WORK_QUEUES}


async def task_progress(db: asyncpg.Connection, message_id: str) -> asyncpg.Record | None:
    """The task created for a command message: id, state, chunk counters, start count."""
    return await db.fetchrow(
        """SELECT id, state, total_chunks, retry_chunks, push_units, done_chunks, start_count,
                  response
           FROM batch_tasks WHERE message_id = $1""",
        message_id,
    )


DEMO_CLEAN_CHANGES = 1739
"""Field changes a clean CRM resync-all of the freshly seeded demo logs (the clean run in
``tests/e2e/test_messages_processes.py`` asserts it)."""


async def accounting(db: asyncpg.Connection, task_id: int) -> dict[str, int]:
    """Lost and duplicated counts for a 'resync all' task over the demo data.

    ``lost``: linked internal keys without any outcome; ``duplicate_outcomes``: (key,
    connection) pairs recorded twice; ``duplicate_sync_log``: (connection, key, field) changes
    logged twice; ``failed``: outcomes that are failures; ``sync_log``: the task's rows
    (:data:`DEMO_CLEAN_CHANGES` for a run that lost none).
    """
    row = await db.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM internal_keys k
            WHERE EXISTS (SELECT 1 FROM external_keys e WHERE e.internal_key_id = k.id)
              AND NOT EXISTS (SELECT 1 FROM record_outcomes o
                              WHERE o.task_id = $1 AND o.internal_key_id = k.id)) AS lost,
          (SELECT count(*) - count(DISTINCT (internal_key_id, connection_id))
             FROM record_outcomes WHERE task_id = $1) AS duplicate_outcomes,
          (SELECT count(*) - count(DISTINCT (connection_id, internal_key_id, erp_field))
             FROM sync_log WHERE task_id = $1) AS duplicate_sync_log,
          (SELECT count(*) FROM record_outcomes
            WHERE task_id = $1 AND status NOT IN ('updated', 'unchanged', 'created')) AS failed,
          (SELECT count(DISTINCT internal_key_id) FROM record_outcomes
            WHERE task_id = $1) AS records,
          (SELECT count(*) FROM sync_log WHERE task_id = $1) AS sync_log
        """,
        task_id,
    )
    assert row is not None
    return {key: int(row[key]) for key in row.keys()}  # noqa: SIM118


async def queue_depths(broker_url: str, prefix: str) -> dict[str, int]:
    """Ready messages per queue."""
    suffixes = (*WORK_QUEUES, "dead-letters")
    counts = await services.queue_counts([f"{prefix}.{s}" for s in suffixes], broker_url)
    return {suffix: counts[f"{prefix}.{suffix}"][0] for suffix in suffixes}


def assert_whole_batch_done(task: asyncpg.Record, figures: dict[str, int]) -> None:
    """A "resync all" of the demo data succeeded with nothing lost, duplicated or failed
    (``figures`` from :func:`accounting`)."""
    assert task["state"] == "Succeeded", task["response"]
    assert task["total_chunks"] == 30 and task["push_units"] == 60  # 2 targets
    assert task["done_chunks"] == task["total_chunks"] + task["retry_chunks"]
    assert figures["lost"] == 0
    assert figures["records"] == 3000
    assert figures["duplicate_outcomes"] == 0
    assert figures["duplicate_sync_log"] == 0
    assert figures["sync_log"] == DEMO_CLEAN_CHANGES  # none missing
    assert figures["failed"] == 0
