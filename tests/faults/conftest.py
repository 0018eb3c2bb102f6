"""What the fault tests share: the fault rig of the worker-process tests (``tests.support.rig``)
and a throwaway RabbitMQ node, one per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.devservices.nodes import RabbitNode
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
