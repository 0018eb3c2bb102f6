"""The smallest app the benchmarks start: one resource context, a handler on the resync route and
the readiness route they wait for (the ceiling handler and the reference implementation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


def bare_app(
    resources: Callable[[web.Application], AsyncIterator[None]],
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    """An app with one resource context, ``handle`` on the resync route, and the readiness
    route the benchmarks wait for: the ceiling handler and the reference implementation."""

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.cleanup_ctx.append(resources)
    app.router.add_post("/api/v1/Agents/ErpSync/ForceResyncBatchTask", handle)
    app.router.add_get("/health/ready", ready)
    return app
