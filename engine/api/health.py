"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.appkeys import CONSUMER, POOL, PUBLISHER

routes = web.RouteTableDef()


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    """The process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """Ready when the database answers, the publisher is open and the consumer is attached."""
    app = request.app
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            await app[POOL].fetchval("SELECT 1")
    except Exception as exc:
        problems["database"] = type(exc).__name__
    if not app[PUBLISHER].is_open:
        problems["broker"] = "publisher channel closed"
    consumer = app.get(CONSUMER)
    if consumer is not None and not consumer.is_attached:
        problems["consumer"] = "not attached"
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ok"})
