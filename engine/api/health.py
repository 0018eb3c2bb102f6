"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.api.appkeys import CONSUMER, POOL, PUBLISHER

routes = web.RouteTableDef()

DATABASE_TIMEOUT = 2.0


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    """The process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """Ready when the database answers, the publisher is open and the consumer is attached.

    503 names each failing part under ``problems`` (``database``, ``broker``, ``consumer``).
    """
    app = request.app
    problems: dict[str, str] = {}
    pool = app.get(POOL)
    if pool is None:
        problems["database"] = "pool not open"
    else:
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                await pool.fetchval("SELECT 1")
        except TimeoutError:
            problems["database"] = f"no answer within {DATABASE_TIMEOUT:g}s"
        except Exception as exc:
            problems["database"] = type(exc).__name__
    publisher = app.get(PUBLISHER)
    if publisher is None or not publisher.is_open:
        problems["broker"] = "publisher connection or channel closed"
    consumer = app.get(CONSUMER)
    if consumer is not None and not consumer.is_attached:
        problems["consumer"] = "not attached to its queues"
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ok"})
