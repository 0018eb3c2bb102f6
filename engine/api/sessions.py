"""Browser sessions for the operators' UI: login/logout, the session cookie and its XSRF token.

Contract (the dashboard builds on it):

* ``POST /api/session/login`` ``{"Username", "Password"}`` -> 204 with cookies ``erpsync_session``
  (HttpOnly) and ``XSRF-TOKEN`` (readable by JavaScript), both ``SameSite=Strict; Path=/``;
  wrong credentials -> 401.
* ``GET /api/session`` -> 200 ``{"User": name}`` or 401.
* ``POST /api/session/logout`` with ``X-XSRF-TOKEN`` -> 204; the session and its token are gone.
* ``POST /api/session/ticket`` (any authenticated caller) -> 200 ``{"Ticket", "Expires"}``: an
  ``SOTicket`` credential for server-to-server calls.

Sessions live in PostgreSQL as SHA-256 digests, so any API process can check them.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web

from engine.api.appkeys import AUTHENTICATOR, POOL, SETTINGS
from engine.api.auth import (
    PRINCIPAL,
    SESSION_COOKIE,
    XSRF_COOKIE,
    XSRF_HEADER,
    digest,
)
from engine.api.bodies import read_arguments, str_argument
from engine.api.errors import ApiError
from engine.api.render import respond
from engine.store import sessions as store

log = structlog.get_logger(__name__)

LOGIN = "/api/session/login"
LOGOUT = "/api/session/logout"
SESSION = "/api/session"
TICKET = "/api/session/ticket"
TICKET_PREFIX = "7T:"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


routes = web.RouteTableDef()


@routes.post(LOGIN)
async def login(request: web.Request) -> web.Response:
    """Check the user's password and open a session."""
    settings = request.app[SETTINGS]
    args = await read_arguments(request, settings.server.max_body_bytes)
    user = str_argument(args, "Username")
    password = str_argument(args, "Password", max_length=1024)
    if user is None or password is None:
        raise ApiError(400, "Username and Password are required")
    # An empty name is a wrong name: the same answer (and throttling) as any failed login.
    authenticator = request.app[AUTHENTICATOR]
    if not await authenticator.check_password(user, password, authenticator.client(request)):
        log.warning("login failed", user=user[:100])
        raise _unauthorized("Invalid user name or password")
    token, xsrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    ttl = settings.sessions.ttl
    await store.create(
        request.app[POOL],
        kind="session",
        token_hash=digest(token),
        user=user,
        ttl_seconds=ttl,
        xsrf_hash=digest(xsrf),
    )
    response = web.Response(status=204)
    secure = settings.sessions.secure_cookies
    # The XSRF cookie is readable by the page's script, which echoes it in X-XSRF-TOKEN.
    for name, value, httponly in ((SESSION_COOKIE, token, True), (XSRF_COOKIE, xsrf, False)):
        response.set_cookie(
            name,
            value,
            httponly=httponly,
            samesite="Strict",
            path="/",
            secure=secure,
            max_age=int(ttl),
        )
    return response


@routes.get(SESSION)
async def whoami(request: web.Request) -> web.Response:
    """The logged-in user, or 401."""
    session = await request.app[AUTHENTICATOR].session(request)
    if session is None:
        raise _unauthorized("Not logged in")
    return respond(request, {"User": session.user}, root="Session")


@routes.post(LOGOUT)
async def logout(request: web.Request) -> web.Response:
    """End the session (the XSRF token must match); its cookies are cleared."""
    session = await request.app[AUTHENTICATOR].session(request)
    if session is None or not session.xsrf_matches(request.headers.get(XSRF_HEADER)):
        raise _unauthorized("Not logged in, or the X-XSRF-TOKEN header does not match")
    await store.delete(request.app[POOL], "session", session.token_hash)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(XSRF_COOKIE, path="/")
    return response


@routes.post(TICKET)
async def issue_ticket(request: web.Request) -> web.Response:
    """Issue an ``SOTicket`` for the authenticated caller, valid for ``sessions.ticket_ttl``."""
    settings = request.app[SETTINGS]
    await read_arguments(request, settings.server.max_body_bytes)  # validated, then unused
    principal = request[PRINCIPAL]
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    ttl = settings.sessions.ticket_ttl
    await store.create(
        request.app[POOL],
        kind="ticket",
        token_hash=digest(ticket),
        user=principal.user,
        ttl_seconds=ttl,
    )
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    return respond(
        request,
        {"Ticket": ticket, "Expires": expires.isoformat(timespec="seconds")},
        root="Ticket",
        headers={"Cache-Control": "no-store"},
    )
