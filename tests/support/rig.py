"""Fault-test rig: a throwaway PostgreSQL cluster, seeded CRM/ERP schemas, worker processes.

The CRM (connection 0) and two ERPs live as schemas of the service's own database on the
cluster (``tests.support.rig_systems``), served by the ``postgres`` connector (or
``tests.support.flaky:FlakyConnector``), so every process sees the same targets. ERP 1 has every
record (with stale values); ERP 2 has the even records and must get the odd ones created
(``create_missing`` with an idempotency key). :meth:`Rig.audit` counts what a run lost or
duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from engine.devservices.nodes import PostgresCluster
from engine.devservices.processes import Child, Children
from engine.store import migrate
from engine.store.tasks import TERMINAL_STATES
from tests.support import services
from tests.support.rig_systems import SCHEMAS, erp_connection, table, toml
from tests.support.waiting import wait_for


@dataclass
class Report:
    """What a run lost or duplicated (all must be 0)."""

    lost: int
    duplicate_outcomes: int
    duplicate_creates: int
    duplicate_sync_log: int
    mismatched: int
    failed: int
    missing_sync_log: int = 0
    """A clean run's field changes minus this run's sync-log rows."""

    def show(self, name: str) -> None:
        print(  # the figures the fault tests report
            f"[fault {name}] lost={self.lost} duplicate_outcomes={self.duplicate_outcomes} "
            f"duplicate_creates={self.duplicate_creates} "
            f"duplicate_sync_log={self.duplicate_sync_log} "
            f"missing_sync_log={self.missing_sync_log} mismatched={self.mismatched} "
            f"failed={self.failed}"
        )


@dataclass
class Rig:
    """The cluster, the service database, the broker prefix and the workers of one test."""

    cluster: PostgresCluster
    prefix: str
    tmp: Path
    amqp_url: str = services.AMQP_URL
    records: int = 0
    children: Children = field(init=False)

    def __post_init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERPSYNC_")}
        self.children = Children(self.tmp, env)

    @property
    def database_url(self) -> str:
        return self.cluster.url("erpsync")

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    # -- data -----------------------------------------------------------------------------------

    async def seed(self, n: int) -> None:
        """Create the service database, migrate it and seed ``n`` CRM records."""
        admin = await asyncpg.connect(self.cluster.url())
        try:
            await admin.execute("CREATE DATABASE erpsync")
        finally:
            await admin.close()
        conn = await self.connect()
        try:
            await migrate.migrate(conn)
            await conn.execute(SCHEMAS)
            await conn.execute(
                """
                INSERT INTO crm.contact (id, name, phone, email)
                SELECT g, 'Company ' || g, 'p-' || g, g || '@crm' FROM generate_series(1, $1) g;
                INSERT INTO erp1.customer (key, name, phone, email, last_modified)
                SELECT 'C' || g, 'old', CASE WHEN g % 3 = 0 THEN 'p-' || g ELSE 'old' END,
                       'old@erp', now() FROM generate_series(1, $1) g;
                INSERT INTO erp2.customer (id, company, tel, mail, changed_at)
                SELECT g, 'old', 'old', 'old', now() FROM generate_series(2, $1, 2) g;
                SELECT setval('erp2.customer_id_seq', $1 + 1000);
                INSERT INTO internal_keys (id, crm_actor_type, crm_record_id)
                SELECT g, 'Contact', g::text FROM generate_series(1, $1) g;
                INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key)
                SELECT g, 1, 'Customer', 'C' || g FROM generate_series(1, $1) g;
                INSERT INTO external_keys (internal_key_id, connection_id, erp_actor_type, erp_key)
                SELECT g, 2, 'Customer', g::text FROM generate_series(2, $1, 2) g;
                """.replace("$1", str(int(n)))
            )
        finally:
            await conn.close()
        self.records = n

    # -- configuration and processes ------------------------------------------------------------

    def config(
        self,
        *,
        erp1: dict[str, Any] | None = None,
        erp2: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        broker: dict[str, Any] | None = None,
        notifications: dict[str, Any] | None = None,
    ) -> Path:
        """Write a worker configuration; ``erp1``/``erp2`` override connection keys (a
        ``faults`` key switches that connection to the flaky connector with those settings)."""
        crm_settings = {
            "schema": "crm",
            "actor_types": {
                "Contact": table("contact", "id", "updated_at", ["name", "phone", "email"], False)
            },
        }
        data: dict[str, Any] = {
            "database": {"url": self.database_url, "pool_min_size": 1, "pool_max_size": 6},
            "broker": {
                "url": self.amqp_url,
                "prefix": self.prefix,
                "prefetch": 4,
                **(broker or {}),
            },
            "engine": {
                "chunk_size": 25,
                "heartbeat_interval": 0.5,
                "sweep_interval": 0.5,
                "stale_after": 5.0,
                **(engine or {}),
            },
            "notifications": {"relay_interval": 0.2, **(notifications or {})},
            "logging": {"level": "info", "format": "json"},
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5},
            "crm": {"id": 0, "name": "CRM", "connector": "postgres", "settings": crm_settings},
            "connections": [
                erp_connection(1, "erp1", "key", "last_modified", ["name", "phone", "email"], erp1),
                erp_connection(2, "erp2", "id", "changed_at", ["company", "tel", "mail"], erp2),
            ],
        }
        path = self.tmp / f"erpsync-{uuid.uuid4().hex[:6]}.toml"
        path.write_text("".join(f"{k} = {toml(v)}\n" for k, v in data.items()))
        return path

    async def start_worker(self, config: Path, name: str | None = None) -> Child:
        """Start a worker process (``python -m engine serve``) and wait until it is ready."""
        name = name or f"w{len(self.children.started) + 1}"
        return await self.children.start(
            name,
            "engine",
            ["serve", "--config", str(config), "--port", "{port}"],
        )

    @property
    def workers(self) -> list[Child]:
        return self.children.started

    async def kill(self, worker: Child) -> None:
        """SIGKILL the worker and wait until it is gone (its lease then runs out on its own)."""
        worker.kill()
        await worker.wait(timeout=30)

    # -- driving a batch ------------------------------------------------------------------------

    async def submit(self, erp_connection_id: int = 0, keys: list[int] | None = None) -> int:
        """Publish a resync command as another service would; return the task id."""
        message_id = uuid.uuid4().hex
        body = json.dumps(
            {"ErpConnectionId": erp_connection_id, "InternalKeyIds": keys or []}
        ).encode()
        await services.publish_command(self.prefix, body, message_id, self.amqp_url)
        conn = await self.connect()
        try:
            task_id: int = await wait_for(
                lambda: conn.fetchval(
                    "SELECT id FROM batch_tasks WHERE message_id = $1", message_id
                ),
                what="the task to be created",
            )
        finally:
            await conn.close()
        return task_id

    async def task(self, task_id: int) -> dict[str, Any]:
        """The task row; {} while PostgreSQL is away."""
        try:
            conn = await self.connect()
        except (OSError, asyncpg.PostgresError):
            return {}
        try:
            row = await conn.fetchrow("SELECT * FROM batch_tasks WHERE id = $1", task_id)
        finally:
            await conn.close()
        return dict(row) if row else {}

    async def wait_chunks_done(self, task_id: int, at_least: int) -> dict[str, Any]:
        return await wait_for(
            lambda: self.task(task_id),
            lambda t: bool(t) and (t["done_chunks"] >= at_least or t["state"] in TERMINAL_STATES),
            timeout=60,
            interval=0.02,
            what=f"{at_least} chunks of task {task_id}",
        )

    async def finished(self, task_id: int, timeout: float = 120) -> dict[str, Any]:
        try:
            return await wait_for(
                lambda: self.task(task_id),
                lambda t: bool(t) and t["state"] in TERMINAL_STATES,
                timeout=timeout,
                interval=0.2,
                what=f"task {task_id} to finish",
            )
        except AssertionError:
            for worker in self.workers:
                print(f"--- {worker.name} ---\n{worker.tail()}")
            raise

    def finish_events(self, task_id: int) -> int:
        """How many times any worker logged finishing the task."""
        return sum(
            1
            for worker in self.workers
            for event in worker.events()
            if event.get("event") == "task finished" and event.get("task_id") == task_id
        )

    # -- counting -------------------------------------------------------------------------------

    async def audit(self, task_id: int, failing: set[tuple[int, int]] | None = None) -> Report:
        """Lost and duplicated work of a CRM-sourced task over all records.

        ``failing`` lists the (internal key, connection) pairs expected to fail for good: they
        need a ``failed`` outcome and keep their old values.
        """
        failing = failing or set()
        conn = await self.connect()
        try:
            outcomes = await conn.fetch(
                "SELECT internal_key_id, connection_id, status FROM record_outcomes "
                "WHERE task_id = $1",
                task_id,
            )
            by_pair: dict[tuple[int, int], list[str]] = {}
            for key, cid, status in outcomes:
                by_pair.setdefault((key, cid), []).append(status)
            final = {"updated", "unchanged", "created", "failed"}
            pairs = [(i, c) for i in range(1, self.records + 1) for c in (1, 2)]
            lost = sum(1 for p in pairs if not set(by_pair.get(p, [])) & final)
            lost += sum(1 for p in failing if "failed" not in by_pair.get(p, []))
            dup_outcomes = sum(len(v) - 1 for v in by_pair.values() if len(v) > 1)
            erp2_rows = await conn.fetchval("SELECT count(*) FROM erp2.customer")
            # ERP 2 has the even records; it gets the odd ones created unless they fail there.
            expected_rows = self.records - sum(1 for k, c in failing if c == 2 and k % 2)
            dup_creates = max(0, erp2_rows - expected_rows)
            lost += max(0, expected_rows - erp2_rows)
            dup_log = await conn.fetchval(
                """
                SELECT coalesce(sum(n - 1), 0) FROM (
                    SELECT count(*) AS n FROM sync_log WHERE task_id = $1
                    GROUP BY connection_id, internal_key_id, erp_field, direction) g
                """,
                task_id,
            )
            mismatched_rows = await conn.fetch(
                """
                SELECT c.id, 1 FROM crm.contact c
                JOIN external_keys e ON e.internal_key_id = c.id AND e.connection_id = 1
                JOIN erp1.customer t ON t.key = e.erp_key
                WHERE (t.name, t.phone, t.email) IS DISTINCT FROM (c.name, c.phone, c.email)
                UNION ALL
                SELECT c.id, 2 FROM crm.contact c
                LEFT JOIN external_keys e ON e.internal_key_id = c.id AND e.connection_id = 2
                LEFT JOIN erp2.customer t ON t.id::text = e.erp_key
                WHERE (t.company, t.tel, t.mail) IS DISTINCT FROM (c.name, c.phone, c.email)
                """
            )
            mismatched = sum(1 for key, cid in mismatched_rows if (key, cid) not in failing)
            failed = sum(1 for v in by_pair.values() if "failed" in v)
            logged = await conn.fetchval(
                "SELECT count(*) FROM sync_log WHERE task_id = $1", task_id
            )
        finally:
            await conn.close()
        missing = clean_changes(self.records, failing) - logged
        return Report(lost, dup_outcomes, dup_creates, int(dup_log), mismatched, failed, missing)

    async def done_by(self, task_id: int) -> dict[str, int]:
        """Chunks committed per worker id."""
        conn = await self.connect()
        try:
            rows = await conn.fetch(
                "SELECT done_by, count(*) FROM task_chunks WHERE task_id = $1 GROUP BY 1",
                task_id,
            )
        finally:
            await conn.close()
        return {r[0]: r[1] for r in rows}


def assert_nothing_lost(report: Report, name: str, failed: int = 0) -> None:
    """Print the figures, then assert nothing lost, duplicated, missing from the sync log or
    left differing (``failed``: outcomes expected to fail)."""
    report.show(name)
    assert report == Report(0, 0, 0, 0, 0, failed, missing_sync_log=0)


def clean_changes(records: int, failing: set[tuple[int, int]]) -> int:
    """The field changes a clean CRM resync-all of the seeded data logs (see :meth:`Rig.seed`):
    on ERP 1 name and email always, phone unless the record's number divides by 3; on ERP 2
    all three fields (updated or created). Pairs failing for good change nothing."""
    total = 0
    for g in range(1, records + 1):
        if (g, 1) not in failing:
            total += 2 + (g % 3 != 0)
        if (g, 2) not in failing:
            total += 3
    return total


@contextlib.asynccontextmanager
async def rig(prefix: str, tmp: Path, amqp_url: str = services.AMQP_URL) -> Any:
    """A :class:`Rig` on a fresh cluster; processes and cluster are gone afterwards.

    Pass a throwaway node's ``amqp_url`` (``engine.devservices.nodes.RabbitNode``) to fault the
    broker too.
    """
    cluster = PostgresCluster()
    await asyncio.to_thread(cluster.start)
    the_rig = Rig(cluster, prefix, tmp, amqp_url)
    try:
        yield the_rig
    finally:
        the_rig.children.stop_all()
        await asyncio.to_thread(cluster.destroy)
