"""Failing targets in process (memory connectors): delayed retries, giving up, fail-fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from connectors.memory import MemoryStore
from engine.settings import Settings
from tests.support.service import Service, seed_stale
from tests.support.settings import memory_settings
from tests.support.waiting import wait_for

N = 12


def settings_for(
    database: str, prefix: str, stores: dict[int, MemoryStore], erp2: dict[str, Any], **conn: Any
) -> Settings:
    settings = memory_settings(
        database,
        prefix,
        {cid: s.name for cid, s in stores.items()},
        overrides={2: erp2},
        connection_options={2: conn},
        chunk_size=4,
    )
    engine = settings.engine.model_copy(update={"sweep_interval": 0.05})
    return settings.model_copy(update={"engine": engine})


SettingsFor = Callable[..., Settings]


@pytest.fixture
async def seeded(
    database: str, db: asyncpg.Connection, broker_prefix: str, stores: dict[int, MemoryStore]
) -> SettingsFor:
    """Seed the N records; build settings (ERP 2's store settings, its connection options)."""
    await seed_stale(db, stores, N, phone="{i}00")

    def make(erp2: dict[str, Any], **conn: Any) -> Settings:
        return settings_for(database, broker_prefix, stores, erp2, **conn)

    return make


async def outcome_counts(db: asyncpg.Connection, task_id: int) -> dict[tuple[int, int], int]:
    rows = await db.fetch(
        "SELECT internal_key_id, connection_id, count(*) FROM record_outcomes "
        "WHERE task_id = $1 GROUP BY 1, 2",
        task_id,
    )
    return {(r[0], r[1]): r[2] for r in rows}


async def erp1_updated(db: asyncpg.Connection, task_id: int) -> list[asyncpg.Record]:
    """The task's outcomes, after asserting one per record and target and that the healthy
    target (ERP 1) updated every record."""
    rows = await db.fetch(
        "SELECT internal_key_id, connection_id, status, error FROM record_outcomes "
        "WHERE task_id = $1",
        task_id,
    )
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (i, c) for i in range(1, N + 1) for c in (1, 2)
    )
    assert {r[2] for r in rows if r[1] == 1} == {"updated"}  # the healthy target is unaffected
    return list(rows)


async def test_transient_failures_go_through_delayed_retries_until_they_succeed(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: SettingsFor
) -> None:
    settings = seeded(
        {"fail_rate": 0.5, "seed": 7},
        retry={"attempts": 1, "delayed_attempts": 30, "delayed_base": 0.02, "delayed_max": 0.1},
        breaker={"failure_threshold": 1000},
    )
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, []), timeout=60)

    assert info["State"] == "Succeeded", info
    for i in range(1, N + 1):
        assert stores[2].get("Customer", f"B{i}") == {
            "company": f"Co {i}",
            "tel": f"{i}00",
            "mail": f"{i}@c",
        }
    counts = await outcome_counts(db, info["Id"])
    assert counts == {(i, c): 1 for i in range(1, N + 1) for c in (1, 2)}  # one final outcome
    retried = await db.fetchval(
        "SELECT count(*) FROM task_chunks WHERE task_id = $1 AND attempt > 0", info["Id"]
    )
    assert retried > 0
    dupes = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM sync_log GROUP BY internal_key_id, connection_id, "
        "erp_field HAVING count(*) > 1) d"
    )
    assert dupes == 0


async def test_a_target_that_stays_down_fails_its_records_after_the_retries(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: SettingsFor
) -> None:
    settings = seeded(
        {"fail": "transient"},
        retry={"attempts": 2, "base_delay": 0, "delayed_attempts": 2, "delayed_base": 0.02},
        breaker={"failure_threshold": 3, "cooldown": 0.2},
    )
    # 3 chunks x 2 calls x (1 + 2 delayed retries) = 18 calls without a breaker; with it, the
    # 3 failures that open it plus at most one half-open probe per chunk retry.
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, []), timeout=60)

    assert info["State"] == "Failed", info
    assert f"{N} failed" in info["Response"]
    rows = await erp1_updated(db, info["Id"])
    erp2 = [r for r in rows if r[1] == 2]
    assert {r[2] for r in erp2} == {"failed"}
    assert all("gave up after 2 delayed retries" in r[3] for r in erp2)
    assert 3 <= stores[2].calls <= 3 + 3 * 2
    attempts = await db.fetch(
        "SELECT DISTINCT attempt, target_connection_id FROM task_chunks WHERE task_id = $1",
        info["Id"],
    )
    # stage 1 (no target), the push units (attempt 0 per target), ERP 2's two delayed retries
    assert sorted((r[0], r[1] or 0) for r in attempts) == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)]


async def test_a_configuration_error_fails_only_that_targets_records_with_the_reason(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: SettingsFor
) -> None:
    """A connection that turns out misconfigured mid-run (a wrong password at first login, a
    table renamed away) costs only its own records; the other target runs to the end."""
    settings = seeded(
        {"fail": "configuration"},
        retry={"delayed_attempts": 2, "delayed_base": 0.02, "delayed_max": 0.05},
        breaker={"failure_threshold": 1000},
    )
    async with Service(settings) as service:
        info = await service.finished(await service.resync(0, []), timeout=30)

    assert info["State"] == "Failed", info
    assert f"{N} failed" in info["Response"]
    assert "on connection 2: Configuration error on ERP two: memory store" in info["Response"]
    rows = await erp1_updated(db, info["Id"])
    assert {(r[2], r[3]) for r in rows if r[1] == 2} == {
        (
            "failed",
            f"Configuration error on ERP two: memory store {stores[2].name!r} is misconfigured "
            "(gave up after 2 delayed retries)",
        )
    }
    for i in range(1, N + 1):
        assert stores[1].get("Customer", f"A{i}")["phone"] == f"{i}00"  # type: ignore[index]


async def test_a_configuration_error_that_clears_within_the_retry_budget_succeeds(
    db: asyncpg.Connection, stores: dict[int, MemoryStore], seeded: SettingsFor
) -> None:
    settings = seeded(
        {},
        retry={"delayed_attempts": 50, "delayed_base": 0.05, "delayed_max": 0.1},
        breaker={"failure_threshold": 3, "cooldown": 0.2},
    )
    stores[2].outage = "configuration"  # e.g. the table renamed away
    async with Service(settings) as service:
        task_id = await service.resync(0, [])
        await wait_for(
            lambda: db.fetchval(
                "SELECT count(*) > 0 FROM task_chunks WHERE task_id = $1 AND attempt > 1",
                task_id,
            ),
            timeout=30,
            what="ERP 2's records to be retried",
        )
        stores[2].outage = None  # ... and back
        info = await service.finished(task_id, timeout=60)

    assert info["State"] == "Succeeded", info
    counts = await outcome_counts(db, task_id)
    assert counts == {(i, c): 1 for i in range(1, N + 1) for c in (1, 2)}
    for i in range(1, N + 1):
        assert stores[2].get("Customer", f"B{i}")["tel"] == f"{i}00"  # type: ignore[index]
