"""Lanes and fixtures: a migrated template database per run, a fresh database and broker prefix
per test.

Every test lives in a lane, a folder under tests/ (see tests/README.md), and carries the lane's
marker. Tests outside tests/unit talk to the real PostgreSQL and RabbitMQ (TEST_DATABASE_URL /
TEST_AMQP_URL, defaulting to the local services). When they are unreachable the tests fail; they
never skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.memory import MemoryStore
from tests.support import services

LANES = ("unit", "contract", "e2e", "faults", "bench")
"""The folders under tests/ that hold tests, each with a marker of its name (pyproject.toml)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its lane; a test outside every lane is an error."""
    root = Path(__file__).parent
    for item in items:
        lane = item.path.relative_to(root).parts[0]
        if lane not in LANES:
            raise pytest.UsageError(f"{item.nodeid}: put it in a lane, one of {', '.join(LANES)}")
        item.add_marker(lane)


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = services.unique("erpsync_tmpl")

    asyncio.run(services.create_database(name, migrated=True))
    yield name
    asyncio.run(services.drop_database(name))


@pytest.fixture
async def database(template_database: str) -> AsyncIterator[str]:
    """The name of a fresh, migrated database for this test (dropped afterwards)."""
    async with services.copied_database(template_database) as name:
        yield name


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database."""
    conn = await asyncpg.connect(services.database_url(database))
    yield conn
    await conn.close()


@pytest.fixture
async def broker_prefix() -> AsyncIterator[str]:
    """A unique exchange/queue prefix; everything under it is deleted afterwards."""
    prefix = services.unique("erpsync-test").replace("_", "-")
    yield prefix
    await services.delete_broker_objects(prefix)


@pytest.fixture
def stores() -> Iterator[dict[int, MemoryStore]]:
    """Fresh in-memory systems for connection ids 0 (the CRM), 1 and 2, dropped afterwards."""
    names = {cid: services.unique(f"store{cid}") for cid in (0, 1, 2)}
    yield {cid: MemoryStore.named(name) for cid, name in names.items()}
    for name in names.values():
        MemoryStore.drop(name)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key for the JWT tests (slow to make: one per run)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
