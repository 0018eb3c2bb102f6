"""Fixtures of the operators' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from connectors.memory import MemoryStore
from tests.support.ops import seed, settings_for
from tests.support.service import Service


@pytest.fixture
def records() -> int:
    """How many linked contacts ``service`` seeds."""
    return 3


@pytest.fixture
async def service(
    database: str,
    db: asyncpg.Connection,
    broker_prefix: str,
    stores: dict[int, MemoryStore],
    records: int,
) -> AsyncIterator[Service]:
    """The seeded service; ERP 2 rejects internal key 3's actor, which differs, so tasks with
    key 3 fail."""
    await seed(db, stores, count=records)
    stores[2].put("Customer", "E2-3", {"company": "Co 3", "tel": "300", "mail": "stale@x"})
    settings = settings_for(database, broker_prefix, stores, overrides={2: {"fail_keys": ["E2-3"]}})
    async with Service(settings) as running:
        yield running
