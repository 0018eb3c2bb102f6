"""Push units per target: a blocked target does not hold back the others (issue 7, scenario 3).

ERP 2's connector waits on a gate while the test holds it closed: every unit of ERP 2 stays
pending, and still every unit of ERP 1 completes. Once the gate opens, the task finishes with
exactly one outcome per record and target and no change logged twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from pydantic import Field

from connectors.memory import MemoryConfig, MemoryConnector, MemoryStore
from engine.settings import Settings
from tests.support import services
from tests.support.service import Service, link
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

GATES: dict[str, asyncio.Event] = {}
"""Gate name -> event; a connector with that gate waits for the event before each call."""


class GatedConfig(MemoryConfig):
    gate: str | None = Field(None, description="Wait for GATES[gate] before every call.")


class GatedMemoryConnector(MemoryConnector):
    """The memory connector, blocked while the test keeps its gate closed."""

    name = "gated-memory"
    config_model = GatedConfig
    config: GatedConfig

    async def _call(self) -> None:
        if self.config.gate is not None:
            await GATES[self.config.gate].wait()
        await super()._call()


RECORDS = 60
CHUNK = 5


@pytest.fixture
def gate() -> Iterator[str]:
    name = services.unique("gate")
    GATES[name] = asyncio.Event()
    yield name
    GATES.pop(name).set()


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """RECORDS contacts linked on both ERPs, each ERP one value behind the CRM."""
    for i in range(1, RECORDS + 1):
        stores[0].put("Contact", str(i), {"name": f"N{i}", "phone": f"P{i}", "email": f"e{i}"})
        stores[1].put("Customer", f"A{i}", {"name": f"N{i}", "phone": "old", "email": f"e{i}"})
        stores[2].put("Customer", f"B{i}", {"company": "old", "tel": f"P{i}", "mail": f"e{i}"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore], gate: str) -> Settings:
    settings = memory_settings(
        database,
        prefix,
        {cid: s.name for cid, s in stores.items()},
        overrides={2: {"gate": gate}},
        connection_options={2: {"connector": f"{__name__}:GatedMemoryConnector"}},
        chunk_size=CHUNK,
    )
    # A small prefetch everywhere: one chunk delivery for all targets would block at once.
    return settings.model_copy(
        update={
            "broker": settings.broker.model_copy(update={"prefetch": 2}),
            "worker": settings.worker.model_copy(update={"drain_timeout": 5.0}),
        }
    )


async def units(db: asyncpg.Connection, task_id: int) -> dict[int, dict[str, int]]:
    """Per target: push units by state."""
    rows = await db.fetch(
        """SELECT target_connection_id, state, count(*) FROM task_chunks
           WHERE task_id = $1 AND target_connection_id IS NOT NULL GROUP BY 1, 2""",
        task_id,
    )
    by_target: dict[int, dict[str, int]] = {1: {}, 2: {}}
    for target, state, count in rows:
        by_target[target][state] = count
    return by_target


async def test_a_blocked_target_does_not_hold_back_the_other(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    gate: str,
) -> None:
    await seed(db, stores)
    chunks = RECORDS // CHUNK
    async with Service(settings_for(database, broker_prefix, stores, gate)) as service:
        task_id = await service.resync(0, [])
        # Every ERP 1 unit completes although not one ERP 2 call has returned.
        by_target = await wait_for(
            lambda: units(db, task_id),
            lambda u: u[1].get("done") == chunks,
            timeout=60,
            what="every unit of ERP 1 to be done",
        )
        running = await service.task(task_id)
        assert by_target[2] == {"pending": chunks}, by_target
        assert running["State"] == "Started"
        # progress: 60 source steps + 60 ERP 1 pushes of 60 x 3
        assert running["ProgressPercent"] == 66, running
        assert all(
            stores[1].get("Customer", f"A{i}")["phone"] == f"P{i}"  # type: ignore[index]
            for i in range(1, RECORDS + 1)
        )
        assert all(
            stores[2].get("Customer", f"B{i}")["company"] == "old"  # type: ignore[index]
            for i in range(1, RECORDS + 1)
        )

        GATES[gate].set()
        done = await service.finished(task_id, timeout=60)

    assert done["State"] == "Succeeded", done
    assert done["ProgressPercent"] == 100
    stats = done["Statistics"]
    assert stats["DoneRecords"] == RECORDS and stats["Updated"] == 2 * RECORDS
    assert stats["PushUnits"] == 2 * chunks and stats["RetryChunks"] == 0
    assert stats["ChunksDone"] == stats["Chunks"] == chunks + 2 * chunks
    assert all(
        stores[2].get("Customer", f"B{i}")["company"] == f"N{i}"  # type: ignore[index]
        for i in range(1, RECORDS + 1)
    )
    outcomes = await db.fetch(
        """SELECT connection_id, count(*) AS n, count(DISTINCT internal_key_id) AS keys
           FROM record_outcomes WHERE task_id = $1 GROUP BY 1 ORDER BY 1""",
        task_id,
    )
    assert [tuple(r) for r in outcomes] == [(1, RECORDS, RECORDS), (2, RECORDS, RECORDS)]
    logged = await db.fetchval(
        """SELECT count(*) - count(DISTINCT (connection_id, internal_key_id, erp_field))
           FROM sync_log WHERE task_id = $1""",
        task_id,
    )
    assert logged == 0
    assert await db.fetchval("SELECT count(*) FROM sync_log WHERE task_id = $1", task_id) == (
        2 * RECORDS
    )
