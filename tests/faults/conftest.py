"""The fault rig of the worker-process tests (``tests.support.rig``), one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.rig import Rig, rig


@pytest.fixture
async def the_rig(broker_prefix: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig(broker_prefix, tmp_path) as r:
        yield r
