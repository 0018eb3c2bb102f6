"""Migrations are applied once, also when several processes start at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.store import migrate
from tests.support import services


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    name = services.unique("erpsync_mig")
    await services.create_database(name)
    yield services.database_url(name)
    await services.drop_database(name)


async def test_concurrent_migrations_apply_each_file_once(empty_database: str) -> None:
    conns = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.migrate(c) for c in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in migrate.migrations()]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [m.version for m in migrate.migrations()]
        assert await migrate.pending(conns[0]) == []
    finally:
        for conn in conns:
            await conn.close()
