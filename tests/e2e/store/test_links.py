"""The key registry's two uniqueness rules in SQL, and what a chunk does with a created actor
the registry refuses."""

from __future__ import annotations

import asyncio

import asyncpg

from engine.store import links
from engine.store.results import Outcome
from engine.sync.chunks import link_created
from engine.sync.records import ChunkResult, NewLink
from tests.support.service import link


async def test_both_rules_hold_and_name_the_link_in_the_way(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await link(db, 1, "Contact", "1", {1: ("Customer", "A1")})
    await link(db, 2, "Contact", "2", {})
    async with pool.acquire() as conn:
        actor_taken = await links.link(conn, 2, 1, "Customer", "A1")
        record_taken = await links.link(conn, 1, 1, "Customer", "A2")
        again = await links.link(conn, 1, 1, "Customer", "A1")
    assert (actor_taken.rule, actor_taken.conflict and actor_taken.conflict.internal_key_id) == (
        "actor",
        1,
    )
    assert (record_taken.rule, record_taken.conflict and record_taken.conflict.erp_key) == (
        "record",
        "A1",
    )
    assert (again.conflict, again.created, again.link and again.link.erp_key) == (None, False, "A1")


async def test_concurrent_links_of_one_actor_let_exactly_one_win(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    for key in range(1, 9):
        await link(db, key, "Contact", str(key), {})

    async def attempt(key: int) -> links.LinkResult:
        async with pool.acquire() as conn:
            return await links.link(conn, key, 1, "Customer", "SHARED")

    results = await asyncio.gather(*(attempt(k) for k in range(1, 9)))
    assert sum(r.created for r in results) == 1
    assert all(r.rule == "actor" for r in results if not r.created)
    assert await db.fetchval("SELECT count(*) FROM external_keys WHERE erp_key = 'SHARED'") == 1


async def test_a_created_actor_the_registry_refuses_fails_its_record(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await link(db, 1, "Contact", "1", {2: ("Customer", "B1")})
    await link(db, 2, "Contact", "2", {})
    await link(db, 3, "Contact", "3", {})
    result = ChunkResult(0, 2)
    result.outcomes = [Outcome(k, 2, "created", 3) for k in (1, 2, 3)]
    result.new_links = [
        NewLink(1, 2, "Customer", "B9", None),  # the record was linked meanwhile
        NewLink(2, 2, "Customer", "B1", None),  # the actor is record 1's
        NewLink(3, 2, "Customer", "B3", "t1"),  # fine
    ]
    async with pool.acquire() as conn, conn.transaction():
        await link_created(conn, result, {2: "ERP two"})
    statuses = {o.internal_key_id: (o.status, o.error) for o in result.outcomes}
    assert statuses[3] == ("created", None)
    assert statuses[1][0] == statuses[2][0] == "failed"
    assert "linked to Customer 'B1' meanwhile" in (statuses[1][1] or "")
    assert "that actor is linked to internal key 1" in (statuses[2][1] or "")
    assert [(x.internal_key_id, x.erp_key) for x in await links.links_of(pool, 3)] == [(3, "B3")]
