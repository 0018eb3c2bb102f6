"""``server.gc_freeze``: the process entry points freeze the heap once the app has started."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

from aiohttp import web

from engine.app import freeze_heap_after_startup
from engine.settings import ServerSettings


async def test_startup_moves_live_objects_into_the_permanent_generation() -> None:
    app = web.Application()
    started: list[int] = []

    async def resource(app: web.Application) -> AsyncIterator[None]:
        started.append(gc.get_freeze_count())  # resources start before the freeze
        yield

    app.cleanup_ctx.append(resource)
    freeze_heap_after_startup(app)
    app.freeze()
    gc.unfreeze()
    try:
        await app.startup()
        assert started == [0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        await app.cleanup()


def test_it_is_on_by_default() -> None:
    assert ServerSettings().gc_freeze is True
