"""Child process the benchmarks start: an erpsync role, or the design's ceiling handler.

``python -m benchmarks.service ROLE SETTINGS_JSON`` where ROLE is ``api`` (front door),
``worker`` (engine), ``serve`` (both) or ``ceiling`` (an aiohttp handler that only does the
front door's confirmed persistent publish: no auth, validation or database).

Experiments (evidence for proposed engine fixes, without editing ``engine/``): with
``BENCH_EXPERIMENT=no_pool_reset`` the asyncpg pool is created with a no-op ``reset`` hook, so a
released connection is not sent asyncpg's reset query.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
from aiohttp import web

from engine.app import create_app
from engine.messaging.broker import Publisher, connect
from engine.messaging.topology import RESYNC_ROUTING_KEY
from engine.observability.logging import configure
from engine.settings import Settings

PUBLISHER = web.AppKey("publisher", Publisher)
CEILING_BODY = orjson.dumps({"ErpConnectionId": 0, "InternalKeyIds": list(range(1, 11))})


def ceiling_app(settings: Settings) -> web.Application:
    """POST anything: publish one persistent command with a confirm, answer 204."""

    async def publisher(app: web.Application) -> AsyncIterator[None]:
        connection = await connect(settings.broker, "ceiling")
        app[PUBLISHER] = Publisher(connection, settings.broker)
        await app[PUBLISHER].start()
        yield
        await app[PUBLISHER].close()
        await connection.close()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await request.app[PUBLISHER].publish(RESYNC_ROUTING_KEY, CEILING_BODY)
        return web.Response(status=204)

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.cleanup_ctx.append(publisher)
    app.router.add_post("/api/v1/Agents/ErpSync/ForceResyncBatchTask", handle)
    app.router.add_get("/health/ready", ready)
    return app


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query (the service keeps no session state)."""


def apply_experiments() -> None:
    if os.environ.get("BENCH_EXPERIMENT") == "no_pool_reset":
        asyncpg.create_pool = functools.partial(asyncpg.create_pool, reset=_no_reset)


def main() -> None:
    apply_experiments()
    role, path = sys.argv[1], Path(sys.argv[2])
    settings = Settings.model_validate(orjson.loads(path.read_bytes()))
    configure(settings.logging)
    if role == "ceiling":
        app = ceiling_app(settings)
    else:
        app = create_app(settings, api=role in ("api", "serve"), engine=role in ("worker", "serve"))
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        shutdown_timeout=settings.server.shutdown_timeout,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
