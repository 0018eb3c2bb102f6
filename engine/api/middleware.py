"""The one middleware of every request: metrics, credentials and the error JSON together.

In order, from the outside in: the request is timed and counted by route template and status
(:meth:`~engine.observability.metrics.Metrics.http_request`); a path under ``/api/`` needs
credentials (:meth:`~engine.api.auth.Authenticator.principal`, whose user is bound to the log
context while the handler runs); and whatever fails becomes SuperOffice's error JSON/XML
(:func:`~engine.api.errors.error_for`) with ``X-Content-Type-Options: nosniff``.

One middleware rather than three: aiohttp runs each as its own coroutine around the next, and
on a busy front door every layer costs (docs/benchmarks.md, "Front door, session 7").
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.auth import PRINCIPAL, USER_KEY, Authenticator
from engine.api.errors import Handler, error_for
from engine.observability.metrics import Metrics, route_label

_bind = structlog.contextvars.bind_contextvars
_reset = structlog.contextvars.reset_contextvars


def front_door_middleware(metrics: Metrics, authenticator: Authenticator | None) -> Middleware:
    """The middleware of :func:`engine.app.create_app` (``authenticator``: None when the
    process serves no API, only health and metrics)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            try:
                if authenticator is None or not authenticator.needs_credentials(request.path):
                    response = await handler(request)
                else:
                    principal = await authenticator.principal(request)
                    request[PRINCIPAL] = principal
                    request[USER_KEY] = principal.user
                    # bind/reset rather than bound_contextvars(): the same, without a
                    # generator-based context manager per request
                    tokens = _bind(user=principal.user)
                    try:
                        response = await handler(request)
                    finally:
                        _reset(**tokens)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = error_for(request, exc)
            except Exception as exc:
                response = error_for(request, exc)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.http_request(
                route_label(request), request.method, status, time.perf_counter() - start
            )

    return middleware
