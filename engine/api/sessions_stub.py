"""TEMPORARY: a minimal in-memory implementation of the session + XSRF contract.

The front door's real session support replaces this module when it lands; the dashboard relies
only on the contract below, never on this implementation:

* ``POST /api/session/login`` with ``{"Username": ..., "Password": ...}`` -> 204 and the cookies
  ``erpsync_session`` (HttpOnly) and ``XSRF-TOKEN`` (readable by scripts); wrong credentials -> 401.
* ``GET /api/session`` -> 200 ``{"User": name}`` or 401.
* ``POST /api/session/logout`` -> 204 (requires ``X-XSRF-TOKEN``).
* An ``/api/v1/...`` request without ``Authorization`` is authenticated by the session cookie
  only when its ``X-XSRF-TOKEN`` header equals the session's token.

Sessions live in this process only (a restart logs everyone out; several API processes need
sticky routing). The middleware must sit immediately before the Basic auth middleware: for a
cookie-authenticated request it calls the route handler itself, skipping only that middleware.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.auth import USER_KEY, Authenticator
from engine.api.errors import ApiError, Handler
from engine.settings import AuthSettings

SESSION_COOKIE = "erpsync_session"
XSRF_COOKIE = "XSRF-TOKEN"
XSRF_HEADER = "X-XSRF-TOKEN"
IDLE_TIMEOUT = 8 * 3600.0
MAX_SESSIONS = 10_000


@dataclass
class _Session:
    user: str
    xsrf: str
    expires: float


def middleware(auth: AuthSettings) -> Middleware:
    """The session endpoints and cookie authentication (see the module docstring)."""
    sessions: dict[str, _Session] = {}
    authenticator: list[Authenticator] = []  # built on first login (hashing a dummy is slow)

    def current(request: web.Request) -> tuple[str, _Session] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        session = sessions.get(token)
        if session is None:
            return None
        now = time.monotonic()
        if session.expires < now:
            sessions.pop(token, None)
            return None
        session.expires = now + IDLE_TIMEOUT
        return token, session

    def xsrf_ok(request: web.Request, session: _Session) -> bool:
        header = request.headers.get(XSRF_HEADER, "")
        return bool(header) and hmac.compare_digest(header.encode(), session.xsrf.encode())

    async def login(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise ApiError(400, "Body must be JSON with Username and Password") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Body must be JSON with Username and Password")
        fields = {str(k).lower(): v for k, v in body.items()}
        user, password = fields.get("username"), fields.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise ApiError(400, "Username and Password must be strings")
        if not authenticator:
            authenticator.append(Authenticator(auth))
        credential = base64.b64encode(f"{user}:{password}".encode()).decode()
        if await authenticator[0].basic(credential) is None:
            raise ApiError(401, "Invalid user name or password")
        if len(sessions) >= MAX_SESSIONS:
            now = time.monotonic()
            for token in [t for t, s in sessions.items() if s.expires < now]:
                del sessions[token]
        token, xsrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        sessions[token] = _Session(user, xsrf, time.monotonic() + IDLE_TIMEOUT)
        response = web.Response(status=204)
        secure = request.secure
        response.set_cookie(
            SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict", secure=secure
        )
        response.set_cookie(XSRF_COOKIE, xsrf, path="/", samesite="Strict", secure=secure)
        return response

    @web.middleware
    async def sessions_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == "/api/session/login":
            if request.method != "POST":
                raise ApiError(405, "Use POST", headers={"Allow": "POST"})
            return await login(request)
        if path == "/api/session":
            found = current(request)
            if found is None:
                raise ApiError(401, "Not logged in")
            return web.json_response({"User": found[1].user})
        if path == "/api/session/logout":
            if request.method != "POST":
                raise ApiError(405, "Use POST", headers={"Allow": "POST"})
            found = current(request)
            if found is None or not xsrf_ok(request, found[1]):
                raise ApiError(401, "Not logged in or X-XSRF-TOKEN missing")
            sessions.pop(found[0], None)
            response = web.Response(status=204)
            response.del_cookie(SESSION_COOKIE, path="/")
            response.del_cookie(XSRF_COOKIE, path="/")
            return response
        if path.startswith("/api/v1/") and "Authorization" not in request.headers:
            found = current(request)
            if found is not None and xsrf_ok(request, found[1]):
                request[USER_KEY] = found[1].user
                return await request.match_info.handler(request)
        return await handler(request)

    return sessions_middleware
