"""Front-door lifecycle: authenticator preparation and periodic cleanup of expired sessions,
tickets and idempotency keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from engine.api.appkeys import AUTHENTICATOR, POOL, SETTINGS
from engine.store import idempotency, sessions

log = structlog.get_logger(__name__)

INTERVAL = 600.0


async def _loop(app: web.Application) -> None:
    settings = app[SETTINGS]
    while True:
        try:
            expired = await sessions.purge_expired(app[POOL])
            old_keys = await idempotency.purge_older_than(
                app[POOL], settings.sessions.idempotency_ttl
            )
            if expired or old_keys:
                log.info("housekeeping", expired_sessions=expired, old_idempotency_keys=old_keys)
        except Exception as exc:  # the database may be briefly away; try again next round
            log.warning("housekeeping failed", error=type(exc).__name__)
        await asyncio.sleep(INTERVAL)


async def cleanup_ctx(app: web.Application) -> AsyncIterator[None]:
    """Prepare the authenticator, then run the cleanup loop for the application's lifetime."""
    await app[AUTHENTICATOR].prepare()
    task = asyncio.create_task(_loop(app), name="erpsync-housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
