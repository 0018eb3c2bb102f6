"""Push units survive a lost publish: the stage-1 commit stores them, the sweeper publishes them.

Between a chunk's stage-1 commit and the publish of its push units the process can die or the
broker can refuse. Here the broker refuses every unit publish (the runner's and the sweeper's)
until the test allows them: every unit stays stored and pending, none is lost, and once
publishing works again the sweeper delivers them and each change is logged exactly once.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.messaging.broker import Publisher, PublishFailed
from engine.settings import Settings
from tests.support.service import Service, link
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

RECORDS = 30
CHUNK = 5


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore]) -> Settings:
    settings = memory_settings(
        database, prefix, {cid: s.name for cid, s in stores.items()}, chunk_size=CHUNK
    )
    # publish grace = 2 x publish_timeout + sweep_interval = 2.3 s
    return settings.model_copy(
        update={
            "broker": settings.broker.model_copy(update={"publish_timeout": 1.0}),
            "engine": settings.engine.model_copy(update={"sweep_interval": 0.3}),
        }
    )


class RefusedUnits:
    """Publisher.publish_chunk that fails for push units while ``refusing``."""

    def __init__(self) -> None:
        self.refusing = True
        self.refused = 0
        self.original = Publisher.publish_chunk

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = self.original

        async def publish_chunk(
            publisher: Publisher, task_id: int, chunk_no: int, target: int | None
        ) -> str:
            if self.refusing and target is not None:
                self.refused += 1
                raise PublishFailed("refused by the test")
            return await original(publisher, task_id, chunk_no, target)

        monkeypatch.setattr(Publisher, "publish_chunk", publish_chunk)


async def chunk_states(db: asyncpg.Connection, task_id: int) -> dict[str, Any]:
    row = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE target_connection_id IS NULL AND state = 'done') AS stage1,
                  count(*) FILTER (WHERE target_connection_id IS NOT NULL) AS units,
                  count(*) FILTER (WHERE target_connection_id IS NOT NULL AND state = 'done')
                    AS units_done
           FROM task_chunks WHERE task_id = $1""",
        task_id,
    )
    assert row is not None
    return dict(row)


async def test_units_whose_publish_failed_are_published_by_the_sweeper(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(1, RECORDS + 1):
        stores[0].put("Contact", str(i), {"name": f"N{i}", "phone": f"P{i}", "email": f"e{i}"})
        stores[1].put("Customer", f"A{i}", {"name": "old", "phone": "old", "email": f"e{i}"})
        stores[2].put("Customer", f"B{i}", {"company": "old", "tel": "old", "mail": "old"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})
    refused = RefusedUnits()
    refused.install(monkeypatch)
    chunks = RECORDS // CHUNK

    async with Service(settings_for(database, broker_prefix, stores)) as service:
        task_id = await service.resync(0, [])
        stored = await wait_for(
            lambda: chunk_states(db, task_id),
            lambda s: s["stage1"] == chunks and s["units"] == 2 * chunks,
            what="stage 1 to commit every chunk and its units",
        )
        # The sweeper tried too, once the grace had passed, and was refused as well.
        await wait_for(
            lambda: _value(refused.refused),
            lambda n: n > 2 * chunks,
            timeout=30,
            what="the sweeper to try the units",
        )
        stalled = await chunk_states(db, task_id)
        running = await service.task(task_id)
        assert stored["units_done"] == stalled["units_done"] == 0
        assert running["State"] == "Started" and running["ProgressPercent"] < 100
        assert stores[1].get("Customer", "A1")["phone"] == "old"  # type: ignore[index]

        refused.refusing = False
        done = await service.finished(task_id, timeout=60)

    print(f"[fault unit-publish-refused] refused publishes: {refused.refused}, task: {done}")
    assert done["State"] == "Succeeded", done
    assert done["StartCount"] == 1
    assert done["Statistics"]["PushUnits"] == 2 * chunks
    assert done["Statistics"]["ChunksDone"] == chunks + 2 * chunks
    for i in range(1, RECORDS + 1):
        assert stores[1].get("Customer", f"A{i}")["phone"] == f"P{i}"  # type: ignore[index]
        assert stores[2].get("Customer", f"B{i}")["tel"] == f"P{i}"  # type: ignore[index]
    figures = await db.fetchrow(
        """SELECT
             (SELECT count(*) - count(DISTINCT (internal_key_id, connection_id))
                FROM record_outcomes WHERE task_id = $1) AS duplicate_outcomes,
             (SELECT count(DISTINCT (internal_key_id, connection_id))
                FROM record_outcomes WHERE task_id = $1) AS outcomes,
             (SELECT count(*) - count(DISTINCT (connection_id, internal_key_id, erp_field))
                FROM sync_log WHERE task_id = $1) AS duplicate_sync_log,
             (SELECT count(*) FROM sync_log WHERE task_id = $1) AS sync_log,
             (SELECT sum(changed_fields) FROM record_outcomes WHERE task_id = $1) AS changed""",
        task_id,
    )
    assert figures is not None
    print(f"[fault unit-publish-refused] {dict(figures)}")
    assert figures["duplicate_outcomes"] == 0 and figures["outcomes"] == 2 * RECORDS
    assert figures["duplicate_sync_log"] == 0
    assert figures["sync_log"] == figures["changed"] > 0


async def _value(value: int) -> int:
    return value
