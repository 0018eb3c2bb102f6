"""What the fault tests share: the fault rig of the worker-process tests (``tests.support.rig``),
a throwaway RabbitMQ node and a throwaway PostgreSQL cluster, one per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from engine.devservices.nodes import PostgresCluster, RabbitNode
from engine.store import migrate
from tests.support.rig import Rig, rig


@pytest.fixture
async def the_rig(broker_prefix: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig(broker_prefix, tmp_path) as r:
        yield r


@pytest.fixture
async def rabbit() -> AsyncIterator[RabbitNode]:
    """A RabbitMQ node of its own on a free port (the tests stop and kill it), destroyed after."""
    node = RabbitNode()
    await asyncio.to_thread(node.start)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.destroy)


@pytest.fixture
async def postgres() -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL cluster of its own with a migrated database ``erpsync`` (the tests stop
    and start it), destroyed after."""
    cluster = PostgresCluster()
    cluster.start()
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute("CREATE DATABASE erpsync")
    finally:
        await admin.close()
    conn = await asyncpg.connect(cluster.url("erpsync"))
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    yield cluster
    cluster.destroy()
