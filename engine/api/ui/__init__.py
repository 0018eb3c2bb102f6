"""The operators' dashboard: static files served at ``/ui/`` (no build step).

The page holds no credentials: it logs in through the session endpoints and calls the read-only
``/api/v1/erpsync`` endpoints and ForceResyncBatchTask with the session cookie plus the
``X-XSRF-TOKEN`` header.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

HERE = Path(__file__).parent
FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "links.js": "text/javascript",
    "style.css": "text/css",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

routes = web.RouteTableDef()


@routes.get("/")
@routes.get("/ui")
async def redirect(request: web.Request) -> web.Response:
    """The dashboard lives at /ui/."""
    raise web.HTTPFound("/ui/")


@routes.get("/ui/")
@routes.get("/ui/{name}")
async def static(request: web.Request) -> web.Response:
    """One of the dashboard's files."""
    name = request.match_info.get("name", "index.html")
    content_type = FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=(HERE / name).read_bytes(),
        content_type=content_type,
        charset="utf-8",
        headers=HEADERS,
    )
