"""The small-task lane: a small resync never queues behind a large task's chunks (issue 19).

ERP 1's connector waits on a gate for the large task's records while the test holds it closed,
and every worker holds one push unit of ERP 1 at a time: the large task's other units queue in
``<prefix>.push.1``. A small task then runs in its own lane (``<prefix>.small``, its own channel
and prefetch) and reaches Succeeded while those units are still queued. Without the lane its
unit for ERP 1 would wait in that queue behind them until the gate opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from pydantic import Field

import connectors as sdk
from connectors.memory import MemoryConfig, MemoryConnector, MemoryStore
from engine.api.appkeys import METRICS
from engine.settings import Settings
from tests.support import services
from tests.support.service import Service, link
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

GATES: dict[str, asyncio.Event] = {}
"""Gate name -> event; a connector with that gate holds calls for its ``held`` keys."""

LARGE = list(range(1, 41))  # 8 chunks of 5
SMALL = [41, 42, 43]  # one chunk
CHUNK = 5


class HeldConfig(MemoryConfig):
    gate: str | None = Field(None, description="Wait for GATES[gate] before calls on held keys.")
    held: list[str] = Field(default_factory=list, description="Keys whose calls wait.")


class HeldMemoryConnector(MemoryConnector):
    """The memory connector; a call touching one of ``held`` waits while the gate is closed."""

    name = "held-memory"
    config_model = HeldConfig
    config: HeldConfig

    async def _hold(self, keys: list[str]) -> None:
        if self.config.gate is not None and set(keys) & set(self.config.held):
            await GATES[self.config.gate].wait()

    async def get_actors(self, request: sdk.GetActorsInput) -> sdk.GetActorsResult:
        await self._hold(list(request.keys))
        return await super().get_actors(request)

    async def save_actors(self, request: sdk.SaveActorsInput) -> sdk.SaveActorsResult:
        await self._hold([actor.key for actor in request.actors])
        return await super().save_actors(request)


@pytest.fixture
def gate() -> Iterator[str]:
    name = services.unique("gate")
    GATES[name] = asyncio.Event()
    yield name
    GATES.pop(name).set()


async def seed(db: asyncpg.Connection, stores: dict[int, MemoryStore]) -> None:
    """Contacts linked on both ERPs, ERP 1 one value behind the CRM."""
    for i in [*LARGE, *SMALL]:
        stores[0].put("Contact", str(i), {"name": f"N{i}", "phone": f"P{i}", "email": f"e{i}"})
        stores[1].put("Customer", f"A{i}", {"name": f"N{i}", "phone": "old", "email": f"e{i}"})
        stores[2].put("Customer", f"B{i}", {"company": f"N{i}", "tel": f"P{i}", "mail": f"e{i}"})
        await link(db, i, "Contact", str(i), {1: ("Customer", f"A{i}"), 2: ("Customer", f"B{i}")})


def settings_for(database: str, prefix: str, stores: dict[int, MemoryStore], gate: str) -> Settings:
    settings = memory_settings(
        database,
        prefix,
        {cid: s.name for cid, s in stores.items()},
        overrides={1: {"gate": gate, "held": [f"A{i}" for i in LARGE]}},
        connection_options={
            1: {"connector": f"{__name__}:HeldMemoryConnector", "push_prefetch": 1}
        },
        chunk_size=CHUNK,
    )
    return settings.model_copy(
        update={
            "broker": settings.broker.model_copy(update={"prefetch": 1, "small_lane_prefetch": 2}),
            "engine": settings.engine.model_copy(update={"small_task_records": len(SMALL)}),
            "worker": settings.worker.model_copy(update={"drain_timeout": 5.0}),
        }
    )


async def units(db: asyncpg.Connection, task_id: int, target: int) -> dict[str, int]:
    """The task's push units for ``target``, by state."""
    rows = await db.fetch(
        """SELECT state, count(*) FROM task_chunks
           WHERE task_id = $1 AND target_connection_id = $2 GROUP BY 1""",
        task_id,
        target,
    )
    return {r["state"]: r["count"] for r in rows}


async def test_a_small_task_runs_while_a_large_ones_units_are_queued(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    gate: str,
) -> None:
    await seed(db, stores)
    chunks = len(LARGE) // CHUNK
    push_1 = f"{broker_prefix}.push.1"
    async with Service(settings_for(database, broker_prefix, stores, gate)) as service:
        metrics = service.app[METRICS].registry

        def waits(lane: str) -> float:
            sample = metrics.get_sample_value("erpsync_delivery_wait_seconds_count", {"lane": lane})
            return sample or 0.0

        large = await service.resync(0, LARGE)
        # Every unit of ERP 2 is done; ERP 1 holds one unit at the gate, the rest are queued.
        await wait_for(
            lambda: units(db, large, 2),
            lambda u: u.get("done") == chunks,
            timeout=60,
            what="the large task's units for ERP 2 to be done",
        )
        await wait_for(
            lambda: services.ready_messages(push_1),
            lambda ready: ready == chunks - 1,
            timeout=30,
            what="the large task's other units for ERP 1 to be queued",
        )
        bulk_before = waits("bulk")
        assert waits("small") == 0

        small = await service.resync(0, SMALL)
        done = await service.finished(small, timeout=30)

        # The small task finished while the large one's units were still queued in the broker.
        assert done["State"] == "Succeeded", done
        assert done["Statistics"]["Updated"] == len(SMALL), done
        assert await services.ready_messages(push_1) == chunks - 1
        assert await units(db, large, 1) == {"pending": chunks}
        assert (await service.task(large))["State"] == "Started"
        # Its chunk and its two push units came through the small lane, nothing else did.
        assert waits("small") == 1 + 2
        assert waits("bulk") == bulk_before
        assert all(
            stores[1].get("Customer", f"A{i}")["phone"] == f"P{i}"  # type: ignore[index]
            for i in SMALL
        )

        GATES[gate].set()
        finished = await service.finished(large, timeout=60)

    assert finished["State"] == "Succeeded", finished
    assert finished["Statistics"]["Updated"] == len(LARGE), finished
    assert all(
        stores[1].get("Customer", f"A{i}")["phone"] == f"P{i}"  # type: ignore[index]
        for i in LARGE
    )
