"""Fixtures of the SQL tests: the service's own pool on the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.settings import DatabaseSettings
from engine.store.pool import create_pool
from tests.support import services


@pytest.fixture
def pool_size() -> int:
    return 2


@pytest.fixture
async def pool(database: str, pool_size: int) -> AsyncIterator[asyncpg.Pool]:
    """The service's pool (``create_pool``) on the test database, ``pool_size`` connections."""
    settings = DatabaseSettings.model_validate({"url": services.database_url(database)})
    pool = await create_pool(settings, max_size=pool_size)
    yield pool
    await pool.close()
